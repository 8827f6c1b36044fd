"""Dispatcher: exactly-once answers, waits and their cleanup, installs, dispatch, reconnects.

Everything runs over :class:`MemoryConnection` on a ``task.Clock``; lines are compared
literally, as Yate would see them.
"""

from __future__ import annotations

import gc
import warnings

import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs

from yaypm.dispatcher import (AbandonedException, DisconnectedException, Dispatcher,
                              InstallError, LineTooLongError, YateError)
from yaypm.testing import (MemoryConnection, assert_no_result, failure_result_of,
                           success_result_of)

ROUTE = "%%>message:0x7f.1:1795366856:call.route::id=sip/1:caller=alice:called=ivr"
ROUTE_OTHER = "%%>message:0x7f.2:1795366856:call.route::id=sip/2:caller=bob:called=100"


def confirm(conn: MemoryConnection) -> None:
    """Answer every install/watch the dispatcher wrote with success, as Yate does."""
    for line in conn.take():
        if line.startswith("%%>install:"):
            prio, name = line[11:].split(":")[:2]
            conn.feed(f"%%<install:{prio or 100}:{name}:true")
        elif line.startswith("%%>watch:"):
            conn.feed(f"%%<watch:{line[9:]}:true")


def messages(logs):
    return [e.get("log_format", "") for e in logs]


# --------------------------------------------------------------------------------------------
# Exactly one answer per engine message
# --------------------------------------------------------------------------------------------

def test_unhandled_message_is_answered_false_at_once():
    conn = MemoryConnection()
    conn.feed(ROUTE)
    assert conn.take() == ["%%<message:0x7f.1:false:"]
    assert conn.dispatcher.pending_count() == 0


def test_install_sent_once_per_name_and_confirmed():
    conn = MemoryConnection()
    d1 = conn.dispatcher.onmsg("call.route")
    d2 = conn.dispatcher.onmsg("call.route", priority=10)
    inst = conn.dispatcher.install("call.route")
    assert conn.take() == ["%%>install:100:call.route"]
    assert_no_result(inst)
    conn.feed("%%<install:100:call.route:true")
    assert success_result_of(inst) == 100
    assert success_result_of(conn.dispatcher.install("call.route")) == 100
    assert conn.take() == []
    assert_no_result(d1)
    assert_no_result(d2)


def test_refused_install_fails_the_waiters():
    conn = MemoryConnection()
    d = conn.dispatcher.onmsg("test.a")
    reg = conn.dispatcher.handler("test.a", lambda m: True)
    conn.take()
    conn.feed("%%<install:100:test.a:false")
    failure_result_of(d, InstallError)
    failure_result_of(reg.installed, InstallError)
    assert conn.dispatcher.pending_count() == 0
    conn.feed(ROUTE.replace("call.route", "test.a"))
    assert conn.take() == ["%%<message:0x7f.1:false:"]


def test_guards_are_tried_in_registration_order():
    conn = MemoryConnection()
    got = []
    first = conn.dispatcher.onmsg("call.route", lambda m: m["called"] == "ivr")
    second = conn.dispatcher.onmsg("call.route")
    first.addCallback(lambda m: got.append(("first", m["id"])))
    second.addCallback(lambda m: got.append(("second", m["id"])))
    confirm(conn)
    conn.feed(ROUTE_OTHER)           # the first guard refuses: the second wait takes it
    conn.feed(ROUTE)                 # the first wait takes it
    assert got == [("second", "sip/2"), ("first", "sip/1")]


def test_a_raising_guard_counts_as_no_match():
    conn = MemoryConnection()
    d = conn.dispatcher.onmsg("call.route", lambda m: m["nosuchkey"] == "x")
    confirm(conn)
    with capturedLogs() as logs:
        conn.feed(ROUTE)
    assert conn.take() == ["%%<message:0x7f.1:false:"]
    assert any("Guard" in f for f in messages(logs))
    assert_no_result(d)


