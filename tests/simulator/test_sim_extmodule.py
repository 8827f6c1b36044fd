"""The engine side of extmodule connections, beyond what the traces replay.

Literal lines in, literal lines out (style.md §6): the simulator must answer what Yate answers.
"""

from __future__ import annotations

import pytest
from twisted.internet import defer

from yaypm.dispatcher import DisconnectedException
from yaypm.testing import assert_no_result, failure_result_of, success_result_of
from yaypm.testing.simulator import Simulator


def test_preset_role_needs_no_connect_and_refuses_one(sim: Simulator) -> None:
    raw = sim.connect_raw()
    raw.send("%%>connect:global", "%%>setlocal:engine.version:")
    assert raw.take() == ["Error in: %%>connect:global", "%%<setlocal:engine.version:6.4.1:true"]


@pytest.mark.parametrize("first", ["%%>setlocal:engine.version:", "%%>connect:bogus",
                                   "%%>connect:play"])
def test_roleless_listener_closes_silently_on_a_bad_first_line(sim: Simulator,
                                                             first: str) -> None:
    raw = sim.connect_raw(role=None)
    raw.send(first)
    assert raw.take() == [] and raw.closed


def test_quit_answers_then_closes(sim: Simulator) -> None:
    raw = sim.connect_raw()
    raw.send("%%>quit")
    assert raw.take() == ["%%<quit"] and raw.closed


def test_crlf_and_nul_end_lines_and_empty_lines_are_ignored(sim: Simulator) -> None:
    raw = sim.connect_raw()
    raw.send("%%>setlocal:timeout:\r", "", "%%>setlocal:bufsize:\x00%%>setlocal:maxqueue:")
    assert raw.take() == ["%%<setlocal:timeout:10000:true", "%%<setlocal:bufsize:8192:true",
                          "%%<setlocal:maxqueue:1000:true"]


def test_a_line_over_bufsize_minus_two_closes_the_connection(sim: Simulator) -> None:
    raw = sim.connect_raw()
    head = "%%>message:m1:0:test.x::d="
    raw.send(head + "x" * (8190 - len(head)))
    assert raw.take() == ["%%<message:m1:false:test.x::d=" + "x" * (8190 - len(head))]
    raw.send(head + "x" * (8191 - len(head)))
    assert raw.take() == [] and raw.closed


def test_maxqueue_makes_messages_skip_a_busy_connection(sim: Simulator) -> None:
    slow = sim.connect_raw(name="slow")
    slow.send("%%>setlocal:maxqueue:1", "%%>install:50:test.q")
    other = sim.connect_raw(name="other")
    other.send("%%>install:60:test.q")
    slow.take(), other.take()
    sender = sim.connect_raw(name="sender")
    sender.send("%%>message:a:0:test.q::n=1", "%%>message:b:0:test.q::n=2")
    got_slow = slow.take()
    assert len(got_slow) == 1 and got_slow[0].endswith(":test.q::n=1")
    got = other.take()
    assert len(got) == 1 and got[0].endswith(":test.q::n=2")
    assert sim.pending() == {"slow": 1, "other": 1, "sender": 0}


def test_answers_unmatched_partially_applied_then_timeout(sim: Simulator) -> None:
    handler = sim.connect_raw()
    handler.send("%%>setlocal:timeout:1000", "%%>install:50:test.p")
    handler.take()
    sender = sim.connect_raw()
    sender.send("%%>message:s1:0:test.p:orig:a=1")
    ident = handler.take()[0].split(":")[1]
    handler.send(f"%%<message:{ident}:true::x:b=2:bad=%a")    # bad escape: unmatched
    assert sender.take() == []
    sim.advance(1.0)
    # Yate kept what it had decoded (processed, retvalue, b=2) and returns it at the timeout.
    assert sender.take() == ["%%<message:s1:true:test.p:x:a=1:b=2"]


