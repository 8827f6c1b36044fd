"""EmbeddedDispatcher without Yate: the host API (_yaypmhost) replaced by a small fake.

The fake keeps the contract the C++ module implements (ids for installs and watches, a raw
message that is live until answered, a read-only snapshot after ret(), released on timeout),
so these tests pin the Python half: one answer per message, guards, until, cancellation,
dispatch results, watches, close().
"""

from __future__ import annotations

import itertools
from typing import Any, List, Optional, Tuple

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from yaypm.dispatcher import AbandonedException, DisconnectedException, YateError
from yaypm.embedded import EmbeddedDispatcher, EmbeddedMessage, MessageReleasedError
from yaypm.testing import assert_no_result, failure_result_of, success_result_of


class FakeRaw:
    """_yaypmhost.RawMessage: live until ret() (then a snapshot) or release() (then gone)."""

    _ids = itertools.count(1)

    def __init__(self, name: str, params: List[Tuple[str, str]], retvalue: str = "") -> None:
        self._name, self._params, self._ret = name, [list(p) for p in params], retvalue
        self.alive, self.answered, self.handled = True, False, None
        self.id, self.time, self.broadcast, self.handler_id = f"raw{next(self._ids)}", 0, False, 1
        self._snapshot = False

    def _check(self, write: bool = False) -> None:
        if not self.alive and (write or not self._snapshot):
            raise MessageReleasedError(f"Yate message {self.id} released")

    def name(self) -> str:
        self._check()
        return self._name

    def set_name(self, v: str) -> None:
        self._check(True)
        self._name = v

    def retvalue(self) -> str:
        self._check()
        return self._ret

    def set_retvalue(self, v: str) -> None:
        self._check(True)
        self._ret = v

    def get(self, k: str) -> Optional[str]:
        self._check()
        return next((v for kk, v in self._params if kk == k), None)

    def getall(self, k: str) -> List[str]:
        self._check()
        return [v for kk, v in self._params if kk == k]

    def params(self) -> List[Tuple[str, str]]:
        self._check()
        return [(k, v) for k, v in self._params]

    def set(self, k: str, v: str) -> None:
        self._check(True)
        for p in self._params:
            if p[0] == k:
                p[1] = v
                return
        self._params.append([k, v])

    def add(self, k: str, v: str) -> None:
        self._check(True)
        self._params.append([k, v])

    def clear(self, k: str) -> bool:
        self._check(True)
        before = len(self._params)
        self._params = [p for p in self._params if p[0] != k]
        return len(self._params) != before

    def ret(self, handled: bool, retvalue: Optional[str] = None) -> None:
        self._check(True)
        if retvalue is not None:
            self._ret = retvalue
        self.alive, self.answered, self.handled, self._snapshot = False, True, handled, True

    def release(self) -> None:                      # the host's timeout
        self.alive = False