def test_wiki_route_answer():
    conn = MemoryConnection()
    d = conn.dispatcher.onmsg("call.route", lambda m: m["called"] == "ivr")
    d.addCallback(lambda route: route.ret(True, "dumb/"))
    confirm(conn)
    conn.feed(ROUTE)
    assert conn.take() == ["%%<message:0x7f.1:true:call.route:dumb/"]
    assert conn.dispatcher.pending_count() == 0


def test_autoreturn_answers_before_callbacks_run():
    conn = MemoryConnection()
    seen = []
    d = conn.dispatcher.onmsg("chan.hangup", autoreturn=True)
    d.addCallback(lambda m: seen.append((m.answered, list(conn.written))))
    confirm(conn)
    conn.feed("%%>message:0x7f.3:1:chan.hangup::id=sip/1")
    assert seen == [(True, ["%%<message:0x7f.3:true:chan.hangup:"])]


def test_callback_raising_answers_false_and_logs():
    conn = MemoryConnection()
    d = conn.dispatcher.onmsg("call.route")
    d.addCallback(lambda m: 1 / 0)
    confirm(conn)
    with capturedLogs() as logs:
        conn.feed(ROUTE)
    assert conn.take() == ["%%<message:0x7f.1:false:"]
    assert [e["log_failure"].type for e in logs if "log_failure" in e] == [ZeroDivisionError]
    assert conn.dispatcher.pending_count() == 0


def test_callback_failing_later_answers_false():
    conn = MemoryConnection()
    later: Deferred = Deferred()
    d = conn.dispatcher.onmsg("call.route")
    d.addCallback(lambda m: later)
    confirm(conn)
    conn.feed(ROUTE)
    assert conn.take() == []
    with capturedLogs():
        later.errback(RuntimeError("database down"))
    assert conn.take() == ["%%<message:0x7f.1:false:"]
    assert conn.clock.getDelayedCalls() == []


def test_duplicate_ret_is_ignored_with_a_warning():
    conn = MemoryConnection()
    d = conn.dispatcher.onmsg("call.route")
    confirm(conn)
    conn.feed(ROUTE)
    m = success_result_of(d)
    m.ret(True, "dumb/")
    with capturedLogs() as logs:
        m.ret(False)
    assert conn.take() == ["%%<message:0x7f.1:true:call.route:dumb/"]
    assert any("twice" in f for f in messages(logs))


def test_answer_carries_changed_deleted_params_and_new_name():
    """yate-extmodule.md vector 12 and trace A2 (test.mod), produced by the dispatcher."""
    conn = MemoryConnection()
    d = conn.dispatcher.onmsg("test.mod")
    confirm(conn)
    conn.feed("%%>message:0x7f.5:1795369135:test.mod:orig:keep=1:remove_me=2")
    m = success_result_of(d)
    m["added"] = "yes"
    del m["remove_me"]
    m.ret(True, "changed retval")
    assert conn.take() == [
        "%%<message:0x7f.5:true:test.mod:changed retval:added=yes:remove_me"]

    d = conn.dispatcher.onmsg("x.test")
    confirm(conn)
    conn.feed("%%>message:0x7f.6:0:x.test:orig:a=1:b=2")
    m = success_result_of(d)
    del m["a"]
    m["b"] = "changed"
    m["z"] = "new:value"
    m.name = "x.renamed"
    m.ret(False, "rv2")
    assert conn.take() == [
        "%%<message:0x7f.6:false:x.renamed:rv2:b=changed:z=new%zvalue:a"]


def test_answer_deadline_answers_a_forgotten_message():
    conn = MemoryConnection()
    d = conn.dispatcher.onmsg("call.route")
    confirm(conn)
    conn.feed(ROUTE)
    m = success_result_of(d)
    conn.clock.advance(8.9)
    assert conn.take() == []
    with capturedLogs() as logs:
        conn.clock.advance(0.1)
    assert conn.take() == ["%%<message:0x7f.1:false:"]
    assert any("No answer" in f for f in messages(logs))
    assert conn.clock.getDelayedCalls() == []
    with capturedLogs():
        m.ret(True)                   # too late: Yate has its answer already
    assert conn.take() == []
    assert conn.dispatcher.pending_count() == 0


