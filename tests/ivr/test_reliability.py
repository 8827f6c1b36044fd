"""Under load: 1,000 callers hanging up at random points of a rich flow leave nothing behind,
and 2,000 concurrent legs run on one dispatcher."""

from __future__ import annotations

import random


from yaypm.flow import XOR
from yaypm.ivr import (BridgeError, CallEnded, DialError, DigitTimeoutError, route,
                       switchboard)
from yaypm.prompts import digit_prompt, prompt
from yaypm.testing.simulator import answer, busy, noanswer


MENU = prompt("menu")
BEEP = prompt("beep")


def rich_flow(outcomes, rec_dir):
    """Menu -> (1) dial and bridge, (2) record, (3) conference, (4) tone + key echo,
    anything else: a prompt and a DTMF stream."""

    async def app(leg):
        try:
            await leg.progress()
            await leg.answer()
            for _ in range(2):
                try:
                    choice = await leg.digits(count=1, prompt=MENU, timeout=2)
                    break
                except DigitTimeoutError:
                    await leg.play(BEEP)
            else:
                outcomes["timeout"] += 1
                return
            if choice == "1":
                target = "sip/sip:%s@127.0.0.1:5080" % leg.caller_target
                try:
                    callee = await XOR(leg.dial(target, timeout=3), leg.ended)
                except DialError:
                    outcomes["dial-failed"] += 1
                    await leg.play(BEEP)
                    return
                index, callee = callee
                if index == 1:
                    return
                try:
                    await leg.bridge(callee)
                except (BridgeError, CallEnded):
                    await callee.hangup()
                    raise
                await XOR(leg.ended, callee.ended)
                outcomes["bridged"] += 1
            elif choice == "2":
                result = await leg.record(f"{rec_dir}/{leg.id.replace('/', '-')}.au",
                                          max_seconds=3)
                outcomes["recorded-" + result.reason] += 1
                await leg.play(BEEP)
            elif choice == "3":
                await leg.join("room%d" % (hash(leg.caller) % 7), lonely=True)
                await leg.sleep(2)
                await leg.leave()
                outcomes["conference"] += 1
            elif choice == "4":
                await leg.tone("ring", duration=1)
                async for key in leg.dtmf():
                    await leg.play(digit_prompt(key))
            else:
                async for key in leg.dtmf():
                    if key == "#":
                        break
                outcomes["stream"] += 1
        except CallEnded:
            outcomes["ended"] += 1
            raise
    return app


def test_thousand_callers_hang_up_at_random_points(sim, tmp_path, assert_clean):
    rng = random.Random(20240606)
    outcomes = defaultdict_int()
    sim.endpoint("ok", answer(after=0.5))
    sim.endpoint("busy", busy(after=0.3))
    sim.endpoint("slow", noanswer())
    d = sim.connect()
    app = rich_flow(outcomes, str(tmp_path))

    def with_target(leg):
        leg.caller_target = rng.choice(["ok", "ok", "busy", "slow"])
        return app(leg)
    route(d, "100", with_target)
    calls = []
    for i in range(1000):
        call = sim.place_call("100", caller=f"c{i}",
                              dtmf_method=rng.choice(["info", "rfc2833"]))
        calls.append(call)
        keys = rng.choice(["1", "2", "3", "4", "5", "", "9#", "42#"])
        if keys:
            at = rng.uniform(0.0, 4.0)
            sim.clock.callLater(at, lambda c=call, k=keys: c.ended or c.send_dtmf(k, 0.3))
        luck = rng.random()
        if luck < 0.03:
            call.hangup()                        # gone before the app ever got the dumb id
        elif luck < 0.85:
            sim.clock.callLater(rng.uniform(0.0, 12.0), lambda c=call: c.hangup())
        sim.advance(0.01)
    sim.advance(60)
    # Callers that never hang up and sit in an endless key echo or a bridge leave now.
    patient = [c for c in calls if not c.ended]
    assert len(patient) < 150
    for c in patient:
        c.hangup()
    sim.advance(5)
    # Everyone left one way or another; nothing of theirs remains anywhere.
    assert all(c.ended for c in calls)
    assert outcomes["ended"] > 300 and outcomes["bridged"] > 10
    assert sum(outcomes.values()) > 0
    board = switchboard(d)
    assert board.stats["app_errors"] == 0
    assert board.stats["routed"] == 1000
    assert_clean(sim, d)
    # Closing the switchboard leaves no handler or watcher on the dispatcher.
    board.close()
    assert d._handlers == {} and d._watchers == {} and d.waiting_count() == 0


def test_two_thousand_concurrent_legs(sim_factory, assert_clean):
    sim = sim_factory(wire_log=False)
    d = sim.connect()
    done = []

    async def app(leg):
        await leg.answer()
        entry = await leg.digits(count=2, prompt=MENU, timeout=30)
        await leg.play(digit_prompt(entry[0]))
        done.append(entry)

    route(d, "100", app)
    calls = [sim.place_call("100", caller=f"c{i}") for i in range(2000)]
    sim.advance(1)
    board = switchboard(d)
    assert len(board) == 2000
    # One handler per message name, whatever the number of legs.
    assert d.waiting_count() == 0
    assert len(board.legs) == 4000 and len(board._tags) == 2000
    for i, call in enumerate(calls):
        call.send_dtmf("%02d" % (i % 100), interval=0.1)
    sim.advance(3)
    assert len(done) == 2000
    sim.advance(5)
    assert all(c.ended for c in calls)
    assert_clean(sim, d)


class defaultdict_int(dict):
    def __missing__(self, key):
        return 0
