"""yaypm.sql: URLs, paramstyles and bound parameters, on SQLite and on real MariaDB/PostgreSQL.

The MariaDB/PostgreSQL cases need the servers that ``scripts/start-test-databases`` starts (it
prints YAYPM_TEST_MYSQL_URL / YAYPM_TEST_PG_URL).  Without them they are skipped, except in CI
(CI=true), where a missing server is a failure: SQL paths must never be silently untested.
"""

from __future__ import annotations

import os
import uuid

import pytest
import pytest_twisted

from yaypm.sql import Database, DatabaseError, parse_db_url, redact, to_paramstyle
from yaypm.testing import failure_result_of, success_result_of

INJECTION = "35' OR '1'='1"


def test_parse_urls():
    assert parse_db_url("callees.db") == ("sqlite", "sqlite3", {"database": "callees.db"})
    assert parse_db_url("sqlite:////tmp/x.db")[2] == {"database": "/tmp/x.db"}
    assert parse_db_url("sqlite:///:memory:")[2] == {"database": ":memory:"}
    scheme, module, kw = parse_db_url("mysql://u:p%40ss@db.example:3307/quiz")
    assert (scheme, module) == ("mysql", "pymysql")
    assert kw["password"] == "p@ss" and kw["port"] == 3307 and kw["database"] == "quiz"
    assert parse_db_url("postgresql://u@h/quiz")[2] == {"host": "h", "user": "u", "dbname": "quiz"}
    with pytest.raises(ValueError, match="oracle"):
        parse_db_url("oracle://u:secret@h/x")


def test_redact_hides_password():
    assert redact("mysql://u:secret@h/db") == "mysql://u:***@h/db"


def test_paramstyle_rewrites_only_placeholders_outside_literals():
    sql = "SELECT * FROM t WHERE a=? AND b='?%' AND c LIKE ?"
    assert to_paramstyle(sql, "qmark") == sql
    assert to_paramstyle(sql, "format") == "SELECT * FROM t WHERE a=%s AND b='?%%' AND c LIKE %s"


def _fill(db: Database) -> None:
    success_result_of(db.run_script(
        "CREATE TABLE callees (id INTEGER PRIMARY KEY, caller TEXT, callee TEXT, pin TEXT);"
        "INSERT INTO callees (caller, callee, pin) VALUES ('35', 'bob', '1234')"))


def test_sqlite_inline_binds_parameters():
    db = Database("sqlite:///:memory:", threaded=False)
    _fill(db)
    rows = success_result_of(db.run_query("SELECT callee, pin FROM callees WHERE caller=?", ("35",)))
    assert rows == [("bob", "1234")]
    assert success_result_of(db.run_query(
        "SELECT callee FROM callees WHERE caller=?", (INJECTION,))) == []
    dicts = success_result_of(db.run_query_dicts("SELECT callee FROM callees", ()))
    assert dicts == [{"callee": "bob"}]


def test_query_error_names_url_and_query():
    db = Database("sqlite:///:memory:", threaded=False)
    f = failure_result_of(db.run_query("SELECT nope FROM nowhere", ()), Exception)
    db2 = Database("sqlite:////nonexistent-dir/x.db", threaded=False)
    f2 = failure_result_of(db2.run_query("SELECT 1", ()), Exception)
    assert "nowhere" in str(f.value) and "sqlite" in str(f.value)
    assert isinstance(f.value, DatabaseError) and isinstance(f2.value, DatabaseError)


@pytest_twisted.ensureDeferred
async def test_sqlite_threaded_pool(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/t.db")
    try:
        await db.run_script("CREATE TABLE t (a TEXT)")
        assert await db.run_operation("INSERT INTO t VALUES (?)", ("x",)) == 1
        assert await db.run_query("SELECT a FROM t WHERE a=?", ("x",)) == [("x",)]
        assert await db.run_query("SELECT a FROM t WHERE a=?", (INJECTION,)) == []
    finally:
        db.close()


def _server_url(var: str) -> str:
    url = os.environ.get(var)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{var} is not set in CI: run scripts/start-test-databases")
        pytest.skip(f"{var} not set (eval \"$(scripts/start-test-databases)\" starts the server)")
    return url


@pytest.mark.parametrize("var", ["YAYPM_TEST_MYSQL_URL", "YAYPM_TEST_PG_URL"])
@pytest_twisted.ensureDeferred
async def test_real_servers_bind_parameters(var):
    db = Database(_server_url(var))
    table = "t_" + uuid.uuid4().hex[:8]
    try:
        await db.run_script(f"CREATE TABLE {table} (caller VARCHAR(40), pin VARCHAR(10))")
        await db.run_operation(f"INSERT INTO {table} VALUES (?, ?)", ("35", "1%2"))
        assert await db.run_query(f"SELECT pin FROM {table} WHERE caller=?", ("35",)) == [("1%2",)]
        assert await db.run_query(f"SELECT pin FROM {table} WHERE caller=?", (INJECTION,)) == []
        assert await db.run_query(f"SELECT pin FROM {table} WHERE pin LIKE '1%'", ()) == [("1%2",)]
    finally:
        await db.run_script(f"DROP TABLE {table}")
        db.close()
