"""mod_mysql on yaypm: the same `import(mod_mysql)` and `mysql.*` names, run through an
injected asynchronous SQLExecutor (⚑D6: backend chosen by `db_url` scheme, SQLite default).

Every `$var`/`#param` reference in a query is a **bound parameter** (see yaypm.dsm.sql);
queries are split once at load time. Each action returns a Deferred, so the session waits
with its queue blocked while other sessions run (⚑D11).
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from ..sql import SQLExecutor, SQLResult, SQLTemplate, connect_url, parse_sql
from ..values import param_1p, resolve, split_2p, var_name
from . import DSMModule, action, condition, register_module
from .core import media_call

log = Logger(namespace="yaypm.dsm.modules.mysql")


def _sql_1p(arg: str) -> tuple:
    text = param_1p(arg)
    if not text:
        raise ValueError("needs an SQL statement")
    return (parse_sql(text),)


def _sql_opt(arg: str) -> tuple:
    return (parse_sql(param_1p(arg)),)


def _sql_row(arg: str) -> tuple:
    """`sql[, row]`: the optional row is split at the *last* comma if it is a number or a
    reference, so SQL containing commas stays whole (SEMS splits at the first comma)."""
    text = param_1p(arg)
    head, sep, tail = text.rpartition(",")
    t = tail.strip()
    if sep and (t.isdigit() or (t[:1] in "$#" and t[1:].replace(".", "").replace("_", "").isalnum())):
        return (parse_sql(head.strip()), t)
    return (parse_sql(text), "")


def _sql_file(arg: str) -> tuple:
    head, sep, tail = param_1p(arg).rpartition(",")
    if not sep:
        raise ValueError("expected (sql, file)")
    return (parse_sql(head.strip(), file_marker=True), tail.strip())


class _DB:
    __slots__ = ("executor", "result", "saved")

    def __init__(self) -> None:
        self.executor: SQLExecutor | None = None
        self.result: SQLResult | None = None
        self.saved: dict[str, SQLResult | None] = {}


@register_module
class MysqlModule(DSMModule):
    """`import(mod_mysql)`. The engine may provide `sql_connect(url) -> SQLExecutor`
    (default: yaypm.dsm.sql.connect_url); executors are shared per URL."""

    name = "mod_mysql"

    def __init__(self, engine: Any = None) -> None:
        super().__init__(engine)
        self.executors: dict[str, SQLExecutor] = {}

    def _factory(self) -> Callable[[str], Any]:
        return getattr(self.engine, "sql_connect", None) or connect_url

    def _db(self, s: Any) -> _DB:
        return s.module_state(self.name, _DB)

    def _lookup(self, s: Any) -> Callable[[str, str], str]:
        def look(kind: str, name: str) -> str:
            if kind == "$":
                return s.var.get(name, "")
            return (s.params or {}).get(name, "")
        return look

    def _error(self, s: Any, errno: str, e: Any) -> None:
        text = getattr(e, "getErrorMessage", lambda: str(e))()
        s.set_errno(errno, text)
        s.var["db.ereason"] = text
        s.var["db.errno"] = errno

    def _run(self, s: Any, tmpl: SQLTemplate, extra: dict | None = None) -> Deferred | None:
        db = self._db(s)
        if db.executor is None:
            s.set_errno("connection", "not connected")
            return None
        sql, params = tmpl.bind(self._lookup(s), db.executor.paramstyle, extra)
        return maybeDeferred(db.executor.execute, sql, params)

    # -- connection -------------------------------------------------------------------------
    @action("mysql.connect", arity=(0, 1))
    def connect(self, s: Any, url: str = "") -> Deferred | None:
        u = resolve(s, url) if url else s.var.get("config.db_url", "")
        if not u:
            s.set_errno("arg", "no database URL (argument or db_url in the app's conf)")
            return None
        ex = self.executors.get(u)
        if ex is None:
            try:
                ex = self._factory()(u)
            except ValueError as e:
                self._error(s, "arg", e)
                return None
            except Exception as e:
                self._error(s, "connection", e)
                return None
            self.executors[u] = ex
        d = maybeDeferred(ex.execute, "SELECT 1", ())

        def ok(_: Any) -> None:
            self._db(s).executor = ex
            s.set_errno("")

        def fail(f: Any) -> None:
            self.executors.pop(u, None)
            self._error(s, "connection", f)
        d.addCallbacks(ok, fail)
        return d

    @action("mysql.disconnect", split="none", arity=(0, 0))
    def disconnect(self, s: Any) -> None:
        db = self._db(s)
        db.executor = None
        db.result = None
        s.set_errno("")

    # -- queries ----------------------------------------------------------------------------
    def _query(self, s: Any, tmpl: SQLTemplate, then: Callable[[SQLResult], None] | None) -> Deferred | None:
        d = self._run(s, tmpl)
        if d is None:
            return None

        def ok(res: SQLResult) -> None:
            db = self._db(s)
            db.result = res
            s.var["db.rows"] = str(len(res.rows))
            s.set_errno("")
            if then:
                then(res)

        d.addCallbacks(ok, lambda f: self._error(s, "query", f))
        return d

    @action("mysql.query", split=_sql_1p, arity=(1, 1))
    def query(self, s: Any, tmpl: SQLTemplate) -> Deferred | None:
        """Run a query and keep its result; `$db.rows` = number of rows."""
        return self._query(s, tmpl, None)

    @action("mysql.queryGetResult", split=_sql_row, arity=(1, 2))
    def query_get_result(self, s: Any, tmpl: SQLTemplate, row: str = "") -> Deferred | None:
        def copy(res: SQLResult) -> None:
            self._copy_row(s, res, resolve(s, row) if row else "0", "")
        return self._query(s, tmpl, copy)

    def _copy_row(self, s: Any, res: SQLResult | None, row: str, col: str) -> None:
        if res is None:
            s.set_errno("result", "no result from query")
            return
        if not row.isdigit():
            s.set_errno("arg", f"row index '{row}' not understood")
            return
        r = int(row)
        if r >= len(res.rows):
            s.set_errno("result", "row index out of result rows bounds")
            return
        values = dict(zip(res.columns, res.rows[r]))
        if col:
            if col not in values:
                s.set_errno("result", f"bad field name '{col}'")
                return
            values = {col: values[col]}
        for k, v in values.items():
            s.var[k] = "" if v is None else (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
        s.set_errno("")

    @action("mysql.getResult", split=",", arity=(0, 2))
    def get_result(self, s: Any, row: str = "", col: str = "") -> None:
        """Copy a kept row (all columns, or one) into `$<column>` variables."""
        self._copy_row(s, self._db(s).result, resolve(s, row) if row else "0",
                       resolve(s, col) if col else "")

    @action("mysql.execute", split=_sql_1p, arity=(1, 1))
    def execute(self, s: Any, tmpl: SQLTemplate) -> Deferred | None:
        """Run a statement: `$db.rows` = affected rows, `$db.insert_id`, `$db.info`."""
        d = self._run(s, tmpl)
        if d is None:
            return None

        def ok(res: SQLResult) -> None:
            s.var["db.rows"] = str(max(res.rowcount, 0))
            s.var["db.insert_id"] = "" if res.lastrowid is None else str(res.lastrowid)
            s.var["db.info"] = res.info
            s.set_errno("")
        d.addCallbacks(ok, lambda f: self._error(s, "query", f))
        return d

    @action("mysql.resolveQueryParams", split=_sql_opt, arity=(0, 1))
    def resolve_query_params(self, s: Any, tmpl: SQLTemplate) -> None:
        """`$db.qstr` = the query with values shown quoted (for logging; never executed)."""
        s.var["db.qstr"] = tmpl.splice_for_display(self._lookup(s))

    @action("mysql.saveResult", arity=(1, 1))
    def save_result(self, s: Any, name: str = "") -> None:
        db = self._db(s)
        db.saved[resolve(s, name)] = db.result

    @action("mysql.useResult", arity=(1, 1))
    def use_result(self, s: Any, name: str = "") -> None:
        db = self._db(s)
        n = resolve(s, name)
        if n not in db.saved:
            s.set_errno("arg", f"no saved result '{n}'")
            return
        db.result = db.saved[n]
        s.set_errno("")

    @action("mysql.escape", split="=", arity=(2, 2))
    def escape(self, s: Any, dst: str = "", src: str = "") -> None:
        v = resolve(s, src)
        for a, b in (("\\", "\\\\"), ("'", "\\'"), ('"', '\\"'), ("\n", "\\n"),
                     ("\r", "\\r"), ("\x00", "\\0"), ("\x1a", "\\Z")):
            v = v.replace(a, b)
        s.var[var_name(dst)] = v

    @action("mysql.getClientVersion", arity=(1, 1))
    def get_client_version(self, s: Any, name: str = "") -> None:
        ex = self._db(s).executor
        s.var[var_name(name)] = getattr(ex, "version", "") if ex else ""

    # -- blobs ------------------------------------------------------------------------------
    def _fetch_blob(self, s: Any, tmpl: SQLTemplate, then: Callable[[bytes], Any]) -> Deferred | None:
        d = self._run(s, tmpl)
        if d is None:
            return None

        def ok(res: SQLResult) -> Any:
            if not res.rows:
                s.set_errno("result", "query returned no rows")
                return None
            v = res.rows[0][0]
            data = v if isinstance(v, bytes) else str(v).encode()
            s.set_errno("")
            return then(data)
        d.addCallbacks(ok, lambda f: self._error(s, "query", f))
        return d

    def _play_db(self, s: Any, tmpl: SQLTemplate, fname: str, loop: bool, front: bool) -> Deferred | None:
        name = os.path.basename(resolve(s, fname)) or "db_audio.wav"

        def play(data: bytes) -> None:
            path = os.path.join(tempfile.gettempdir(), f"dsm-{s.id}-{name}")
            with open(path, "wb") as f:
                f.write(data)
            media_call(s, s.backend.play, path, loop, front)
        return self._fetch_blob(s, tmpl, play)

    @action("mysql.playDBAudio", split=_sql_file, arity=(2, 2))
    def play_db_audio(self, s: Any, tmpl: SQLTemplate, fname: str = "") -> Deferred | None:
        return self._play_db(s, tmpl, fname, False, False)

    @action("mysql.playDBAudioFront", split=_sql_file, arity=(2, 2))
    def play_db_audio_front(self, s: Any, tmpl: SQLTemplate, fname: str = "") -> Deferred | None:
        return self._play_db(s, tmpl, fname, False, True)

    @action("mysql.playDBAudioLooped", split=_sql_file, arity=(2, 2))
    def play_db_audio_looped(self, s: Any, tmpl: SQLTemplate, fname: str = "") -> Deferred | None:
        return self._play_db(s, tmpl, fname, True, False)

    @action("mysql.getFileFromDB", split=_sql_file, arity=(2, 2))
    def get_file_from_db(self, s: Any, tmpl: SQLTemplate, fname: str = "") -> Deferred | None:
        path = resolve(s, fname)

        def write(data: bytes) -> None:
            try:
                with open(path, "wb") as f:
                    f.write(data)
            except OSError as e:
                s.set_errno("file", str(e))
        return self._fetch_blob(s, tmpl, write)

    @action("mysql.putFileToDB", split=_sql_file, arity=(2, 2))
    def put_file_to_db(self, s: Any, tmpl: SQLTemplate, fname: str = "") -> Deferred | None:
        """Run the statement with `__FILE__` bound to the file's bytes."""
        path = resolve(s, fname)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            s.set_errno("file", str(e))
            return None
        d = self._run(s, tmpl, {"__FILE__": data})
        if d is None:
            return None
        d.addCallbacks(lambda _: s.set_errno(""), lambda f: self._error(s, "query", f))
        return d

    # -- conditions -------------------------------------------------------------------------
    @condition("mysql.hasResult", split="none", arity=(0, 0))
    def has_result(self, s: Any) -> bool:
        return self._db(s).result is not None

    @condition("mysql.connected", split="none", arity=(0, 0))
    def connected(self, s: Any) -> bool:
        return self._db(s).executor is not None

    def session_end(self, s: Any) -> None:
        if s.mod_state:
            s.mod_state.pop(self.name, None)
