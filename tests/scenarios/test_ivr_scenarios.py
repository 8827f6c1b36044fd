"""IVR scenarios written once and run on two targets: the simulator and the real engine.

Each scenario returns what it observed (SIP outcomes of callers and callees, digits, what the
app saw, how legs ended) and is compared with one expected value, the same for both targets:
a simulator that drifts from Yate fails here (issue 5).  The real-engine runs are marked
``yate``; see ``scenario_targets.py`` for the two targets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest
import pytest_twisted

from scenario_targets import CalleeOutcome, CallerOutcome, SimTarget, YateTarget
from yaypm.ivr import CallEnded, DialError, dial, route
from yaypm.prompts import prompt


class AnyOf:
    """Equal to any of ``values``: for what the real engine does not decide the same way
    every time."""

    def __init__(self, *values: Any) -> None:
        self.values = values

    def __eq__(self, other: object) -> bool:
        return other in self.values

    def __repr__(self) -> str:
        return f"AnyOf{self.values!r}"


# The 180 of dumb/'s autoring and an app's immediate answer race on the real engine (Yate's
# worker threads): the caller gets 180 then 200, or the 200 alone.  The simulator always
# sends the 180 first.  An app that waits before answering always gets the 180.
RINGING = AnyOf((180,), ())
RINGING_THEN_183 = AnyOf((180, 183), (183,))

WELCOME = prompt("welcome")    # 1.0 s
MENU = prompt("menu")          # 5.3 s
ONE = prompt("one")            # 0.4 s


@pytest.fixture(params=["sim", pytest.param("yate", marks=pytest.mark.yate)])
def target(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sim":
        t: Any = SimTarget(request.getfixturevalue("sim"), tmp_path)
    else:
        t = YateTarget(request.getfixturevalue("yate"), tmp_path)
    try:
        yield t
    finally:
        t.close()


def run(coro_fn):
    """The test body: a scenario run on the target, compared with its expectation."""
    return pytest_twisted.ensureDeferred(coro_fn)


class Recorder:
    """What the apps saw, in order, and the legs they had."""

    def __init__(self) -> None:
        self.seen: List[Any] = []
        self.legs: List[Any] = []

    def app(self, body):
        async def app(leg):
            self.legs.append(leg)
            try:
                await body(leg)
            except CallEnded as e:
                self.seen.append(("CallEnded", e.reason))
                raise
        return app

    def ends(self) -> List[str]:
        return [leg.end_reason for leg in self.legs]


# ------------------------------------------------------------------------------------------
# 1. answer, prompt, hang up
# ------------------------------------------------------------------------------------------

@run
async def test_answer_prompt_hangup(target):
    d = await target.connect()
    rec = Recorder()

    async def body(leg):
        await leg.answer()
        rec.seen.append(("answered", leg.state))
        rec.seen.append(("played", await leg.play(WELCOME)))
    route(d, "7801", rec.app(body))
    caller = await target.place_call("7801")
    out = await caller.outcome()
    await target.clean(d)
    assert {"caller": out, "app": rec.seen, "ends": rec.ends()} == {
        "caller": CallerOutcome(200, RINGING, bye_received=True, bye_sent=False),
        "app": [("answered", "answered"), ("played", None)],
        "ends": ["normal"]}


# ------------------------------------------------------------------------------------------
# 2. DTMF by SIP INFO, RFC 2833, and both in one entry
# ------------------------------------------------------------------------------------------

DTMF = {"info": "42#", "rfc2833": "42#", "mixed": [("info", "4"), ("rfc2833", "2"), ("info", "#")]}


@pytest.mark.parametrize("method", sorted(DTMF))
@run
async def test_digits(target, method):
    d = await target.connect()
    rec = Recorder()

    async def body(leg):
        await leg.answer()
        rec.seen.append(("digits", await leg.digits(timeout=5, interdigit=3)))
    route(d, "7802", rec.app(body))
    caller = await target.place_call("7802", dtmf=DTMF[method],
                                     dtmf_method="info" if method == "mixed" else method)
    out = await caller.outcome()
    await target.clean(d)
    assert {"caller": out, "app": rec.seen} == {
        "caller": CallerOutcome(200, RINGING, bye_received=True, bye_sent=False),
        "app": [("digits", "42")]}


# ------------------------------------------------------------------------------------------
# 3. rejecting: in call.route (404, 486) and after routing (486)
# ------------------------------------------------------------------------------------------

REJECTS = {
    "404": (404, False, CallerOutcome(404, (), False, False), "noroute"),
    "486": (486, False, CallerOutcome(486, (), False, False), "busy"),
    "486-after-routing": (486, True, CallerOutcome(486, (180,), False, False), "busy"),
}


@pytest.mark.parametrize("case", list(REJECTS))
@run
async def test_reject(target, case):
    code, later, expected, reason = REJECTS[case]
    d = await target.connect()
    rec = Recorder()

    async def body(leg):
        if later:
            await leg.sleep(0.5)
        rec.seen.append(("rejected", await leg.reject(code)))
    route(d, "7803", rec.app(body))
    caller = await target.place_call("7803")
    out = await caller.outcome()
    await target.clean(d)
    assert {"caller": out, "app": rec.seen, "ends": rec.ends()} == {
        "caller": expected, "app": [("rejected", reason)], "ends": [reason]}


# ------------------------------------------------------------------------------------------
# 4. outbound: answered, busy, not answered in time
# ------------------------------------------------------------------------------------------

OUTBOUND: Dict[str, Any] = {
    "answer": (("answered", "answered", "normal"), CalleeOutcome(200, True, False)),
    "busy": (("BusyError", 486, "busy"), CalleeOutcome(486, False, False)),
    # Yate cancels the INVITE, then sends a BYE on the early dialog (trace C2)
    "noanswer": (("NoAnswerError", None, "noanswer"), CalleeOutcome(487, True, True)),
}


@pytest.mark.parametrize("behaviour", list(OUTBOUND))
@run
async def test_outbound(target, behaviour):
    d = await target.connect()
    callee = await target.endpoint("bob", behaviour)
    try:
        leg = await target.wait(dial(d, callee.callto, caller="ivr", timeout=3))
        state = leg.state
        await target.wait(leg.play(ONE))
        result = ("answered", state, await target.wait(leg.hangup()))
    except DialError as e:
        result = (type(e).__name__, e.code, e.reason)
    out = await callee.outcome()
    await target.clean(d)
    assert (result, out) == OUTBOUND[behaviour]


# ------------------------------------------------------------------------------------------
# 5. the caller hangs up during a prompt
# ------------------------------------------------------------------------------------------

@run
async def test_caller_hangs_up_mid_prompt(target):
    d = await target.connect()
    rec = Recorder()

    async def body(leg):
        await leg.answer()
        await leg.play(MENU)
        rec.seen.append("prompt ended")          # not reached
    route(d, "7805", rec.app(body))
    caller = await target.place_call("7805", hangup_after=1.0)
    out = await caller.outcome()
    await target.clean(d)
    assert {"caller": out, "app": rec.seen, "ends": rec.ends()} == {
        "caller": CallerOutcome(200, RINGING, bye_received=False, bye_sent=True),
        "app": [("CallEnded", "hangup")], "ends": ["hangup"]}


# ------------------------------------------------------------------------------------------
# 6. bridge, 7. conference, 8. early media
# ------------------------------------------------------------------------------------------

@run
async def test_bridge(target):
    d = await target.connect()
    rec = Recorder()
    callee = await target.endpoint("bob", "answer")

    async def body(leg):
        await leg.answer()
        other = await leg.dial(callee.callto, caller=leg.caller, timeout=10)
        rec.legs.append(other)
        await leg.bridge(other)
        rec.seen.append((leg.state, other.state, leg.peer == other.id, other.peer == leg.id))
        await leg.sleep(1.0)
    route(d, "7806", rec.app(body))
    caller = await target.place_call("7806")
    out, callee_out = await caller.outcome(), await callee.outcome()
    await target.clean(d)
    assert {"caller": out, "callee": callee_out, "app": rec.seen, "ends": rec.ends()} == {
        "caller": CallerOutcome(200, RINGING, bye_received=True, bye_sent=False),
        "callee": CalleeOutcome(200, bye_received=True, cancel_received=False),
        "app": [("bridged", "bridged", True, True)],
        # Yate hands our drop reason to the bridged peer (chan.disconnected reason=normal)
        "ends": ["normal", "normal"]}


@run
async def test_conference(target):
    d = await target.connect()
    rec = Recorder()
    callee = await target.endpoint("bob", "answer")

    async def body(leg):
        await leg.answer()
        other = await leg.dial(callee.callto, caller=leg.caller, timeout=10)
        rec.legs.append(other)
        rec.seen.append(tuple(await leg.join("scenario-room")))
        rec.seen.append(tuple(await other.join("scenario-room")))
        rec.seen.append((leg.state, other.state))
        await leg.sleep(1.0)
    route(d, "7807", rec.app(body))
    caller = await target.place_call("7807")
    out, callee_out = await caller.outcome(), await callee.outcome()
    await target.clean(d)
    assert {"caller": out, "callee": callee_out, "app": rec.seen, "ends": rec.ends()} == {
        "caller": CallerOutcome(200, RINGING, bye_received=True, bye_sent=False),
        "callee": CalleeOutcome(200, bye_received=True, cancel_received=False),
        "app": [("conf/scenario-room", True, 1), ("conf/scenario-room", False, 2),
                ("conference", "conference")],
        "ends": ["normal", "normal"]}


@run
async def test_early_media_then_answer(target):
    d = await target.connect()
    rec = Recorder()

    async def body(leg):
        await leg.progress()
        rec.seen.append(("progress", leg.state, leg.is_answered))
        rec.seen.append(("played", await leg.play(ONE)))
        await leg.answer()
        rec.seen.append(("answered", leg.state))
    route(d, "7808", rec.app(body))
    caller = await target.place_call("7808")
    out = await caller.outcome()
    await target.clean(d)
    assert {"caller": out, "app": rec.seen, "ends": rec.ends()} == {
        "caller": CallerOutcome(200, RINGING_THEN_183, bye_received=True, bye_sent=False),
        "app": [("progress", "progressing", False), ("played", None), ("answered", "answered")],
        "ends": ["normal"]}


@run
async def test_leave_a_conference_back_to_the_ivr(target):
    d = await target.connect()
    rec = Recorder()

    async def body(leg):
        await leg.answer()
        rec.seen.append(tuple(await leg.join("solo-room")))
        await leg.sleep(0.5)
        await leg.leave()
        rec.seen.append((leg.state, leg.room))
        rec.seen.append(("played", await leg.play(ONE)))
    route(d, "7809", rec.app(body))
    caller = await target.place_call("7809")
    out = await caller.outcome()
    await target.clean(d)
    assert {"caller": out, "app": rec.seen, "ends": rec.ends()} == {
        "caller": CallerOutcome(200, RINGING, bye_received=True, bye_sent=False),
        "app": [("conf/solo-room", True, 1), ("answered", None), ("played", None)],
        "ends": ["normal"]}
