"""The async version's own surface: registry records for monitoring, observer events,
configuration choices (conference instead of bridge), clean cancellation."""

from __future__ import annotations

import pytest

from yaypm.apps.quizconnect.app import room_for
from yaypm.testing.simulator import answer, busy, noanswer


@pytest.fixture
def version():
    return "python"


def test_registry_records_every_leg_with_its_state(quiz, sim):
    q = quiz(("john", "12345"), ("anna", "54321"))
    q.callee("john", answer(after=1.0))
    q.callee("anna", noanswer())
    call = q.call(caller="5")
    sim.advance(2)
    active = {r.attrs["role"] + ":" + r.attrs.get("callee", ""): r.attrs
              for r in q.registry.active.values()}
    assert active["caller:"]["state"] == active["caller:"]["dsm_state"] == "WAIT_CALLEE"
    assert (active["caller:"]["app"], active["caller:"]["dir"], active["caller:"]["from"],
            active["caller:"]["to"]) == ("quizconnect", "in", "5", "35")
    assert active["callee:john"]["state"] == "ENTER_PIN"
    assert active["callee:anna"]["state"] == "DIALLING"
    assert active["callee:john"]["chan"] == q.leg("john").id
    q.leg("john").send_dtmf("12345", interval=0.1)
    sim.advance(1)
    (caller,) = q.registry.active.values()
    assert caller.attrs["state"] == "CONNECTED" and caller.attrs["callee"] == "john"
    outcomes = {r.attrs.get("callee"): r.outcome for r in q.registry.finished.values()}
    assert outcomes == {"john": "won", "anna": "cancelled"}
    call.hangup()
    sim.advance(1)
    assert q.registry.finished[caller.id].outcome == "connected"
    q.assert_clean()


def test_observer_tells_the_story(quiz, sim):
    q = quiz(("john", "12345"), ("anna", "54321"))
    q.callee("john", answer(after=1.0))
    q.callee("anna", busy(after=0.5))
    call = q.call()
    sim.advance(2)
    q.leg("john").send_dtmf("9#", interval=0.1)
    sim.advance(1)
    q.leg("john").send_dtmf("12345", interval=0.1)
    sim.advance(1)
    call.hangup()
    sim.advance(1)
    story = [(e.who, e.what) for e in q.events]
    assert story == [
        ("caller", "early-media"), ("john", "dialling"), ("anna", "dialling"),
        ("anna", "dropped"), ("john", "answered"), ("john", "wrong-pin"),
        ("john", "right-pin"), ("john", "won"), ("caller", "answered"),
        ("caller", "connected"), ("caller", "call-ended")]
    wrong = [e for e in q.events if e.what == "wrong-pin"][0]
    assert wrong.details == {"typed": "9", "attempt": 1}
    assert [e.details["code"] for e in q.events if e.what == "dropped"] == [486]
    q.assert_clean()


def test_conference_mode_joins_the_room_named_after_the_caller(quiz, sim):
    q = quiz(("john", "12345"), connect="conference")
    q.callee("john", answer(after=1.0))
    call = q.call()
    sim.advance(2)
    q.leg("john").send_dtmf("12345", interval=0.1)
    sim.advance(1)
    assert q.talking(call, q.leg("john"))
    assert list(sim.modules.rooms) == [room_for(call.id)] == ["quizconnect-sip-1"]
    q.leg("john").hangup()                         # the room drops the caller (lonely)
    sim.advance(1)
    assert call.ended
    q.assert_clean()


def test_room_names_have_no_slash():
    assert room_for("sip/12") == "quizconnect-sip-12"
    assert "/" not in room_for("a/b c:d")


def test_winner_hanging_up_as_he_wins_ends_the_call(quiz, sim):
    q = quiz(("john", "12345"),)
    q.callee("john", answer(after=1.0))
    call = q.call()
    sim.advance(2)
    john = q.leg("john")
    john.send_dtmf("1234", interval=0.1)
    sim.advance(1)
    # john's last key and his BYE reach Yate together: he wins, is bridged, is gone
    john.send_dtmf("5")
    john.hangup()
    sim.advance(1)
    assert call.ended
    outcomes = {r.attrs.get("role"): r.outcome for r in q.registry.finished.values()}
    assert outcomes == {"callee": "won", "caller": "connected"}
    q.assert_clean()
