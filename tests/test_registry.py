"""The call registry: active/finished legs, attributes, bounded history, listeners."""

from twisted.internet.task import Clock

from yaypm.registry import CallRegistry


def test_start_set_end_and_queries():
    clock = Clock()
    reg = CallRegistry(clock)
    cid = reg.start(app="quizconnect", dir="in", **{"from": "alice", "to": "35"})
    reg.set(cid, dsm_state="WAIT_CALLEE")
    clock.advance(3)
    assert reg.list_active() == [cid]
    assert reg.attribute("dsm_state", reg.active.values()) == [[cid, "WAIT_CALLEE"]]
    assert reg.get(cid).as_dict(clock.seconds())["age"] == 3
    assert reg.count_by("app") == {"quizconnect": 1}
    reg.end(cid, "answered")
    assert reg.list_active() == [] and reg.list_finished() == [cid]
    assert reg.ended_total == {"answered": 1}
    assert reg.get(cid).as_dict()["outcome"] == "answered"


def test_finished_history_is_bounded_by_count_and_age():
    clock = Clock()
    reg = CallRegistry(clock, keep_finished=3, keep_seconds=60)
    ids = [reg.start() for _ in range(5)]
    for i in ids:
        reg.end(i)
    assert reg.list_finished() == ids[2:]
    clock.advance(61)
    assert reg.list_finished() == []


def test_listener_errors_do_not_break_the_registry():
    reg = CallRegistry(Clock())
    seen = []
    reg.subscribe(lambda ev, rec: seen.append((ev, rec.id)))
    reg.subscribe(lambda ev, rec: 1 / 0)
    cid = reg.start()
    reg.end(cid)
    assert seen == [("start", cid), ("end", cid)]
