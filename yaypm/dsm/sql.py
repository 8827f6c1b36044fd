"""SQL for mod_mysql: queries with `$var`/`#param` references turned into bound parameters,
and the executor over `yaypm.sql.Database` (SQLite by default; MySQL/PostgreSQL by URL, ⚑D6).

Nothing here splices values into SQL text: a reference outside SQL quotes becomes one
placeholder; a quoted SQL literal containing references (`'$x'`, `"%$x%"`) becomes one
placeholder bound to the literal's text with the references filled in.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol
from urllib.parse import urlparse

from twisted.internet.defer import Deferred

from .. import sql as _sql

__all__ = ["SQLTemplate", "SQLResult", "SQLExecutor", "AdbapiExecutor", "parse_sql",
           "connect_url", "parse_db_url", "database_url"]

_REF_END = " \t,()$#;'\"\n\r"


@dataclass(frozen=True)
class SQLTemplate:
    """A query split at load time: `pieces` alternate literal SQL text and `Param`s."""

    source: str
    pieces: tuple[Any, ...]

    def bind(self, lookup: Callable[[str, str], str], paramstyle: str = "qmark",
             extra: dict[str, Any] | None = None) -> tuple[str, tuple[Any, ...]]:
        """Return (sql, params) with placeholders in the executor's `paramstyle`."""
        sql: list[str] = []
        params: list[Any] = []
        for p in self.pieces:
            if isinstance(p, str):
                sql.append(p)
                continue
            params.append(p.value(lookup, extra))
            sql.append(_placeholder(paramstyle, len(params)))
        return "".join(sql), tuple(params)

    def splice_for_display(self, lookup: Callable[[str, str], str]) -> str:
        """The query with values shown as quoted literals (`$db.qstr`; for logs only)."""
        out = []
        for p in self.pieces:
            if isinstance(p, str):
                out.append(p)
            else:
                v = p.value(lookup, None)
                out.append("'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'")
        return "".join(out)


@dataclass(frozen=True)
class Param:
    """One bound value: a list of (kind, text) parts concatenated; kind is "lit", "$" or "#"
    (or "file" for putFileToDB's __FILE__)."""

    parts: tuple[tuple[str, str], ...] = field(default=())

    def value(self, lookup: Callable[[str, str], str], extra: dict[str, Any] | None) -> Any:
        if len(self.parts) == 1 and self.parts[0][0] == "file":
            return (extra or {}).get("__FILE__", b"")
        return "".join(t if k == "lit" else lookup(k, t) for k, t in self.parts)


def _placeholder(style: str, n: int) -> str:
    if style == "qmark":
        return "?"
    if style in ("format", "pyformat"):
        return "%s"
    if style == "numeric":
        return f":{n}"
    if style == "named":
        return f":p{n}"
    raise ValueError(f"unsupported paramstyle {style}")


def _read_ref(sql: str, i: int) -> tuple[str, int]:
    j = i + 1
    while j < len(sql) and sql[j] not in _REF_END:
        j += 1
    return sql[i + 1:j], j


def parse_sql(sql: str, file_marker: bool = False) -> SQLTemplate:
    """Split SQL text into literal pieces and bound parameters (mod_mysql's references:
    `$name`, `#name`, name up to blank TAB `, ( ) $ # ; ' "`; `\\$` stays literal)."""
    pieces: list[Any] = []
    lit: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            # a quoted SQL literal: find its end ('' / \' escapes)
            j = i + 1
            body: list[str] = []
            while j < n:
                if sql[j] == "\\" and j + 1 < n:
                    body.append(sql[j:j + 2])
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        body.append(c + c)
                        j += 2
                        continue
                    break
                body.append(sql[j])
                j += 1
            text = "".join(body)
            if _has_ref(text):
                pieces.append("".join(lit))
                lit = []
                pieces.append(Param(tuple(_literal_parts(text, c))))
            else:
                lit.append(sql[i:j + 1])
            i = j + 1
            continue
        if c in "$#" and not (i and sql[i - 1] == "\\"):
            name, j = _read_ref(sql, i)
            if name:
                pieces.append("".join(lit))
                lit = []
                pieces.append(Param(((c, name),)))
                i = j
                continue
        if file_marker and sql.startswith("__FILE__", i):
            pieces.append("".join(lit))
            lit = []
            pieces.append(Param((("file", ""),)))
            i += len("__FILE__")
            continue
        lit.append(c)
        i += 1
    pieces.append("".join(lit))
    return SQLTemplate(sql, tuple(p for p in pieces if p != ""))


def _has_ref(text: str) -> bool:
    for k, ch in enumerate(text):
        if ch in "$#" and not (k and text[k - 1] == "\\") and k + 1 < len(text) \
                and text[k + 1] not in _REF_END:
            return True
    return False


