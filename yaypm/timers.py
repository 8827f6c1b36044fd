"""Many timers, one clock call: a heap of timers in front of an ``IReactorTime``.

``task.Clock.callLater`` re-sorts its whole list on every insertion, so thousands of calls
each waiting on a timer (the IVR legs' timeouts, the simulator's channels) made a test run
quadratic.  A :class:`TimerHeap` keeps its timers in a heap and gives the clock a single call,
for the earliest one, and none once no timer is left — so ``clock.getDelayedCalls()`` stays
empty when nothing waits, which leak tests check.

No reactor import: the clock is handed in.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.logger import Logger

__all__ = ["TimerHeap", "Timer"]


class Timer:
    """One timer of a :class:`TimerHeap` (the ``IDelayedCall`` methods Deferreds use)."""

    __slots__ = ("heap", "time", "f", "args", "kw", "cancelled", "called")

    def __init__(self, heap: "TimerHeap", time: float, f: Callable[..., Any],
                 args: Tuple[Any, ...], kw: Dict[str, Any]) -> None:
        self.heap = heap
        self.time = time
        self.f = f
        self.args = args
        self.kw = kw
        self.cancelled = False
        self.called = False

    def getTime(self) -> float:
        return self.time

    def active(self) -> bool:
        return not (self.cancelled or self.called)

    def cancel(self) -> None:
        if self.active():
            self.cancelled = True
            self.heap._cancelled()


class TimerHeap:
    """Timers on one clock call (``IReactorTime`` enough for ``Deferred.addTimeout``).

    ``run(f, *args, **kw)`` runs a due timer; the default calls it and logs what it raises.
    The simulator passes its job runner, so a timer never re-enters a running job.
    ``slack`` (seconds) counts a timer due that is that close to now, against float drift.
    ``batch=True`` takes every timer due at a clock tick first, then runs them in order: one
    cancelled by an earlier timer of the same tick still runs (the simulator's engine behaves
    so, and its trace replays depend on it); by default a cancelled timer never runs.
    """

    log = Logger()

    def __init__(self, clock: Any, run: Optional[Callable[..., Any]] = None,
                 slack: float = 0.0, batch: bool = False) -> None:
        self.clock = clock
        self._run = run if run is not None else self._call_timer
        self._slack = slack
        self._batch = batch
        self._heap: List[Tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._live = 0
        self._call: Any = None
        self._call_time: Optional[float] = None

    def seconds(self) -> float:
        return self.clock.seconds()

    def __len__(self) -> int:
        return self._live

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any,
                  **kw: Any) -> Timer:
        t = Timer(self, self.clock.seconds() + max(delay, 0.0), f, args, kw)
        heapq.heappush(self._heap, (t.time, next(self._seq), t))
        self._live += 1
        if self._call_time is None or t.time < self._call_time:
            self._schedule(t.time)
        return t

    def _schedule(self, when: float) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call_time = when
        self._call = self.clock.callLater(max(when - self.clock.seconds(), 0.0), self._fire)

    def _cancelled(self) -> None:
        self._live -= 1
        if self._live == 0:
            self._heap = []
            if self._call is not None and self._call.active():
                self._call.cancel()
            self._call = None
            self._call_time = None

    def _call_timer(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        try:
            f(*args, **kw)
        except Exception:
            self.log.failure("Timer {f} failed", f=f)

    def _fire(self) -> None:
        self._call = None
        self._call_time = None
        now = self.clock.seconds() + self._slack
        if self._batch:
            due: List[Timer] = []
            while self._heap and self._heap[0][0] <= now:
                t = heapq.heappop(self._heap)[2]
                if t.active():
                    t.called = True
                    self._live -= 1
                    due.append(t)
            self._reschedule()
            for t in due:
                self._run(t.f, *t.args, **t.kw)
            return
        while self._heap and self._heap[0][0] <= now:
            t = heapq.heappop(self._heap)[2]
            if not t.active():
                continue
            t.called = True
            self._live -= 1
            self._run(t.f, *t.args, **t.kw)
        self._reschedule()

    def _reschedule(self) -> None:
        while self._heap and not self._heap[0][2].active():
            heapq.heappop(self._heap)
        if self._heap and self._call is None:
            self._schedule(self._heap[0][0])

