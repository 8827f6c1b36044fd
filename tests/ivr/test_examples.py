"""The example apps, each driven end to end on the simulator."""

from __future__ import annotations

import os

import pytest
from twisted.internet import defer

from yaypm.examples import keyecho, menu, reminder, voicemail
from yaypm.prompts import PROMPTS_DIR, digit_prompt, prompt
from yaypm.testing import success_result_of
from yaypm.testing.simulator import answer, busy, noanswer



def play(name):
    return "wave/play/" + prompt(name)


def test_prompts_are_small_and_cover_the_examples():
    files = os.listdir(PROMPTS_DIR)
    total = sum(os.path.getsize(os.path.join(PROMPTS_DIR, f)) for f in files)
    assert total < 300_000
    for key in "0123456789*#":
        assert os.path.exists(digit_prompt(key))


def test_keyecho_says_back_each_key(sim, assert_clean):
    d = sim.connect(keyecho.start)
    call = sim.place_call("echo")
    sim.advance(2)
    call.send_dtmf("5#", interval=0.1)        # the second key waits for the first prompt
    sim.advance(3)
    assert call.heard() == [play("welcome"), "wave/play/" + digit_prompt("5"),
                            "wave/play/" + digit_prompt("#")]
    call.hangup()
    sim.advance(1)
    assert_clean(sim, d)


def test_menu_retries_invalid_input_and_silence_then_transfers(sim, assert_clean):
    sales = sim.endpoint("sales", answer())
    d = sim.connect(menu.start)
    call = sim.place_call("menu")
    sim.advance(2)                             # welcome, menu starts
    call.send_dtmf("9")                        # invalid: barges into the menu
    sim.advance(3)                             # "invalid", the menu again...
    sim.advance(12)                            # ...nothing typed: "noinput", menu again
    call.send_dtmf("1")
    sim.advance(4)
    heard = call.heard()
    assert heard[:3] == [play("welcome"), play("menu"), play("invalid")]
    assert heard[3:6] == [play("menu"), play("noinput"), play("menu")]
    assert heard[6] == play("transfer")
    assert call.peer_id == sales.last.id and sales.last.is_answered
    call.hangup()
    sim.advance(1)
    assert_clean(sim, d)


def test_menu_gives_up_after_three_tries(sim, assert_clean):
    d = sim.connect(menu.start)
    call = sim.place_call("menu")
    sim.advance(60)
    assert call.heard()[-1] == play("goodbye")
    assert call.heard().count(play("noinput")) == 3
    assert call.ended
    assert_clean(sim, d)


def test_menu_to_voicemail(sim, tmp_path, monkeypatch, assert_clean):
    monkeypatch.setattr(voicemail, "RECORDINGS", str(tmp_path))
    d = sim.connect(lambda disp: menu.start(disp))
    call = sim.place_call("menu")
    sim.advance(2)
    call.send_dtmf("3")
    sim.advance(6)                               # greeting + beep
    sim.advance(4)                               # speaks for 4 s
    call.send_dtmf("#")
    sim.advance(10)
    heard = call.heard()
    assert play("vm-greeting") in heard and play("vm-saved") in heard
    assert call.ended
    assert_clean(sim, d)


def test_voicemail_records_and_plays_back(sim, tmp_path, assert_clean):
    d = sim.connect(lambda disp: voicemail.start(disp))
    voicemail_dir = str(tmp_path)
    from yaypm.ivr import route
    route(d, "vm2", lambda leg: voicemail.voicemail(leg, folder=voicemail_dir))
    call = sim.place_call("vm2")
    sim.advance(4.5)                             # greeting (3.45 s) + beep (0.3 s)
    sim.advance(3)
    call.send_dtmf("#")
    sim.advance(10)
    heard = call.heard()
    recorded = [h for h in heard if h.startswith("wave/play/" + voicemail_dir)]
    assert len(recorded) == 1
    assert heard[-2:] == [play("vm-saved"), play("goodbye")]
    assert call.ended
    assert_clean(sim, d)


def test_voicemail_without_a_message(sim, tmp_path, assert_clean):
    from yaypm.ivr import route
    d = sim.connect()
    route(d, "vm", lambda leg: voicemail.voicemail(leg, folder=str(tmp_path)))
    call = sim.place_call("vm")
    sim.advance(4)
    call.send_dtmf("#")
    sim.advance(5)
    assert call.heard()[-2:] == [play("vm-nomsg"), play("goodbye")]
    assert_clean(sim, d)


@pytest.mark.parametrize("behaviour,outcome", [(answer(after=2), "delivered"),
                                               (busy(), "busy"),
                                               (noanswer(), "noanswer")])
def test_reminder_outbound_call(sim, behaviour, outcome, assert_clean):
    bob = sim.endpoint("bob", behaviour)
    d = sim.connect()
    result = defer.ensureDeferred(reminder.remind(d, "sip/" + bob.uri, ring_seconds=10))
    sim.advance(20)
    assert success_result_of(result) == outcome
    if outcome == "delivered":
        assert bob.last.heard() == [play("reminder"), play("reminder"), play("goodbye")]
        assert bob.last.bye_received
    sim.advance(1)
    assert_clean(sim, d)


def test_reminder_callee_hangs_up_early(sim, assert_clean):
    bob = sim.endpoint("bob", answer(hangup_after=1))
    d = sim.connect()
    result = defer.ensureDeferred(reminder.remind(d, "sip/" + bob.uri))
    sim.advance(5)
    assert success_result_of(result) == "hungup"
    assert_clean(sim, d)
