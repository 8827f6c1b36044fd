"""Prometheus metrics in their own `CollectorRegistry` (never the process-global one).

Almost everything is read at scrape time from objects that already count — the call registry
(active legs per app, started/ended totals), each dispatcher's ``stats``, each reconnecting
service's ``connections`` — so monitoring adds nothing to the call path.  The one measurement
that needs the call path is the handler latency histogram: `DispatchObserver` is installed as
``dispatcher.observer`` and the dispatcher calls it when a message from Yate arrives and when
it is answered.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from yaypm.registry import CallRegistry

__all__ = ["Metrics", "DispatchObserver", "CONTENT_TYPE", "LATENCY_BUCKETS"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Yate waits 10 s for an answer by default; the dispatcher's deadline is 9 s.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 9.0, float("inf"))

_STATS = {   # dispatcher.stats key -> (metric name, help)
    "received": ("yaypm_messages_in", "Messages received from Yate (handler calls)"),
    "dispatched": ("yaypm_messages_out", "Messages sent to Yate (dispatch and enqueue)"),
    "answered": ("yaypm_messages_answered", "Answers sent to Yate for received messages"),
    "unhandled": ("yaypm_messages_unhandled",
                  "Received messages no handler wanted (answered false at once)"),
    "deadline": ("yaypm_messages_deadline",
                 "Received messages the application never answered (answered by the deadline)"),
    "errors": ("yaypm_protocol_errors", "Unparseable lines from Yate"),
}


class DispatchObserver:
    """The dispatcher hook: times each received message from arrival to answer.

    ``message_received(m)`` / ``message_answered(m)`` are called by the dispatcher; the
    in-flight table also gives the count of messages still unanswered.  Messages a dropped
    connection released unanswered are forgotten at the next scrape.
    """

    def __init__(self, histogram: Histogram, clock: Any) -> None:
        self._histogram = histogram
        self._seconds = clock.seconds
        self._inflight: Dict[Any, float] = {}
        self._labels: Dict[str, Any] = {}

    def message_received(self, m: Any) -> None:
        self._inflight[m] = self._seconds()

    def message_answered(self, m: Any) -> None:
        t0 = self._inflight.pop(m, None)
        if t0 is None:
            return
        name = m.name
        child = self._labels.get(name)
        if child is None:
            child = self._labels[name] = self._histogram.labels(message=name)
        child.observe(self._seconds() - t0)

    def unanswered(self) -> int:
        """Messages received and not answered yet (those a lost connection released are
        dropped from the table here)."""
        gone = [m for m in self._inflight if m.answered]
        for m in gone:
            del self._inflight[m]
        return len(self._inflight)


class _Collector:
    """Scrape-time metrics read from the registry, dispatchers and services."""

    def __init__(self, metrics: "Metrics") -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        reg = m.registry
        active = GaugeMetricFamily("yaypm_calls_active", "Active call legs by application",
                                   labels=["app"])
        for app, n in sorted(reg.count_by("app").items()):
            active.add_metric([app], n)
        yield active
        yield CounterMetricFamily("yaypm_calls_started", "Call legs registered",
                                  value=reg.started_total)
        ended = CounterMetricFamily("yaypm_calls_ended", "Call legs ended, by outcome",
                                    labels=["outcome"])
        for outcome, n in sorted(reg.ended_total.items()):
            ended.add_metric([outcome], n)
        yield ended
        for key, (name, help_text) in _STATS.items():
            yield CounterMetricFamily(name, help_text,
                                      value=sum(d.stats.get(key, 0) for d in m.dispatchers))
        yield GaugeMetricFamily("yaypm_messages_unanswered",
                                "Messages received from Yate and not answered yet",
                                value=sum(o.unanswered() for o in m.observers))
        connections = [getattr(s, "connections", 0) for s in m.services]
        yield CounterMetricFamily("yaypm_connections", "Connections made to Yate",
                                  value=sum(connections))
        yield CounterMetricFamily("yaypm_reconnects", "Connections to Yate after the first",
                                  value=sum(max(0, n - 1) for n in connections))
        yield GaugeMetricFamily("yaypm_connected", "Dispatchers connected to Yate now",
                                value=sum(1 for d in m.dispatchers if d.connected))


class Metrics:
    """yaypm's metrics: `watch_dispatcher` / `watch_service` what runs, `render` to scrape."""

    def __init__(self, registry: CallRegistry) -> None:
        self.registry = registry
        self.collector_registry = CollectorRegistry(auto_describe=True)
        self.dispatchers: List[Any] = []
        self.observers: List[DispatchObserver] = []
        self.services: List[Any] = []
        self.latency = Histogram(
            "yaypm_handler_latency_seconds",
            "Time from receiving a message from Yate to answering it, by message name",
            ["message"], buckets=LATENCY_BUCKETS, registry=self.collector_registry)
        self.collector_registry.register(_Collector(self))

    def watch_dispatcher(self, dispatcher: Any) -> DispatchObserver:
        """Count ``dispatcher.stats`` and time its handlers (installs ``dispatcher.observer``)."""
        if dispatcher not in self.dispatchers:
            self.dispatchers.append(dispatcher)
        obs = getattr(dispatcher, "observer", None)
        if not isinstance(obs, DispatchObserver) or obs not in self.observers:
            obs = DispatchObserver(self.latency, dispatcher.clock)
            dispatcher.observer = obs
            self.observers.append(obs)
        return obs

    def watch_service(self, service: Any) -> None:
        """Count a `DispatcherService`'s connections and reconnects, and its dispatcher."""
        if service not in self.services:
            self.services.append(service)
        self.watch_dispatcher(service.dispatcher)

    def render(self) -> bytes:
        """The Prometheus text exposition of everything."""
        return generate_latest(self.collector_registry)
