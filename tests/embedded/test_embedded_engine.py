"""Embedded mode on the real engine: yaypm scripts inside Yate (yaypmhost.yate).

The test drives Yate over a raw extmodule socket (yaypm.testing.yate.ExtModuleConnection);
the app under test (apps/main_app.py) runs inside Yate's process.
"""

from __future__ import annotations

import time

import pytest

from yaypm.testing.yate import message_is

from embedded_helpers import MAIN_HANDLERS

pytestmark = pytest.mark.yate



@pytest.fixture
def drv(main_yate):
    conn = main_yate.connect()
    main_yate.wait_handlers(conn, MAIN_HANDLERS)
    try:
        yield conn
    finally:
        conn.close()


def state(main_yate, conn, gc=False):
    line = conn.dispatch("test.state", {"gc": "1" if gc else "0"})
    assert line.processed is True
    return line.params


def test_call_route_answered_by_embedded_app(main_yate, drv):
    t0 = time.monotonic()
    line = drv.dispatch("call.route", {"called": "embedded-ivr", "caller": "100"})
    assert line.processed is True and line.retvalue == "dumb/"
    # Yate's handler tracking names the script's relay
    assert "yaypm/main:50" in line.params["handlers"]
    # a number the guard does not accept goes on to the next router (regexroute: no route)
    other = drv.dispatch("call.route", {"called": "somebody-else"})
    assert other.params["handlers"] == "yaypm/main:50,regexroute:100"
    assert other.retvalue == "-" and other.params["error"] == "noroute"
    assert time.monotonic() - t0 < 2
    # after ret() the proxy reads the answered message, and refuses changes
    st = state(main_yate, drv)
    assert int(st["read_after_ret"]) >= 1 and int(st["released_ok"]) >= 1


def test_message_round_trip_through_nested_dispatch(drv):
    assert drv.install("test.echo", 50) == "%%<install:50:test.echo:true"
    mid = drv.message("test.roundtrip", {"x": "héllo:%"})
    echo = drv.expect(message_is("test.echo", "handle"))
    assert echo.params["x"] == "héllo:%"
    drv.answer(echo, True, params={"echo": "back:" + echo.params["x"]})
    answer = drv.expect(f"%%<message:{mid}:")
    assert answer.processed is True and answer.retvalue == "roundtrip-ok"
    assert answer.params["echoed"] == "back:héllo:%" and answer.params["processed"] == "True"
    assert drv.uninstall("test.echo").endswith(":true")


def test_enqueue_and_no_reenter(drv):
    assert drv.install("test.enqueued") == "%%<install:100:test.enqueued:true"
    assert drv.dispatch("test.enqueue", {"x": "7"}).processed is True
    queued = drv.expect(message_is("test.enqueued", "handle", x="7"))
    assert queued.params["from"] == "embedded"
    drv.answer(queued, True)
    # a message the app dispatches does not come back to its own handler (extmodule's reenter)
    assert drv.dispatch("test.selfcheck").params["self_processed"] == "False"


def test_raising_handler_is_answered_unhandled_and_yate_survives(main_yate, drv):
    start = main_yate.log_size()
    t0 = time.monotonic()
    line = drv.dispatch("test.raise", {"a": "b"})
    assert line.processed is False
    assert time.monotonic() - t0 < 1.0           # at once, not after the 10 s timeout
    # the traceback went to Yate's log
    deadline = time.monotonic() + 5
    while "ValueError: boom from a handler" not in main_yate.log_text(start):
        assert time.monotonic() < deadline, main_yate.log_text(start)
        time.sleep(0.05)
    assert "Traceback" in main_yate.log_text(start)
    # Yate and Python still work
    assert main_yate.running
    assert drv.dispatch("call.route", {"called": "embedded-ivr"}).retvalue == "dumb/"


def test_handler_timeout_then_late_ret_raises_released(main_yate, drv):
    t0 = time.monotonic()
    line = drv.dispatch("test.slow")
    elapsed = time.monotonic() - t0
    assert line.processed is False
    assert 0.25 < elapsed < 2.0, elapsed              # setlocal("timeout", 300)
    time.sleep(0.6)
    st = state(main_yate, drv)
    assert st["late_ret"].startswith("MessageReleasedError: Yate message")
    assert st["late_ret"].endswith("is gone (timed out or host closing)")
    assert st["read_after_timeout"].endswith("is gone (timed out or host closing)")
    assert "did not answer 'test.slow' in 300 ms" in main_yate.log_text()


def test_watch_gets_a_copy_after_dispatch(main_yate, drv):
    before = int(state(main_yate, drv)["watched"])
    drv.dispatch("test.watched", {"k": "first"}, retvalue="rv")
    drv.dispatch("test.watched", {"k": "second"})
    deadline = time.monotonic() + 5
    while True:
        st = state(main_yate, drv)
        if int(st["watched"]) - before >= 2 and st["onwatch"]:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.02)
    assert st["onwatch"] == "test.watched:first:False"


def test_engine_settings(drv):
    line = drv.dispatch("test.engine")
    assert line.processed is True
    assert line.params["version"].startswith("6.")
    assert line.params["nodename"]
    assert line.params["modload"] == "disable"
    assert line.params["host_timeout"] == "10000" and line.params["scripts"] == "main"


def test_thousand_messages_leave_no_python_objects_behind(main_yate, drv):
    """1,000 handled messages; afterwards the Python object count is back within a bound.

    Bound: 500 objects (gc.get_objects(), after gc.collect()) over a warm-up run of the same
    size.  A leak of one object per message would exceed it twice over.
    """
    def burst(n: int, tag: str) -> float:
        t0 = time.monotonic()
        ids = [drv.message("test.count", {"n": f"{tag}{i}"}) for i in range(n)]
        for i, mid in enumerate(ids):
            ans = drv.expect(f"%%<message:{mid}:", timeout=10)
            assert ans.processed is True and ans.params["seen"] == f"{tag}{i}"
        return time.monotonic() - t0

    burst(1000, "w")                               # warm-up: caches, interned strings, workers
    base = state(main_yate, drv, gc=True)
    elapsed = burst(1000, "m")
    after = state(main_yate, drv, gc=True)
    growth = int(after["objects"]) - int(base["objects"])
    print(f"1000 messages in {elapsed:.3f} s; objects {base['objects']} -> {after['objects']}; "
          f"allocated blocks {base['blocks']} -> {after['blocks']}")
    assert growth < 500, (base, after)
    # only the test.state message being answered is still held, in Python and in the host
    assert after["pending"] == "1" and after["host_pending"] == "1"
