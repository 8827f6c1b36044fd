"""yaypm.flow: sleep, XOR/OR, timeout, go/getResult, async flows — on a task.Clock."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from yaypm import flow
from yaypm.dispatcher import AbandonedException
from yaypm.flow import OR, XOR, getResult, go, sleep, timeout
from yaypm.testing import assert_no_result, failure_result_of, success_result_of


class Boom(Exception):
    pass


def tracked() -> tuple[Deferred, list]:
    """A Deferred that records whether it was cancelled."""
    cancelled: list = []
    return Deferred(lambda d: cancelled.append(True)), cancelled


# -- sleep ------------------------------------------------------------------------------------

def test_sleep_fires_after_its_time_and_leaves_no_delayed_call():
    clock = Clock()
    d = sleep(2.5, clock=clock)
    clock.advance(2.4)
    assert_no_result(d)
    clock.advance(0.1)
    assert success_result_of(d) is None
    assert clock.getDelayedCalls() == []


def test_cancelled_sleep_removes_its_delayed_call():
    clock = Clock()
    d = sleep(10, clock=clock)
    d.cancel()
    failure_result_of(d, defer.CancelledError)
    assert clock.getDelayedCalls() == []


def test_sleep_until_abandons_with_the_cause_and_unhooks_from_until():
    clock = Clock()
    until: Deferred = Deferred()
    d = sleep(10, until=until, clock=clock)
    until.callback("hangup")
    f = failure_result_of(d, AbandonedException)
    assert f.value.cause == "hangup"
    assert clock.getDelayedCalls() == []


def test_sleep_that_finishes_first_unhooks_from_a_long_lived_until():
    clock = Clock()
    until: Deferred = Deferred()
    for _ in range(100):
        sleep(1, until=until, clock=clock)
        clock.advance(1)
    hub = flow._hubs[until]
    assert hub.abandons == {}
    until.callback(None)             # nothing left to abandon


def test_sleep_until_failure_carries_the_exception_as_cause():
    clock = Clock()
    until: Deferred = Deferred()
    d = sleep(10, until=until, clock=clock)
    until.errback(Boom("gone"))
    assert isinstance(failure_result_of(d, AbandonedException).value.cause, Boom)
    until.addErrback(lambda f: None)


# -- timeout ------------------------------------------------------------------------------------

def test_timeout_errbacks_timeout_error_and_cancels_the_operation():
    clock = Clock()
    op, cancelled = tracked()
    d = timeout(op, 5, clock)
    clock.advance(4.9)
    assert_no_result(d)
    clock.advance(0.1)
    failure_result_of(d, defer.TimeoutError)
    assert cancelled == [True]
    assert clock.getDelayedCalls() == []


def test_timeout_not_reached_leaves_nothing_on_the_clock():
    clock = Clock()
    op: Deferred = Deferred()
    d = timeout(op, 5, clock)
    op.callback("done")
    assert success_result_of(d) == "done"
    assert clock.getDelayedCalls() == []


# -- XOR ------------------------------------------------------------------------------------------

def test_xor_first_success_wins_and_cancels_the_rest():
    clock = Clock()
    a, a_cancelled = tracked()
    s = sleep(5, clock=clock)
    d = XOR(a, s)
    a.callback("key 5")
    assert success_result_of(d) == (0, "key 5")
    assert clock.getDelayedCalls() == []
    assert a_cancelled == []


def test_xor_sleep_wins_as_a_timeout():
    clock = Clock()
    a, a_cancelled = tracked()
    d = XOR(a, sleep(5, clock=clock))
    clock.advance(5)
    assert success_result_of(d) == (1, None)
    assert a_cancelled == [True]
    assert clock.getDelayedCalls() == []


def test_xor_first_failure_wins_unwrapped_and_cancels_the_rest():
    clock = Clock()
    a: Deferred = Deferred()
    d = XOR(a, sleep(5, clock=clock))
    a.errback(Boom("call ended"))
    f = failure_result_of(d, Boom)
    assert str(f.value) == "call ended"
    assert clock.getDelayedCalls() == []


def test_cancelling_xor_cancels_every_input():
    clock = Clock()
    a, a_cancelled = tracked()
    d = XOR(a, sleep(5, clock=clock), sleep(7, clock=clock))
    d.cancel()
    failure_result_of(d, defer.CancelledError)
    assert a_cancelled == [True]
    assert clock.getDelayedCalls() == []


def test_xor_accepts_coroutines_and_a_list():
    clock = Clock()

    async def slow():
        await sleep(3, clock=clock)
        return "slow"

    d = XOR([Deferred.fromCoroutine(slow()), sleep(1, clock=clock)])
    clock.advance(1)
    assert success_result_of(d) == (1, None)
    assert clock.getDelayedCalls() == []


def test_xor_of_already_fired_deferred():
    clock = Clock()
    d = XOR(defer.succeed(7), sleep(1, clock=clock))
    assert success_result_of(d) == (0, 7)
    assert clock.getDelayedCalls() == []


def test_race_needs_an_input():
    with pytest.raises(ValueError):
        XOR()


# -- OR -------------------------------------------------------------------------------------------

def test_or_first_success_wins_and_the_others_go_on():
    clock = Clock()
    a, a_cancelled = tracked()
    s = sleep(5, clock=clock)
    d = OR(a, s)
    clock.advance(5)
    assert success_result_of(d) == (1, None)
    assert a_cancelled == []
    a.callback("later")
    assert success_result_of(a) == "later"     # still usable by its owner


def test_patient_or_waits_for_every_failure():
    a: Deferred = Deferred()
    b: Deferred = Deferred()
    d = OR(a, b)
    a.errback(Boom("first"))
    assert_no_result(d)
    b.errback(Boom("second"))
    assert str(failure_result_of(d, Boom).value) == "first"


def test_impatient_or_fails_at_the_first_failure():
    a: Deferred = Deferred()
    b: Deferred = Deferred()
    d = OR(a, b, patient=False)
    a.errback(Boom("first"))
    failure_result_of(d, Boom)
    b.callback(1)


def test_patient_or_ignores_a_failure_before_a_success():
    a: Deferred = Deferred()
    b: Deferred = Deferred()
    d = OR(a, b)
    a.errback(Boom())
    b.callback("ok")
    assert success_result_of(d) == (1, "ok")


def test_cancelling_or_cancels_pending_inputs():
    clock = Clock()
    d = OR(sleep(1, clock=clock), sleep(2, clock=clock))
    d.cancel()
    failure_result_of(d, defer.CancelledError)
    assert clock.getDelayedCalls() == []


# -- go / getResult ----------------------------------------------------------------------------

def test_go_classic_yield_then_get_result():
    clock = Clock()
    seen = []

    def classic():
        yield sleep(1, clock=clock)
        seen.append(getResult())
        d: Deferred = Deferred()
        clock.callLater(1, d.callback, "answered")
        yield d
        seen.append(getResult())
        yield "done"                          # a plain value ends the flow with it
        seen.append("not reached")

    d = go(classic())
    assert_no_result(d)
    clock.advance(1)
    clock.advance(1)
    assert success_result_of(d) == "done"
    assert seen == [None, "answered"]


def test_go_failure_raised_by_get_result_can_be_caught():
    def classic():
        yield defer.fail(Boom("busy"))
        try:
            getResult()
        except Boom as e:
            return f"caught {e}"

    assert success_result_of(go(classic())) == "caught busy"


def test_go_send_style_and_return_value():
    def modern():
        x = yield defer.succeed(2)
        y = yield defer.succeed(3)
        return x * y

    assert success_result_of(go(modern())) == 6


def test_go_exception_fails_the_flow():
    def bad():
        yield defer.succeed(1)
        raise Boom("app bug")

    failure_result_of(go(bad()), Boom)


def test_go_unread_failure_is_thrown_at_the_next_yield():
    steps = []

    def careless():
        while True:                               # would spin forever on a dead call
            steps.append(1)
            yield defer.fail(Boom("call ended"))

    failure_result_of(go(careless()), Boom)
    assert steps == [1, 1]                        # thrown in at the second yield


def test_go_unread_failure_at_the_end_fails_the_flow():
    def careless():
        yield defer.fail(Boom("lost"))

    failure_result_of(go(careless()), Boom)


def test_cancelling_go_cancels_what_it_waits_on():
    clock = Clock()
    cleaned = []

    def waiting():
        try:
            yield sleep(30, clock=clock)
            getResult()
        finally:
            cleaned.append(True)

    d = go(waiting())
    d.cancel()
    failure_result_of(d, defer.CancelledError)
    assert cleaned == [True]
    assert clock.getDelayedCalls() == []


def test_go_many_already_fired_steps_do_not_recurse():
    def many():
        total = 0
        for i in range(5000):
            yield defer.succeed(i)
            total += getResult()
        return total

    assert success_result_of(go(many())) == sum(range(5000))


def test_get_result_belongs_to_the_running_flow():
    """A step that fires another flow's Deferred must not change what getResult() returns."""
    trigger: Deferred = Deferred()
    seen = []

    def other():
        yield trigger
        seen.append(("other", getResult()))

    def main():
        yield defer.succeed("mine")
        trigger.callback("theirs")            # runs other's step synchronously
        seen.append(("main", getResult()))

    go(other())
    success_result_of(go(main()))
    assert seen == [("other", "theirs"), ("main", "mine")]


def test_go_with_sub_flows_and_plain_values():
    def sub():
        yield defer.succeed(1)
        return 41

    def main():
        x = yield sub()
        return x + 1

    assert success_result_of(go(main())) == 42
    assert success_result_of(go(5)) == 5


# -- async def ----------------------------------------------------------------------------------

def test_async_flow_cancel_runs_finally_and_clears_the_clock():
    clock = Clock()
    cleaned = []

    async def ivr():
        try:
            await XOR(sleep(10, clock=clock), sleep(20, clock=clock))
        finally:
            cleaned.append(True)

    d = flow.run(ivr)
    assert len(clock.getDelayedCalls()) == 2
    d.cancel()
    failure_result_of(d, defer.CancelledError)
    assert cleaned == [True]
    assert clock.getDelayedCalls() == []


def test_run_adapts_plain_functions_and_exceptions():
    assert success_result_of(flow.run(lambda x: x + 1, 1)) == 2

    def bad():
        raise Boom()

    failure_result_of(flow.run(bad), Boom)

    def gen():
        yield defer.succeed(1)
        return getResult()

    assert success_result_of(flow.run(gen)) == 1
