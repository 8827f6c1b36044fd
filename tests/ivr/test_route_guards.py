"""Asynchronous route guards: ``call.route`` waits for them and is answered exactly once."""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import LogLevel, capturedLogs

from yaypm.ivr import route, switchboard
from yaypm.ivr.routing import GUARD_SHARE

ROUTE = "id=sip/1:module=sip:status=incoming:billid=1-1:caller=caller:called=1234"


def keeper(legs):
    """An app that records its leg and keeps the call (the test drives it)."""
    def app(leg):
        legs.append(leg)
        return leg.ended
    return app


def answers(wire, rid):
    """The answers to message ``rid`` written so far."""
    return [line for line in wire.take() if line.startswith(f"%%<message:{rid}:")]


def assert_nothing_pending(wire):
    assert wire.dispatcher.pending_count() == 0
    assert wire.clock.getDelayedCalls() == [], wire.clock.getDelayedCalls()


def test_deferred_guard_true_claims_once_it_fires(wire):
    pending = defer.Deferred()
    legs = []
    route(wire.dispatcher, "1234", keeper(legs), guard=lambda m: pending)
    wire.take()
    rid = wire.message("call.route", ROUTE)
    assert wire.take() == [] and legs == []       # unanswered while the guard decides
    pending.callback(True)
    assert wire.take() == [f"%%<message:{rid}:true:call.route:dumb/"]
    assert [leg.called for leg in legs] == ["1234"]
    assert switchboard(wire.dispatcher).stats["routed"] == 1


def test_async_def_guard_false_answers_unhandled(wire):
    pending = defer.Deferred()
    seen = []

    async def guard(m):
        seen.append(m.get("called"))
        return await pending

    route(wire.dispatcher, "1234", lambda leg: None, guard=guard)
    wire.take()
    rid = wire.message("call.route", ROUTE)
    assert wire.take() == [] and seen == ["1234"]
    pending.callback(False)
    assert answers(wire, rid) == [f"%%<message:{rid}:false:"]
    assert switchboard(wire.dispatcher).stats["unclaimed"] == 1
    assert_nothing_pending(wire)


def test_async_guard_false_goes_to_the_next_route(wire):
    async def no(m):
        return False

    first, second = [], []
    route(wire.dispatcher, "1234", first.append, guard=no)
    route(wire.dispatcher, "1234", keeper(second), guard=lambda m: defer.succeed(True))
    wire.take()
    rid = wire.message("call.route", ROUTE)
    assert answers(wire, rid) == [f"%%<message:{rid}:true:call.route:dumb/"]
    assert first == [] and len(second) == 1


def test_failing_guard_is_logged_and_not_claimed(wire):
    pending = defer.Deferred()
    route(wire.dispatcher, "1234", lambda leg: None, guard=lambda m: pending)
    wire.take()
    rid = wire.message("call.route", ROUTE)
    with capturedLogs() as events:
        pending.errback(RuntimeError("database down"))
    assert answers(wire, rid) == [f"%%<message:{rid}:false:"]
    failures = [e for e in events if e.get("log_level") == LogLevel.critical]
    assert len(failures) == 1 and failures[0]["log_failure"].check(RuntimeError)
    assert_nothing_pending(wire)


def test_undecided_guard_times_out_before_the_deadline_and_is_cancelled(wire):
    cancelled = []
    pending = defer.Deferred(lambda d: cancelled.append(d))
    route(wire.dispatcher, "1234", lambda leg: None, guard=lambda m: pending)
    wire.take()
    rid = wire.message("call.route", ROUTE)
    limit = wire.dispatcher.answer_deadline * GUARD_SHARE
    wire.clock.advance(limit - 0.01)
    assert wire.take() == []
    with capturedLogs() as events:
        wire.clock.advance(0.01)
    assert answers(wire, rid) == [f"%%<message:{rid}:false:"]
    assert cancelled == [pending]
    assert any(e.get("log_level") == LogLevel.warn and "in time" in e["log_format"]
               for e in events)
    assert wire.dispatcher.stats["deadline"] == 0     # ours, not the dispatcher's last resort
    wire.clock.advance(60)
    assert wire.take() == []                          # answered exactly once
    assert_nothing_pending(wire)


def test_guard_deciding_after_a_lost_connection_does_nothing(wire):
    pending = defer.Deferred()
    legs = []
    route(wire.dispatcher, "1234", legs.append, guard=lambda m: pending)
    wire.take()
    wire.message("call.route", ROUTE)
    wire.dispatcher.detach(None)
    pending.callback(True)
    assert legs == [] and wire.conn.take() == []
    assert wire.clock.getDelayedCalls() == []


def test_route_cancelled_while_its_guard_runs_claims_nothing(wire):
    pending = defer.Deferred()
    legs = []
    r = route(wire.dispatcher, "1234", legs.append, guard=lambda m: pending)
    wire.take()
    rid = wire.message("call.route", ROUTE)
    r.cancel()
    pending.callback(True)
    assert answers(wire, rid) == [f"%%<message:{rid}:false:"] and legs == []
    assert_nothing_pending(wire)


def test_the_guards_answer_is_the_apps_leg_claim(wire):
    legs = []
    route(wire.dispatcher, "1234", keeper(legs), guard=lambda m: defer.succeed(["row"]))
    route(wire.dispatcher, "5678", keeper(legs))
    wire.take()
    wire.message("call.route", ROUTE)
    wire.message("call.route", ROUTE.replace("sip/1", "sip/2").replace("1234", "5678"))
    assert [leg.claim for leg in legs] == [["row"], True]
