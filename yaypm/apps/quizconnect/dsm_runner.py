"""quizconnect, the DSM version: the scripts in ``dsm/`` on :mod:`yaypm.dsm`.

``make_engine(config)`` loads ``quizconnect_caller.dsm`` and ``quizconnect_callee.dsm`` into a
DSM :class:`~yaypm.dsm.Engine` whose ``$config.*`` are the settings of ``quizconnect.conf``
(durations rounded to whole seconds: DSM timers count seconds).  SQL goes through
:class:`yaypm.sql.Database` with the same URL rules as the Python version (``sqlite:///rel``
relative, ``sqlite:////abs`` absolute), always with bound parameters.

Running it on Yate needs the DSM engine's Yate adapter (:mod:`yaypm.dsm.yate`); :func:`start`
connects the two when it is there and says so clearly when it is not.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional

from twisted.internet.defer import Deferred

from yaypm.dsm import Engine
from yaypm.dsm.sql import SQLResult
from yaypm.sql import Database

from yaypm.apps.quizconnect.config import QuizConfig

__all__ = ["DSM_DIR", "SCRIPTS", "CALLER_APP", "CALLEE_APP", "load_scripts", "make_engine",
           "SQLExecutor", "adapter_available", "start"]

DSM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dsm")
CALLER_APP = "quizconnect_caller"
CALLEE_APP = "quizconnect_callee"
SCRIPTS = (CALLER_APP, CALLEE_APP)


def load_scripts(folder: str = DSM_DIR) -> Dict[str, str]:
    """The two diagrams' source text, by name."""
    out = {}
    for name in SCRIPTS:
        with open(os.path.join(folder, name + ".dsm"), encoding="utf-8") as f:
            out[name] = f.read()
    return out


class SQLExecutor:
    """mod_mysql's executor on :class:`yaypm.sql.Database` (``threaded=False``: inline, for
    SQLite/tests on a ``task.Clock``)."""

    def __init__(self, url: str, threaded: bool = True, reactor: Any = None) -> None:
        self.database = Database(url, threaded=threaded, reactor=reactor)
        self.paramstyle = "qmark" if self.database.paramstyle == "qmark" else "format"
        self.version = self.database.module

    def execute(self, query: str, params: tuple) -> Deferred[SQLResult]:
        return self.database.run_interaction(_execute, query, params)

    def close(self) -> None:
        self.database.close()


def _execute(cursor: Any, query: str, params: tuple) -> SQLResult:
    cursor.execute(query, params)
    res = SQLResult()
    if cursor.description:
        res.columns = [d[0] for d in cursor.description]
        res.rows = [tuple(r) for r in cursor.fetchall()]
        res.rowcount = len(res.rows)
    else:
        res.rowcount = cursor.rowcount
    res.lastrowid = getattr(cursor, "lastrowid", None)
    return res


def make_engine(config: QuizConfig, *, clock: Any = None, threaded: bool = True,
                sql_connect: Optional[Callable[[str], Any]] = None,
                folder: str = DSM_DIR) -> Engine:
    """A DSM engine running quizconnect's two diagrams with ``config`` as ``$config.*``."""
    connect = sql_connect or (lambda url: SQLExecutor(url, threaded=threaded))
    return Engine.from_scripts(load_scripts(folder), config=config.dsm_config(), clock=clock,
                               sql_connect=connect,
                               conf={"monitoring_full_stategraph": "yes",
                                     "monitoring_full_transitions": "yes"})


def adapter_available() -> bool:
    """Whether the DSM engine's Yate adapter (``yaypm.dsm.yate``) is installed."""
    try:
        import yaypm.dsm.yate  # noqa: F401
    except ImportError:
        return False
    return True
