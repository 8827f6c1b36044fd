"""Random mixes of call events must never crash the simulator or leave anything behind."""

from __future__ import annotations

import random
from typing import Any, List

import pytest
from twisted.internet.task import Clock

from yaypm.testing.simulator import Simulator, answer, busy, noanswer, reject


def _app(d: Any, rng: random.Random, dumbs: List[str]) -> None:
    def route(m: Any) -> None:
        choice = rng.random()
        if choice < 0.6:
            m.ret(True, "dumb/")
        elif choice < 0.7:
            m.ret(True, "tone/busy")
        elif choice < 0.8:
            m.ret(True, "fork sip/sip:a@h:5080 sip/sip:b@h:5080")
        elif choice < 0.9:
            m["error"] = "busy"
            m.ret(True, "-")
        else:
            m.ret(False)

    def executed(m: Any) -> None:
        if m.get("callto") == "dumb/":
            dumb = m["peerid"]
            dumbs.append(dumb)
            if rng.random() < 0.8:
                d.msg("chan.masquerade", {"message": "call.answered", "id": dumb}).dispatch()
            d.msg("chan.masquerade", {"message": "chan.attach", "id": dumb,
                                      "source": "wave/play/p.slin", "notify": dumb}).dispatch()
    d.handler("call.route", route, priority=50)
    d.handler("chan.notify", lambda m: True, priority=50)
    d.handler("chan.dtmf", lambda m: rng.random() < 0.5, priority=50)
    d.watcher("call.execute", executed)


@pytest.fixture
def failures() -> Any:
    """Failures logged anywhere (a simulator job or handler that raised is only logged)."""
    from twisted.logger import globalLogPublisher
    seen: List[Any] = []

    def observer(event: Any) -> None:
        if event.get("log_failure") is not None:
            seen.append(event["log_failure"])
    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


@pytest.mark.parametrize("seed", range(25))
def test_random_call_mix_leaves_nothing_behind(seed: int, failures: List[Any]) -> None:
    rng = random.Random(seed)
    sim = Simulator(Clock(), durations={"p.slin": 0.7})
    sim.endpoint("a", rng.choice([answer(after=0.5), busy(), noanswer(), reject(603)]))
    sim.endpoint("b", rng.choice([answer(after=1.5), busy(after=0.2), noanswer()]))
    sim.endpoint("c", rng.choice([answer(after=0.3), busy(), reject(480)]))
    dumbs: List[str] = []
    d = sim.connect(lambda d: _app(d, rng, dumbs))
    calls = []
    for _ in range(60):
        r = rng.random()
        if r < 0.25:
            calls.append(sim.place_call(str(rng.randint(100, 110)), dtmf_method=rng.choice(
                ["info", "rfc2833"])))
        elif r < 0.35:
            d.msg("call.execute", {"callto": "dumb/", "target": "c", "maxcall": "3000",
                                   "direct": "sip/sip:c@h:5080"}).dispatch()
        elif r < 0.5 and calls:
            c = rng.choice(calls)
            if not c.ended and c.is_answered:
                c.send_dtmf("12", interval=0.1)
        elif r < 0.6 and calls:
            rng.choice(calls).hangup()
        elif r < 0.7 and dumbs:
            d.msg("call.drop", {"id": rng.choice(dumbs), "reason": "x"}).dispatch()
        elif r < 0.8 and len(calls) >= 2:
            a, b = rng.sample(calls, 2)
            d.msg("chan.connect", {"id": a.id, "targetid": b.id}).dispatch()
        elif r < 0.9 and calls:
            c = rng.choice(calls)
            d.msg("chan.masquerade", {"message": "call.execute", "id": c.id,
                                      "callto": "conf/r" + str(rng.randint(1, 2))}).dispatch()
        sim.advance(rng.random())
    for c in calls:
        c.hangup()
    for ep in sim.endpoints.values():
        for leg in ep.legs:
            leg.hangup()
    sim.advance(40)
    assert sim.leaks() == {}
    assert sim.clock.getDelayedCalls() == []
    assert d.pending_count() == 0
    assert failures == [], failures[0].getTraceback()
    assert len(calls) > 5 and sim.modules.sip.total > len(calls)
    sim.close()
