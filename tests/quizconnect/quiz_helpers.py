"""Helpers of the quizconnect tests: :class:`Quiz` (one app of either version on one
simulator, with its callee table) and the real database servers' URLs.

(A module of its own, not ``conftest``: test folders are not packages, so every
``conftest`` module is named ``conftest``.)
"""

from __future__ import annotations

import os
import uuid
from typing import Any, List, Optional

import pytest

from yaypm.apps.quizconnect.config import QuizConfig
from yaypm.apps.quizconnect.store import CalleeStore
from yaypm.registry import CallRegistry
from yaypm.sql import Database
from yaypm.testing import success_result_of
from yaypm.testing.simulator import Simulator
from yaypm.testing.simulator.channels import ConfChannel

VERSIONS = ["python", "dsm"]

# Short, whole-second settings (the DSM timers count whole seconds).
SETTINGS = dict(ring_timeout=30.0, pin_timeout=8.0, interdigit_timeout=4.0, attempts=3,
                overall_timeout=60.0)


def server_url(var: str) -> str:
    """A real database server's URL from the environment; a failure in CI, else a skip."""
    url = os.environ.get(var)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{var} is not set in CI: run scripts/start-test-databases")
        pytest.skip(f'{var} not set (eval "$(scripts/start-test-databases)" starts it)')
    return url


class Quiz:
    """One quizconnect app (``version``) on one simulator, with its callee table."""

    def __init__(self, sim: Simulator, version: str, db_url: str, number: str = "35",
                 **settings: Any) -> None:
        self.sim = sim
        self.version = version
        self.number = number
        opts = dict(SETTINGS)
        opts.update(settings)
        self.config = QuizConfig(db_url=db_url, **opts)
        self.db = Database(db_url, threaded=False)
        self.store = CalleeStore(self.db)
        self.registry = CallRegistry(sim.clock)
        self.events: List[Any] = []
        self.app: Any = None
        self.engine: Any = None

    def seed(self, *rows: tuple) -> "Quiz":
        """Create the table and add ``(callee, pin)`` rows for ``self.number``."""
        success_result_of(self.store.init())
        for callee, pin in rows:
            success_result_of(self.store.add(self.number, callee, pin))
        return self

    def start(self) -> "Quiz":
        if self.version == "python":
            from yaypm.apps.quizconnect.app import QuizConnect
            self.app = QuizConnect(self.config, self.store, registry=self.registry,
                                   observer=self.events.append)
            self.dispatcher = self.sim.connect(self.app.start)
        else:
            from yaypm.apps.quizconnect import dsm_runner
            if not dsm_runner.adapter_available():
                pytest.skip("the DSM engine's Yate adapter (yaypm.dsm.yate) is not there yet")
            self.engine = dsm_runner.make_engine(self.config, clock=self.sim.clock,
                                                 threaded=False)
            self.dispatcher = self.sim.connect(
                lambda d: dsm_runner.start(d, self.config, engine=self.engine))
        return self

    # -- the SIP side ------------------------------------------------------------------------
    def callee(self, name: str, behaviour: Any) -> Any:
        return self.sim.endpoint(name, behaviour)

    def leg(self, name: str) -> Any:
        """The (last) call the callee ``name`` received."""
        return self.sim.endpoints[name].last

    def legs(self, name: str) -> List[Any]:
        ep = self.sim.endpoints.get(name)
        return list(ep.legs) if ep is not None else []

    def call(self, number: Optional[str] = None, caller: str = "alice") -> Any:
        return self.sim.place_call(number or self.number, caller=caller)

    def talking(self, a: Any, b: Any) -> bool:
        """Whether the SIP parties ``a`` and ``b`` hear each other (bridged directly, or in
        the same conference room)."""
        if a.ended or b.ended:
            return False
        if a.peer_id == b.chan.id and b.peer_id == a.chan.id:
            return True
        chans = self.sim.channels
        pa, pb = chans.get(a.peer_id), chans.get(b.peer_id)
        return isinstance(pa, ConfChannel) and isinstance(pb, ConfChannel) and pa.room is pb.room

    def prompt(self, name: str) -> str:
        return "wave/play/" + self.config.prompt(name)

    # -- nothing left behind -----------------------------------------------------------------
    def assert_clean(self) -> None:
        sim = self.sim
        assert sim.leaks() == {}, sim.leaks()
        assert self.dispatcher.pending_count() == 0
        if self.version == "python":
            from yaypm.ivr import switchboard
            board = switchboard(self.dispatcher)
            assert len(board) == 0 and board.legs == {}, board.legs
            assert board.pending_count() == 0
            assert self.registry.active == {}, self.registry.active
        else:
            assert not self.engine.registry.sessions, self.engine.registry.sessions
        assert sim.clock.getDelayedCalls() == [], sim.clock.getDelayedCalls()


def unique_number() -> str:
    """A dialled number no other test (or concurrent run) uses on a shared server."""
    return "35" + uuid.uuid4().hex[:10]