def test_answering_in_time_cancels_the_deadline():
    conn = MemoryConnection()
    d = conn.dispatcher.onmsg("call.route")
    confirm(conn)
    conn.feed(ROUTE)
    m = success_result_of(d)
    assert len(conn.clock.getDelayedCalls()) == 1
    conn.clock.advance(5)
    m.ret(True, "dumb/")
    assert conn.clock.getDelayedCalls() == []


# --------------------------------------------------------------------------------------------
# Persistent handlers
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("result, answer", [
    (True, "%%<message:0x7f.1:true:call.route:"),
    (False, "%%<message:0x7f.1:false:"),
    (defer.succeed(True), "%%<message:0x7f.1:true:call.route:"),
    (defer.succeed(False), "%%<message:0x7f.1:false:"),
])
def test_handler_return_value_becomes_the_answer(result, answer):
    conn = MemoryConnection()
    reg = conn.dispatcher.handler("call.route", lambda m: result, priority=50)
    assert conn.take() == ["%%>install:50:call.route"]
    conn.feed("%%<install:50:call.route:true")
    assert success_result_of(reg.installed) == 50
    conn.feed(ROUTE)
    assert conn.take() == [answer]
    assert conn.clock.getDelayedCalls() == []


def test_handler_deferred_answer_later():
    conn = MemoryConnection()
    later: Deferred = Deferred()
    conn.dispatcher.handler("call.route", lambda m: later)
    confirm(conn)
    conn.feed(ROUTE)
    assert conn.take() == []
    later.callback(True)
    assert conn.take() == ["%%<message:0x7f.1:true:call.route:"]
    assert conn.clock.getDelayedCalls() == []


def test_handler_answers_itself_later():
    conn = MemoryConnection()
    held = []
    conn.dispatcher.handler("call.route", held.append)
    confirm(conn)
    conn.feed(ROUTE, ROUTE_OTHER)
    assert conn.take() == []
    held[1].ret(True, "tone/busy")
    held[0].ret(False)
    assert conn.take() == ["%%<message:0x7f.2:true:call.route:tone/busy",
                           "%%<message:0x7f.1:false:"]
    assert conn.dispatcher.pending_count() == 0


@pytest.mark.parametrize("make", [
    lambda m: 1 / 0,
    lambda m: defer.fail(ZeroDivisionError()),
])
def test_handler_raising_or_failing_answers_false_and_logs(make):
    conn = MemoryConnection()
    conn.dispatcher.handler("call.route", make)
    confirm(conn)
    with capturedLogs() as logs:
        conn.feed(ROUTE)
    assert conn.take() == ["%%<message:0x7f.1:false:"]
    assert [e["log_failure"].type for e in logs if "log_failure" in e] == [ZeroDivisionError]
    assert conn.clock.getDelayedCalls() == []


def test_one_shot_waits_are_served_before_handlers():
    conn = MemoryConnection()
    seen = []
    conn.dispatcher.handler("call.route", lambda m: seen.append("handler") or False)
    d = conn.dispatcher.onmsg("call.route", autoreturn=True)
    d.addCallback(lambda m: seen.append("wait"))
    confirm(conn)
    conn.feed(ROUTE, ROUTE_OTHER)
    assert seen == ["wait", "handler"]


def test_cancelled_handler_no_longer_called():
    conn = MemoryConnection()
    reg = conn.dispatcher.handler("call.route", lambda m: True)
    confirm(conn)
    reg.cancel()
    conn.feed(ROUTE)
    assert conn.take() == ["%%<message:0x7f.1:false:"]


# --------------------------------------------------------------------------------------------
# until= and cancellation
# --------------------------------------------------------------------------------------------

def test_until_abandons_the_wait():
    conn = MemoryConnection()
    hangup: Deferred = Deferred()
    d = conn.dispatcher.onmsg("call.answered", until=hangup)
    confirm(conn)
    hangup.callback("bye")
    f = failure_result_of(d, AbandonedException)
    assert f.value.cause == "bye"
    assert conn.dispatcher.pending_count() == 0
    conn.feed("%%>message:0x7f.9:1:call.answered::targetid=x")
    assert conn.take() == ["%%<message:0x7f.9:false:"]


