"""Leg operations on the simulator: answer, early media, prompts, digits, DTMF, records, tones,
hang-ups and rejects, with the caller hanging up in the middle of each."""

from __future__ import annotations

import re

import pytest

from yaypm.flow import XOR, getResult
from yaypm.ivr import CallEnded, DigitTimeoutError, MediaError, switchboard
from yaypm.prompts import prompt
from yaypm.testing import failure_result_of, success_result_of

MENU = prompt("menu")          # 5.3 s
BEEP = prompt("beep")          # 0.3 s
WELCOME = prompt("welcome")    # 1.0 s


def test_answer_play_and_hang_up(sim, apps):
    async def app(leg):
        await leg.answer()
        await leg.play([WELCOME, BEEP])
        apps.results.append(sim.clock.seconds())

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(10)
    assert call.sip_status == 200 and call.ended
    assert call.heard() == ["wave/play/" + WELCOME, "wave/play/" + BEEP]
    assert apps.results == [pytest.approx(1.3, abs=0.05)]
    assert apps.legs[0].end_reason == "normal"
    apps.clean()


def test_routing_rings_until_answered_and_progress_sends_183(sim, apps):
    async def app(leg):
        await leg.progress()
        await leg.play(BEEP)                     # early media
        await leg.answer()
        await leg.hangup("done")

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(2)
    assert call.provisional[:2] == [180, 183]
    assert call.sip_status == 200 and call.ended
    assert apps.legs[0].end_reason == "done"
    apps.clean()


def test_leg_identity(sim, apps):
    apps.route("100", lambda leg: leg.answer())
    sim.place_call("100", caller="alice", callername="Alice")
    sim.advance(1)
    leg = apps.legs[0]
    assert (leg.id, leg.chan, leg.caller, leg.called, leg.callername) == \
        ("sip/1", "dumb/1", "alice", "100", "Alice")
    assert leg.direction == "incoming" and leg.billid
    apps.clean()


def test_matchers_exact_regex_callable_and_unclaimed(sim, apps):
    seen = []
    apps.route("100", lambda leg: seen.append(("exact", leg.called)))
    apps.route(re.compile(r"2\d\d"), lambda leg: seen.append(("regex", leg.called)))
    apps.route(lambda n: n.startswith("9"), lambda leg: seen.append(("callable", leg.called)))
    calls = [sim.place_call(n) for n in ("100", "250", "999", "300", "1000")]
    sim.advance(1)
    assert seen == [("exact", "100"), ("regex", "250"), ("callable", "999")]
    # Unclaimed: answered unhandled at once, Yate finds no route (404).
    assert calls[3].sip_status == 404 and calls[4].sip_status == 404
    assert switchboard(apps.dispatcher).stats["unclaimed"] == 2
    apps.clean()


def test_route_cancel_releases_the_number(sim, apps):
    r = apps.route("100", lambda leg: None)
    r.cancel()
    call = sim.place_call("100")
    sim.advance(1)
    assert call.sip_status == 404 and apps.legs == []


def test_generator_app(sim, apps):
    def classic(leg):
        yield leg.answer()
        yield leg.digits(count=2, timeout=5)
        apps.results.append(getResult())

    apps.route("100", classic)
    call = sim.place_call("100")
    sim.advance(0.5)
    call.send_dtmf("42")
    sim.advance(1)
    assert apps.results == ["42"] and call.ended
    apps.clean()


def test_plain_function_app_rejects_or_returns(sim, apps):
    apps.route("100", lambda leg: leg.reject(403))
    call = sim.place_call("100")
    sim.advance(1)
    assert call.sip_status == 403 and call.provisional == []
    apps.clean()


@pytest.mark.parametrize("code", [404, 486, 480, 487, 500, 403,
                                  503])
def test_reject_codes_in_routing(sim, apps, code):
    apps.route("100", lambda leg: leg.reject(code))
    call = sim.place_call("100")
    sim.advance(1)
    assert call.sip_status == code
    assert apps.legs[0].end_reason
    apps.clean()