class FakeHost:
    """The functions of _yaypmhost that EmbeddedDispatcher calls."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.installs: dict = {}
        self.watches: dict = {}
        self.options: dict = {}
        self.enqueued: list = []
        self.dispatched: list = []
        self.answer: Any = (True, "", "", [])
        self.output_lines: list = []

    def set_options(self, owner, timeout, reenter, selfwatch):
        self.options[owner] = (timeout, reenter, selfwatch)

    def install(self, owner, name, prio, fname, fvalue, track):
        hid = next(self.ids)
        self.installs[hid] = (name, prio, fname, fvalue, track)
        return hid

    def uninstall(self, hid):
        return self.installs.pop(hid, None) is not None

    def watch(self, owner, name):
        wid = next(self.ids)
        self.watches[wid] = name
        return wid

    def unwatch(self, wid):
        return self.watches.pop(wid, None) is not None

    def release_owner(self, owner):
        n = len(self.installs) + len(self.watches)
        self.installs.clear()
        self.watches.clear()
        return n

    def dispatch(self, owner, name, retval, params):
        self.dispatched.append((name, retval, params))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def enqueue(self, owner, name, retval, params):
        self.enqueued.append((name, retval, params))
        return True

    def run_params(self):
        return {"version": "6.4.1", "nodename": "node1", "runid": "42"}

    def config(self, section, key=None):
        return {"general": {"modload": "disable"}}.get(section, {}).get(key)

    def plugin_loaded(self, name):
        return name == "extmodule"

    def stats(self):
        return {"timeout": 10000}

    def output(self, text):
        self.output_lines.append(text)

    def debug(self, level, text):
        self.output_lines.append((level, text))


class Blocking:
    """run_blocking stand-in: runs the call when the test says so."""

    def __init__(self) -> None:
        self.calls: list = []

    def __call__(self, fn, *args):
        d: defer.Deferred = defer.Deferred()
        self.calls.append((fn, args, d))
        return d

    def run_all(self) -> None:
        calls, self.calls = self.calls, []
        for fn, args, d in calls:
            try:
                d.callback(fn(*args))
            except Exception as e:
                d.errback(e)


@pytest.fixture
def env():
    host, blocking = FakeHost(), Blocking()
    disp = EmbeddedDispatcher(host, 7, blocking, Clock(), track_name="yaypm/test")
    return host, blocking, disp


def deliver(disp, name, params=(), retvalue=""):
    raw = FakeRaw(name, list(params), retvalue)
    disp._on_host_message(raw)
    return raw


def test_onmsg_installs_once_and_guard_picks_the_message(env):
    host, _, disp = env
    d1 = disp.onmsg("call.route", lambda m: m["called"] == "ivr")
    d2 = disp.onmsg("call.route", lambda m: m["called"] == "other", priority=10)
    assert list(host.installs.values()) == [("call.route", 100, None, None, "yaypm/test")]
    raw = deliver(disp, "call.route", [("called", "ivr")])
    m = success_result_of(d1)
    assert isinstance(m, EmbeddedMessage) and raw.alive     # the app has not answered yet
    assert_no_result(d2)
    m.ret(True, "dumb/")
    assert raw.answered and raw.handled is True and raw._ret == "dumb/"
    # nobody wants this one: answered unhandled at once, unchanged
    raw2 = deliver(disp, "call.route", [("called", "nobody")])
    assert raw2.answered and raw2.handled is False and raw2._ret == ""
    assert disp.pending_count() == 1                         # d2 still waits


def test_reads_after_ret_see_the_answer_writes_raise(env):
    _, _, disp = env
    d = disp.onmsg("call.route")
    deliver(disp, "call.route", [("called", "ivr"), ("id", "sip/1")])
    m = success_result_of(d)
    m["extra"] = "1"
    m.ret(True, "dumb/")
    assert m["id"] == "sip/1" and m["extra"] == "1" and m.retvalue == "dumb/"
    with pytest.raises(MessageReleasedError):
        m["id"] = "changed"
    with pytest.raises(MessageReleasedError):
        m.ret(False)


def test_answer_given_during_delivery_is_released_after_the_callbacks(env):
    _, _, disp = env
    seen = []

    def handler(m):
        m.ret(True)
        seen.append(m._raw.answered)        # not yet handed to Yate ...
        disp.onwatch("call.execute")        # ... so this watch is in place first
        return None
    disp.handler("call.route", handler)
    raw = deliver(disp, "call.route")
    assert seen == [False] and raw.answered and raw.handled is True


def test_raising_handler_and_failing_deferred_answer_unhandled(env):
    _, _, disp = env
    disp.handler("a", lambda m: 1 / 0)
    d: defer.Deferred = defer.Deferred()
    disp.handler("b", lambda m: d)
    ra = deliver(disp, "a")
    assert ra.answered and ra.handled is False
    rb = deliver(disp, "b")
    assert not rb.answered
    d.errback(ValueError("late failure"))
    assert rb.answered and rb.handled is False
    assert disp.pending_count() == 0


def test_handler_bool_and_deferred_results(env):
    _, _, disp = env
    disp.handler("yes", lambda m: True)
    d: defer.Deferred = defer.Deferred()
    disp.handler("later", lambda m: d)
    assert deliver(disp, "yes").handled is True
    raw = deliver(disp, "later")
    d.callback(True)
    assert raw.handled is True


def test_timeout_then_app_ret_raises(env):
    _, _, disp = env
    d = disp.onmsg("x")
    raw = deliver(disp, "x")
    m = success_result_of(d)
    raw.release()                                   # the host's timeout
    assert m.answered and not m.alive
    with pytest.raises(MessageReleasedError):
        m.ret(True)
    with pytest.raises(MessageReleasedError):
        m["k"]
    assert disp.pending_count() == 0


def test_until_abandons_and_cancel_removes_the_wait(env):
    _, _, disp = env
    end: defer.Deferred = defer.Deferred()
    d = disp.onmsg("call.answered", until=end)
    end.callback("hangup")
    f = failure_result_of(d, AbandonedException)
    assert f.value.cause == "hangup"
    d2 = disp.onmsg("call.answered")
    d2.cancel()
    failure_result_of(d2, AbandonedException)
    assert disp.waiting_count() == 0
    assert deliver(disp, "call.answered").handled is False


def test_autoreturn(env):
    _, _, disp = env
    d = disp.onmsg("chan.hangup", autoreturn=True)
    raw = deliver(disp, "chan.hangup", [("id", "sip/1")])
    assert success_result_of(d)["id"] == "sip/1"
    assert raw.handled is True


def test_dispatch_runs_off_the_reactor_and_updates_the_message(env):
    host, blocking, disp = env
    host.answer = (True, "chan.attach", "ok", [("id", "dumb/1"), ("added", "1")])
    m = disp.msg("chan.attach", {"id": "dumb/1"})
    d = m.dispatch()
    assert_no_result(d)
    assert host.dispatched == []                    # not on the calling thread
    blocking.run_all()
    assert success_result_of(d) is True
    assert host.dispatched == [("chan.attach", "", [("id", "dumb/1")])]
    assert m.retvalue == "ok" and m["added"] == "1" and m.processed is True
    # cancelling forgets the answer
    d2 = disp.msg("x").dispatch()
    d2.cancel()
    blocking.run_all()
    failure_result_of(d2, defer.CancelledError)
    assert disp.pending_count() == 0


def test_enqueue_and_received_message_cannot_be_sent(env):
    host, _, disp = env
    disp.msg("chan.notify", [("targetid", "x"), ("targetid", "y")]).enqueue()
    assert host.enqueued == [("chan.notify", "", [("targetid", "x"), ("targetid", "y")])]
    d = disp.onmsg("a")
    deliver(disp, "a")
    m = success_result_of(d)
    failure_result_of(m.dispatch(), TypeError)
    m.ret(False)


def test_watch_delivers_copies_per_watched_name(env):
    host, _, disp = env
    got: list = []
    disp.watcher("chan.hangup", lambda m: got.append(("named", m["id"])))
    disp.watcher("", lambda m: got.append(("all", m.name)))
    once = disp.onwatch("chan.hangup", lambda m: m["id"] == "sip/2")
    ids = {name: wid for wid, name in host.watches.items()}
    disp._on_host_watch(ids["chan.hangup"], "chan.hangup", True, "", [("id", "sip/1")])
    disp._on_host_watch(ids[""], "chan.hangup", True, "", [("id", "sip/1")])
    disp._on_host_watch(ids["chan.hangup"], "chan.hangup", False, "", [("id", "sip/2")])
    assert got == [("named", "sip/1"), ("all", "chan.hangup"), ("named", "sip/2")]
    m = success_result_of(once)
    assert m["id"] == "sip/2" and m.processed is False


def test_a_failing_watch_callback_is_logged_and_the_watchers_still_run(env):
    from twisted.logger import capturedLogs
    host, _, disp = env
    got: list = []
    once = disp.onwatch("chan.hangup")
    once.addCallback(lambda m: 1 / 0)
    disp.watcher("chan.hangup", lambda m: got.append(m["id"]))
    [wid] = host.watches
    with capturedLogs() as events:
        disp._on_host_watch(wid, "chan.hangup", True, "", [("id", "sip/1")])
    assert got == ["sip/1"]
    [event] = [e for e in events if "log_failure" in e]
    assert event["log_format"] == "Watch callback for {name} failed"
    assert event["log_failure"].check(ZeroDivisionError)


def test_setlocal_maps_to_host_options_and_settings(env):
    host, _, disp = env
    assert success_result_of(disp.setlocal("timeout", 300)) == "300"
    assert success_result_of(disp.setlocal("reenter", True)) == "true"
    assert host.options[7] == (300, True, False)
    assert success_result_of(disp.engine_version()) == "6.4.1"
    assert success_result_of(disp.engine_param("nodename")) == "node1"
    assert success_result_of(disp.config("general", "modload")) == "disable"
    failure_result_of(disp.config("general", "nope"), YateError)
    assert success_result_of(disp.setlocal("loaded.extmodule")) == "true"


def test_close_releases_everything(env):
    host, blocking, disp = env
    disp.handler("a", lambda m: None)               # will answer later: never does
    disp.watcher("b", lambda m: None)
    raw = deliver(disp, "a")
    d = disp.msg("x").dispatch()
    w = disp.onmsg("c")
    disp.close("script stopped")
    assert host.installs == {} and host.watches == {}
    assert raw.answered and raw.handled is False
    failure_result_of(d, DisconnectedException)
    assert_no_result(w)                             # dropped, not failed
    assert disp.pending_count() == 0 and not disp.connected
    blocking.run_all()                              # the late result is ignored
    with pytest.raises(DisconnectedException):
        disp.msg("y").enqueue()
    failure_result_of(disp.msg("z").dispatch(), DisconnectedException)