def test_until_already_fired_abandons_at_once():
    conn = MemoryConnection()
    d = conn.dispatcher.onwatch("chan.hangup", until=defer.succeed("gone"))
    assert failure_result_of(d, AbandonedException).value.cause == "gone"
    assert conn.dispatcher.waiting_count() == 0


def test_until_chained_onmsg_wiki_style():
    """Wiki: wait for call.answered until chan.hangup arrives (autoreturned)."""
    conn = MemoryConnection()
    callid = "sip/1"
    end = conn.dispatcher.onmsg("chan.hangup", lambda m: m["id"] == callid, autoreturn=True)
    d = conn.dispatcher.onmsg("call.answered", lambda m: m["targetid"] == callid, until=end)
    confirm(conn)
    conn.feed("%%>message:0x7f.4:1:chan.hangup::id=sip/1:reason=bye")
    assert conn.take() == ["%%<message:0x7f.4:true:chan.hangup:"]
    f = failure_result_of(d, AbandonedException)
    assert f.value.cause["reason"] == "bye"
    assert conn.dispatcher.pending_count() == 0


def test_cancel_removes_the_wait():
    conn = MemoryConnection()
    d = conn.dispatcher.onmsg("call.route")
    confirm(conn)
    d.cancel()
    failure_result_of(d, AbandonedException)
    assert conn.dispatcher.pending_count() == 0
    conn.feed(ROUTE)
    assert conn.take() == ["%%<message:0x7f.1:false:"]


def _callbacks(d: Deferred) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # read-only introspection
        return len(d.callbacks)


def test_thousands_of_waits_leave_nothing_behind():
    conn = MemoryConnection()
    disp = conn.dispatcher
    hangup: Deferred = Deferred()
    confirm(conn)
    disp.install("chan.dtmf")
    disp.watch("chan.notify")
    confirm(conn)
    base = _callbacks(hangup)
    for i in range(3000):
        # waits that end by message, by cancellation and by their own until
        d1 = disp.onmsg("chan.dtmf", lambda m, i=i: m["n"] == str(i), until=hangup)
        d2 = disp.onwatch("chan.notify", lambda m, i=i: m["n"] == str(i), until=hangup)
        d3 = disp.onmsg("chan.dtmf", until=hangup)
        d4 = disp.onwatch("chan.notify", until=hangup)
        mine: Deferred = Deferred()
        d5 = disp.onmsg("chan.dtmf", until=mine)
        d6 = disp.onwatch("chan.notify", until=mine)
        d3.cancel()
        d4.cancel()
        mine.callback(None)
        conn.feed(f"%%>message:0x7f.{i}:1:chan.dtmf::n={i}",
                  f"%%<message::false:chan.notify::n={i}")
        success_result_of(d1).ret(True)
        success_result_of(d2)
        for d in (d3, d4, d5, d6):
            failure_result_of(d, AbandonedException)
        assert _callbacks(hangup) <= base + 1
    assert disp.pending_count() == 0
    assert disp.waiting_count() == 0
    assert conn.clock.getDelayedCalls() == []
    assert _callbacks(hangup) <= base + 1
    del mine, d5, d6
    gc.collect()
    assert len(disp._untils) <= 1          # the one live until; the fired ones are gone
    # and the shared until still abandons a wait registered now
    d = disp.onmsg("chan.dtmf", until=hangup)
    hangup.callback("hangup")
    failure_result_of(d, AbandonedException)
    assert disp.pending_count() == 0


# --------------------------------------------------------------------------------------------
# Watches
# --------------------------------------------------------------------------------------------

def test_onwatch_and_watcher_receive_notifications():
    conn = MemoryConnection()
    seen = []
    d = conn.dispatcher.onwatch("chan.notify", lambda m: m["targetid"] == "prompt1")
    reg = conn.dispatcher.watcher("chan.notify", lambda m: seen.append(m.params))
    everything = conn.dispatcher.watcher("", lambda m: seen.append(m.name))
    assert conn.take() == ["%%>watch:chan.notify", "%%>watch:"]
    conn.feed("%%<watch:chan.notify:true", "%%<watch::true")
    assert success_result_of(reg.installed) is True
    assert success_result_of(everything.installed) is True
    conn.feed("%%<message::false:chan.notify::targetid=other",
              "%%<message::false:chan.notify::targetid=prompt1:reason=replaced")
    m = success_result_of(d)
    assert (m.name, m.processed, m["reason"]) == ("chan.notify", False, "replaced")
    assert seen == [[("targetid", "other")], "chan.notify",
                    [("targetid", "prompt1"), ("reason", "replaced")], "chan.notify"]
    assert conn.take() == []                  # notifications are never answered


