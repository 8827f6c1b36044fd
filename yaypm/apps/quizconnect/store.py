"""The callee table: who is called for a dialled number, and with which PIN.

Every query binds its values (``?`` placeholders, see :mod:`yaypm.sql`); a dialled number such
as ``35' OR '1'='1`` is compared as text and matches nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import List

from twisted.internet.defer import Deferred

from yaypm.sql import Database

__all__ = ["Callee", "CalleeStore", "schema_sql"]


@dataclass(frozen=True)
class Callee:
    """One row of ``callees``: ``caller`` is the dialled number."""
    id: int
    caller: str
    callee: str
    pin: str


def schema_sql(scheme: str) -> str:
    """The CREATE statements for a database scheme (sqlite, mysql, postgresql)."""
    name = {"mariadb": "mysql", "postgres": "postgresql"}.get(scheme, scheme)
    return resources.files(__package__).joinpath(f"schema.{name}.sql").read_text()


class CalleeStore:
    """Reads and writes ``callees`` through a :class:`~yaypm.sql.Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def init(self) -> Deferred[None]:
        """Create the table (and its index) if missing."""
        return self.db.run_script(schema_sql(self.db.scheme))

    def lookup(self, dialled: str) -> Deferred[List[Callee]]:
        """Every callee registered for ``dialled``, in id order."""
        d = self.db.run_query(
            "SELECT id, caller, callee, pin FROM callees WHERE caller = ? ORDER BY id",
            (dialled,))
        return d.addCallback(lambda rows: [Callee(int(r[0]), str(r[1]), str(r[2]), str(r[3]))
                                           for r in rows])

    def add(self, caller: str, callee: str, pin: str) -> Deferred[int]:
        """Register ``callee`` (with ``pin``) for the dialled number ``caller``."""
        if not pin or not all(c in "0123456789" for c in pin):
            raise ValueError(f"a PIN is made of digits 0-9, got {pin!r}")
        return self.db.run_operation(
            "INSERT INTO callees (caller, callee, pin) VALUES (?, ?, ?)", (caller, callee, pin))

    def remove(self, caller: str, callee: str) -> Deferred[int]:
        """Forget ``callee`` for ``caller``; fires with the number of rows removed."""
        return self.db.run_operation("DELETE FROM callees WHERE caller = ? AND callee = ?",
                                     (caller, callee))

    def all(self) -> Deferred[List[Callee]]:
        """Every row, for listing."""
        d = self.db.run_query("SELECT id, caller, callee, pin FROM callees ORDER BY caller, id")
        return d.addCallback(lambda rows: [Callee(int(r[0]), str(r[1]), str(r[2]), str(r[3]))
                                           for r in rows])