def _literal_parts(text: str, quote: str) -> list[tuple[str, str]]:
    """Parts of a quoted literal's body: SQL escapes undone, references kept as refs."""
    parts: list[tuple[str, str]] = []
    buf: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "'\"\\":
            buf.append(text[i + 1])
            i += 2
            continue
        if ch == quote and text[i + 1:i + 2] == quote:
            buf.append(quote)
            i += 2
            continue
        if ch in "$#" and not (i and text[i - 1] == "\\"):
            name, j = _read_ref(text, i)
            if name:
                if buf:
                    parts.append(("lit", "".join(buf)))
                    buf = []
                parts.append((ch, name))
                i = j
                continue
        buf.append(ch)
        i += 1
    if buf:
        parts.append(("lit", "".join(buf)))
    return parts


@dataclass
class SQLResult:
    """Rows of a query (`columns` names them) or the effect of a statement."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    rowcount: int = -1
    lastrowid: int | None = None
    info: str = ""

    @classmethod
    def from_cursor(cls, cursor: Any) -> "SQLResult":
        """The outcome of the statement a DB-API cursor just executed: its rows (fetched)
        and column names, or the rows it changed; ``lastrowid`` where the driver has it."""
        res = cls()
        if cursor.description:
            res.columns = [d[0] for d in cursor.description]
            res.rows = [tuple(r) for r in cursor.fetchall()]
            res.rowcount = len(res.rows)
        else:
            res.rowcount = cursor.rowcount
        res.lastrowid = getattr(cursor, "lastrowid", None)
        return res


class SQLExecutor(Protocol):
    """What mod_mysql needs from a database: bound-parameter execution, asynchronously."""

    paramstyle: str
    version: str

    def execute(self, query: str, params: tuple) -> Deferred[SQLResult]:
        """Run one statement; fires with its SQLResult or errbacks with the DB error."""

    def close(self) -> None:
        """Release connections."""


def parse_db_url(url: str) -> tuple[str, dict[str, Any]]:
    """A DSM `db_url` (see `database_url`) → (dbapi module name, connect kwargs), as
    `yaypm.sql.Database` will use them. ValueError if malformed or unsupported."""
    db_url = database_url(url)
    _scheme, module, kw = _sql.parse_db_url(db_url)
    if module == "sqlite3":
        kw = dict(kw, check_same_thread=False)
    return module, kw


def database_url(url: str) -> str:
    """A DSM `db_url` (⚑D6) as a `yaypm.sql.Database` URL; ValueError if malformed.

    One rule with `yaypm.sql` (SQLAlchemy's): `sqlite:///rel.db` is relative,
    `sqlite:////abs.db` absolute, `sqlite:///:memory:` in memory. The short forms without
    `//` are a plain path: `sqlite:rel.db`, `sqlite:/abs.db`, `sqlite::memory:`.
    `mysql://user:pwd@host[:port]/db`, `postgresql://…` as they are.
    """
    if url.startswith("sqlite:"):
        rest = url[len("sqlite:"):]
        if rest.startswith("//"):
            if not rest.lstrip("/"):
                raise ValueError("sqlite URL without a path")
            return url
        if not rest:
            raise ValueError("sqlite URL without a path")
        return "sqlite:///" + rest          # the plain path, in SQLAlchemy's spelling
    u = urlparse(url)
    if u.scheme in ("mysql", "mariadb"):
        if not u.hostname or not u.path.strip("/"):
            raise ValueError(f"malformed MySQL URL {_sql.redact(url)!r}")
        return url
    if u.scheme in ("postgresql", "postgres"):
        if not u.hostname:
            raise ValueError(f"malformed PostgreSQL URL {_sql.redact(url)!r}")
        return url
    raise ValueError(f"unsupported database URL {_sql.redact(url)!r} "
                     "(sqlite:, mysql://, postgresql://)")


class AdbapiExecutor:
    """SQLExecutor on `yaypm.sql.Database` (one SQL layer for apps and DSM scripts):
    `threaded=True` runs queries in adbapi's thread pool, `threaded=False` inline (SQLite
    on a `task.Clock`). Queries arrive already in `paramstyle` with bound parameters."""

    def __init__(self, url: str, reactor: Any = None, threaded: bool = True) -> None:
        module, kw = parse_db_url(url)
        self.url = url
        try:
            dbapi = __import__(module)
        except ImportError:
            raise ValueError(f"no driver for {_sql.redact(url)!r}: pip install "
                             f"{'pymysql' if module == 'pymysql' else module}") from None
        if module == "sqlite3" and kw["database"] != ":memory:":
            d = os.path.dirname(kw["database"])
            if d and not os.path.isdir(d):
                raise ValueError(f"directory {d!r} does not exist")
        self.database = _sql.Database(database_url(url), threaded=threaded, reactor=reactor)
        self.paramstyle = self.database.paramstyle
        self.version = getattr(dbapi, "version", "") or getattr(dbapi, "__version__", "")

    def execute(self, query: str, params: tuple) -> Deferred[SQLResult]:
        return self.database.run_interaction(_run, query, params)

    def close(self) -> None:
        self.database.close()


def _run(txn: Any, query: str, params: tuple) -> SQLResult:
    txn.execute(query, params)
    return SQLResult.from_cursor(txn)


def connect_url(url: str) -> AdbapiExecutor:
    """Default executor factory used by the engine (raises ValueError for a bad URL)."""
    return AdbapiExecutor(url)

