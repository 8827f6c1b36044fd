"""yaypm.dsm.sql on yaypm.sql.Database: one URL rule, bound parameters, inline execution."""
from __future__ import annotations

import pytest

from yaypm.dsm.sql import AdbapiExecutor, database_url, parse_db_url
from yaypm.sql import parse_db_url as sql_parse_db_url


@pytest.mark.parametrize("url,path", [
    ("sqlite:///rel.db", "rel.db"), ("sqlite:////abs/x.db", "/abs/x.db"),
    ("sqlite:///:memory:", ":memory:"), ("sqlite:rel.db", "rel.db"),
    ("sqlite:/abs/x.db", "/abs/x.db"), ("sqlite::memory:", ":memory:"),
])
def test_sqlite_urls_name_the_same_file_as_yaypm_sql(url, path):
    assert parse_db_url(url) == ("sqlite3", {"database": path, "check_same_thread": False})
    if "//" in url:
        assert sql_parse_db_url(url)[2] == {"database": path}     # same file as yaypm.sql


@pytest.mark.parametrize("url", ["sqlite:", "sqlite://", "ftp://x", "mysql://h", "postgresql:///db"])
def test_bad_urls(url):
    with pytest.raises(ValueError):
        database_url(url)


def test_mysql_and_postgresql_urls_pass_through():
    assert database_url("mysql://u:p@h:3307/quiz") == "mysql://u:p@h:3307/quiz"
    assert parse_db_url("postgresql://u@h/quiz")[0] == "psycopg2"


def test_inline_executor_binds_parameters(tmp_path):
    ex = AdbapiExecutor(f"sqlite:{tmp_path / 'q.db'}", threaded=False)
    assert ex.paramstyle == "qmark"
    results = []
    ex.execute("create table t (caller text, pin text)", ()).addCallback(results.append)
    ex.execute("insert into t values (?, ?)", ("35", "1")).addCallback(results.append)
    ex.execute("select pin from t where caller = ?", ("35' OR '1'='1",)).addCallback(results.append)
    ex.execute("select pin from t where caller = ?", ("35",)).addCallback(results.append)
    assert results[2].rows == [] and results[3].rows == [("1",)] and results[3].columns == ["pin"]
    ex.close()
    with pytest.raises(ValueError):
        AdbapiExecutor(f"sqlite:{tmp_path / 'missing' / 'q.db'}")
