"""The simulator as a real extmodule TCP listener (what ``yaypm simulate`` runs).

A thin ``LineOnlyReceiver`` per accepted socket: it frames lines (LF, CR stripped, NUL ends a
line as in Yate's reader), decodes them with ``surrogateescape`` and hands them to the
connection's :class:`~yaypm.testing.simulator.extmodule.ExtConnection` through the engine's job
queue.  A partial line of ``bufsize - 1`` bytes closes the socket, as Yate does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

if TYPE_CHECKING:  # pragma: no cover
    from yaypm.testing.simulator.api import SimConnection, Simulator

__all__ = ["SimLineProtocol", "SimListenerFactory", "listen"]


class SimLineProtocol(LineOnlyReceiver):
    """Yate's side of one accepted extmodule socket."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20
    log = Logger()

    def __init__(self, sim: "Simulator", role: Optional[str]) -> None:
        self.sim = sim
        self.role = role
        self.conn: Optional["SimConnection"] = None

    def connectionMade(self) -> None:
        self.conn = self.sim._new_connection(self.role, None)
        self.conn.transport = self
        peer = self.transport.getPeer()
        self.log.info("extmodule connection {name} from {peer}", name=self.conn.name,
                      peer=str(peer))

    def dataReceived(self, data: bytes) -> None:
        if b"\x00" in data:
            data = data.replace(b"\x00", b"\n")      # NUL ends a line in Yate's reader
        LineOnlyReceiver.dataReceived(self, data)
        conn = self.conn
        if conn is not None and not conn.closed and \
                len(self._buffer) >= conn.ext.bufsize - 1:
            self.log.info("{name}: buffer overflow, closing", name=conn.name)
            conn.ext.die()

    def lineReceived(self, line: bytes) -> None:
        conn = self.conn
        if conn is None or conn.closed:
            return
        text = line.decode("utf-8", "surrogateescape")
        conn.sim._log(conn.name, ">>", text)
        conn.sim.engine.run(conn.ext.data_received, text)

    def send_line(self, line: str) -> None:
        if self.transport is not None:
            self.sendLine(line.encode("utf-8", "surrogateescape"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        conn = self.conn
        if conn is not None and not conn.closed:
            conn.closed = True
            conn.sim._log(conn.name, ">>", "# connection closed by the script")
            conn.sim.engine.run(conn.ext.connection_lost)


class SimListenerFactory(Factory):
    noisy = False

    def __init__(self, sim: "Simulator", role: Optional[str]) -> None:
        self.sim = sim
        self.role = role

    def buildProtocol(self, addr: Any) -> SimLineProtocol:
        p = SimLineProtocol(self.sim, self.role)
        p.factory = self
        return p


def listen(sim: "Simulator", endpoint: str, role: Optional[str] = "global",
           reactor: Any = None) -> Deferred:
    """Listen on a server endpoint string; fires with the ``IListeningPort``."""
    if reactor is None:
        from twisted.internet import reactor as _reactor
        reactor = _reactor
    ep = serverFromString(reactor, endpoint)
    return ep.listen(SimListenerFactory(sim, role))