def test_refused_watch_fails_waiters():
    conn = MemoryConnection()
    d = conn.dispatcher.onwatch("test.w")
    conn.take()
    conn.feed("%%<watch:test.w:false")
    failure_result_of(d, InstallError)
    assert conn.dispatcher.pending_count() == 0


def test_unwatch_and_uninstall():
    conn = MemoryConnection()
    disp = conn.dispatcher
    disp.watch("test.w")
    disp.install("test.a", 50)
    confirm(conn)
    u1 = disp.unwatch("test.w")
    u2 = disp.uninstall("test.a")
    assert conn.take() == ["%%>unwatch:test.w", "%%>uninstall:test.a"]
    conn.feed("%%<unwatch:test.w:true", "%%<uninstall:50:test.a:true")
    assert success_result_of(u1) is True and success_result_of(u2) is True
    assert disp.pending_count() == 0


# --------------------------------------------------------------------------------------------
# Dispatching our own messages
# --------------------------------------------------------------------------------------------

def test_dispatch_answer_updates_name_params_and_retvalue():
    conn = MemoryConnection()
    m = conn.dispatcher.msg("chan.masquerade", {"message": "call.answered", "id": "dumb/1"})
    d = m.dispatch()
    [line] = conn.take()
    ident = m.id
    assert line == f"%%>message:{ident}::chan.masquerade::message=call.answered:id=dumb/1"
    conn.feed(f"%%<message:{ident}:true:call.answered:ok:id=dumb/1:handlers=dumb%z100")
    assert success_result_of(d) is True
    assert (m.name, m.retvalue, m.processed) == ("call.answered", "ok", True)
    assert m.params == [("id", "dumb/1"), ("handlers", "dumb:100")]
    assert conn.dispatcher.pending_count() == 0


def test_dispatch_minimal_answer_changes_nothing():
    conn = MemoryConnection()
    m = conn.dispatcher.msg("x.test", {"a": "1"}, "orig")
    d = m.dispatch()
    conn.take()
    conn.feed(f"%%<message:{m.id}:false:")
    assert success_result_of(d) is False
    assert (m.name, m.retvalue, m.params) == ("x.test", "orig", [("a", "1")])


def test_enqueue_is_fire_and_forget():
    conn = MemoryConnection()
    conn.dispatcher.msg("chan.masquerade", [("message", "chan.attach"),
                                            ("id", "dumb/1")]).enqueue()
    assert conn.take() == ["%%>message:::chan.masquerade::message=chan.attach:id=dumb/1"]
    assert conn.dispatcher.pending_count() == 0


def test_answer_for_unknown_id_is_ignored():
    conn = MemoryConnection()
    with capturedLogs() as logs:
        conn.feed("%%<message:nosuchid:true:x:")
    assert any("unknown" in f for f in messages(logs))


def test_msg_refuses_keys_yate_cannot_receive():
    conn = MemoryConnection()
    for bad in ({"a=b": "1"}, {"": "1"}):
        with pytest.raises(ValueError):
            conn.dispatcher.msg("x", bad)


def test_error_in_for_our_dispatch_fails_it():
    conn = MemoryConnection()
    m = conn.dispatcher.msg("x.test", {"a": "1"})
    d = m.dispatch()
    [line] = conn.take()
    conn.feed("Error in: " + line)
    failure_result_of(d, YateError)
    assert conn.dispatcher.pending_count() == 0


# --------------------------------------------------------------------------------------------
# setlocal, bufsize, Error in
# --------------------------------------------------------------------------------------------

