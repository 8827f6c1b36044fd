"""The call registry: every active call leg with its attributes, and recently finished ones.

Monitoring (XML-RPC, the status page, metrics) reads it; apps write to it with one call
(``registry.set(call_id, key=value)``).  It is a plain in-memory structure: no I/O, no reactor
(time comes from the clock handed in), so it costs a dict update per change.

Attributes follow SEMS's monitoring names where they exist (``from``, ``to``, ``ruri``, ``app``,
``dir``, ``dsm_state``, ``dsm_diag``...).  Finished calls are kept for at most
``keep_finished`` entries and ``keep_seconds`` seconds, whichever is smaller, so a busy server's
memory stays bounded.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Optional

from twisted.logger import Logger

__all__ = ["CallRegistry", "CallRecord", "default_registry"]


class CallRecord:
    """One call leg: an id, its attributes, start and end times."""

    __slots__ = ("id", "attrs", "started", "ended", "outcome")

    def __init__(self, call_id: str, attrs: Dict[str, Any], started: float) -> None:
        self.id = call_id
        self.attrs = attrs
        self.started = started
        self.ended: Optional[float] = None
        self.outcome: Optional[str] = None

    def as_dict(self, now: Optional[float] = None) -> Dict[str, Any]:
        """Attributes plus ``start``/``end``/``age``/``outcome``, for monitoring."""
        out = dict(self.attrs)
        out["start"] = self.started
        if self.ended is not None:
            out["end"] = self.ended
            out["outcome"] = self.outcome or ""
        if now is not None:
            out["age"] = round((self.ended or now) - self.started, 3)
        return out


class CallRegistry:
    """Active and finished call legs, keyed by a yaypm call id.

    ``node`` (empty by default) goes into new ids (``call-<node>-1``) to keep them unique
    across processes — set by the DSM runner, whose sessions may be named after records and
    are addressed by id from other processes (``postEvent``).
    """

    log = Logger()

    def __init__(self, clock: Any = None, keep_finished: int = 1000,
                 keep_seconds: float = 3600.0, node: str = "") -> None:
        self._clock = clock
        self.node = node
        self.active: Dict[str, CallRecord] = {}
        self.finished: "OrderedDict[str, CallRecord]" = OrderedDict()
        self.keep_finished = keep_finished
        self.keep_seconds = keep_seconds
        self._ids = itertools.count(1)
        self._listeners: List[Callable[[str, CallRecord], None]] = []
        self.started_total = 0
        self.ended_total: Dict[str, int] = {}

    def _now(self) -> float:
        if self._clock is None:
            from twisted.internet import reactor
            self._clock = reactor
        return self._clock.seconds()

    def new_id(self, prefix: str = "call") -> str:
        """A fresh id, unique within this process (``call-1``, ``call-2``...), or across
        processes with a ``node`` (``call-5F3A2B-1``)."""
        if self.node:
            return f"{prefix}-{self.node}-{next(self._ids)}"
        return f"{prefix}-{next(self._ids)}"

    def start(self, call_id: Optional[str] = None, **attrs: Any) -> str:
        """Register an active leg; returns its id."""
        call_id = call_id or self.new_id()
        rec = CallRecord(call_id, dict(attrs), self._now())
        self.active[call_id] = rec
        self.started_total += 1
        self._notify("start", rec)
        return call_id

    def set(self, call_id: str, **attrs: Any) -> None:
        """Set attributes on an active (or finished) leg; unknown ids are ignored."""
        rec = self.active.get(call_id) or self.finished.get(call_id)
        if rec is not None:
            rec.attrs.update(attrs)
            self._notify("update", rec)

    def get(self, call_id: str) -> Optional[CallRecord]:
        return self.active.get(call_id) or self.finished.get(call_id)

    def end(self, call_id: str, outcome: str = "normal") -> None:
        """Move a leg to the finished list (bounded), counting its outcome."""
        rec = self.active.pop(call_id, None)
        if rec is None:
            return
        rec.ended = self._now()
        rec.outcome = outcome
        self.ended_total[outcome] = self.ended_total.get(outcome, 0) + 1
        self.finished[call_id] = rec
        self._prune(rec.ended)
        self._notify("end", rec)

    def _prune(self, now: float) -> None:
        while len(self.finished) > self.keep_finished:
            self.finished.popitem(last=False)
        limit = now - self.keep_seconds
        while self.finished:
            first = next(iter(self.finished.values()))
            if first.ended is not None and first.ended < limit:
                self.finished.popitem(last=False)
            else:
                break

    def subscribe(self, listener: Callable[[str, CallRecord], None]) -> Callable[[], None]:
        """Call ``listener(event, record)`` on start/update/end; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _notify(self, event: str, rec: CallRecord) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, rec)
            except Exception:
                self.log.failure("Registry listener failed")

    # -- queries in SEMS monitoring's shapes ----------------------------------------------
    def list_active(self) -> List[str]:
        return list(self.active)

    def list_finished(self) -> List[str]:
        self._prune(self._now())
        return list(self.finished)

    def list_all(self) -> List[str]:
        return self.list_active() + self.list_finished()

    def attribute(self, name: str, records: Iterable[CallRecord]) -> List[List[Any]]:
        """``[[id, value], ...]`` for the records having attribute ``name``."""
        return [[r.id, r.attrs[name]] for r in records if name in r.attrs]

    def count_by(self, key: str) -> Dict[str, int]:
        """Active legs counted by an attribute (e.g. ``app``)."""
        out: Dict[str, int] = {}
        for r in self.active.values():
            v = str(r.attrs.get(key, ""))
            out[v] = out.get(v, 0) + 1
        return out


_default: Optional[CallRegistry] = None


def default_registry() -> CallRegistry:
    """The process-wide registry used when an app does not pass its own."""
    global _default
    if _default is None:
        _default = CallRegistry()
    return _default
