"""SQL access for apps and DSM scripts: one URL, bound parameters only, Deferred results.

``Database("sqlite:///var/lib/app.db")``, ``Database("mysql://user:pwd@host:3306/db")`` or
``Database("postgresql://user:pwd@host/db")``.  Queries are written once with ``?`` placeholders
and run with a parameter sequence; the placeholders become the driver's own paramstyle, values
are always bound by the driver and never spliced into the text — a caller id like
``1' OR '1'='1`` is just a string that matches nothing.

Two executors:

* threaded (default): Twisted's ``adbapi.ConnectionPool`` — the blocking DB-API calls run in
  the reactor's thread pool, so the reactor never waits on the database;
* inline (``threaded=False``): the DB-API call runs in the calling thread and the Deferred has
  fired on return.  Meant for SQLite in tests and demos that run on a ``task.Clock``, where no
  thread pool turns.
"""

from __future__ import annotations

import re
from typing import Any, Callable, List, Optional, Sequence, Tuple
from urllib.parse import unquote, urlparse

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

__all__ = ["Database", "DatabaseError", "parse_db_url", "to_paramstyle"]


class DatabaseError(Exception):
    """The database could not be reached or a query failed; carries the URL (no password)."""


_DRIVERS = {
    "sqlite": ("sqlite3", "qmark"),
    "mysql": ("pymysql", "format"),
    "mariadb": ("pymysql", "format"),
    "postgresql": ("psycopg2", "format"),
    "postgres": ("psycopg2", "format"),
}


def parse_db_url(url: str) -> Tuple[str, str, dict]:
    """``(scheme, driver module, connect kwargs)`` for a database URL; ValueError if unknown.

    A bare path (``callees.db``) is a SQLite file.
    """
    if "://" not in url:
        return "sqlite", "sqlite3", {"database": url}
    u = urlparse(url)
    scheme = u.scheme.lower()
    if scheme not in _DRIVERS:
        raise ValueError(f"unsupported database URL scheme {u.scheme!r} in {redact(url)!r} "
                         f"(use sqlite:///, mysql://, postgresql://)")
    module = _DRIVERS[scheme][0]
    if module == "sqlite3":
        # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////abs/path.db, sqlite:///:memory:
        rest = url.split("://", 1)[1]
        path = rest[1:] if rest.startswith("/") else rest
        return "sqlite", "sqlite3", {"database": path or ":memory:"}
    kw: dict = {}
    if u.hostname:
        kw["host"] = u.hostname
    if u.port:
        kw["port"] = u.port
    if u.username:
        kw["user"] = unquote(u.username)
    if u.password:
        kw["password"] = unquote(u.password)
    db = u.path.lstrip("/")
    if module == "pymysql":
        kw["database"] = db
        kw["charset"] = "utf8mb4"
    else:
        kw["dbname"] = db
    return scheme, module, kw


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


_QMARK = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")


def to_paramstyle(sql: str, style: str) -> str:
    """Rewrite ``?`` placeholders (outside quoted literals) for a driver's paramstyle."""
    if style == "qmark":
        return sql

    def sub(m: "re.Match[str]") -> str:
        tok = m.group(0)
        if tok == "?":
            return "%s"
        if tok == "%":
            return "%%"            # a literal % must be doubled for format-style drivers
        return tok.replace("%", "%%")
    return _QMARK.sub(sub, sql)