def test_setlocal_fires_with_yate_value_and_fails_on_false():
    conn = MemoryConnection()
    d1 = conn.dispatcher.setlocal("timeout", 2500)
    d2 = conn.dispatcher.setlocal("id", "foo")
    d3 = conn.dispatcher.engine_version()
    assert conn.take() == ["%%>setlocal:timeout:2500", "%%>setlocal:id:foo",
                           "%%>setlocal:engine.version:"]
    conn.feed("%%<setlocal:timeout:2500:true", "%%<setlocal:id:foo:false",
              "%%<setlocal:engine.version:6.4.1:true")
    assert success_result_of(d1) == "2500"
    failure_result_of(d2, YateError)
    assert success_result_of(d3) == "6.4.1"
    assert conn.dispatcher.pending_count() == 0


def test_error_in_for_our_setlocal_fails_it():
    conn = MemoryConnection()
    d = conn.dispatcher.setlocal("timeout", 1000)
    after = conn.dispatcher.setlocal("reenter", True)
    conn.take()
    conn.feed("Error in: %%>setlocal:timeout:1000", "%%<setlocal:reenter:true:true")
    failure_result_of(d, YateError)
    assert success_result_of(after) == "true"
    assert conn.dispatcher.pending_count() == 0


def test_unrelated_error_in_is_logged():
    conn = MemoryConnection()
    with capturedLogs() as logs:
        conn.feed("Error in: garbage")
    assert any("refused" in f for f in messages(logs))


def test_line_longer_than_bufsize_is_refused_and_bufsize_follows_setlocal():
    conn = MemoryConnection()
    disp = conn.dispatcher
    head = "%%>message:yp1::test.x::data="
    ok = disp.msg("test.x", {"data": "x" * (8190 - len(head))})
    ok.dispatch()
    assert len(conn.take()[0]) == 8190
    too_long = disp.msg("test.x", {"data": "x" * (8191 - len(head))})
    failure_result_of(too_long.dispatch(), LineTooLongError)
    with pytest.raises(LineTooLongError):
        disp.msg("test.x", {"data": "x" * 8200}).enqueue()
    assert conn.take() == []
    utf8 = disp.msg("test.x", {"data": "é" * 4100})          # 8200 bytes, 4100 characters
    failure_result_of(utf8.dispatch(), LineTooLongError)
    d = disp.setlocal("bufsize", 16384)
    conn.take()
    conn.feed("%%<setlocal:bufsize:16384:true")
    assert success_result_of(d) == "16384" and disp.bufsize == 16384
    disp.msg("test.x", {"data": "x" * 8200}).enqueue()
    assert len(conn.take()) == 1
    disp.setlocal("bufsize", 10)
    conn.feed("%%<setlocal:bufsize:2048:true")            # Yate clamps; we follow its value
    assert disp.bufsize == 2048


def test_too_long_answer_falls_back_to_minimal_answer():
    conn = MemoryConnection()
    d = conn.dispatcher.onmsg("call.route")
    confirm(conn)
    conn.feed(ROUTE)
    m = success_result_of(d)
    m["huge"] = "x" * 9000
    with capturedLogs():
        m.ret(True)
    assert conn.take() == ["%%<message:0x7f.1:false:"]


def test_malformed_lines_are_logged_and_the_dispatcher_goes_on():
    conn = MemoryConnection()
    d = conn.dispatcher.onmsg("call.route")
    confirm(conn)
    with capturedLogs() as logs:
        conn.feed("%%>message:0x7f.1:notatime:call.route:",
                  "%%>message:0x7f.1:0:call.route::bad=%a",
                  "complete garbage", "", ROUTE)
    errors = [e for e in logs if "Unparseable" in e.get("log_format", "")]
    assert len(errors) == 3
    assert "notatime" in errors[0]["error"]
    assert success_result_of(d)["called"] == "ivr"


# --------------------------------------------------------------------------------------------
# Disconnect and reconnect
# --------------------------------------------------------------------------------------------

