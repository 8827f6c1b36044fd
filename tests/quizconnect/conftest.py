"""Fixtures of the quizconnect tests, for both versions (``version``: ``python``, ``dsm``).

``quiz(*rows, **settings)`` is a started :class:`~quiz_helpers.Quiz`: a seeded callee table,
the app of the version under test connected to the ``sim`` fixture's simulator, scripted
callees, and helpers to read what the SIP parties saw.  Time is the simulator's
``task.Clock``; SQL runs inline (``threaded=False``).
"""

from __future__ import annotations

from typing import Any, List, Optional

import pytest

from yaypm.testing.simulator import Simulator

from quiz_helpers import VERSIONS, Quiz


@pytest.fixture(params=VERSIONS)
def version(request: Any) -> str:
    return request.param


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/quizconnect.db"


@pytest.fixture
def quiz(sim: Simulator, version: str, sqlite_url: str):
    """``quiz(*rows, **settings)`` -> a started :class:`Quiz` for the version under test."""
    made: List[Quiz] = []

    def make(*rows: tuple, db_url: Optional[str] = None, number: str = "35",
             seed: bool = True, **settings: Any) -> Quiz:
        q = Quiz(sim, version, db_url or sqlite_url, number, **settings)
        if seed:
            q.seed(*rows)
        made.append(q)
        return q.start()
    yield make
    for q in made:
        q.db.close()
