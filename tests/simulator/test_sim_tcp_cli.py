"""The simulator over real sockets (pytest-twisted) and ``yaypm simulate``'s command language."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any, List

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from yaypm.connectors import TCPDispatcherFactory
from yaypm.testing.simcli import CommandInterpreter, _endpoint_string
from yaypm.testing.simulator import Simulator


def _route_to_dumb(d: Any) -> None:
    def executed(m: Any) -> None:
        if m.get("callto") == "dumb/":
            d.msg("chan.masquerade", {"message": "call.answered", "id": m["peerid"]}).dispatch()
    d.handler("call.route", lambda m: m.ret(True, "dumb/"), priority=50)
    d.watcher("call.execute", executed)


async def _wait(reactor: Any, predicate: Any, timeout: float = 5.0) -> None:
    from twisted.internet import task
    waited = 0.0
    while not predicate():
        await task.deferLater(reactor, 0.01, lambda: None)
        waited += 0.01
        if waited > timeout:
            raise AssertionError("condition not reached")


@pytest_twisted.ensureDeferred
async def test_a_real_dispatcher_over_tcp_routes_and_answers_a_call() -> None:
    from twisted.internet import reactor
    sim = Simulator(reactor)
    port = await sim.listen("tcp:0:interface=127.0.0.1")
    connector = None
    try:
        connector = reactor.connectTCP("127.0.0.1", port.getHost().port,
                                       TCPDispatcherFactory(_route_to_dumb))
        await _wait(reactor, lambda: sim.handlers().get("conn1", {}).get("call.route") == 50)
        call = sim.place_call("100")
        await call.answered().addTimeout(5, reactor)
        assert call.sip_status == 200 and call.peer_id == "dumb/1"
        call.hangup()
        await _wait(reactor, lambda: sim.leaks() == {})
    finally:
        if connector is not None:
            connector.disconnect()
        sim.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_roleless_listener_framing_and_overflow() -> None:
    from twisted.internet import reactor, threads
    sim = Simulator(reactor)
    port = await sim.listen("tcp:0:interface=127.0.0.1", role=None)
    addr = ("127.0.0.1", port.getHost().port)

    def client() -> List[bytes]:
        out = []
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(b"%%>connect:global\r\n%%>setlocal:engine.version:\x00"
                      b"%%>setlocal:timeout:\n")
            buf = b""
            while buf.count(b"\n") < 2:
                buf += s.recv(4096)
            out.append(buf)
            s.sendall(b"x" * 8191)                     # bufsize - 1 bytes without a LF
            s.settimeout(5)
            out.append(s.recv(4096))                   # b"": Yate closes the socket
        return out

    try:
        got = await threads.deferToThread(client)
        assert got[0] == (b"%%<setlocal:engine.version:6.4.1:true\n"
                          b"%%<setlocal:timeout:10000:true\n")
        assert got[1] == b""
    finally:
        sim.close()
        await port.stopListening()


def test_commands_drive_the_simulator(sim: Simulator) -> None:
    out: List[str] = []
    quit: List[bool] = []
    cli = CommandInterpreter(sim, out.append, lambda: quit.append(True))
    d = sim.connect(_route_to_dumb)
    assert cli.execute("endpoint bob busy") is None
    assert cli.execute('call 100 from alice name "Alice A" dtmf rfc2833') is None
    assert out[-2:] == ["sip/1: calling 100 from alice", "sip/1: answered"]
    got: List[str] = []
    d.handler("chan.dtmf", lambda m: got.append(m["text"]) or True, priority=40)
    cli.execute("dtmf last 12 interval 0.5")
    assert cli.execute("wait 1") == 1.0
    sim.advance(1)
    assert got == ["1", "2"]
    cli.execute("status")
    assert "  sip/1 answered peer=dumb/1" in out
    cli.execute("lines 1")
    cli.execute("hangup sip/1")
    assert out[-2:][0] == "sip/1: hanging up" and out[-1].startswith("sip/1: ended, SIP 200")
    cli.execute("drop sip/9")
    assert out[-1] == "error: no channel sip/9"
    cli.execute("frobnicate")
    assert out[-1].startswith("error: unknown command")
    cli.execute("help")
    assert "call 100" in out[-1]
    cli.execute("quit")
    assert quit == [True]


def test_endpoint_strings() -> None:
    assert _endpoint_string("tcp:127.0.0.1:5039") == "tcp:5039:interface=127.0.0.1"
    assert _endpoint_string("tcp:5039:interface=0.0.0.0") == "tcp:5039:interface=0.0.0.0"
    assert _endpoint_string("unix:/tmp/y.sock") == "unix:/tmp/y.sock"


def test_yaypm_simulate_help() -> None:
    r = subprocess.run([sys.executable, "-m", "yaypm.cli", "simulate", "--help"],
                       capture_output=True, text=True, timeout=60)
    if "invalid choice" in r.stderr or r.returncode == 2 and "simulate" not in r.stdout:
        pytest.skip("yaypm.cli does not load yaypm.testing.simcli")
    assert r.returncode == 0, r.stderr
    assert "--listen" in r.stdout and "endpoint bob answer" in r.stdout


def test_yaypm_simulate_serves_and_quits() -> None:
    """The whole command: listen on a free port, run a call from stdin, quit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    r = subprocess.run([sys.executable, "-m", "yaypm.cli", "simulate", "--listen",
                        f"tcp:127.0.0.1:{free}"],
                       input="call 100\nstatus\nquit\n", capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"listening on 127.0.0.1:{free}" in r.stdout
    assert "sip/1: ended, SIP 404 No route to call target" in r.stdout
    assert r.stdout.rstrip().endswith("bye")
    assert Deferred is not None
