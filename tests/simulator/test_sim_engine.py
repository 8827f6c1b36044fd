"""The engine core: handler order, filters, renaming, broadcasts, deferred answers, timers."""

from __future__ import annotations

from typing import List

from twisted.internet.task import Clock

from yaypm.testing.simulator.engine import Engine, Handler, Pending, SimMessage, run_steps


def _engine() -> Engine:
    return Engine(Clock(), start_time=1_700_000_000)


def _h(eng: Engine, name: str, prio: int, result: object, seen: List[str], tag: str,
       **kw: object) -> Handler:
    def cb(msg: SimMessage) -> object:
        seen.append(tag)
        return result() if callable(result) else result
    return eng.install(Handler(name, prio, cb, track=f"{tag}:{prio}", **kw))  # type: ignore


def test_handlers_run_by_priority_and_track_themselves() -> None:
    eng = _engine()
    seen: List[str] = []
    _h(eng, "x", 100, False, seen, "late")
    _h(eng, "x", 10, False, seen, "early")
    _h(eng, "x", 50, True, seen, "mid")
    _h(eng, "x", 60, True, seen, "never")
    msg = SimMessage("x", [("a", "1")])
    p = eng.dispatch(msg)
    assert p.done and p.value is True
    assert seen == ["early", "mid"]
    assert msg.pairs() == [("a", "1"), ("handlers", "early:10,mid:50")]


def test_equal_priorities_keep_installation_order() -> None:
    eng = _engine()
    seen: List[str] = []
    for tag in ("a", "b", "c"):
        _h(eng, "x", 90, False, seen, tag)
    eng.dispatch(SimMessage("x"))
    assert seen == ["a", "b", "c"]


def test_filter_is_exact_and_absent_compares_as_empty() -> None:
    eng = _engine()
    seen: List[str] = []
    _h(eng, "x", 50, True, seen, "f", filter_name="called", filter_value="100")
    _h(eng, "x", 60, True, seen, "empty", filter_name="called", filter_value="")
    assert eng.dispatch(SimMessage("x", [("called", "1000")])).value is False
    assert eng.dispatch(SimMessage("x", [("called", "100")])).value is True
    assert eng.dispatch(SimMessage("x")).value is True
    assert seen == ["f", "empty"]


def test_renamed_message_continues_with_handlers_of_the_new_name_after_the_current_one() -> None:
    eng = _engine()
    seen: List[str] = []

    def rename(msg: SimMessage) -> bool:
        seen.append("rename")
        msg.name = "y"
        return False
    eng.install(Handler("x", 50, rename, track="r:50"))
    _h(eng, "y", 40, True, seen, "y-before")         # lower priority: not revisited
    _h(eng, "x", 60, True, seen, "x-after")          # old name: not called any more
    _h(eng, "y", 70, True, seen, "y-after")
    msg = SimMessage("x")
    assert eng.dispatch(msg).value is True
    assert seen == ["rename", "y-after"]
    assert msg.get("handlers") == "r:50,y-after:70"


def test_broadcast_runs_every_handler_and_ors_the_results() -> None:
    eng = _engine()
    seen: List[str] = []
    _h(eng, "engine.timer", 10, True, seen, "a")
    _h(eng, "engine.timer", 20, False, seen, "b")
    assert eng.dispatch(SimMessage("engine.timer")).value is True
    assert seen == ["a", "b"]


def test_a_handler_may_answer_later() -> None:
    eng = _engine()
    later = Pending()
    seen: List[str] = []
    eng.install(Handler("x", 10, lambda m: later))
    _h(eng, "x", 20, True, seen, "next")
    result = eng.dispatch(SimMessage("x"))
    assert not result.done and seen == []
    later.resolve(False)                       # the first handler declines: the walk goes on
    assert result.done and result.value is True and seen == ["next"]


def test_watchers_see_the_final_state_then_the_message_is_released() -> None:
    eng = _engine()
    order: List[str] = []
    eng.install(Handler("x", 10, lambda m: (setattr(m, "retvalue", "done"), True)[1]))
    eng.posthooks.append(lambda m, handled: order.append(f"watch {m.retvalue} {handled}"))
    msg = SimMessage("x")
    msg.when_dispatched(lambda m, h: order.append("dispatched"))
    msg.when_released(lambda m, h: order.append("released"))
    eng.dispatch(msg)
    assert order == ["dispatched", "watch done True", "released"]


def test_jobs_run_in_order_without_reentering() -> None:
    eng = _engine()
    order: List[str] = []

    def outer() -> None:
        order.append("outer start")
        eng.run(order.append, "inner")             # queued, not run inside outer
        order.append("outer end")
    eng.run(outer)
    assert order == ["outer start", "outer end", "inner"]


def test_enqueue_runs_after_the_current_work() -> None:
    eng = _engine()
    seen: List[str] = []
    _h(eng, "q", 10, False, seen, "q")

    def job() -> None:
        eng.enqueue(SimMessage("q"))
        seen.append("job done")
    eng.run(job)
    assert seen == ["job done", "q"]


def test_step_generators_resume_with_pending_values() -> None:
    p = Pending()

    def steps():
        a = yield Pending.resolved(1)
        b = yield p
        return a + b
    result = run_steps(steps())
    assert not result.done
    p.resolve(41)
    assert result.value == 42


def test_engine_timers_use_one_clock_call_and_leave_nothing_when_cancelled() -> None:
    clock = Clock()
    eng = Engine(clock)
    fired: List[int] = []
    timers = [eng.call_later(i, fired.append, i) for i in (3, 1, 2)]
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(1)
    assert fired == [1]
    clock.advance(1)
    assert fired == [1, 2]
    timers[0].cancel()
    assert clock.getDelayedCalls() == []
    clock.advance(5)
    assert fired == [1, 2]


def test_message_times_follow_the_clock_from_the_start_time() -> None:
    clock = Clock()
    eng = Engine(clock, start_time=1_795_369_124.5)
    assert eng.runid == "1795369124"
    clock.advance(10)
    assert eng.now_sec() == 1_795_369_134
