"""pytest plugin (entry point ``pytest11: yaypm``): fixtures for testing yaypm apps.

Loaded automatically once yaypm is installed. Fixtures:

* ``yaypm_clock`` — a fresh ``task.Clock``;
* ``memory_connection`` — a factory ``memory_connection(start=None, **kw)`` returning a
  :class:`~yaypm.testing.memory.MemoryConnection` on that clock.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import pytest
from twisted.internet.task import Clock

from yaypm.testing.memory import MemoryConnection


@pytest.fixture
def yaypm_clock() -> Clock:
    return Clock()


@pytest.fixture
def memory_connection(yaypm_clock: Clock) -> Callable[..., MemoryConnection]:
    def make(start: Optional[Callable[..., Any]] = None, *args: Any,
             **kwargs: Any) -> MemoryConnection:
        kwargs.setdefault("clock", yaypm_clock)
        return MemoryConnection(start, *args, **kwargs)
    return make

from yaypm.testing.simulator.fixtures import *  # noqa: E402,F401,F403  (sim, sim_factory)
from yaypm.testing.yate import *  # noqa: E402,F401,F403  (yate, yate_connect, sip_call, sip_callee, --yate-required)
