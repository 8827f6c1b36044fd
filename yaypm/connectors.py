"""Thin Twisted adapters that carry dispatcher lines over TCP, stdio or a reconnecting client.

Each connector only frames lines, decodes bytes (``surrogateescape``: invalid UTF-8 survives),
and hands them to a :class:`~yaypm.dispatcher.Dispatcher`.  Application code is started with
``start(dispatcher, *args, **kwargs)``.

* ``TCPDispatcherFactory(start)`` + ``reactor.connectTCP(host, port, factory)``: the YAYPM way;
  a fresh dispatcher and one ``start`` call per connection.
* ``TCPDispatcher(start)`` on ``stdio.StandardIO``: scripts Yate launches itself.
* :func:`connect_service`: a ``ClientService`` that reconnects with backoff; one dispatcher for
  the life of the service, ``start`` called once, installs/watches/setlocals re-sent on reconnect.

Yate writes each line and its newline in two ``write()`` calls and leaves Nagle on, so a peer
that delays its ACKs stalls every answer by ~40 ms (``traces/E_throughput.txt``).  The TCP
protocol therefore sets ``TCP_NODELAY`` and re-arms ``TCP_QUICKACK`` after every read on Linux.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from yaypm.dispatcher import Dispatcher, DisconnectedException

__all__ = ["ExtModuleLineProtocol", "TCPDispatcher", "TCPDispatcherFactory",
           "connect_service", "DispatcherService"]

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class ExtModuleLineProtocol(LineOnlyReceiver):
    """Frames extmodule lines for one dispatcher; ``start`` runs when the connection is up."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20       # engine lines have no limit in Yate; more than 1 MiB = broken peer
    log = Logger()

    def __init__(self, start: Optional[Callable[..., Any]] = None,
                 dispatcher: Optional[Dispatcher] = None, args: tuple = (),
                 kwargs: Optional[dict] = None, clock: Optional[IReactorTime] = None,
                 role: Optional[str] = None, quickack: bool = True) -> None:
        self.dispatcher = dispatcher if dispatcher is not None else Dispatcher(clock, role=role)
        self._start = start
        self._args = args
        self._kwargs = kwargs or {}
        self._quickack = quickack
        self._sock: Any = None

    def connectionMade(self) -> None:
        sock = getattr(self.transport, "socket", None)
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._quickack and _QUICKACK is not None:
                    self._sock = sock
                    sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                self._sock = None
        self.dispatcher.attach(self._write)
        if self._start is not None:
            start, self._start = self._start, None
            try:
                start(self.dispatcher, *self._args, **self._kwargs)
            except Exception:
                self.log.failure("start() raised")

    def dataReceived(self, data: bytes) -> None:
        if self._sock is not None:
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                self._sock = None
        LineOnlyReceiver.dataReceived(self, data)

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            return
        self.dispatcher.line_received(line.decode("utf-8", "surrogateescape"))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.log.error("Line from Yate longer than {max} bytes: closing", max=self.MAX_LENGTH)
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.dispatcher.detach(DisconnectedException(
            reason.getErrorMessage() if reason is not None else "connection lost"))

    def _write(self, text: str) -> None:
        self.transport.writeSequence((text.encode("utf-8", "surrogateescape"), b"\n"))


class TCPDispatcher(ExtModuleLineProtocol):
    """The YAYPM name: a protocol that runs ``start(dispatcher)`` on connection.

    Works on any transport, notably ``stdio.StandardIO(TCPDispatcher(start))`` for scripts Yate
    launches (stdout is the protocol there: log to stderr only).
    """

    def __init__(self, start: Callable[..., Any], args: tuple = (),
                 kwargs: Optional[dict] = None, **options: Any) -> None:
        super().__init__(start, args=args, kwargs=kwargs, **options)


class TCPDispatcherFactory(Factory):
    """YAYPM's ``TCPDispatcherFactory(start)`` for ``reactor.connectTCP(host, port, factory)``.

    ``role="global"`` sends ``%%>connect:global`` first (listeners without a preset role need
    it; listeners with one reject it).  Client factory methods are no-ops so this works with
    ``connectTCP`` as in the YAYPM documentation.
    """

    noisy = False

    def __init__(self, start: Callable[..., Any], args: tuple = (),
                 kwargs: Optional[dict] = None, role: Optional[str] = None,
                 clock: Optional[IReactorTime] = None) -> None:
        self.start = start
        self.args = args
        self.kwargs = kwargs or {}
        self.role = role
        self.clock = clock

    def buildProtocol(self, addr: Any) -> Protocol:
        proto = TCPDispatcher(self.start, self.args, self.kwargs, role=self.role,
                              clock=self.clock)
        proto.factory = self
        return proto

    # ClientFactory interface, for reactor.connectTCP
    def startedConnecting(self, connector: Any) -> None:
        pass

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        Logger().error("Cannot connect to Yate: {reason}", reason=reason.getErrorMessage())

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        pass


class _SharedDispatcherFactory(Factory):
    """Builds protocols bound to one long-lived dispatcher (for the reconnecting service)."""

    noisy = False

    def __init__(self, service: "DispatcherService") -> None:
        self.service = service

    def buildProtocol(self, addr: Any) -> Protocol:
        svc = self.service
        start = None
        if not svc.started:
            svc.started = True
            start = svc.start
        proto = ExtModuleLineProtocol(start, dispatcher=svc.dispatcher, args=svc.args,
                                      kwargs=svc.kwargs)
        svc.connections += 1
        return proto


class DispatcherService:
    """A reconnecting client: Twisted's ``ClientService`` around one dispatcher."""

    def __init__(self, endpoint: Any, start: Callable[..., Any], args: tuple = (),
                 kwargs: Optional[dict] = None, role: Optional[str] = None,
                 clock: Optional[IReactorTime] = None, max_delay: float = 30.0) -> None:
        from twisted.application.internet import ClientService, backoffPolicy
        self.dispatcher = Dispatcher(clock, role=role)
        self.start = start
        self.args = args
        self.kwargs = kwargs or {}
        self.started = False
        self.connections = 0
        kw: dict = {"retryPolicy": backoffPolicy(initialDelay=0.2, maxDelay=max_delay)}
        if clock is not None:
            kw["clock"] = clock
        self.service = ClientService(endpoint, _SharedDispatcherFactory(self), **kw)

    def startService(self) -> None:
        self.service.startService()

    def stopService(self) -> Any:
        return self.service.stopService()

    def whenConnected(self, **kw: Any) -> Any:
        return self.service.whenConnected(**kw)


def connect_service(reactor: Any, endpoint: str, start: Callable[..., Any],
                    role: Optional[str] = None, **kw: Any) -> DispatcherService:
    """Start a reconnecting connection to ``endpoint`` (e.g. ``"tcp:127.0.0.1:5039"``)."""
    from twisted.internet.endpoints import clientFromString
    svc = DispatcherService(clientFromString(reactor, endpoint), start, role=role, **kw)
    svc.startService()
    return svc
