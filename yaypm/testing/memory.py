"""A dispatcher on an in-memory transport: read the lines it wrote, feed it lines from "Yate".

For unit tests of handlers without a socket or an engine::

    conn = MemoryConnection(start)                  # start(dispatcher) runs at once
    assert conn.take() == ["%%>install:100:call.route"]
    conn.feed("%%<install:100:call.route:true",
              "%%>message:0x1:1700000000:call.route::called=ivr")
    assert conn.take() == ["%%<message:0x1:true:call.route:dumb/"]

Time comes from a ``task.Clock`` (``conn.clock.advance(5)``) unless another clock is given.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from twisted.internet.task import Clock

from yaypm.dispatcher import Dispatcher, DisconnectedException

__all__ = ["MemoryConnection"]


class MemoryConnection:
    """One dispatcher whose written lines are collected in :attr:`written`."""

    def __init__(self, start: Optional[Callable[..., Any]] = None, *args: Any,
                 clock: Any = None, role: Optional[str] = None,
                 dispatcher: Optional[Dispatcher] = None, **kwargs: Any) -> None:
        self.clock = clock if clock is not None else Clock()
        self.dispatcher = dispatcher or Dispatcher(self.clock, role=role)
        self.written: List[str] = []
        self.dispatcher.attach(self.written.append)
        if start is not None:
            start(self.dispatcher, *args, **kwargs)

    def feed(self, *lines: str) -> None:
        """Hand lines to the dispatcher as if Yate had sent them (no trailing newline)."""
        for line in lines:
            self.dispatcher.line_received(line)

    def take(self) -> List[str]:
        """Return the lines written since the last call and forget them."""
        out = self.written[:]
        del self.written[:]
        return out

    def disconnect(self, reason: str = "connection lost") -> None:
        """Drop the connection: outstanding requests fail with DisconnectedException."""
        self.dispatcher.detach(DisconnectedException(reason))

    def reconnect(self) -> None:
        """Bring the connection back: the dispatcher re-sends setlocals, installs, watches."""
        self.dispatcher.attach(self.written.append)
