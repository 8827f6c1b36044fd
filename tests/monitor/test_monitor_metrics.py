"""/metrics: own CollectorRegistry, calls per app and outcome, dispatcher counters, handler
latency through the dispatcher's observer hook, unanswered messages, reconnects."""

from __future__ import annotations

from typing import Dict, List, Tuple

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

from yaypm.connectors import DispatcherService
from yaypm.monitor import Monitor
from yaypm.testing import MemoryConnection

from monitor_helpers import ANNA, quiz_registry


def samples(mon: Monitor) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    text = mon.metrics.render().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def msg(n: int, name: str = "call.route") -> str:
    return f"%%>message:0x{n}:1700000000:{name}::called=35"


def test_calls_by_app_and_outcome() -> None:
    clock = Clock()
    mon = Monitor(quiz_registry(clock), clock=clock)
    s = samples(mon)
    assert s[("yaypm_calls_active", (("app", "quizconnect_callee"),))] == 2
    assert s[("yaypm_calls_active", (("app", "quizconnect_caller"),))] == 1
    assert s[("yaypm_calls_started_total", ())] == 3
    mon.registry.end(ANNA, "cancelled")
    s = samples(mon)
    assert s[("yaypm_calls_active", (("app", "quizconnect_callee"),))] == 1
    assert s[("yaypm_calls_ended_total", (("outcome", "cancelled"),))] == 1


def test_own_registry_not_the_global_one() -> None:
    mon = Monitor(quiz_registry(Clock()), clock=Clock())
    assert mon.metrics.collector_registry is not REGISTRY
    assert REGISTRY.get_sample_value("yaypm_calls_started_total") is None
    Monitor(quiz_registry(Clock()), clock=Clock())          # a second one does not clash


def test_messages_latency_and_unanswered_through_the_dispatcher_hook() -> None:
    clock = Clock()
    conn = MemoryConnection(clock=clock)
    mon = Monitor(quiz_registry(clock), clock=clock, latency_sample_every=1)
    mon.watch_dispatcher(conn.dispatcher)
    held: List = []
    conn.dispatcher.handler("call.route", lambda m: held.append(m))      # answers later
    conn.dispatcher.handler("chan.dtmf", lambda m: True)                  # answers at once
    conn.feed(msg(1), msg(2), msg(3, "chan.dtmf"), msg(4, "engine.timer"))
    s = samples(mon)
    assert s[("yaypm_messages_in_total", ())] == 4
    assert s[("yaypm_messages_unanswered", ())] == 2
    assert s[("yaypm_messages_unhandled_total", ())] == 1
    clock.advance(0.3)
    held.pop(0).ret(True)
    conn.dispatcher.msg("chan.masquerade", {"id": "x"}).enqueue()
    s = samples(mon)
    assert s[("yaypm_messages_unanswered", ())] == 1
    assert s[("yaypm_messages_out_total", ())] == 1
    assert s[("yaypm_messages_answered_total", ())] == 3
    route = (("message", "call.route"),)
    assert s[("yaypm_handler_latency_seconds_count", route)] == 1
    assert s[("yaypm_handler_latency_seconds_sum", route)] == 0.3
    assert s[("yaypm_handler_latency_seconds_bucket", (("le", "0.25"), *route))] == 0
    assert s[("yaypm_handler_latency_seconds_bucket", (("le", "0.5"), *route))] == 1
    assert s[("yaypm_handler_latency_seconds_count", (("message", "chan.dtmf"),))] == 1
    assert s[("yaypm_handler_latency_seconds_count", (("message", "engine.timer"),))] == 1
    # a dropped connection releases what was unanswered: the gauge does not stick
    conn.disconnect()
    assert samples(mon)[("yaypm_messages_unanswered", ())] == 0
    assert samples(mon)[("yaypm_connected", ())] == 0
    # the deadline answers what the application forgot
    conn.reconnect()
    conn.feed(msg(5))
    clock.advance(conn.dispatcher.answer_deadline)
    s = samples(mon)
    assert s[("yaypm_messages_deadline_total", ())] == 1
    assert s[("yaypm_messages_unanswered", ())] == 0
    assert s[("yaypm_handler_latency_seconds_count", route)] == 2


def test_latency_is_sampled_one_message_in_n() -> None:
    clock = Clock()
    conn = MemoryConnection(clock=clock)
    mon = Monitor(quiz_registry(clock), clock=clock)          # default: one in 8
    mon.watch_dispatcher(conn.dispatcher)
    conn.dispatcher.handler("chan.dtmf", lambda m: True)
    conn.feed(*(msg(n, "chan.dtmf") for n in range(1, 81)))
    s = samples(mon)
    assert s[("yaypm_messages_in_total", ())] == 80
    assert s[("yaypm_handler_latency_seconds_count", (("message", "chan.dtmf"),))] == 10
    assert s[("yaypm_handler_latency_sample_every", ())] == 8


def test_reconnects_from_the_service() -> None:
    clock = Clock()
    svc = DispatcherService(object(), lambda d: None, clock=clock)
    mon = Monitor(quiz_registry(clock), clock=clock)
    mon.watch_service(svc)
    assert svc.dispatcher.observer is not None
    svc.connections = 3                       # counted by the service's factory per connection
    s = samples(mon)
    assert s[("yaypm_connections_total", ())] == 3
    assert s[("yaypm_reconnects_total", ())] == 2
    mon.watch_service(svc)                    # idempotent
    assert samples(mon)[("yaypm_reconnects_total", ())] == 2
