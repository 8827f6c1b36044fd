"""yaypm's connectors on the real engine: the reconnecting TCP client and a stdio script.

* ``connect_service``: the handler connection is cut (``abortConnection``, from our side) while
  a call is on the IVR.  Yate keeps the call; the service reconnects, re-installs and re-watches,
  drops the call it lost (``call.drop ... reason=disconnected``), and routes the next call.
* A global script Yate starts itself from ``extmodule.conf [scripts]``: a shell wrapper that
  runs ``yaypm run app.py:start --stdio`` (the configuration is rendered by the ``yate``
  fixture from the templates, with ``[scripts]`` filled in through ``yate_options``).

A channel script (``external/nodata/...``) is tested in ``test_channel_script_real.py``.
"""

from __future__ import annotations

import re
import stat
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Tuple

import pytest
import pytest_twisted
from twisted.internet import defer, threads
from twisted.logger import globalLogPublisher

import yaypm
from yaypm.connectors import connect_service
from yaypm.ivr import CallEnded, route, switchboard
from yaypm.prompts import prompt
from yaypm.resources import resource_path

pytestmark = pytest.mark.yate

EVENT = 10.0
REPO = Path(yaypm.__file__).resolve().parents[1]
MENU = prompt("menu")          # 5.3 s
ONE = prompt("one")            # 0.4 s

STDIO_APP = '''\
"""A yaypm app Yate starts itself ([scripts]); stdout is the protocol, logs go to stderr."""
from yaypm.ivr import route
from yaypm.prompts import prompt


async def hello(leg):
    await leg.answer()
    await leg.play(prompt("one"))
    await leg.send_dtmf("7")      # shows in the caller's log only; the call goes on
    # returning hangs up


def start(dispatcher):
    route(dispatcher, "7710", hello)
'''

WRAPPER = '''\
#!/bin/sh
# Started by Yate from extmodule.conf [scripts]: one argument, stdin/stdout are the protocol.
export PYTHONPATH={repo}
exec {python} -m yaypm.cli run {app}:start --stdio -v 2>>{log}
'''


def within(d: defer.Deferred, seconds: float = EVENT) -> defer.Deferred:
    from twisted.internet import reactor
    return d.addTimeout(seconds, reactor)


def pause(seconds: float) -> defer.Deferred:
    from twisted.internet import reactor, task
    return task.deferLater(reactor, seconds, lambda: None)


