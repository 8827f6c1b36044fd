"""Connectors: framing over in-memory transports, a real loopback socket, reconnection."""

from __future__ import annotations

import socket
from typing import List

import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import implementer

from yaypm import AbandonedException, TCPDispatcher, TCPDispatcherFactory
from yaypm import protocol as P
from yaypm.connectors import DispatcherService, ExtModuleLineProtocol, connect_service
from yaypm.testing import failure_result_of, success_result_of

ROUTE = b"%%>message:0x7f.1:1795366856:call.route::id=sip/1:caller=alice:called=ivr\n"


def route_ivr(yate):
    """YAYPM wiki style: route calls to 'ivr' to a dumb channel."""
    d = yate.onmsg("call.route", lambda m: m["called"] == "ivr")
    d.addCallback(lambda route: route.ret(True, "dumb/"))


def make_protocol(start=route_ivr, **kw):
    clock = Clock()
    proto = TCPDispatcher(start, clock=clock, **kw)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, clock


# --------------------------------------------------------------------------------------------
# Framing
# --------------------------------------------------------------------------------------------

def test_unhandled_message_is_answered_false():
    proto, transport, _ = make_protocol(start=lambda yate: None)
    proto.dataReceived(b"%%>message:0x1:1700000000:call.route::called=100\n")
    assert transport.value() == b"%%<message:0x1:false:\n"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_lines_reassembled_at_any_chunk_size(size):
    proto, transport, _ = make_protocol()
    assert transport.value() == b"%%>install:100:call.route\n"
    transport.clear()
    data = (b"%%<install:100:call.route:true\n" + b"%%<message::false:chan.startup::id=sip/1\n"
            + "%%>message:0x7f.1:1:call.route::called=ivr:name=é中\n".encode() + ROUTE)
    for i in range(0, len(data), size):
        proto.dataReceived(data[i:i + size])
    assert transport.value() == (b"%%<message:0x7f.1:true:call.route:dumb/\n"
                                 b"%%<message:0x7f.1:false:\n")


def test_crlf_and_empty_lines_are_tolerated():
    proto, transport, _ = make_protocol()
    transport.clear()
    with capturedLogs() as logs:
        proto.dataReceived(b"%%<install:100:call.route:true\r\n\n\n\r\n"
                           + ROUTE.replace(b"\n", b"\r\n"))
    assert transport.value() == b"%%<message:0x7f.1:true:call.route:dumb/\n"
    assert not [e for e in logs if e.get("log_level").name in ("warn", "error")]


def test_invalid_utf8_survives_the_round_trip():
    seen = []
    proto, transport, _ = make_protocol(start=lambda yate: yate.handler(
        "x", lambda m: (seen.append(m["v"]), m.__setitem__("v", m["v"] + "!"), True)[2]))
    transport.clear()
    proto.dataReceived(b"%%<install:100:x:true\n%%>message:0x2:0:x::v=a\xc0\xffb\n")
    assert seen == ["a\udcc0\udcffb"]
    assert transport.value() == b"%%<message:0x2:true:x::v=a\xc0\xffb!\n"


def test_line_longer_than_one_mebibyte_closes_the_connection():
    proto, transport, _ = make_protocol()
    with capturedLogs() as logs:
        proto.dataReceived(b"%%>message:0x1:0:x::v=" + b"x" * (1 << 20))
    assert transport.disconnecting
    assert any("longer" in e.get("log_format", "") for e in logs)


def test_malformed_line_is_logged_and_the_next_one_served():
    proto, transport, _ = make_protocol()
    transport.clear()
    with capturedLogs() as logs:
        proto.dataReceived(b"%%<install:100:call.route:true\n%%>message:bad%a:0:x:\n" + ROUTE)
    assert transport.value() == b"%%<message:0x7f.1:true:call.route:dumb/\n"
    assert any("bad%a" in e.get("error", "") for e in logs)


