"""quizconnect on MySQL/MariaDB and PostgreSQL (real servers), for both versions.

The servers come from ``YAYPM_TEST_MYSQL_URL`` / ``YAYPM_TEST_PG_URL`` (``eval "$(scripts/
start-test-databases)"``); without them the tests are skipped, except in CI (``CI`` set) where
a missing URL fails.  The servers are shared: each test uses its own dialled number and deletes
its rows afterwards.
"""

from __future__ import annotations

import pytest
from twisted.logger import capturedLogs, formatEvent

from yaypm.testing import success_result_of
from yaypm.testing.simulator import answer, busy

from quiz_helpers import server_url, unique_number

SERVERS = ["YAYPM_TEST_MYSQL_URL", "YAYPM_TEST_PG_URL"]


@pytest.fixture(params=SERVERS)
def server(request):
    return server_url(request.param)


@pytest.fixture
def on_server(quiz, server):
    """``on_server(*rows, **settings)``: a Quiz on the real server with a fresh number."""
    made = []

    def make(*rows, **settings):
        q = quiz(*rows, db_url=server, number=unique_number(), **settings)
        made.append(q)
        return q
    yield make
    for q in made:
        success_result_of(q.db.run_operation("DELETE FROM callees WHERE caller = ?",
                                             (q.number,)))


def test_winner_on_a_real_server(on_server, sim):
    q = on_server(("john", "12345"), ("anna", "54321"), ("bob", "999"))
    q.callee("john", answer(after=1.0))
    q.callee("anna", busy(after=0.5))
    q.callee("bob", answer(after=2.0))
    call = q.call()
    sim.advance(2.5)
    q.leg("john").send_dtmf("12345#", interval=0.2)
    sim.advance(2)
    assert call.sip_status == 200 and q.talking(call, q.leg("john"))
    assert q.leg("bob").bye_received and q.leg("anna").sip_status == 486
    call.hangup()
    sim.advance(1)
    q.assert_clean()


def test_injection_shaped_number_on_a_real_server(on_server, sim):
    q = on_server(("john", "12345"),)
    q.callee("john", answer())
    call = q.call(q.number + "' OR '1'='1")
    sim.advance(1)
    assert call.sip_status == 404 and q.legs("john") == []
    q.assert_clean()


@pytest.mark.parametrize("url, cause", [
    ("mysql://quiz:secret@127.0.0.1:1/quiz", "Can't connect to MySQL server"),
    ("postgresql://quiz:secret@127.0.0.1:1/quiz", "127.0.0.1"),
])
def test_unreachable_server_is_500_with_the_cause_logged(quiz, sim, url, cause):
    pytest.importorskip("pymysql" if url.startswith("mysql") else "psycopg2")
    with capturedLogs() as events:
        q = quiz(db_url=url, seed=False)
        call = q.call()
        sim.advance(1)
    assert call.sip_status == 500
    text = "\n".join(formatEvent(e) for e in events)
    assert cause in text and "secret" not in text, text       # the password is not logged
    q.assert_clean()
