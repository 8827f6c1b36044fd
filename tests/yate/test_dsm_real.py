"""`yaypm dsm run` on the real engine: the small IVR DSM script answers a sipp caller, plays
the menu, collects DTMF into a variable (SIP INFO `5`, `#`), checks it, says "one" and hangs up.

The DSM process is the real command line (a subprocess connected to Yate's global extmodule
listener, monitoring on a loopback port); the test reads the outcome from sipp's message log
and from the monitor's XML-RPC records.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

import pytest

from yaypm.examples import example_path
from yaypm.prompts import prompt

pytestmark = pytest.mark.yate

EVENT = 15.0
PROMPTS = os.path.dirname(prompt("menu"))


def _ivr_recording_the_pin() -> str:
    """The example IVR of docs/dsm.md (yaypm/examples/ivr.dsm), also showing `$pin` to
    monitoring (mod_monitoring) as it is typed."""
    with open(example_path("ivr.dsm"), encoding="utf-8") as f:
        script = f.read()
    collect = "  append($pin, #key);\n"
    assert script.count("initial state START;") == 1 and script.count(collect) == 1
    return (script.replace("initial state START;", "import(mod_monitoring);\ninitial state START;")
            .replace(collect, collect + "  monitoring.set(pin, $pin);\n"))


IVR = _ivr_recording_the_pin()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


CALLER = """\
import(mod_dlg);
import(mod_conference);
initial state START;
transition "call in" START - invite / {
  set($connect_session=0);
  set($b_caller=ivr); set($b_callee=callee); set($b_domain=$config.callee_host);
  set($b_app=callee); set($b_var.a_ltag=@local_tag);
  dlg.dialout(b);
} -> WAIT;
state WAIT;
transition "callee answered" WAIT - event(#status == answered) / {
  set($b_ltag=#ltag);
  dlg.acceptInvite(200, OK);
  conference.join(@local_tag);
  setTimer(1, 2);
} -> CONNECTED;
state CONNECTED;
transition "time is up" CONNECTED - timer / {
  set($status=bye); postEvent($b_ltag, status); stop(true);
} -> END;
transition "caller left" (WAIT, CONNECTED) - hangup / stop(false) -> END;
state END;
"""

CALLEE = """\
import(mod_conference);
initial state START;
transition "answered" START - sessionStart / {
  set($status=answered); set($ltag=@local_tag);
  postEvent($a_ltag, status;ltag);
  conference.join($a_ltag);
} -> CONNECTED;
state CONNECTED;
transition "caller is done" CONNECTED - event(#status == bye) / stop(true) -> END;
transition "callee left" (START, CONNECTED) - hangup / stop(false) -> END;
state END;
"""


@pytest.fixture
def dsm_run(yate, tmp_path: Path):
    """`dsm_run(scripts, conf_lines)`: start `yaypm dsm run` against `yate`; returns
    (process, rpc, log path). Stopped by PID at teardown."""
    started: list = []

    def start(scripts: dict[str, str], conf_lines: str):
        diags = tmp_path / "diags"
        diags.mkdir(exist_ok=True)
        for name, text in scripts.items():
            (diags / f"{name}.dsm").write_text(text)
        names = ",".join(scripts)
        conf = tmp_path / "dsm.conf"
        conf.write_text(f"diag_path={diags}\nload_diags={names}\nregister_apps={names}\n"
                        f"prompts={PROMPTS}\nmonitoring_full_stategraph=yes\n{conf_lines}")
        mport = _free_port()
        log_path = tmp_path / "dsm-run.log"
        log = open(log_path, "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "yaypm.cli", "dsm", "run", str(conf),
             "--connect", f"tcp:127.0.0.1:{yate.global_port}",
             "--monitor", f"tcp:{mport}:interface=127.0.0.1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append((proc, log))
        _wait(lambda: "Installed call.route" in log_path.read_text() or proc.poll() is not None,
              EVENT, "yaypm dsm run to install call.route")
        assert proc.poll() is None, log_path.read_text()
        return proc, xmlrpc.client.ServerProxy(f"http://127.0.0.1:{mport}"), log_path

    try:
        yield start
    finally:
        for proc, log in started:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
            log.close()


def graph(rec: dict) -> list[str]:
    return [e.split("/", 1)[1] for e in rec["dsm_stategraph"]]


def test_ivr_dsm_script_with_a_sipp_caller_sending_dtmf(dsm_run, sip_call):
    proc, rpc, log_path = dsm_run({"ivr": IVR}, "route.ivr=7700\npin=5\n")
    out = sip_call("7700", "uac_dtmf").wait(EVENT + 10)
    assert out.exit_code == 0, f"{out}\n{log_path.read_text()}"
    assert out.answered and out.bye_received and not out.bye_sent
    _wait(lambda: len(rpc.listFinished()) == 1, EVENT, "the session to finish")
    [sid] = rpc.listFinished()
    [rec] = rpc.get(sid)
    assert rec["app"] == "ivr" and rec["dir"] == "in" and rec["dsm_state"] == "END"
    assert rec["pin"] == "5"
    assert graph(rec) == ["START", "COLLECT", "COLLECT", "CHECK", "GOODBYE", "END"]
    assert rpc.calls() == 0
    text = log_path.read_text()
    assert "Traceback" not in text, text


def test_caller_hanging_up_during_the_menu_ends_the_session(dsm_run, sip_call):
    proc, rpc, log_path = dsm_run({"ivr": IVR}, "route.ivr=7701\npin=5\n")
    out = sip_call("7701", "uac_hangup").wait(EVENT)
    assert out.exit_code == 0 and out.answered and out.bye_sent, out
    _wait(lambda: len(rpc.listFinished()) == 1, EVENT, "the session to finish")
    [rec] = rpc.get(rpc.listFinished()[0])
    assert graph(rec) == ["START", "COLLECT", "END"]


def test_dialout_callee_and_post_event_between_sessions(dsm_run, sip_call, sip_callee):
    callee = sip_callee("answer")
    host = callee.uri.split("@", 1)[1]
    proc, rpc, log_path = dsm_run({"caller": CALLER, "callee": CALLEE},
                                  f"route.caller=7702\ncallee_host={host}\n")
    out = sip_call("7702", "uac_wait_bye").wait(EVENT + 10)
    assert out.exit_code == 0 and out.answered and out.bye_received, \
        f"{out}\n{log_path.read_text()}"
    callee_out = callee.wait(EVENT)
    assert callee_out.exit_code == 0 and callee_out.bye_received, callee_out
    _wait(lambda: len(rpc.listFinished()) == 2, EVENT, "both sessions to finish")
    recs = {r["app"]: r for r in (rpc.get(i)[0] for i in rpc.listFinished())}
    assert graph(recs["caller"]) == ["START", "WAIT", "CONNECTED", "END"]
    assert graph(recs["callee"]) == ["START", "CONNECTED", "END"]
    assert recs["callee"]["dir"] == "out" and recs["callee"]["ruri"] == callee.uri
    assert "Traceback" not in log_path.read_text()
