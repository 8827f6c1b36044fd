"""TimerHeap: many leg timers, one clock call."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock

from yaypm.flow import sleep
from yaypm.ivr.switchboard import TimerHeap
from yaypm.testing import failure_result_of, success_result_of


def test_timers_fire_in_order_with_one_clock_call():
    clock = Clock()
    heap = TimerHeap(clock)
    fired = []
    for delay in (5, 1, 3, 1):
        heap.callLater(delay, fired.append, delay)
    assert len(clock.getDelayedCalls()) == 1 and len(heap) == 4
    clock.advance(1)
    assert fired == [1, 1]
    clock.advance(2)
    assert fired == [1, 1, 3]
    clock.advance(2)
    assert fired == [1, 1, 3, 5]
    assert clock.getDelayedCalls() == [] and len(heap) == 0


def test_cancelling_the_last_timer_leaves_nothing_on_the_clock():
    clock = Clock()
    heap = TimerHeap(clock)
    a = heap.callLater(1, lambda: None)
    b = heap.callLater(2, lambda: None)
    a.cancel()
    assert len(clock.getDelayedCalls()) == 1
    b.cancel()
    assert clock.getDelayedCalls() == [] and not b.active()


def test_an_earlier_timer_reschedules_and_errors_are_contained():
    clock = Clock()
    heap = TimerHeap(clock)
    fired = []
    heap.callLater(10, fired.append, "late")
    heap.callLater(1, lambda: 1 / 0)
    heap.callLater(1, fired.append, "early")
    clock.advance(1)
    assert fired == ["early"]
    clock.advance(9)
    assert fired == ["early", "late"]
    assert clock.getDelayedCalls() == []


def test_deferred_timeouts_and_sleeps_on_the_heap():
    clock = Clock()
    heap = TimerHeap(clock)
    d = defer.Deferred().addTimeout(2, heap)
    s = sleep(1, clock=heap)
    clock.advance(1)
    success_result_of(s)
    clock.advance(1)
    failure_result_of(d, defer.TimeoutError)
    assert clock.getDelayedCalls() == []
