"""The async version claims only numbers with callees (``only_numbers_with_callees``): the
lookup is the route's guard, ``call.route`` waits for it, and a number without callees is left
to Yate's other routers."""

from __future__ import annotations

import re

import pytest
from twisted.logger import LogLevel, capturedLogs

from yaypm.testing.simulator import ENGINE, SCRIPT, answer


@pytest.fixture
def version():
    return "python"


def route_answers(sim):
    """The script's answers to ``call.route``, in order: (handled flag, retvalue)."""
    ids = {m.group(1) for m in (re.match(r"%%>message:([^:]*):[^:]*:call\.route:", line)
                                for line in sim.lines(ENGINE)) if m}
    out = []
    for line in sim.lines(SCRIPT):
        m = re.match(r"%%<message:([^:]*):(true|false):(?:call\.route:([^:]*))?", line)
        if m and m.group(1) in ids:
            out.append((m.group(2), m.group(3) or ""))
    return out


def test_number_without_callees_is_left_to_yate_which_answers_404(quiz, sim):
    q = quiz(("john", "12345"))                     # callees for 35; number = * (the default)
    assert q.config.number == "*"
    call = q.call("36")
    sim.advance(1)
    assert call.sip_status == 404 and call.ended          # Yate's own 404: nobody routed it
    assert route_answers(sim) == [("false", "")]          # unhandled, changing nothing
    assert q.app.stats["left_to_yate"] == 1 and q.app.stats["calls"] == 0
    assert q.registry.finished == {}                      # never a quizconnect call
    q.assert_clean()


def test_number_without_callees_reaches_yates_other_routers(quiz, sim):
    q = quiz(("john", "12345"))
    q.callee("36", answer(after=0.5))                     # regexroute routes 36 to sip:36@...
    call = q.call("36")
    sim.advance(1)
    assert call.is_answered and q.talking(call, q.leg("36"))
    assert q.legs("john") == []
    call.hangup()
    sim.advance(1)
    q.assert_clean()


def test_number_with_callees_is_claimed_and_looked_up_once(quiz, sim):
    q = quiz(("john", "12345"))
    lookups = []
    lookup = q.store.lookup
    q.store.lookup = lambda called: lookups.append(called) or lookup(called)
    q.callee("john", answer(after=1.0))
    call = q.call("35")
    sim.advance(2)
    assert route_answers(sim) == [("true", "dumb/")]
    assert 183 in call.provisional and q.leg("john").is_answered
    q.leg("john").send_dtmf("12345", interval=0.1)
    sim.advance(2)
    assert call.is_answered and q.talking(call, q.leg("john"))
    assert lookups == ["35"]                              # the guard's result is reused
    call.hangup()
    sim.advance(1)
    q.assert_clean()


def test_database_down_is_still_500(quiz, sim, tmp_path):
    url = f"sqlite:///{tmp_path}/no/such/dir/quizconnect.db"
    with capturedLogs() as events:
        q = quiz(db_url=url, seed=False)
        call = q.call("35")
        sim.advance(1)
    assert call.sip_status == 500 and call.ended
    assert q.app.stats["db_errors"] == 1
    from twisted.logger import formatEvent
    errors = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.error]
    assert any("unable to open database file" in text for text in errors), errors
    q.assert_clean()


def test_only_numbers_with_callees_off_claims_and_answers_404(quiz, sim):
    q = quiz(("john", "12345"), only_numbers_with_callees=False)
    call = q.call("36")
    sim.advance(1)
    assert call.sip_status == 404
    assert route_answers(sim)[0][0] == "true"             # quizconnect refused it itself
    assert q.app.stats["not_found"] == 1 and q.app.stats["left_to_yate"] == 0
    q.assert_clean()