def test_late_and_duplicate_answers_are_ignored(sim: Simulator) -> None:
    handler = sim.connect_raw()
    handler.send("%%>install:50:test.d")
    handler.take()
    sender = sim.connect_raw()
    sender.send("%%>message:s1:0:test.d:")
    ident = handler.take()[0].split(":")[1]
    handler.send(f"%%<message:{ident}:true:", f"%%<message:{ident}:false::changed")
    assert sender.take() == ["%%<message:s1:true:test.d:"]
    assert handler.take() == []


def test_id_reuse_inherits_the_pending_message_channel(sim: Simulator) -> None:
    """Re-routing a dumb channel at the last moment (yate-extmodule.md §5.3)."""
    raw = sim.connect_raw()
    raw.send("%%>install:50:call.route", "%%>install:50:chan.disconnected")
    raw.take()
    call = sim.place_call("100")
    route = raw.take()[0]
    raw.send("%%<message:" + route.split(":")[1] + ":true::dumb/")
    raw.take()
    call.hangup()                                  # nothing is answered yet: CANCEL
    # the dumb channel's chan.disconnected waits for us; reuse its id
    disc = [line for line in raw.take() if ":chan.disconnected:" in line][0]
    ident = disc.split(":")[1]
    assert "id=dumb/1" in disc
    raw.send(f"%%>message:{ident}:0:call.execute::callto=tone/busy")
    ans = [line for line in raw.take() if line.startswith("%%<message:" + ident + ":")]
    assert ans and ans[0].startswith(f"%%<message:{ident}:true:call.execute:")
    assert "peerid=tone/1" in ans[0]
    raw.send(f"%%<message:{ident}:true:")
    assert sim.channels["dumb/1"].peer_id == "tone/1"


def test_disconnect_removes_handlers_watches_and_releases_waiting_messages(
        sim: Simulator) -> None:
    a = sim.connect_raw(name="a")
    a.send("%%>install:50:test.h", "%%>watch:test.h", "%%>watch:")
    b = sim.connect_raw(name="b")
    b.send("%%>message:m1:0:test.h:")
    assert sim.handlers() == {"a": {"test.h": 50}, "b": {}} and sim.pending()["a"] == 1
    a.close()
    assert b.take() == ["%%<message:m1:false:test.h:"]
    assert sim.handlers() == {"b": {}} and sim.watches() == {"b": []}
    assert sim.engine.handlers("test.h") == []


def test_dispatcher_over_a_roleless_listener_sends_connect(sim: Simulator) -> None:
    d = sim.connect(role="global")
    v = d.setlocal("engine.version")
    assert success_result_of(v) == "6.4.1"
    assert sim.lines(">>")[:2] == ["%%>connect:global", "%%>setlocal:engine.version:"]


def test_engine_closing_the_connection_fails_outstanding_requests(sim: Simulator) -> None:
    d = sim.connect()
    other = sim.connect_raw()
    other.send("%%>install:50:test.slow")
    d.setlocal("timeout", 1000)
    d.setlocal("timebomb", "true")
    d.handler("test.slow", lambda m: None, priority=50)   # never answers
    pending = d.msg("test.x").dispatch()
    assert success_result_of(pending) is False
    waiting = d.msg("test.slow").dispatch()               # goes to `other`, never answered
    assert_no_result(waiting)
    sim.advance(10)
    assert success_result_of(waiting) is False           # other's timeout: unhandled


def test_timebomb_disconnects_a_dispatcher(sim: Simulator) -> None:
    d = sim.connect()
    d.setlocal("timeout", 1000)
    d.setlocal("timebomb", "true")
    d.handler("test.slow", lambda m: None, priority=50)   # the app forgets to answer
    d.answer_deadline = None
    raw = sim.connect_raw()
    raw.send("%%>message:x:0:test.slow:")
    ping = d.msg("test.never").dispatch()
    success_result_of(ping)
    later = d.setlocal("engine.version")
    success_result_of(later)
    sim.advance(1.0)
    assert sim.connection_of(d).closed
    failure_result_of(d.setlocal("engine.version"), DisconnectedException)
    assert raw.take() == ["%%<message:x:false:test.slow:"]


