"""Shared helpers for the DSM tests."""
from __future__ import annotations

import os
import sqlite3
from typing import Any

from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock

from yaypm.dsm import Engine, FakeBackend
from yaypm.dsm.sql import SQLResult

HERE = os.path.dirname(__file__)
CORPUS = os.path.join(HERE, "corpus")
SEMS = os.path.join(CORPUS, "sems")
QUIZ = os.path.join(SEMS, "doc", "dsm", "tutorials", "quizconnect")


class SyncSQLite:
    """A synchronous SQLExecutor over an in-memory sqlite database (records queries)."""

    paramstyle = "qmark"
    version = "sqlite-test"

    def __init__(self, setup: str = "") -> None:
        self.db = sqlite3.connect(":memory:")
        if setup:
            self.db.executescript(setup)
        self.queries: list[tuple[str, tuple]] = []

    def execute(self, query: str, params: tuple) -> Any:
        self.queries.append((query, params))
        try:
            cur = self.db.execute(query, params)
        except sqlite3.Error as e:
            return fail(e)
        return succeed(SQLResult.from_cursor(cur))

    def close(self) -> None:
        self.db.close()


QUIZ_SQL = """
create table callees (id integer primary key, caller text, callee text, pin text);
insert into callees (caller, callee, pin) values ('35', 'john', '12345');
insert into callees (caller, callee, pin) values ('35', 'anna', '54321');
"""


def make_engine(scripts: dict[str, str], clock: Clock | None = None, **kw: Any) -> Engine:
    return Engine.from_scripts(scripts, clock=clock or Clock(), **kw)


def run(text: str, clock: Clock | None = None, app: str = "t", start: bool = True,
        backend: FakeBackend | None = None, **kw: Any):
    """Engine + one started session for a script; returns (session, backend, engine)."""
    eng = make_engine({app: text}, clock, **kw)
    b = backend or FakeBackend()
    s = eng.create_session(app, b)
    if start:
        s.start()
    return s, b, eng

