"""Outbound calls, bridges, conferences and transfers on the simulator (traces C1-C3, D1-D3)."""

from __future__ import annotations

import pytest
from twisted.internet import defer

from yaypm.flow import XOR
from yaypm.ivr import (BusyError, CallEnded, NoAnswerError, RejectedError, dial, switchboard)
from yaypm.prompts import prompt
from yaypm.testing import assert_no_result, failure_result_of, success_result_of
from yaypm.testing.simulator import answer, busy, noanswer, reject

REMINDER = prompt("reminder")     # 2.5 s


def test_dial_answered_then_play_and_hang_up(sim, apps):
    bob = sim.endpoint("bob", answer(after=2))
    d = dial(apps.dispatcher, "sip/" + bob.uri, caller="ivr", timeout=10)
    sim.advance(1)
    assert_no_result(d)
    assert bob.last.state == "ringing"
    sim.advance(1.5)
    leg = success_result_of(d)
    assert (leg.state, leg.direction, leg.is_answered) == ("answered", "outgoing", True)
    assert leg.id == bob.last.id and leg.chan.startswith("dumb/")
    played = leg.play(REMINDER)
    sim.advance(3)
    success_result_of(played)
    assert bob.last.heard() == ["wave/play/" + REMINDER]
    leg.hangup()
    sim.advance(0.1)
    assert bob.last.bye_received and leg.end_reason == "normal"
    apps.clean()


def test_dial_a_number_routed_by_yate(sim, apps):
    sim.endpoint("200", answer())
    d = dial(apps.dispatcher, "200")
    sim.advance(1)
    leg = success_result_of(d)
    assert leg.called == "200"
    leg.hangup()
    sim.advance(1)
    apps.clean()


def test_dial_busy(sim, apps):
    bob = sim.endpoint("bob", busy(after=0.5))
    d = dial(apps.dispatcher, "sip/" + bob.uri)
    sim.advance(1)
    f = failure_result_of(d, BusyError)
    assert f.value.code == 486 and f.value.target == "sip/" + bob.uri
    apps.clean()


def test_dial_no_answer_after_timeout(sim, apps):
    bob = sim.endpoint("bob", noanswer())
    d = dial(apps.dispatcher, "sip/" + bob.uri, timeout=4)
    sim.advance(3.9)
    assert_no_result(d)
    sim.advance(1.2)                # maxcall is checked on the engine's 1 s timer (C3: 5 s)
    failure_result_of(d, NoAnswerError)
    assert bob.last.cancelled
    sim.advance(1)
    apps.clean()


@pytest.mark.parametrize("code", [404, 480, 603])
def test_dial_rejected_with_a_code(sim, apps, code):
    bob = sim.endpoint("bob", reject(code, after=0.2))
    d = dial(apps.dispatcher, "sip/" + bob.uri)
    sim.advance(1)
    f = failure_result_of(d, RejectedError)
    assert f.value.code == code
    apps.clean()


def test_dial_unreachable_is_no_answer(sim, apps):
    d = dial(apps.dispatcher, "sip/sip:nobody@127.0.0.1:5087", timeout=60)
    sim.advance(33)
    failure_result_of(d, NoAnswerError)
    apps.clean()


def test_dial_with_no_route(sim, apps):
    d = dial(apps.dispatcher, "nosuchnumber")
    sim.advance(1)
    f = failure_result_of(d, RejectedError)
    assert f.value.code == 404
    apps.clean()


def test_cancelling_a_dial_cancels_the_invite(sim, apps):
    bob = sim.endpoint("bob", noanswer())
    d = dial(apps.dispatcher, "sip/" + bob.uri)
    sim.advance(1)
    d.cancel()
    failure_result_of(d, defer.CancelledError)
    sim.advance(1)
    assert bob.last.cancelled and bob.last.sip_status == 487
    apps.clean()


def test_dial_raced_against_a_timer(sim, apps):
    bob = sim.endpoint("bob", noanswer())

    async def app(leg):
        await leg.answer()
        index, _ = await XOR(leg.dial("sip/" + bob.uri), leg.sleep(5))
        apps.results.append(index)

    apps.route("100", app)
    sim.place_call("100")
    sim.advance(6)
    assert apps.results == [1] and bob.last.cancelled
    apps.clean()


