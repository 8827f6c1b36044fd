"""pytest fixtures for the simulator (loaded by the ``yaypm`` pytest plugin).

* ``sim`` — a :class:`~yaypm.testing.simulator.Simulator` on a fresh ``task.Clock``
  (``sim.clock``); closed after the test.
* ``sim_factory`` — ``sim_factory(**kwargs)`` for tests that need options (``media_dir``,
  ``durations``, ``timeout``) or several engines; all are closed after the test.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List

import pytest
from twisted.internet.task import Clock

from yaypm.testing.simulator.api import Simulator

__all__ = ["sim", "sim_factory"]


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., Simulator]]:
    made: List[Simulator] = []

    def make(clock: Any = None, **kwargs: Any) -> Simulator:
        s = Simulator(clock if clock is not None else Clock(), **kwargs)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


@pytest.fixture
def sim(sim_factory: Callable[..., Simulator]) -> Simulator:
    return sim_factory()
