"""Prometheus metrics in their own `CollectorRegistry` (never the process-global one).

Almost everything is read at scrape time from objects that already count — the call registry
(active legs per app, started/ended totals), each dispatcher's ``stats``, each reconnecting
service's ``connections`` — so monitoring adds nothing to the call path.  The one measurement
that needs the call path is the handler latency histogram: `DispatchObserver` is installed as
``dispatcher.observer`` and the dispatcher calls it when a message from Yate arrives and when
it is answered; it times one message in ``sample_every`` (8 by default; 1 times them all).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Dict, Iterator, List, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, Metric)
from prometheus_client.utils import floatToGoString

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


class _Latencies:
    """A lock-free histogram per message name (the reactor thread is the only writer);
    exposed at scrape time.  Cheaper than prometheus_client's Histogram on the call path."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = [b for b in bounds if b != float("inf")]
        self.by_name: Dict[str, List[float]] = {}     # buckets..., +Inf bucket, sum

    def observe(self, name: str, seconds: float) -> None:
        h = self.by_name.get(name)
        if h is None:
            h = self.by_name[name] = [0.0] * (len(self.bounds) + 2)
        h[bisect_left(self.bounds, seconds)] += 1
        h[-1] += seconds

    def family(self) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(
            "yaypm_handler_latency_seconds",
            "Time from receiving a message from Yate to answering it, by message name "
            "(a sample: one message in yaypm_handler_latency_sample_every)", labels=["message"])
        for name, h in sorted(self.by_name.items()):
            buckets, total = [], 0.0
            for bound, n in zip([*self.bounds, float("inf")], h[:-1]):
                total += n
                buckets.append((floatToGoString(bound), total))
            fam.add_metric([name], buckets, h[-1])
        return fam


class DispatchObserver:
    """The dispatcher hook (``dispatcher.observer``): times one message in ``sample_every``
    from its arrival to its answer.

    Sampling keeps the call path cheap (two calls and a counter for the others); the
    distribution is what a latency histogram is for — `yaypm_messages_in_total` counts them all.
    """

    def __init__(self, latencies: _Latencies, clock: Any, sample_every: int = 8) -> None:
        self._latencies = latencies
        self._now = clock.seconds
        self._every = max(1, int(sample_every))
        self._n = 0
        self._inflight: Dict[Any, float] = {}

    def message_received(self, m: Any) -> None:
        self._n += 1
        if self._n % self._every == 0:
            self._inflight[m] = self._now()

    def message_answered(self, m: Any) -> None:
        if self._inflight:
            t0 = self._inflight.pop(m, None)
            if t0 is not None:
                self._latencies.observe(m.name, self._now() - t0)

    def forget_released(self) -> None:
        """Drop timings of messages a lost connection released unanswered (at scrape time)."""
        for m in [m for m in self._inflight if m.answered]:
            del self._inflight[m]


def _unanswered(dispatcher: Any) -> int:
    count = getattr(dispatcher, "unanswered_count", None)
    if count is not None:
        return int(count())
    # The dispatcher's table of received, unanswered messages; read at scrape time only.
    return len(getattr(dispatcher, "_unanswered", ()))


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
                                value=sum(_unanswered(d) for d in m.dispatchers))
        for o in m.observers:
            o.forget_released()
        yield m.latencies.family()
        yield GaugeMetricFamily("yaypm_handler_latency_sample_every",
                                "One received message in this many is timed",
                                value=m.sample_every)
        connections = [getattr(s, "connections", 0) for s in m.services]
        yield CounterMetricFamily("yaypm_connections", "Connections made to Yate",
                                  value=sum(connections))
        yield CounterMetricFamily("yaypm_reconnects", "Connections to Yate after the first",
                                  value=sum(max(0, n - 1) for n in connections))
        yield GaugeMetricFamily("yaypm_connected", "Dispatchers connected to Yate now",
                                value=sum(1 for d in m.dispatchers if d.connected))


class Metrics:
    """yaypm's metrics: `watch_dispatcher` / `watch_service` what runs, `render` to scrape."""

    def __init__(self, registry: CallRegistry, sample_every: int = 8) -> None:
        self.registry = registry
        self.sample_every = max(1, int(sample_every))
        self.collector_registry = CollectorRegistry(auto_describe=True)
        self.dispatchers: List[Any] = []
        self.observers: List[DispatchObserver] = []
        self.services: List[Any] = []
        self.latencies = _Latencies(LATENCY_BUCKETS)
        self.collector_registry.register(_Collector(self))

    def watch_dispatcher(self, dispatcher: Any) -> DispatchObserver:
        """Count ``dispatcher.stats`` and time its handlers (installs ``dispatcher.observer``)."""
        if dispatcher not in self.dispatchers:
            self.dispatchers.append(dispatcher)
        obs = getattr(dispatcher, "observer", None)
        if not isinstance(obs, DispatchObserver) or obs not in self.observers:
            obs = DispatchObserver(self.latencies, dispatcher.clock, self.sample_every)
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
