"""Fixtures for IVR tests.

``wire``: a dispatcher on an in-memory transport whose installs and watches are confirmed, for
tests that compare the exact lines the IVR writes (shapes taken from the traces).
"""

from __future__ import annotations

from typing import List

import pytest
from twisted.internet.task import Clock

from yaypm import protocol as P
from yaypm.testing import MemoryConnection


class Wire:
    """Lines in and out of one dispatcher; installs/watches are acknowledged automatically."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.conn = MemoryConnection(clock=self.clock)
        self.dispatcher = self.conn.dispatcher
        self._ids = 0

    def take(self) -> List[str]:
        """Lines written since the last call, install/watch requests acknowledged and left out."""
        out = []
        for line in self.conn.take():
            rec = P.parse_line(line)
            if isinstance(rec, P.Install):
                self.conn.feed(f"%%<install:{rec.priority}:{rec.name}:true")
            elif isinstance(rec, P.Watch):
                self.conn.feed(f"%%<watch:{rec.name}:true")
            else:
                out.append(line)
        return out

    def feed(self, *lines: str) -> None:
        self.conn.feed(*lines)

    def message(self, name: str, params: str) -> str:
        """Feed ``%%>message`` from Yate with a fresh id; returns the id."""
        self._ids += 1
        ident = f"0x{self._ids}"
        self.feed(f"%%>message:{ident}:1795369170:{name}::{params}")
        return ident


@pytest.fixture
def wire() -> Wire:
    return Wire()


def _assert_clean(sim, dispatcher) -> None:
    """Nothing left behind: no leg, no wait, no timer, no unanswered message, no channel."""
    from yaypm.ivr import switchboard
    board = switchboard(dispatcher)
    assert len(board) == 0, board.live
    assert board.legs == {} and board._tags == {} and board._retired == {}
    assert board.pending_count() == 0
    assert dispatcher.pending_count() == 0, dispatcher.pending_count()
    assert dispatcher.waiting_count() == 0
    assert sim.clock.getDelayedCalls() == [], sim.clock.getDelayedCalls()
    assert sim.leaks() == {}, sim.leaks()


class Apps:
    """Run apps on a simulator: ``apps.route("100", app)`` then ``sim.place_call("100")``."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self.dispatcher = sim.connect()
        self.legs: list = []
        self.results: list = []
        self.errors: list = []

    def route(self, called, app):
        from yaypm.ivr import route

        def wrapped(leg):
            self.legs.append(leg)
            return app(leg)
        return route(self.dispatcher, called, wrapped)

    def clean(self) -> None:
        _assert_clean(self.sim, self.dispatcher)


@pytest.fixture
def apps(sim) -> Apps:
    return Apps(sim)


@pytest.fixture
def assert_clean():
    """``assert_clean(sim, dispatcher)``: nothing left behind (a fixture: test modules of
    several folders cannot all import their own ``conftest``)."""
    return _assert_clean