def test_connection_lost_fails_outstanding_requests():
    results = []

    def start(yate):
        results.append(yate.msg("x.test").dispatch())
        results.append(yate.onmsg("chan.hangup", until=results[0]))

    proto, transport, _ = make_protocol(start=start)
    proto.connectionLost(Failure(ConnectionError("gone")))
    from yaypm import DisconnectedException
    failure_result_of(results[0], DisconnectedException)
    failure_result_of(results[1], AbandonedException)


def test_role_sends_connect_first():
    _, transport, _ = make_protocol(role="global")
    assert transport.value().split(b"\n")[:2] == [b"%%>connect:global",
                                                  b"%%>install:100:call.route"]


def test_start_raising_is_logged_and_the_connection_stays():
    def start(yate):
        raise RuntimeError("app bug")
    with capturedLogs() as logs:
        proto, transport, _ = make_protocol(start=start)
    assert any("start() raised" in e.get("log_format", "") for e in logs)
    proto.dataReceived(ROUTE)
    assert transport.value() == b"%%<message:0x7f.1:false:\n"


# --------------------------------------------------------------------------------------------
# A fake engine at the wire, over iosim
# --------------------------------------------------------------------------------------------

class FakeEngine(LineOnlyReceiver):
    """Yate's side of the wire: acks installs/watches, records every line."""
    delimiter = b"\n"

    def __init__(self) -> None:
        self.lines: List[str] = []
        self.answers: List[str] = []

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "surrogateescape")
        self.lines.append(text)
        rec = P.parse_line(text, script_side=True)
        if isinstance(rec, P.Install):
            self.sendLine(P.InstallReply(rec.priority or 100, rec.name, True).encode().encode())
        elif isinstance(rec, P.Watch):
            self.sendLine(P.WatchReply(rec.name, True).encode().encode())
        elif isinstance(rec, P.MessageAnswer):
            self.answers.append(text)
        elif isinstance(rec, P.Message) and rec.id:
            self.sendLine(P.MessageAnswer(rec.id, True, rec.name, "ok", rec.params)
                          .encode(engine_side=True).encode())


def test_module_against_fake_engine_over_iosim():
    clock = Clock()
    engine = FakeEngine()
    module = TCPDispatcher(route_ivr, clock=clock)
    pump = iosim.connect(engine, iosim.FakeTransport(engine, isServer=True),
                         module, iosim.FakeTransport(module, isServer=False), clock=clock)
    assert engine.lines == ["%%>install:100:call.route"]
    engine.sendLine(ROUTE.rstrip(b"\n"))
    pump.flush()
    assert engine.answers == ["%%<message:0x7f.1:true:call.route:dumb/"]
    d = module.dispatcher.msg("engine.status", {"module": "sip"}).dispatch()
    pump.flush()
    assert success_result_of(d) is True


# --------------------------------------------------------------------------------------------
# Real loopback TCP (pytest-twisted): the YAYPM wiki snippet, unchanged
# --------------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_tcp_dispatcher_factory_over_loopback():
    from twisted.internet import reactor

    engines: List[FakeEngine] = []
    answered: Deferred = Deferred()

    class Engine(FakeEngine):
        def connectionMade(self) -> None:
            engines.append(self)

        def lineReceived(self, line: bytes) -> None:
            super().lineReceived(line)
            if line.startswith(b"%%>install:"):
                self.sendLine(ROUTE.rstrip(b"\n"))
            elif line.startswith(b"%%<message:") and not answered.called:
                answered.callback(line)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Engine), interface="127.0.0.1")
    try:
        # --- the wiki snippet ---
        f = TCPDispatcherFactory(route_ivr)
        connector = reactor.connectTCP("127.0.0.1", port.getHost().port, f)
        # ------------------------
        answer = await answered.addTimeout(10, reactor)
        assert answer == b"%%<message:0x7f.1:true:call.route:dumb/"
        assert engines[0].lines[0] == "%%>install:100:call.route"
        sock = connector.transport.socket
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        lost: Deferred = Deferred()
        proto = connector.transport.protocol
        original = proto.connectionLost
        proto.connectionLost = lambda reason: (original(reason), lost.callback(None))
        connector.disconnect()
        await lost.addTimeout(10, reactor)
        assert not proto.dispatcher.connected
    finally:
        await port.stopListening()
        for e in engines:
            e.transport.loseConnection()


