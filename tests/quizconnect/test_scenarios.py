"""quizconnect's call scenarios on the simulator, for both versions (``version`` fixture).

Each test checks what the SIP parties saw (provisional and final responses, BYE/CANCEL, who
talks to whom, prompts heard) and that nothing is left behind.  The same assertions hold for
the async version (bridge) and the DSM version (conference room named after the caller leg).
"""

from __future__ import annotations

from twisted.logger import LogLevel, capturedLogs

from yaypm.testing.simulator import answer, busy, noanswer, reject

INJECTION = "35' OR '1'='1"


def test_winner_among_three_callees(quiz, sim):
    """anna is busy, john types a wrong PIN then the right one, bob answers and is slow."""
    q = quiz(("john", "12345"), ("anna", "54321"), ("bob", "999"))
    q.callee("john", answer(after=1.0))
    q.callee("anna", busy(after=0.5))
    q.callee("bob", answer(after=2.0))
    call = q.call()
    sim.advance(1.0)
    assert 183 in call.provisional and call.sip_status is None     # early media, no answer
    assert call.heard()[0] == q.prompt("welcome_caller")
    assert q.leg("anna").sip_status == 486 and q.leg("anna").ended  # dropped, others go on
    john = q.leg("john")
    assert john.is_answered and not john.ended

    sim.advance(1.0)                                    # t=2: john, during the prompt
    john.send_dtmf("11111#", interval=0.2)
    sim.advance(1.0)                                    # t=3: bob types one digit, then idles
    q.leg("bob").send_dtmf("9")
    sim.advance(1.0)                                    # t=4: john again, right PIN
    john.send_dtmf("12345", interval=0.2)
    sim.advance(0.79)
    assert call.sip_status is None and not call.is_answered        # last digit not yet typed
    sim.advance(0.02)
    assert call.sip_status == 200 and call.is_answered
    assert call.heard()[:2] == [q.prompt("welcome_caller"), "tone/ring"]   # then ringback
    assert q.talking(call, john)
    assert john.heard()[:2] == [q.prompt("welcome_callee"), q.prompt("sorry_pin_wrong")]
    bob = q.leg("bob")
    assert bob.ended and bob.bye_received                          # answered loser: BYE
    assert not any(q.talking(call, x) for x in (bob, q.leg("anna")))

    sim.advance(10)
    call.hangup()
    sim.advance(1)
    assert john.ended and john.bye_received
    q.assert_clean()


def test_caller_cancels_while_callees_ring(quiz, sim):
    q = quiz(("john", "1"), ("anna", "2"), ("bob", "3"))
    q.callee("john", noanswer())
    q.callee("anna", noanswer())
    q.callee("bob", answer(after=1.0))              # one already typing its PIN
    call = q.call()
    sim.advance(3)
    assert q.leg("bob").is_answered and not q.leg("john").ended
    call.hangup()                                   # CANCEL before any answer
    sim.advance(1)
    assert call.sip_status == 487 and call.ended
    for name in ("john", "anna"):
        leg = q.leg(name)
        assert leg.ended and leg.cancelled and leg.sip_status == 487, name
    assert q.leg("bob").ended and q.leg("bob").bye_received
    q.assert_clean()


def test_winner_hangs_up_first(quiz, sim):
    q = quiz(("john", "12345"), ("anna", "54321"))
    q.callee("john", answer(after=1.0))
    q.callee("anna", noanswer())
    call = q.call()
    sim.advance(2)
    q.leg("john").send_dtmf("12345#", interval=0.1)
    sim.advance(2)
    assert call.sip_status == 200 and q.talking(call, q.leg("john"))
    assert q.leg("anna").ended and q.leg("anna").cancelled        # unanswered loser: CANCEL
    sim.advance(5)
    q.leg("john").hangup()
    sim.advance(1)
    assert call.ended                                 # the caller got a BYE
    q.assert_clean()


def test_caller_hangs_up_first(quiz, sim):
    q = quiz(("john", "12345"),)
    q.callee("john", answer(after=1.0))
    call = q.call()
    sim.advance(2)
    q.leg("john").send_dtmf("12345", interval=0.1)
    sim.advance(2)
    assert call.is_answered and q.talking(call, q.leg("john"))
    call.hangup()
    sim.advance(1)
    assert q.leg("john").ended and q.leg("john").bye_received
    q.assert_clean()


def test_no_callees_is_404(quiz, sim):
    q = quiz(("john", "12345"), number="35")
    call = q.call("36")
    sim.advance(1)
    assert call.sip_status == 404 and call.ended
    assert 183 not in call.provisional                # no early media for a refused call
    assert q.legs("john") == []
    q.assert_clean()


def test_injection_shaped_number_matches_nothing(quiz, sim):
    q = quiz(("john", "12345"), ("anna", "54321"))
    q.callee("john", answer())
    call = q.call(INJECTION)
    sim.advance(1)
    assert call.sip_status == 404
    assert q.legs("john") == []
    q.assert_clean()


def test_database_down_is_500_and_logged_with_the_cause(quiz, sim, tmp_path):
    url = f"sqlite:///{tmp_path}/no/such/dir/quizconnect.db"
    with capturedLogs() as events:
        q = quiz(db_url=url, seed=False)
        call = q.call()
        sim.advance(1)
    assert call.sip_status == 500 and call.ended
    errors = [e for e in events if e.get("log_level") in (LogLevel.error, LogLevel.critical)]
    from twisted.logger import formatEvent
    text = "\n".join(formatEvent(e) for e in errors)
    assert "unable to open database file" in text, text
    q.assert_clean()


