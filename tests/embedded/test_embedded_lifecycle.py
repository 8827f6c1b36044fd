"""Embedded mode on the real engine: shutdown and reload with Python handlers installed."""

from __future__ import annotations

import os
import time

import pytest

from embedded_helpers import APPS, MAIN_HANDLERS

pytestmark = pytest.mark.yate


def wait_log(engine, text, timeout=5.0, start=0):
    deadline = time.monotonic() + timeout
    while text not in engine.log_text(start):
        assert time.monotonic() < deadline, f"{text!r} not in log:\n{engine.log_text(start)[-3000:]}"
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["sigterm", "rmanager"])
def test_shutdown_with_handlers_installed_and_a_message_in_flight(embedded_yate, how):
    # bad_app raises SystemExit while loading: logged, and nothing else notices
    engine = embedded_yate({"bad": APPS / "bad_app.py", "main": APPS / "main_app.py"})
    conn = engine.connect()
    engine.wait_handlers(conn, MAIN_HANDLERS)
    assert conn.dispatch("call.route", {"called": "embedded-ivr"}).retvalue == "dumb/"
    conn.message("test.hang")                  # a Yate thread now waits for Python (10 s)
    time.sleep(0.2)
    assert engine.host_status(conn)["pending"] == "1"
    t0 = time.monotonic()
    if how == "sigterm":
        status = engine.stop(timeout=10)
    else:
        engine.rmanager("stop", wait=0.1)
        status = engine.process.wait(10)
    elapsed = time.monotonic() - t0
    log = engine.log_text()
    print(f"{how}: Yate exited in {elapsed:.2f} s")
    assert status == 0, log[-3000:]
    assert elapsed < 5, elapsed                # not the 10 s handler timeout
    assert "<yaypmhost:INFO> Stopping Python" in log
    assert "<yaypmhost:INFO> Python finalized (0)" in log
    assert "Python threads still running" not in log
    assert "Segmentation" not in log and "Aborted" not in log
    assert "Script bad (" in log and "SystemExit: 3" in log


def test_reload_keeps_the_interpreter_and_restarts_changed_scripts(embedded_yate, tmp_path):
    app = tmp_path / "reload_app.py"
    extra = tmp_path / "extra_app.py"
    body = '''
import yaypm.embedded
from twisted.internet import reactor
import threading
def start(yate):
    yate.handler("test.version", lambda m: (m.ret(True, "{v}:" + str(id(threading))), None)[1])
if __name__ == "__embedded_yaypm_module__":
    yaypm.embedded.embededStart(start)
reactor.run(0)
'''
    app.write_text(body.replace("{v}", "v1"))
    extra.write_text(body.replace("{v}", "extra").replace("test.version", "test.extra"))
    engine = embedded_yate({"app": app})
    conn = engine.connect()
    engine.wait_handlers(conn, 1)
    v1 = conn.dispatch("test.version")
    assert v1.retvalue.startswith("v1:")
    assert conn.dispatch("test.extra").processed is False

    # change the script, add another one, reload
    app.write_text(body.replace("{v}", "v2"))
    os.utime(app, (time.time() + 5, time.time() + 5))
    conf = engine.conf_dir / "yaypmhost.conf"
    conf.write_text(conf.read_text() + f"extra={extra}\n")
    start = engine.log_size()
    engine.rmanager("reload")
    wait_log(engine, "Script extra loaded", start=start)
    v2 = conn.dispatch("test.version")
    assert v2.retvalue.startswith("v2:")
    # same interpreter: the threading module object is the same one
    assert v2.retvalue.split(":")[1] == v1.retvalue.split(":")[1]
    assert conn.dispatch("test.extra").retvalue.startswith("extra:")

    # remove the first script: its handler is gone from Yate
    conf.write_text(conf.read_text().replace(f"app={app}\n", ""))
    start = engine.log_size()
    engine.rmanager("reload yaypmhost")
    wait_log(engine, "Script app stopped", start=start)
    assert conn.dispatch("test.version").processed is False
    assert conn.dispatch("test.extra").processed is True
    assert engine.log_text().count("<yaypmhost:INFO> Python 3") == 1
    assert engine.stop() == 0
    assert "Python finalized (0)" in engine.log_text()