def test_callee_hangs_up_after_answer(sim, apps):
    bob = sim.endpoint("bob", answer(hangup_after=1))

    async def call_bob():
        leg = await dial(apps.dispatcher, "sip/" + bob.uri)
        try:
            await leg.play(REMINDER)
        except CallEnded as e:
            apps.results.append(e.reason)

    d = defer.ensureDeferred(call_bob())
    sim.advance(3)
    success_result_of(d)
    assert apps.results == ["hangup"]
    apps.clean()


# -- bridges ----------------------------------------------------------------------------------

def test_bridge_an_incoming_call_to_an_outgoing_one(sim, apps):
    bob = sim.endpoint("bob", answer(after=1))

    async def app(leg):
        await leg.answer()
        callee = await leg.dial("sip/" + bob.uri, caller=leg.caller)
        await leg.bridge(callee)
        apps.results.append((leg.state, callee.state, leg.peer, callee.peer))
        reason = await leg.ended
        apps.results.append((reason, await callee.ended))

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(2)
    assert apps.results == [("bridged", "bridged", bob.last.id, call.id)]
    assert call.peer_id == bob.last.id
    # DTMF passes through the bridge to the other party.
    call.send_dtmf("5")
    sim.advance(0.5)
    assert bob.last.dtmf_received() == "5"
    call.hangup()
    sim.advance(1)
    assert apps.results[1] == ("hangup", "hangup") and bob.last.ended
    apps.clean()


def test_bridge_refused_for_a_vanished_leg(sim, apps):
    bob = sim.endpoint("bob", answer())

    async def app(leg):
        await leg.answer()
        callee = await leg.dial("sip/" + bob.uri)
        callee.id = "sip/999"                       # pretend it vanished behind our back
        try:
            await leg.bridge(callee)
        except Exception as e:
            apps.results.append(type(e).__name__)
        callee.id = bob.last.id
        await callee.hangup()

    apps.route("100", app)
    sim.place_call("100")
    sim.advance(2)
    assert apps.results == ["BridgeError"]
    apps.clean()


# -- conferences ------------------------------------------------------------------------------

def test_two_callers_meet_in_a_conference(sim, apps):
    async def app(leg):
        await leg.answer()
        joined = await leg.join("room1")
        apps.results.append((leg.caller, joined))
        await leg.ended

    apps.route("100", app)
    alice = sim.place_call("100", caller="alice")
    sim.advance(1)
    bob = sim.place_call("100", caller="bob")
    sim.advance(1)
    assert [r[0] for r in apps.results] == ["alice", "bob"]
    assert apps.results[0][1].newroom and not apps.results[1][1].newroom
    assert apps.results[1][1].users == 2
    assert apps.legs[0].state == "conference" and apps.legs[0].room == "conf/room1"
    # The room drops the last user when the other leaves (lonely=false).
    alice.hangup()
    sim.advance(1)
    assert bob.ended and apps.legs[1].end_reason == "hangup"
    apps.clean()


def test_leave_a_conference_back_to_the_ivr(sim, apps):
    async def app(leg):
        await leg.answer()
        await leg.join("room2", lonely=True)
        await leg.sleep(1)
        await leg.leave()
        await leg.play(prompt("goodbye"))

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(3)
    assert call.heard()[-1] == "wave/play/" + prompt("goodbye")
    assert call.ended
    apps.clean()


def test_transfer_hands_the_call_to_another_target(sim, apps):
    op = sim.endpoint("operator", answer())

    async def app(leg):
        await leg.answer()
        await leg.transfer("sip/" + op.uri)
        apps.results.append(leg.end_reason)

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(1)
    assert apps.results == ["transferred"]
    assert call.peer_id == op.last.id and not call.ended
    assert len(switchboard(apps.dispatcher)) == 0
    call.hangup()
    sim.advance(1)
    apps.clean()