class Database:
    """A small async facade over a DB-API driver chosen by URL; bound parameters only."""

    log = Logger()

    def __init__(self, url: str, threaded: bool = True, reactor: Any = None,
                 **pool_kw: Any) -> None:
        self.url = url
        self.scheme, self.module, self._kw = parse_db_url(url)
        self.paramstyle = _DRIVERS.get(self.scheme, ("", "qmark"))[1]
        self.threaded = threaded
        self._pool: Any = None
        self._conn: Any = None
        self._reactor = reactor
        self._pool_kw = pool_kw

    def __repr__(self) -> str:
        return f"<Database {redact(self.url)}>"

    # -- connections ---------------------------------------------------------------------
    def _connect_inline(self) -> Any:
        if self._conn is None:
            mod = __import__(self.module)
            kw = dict(self._kw)
            if self.module == "sqlite3":
                self._conn = mod.connect(kw.pop("database"), check_same_thread=False, **kw)
            else:
                self._conn = mod.connect(**kw)
        return self._conn

    def _get_pool(self) -> Any:
        if self._pool is None:
            from twisted.enterprise import adbapi
            kw = dict(self._kw)
            opts: dict = {"cp_noisy": False, "cp_reconnect": True}
            if self.module == "sqlite3":
                database = kw.pop("database")
                opts.update(check_same_thread=False, cp_min=1, cp_max=1,
                            cp_openfun=_sqlite_open)
                args: tuple = (database,)
            else:
                args = ()
                opts.update(kw)
            if self._reactor is not None:
                opts["cp_reactor"] = self._reactor
            opts.update(self._pool_kw)
            self._pool = adbapi.ConnectionPool(self.module, *args, **opts)
        return self._pool

    def close(self) -> None:
        """Close connections (the pool's threads stop with it)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- queries ---------------------------------------------------------------------------
    def _wrap_error(self, f: Any, sql: str) -> Any:
        if f.check(DatabaseError):
            return f
        raise DatabaseError(f"{redact(self.url)}: {f.value.__class__.__name__}: {f.value} "
                            f"(query: {sql})")

    def run_query(self, sql: str, params: Sequence[Any] = ()) -> Deferred[List[tuple]]:
        """Run a SELECT with ``?`` placeholders bound to ``params``; fires with the rows."""
        return self.run_interaction(_query, to_paramstyle(sql, self.paramstyle),
                                    tuple(params)).addErrback(self._wrap_error, sql)

    def run_query_dicts(self, sql: str, params: Sequence[Any] = ()) -> Deferred[List[dict]]:
        """Like :meth:`run_query`, rows as dicts keyed by column name."""
        return self.run_interaction(_query_dicts, to_paramstyle(sql, self.paramstyle),
                                    tuple(params)).addErrback(self._wrap_error, sql)

    def run_operation(self, sql: str, params: Sequence[Any] = ()) -> Deferred[int]:
        """Run an INSERT/UPDATE/DELETE/DDL; fires with the affected row count."""
        return self.run_interaction(_operation, to_paramstyle(sql, self.paramstyle),
                                    tuple(params)).addErrback(self._wrap_error, sql)

    def run_script(self, script: str) -> Deferred[None]:
        """Run several ';'-separated statements (schema files); no parameters."""
        statements = [s.strip() for s in script.split(";") if s.strip()]

        def run(cursor: Any) -> None:
            for s in statements:
                cursor.execute(s)
        return self.run_interaction(run).addErrback(self._wrap_error, script[:60])

    def run_interaction(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run ``fn(cursor, *args)`` in a transaction (committed on success)."""
        if self.threaded:
            try:
                return self._get_pool().runInteraction(fn, *args)
            except Exception as e:
                return defer.fail(DatabaseError(f"{redact(self.url)}: {e}"))
        try:
            conn = self._connect_inline()
            cur = conn.cursor()
            try:
                result = fn(cur, *args)
                conn.commit()
            except Exception:
                conn.rollback()
                raise
            finally:
                cur.close()
        except Exception as e:
            if self._conn is not None and self.module != "sqlite3":
                try:
                    self._conn.close()
                finally:
                    self._conn = None
            return defer.fail(e)
        return defer.succeed(result)


def _sqlite_open(conn: Any) -> None:
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    except Exception:
        pass


def _query(cursor: Any, sql: str, params: tuple) -> List[tuple]:
    cursor.execute(sql, params)
    return [tuple(r) for r in cursor.fetchall()]


def _query_dicts(cursor: Any, sql: str, params: tuple) -> List[dict]:
    cursor.execute(sql, params)
    cols = [d[0] for d in cursor.description or ()]
    return [dict(zip(cols, r)) for r in cursor.fetchall()]


def _operation(cursor: Any, sql: str, params: tuple) -> int:
    cursor.execute(sql, params)
    return cursor.rowcount
