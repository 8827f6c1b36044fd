"""A channel script on the real engine: Yate starts it for one call (``external/nodata/...``).

A global yaypm dispatcher routes number 7730 to ``external/nodata/<wrapper>``; Yate starts the
wrapper (``yaypm run chan_app.py:start --stdio``) and hands it the call's ``call.execute``
unasked (yate-extmodule.md §9.2).  The app takes it with ``handler(..., install=False)``, sets
its endpoint id, answers with ``targetid``, answers the caller, plays a prompt on its own
channel (no ``chan.masquerade``: a channel script's messages carry its endpoint) and quits
when the prompt ends; Yate then hangs the caller up with the reason the script set.
"""

from __future__ import annotations

import re
import stat
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, threads

import yaypm
from yaypm.connectors import connect_service
pytestmark = pytest.mark.yate

REPO = Path(yaypm.__file__).resolve().parents[1]

CHAN_APP = '''\
"""Started by Yate for one call: stdout is the protocol, logs go to stderr."""
from yaypm.prompts import prompt

ME = "chanivr/1"


def start(d):
    def execute(m):
        d.setlocal("id", ME)                       # our endpoint's id, before answering
        caller = m["id"]
        m["targetid"] = ME                         # the caller stores it: no auto-answer
        m.ret(True)
        d.msg("call.answered", {"id": ME, "targetid": caller}).enqueue()
        d.msg("chan.attach", {"source": "wave/play/" + prompt("one"), "notify": ME}).enqueue()

    def notified(n):
        n.ret(True)
        d.setlocal("reason", "chan-script-done")
        d.quit()
        return None

    d.handler("call.execute", execute, install=False)
    d.handler("chan.notify", notified, filter=("targetid", ME))
'''

WRAPPER = '''\
#!/bin/sh
export PYTHONPATH={repo}
exec {python} -m yaypm.cli run {app}:start --stdio -v 2>>{log}
'''


@pytest.fixture
def chan_script(tmp_path: Path) -> Path:
    app = tmp_path / "chan_app.py"
    app.write_text(CHAN_APP)
    wrapper = tmp_path / "chan_ivr.sh"
    wrapper.write_text(WRAPPER.format(repo=REPO, python=sys.executable, app=app,
                                      log=tmp_path / "chan.log"))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return wrapper


@pytest_twisted.ensureDeferred
async def test_channel_script_answers_plays_and_quits(yate, sip_call, chan_script):
    from twisted.internet import reactor

    routed = []

    def start(d):
        def route(m):
            if m.get("called") != "7730":
                return False
            routed.append(m["id"])
            m.ret(True, f"external/nodata/{chan_script}")
            return None
        d.handler("call.route", route, priority=40)

    svc = connect_service(reactor, f"tcp:127.0.0.1:{yate.global_port}", start)
    try:
        await svc.whenConnected().addTimeout(10, reactor)
        await svc.dispatcher.install("call.route", 40).addTimeout(10, reactor)
        call = sip_call("7730", "uac_wait_bye")
        out = await threads.deferToThread(call.wait, 30)
    finally:
        await defer.maybeDeferred(svc.stopService)
    assert routed and routed[0].startswith("sip/")
    assert (out.outcome, out.bye_received, out.exit_code) == ("answered", True, 0), out
    log = (chan_script.parent / "chan.log").read_text()
    assert "Traceback" not in log, log
    assert re.search(r"<- %%>message:[^:]+:\d+:call\.execute::id=sip/\d+", log), log
    assert re.search(r"-> %%<message:[^:]+:true:call\.execute::targetid=chanivr/1", log), log
    assert re.search(r"<- %%<setlocal:id:chanivr/1:true", log), log
    assert re.search(r"<- %%>message:[^:]+:\d+:chan\.notify::.*targetid=chanivr/1.*reason=eof",
                     log), log
    assert "-> %%>quit" in log, log
