"""Call-level behaviour: SIP callers and callees, IVR verbs, bridges, conferences, forks.

Apps are written with the real :class:`~yaypm.dispatcher.Dispatcher`; time is a
``task.Clock``; every test ends by checking that nothing is left behind.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from yaypm.dispatcher import Dispatcher, Message
from yaypm.testing import success_result_of
from yaypm.testing.simulator import (Simulator, answer, busy, noanswer, reject,
                                     unreachable)


def no_leaks(sim: Simulator, *dispatchers: Dispatcher) -> None:
    assert sim.leaks() == {}
    assert sim.clock.getDelayedCalls() == [], sim.clock.getDelayedCalls()
    for d in dispatchers:
        assert d.pending_count() == 0


class Ivr:
    """A small IVR on the dispatcher: route ``number`` to dumb/, answer, play, collect."""

    def __init__(self, d: Dispatcher, number: str = "100", prompt: Optional[str] = None,
                 answer_call: bool = True, progress: bool = False) -> None:
        self.d = d
        self.number = number
        self.prompt = prompt
        self.answer_call = answer_call
        self.progress = progress
        self.dumb: Dict[str, str] = {}           # caller -> dumb
        self.digits: Dict[str, str] = {}
        self.notifies: List[Dict[str, str]] = []
        self.events: List[str] = []
        d.handler("call.route", self.route, priority=50)
        d.handler("chan.dtmf", self.dtmf, priority=50)
        d.handler("chan.notify", self.notify, priority=50)
        d.watcher("call.execute", self.executed)
        d.watcher("chan.hangup", lambda m: self.events.append("hangup " + m["id"]))

    def route(self, m: Message) -> None:
        if m["called"] == self.number:
            m.ret(True, "dumb/")
        else:
            m.ret(False)

    def executed(self, m: Message) -> None:
        if m.get("callto") != "dumb/":
            return
        caller, dumb = m["id"], m["peerid"]
        self.dumb[caller] = dumb
        self.digits[caller] = ""
        if self.progress:
            self.masq(dumb, "call.progress")
        if self.answer_call:
            self.masq(dumb, "call.answered")
        if self.prompt:
            self.masq(dumb, "chan.attach", source="wave/play/" + self.prompt,
                      notify=dumb + "/prompt")

    def masq(self, dumb: str, message: str, **params: str) -> Any:
        return self.d.msg("chan.masquerade", {"message": message, "id": dumb,
                                              **params}).dispatch()

    def dtmf(self, m: Message) -> bool:
        if m.get("id") not in self.digits:
            return False
        self.digits[m["id"]] += m["text"]
        self.events.append(f"dtmf {m['text']} {m.get('detected')}")
        return True

    def notify(self, m: Message) -> bool:
        self.notifies.append(dict(m.params))
        return True

    def drop(self, chan: str, reason: str = "") -> Any:
        params = {"id": chan}
        if reason:
            params["reason"] = reason
        return self.d.msg("call.drop", params).dispatch()


def _slin(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * int(seconds * 16000))


# ------------------------------------------------------------------------------------------------
# Incoming calls
# ------------------------------------------------------------------------------------------------

def test_ivr_answers_plays_collects_and_hangs_up(sim_factory: Any, tmp_path: Path) -> None:
    _slin(tmp_path / "prompts" / "hello.slin", 1.5)
    sim = sim_factory(media_dir=str(tmp_path))
    d = sim.connect(lambda d: None)
    ivr = Ivr(d, prompt="prompts/hello.slin")
    call = sim.place_call("100", caller="alice", dtmf_method="info")
    assert success_result_of(call.answered()) is True
    assert call.provisional == [180] and call.sip_status == 200 and call.state == "answered"
    dumb = ivr.dumb[call.id]
    sim.advance(1.49)
    assert ivr.notifies == []
    sim.advance(0.01)
    assert ivr.notifies == [{"id": dumb, "targetid": dumb + "/prompt", "reason": "eof"}]
    call.send_dtmf("12", interval=0.2)
    call.send_dtmf("3", method="rfc2833")
    sim.advance(0.2)
    assert ivr.digits[call.id] == "132"
    assert ivr.events == ["dtmf 1 sip-info", "dtmf 3 rfc2833", "dtmf 2 sip-info"]
    success_result_of(ivr.drop(call.id, "done"))
    assert call.ended and call.sip_status == 200
    assert call.heard() == ["wave/play/prompts/hello.slin"]
    assert ivr.events[-2:] == ["hangup " + call.id, "hangup " + dumb]
    no_leaks(sim, d)


def test_caller_hangs_up_during_a_prompt(sim: Simulator) -> None:
    sim.declare_media("long.au", 20.0)
    d = sim.connect()
    ivr = Ivr(d, prompt="long.au")
    d.watcher("chan.disconnected", lambda m: None)
    call = sim.place_call("100")
    sim.advance(2)
    call.hangup()
    dumb = ivr.dumb[call.id]
    assert ivr.notifies == [{"targetid": dumb + "/prompt", "reason": "replaced"}]
    assert ivr.events == ["hangup " + call.id, "hangup " + dumb]
    lines = [w.line for w in sim.wire if ":chan.hangup::" in w.line or
             ":chan.disconnected::" in w.line]
    assert "cause_sip=200" in lines[0] and "sip_contact=" in lines[0]
    assert lines[1].startswith("%%<message::false:chan.disconnected::cause_sip=200:")
    no_leaks(sim, d)


def test_caller_cancels_before_the_answer(sim: Simulator) -> None:
    d = sim.connect()
    Ivr(d, answer_call=False)
    call = sim.place_call("100")
    assert call.state == "ringing"
    call.hangup()
    assert call.ended and call.sip_status == 487
    no_leaks(sim, d)


@pytest.mark.parametrize("error,code", [("busy", 486), ("forbidden", 403), ("noroute", 404),
                                        ("offline", 404), ("congestion", 480),
                                        ("failure", 500), ("bogus", 500)])
def test_route_rejection_gives_the_mapped_sip_code(sim: Simulator, error: str,
                                                   code: int) -> None:
    d = sim.connect()

    def route(m: Message) -> None:
        m["error"] = error
        m.ret(True, "-")
    d.handler("call.route", route, priority=50)
    call = sim.place_call("100")
    assert call.ended and call.sip_status == code
    no_leaks(sim, d)


def test_unrouted_call_gets_404_and_a_route_timeout_too(sim: Simulator) -> None:
    d = sim.connect()
    call = sim.place_call("100")
    assert call.sip_status == 404 and call.sip_reason == "No route to call target"
    d.setlocal("timeout", 2000)
    d.handler("call.route", lambda m: None, priority=50)        # never answers
    d.answer_deadline = None
    late = sim.place_call("100")
    sim.advance(1.99)
    assert not late.ended
    sim.advance(0.01)
    assert late.sip_status == 404
    # the dispatcher still holds the unanswered message; Yate dropped it: answer it late
    for m in list(d._unanswered.values()):
        m.ret(True, "dumb/")
    assert sim.leaks() == {}


def test_early_media_then_answer(sim: Simulator) -> None:
    d = sim.connect()
    Ivr(d, progress=True)
    call = sim.place_call("100")
    assert call.provisional == [180, 183] and call.sip_status == 200


def test_route_to_a_tone_answers_unless_told_otherwise(sim: Simulator) -> None:
    d = sim.connect()

    def route(m: Message) -> None:
        if m["called"] == "2":
            m["autoanswer"] = "false"
        m.ret(True, "tone/busy")
    d.handler("call.route", route, priority=50)
    first = sim.place_call("1")
    assert first.sip_status == 200 and first.heard() == ["tone/busy"]
    second = sim.place_call("2")
    assert second.sip_status is None and second.state == "calling"
    first.hangup()
    second.hangup()
    no_leaks(sim, d)


def test_recording_maxlen_notify_and_file_sizes(sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(media_dir=str(tmp_path))
    d = sim.connect()
    ivr = Ivr(d)
    call = sim.place_call("100")
    dumb = ivr.dumb[call.id]
    for name, maxlen in (("a.slin", 16000), ("b.alaw", 16000), ("c.au", 8000)):
        ivr.masq(dumb, "chan.attach", consumer="wave/record/rec/" + name, maxlen=str(maxlen),
                 notify="rec-" + name)
        sim.advance(0.99 * maxlen / (16000 if name.endswith(".slin") else 8000))
        assert not [n for n in ivr.notifies if n["targetid"] == "rec-" + name]
        sim.advance(0.05)
        assert {"id": dumb, "targetid": "rec-" + name, "reason": "maxlen"} in ivr.notifies
    assert (tmp_path / "rec/a.slin").stat().st_size == 16000
    assert (tmp_path / "rec/b.alaw").stat().st_size == 16000
    au = (tmp_path / "rec/c.au").read_bytes()
    assert len(au) == 32 + 8000 and au[:4] == b".snd"
    assert struct.unpack(">I", au[4:8])[0] == 32
    # stopped early: no notification, the file holds what was recorded
    ivr.masq(dumb, "chan.attach", consumer="wave/record/rec/d.slin", notify="rec-d")
    sim.advance(0.5)
    ivr.masq(dumb, "chan.attach", consumer="wave/record/-")
    assert (tmp_path / "rec/d.slin").stat().st_size == 8000
    assert not [n for n in ivr.notifies if n["targetid"] == "rec-d"]
    call.hangup()
    no_leaks(sim, d)


def test_maxlen_without_notify_ends_the_call(sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(media_dir=str(tmp_path))
    d = sim.connect()
    ivr = Ivr(d)
    call = sim.place_call("100")
    ivr.masq(ivr.dumb[call.id], "chan.attach", consumer="wave/record/x.slin", maxlen="1600")
    sim.advance(0.1)
    assert call.ended
    no_leaks(sim, d)


def test_prompt_missing_replaced_and_stopped(sim: Simulator) -> None:
    sim.declare_media("a.slin", 5.0)
    sim.declare_media("gone.slin", None)
    d = sim.connect()
    ivr = Ivr(d)
    call = sim.place_call("100")
    dumb = ivr.dumb[call.id]
    ivr.masq(dumb, "chan.attach", source="wave/play/gone.slin", notify="n0")
    assert ivr.notifies == [{"targetid": "n0"}]
    ivr.masq(dumb, "chan.attach", source="wave/play/a.slin", notify="n1")
    ivr.masq(dumb, "chan.attach", source="wave/play/a.slin", notify="n2")
    assert ivr.notifies[-1] == {"targetid": "n1", "reason": "replaced"}
    ivr.masq(dumb, "chan.attach", source="-")                    # pbx: detach
    assert ivr.notifies[-1] == {"targetid": "n2", "reason": "replaced"}
    ivr.masq(dumb, "chan.attach", source="tone/ring")
    assert call.heard() == ["wave/play/gone.slin", "wave/play/a.slin", "wave/play/a.slin",
                            "tone/ring"]
    sim.advance(10)
    assert len(ivr.notifies) == 3
    call.hangup()
    no_leaks(sim, d)


def test_chan_attach_answers_false_unless_single(sim: Simulator) -> None:
    d = sim.connect()
    ivr = Ivr(d)
    call = sim.place_call("100")
    dumb = ivr.dumb[call.id]
    sim.declare_media("p.slin", 1.0)
    assert success_result_of(ivr.masq(dumb, "chan.attach", source="wave/play/p.slin")) is False
    m = d.msg("chan.masquerade", {"message": "chan.attach", "id": dumb,
                                  "source": "tone/dtmf/5", "single": "true"})
    assert success_result_of(m.dispatch()) is False and m["source"] == "tone/dtmf/5"
    m = d.msg("chan.masquerade", {"message": "chan.attach", "id": dumb,
                                  "source": "tone/dial", "single": "true"})
    assert success_result_of(m.dispatch()) is True and "source" not in m
    call.hangup()


@pytest.mark.parametrize("rfc2833,handlers_end", [(True, "sip:100,yrtp:150"),
                                                  (False, "sip:100")])
def test_sending_dtmf_to_the_caller(sim: Simulator, rfc2833: bool, handlers_end: str) -> None:
    d = sim.connect()
    ivr = Ivr(d)
    call = sim.place_call("100", rfc2833=rfc2833)
    m = d.msg("chan.dtmf", {"id": ivr.dumb[call.id], "targetid": call.id, "text": "12"})
    assert success_result_of(m.dispatch()) is True
    assert m["handlers"].endswith(handlers_end)
    assert m["targetid"].startswith("yrtp/" if rfc2833 else "sip/")
    ivr.masq(ivr.dumb[call.id], "chan.dtmf", text="3")
    assert call.dtmf_received() == "123"
    call.hangup()


def test_dropping_the_dumb_side_ends_the_caller_with_the_reason(sim: Simulator) -> None:
    d = sim.connect()
    ivr = Ivr(d, answer_call=False)
    call = sim.place_call("100")
    success_result_of(ivr.drop(ivr.dumb[call.id], "busy"))
    assert call.sip_status == 486 and call.ended
    no_leaks(sim, d)


# ------------------------------------------------------------------------------------------------
# Outbound calls
# ------------------------------------------------------------------------------------------------

def _originate(d: Dispatcher, target: str, **params: str) -> Message:
    m = d.msg("call.execute", {"callto": "dumb/", "caller": "ivr", "target": target,
                               **params})
    m.dispatch()
    return m


def test_outbound_answered_then_dropped(sim: Simulator) -> None:
    bob = sim.endpoint("bob", answer(after=2.0, progress=True))
    d = sim.connect()
    events: List[str] = []
    for name in ("call.ringing", "call.progress", "call.answered", "chan.hangup"):
        d.watcher(name, lambda m, n=name: events.append(f"{n} {m['id']}"))
    m = _originate(d, "bob", direct="sip/sip:bob@127.0.0.1:5080")
    assert m.processed is True and m["id"] == "dumb/1" and m["peerid"] == "sip/1"
    leg = bob.last
    assert leg.state == "ringing" and leg.provisional == [183, 180]
    sim.advance(2)
    assert success_result_of(leg.answered()) is True
    assert events == ["call.progress sip/1", "call.ringing sip/1", "call.answered sip/1"]
    assert sim.channels["dumb/1"].answered
    success_result_of(d.msg("call.drop", {"id": "dumb/1"}).dispatch())
    assert leg.ended and leg.bye_received
    no_leaks(sim, d)


def test_outbound_routed_through_the_endpoint_number(sim: Simulator) -> None:
    sim.endpoint("200", answer())
    d = sim.connect()
    m = _originate(d, "200")                       # no direct: call.route from dumb/1
    assert m.processed is True and m["peerid"] == "sip/1"
    assert sim.endpoints["200"].last.is_answered


@pytest.mark.parametrize("behaviour,code,reason", [(busy(), 486, "busy"),
                                                   (reject(603), 603, "forbidden"),
                                                   (reject(404), 404, "noroute")])
def test_outbound_rejected(sim: Simulator, behaviour: Any, code: int, reason: str) -> None:
    ep = sim.endpoint("bob", behaviour)
    d = sim.connect()
    disc: List[Message] = []
    d.watcher("chan.disconnected", disc.append)
    _originate(d, "bob", direct="sip/sip:bob@127.0.0.1:5080")
    assert ep.last.sip_status == code and ep.last.ended
    assert [(m["id"], m.get("reason"), m.get("cause_sip")) for m in disc] == \
        [("dumb/1", reason, str(code))]
    no_leaks(sim, d)


def test_outbound_no_answer_until_maxcall(sim: Simulator) -> None:
    ep = sim.endpoint("bob", noanswer())
    d = sim.connect()
    disc: List[Message] = []
    d.watcher("chan.disconnected", disc.append)
    _originate(d, "bob", direct="sip/sip:bob@127.0.0.1:5080", maxcall="4000")
    sim.advance(4.0)
    assert not ep.last.ended
    sim.advance(1.0)                               # checked on engine.timer ticks
    assert ep.last.ended and ep.last.cancelled
    assert disc[0]["id"] == "sip/1" and disc[0]["reason"] == "noanswer"
    assert "time" in disc[0] and "nodename" in disc[0]
    no_leaks(sim, d)


def test_unknown_callee_times_out_after_32_s(sim: Simulator) -> None:
    d = sim.connect()
    disc: List[Message] = []
    d.watcher("chan.disconnected", disc.append)
    m = _originate(d, "x", direct="sip/sip:nobody@10.0.0.9:5060")
    assert m.processed is True
    sim.advance(32)
    assert disc[0]["id"] == "dumb/1" and disc[0]["reason"] == "noconn"
    assert sim.ended_legs[0].sip_status == 408
    no_leaks(sim, d)
    assert unreachable().steps == [("timeout", 32.0)]


def test_outbound_without_target_or_unknown_driver_fails(sim: Simulator) -> None:
    d = sim.connect()
    m = d.msg("call.execute", {"callto": "dumb/", "caller": "x"})
    assert success_result_of(m.dispatch()) is False
    m = d.msg("call.execute", {"callto": "nosuch/x"})
    assert success_result_of(m.dispatch()) is False
    assert m["handlers"] == ("yrtp:50,tone:90,dumb:90,wave:90,sip:90,conf:90,callfork:100,"
                             "pbx:100")
    no_leaks(sim, d)


def test_callee_hangs_up_and_sends_dtmf(sim: Simulator) -> None:
    ep = sim.endpoint("bob", answer(hangup_after=3))
    d = sim.connect()
    got: List[str] = []
    d.handler("chan.dtmf", lambda m: got.append(m["text"]) or True, priority=50)
    _originate(d, "bob", direct="sip/sip:bob@127.0.0.1:5080")
    ep.last.send_dtmf("42")
    sim.advance(0.1)
    assert got == ["4", "2"]
    sim.advance(3)
    assert ep.last.ended and "dumb/1" not in sim.channels
    no_leaks(sim, d)


# ------------------------------------------------------------------------------------------------
# Bridges, conferences, forks
# ------------------------------------------------------------------------------------------------

def test_bridge_with_chan_connect(sim: Simulator) -> None:
    sim.endpoint("bob", answer())
    d = sim.connect()
    ivr = Ivr(d)
    call = sim.place_call("100")
    _originate(d, "bob", direct="sip/sip:bob@127.0.0.1:5080")
    leg = sim.endpoints["bob"].last
    m = d.msg("chan.connect", {"id": call.id, "targetid": leg.id, "reason": "bridged"})
    assert success_result_of(m.dispatch()) is True
    assert sim.channels[call.id].peer_id == leg.id
    assert ivr.dumb[call.id] not in sim.channels and "dumb/2" not in sim.channels
    leg.hangup()
    assert call.ended and call.sip_status == 200
    no_leaks(sim, d)


def test_conference_join_leave_lonely_and_events(sim: Simulator) -> None:
    d = sim.connect()
    ivr = Ivr(d)
    a = sim.place_call("100", caller="a")
    b = sim.place_call("100", caller="b")
    c = sim.place_call("100", caller="c")
    results = []
    for call in (a, b, c):
        m = d.msg("chan.masquerade", {"message": "call.execute", "id": call.id,
                                      "callto": "conf/room1", "notify": "room1"})
        success_result_of(m.dispatch())
        results.append((m.name, m["room"], m["newroom"], m["users"]))
    assert results == [("call.execute", "conf/room1", "true", "1"),
                       ("call.execute", "conf/room1", "false", "2"),
                       ("call.execute", "conf/room1", "false", "3")]
    assert all(dumb not in sim.channels for dumb in ivr.dumb.values())
    events = [n["event"] for n in ivr.notifies if n["targetid"] == "room1"]
    assert events == ["created", "joined", "joined", "joined"]
    a.hangup()
    assert not b.ended and not c.ended
    b.hangup()                                   # c is alone: dropped with reason hangup
    assert c.ended
    events = [n["event"] for n in ivr.notifies if n["targetid"] == "room1"]
    assert events[-4:] == ["left", "left", "left", "destroyed"]
    no_leaks(sim, d)


def test_call_conference_takes_the_old_peer_along(sim: Simulator) -> None:
    d = sim.connect()
    ivr = Ivr(d)
    a = sim.place_call("100")
    m = d.msg("chan.masquerade", {"message": "call.conference", "id": a.id,
                                  "room": "conf/r2"})
    assert success_result_of(m.dispatch()) is True
    assert (m["newroom"], m["users"]) == ("true", "2")
    dumb = sim.channels[ivr.dumb[a.id]]
    assert dumb.peer_id.startswith("conf/") and dumb.targetid == a.id
    a.hangup()                                   # the dumb is left alone: dropped
    assert dumb.id not in sim.channels
    no_leaks(sim, d)


def test_fork_first_answer_wins(sim: Simulator) -> None:
    sim.endpoint("a", noanswer())
    sim.endpoint("b", answer(after=2))
    sim.endpoint("c", busy(after=0.5))
    d = sim.connect()
    replaced: List[Message] = []
    d.watcher("chan.replaced", replaced.append)
    d.handler("call.route", lambda m: m.ret(
        True, "fork sip/sip:a@127.0.0.1:5080 sip/sip:b@127.0.0.1:5080 "
              "sip/sip:c@127.0.0.1:5080"), priority=50)
    call = sim.place_call("100")
    assert call.provisional == [180]
    sim.advance(2)
    assert call.sip_status == 200
    a, b, c = (sim.endpoints[x].last for x in "abc")
    assert (a.sip_status, b.sip_status, c.sip_status) == (487, 200, 486)
    assert a.cancelled and not b.ended
    assert replaced[0]["newid"] == b.id and replaced[0]["peerid"] == call.id
    assert sim.channels[call.id].peer_id == b.id
    call.hangup()
    assert b.ended
    no_leaks(sim, d)


def test_fork_all_fail_then_next_group(sim: Simulator) -> None:
    sim.endpoint("a", busy())
    sim.endpoint("b", reject(480))
    sim.endpoint("c", answer(after=1))
    d = sim.connect()
    d.handler("call.route", lambda m: m.ret(
        True, "fork sip/sip:a@h:5080 sip/sip:b@h:5080 | sip/sip:c@h:5080"), priority=50)
    call = sim.place_call("100")
    sim.advance(1)
    assert call.sip_status == 200 and call.peer_id == sim.endpoints["c"].last.id
    call.hangup()
    no_leaks(sim, d)


def test_fork_caller_gives_up(sim: Simulator) -> None:
    sim.endpoint("a", noanswer())
    sim.endpoint("b", noanswer())
    d = sim.connect()
    d.handler("call.route", lambda m: m.ret(True, "fork sip/sip:a@h:5080 sip/sip:b@h:5080"),
              priority=50)
    call = sim.place_call("100")
    call.hangup()
    assert all(sim.endpoints[x].last.cancelled for x in "ab")
    no_leaks(sim, d)


def test_fork_everyone_busy_rejects_the_caller(sim: Simulator) -> None:
    sim.endpoint("a", busy())
    sim.endpoint("b", busy())
    d = sim.connect()
    d.handler("call.route", lambda m: m.ret(True, "fork sip/sip:a@h:5080 sip/sip:b@h:5080"),
              priority=50)
    call = sim.place_call("100")
    assert call.ended and call.sip_status == 486
    no_leaks(sim, d)


# ------------------------------------------------------------------------------------------------
# Test helpers
# ------------------------------------------------------------------------------------------------

def test_expect_line_names_the_unexpected_line(sim: Simulator) -> None:
    raw = sim.connect_raw()
    raw.send("%%>install:50:a", "%%>install:50:b")
    sim.expect_line(r"^%%<install:50:a:true$")
    with pytest.raises(AssertionError, match=r"unexpected line .*%%<install:50:b:true"):
        sim.expect_line(r"^%%<install:50:c:true$")
    sim.expect_line(r"install:50:b", direction=">>", skip=True)
    sim.expect_line(r"^%%<install:50:b:true$")
    sim.expect_no_more_lines()
    raw.send("%%>install:50:c")
    with pytest.raises(AssertionError, match="install:50:c:true"):
        sim.expect_no_more_lines()


def test_wire_log_records_time_connection_and_direction(sim: Simulator) -> None:
    raw = sim.connect_raw(name="probe")
    sim.advance(1.5)
    raw.send("%%>watch:x")
    assert [(w.time, w.conn, w.direction, w.line) for w in sim.wire] == [
        (1.5, "probe", ">>", "%%>watch:x"), (1.5, "probe", "<<", "%%<watch:x:true")]


def test_many_calls_leave_nothing_behind(sim: Simulator) -> None:
    sim.declare_media("p.slin", 0.5)
    d = sim.connect()
    ivr = Ivr(d, prompt="p.slin")
    calls = [sim.place_call("100", caller=str(i)) for i in range(200)]
    sim.advance(1)
    for i, call in enumerate(calls):
        if i % 2:
            call.hangup()
        else:
            ivr.drop(call.id)
    assert all(c.ended for c in calls)
    assert len(ivr.notifies) == 200
    no_leaks(sim, d)


@pytest.mark.parametrize("reason,code,hangup_reason", [("cancelled", 487, "Request Terminated"),
                                                       ("busy", 486, "Busy Here"),
                                                       ("", 487, "Request Terminated")])
def test_dropping_an_unanswered_caller(sim: Simulator, reason: str, code: int,
                                       hangup_reason: str) -> None:
    """ysipchan starts with reason "Request Terminated"/487; msgDrop overrides only mapped
    reasons (dict_errors), so an unknown one ends the INVITE with 487."""
    d = sim.connect()
    ivr = Ivr(d, answer_call=False)
    hangups: List[Message] = []
    d.watcher("chan.hangup", hangups.append)
    call = sim.place_call("100")
    success_result_of(ivr.drop(call.id, reason))
    assert call.sip_status == code
    assert [m.get("reason") for m in hangups if m["id"] == call.id] == [hangup_reason]
    no_leaks(sim, d)


def test_routing_an_incoming_call_straight_to_a_sip_callee(sim: Simulator) -> None:
    """A proxy: call.route answered with sip/...; the callee's answer answers the caller."""
    bob = sim.endpoint("bob", answer(after=1.0))
    d = sim.connect()
    d.handler("call.route", lambda m: m.ret(True, "sip/sip:bob@127.0.0.1:5080"), priority=50)
    call = sim.place_call("100")
    assert call.provisional == [180] and call.sip_status is None
    sim.advance(1.0)
    assert call.sip_status == 200 and call.peer_id == bob.last.id
    bob.last.hangup()
    assert call.ended
    no_leaks(sim, d)