def test_query_error_is_500(quiz, sim, sqlite_url):
    from yaypm.sql import Database
    db = Database(sqlite_url, threaded=False)     # a 'callees' table of another shape
    db.run_script("CREATE TABLE callees (id INTEGER PRIMARY KEY, number TEXT)")
    db.close()
    with capturedLogs() as events:
        q = quiz(seed=False)
        call = q.call()
        sim.advance(1)
    assert call.sip_status == 500
    from twisted.logger import formatEvent
    assert any("no such column" in formatEvent(e) for e in events)
    q.assert_clean()


def test_sqlite_table_is_created_on_first_run(quiz, sim):
    q = quiz(seed=False)
    call = q.call()
    sim.advance(1)
    assert call.sip_status == 404                 # an empty table, not an error
    q.assert_clean()


def test_nobody_answers_is_480_after_the_overall_timeout(quiz, sim):
    q = quiz(("john", "1"), ("anna", "2"), ("bob", "3"), overall_timeout=20.0)
    for name in ("john", "anna", "bob"):
        q.callee(name, noanswer())
    call = q.call()
    sim.advance(19.5)
    assert call.sip_status is None and not q.leg("john").ended
    sim.advance(1)
    assert call.sip_status == 480 and call.ended
    for name in ("john", "anna", "bob"):
        assert q.leg(name).cancelled and q.leg(name).ended
    q.assert_clean()


def test_answered_callee_without_the_pin_is_dropped_at_the_overall_timeout(quiz, sim):
    q = quiz(("john", "1234"), overall_timeout=20.0)
    q.callee("john", answer(after=1.0))
    call = q.call()
    sim.advance(3)
    q.leg("john").send_dtmf("9")                  # keeps typing nothing useful
    sim.advance(18)
    assert call.sip_status == 480
    assert q.leg("john").ended and q.leg("john").bye_received
    q.assert_clean()


def test_every_callee_dropping_out_is_480_at_once(quiz, sim):
    q = quiz(("john", "1"), ("anna", "2"))
    q.callee("john", busy(after=0.5))
    q.callee("anna", reject(404, after=1.0))
    call = q.call()
    sim.advance(2)
    assert call.sip_status == 480
    q.assert_clean()


def test_wrong_pins_use_up_the_attempts_then_the_leg_hangs_up(quiz, sim):
    q = quiz(("john", "12345"), ("anna", "54321"), attempts=2)
    q.callee("john", answer(after=1.0))
    q.callee("anna", noanswer())
    call = q.call()
    sim.advance(2)
    john = q.leg("john")
    john.send_dtmf("1#", interval=0.2)
    sim.advance(2)
    john.send_dtmf("2*", interval=0.2)            # '*' submits too
    sim.advance(5)
    assert john.heard() == [q.prompt("welcome_callee"), q.prompt("sorry_pin_wrong"),
                            q.prompt("pin_goodbye")]
    assert john.ended and john.bye_received
    assert call.sip_status is None and not q.leg("anna").ended   # the race goes on
    call.hangup()
    sim.advance(1)
    q.assert_clean()


def test_keys_interrupt_the_prompt(quiz, sim):
    q = quiz(("john", "12345"),)
    q.callee("john", answer(after=1.0))
    call = q.call()
    sim.advance(1.5)                               # welcome_callee (3.6 s) is playing
    q.leg("john").send_dtmf("12345", interval=0.1)
    sim.advance(0.5)
    assert call.is_answered                       # no need to hear the prompt to the end
    call.hangup()
    sim.advance(1)
    q.assert_clean()


def test_two_right_pins_in_the_same_instant_exactly_one_wins(quiz, sim):
    q = quiz(("john", "12345"), ("anna", "54321"), ("bob", "777"))
    q.callee("john", answer(after=1.0))
    q.callee("anna", answer(after=1.0))
    q.callee("bob", answer(after=1.0))
    call = q.call()
    sim.advance(2)
    john, anna, bob = q.leg("john"), q.leg("anna"), q.leg("bob")
    john.send_dtmf("12345", interval=0.2)
    anna.send_dtmf("54321", interval=0.2)         # both last digits at t=2.8
    bob.send_dtmf("777", interval=0.4)            # and bob's too
    sim.advance(3)
    winners = [x for x in (john, anna, bob) if q.talking(call, x)]
    assert len(winners) == 1, winners
    losers = [x for x in (john, anna, bob) if x not in winners]
    assert all(x.ended and x.bye_received for x in losers)
    # a loser never reached the caller, not even for an instant
    for loser in losers:
        assert not [w for w in sim.wire if "chan.connected" in w.line
                    and f":id={loser.id}:" in w.line
                    and (":peerid=conf/" in w.line or f":peerid={call.id}:" in w.line)]
    call.hangup()
    sim.advance(1)
    q.assert_clean()


def test_callee_with_its_own_domain_is_called_there(quiz, sim):
    q = quiz(("john@10.1.2.3:5099", "12345"), ("anna", "54321"))
    john = q.callee("sip:john@10.1.2.3:5099", answer(after=1.0))
    anna = q.callee("anna", busy())
    call = q.call()
    sim.advance(2)
    assert john.last.uri == "sip:john@10.1.2.3:5099"
    assert anna.last.uri == "sip:anna@127.0.0.1:5080"             # outbound_domain
    john.last.send_dtmf("12345", interval=0.1)
    sim.advance(1)
    assert q.talking(call, john.last)
    call.hangup()
    sim.advance(1)
    q.assert_clean()