def test_disconnect_fails_outstanding_dispatch_and_setlocal():
    conn = MemoryConnection()
    d1 = conn.dispatcher.msg("x.test").dispatch()
    d2 = conn.dispatcher.setlocal("timeout", 1000)
    wait = conn.dispatcher.onmsg("call.route")
    conn.take()
    conn.disconnect("socket closed")
    failure_result_of(d1, DisconnectedException)
    failure_result_of(d2, DisconnectedException)
    assert_no_result(wait)                    # waits for new messages survive a reconnect
    failure_result_of(conn.dispatcher.msg("x.test").dispatch(), DisconnectedException)
    failure_result_of(conn.dispatcher.setlocal("reason", "x"), DisconnectedException)
    with pytest.raises(DisconnectedException):
        conn.dispatcher.msg("x.test").enqueue()


def test_messages_pending_at_disconnect_are_not_answered_on_the_new_connection():
    conn = MemoryConnection()
    d = conn.dispatcher.onmsg("call.route")
    confirm(conn)
    conn.feed(ROUTE)
    m = success_result_of(d)
    conn.disconnect()
    conn.reconnect()
    conn.take()
    m.ret(True)                               # Yate released it as unhandled (§8)
    assert conn.take() == []
    assert conn.clock.getDelayedCalls() == []
    assert conn.dispatcher.pending_count() <= 1  # only the re-sent install, unconfirmed


def test_reconnect_resends_setlocals_installs_watches_in_order():
    conn = MemoryConnection(role="global")
    disp = conn.dispatcher
    assert conn.take() == ["%%>connect:global"]
    disp.setlocal("trackparam", "myapp")
    disp.setlocal("engine.version")           # queries are not remembered
    disp.onmsg("call.route", priority=50)
    disp.handler("chan.dtmf", lambda m: True, filter=("targetid", "ivr/1"))
    disp.onwatch("call.execute")
    disp.setlocal("timeout", 2000)
    first = conn.take()
    assert first == ["%%>setlocal:trackparam:myapp", "%%>setlocal:engine.version:",
                     "%%>install:50:call.route", "%%>install:100:chan.dtmf:targetid:ivr/1",
                     "%%>watch:call.execute", "%%>setlocal:timeout:2000"]
    conn.disconnect()
    conn.reconnect()
    assert conn.take() == ["%%>connect:global", "%%>setlocal:trackparam:myapp",
                           "%%>setlocal:timeout:2000", "%%>install:50:call.route",
                           "%%>install:100:chan.dtmf:targetid:ivr/1", "%%>watch:call.execute"]
    conn.feed("%%<setlocal:trackparam:myapp:true", "%%<setlocal:timeout:2000:true",
              "%%<install:50:call.route:true", "%%<install:100:chan.dtmf:true",
              "%%<watch:call.execute:true")
    assert disp.pending_count() == 2          # the two one-shot waits, nothing else
    conn.feed(ROUTE)
    assert conn.take() == []                  # the onmsg wait got it


def test_stats_count_what_happened():
    conn = MemoryConnection()
    conn.feed(ROUTE)
    assert conn.dispatcher.stats["received"] == 1
    assert conn.dispatcher.stats["unhandled"] == 1


def test_dispatcher_without_clock_uses_the_reactor():
    from twisted.internet import reactor
    assert Dispatcher().clock is reactor


# --------------------------------------------------------------------------------------------
# A script written from the YAYPM wiki snippets runs unchanged
# --------------------------------------------------------------------------------------------

def wiki_start(yate):
    """Written from the YAYPM documentation (seed 003), only print() made Python 3."""
    results = {}

    def on_route(route):
        callid = route["id"]
        route.ret(True, "dumb/")
        end = yate.onmsg("chan.hangup", lambda m: m["id"] == callid, autoreturn=True)
        answered = yate.onmsg("call.answered", lambda m: m["targetid"] == callid, until=end)
        answered.addCallback(on_answered, callid)
        answered.addErrback(lambda f: f.trap(AbandonedException))
        watched = yate.onwatch("call.execute", lambda m: m["id"] == callid)
        watched.addCallback(lambda m: results.setdefault("executed", m["callto"]))
        return route

    def on_answered(answered, callid):
        answered.ret(False)
        notify = yate.msg("chan.masquerade",
                          {"message": "chan.attach", "id": answered["id"],
                           "source": "wave/play/hello.slin", "notify": callid})
        notify.enqueue()
        status = yate.msg("engine.status", {"module": "extmodule"})
        d = status.dispatch()
        d.addCallback(lambda processed: results.setdefault("status", (processed,
                                                                      status.getRetValue())))

    d = yate.onmsg("call.route", lambda m: m["called"] == "ivr")
    d.addCallback(on_route)
    return results