@pytest.mark.parametrize("code", [404, 486, 480, 487, 500])
def test_reject_codes_after_ringing(sim, apps, code):
    async def app(leg):
        await leg.sleep(1)
        await leg.reject(code)

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(2)
    assert call.provisional == [180] and call.sip_status == code
    apps.clean()


@pytest.mark.parametrize("reason", ["busy", "noroute"])
def test_reject_by_reason(sim, apps, reason):
    apps.route("100", lambda leg: leg.reject(reason))
    call = sim.place_call("100")
    sim.advance(1)
    assert call.sip_status == {"busy": 486, "noroute": 404}[reason]


def test_app_exception_is_logged_and_hangs_up_only_that_call(sim, apps, caplog):
    async def app(leg):
        await leg.answer()
        if leg.caller == "bob":
            raise ZeroDivisionError("app bug")
        await leg.play(WELCOME)

    apps.route("100", app)
    errors = []
    from twisted.logger import globalLogPublisher
    observer = errors.append
    globalLogPublisher.addObserver(observer)
    try:
        bad = sim.place_call("100", caller="bob")
        good = sim.place_call("100", caller="alice")
        sim.advance(5)
    finally:
        globalLogPublisher.removeObserver(observer)
    failures = [e for e in errors if e.get("log_failure") is not None]
    assert any(e["log_failure"].check(ZeroDivisionError) for e in failures)
    assert bad.ended and apps.legs[0].end_reason == "failure"
    assert good.heard() == ["wave/play/" + WELCOME]
    assert apps.legs[1].end_reason == "normal"
    assert switchboard(apps.dispatcher).stats["app_errors"] == 1
    apps.clean()


def test_exception_before_routing_answer_rejects_500(sim, apps):
    def app(leg):
        raise RuntimeError("broken at once")

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(1)
    assert call.sip_status == 500


# -- prompts ------------------------------------------------------------------------------------

def test_missing_prompt_is_a_media_error(sim, apps):
    async def app(leg):
        await leg.answer()
        try:
            await leg.play("/nonexistent/file.au")
        except MediaError as e:
            apps.results.append(e.resource)

    apps.route("100", app)
    sim.place_call("100")
    sim.advance(1)
    assert apps.results == ["wave/play//nonexistent/file.au"]
    apps.clean()


def test_barge_in_returns_the_key_and_leaves_it_for_digits(sim, apps):
    async def app(leg):
        await leg.answer()
        key = await leg.play([MENU, WELCOME], barge_in=True)
        entry = await leg.digits(count=3, timeout=3)
        apps.results.append((key, entry, sim.clock.seconds()))

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(1)
    call.send_dtmf("123", interval=0.2)
    sim.advance(2)
    assert apps.results == [("1", "123", pytest.approx(1.4))]
    assert call.heard() == ["wave/play/" + MENU]       # the second prompt was skipped
    apps.clean()


def test_type_ahead_skips_the_prompt(sim, apps):
    async def app(leg):
        await leg.answer()
        await leg.sleep(1)
        apps.results.append(await leg.digits(count=2, prompt=MENU))

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(0.2)
    call.send_dtmf("77")
    sim.advance(2)
    assert apps.results == ["77"] and call.heard() == []
    apps.clean()


def test_prompt_without_barge_in_ignores_keys_but_keeps_them(sim, apps):
    async def app(leg):
        await leg.answer()
        await leg.play(WELCOME)
        apps.results.append((sim.clock.seconds(), await leg.digits(count=1)))

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(0.3)
    call.send_dtmf("5")
    sim.advance(2)
    assert apps.results == [(pytest.approx(1.0, abs=0.05), "5")]
    apps.clean()


def test_cancelling_a_prompt_detaches_it(sim, apps):
    async def app(leg):
        await leg.answer()
        index, _ = await XOR(leg.play(MENU), leg.sleep(1))
        apps.results.append(index)
        await leg.play(BEEP)

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(3)
    assert apps.results == [1]
    assert call.heard() == ["wave/play/" + MENU, "wave/play/" + BEEP]
    assert any("source=-" in line for line in sim.lines(">>"))
    apps.clean()