# --------------------------------------------------------------------------------------------
# The reconnecting service, on a fake endpoint and a Clock
# --------------------------------------------------------------------------------------------

@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """Records connection attempts; the test decides when (and whether) they succeed."""

    def __init__(self) -> None:
        self.attempts: List[Deferred] = []
        self.protocols: list = []
        self.transports: List[StringTransport] = []

    def connect(self, factory):
        d: Deferred = Deferred()

        def build(_):
            proto = factory.buildProtocol(None)
            transport = StringTransport()
            proto.makeConnection(transport)
            self.protocols.append(proto)
            self.transports.append(transport)
            return proto
        d.addCallback(build)
        self.attempts.append(d)
        return d


def test_service_reconnects_and_resends_state():
    clock = Clock()
    endpoint = FakeEndpoint()
    starts = []

    def start(yate):
        starts.append(yate)
        yate.setlocal("trackparam", "myapp")
        route_ivr(yate)
        yate.onwatch("call.execute")

    svc = DispatcherService(endpoint, start, clock=clock)
    svc.startService()
    endpoint.attempts[0].callback(None)
    first = endpoint.transports[0]
    assert first.value() == (b"%%>setlocal:trackparam:myapp\n%%>install:100:call.route\n"
                             b"%%>watch:call.execute\n")
    endpoint.protocols[0].dataReceived(b"%%<setlocal:trackparam:myapp:true\n"
                                       b"%%<install:100:call.route:true\n"
                                       b"%%<watch:call.execute:true\n")
    with capturedLogs():
        endpoint.protocols[0].connectionLost(Failure(ConnectionError("engine restarted")))
    assert len(endpoint.attempts) == 1
    clock.advance(1.3)                  # backoff: first retry after 0.2 s + jitter (< 1 s)
    assert len(endpoint.attempts) == 2
    endpoint.attempts[1].callback(None)
    second = endpoint.transports[1]
    assert second.value() == first.value()     # same state, same order
    assert len(starts) == 1 and svc.connections == 2
    endpoint.protocols[1].dataReceived(b"%%<install:100:call.route:true\n" + ROUTE)
    assert second.value().endswith(b"%%<message:0x7f.1:true:call.route:dumb/\n")
    stopped = svc.stopService()
    assert stopped is not None


def test_service_retries_failed_attempts_with_backoff():
    clock = Clock()
    endpoint = FakeEndpoint()
    svc = DispatcherService(endpoint, route_ivr, clock=clock, max_delay=5)
    svc.startService()
    with capturedLogs():
        for i in range(6):
            endpoint.attempts[-1].errback(ConnectionRefusedError())
            clock.advance(5)
    assert len(endpoint.attempts) == 7
    svc.stopService()
    assert all(not c.active() for c in clock.getDelayedCalls())


def test_connect_service_parses_endpoint_strings():
    clock = Clock()
    from twisted.internet.testing import MemoryReactorClock
    reactor = MemoryReactorClock()
    svc = connect_service(reactor, "tcp:127.0.0.1:5039", route_ivr, role="global", clock=clock)
    host, port, factory, timeout, bind = reactor.tcpClients[0]
    assert (host, port) == ("127.0.0.1", 5039)
    assert svc.dispatcher.role == "global"
    svc.stopService()


def test_extmodule_line_protocol_with_shared_dispatcher():
    from yaypm.dispatcher import Dispatcher
    disp = Dispatcher(Clock())
    proto = ExtModuleLineProtocol(dispatcher=disp)
    transport = StringTransport()
    proto.makeConnection(transport)
    d = disp.setlocal("timeout", 1000)
    proto.dataReceived(b"%%<setlocal:timeout:1000:true\n")
    assert success_result_of(d) == "1000"
    assert transport.value() == b"%%>setlocal:timeout:1000\n"