def test_legs_are_recorded_for_monitoring(sim, apps):
    from yaypm.registry import CallRegistry
    calls = CallRegistry(sim.clock)
    switchboard(apps.dispatcher).calls = calls
    bob = sim.endpoint("bob", busy())

    async def menu(leg):
        await leg.answer()
        assert len(calls.active) == 1
        try:
            await leg.dial("sip/" + bob.uri)
        except BusyError:
            pass

    apps.route("100", menu)
    sim.place_call("100", caller="alice")
    sim.advance(2)
    assert calls.active == {}
    records = [calls.get(i).as_dict() for i in calls.list_finished()]
    assert [(r["dir"], r["from"], r["to"], r["outcome"]) for r in records] == [
        ("out", "", "bob", "busy"), ("in", "alice", "100", "normal")]
    assert records[1]["chan"] == "sip/1"
    apps.clean()


def test_calls_placed_by_an_app_end_with_it(sim, apps):
    bob = sim.endpoint("bob", answer())
    carol = sim.endpoint("carol", noanswer())

    async def app(leg):
        await leg.answer()
        callee = await leg.dial("sip/" + bob.uri)
        leg.dial("sip/" + carol.uri)              # still ringing when the app fails
        await callee.play(REMINDER)
        raise ValueError("bug after dialling")

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(5)
    assert call.ended and bob.last.ended and carol.last.cancelled
    sim.advance(1)
    apps.clean()


def test_originate_returns_the_ringing_leg(sim, apps):
    from yaypm.ivr import originate
    bob = sim.endpoint("bob", answer(after=1))
    leg = originate(apps.dispatcher, "sip/" + bob.uri)
    assert leg.state in ("calling", "ringing") and leg.direction == "outgoing"
    d = leg.answered()
    sim.advance(0.5)
    assert leg.state == "ringing" and leg.id == bob.last.id
    assert_no_result(d)
    sim.advance(1)
    assert success_result_of(d) is leg and leg.is_answered
    assert success_result_of(leg.answered()) is leg
    leg.hangup()
    sim.advance(1)
    apps.clean()


def test_first_callee_to_enter_the_pin_wins(sim, apps):
    """quizconnect's shape (style.md §4): race PIN entry on several outbound legs; the losers,
    cancelled wherever they are (ringing, prompt, digits), hang up in ``finally``."""
    from yaypm.ivr import originate
    pads = {"ann": answer(after=1), "ben": answer(after=2), "cy": noanswer()}
    for name, behaviour in pads.items():
        sim.endpoint(name, behaviour)

    async def ask_pin(target, pin):
        leg = originate(apps.dispatcher, "sip/sip:%s@127.0.0.1:5080" % target, timeout=20)
        won = False
        try:
            await leg.answered()
            for _ in range(3):
                if await leg.digits(count=len(pin), timeout=10,
                                    prompt=prompt("welcome")) == pin:
                    won = True
                    return leg
                await leg.play(prompt("invalid"))
            raise ValueError(leg.id)
        finally:
            if not won:
                leg.hangup()

    d = defer.race([defer.Deferred.fromCoroutine(ask_pin(t, "42")) for t in pads])
    sim.advance(3)
    ann, ben, cy = (sim.endpoints[n].last for n in ("ann", "ben", "cy"))
    ann.send_dtmf("13")                 # wrong
    ben.send_dtmf("42")                 # right
    sim.advance(1)
    index, winner = success_result_of(d)
    assert index == 1 and winner.id == ben.id and winner.alive
    sim.advance(1)
    assert ann.ended and cy.ended and cy.cancelled and not ben.ended
    winner.hangup()
    sim.advance(1)
    apps.clean()


def test_connection_loss_and_reconnect_on_the_simulator(sim, apps):
    async def app(leg):
        await leg.answer()
        await leg.digits(count=4, timeout=None)

    apps.route("100", app)
    calls = [sim.place_call("100") for _ in range(3)]
    sim.advance(1)
    sim.disconnect(apps.dispatcher)
    assert [leg.end_reason for leg in apps.legs] == ["disconnected"] * 3
    assert not any(c.ended for c in calls)          # Yate keeps the calls meanwhile
    sim.connect(dispatcher=apps.dispatcher)
    sim.advance(1)
    assert all(c.ended for c in calls)              # dropped once we are back
    apps.clean()