def test_stop_media_ends_play_with_none(sim, apps):
    async def app(leg):
        await leg.answer()
        d = leg.play(MENU)
        await leg.sleep(0.5)
        await leg.stop_media()
        apps.results.append(await d)

    apps.route("100", app)
    sim.place_call("100")
    sim.advance(2)
    assert apps.results == [None]
    apps.clean()


def test_tone_with_duration(sim, apps):
    async def app(leg):
        await leg.answer()
        await leg.tone("ring", duration=2)
        apps.results.append(sim.clock.seconds())

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(3)
    assert apps.results == [pytest.approx(2.0)]
    assert call.heard() == ["tone/ring"]
    apps.clean()


def test_stop_media_detaches_a_tone(sim, apps):
    # Found on the real engine: a tone's operation fires once it is on, and stop_media()
    # then sent nothing, so the tone went on (tests/yate/test_ivr_real.py).
    async def app(leg):
        await leg.answer()
        await leg.tone("busy")
        await leg.sleep(0.5)
        await leg.stop_media()
        apps.results.append(sorted(sim.channel(leg.chan).media))

    apps.route("100", app)
    sim.place_call("100")
    sim.advance(1)
    assert apps.results == [[]]
    assert sim.lines(">>")[-2].endswith(":source=-")
    apps.clean()


def test_unknown_tone_fails(sim, apps):
    async def app(leg):
        await leg.answer()
        try:
            await leg.tone("dtmf/5")
        except MediaError:
            apps.results.append("refused")

    apps.route("100", app)
    sim.place_call("100")
    sim.advance(1)
    assert apps.results == ["refused"]
    apps.clean()


# -- digits -------------------------------------------------------------------------------------

def digits_app(apps, **kw):
    async def app(leg):
        await leg.answer()
        try:
            apps.results.append(await leg.digits(**kw))
        except DigitTimeoutError as e:
            apps.results.append(("timeout", e.digits))
    return app


def test_digits_terminator(sim, apps):
    apps.route("100", digits_app(apps, terminator="#"))
    call = sim.place_call("100")
    sim.advance(0.1)
    call.send_dtmf("1234#")
    sim.advance(2)
    assert apps.results == ["1234"]
    apps.clean()


def test_digits_first_key_timeout(sim, apps):
    apps.route("100", digits_app(apps, count=4, timeout=5))
    sim.place_call("100")
    sim.advance(4.9)
    assert apps.results == []
    sim.advance(0.2)
    assert apps.results == [("timeout", "")]
    apps.clean()


def test_digits_interdigit_timeout_with_count_is_partial(sim, apps):
    apps.route("100", digits_app(apps, count=4, timeout=5, interdigit=2))
    call = sim.place_call("100")
    sim.advance(0.5)
    call.send_dtmf("12", interval=0.5)
    sim.advance(3)
    assert apps.results == [("timeout", "12")]
    apps.clean()


def test_digits_interdigit_timeout_ends_variable_entry(sim, apps):
    apps.route("100", digits_app(apps, timeout=5, interdigit=2, terminator=None))
    call = sim.place_call("100")
    sim.advance(0.5)
    call.send_dtmf("987")
    sim.advance(3)
    assert apps.results == ["987"]
    apps.clean()


def test_digits_with_rfc2833_and_flush(sim, apps):
    async def app(leg):
        await leg.answer()
        await leg.sleep(1)
        apps.results.append(await leg.digits(count=1, flush=True, timeout=2))

    apps.route("100", app)
    call = sim.place_call("100", dtmf_method="rfc2833")
    sim.advance(0.2)
    call.send_dtmf("1")                    # typed ahead, then flushed
    sim.advance(1.5)
    call.send_dtmf("2")
    sim.advance(1)
    assert apps.results == ["2"]
    apps.clean()


