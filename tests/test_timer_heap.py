"""yaypm.timers.TimerHeap: the two ways a clock tick's due timers run."""

from twisted.internet.task import Clock

from yaypm.timers import TimerHeap


def _cancel_the_other(heap_kw):
    clock = Clock()
    heap = TimerHeap(clock, **heap_kw)
    fired = []
    second = None

    def first():
        fired.append("first")
        second.cancel()
    heap.callLater(1, first)
    second = heap.callLater(1, fired.append, "second")
    clock.advance(1)
    assert clock.getDelayedCalls() == [] and len(heap) == 0
    return fired


def test_by_default_a_timer_cancelled_in_the_same_tick_does_not_run():
    assert _cancel_the_other({}) == ["first"]


def test_batch_runs_every_timer_due_at_the_tick_through_the_runner():
    ran = []

    def run(f, *args):
        ran.append(f)
        f(*args)
    assert _cancel_the_other({"run": run, "batch": True}) == ["first", "second"]
    assert len(ran) == 2


def test_slack_counts_a_timer_due_within_float_drift():
    for slack, expected in ((1e-9, [1, 2]), (0.0, [1])):
        clock = Clock()
        heap = TimerHeap(clock, slack=slack)
        fired = []
        heap.callLater(0.3, fired.append, 1)
        heap.callLater(0.1 + 0.2, fired.append, 2)     # 0.30000000000000004
        clock.advance(0.3)
        assert fired == expected, slack