def test_wiki_snippet_script_runs_unchanged():
    conn = MemoryConnection()
    results = wiki_start(conn.dispatcher)
    assert conn.take() == ["%%>install:100:call.route"]
    conn.feed("%%<install:100:call.route:true", ROUTE)
    assert conn.take() == ["%%<message:0x7f.1:true:call.route:dumb/",
                           "%%>install:100:chan.hangup", "%%>install:100:call.answered",
                           "%%>watch:call.execute"]
    conn.feed("%%<install:100:chan.hangup:true", "%%<install:100:call.answered:true",
              "%%<watch:call.execute:true",
              "%%<message::true:call.execute::id=sip/1:callto=dumb/:peerid=dumb/3",
              "%%>message:0x7f.7:1795366857:call.answered::id=dumb/3:targetid=sip/1")
    out = conn.take()
    assert out[0] == "%%<message:0x7f.7:false:"
    assert out[1] == ("%%>message:::chan.masquerade::message=chan.attach:id=dumb/3"
                      ":source=wave/play/hello.slin:notify=sip/1")
    ident = out[2].split(":")[1]
    assert out[2] == f"%%>message:{ident}::engine.status::module=extmodule"
    conn.feed(f"%%<message:{ident}:true:engine.status:name=extmodule%M%J:module=extmodule",
              "%%>message:0x7f.8:1795366860:chan.hangup::id=sip/1")
    assert conn.take() == ["%%<message:0x7f.8:true:chan.hangup:"]
    assert results == {"executed": "dumb/", "status": (True, "name=extmodule\r\n")}
    assert conn.dispatcher.pending_count() == 0


def test_answer_deadline_follows_yate_timeout():
    conn = MemoryConnection()
    conn.dispatcher.setlocal("timeout", 1000)
    conn.feed("%%<setlocal:timeout:1000:true")
    d = conn.dispatcher.onmsg("test.slow")
    confirm(conn)
    conn.feed("%%>message:0x7f.1:0:test.slow::n=1")
    success_result_of(d)
    conn.clock.advance(0.89)
    assert conn.take() == []
    with capturedLogs():
        conn.clock.advance(0.01)
    assert conn.take() == ["%%<message:0x7f.1:false:"]
    conn.dispatcher.setlocal("timeout", 0)
    conn.feed("%%<setlocal:timeout:0:true")
    assert conn.dispatcher.answer_deadline == 9.0


def test_wire_lines_are_logged_unless_turned_off():
    conn = MemoryConnection()
    with capturedLogs() as logs:
        conn.feed(ROUTE)
    assert [e["line"] for e in logs if e.get("log_namespace") == "yaypm.wire"] == [
        ROUTE, "%%<message:0x7f.1:false:"]
    conn.dispatcher.log_wire = False
    with capturedLogs() as logs:
        conn.feed(ROUTE)
    assert not [e for e in logs if e.get("log_namespace") == "yaypm.wire"]


def test_channel_script_handler_without_install_gets_the_unasked_call_execute():
    """A channel script is handed call.execute without installing it (extmodule §9.2)."""
    seen = []

    def start(d):
        def execute(m):
            seen.append(m["id"])
            d.setlocal("id", "myivr/1")
            m["targetid"] = "myivr/1"
            return True
        d.handler("call.execute", execute, install=False)

    conn = MemoryConnection(start)
    assert conn.take() == []                           # nothing installed
    conn.feed("%%>message:0x7f.1:1795366986:call.execute::id=sip/6:callto=external/nodata/x.py")
    assert seen == ["sip/6"]
    assert conn.take() == ["%%>setlocal:id:myivr/1",
                           "%%<message:0x7f.1:true:call.execute::targetid=myivr/1"]