def test_dtmf_stream_and_listener(sim, apps):
    async def app(leg):
        heard = []
        leg.on_dtmf(heard.append)
        await leg.answer()
        async for key in leg.dtmf():
            apps.results.append(key)
            if key == "#":
                break
        apps.results.append("".join(heard))

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(0.1)
    call.send_dtmf("12*#")
    sim.advance(1)
    assert apps.results == ["1", "2", "*", "#", "12*#"]
    apps.clean()


def test_send_dtmf_reaches_the_caller(sim, apps):
    async def app(leg):
        await leg.answer()
        await leg.send_dtmf("12")
        await leg.sleep(1)

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(2)
    assert call.dtmf_received() == "12"
    apps.clean()


# -- recording ----------------------------------------------------------------------------------

def test_record_max_seconds_and_key(sim, apps, tmp_path):
    files = [str(tmp_path / "a.au"), str(tmp_path / "b.slin")]

    async def app(leg):
        await leg.answer()
        apps.results.append(await leg.record(files[0], max_seconds=2))
        apps.results.append(await leg.record(files[1], max_seconds=10))

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(3.5)
    call.send_dtmf("#")
    sim.advance(1)
    first, second = apps.results
    assert (first.reason, first.duration) == ("maxlen", pytest.approx(2.0))
    assert (second.reason, second.key) == ("dtmf", "#")
    assert second.duration == pytest.approx(1.5)
    apps.clean()


# -- the caller hangs up --------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["answer", "play", "digits", "record", "tone", "sleep",
                                "stream", "ended"])
def test_caller_hangs_up_during_each_operation(sim, apps, op, tmp_path):
    async def app(leg):
        if op == "answer":
            await leg.sleep(5)
        await leg.answer()
        try:
            if op == "play":
                await leg.play(MENU)
            elif op == "digits":
                await leg.digits(count=4, timeout=30)
            elif op == "record":
                await leg.record(str(tmp_path / "r.au"), max_seconds=30)
            elif op == "tone":
                await leg.tone("ring", duration=30)
            elif op == "stream":
                async for key in leg.dtmf():
                    pass
            elif op == "ended":
                apps.results.append(await leg.ended)
                return
            await leg.sleep(30)
        except CallEnded as e:
            apps.results.append(e.reason)
            raise

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(2)
    call.hangup()
    sim.advance(0.1)
    assert apps.results == ["hangup"] if op != "answer" else apps.results == []
    # A caller giving up before the answer (CANCEL) is "noanswer" in Yate's words.
    assert apps.legs[0].end_reason == ("noanswer" if op == "answer" else "hangup")
    sim.advance(1)
    apps.clean()


def test_operation_on_an_ended_leg_fails_at_once(sim, apps):
    apps.route("100", lambda leg: leg.answer())
    call = sim.place_call("100")
    sim.advance(1)
    leg = apps.legs[0]
    assert not leg.alive and call.ended
    for d in (leg.play(BEEP), leg.digits(), leg.answer(), leg.record("x.au"), leg.sleep(1),
              leg.tone("ring"), leg.send_dtmf("1"), leg.bridge(leg)):
        failure_result_of(d, CallEnded)
    assert success_result_of(leg.hangup()) == "normal"
    assert success_result_of(leg.ended) == "normal"
    apps.clean()


def test_cancelling_the_app_flow_cancels_its_wait(sim, apps):
    async def app(leg):
        await leg.answer()
        await leg.digits(count=4, timeout=None)

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(1)
    leg = apps.legs[0]
    leg.app.cancel()                    # e.g. a supervisor aborting the flow
    sim.advance(1)
    assert call.ended and leg.end_reason == "normal"
    apps.clean()


def test_caller_gives_up_while_ringing(sim, apps):
    async def app(leg):
        await leg.sleep(10)
        await leg.answer()

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(1)
    call.hangup()
    sim.advance(1)
    assert call.sip_status == 487
    assert not apps.legs[0].alive
    apps.clean()