def test_setlocal_values(sim: Simulator) -> None:
    raw = sim.connect_raw()
    raw.send("%%>setlocal:bufsize:10", "%%>setlocal:maxqueue:99999",
             "%%>setlocal:timeout:abc", "%%>setlocal:config.general.nodename:",
             "%%>setlocal:loaded.ysipchan:", "%%>setlocal:id:x", "%%>setlocal:reason: a%zb ")
    assert raw.take() == [
        "%%<setlocal:bufsize:2048:true", "%%<setlocal:maxqueue:10000:true",
        "%%<setlocal:timeout:10000:true", "%%<setlocal:config.general.nodename:vm:true",
        "%%<setlocal:loaded.ysipchan:true:true", "%%<setlocal:id:x:false",
        "%%<setlocal:reason:a%zb:true"]


def test_channel_role_creates_an_endpoint_with_its_first_call_execute(sim: Simulator) -> None:
    """yate-extmodule.md §9.4: the socket gets an ``ExtModule`` endpoint; closing it hangs up."""
    callee = sim.endpoint("bob", "answer")
    raw = sim.connect_raw(role=None)
    raw.send("%%>connect:channel", "%%>setlocal:id:",
             "%%>message:m1:0:call.execute::callto=sip/sip%zbob@127.0.0.1%z5080:caller=chanrole")
    lines = raw.take()
    assert lines[0] == "%%<setlocal:id::false"
    assert lines[1].startswith("%%<message:m1:true:call.execute::callto=sip/sip%zbob@"
                               "127.0.0.1%z5080:caller=chanrole:id=ExtModule:handlers=")
    assert lines[1].endswith(":peerid=sip/1:targetid=sip/1")
    raw.send("%%>setlocal:id:myivr/1", "%%>setlocal:reason:ivr-finished")
    assert raw.take() == ["%%<setlocal:id:myivr/1:true", "%%<setlocal:reason:ivr-finished:true"]
    assert callee.last.is_answered
    raw.close()
    assert callee.last.ended and callee.last.bye_received
    assert sim.leaks() == {}


@pytest.mark.parametrize("line,reply", [
    ("%%>install:abc:test.e", "%%<install:100:test.e:true"),
    ("%%>install:10:", "%%<install:10::false"),
    ("%%>install:0x10:test.f", "%%<install:16:test.f:true"),
    ("%%>install:", "%%<install:100::false"),
    ("%%>uninstall:nosuch", "%%<uninstall:0:nosuch:false"),
    ("%%>watch:", "%%<watch::true"),
    ("%%>unwatch:x", "%%<unwatch:x:false"),
    ("%%>debug:x", "Error in: %%>debug:x"),
    ("%%>setlocal::5", "Error in: %%>setlocal::5"),
    ("%%>message:m4:12x:x.test:", "Error in: %%>message:m4:12x:x.test:"),
    ("%%>message:m6:0:x.test::=novalue", "Error in: %%>message:m6:0:x.test::=novalue"),
    ("%%>message:m7:0:x.test::a=%}b", "Error in: %%>message:m7:0:x.test::a=%}b"),
    ("%%>message:m13:0:x.test::dup=1:dup=2", "%%<message:m13:false:x.test::dup=2"),
    ("%%>message:m%z12:0:x.test::u=1", "%%<message:m%z12:false:x.test::u=1"),
])
def test_line_vectors(sim: Simulator, line: str, reply: str) -> None:
    raw = sim.connect_raw()
    raw.send(line)
    assert raw.take() == [reply]


def test_engine_status_of_a_channel_driver(sim: Simulator) -> None:
    d = sim.connect()
    sim.place_call("999")                     # nobody routes it: 404 at once
    m = d.msg("engine.status", {"module": "dumb"})
    assert success_result_of(m.dispatch()) is True
    assert m.retvalue.startswith("name=dumb,type=misc,format=Status|Address|Peer;routed=0,")
    assert defer is not None
