"""`yaypm dsm run`: help, one-line errors, and a real process against the simulator over TCP
(routing a call, SIGHUP reload, the monitor's XML-RPC reloadDSMs and monitoring records)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client

import pytest
import pytest_twisted
from twisted.internet import task, threads

from yaypm.cli import main
from yaypm.testing.simulator import Simulator

from yate_helpers import PROMPTS, wave

HELLO = """initial state S;
transition up S - sessionStart / {{ sets($p=$(config.prompts)/{prompt}); playFile($p) }} -> PLAY;
state PLAY;
transition done PLAY - noAudio / stop(true) -> PLAY;
transition bye (S, PLAY) - hangup / stop(false) -> PLAY;
"""


def write_conf(tmp_path, prompt="beep.au", routes="route.hello=600\n"):
    d = tmp_path / "diags"
    d.mkdir(exist_ok=True)
    (d / "hello.dsm").write_text(HELLO.format(prompt=prompt))
    conf = tmp_path / "dsm.conf"
    conf.write_text(f"diag_path={d}\nload_diags=hello\nregister_apps=hello\n{routes}"
                    f"prompts={PROMPTS}\nmonitoring_full_stategraph=yes\n")
    return str(conf)


def run_cli(capsys, *argv):
    status = main(["dsm", "run", *argv])
    err = capsys.readouterr().err
    return status, err


def test_help_names_the_route_keys(capsys):
    with pytest.raises(SystemExit) as e:
        main(["dsm", "run", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "route.<app>=NUMBER" in out and "--connect ENDPOINT" in out and "--monitor" in out


@pytest.mark.parametrize("setup,argv,message", [
    (None, ["/nonexistent.conf", "--connect", "tcp:127.0.0.1:5039"], "no such file"),
    ("noroutes", ["--connect", "tcp:127.0.0.1:5039"], "no routes"),
    ("badapp", ["--connect", "tcp:127.0.0.1:5039"], "unknown application 'nope'"),
    ("broken", ["--connect", "tcp:127.0.0.1:5039"], "cannot load"),
    ("ok", ["--connect", "nonsense:x"], "--connect"),
    ("ok", ["--connect", "tcp:127.0.0.1:5039", "--monitor", "tcp:8090:interface=10.1.2.3"],
     "--monitor"),
])
def test_one_line_errors(tmp_path, capsys, setup, argv, message):
    if setup is not None:
        routes = {"noroutes": "", "badapp": "route.nope=1\n"}.get(setup, "route.hello=600\n")
        conf = write_conf(tmp_path, routes=routes)
        if setup == "broken":
            (tmp_path / "diags" / "hello.dsm").write_text("initial state S;\nstate S;\n")
        argv = [conf] + argv
    status, err = run_cli(capsys, *argv)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("yaypm: error: ") and message in err, err


def test_missing_connect_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["dsm", "run", write_conf(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--connect" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _until(predicate, timeout=10.0, what="condition"):
    from twisted.internet import reactor
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.02, lambda: None)


@pytest_twisted.ensureDeferred
async def test_dsm_run_process_routes_reloads_on_sighup_and_over_xmlrpc(tmp_path):
    from twisted.internet import reactor
    sim = Simulator(clock=reactor)
    port = await sim.listen("tcp:0:interface=127.0.0.1")
    mport = _free_port()
    conf = write_conf(tmp_path)
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "yaypm.cli", "dsm", "run", conf,
         "--connect", f"tcp:127.0.0.1:{port.getHost().port}",
         "--monitor", f"tcp:{mport}:interface=127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    rpc = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{mport}")

    async def call_and_wait(prompt):
        call = sim.place_call("600")
        await _until(lambda: call.ended, what=f"the call hearing {prompt}")
        assert call.sip_status == 200 and call.heard() == [wave(prompt)]
        return call

    try:
        await _until(lambda: any("call.route" in h for h in sim.handlers().values()),
                     what="the call.route install")
        await call_and_wait("beep.au")
        (tmp_path / "diags" / "hello.dsm").write_text(HELLO.format(prompt="two.au"))
        os.kill(proc.pid, signal.SIGHUP)
        await task.deferLater(reactor, 0.5, lambda: None)
        await call_and_wait("two.au")
        (tmp_path / "diags" / "hello.dsm").write_text(HELLO.format(prompt="three.au"))
        assert await threads.deferToThread(rpc.reloadDSMs) == [200, "DSMs reloaded"]
        await call_and_wait("three.au")
        finished = await threads.deferToThread(rpc.getAttributeFinished, "dsm_state")
        assert sorted(v for _, v in finished) == ["PLAY"] * 3
        assert await threads.deferToThread(rpc.calls) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        await _until(lambda: proc.poll() is not None, what="the process to stop")
        log.close()
        sim.close()
        await port.stopListening()
    text = (tmp_path / "run.log").read_text()
    assert "DSM reload: DSMs reloaded" in text and "Traceback" not in text, text


@pytest_twisted.ensureDeferred
async def test_dsm_service_connects_runs_a_call_and_stops(tmp_path):
    from twisted.internet import reactor

    from yaypm.dsm import Engine
    from yaypm.dsm.yate import DSMRunner, DSMService
    sim = Simulator(clock=reactor)
    port = await sim.listen("tcp:0:interface=127.0.0.1")
    engine = Engine(write_conf(tmp_path))
    engine.load()
    service = DSMService(DSMRunner(engine), f"tcp:127.0.0.1:{port.getHost().port}")
    service.startService()
    try:
        await _until(lambda: any("call.route" in h for h in sim.handlers().values()),
                     what="the call.route install")
        call = sim.place_call("600")
        await _until(lambda: call.ended, what="the call")
        assert call.heard() == [wave("beep.au")]
    finally:
        await service.stopService()
        sim.close()
        await port.stopListening()
    assert not service.running and service.runner._route is None