async def eventually(check: Callable[[], Any], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pause(0.05)


def sip_outcome(agent) -> defer.Deferred:
    return threads.deferToThread(agent.wait, EVENT + 20)


@pytest.fixture(scope="module")
def scripts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stdio app, its shell wrapper and the wrapper's log."""
    folder = tmp_path_factory.mktemp("scripts")
    app = folder / "stdio_app.py"
    app.write_text(STDIO_APP)
    wrapper = folder / "stdio_ivr.sh"
    wrapper.write_text(WRAPPER.format(repo=REPO, python=sys.executable, app=app,
                                      log=folder / "stdio.log"))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


@pytest.fixture(scope="module")
def yate_options(scripts_dir: Path) -> dict:
    """This module's engine: the stock templates plus our script in ``[scripts]``."""
    text = (resource_path("yate_conf") / "extmodule.conf").read_text()
    text, n = re.subn(r"^\[scripts\][ \t]*$", f"[scripts]\n{scripts_dir / 'stdio_ivr.sh'}=",
                      text, count=1, flags=re.M)
    assert n == 1, "no [scripts] section in the extmodule.conf template"
    return {"conf_overrides": {"extmodule.conf": text}}


class WireLog:
    """Every protocol line of this process's dispatchers (the ``yaypm.wire`` logger)."""

    def __init__(self) -> None:
        self.lines: List[Tuple[str, str]] = []

    def __call__(self, event: dict) -> None:
        if event.get("log_namespace") == "yaypm.wire" and "line" in event:
            direction = ">>" if event.get("log_format", "").startswith("->") else "<<"
            self.lines.append((direction, event["line"]))

    def all(self, direction: str, pattern: str) -> List[re.Match]:
        rx = re.compile(pattern)
        return [m for d, line in self.lines if d == direction for m in [rx.search(line)] if m]

    def index(self, direction: str, pattern: str, start: int = 0) -> int:
        rx = re.compile(pattern)
        for i in range(start, len(self.lines)):
            d, line = self.lines[i]
            if d == direction and rx.search(line):
                return i
        raise AssertionError(f"no line {direction} {pattern!r} after {start}:\n" + "\n".join(
            f"{d} {line[:200]}" for d, line in self.lines[-60:]))


@pytest.fixture
def wire_log():
    log = WireLog()
    globalLogPublisher.addObserver(log)
    try:
        yield log
    finally:
        globalLogPublisher.removeObserver(log)


# ------------------------------------------------------------------------------------------
# connect_service: reconnect and re-install
# ------------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_reconnecting_client_survives_a_cut_connection(yate, sip_call, wire_log):
    from twisted.internet import reactor
    runs: List[dict] = []
    started: List[Any] = []

    async def app(leg):
        run = {"leg": leg, "outcome": None}
        runs.append(run)
        await leg.answer()
        try:
            await leg.play(MENU if len(runs) == 1 else ONE)
            run["outcome"] = "played"
        except CallEnded as e:
            run["outcome"] = ("ended", e.reason)
            raise

    def start(dispatcher):
        started.append(dispatcher)
        route(dispatcher, "7701", app)

    svc = connect_service(reactor, f"tcp:127.0.0.1:{yate.global_port}", start)
    try:
        first_proto = await within(svc.whenConnected())
        dispatcher = svc.dispatcher
        board = switchboard(dispatcher)
        await eventually(lambda: len(wire_log.all("<<", r"^%%<install:50:call\.route:true$")) == 1,
                         "call.route to be installed")

        # call 1: answered, prompt playing; then the connection is cut from our side
        call1 = sip_call("7701", "uac_wait_bye")
        await eventually(lambda: runs and runs[0]["leg"].is_answered, "call 1 to be answered")
        leg1 = runs[0]["leg"]
        caller1 = leg1.id
        await pause(0.5)
        cut_at = len(wire_log.lines)
        first_proto.transport.abortConnection()
        await eventually(lambda: runs[0]["outcome"] is not None, "the app to see the loss")
        assert runs[0]["outcome"] == ("ended", "disconnected")
        assert leg1.end_reason == "disconnected" and len(board) == 0
        assert call1.running, "Yate kept the call while we were away"

        # the service reconnects, re-installs and re-watches, then drops the lost call
        second_proto = await within(svc.whenConnected())
        await eventually(lambda: second_proto is not first_proto and svc.connections == 2,
                         "a second connection")
        await eventually(lambda: len(wire_log.all("<<", r"^%%<install:50:call\.route:true$")) == 2,
                         "call.route to be installed again")
        assert started == [dispatcher], "start() runs once, on the first connection"
        again = wire_log.lines[cut_at:]
        for name in ("chan.notify", "chan.dtmf", "call.route"):
            assert (">>", f"%%>install:50:{name}") in again, name
        for name in ("call.execute", "chan.hangup", "chan.disconnected", "call.answered"):
            assert (">>", f"%%>watch:{name}") in again, name
        # fire and forget (enqueue: empty id); the call was still up: its hang-up follows
        drop = wire_log.index(">>", rf"^%%>message:::call\.drop::id={caller1}"
                                    r":reason=disconnected$", cut_at)
        await eventually(lambda: wire_log.all("<<", rf"^%%<message::false:chan\.hangup::id="
                                                    rf"{caller1}:.*:status=disconnected:"),
                         "the lost call's chan.hangup")
        wire_log.index("<<", rf"^%%<message::false:chan\.hangup::id={caller1}:", drop)
        out1 = await sip_outcome(call1)
        assert (out1.outcome, out1.bye_received, out1.exit_code) == ("answered", True, 0)

        # call 2, routed after the reconnect
        call2 = sip_call("7701", "uac_wait_bye")
        out2 = await sip_outcome(call2)
        assert (out2.outcome, out2.bye_received, out2.exit_code) == ("answered", True, 0)
        assert len(runs) == 2 and runs[1]["outcome"] == "played"
        assert runs[1]["leg"].id != caller1
        await eventually(lambda: len(board) == 0 and board.pending_count() == 0
                         and dispatcher.pending_count() == 0, "nothing left behind")
    finally:
        await svc.stopService()


# ------------------------------------------------------------------------------------------
# A script Yate starts: yaypm run --stdio
# ------------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_stdio_script_started_by_yate_routes_a_call(yate, sip_call, scripts_dir):
    log = scripts_dir / "stdio.log"

    def ready() -> bool:
        return log.exists() and "Installed call.route at priority 50" in log.read_text()
    await eventually(ready, "the stdio script to install call.route", timeout=15)
    call = sip_call("7710", "uac_wait_bye")
    out = await sip_outcome(call)
    assert (out.outcome, out.bye_received, out.bye_sent, out.exit_code) == \
        ("answered", True, False, 0), out
    text = log.read_text()
    assert "Traceback" not in text, text
    # -v: the script logs its protocol lines on stderr (stdout is the protocol itself)
    assert re.search(r"-> %%<message:[^:]+:true:call\.route:dumb/", text), text
    assert re.search(r"<- %%>message:[^:]+:\d*:chan\.notify::id=dumb/\d+:targetid=[^:]+"
                     r":reason=eof", text), text
    assert re.search(r"-> %%>message:[^:]+:\d*:call\.drop::id=sip/\d+:reason=normal", text), text
    # Yate reports the script among its external modules
    assert "stdio_ivr.sh" in yate.log_text()
