"""The simulated engine core: messages, the handler list, dispatch, enqueue, post-dispatch hooks.

Sans-IO and single-threaded.  Everything that Yate does on worker threads runs here as *jobs*
in one FIFO queue drained by a trampoline loop (:meth:`Engine.run`): a job that writes a line,
enqueues a message or answers another message only appends work, so nothing re-enters and the
order of events is deterministic.  Time comes only from the injected clock.

Dispatch follows ``engine/Message.cpp`` (``MessageDispatcher::dispatch``): one list of handlers
sorted by priority (equal priorities keep installation order), each with an optional exact-match
filter on one parameter; a handler that returns processed=true stops the dispatch unless the
message is a broadcast; a handler may rename the message and the walk continues from the
current position with the new name; each handler with a track name appends ``module:priority``
to the ``handlers`` parameter before it is called.  A handler may answer later (an extmodule
connection does): it returns a :class:`Pending` and the dispatch resumes when that fires.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple, Union

from twisted.logger import Logger

from yaypm.timers import Timer, TimerHeap

__all__ = ["SimMessage", "Pending", "Handler", "Engine", "run_steps", "BROADCAST"]

#: Messages every handler sees (``Message::broadcast()`` in Yate): the result is the OR.
BROADCAST = frozenset(("engine.timer", "engine.init", "engine.start", "engine.halt",
                       "engine.stop", "chan.replaced", "module.update"))


class SimMessage:
    """A message inside the simulated engine: name, retvalue, ordered parameters, user data.

    Parameters are a list of ``[key, value]`` pairs; repeated keys are allowed, as in Yate's
    ``NamedList``.  :meth:`set` replaces the first parameter of that name in place (Yate's
    ``setParam``), :meth:`add` appends (``addParam``), :meth:`clear` removes all (``clearParam``).
    ``userdata`` is the channel the message acts on (what ``chan.masquerade`` attaches).
    """

    __slots__ = ("name", "retvalue", "params", "time", "userdata", "origin", "broadcast",
                 "on_dispatched", "on_released", "handlers_seen")

    def __init__(self, name: str, params: Iterable[Tuple[str, str]] = (), retvalue: str = "",
                 time: int = 0, userdata: Any = None) -> None:
        self.name = name
        self.retvalue = retvalue
        self.params: List[List[str]] = [[k, v] for k, v in params]
        self.time = time
        self.userdata = userdata
        self.origin: Any = None            # the ExtConnection that sent it, if any
        self.broadcast = name in BROADCAST
        self.on_dispatched: Optional[List[Callable[["SimMessage", bool], None]]] = None
        self.on_released: Optional[List[Callable[["SimMessage", bool], None]]] = None

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        for k, v in self.params:
            if k == key:
                return v
        return default

    def __getitem__(self, key: str) -> str:
        for k, v in self.params:
            if k == key:
                return v
        raise KeyError(key)

    def __contains__(self, key: str) -> bool:
        for k, _ in self.params:
            if k == key:
                return True
        return False

    def get_bool(self, key: str, default: bool = False) -> bool:
        v = self.get(key)
        if v is None:
            return default
        if v in ("true", "yes", "on", "enable", "t"):
            return True
        if v in ("false", "no", "off", "disable", "f"):
            return False
        return default

    def get_int(self, key: str, default: int) -> int:
        v = self.get(key)
        if v is None:
            return default
        try:
            return int(v.strip())
        except ValueError:
            return default

    def set(self, key: str, value: str) -> None:
        for pair in self.params:
            if pair[0] == key:
                pair[1] = value
                return
        self.params.append([key, value])

    def add(self, key: str, value: str) -> None:
        self.params.append([key, value])

    def clear(self, key: str) -> None:
        if any(k == key for k, _ in self.params):
            self.params = [p for p in self.params if p[0] != key]

    def copy_params(self, other: "SimMessage", names: Union[str, Iterable[str]]) -> None:
        """Yate's ``copyParams(original, list)``: for each listed name present, copy it."""
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        for name in names:
            values = [v for k, v in other.params if k == name]
            if values:
                self.clear(name)
                for v in values:
                    self.params.append([name, v])

    def copy_all(self, params: Iterable[Tuple[str, str]]) -> None:
        """Yate's ``copyParams(NamedList)``: set each parameter (replacing the first)."""
        for k, v in params:
            self.set(k, v)

    def when_dispatched(self, fn: Callable[["SimMessage", bool], None]) -> None:
        """Call ``fn(msg, handled)`` when the dispatch ends, before the watchers see it."""
        if self.on_dispatched is None:
            self.on_dispatched = []
        self.on_dispatched.append(fn)

    def when_released(self, fn: Callable[["SimMessage", bool], None]) -> None:
        """Call ``fn(msg, handled)`` after the watchers: Yate destroys the message then."""
        if self.on_released is None:
            self.on_released = []
        self.on_released.append(fn)

    def pairs(self) -> List[Tuple[str, str]]:
        return [(k, v) for k, v in self.params]

    def __repr__(self) -> str:
        return f"<SimMessage {self.name} rv={self.retvalue!r} {self.pairs()}>"


class Pending:
    """A value that is not there yet: a handler's answer, a dispatch's result.

    A tiny one-shot future without Deferred's machinery (the engine makes hundreds of thousands
    of them in the benchmark).  ``then(fn)`` calls ``fn(value)`` now if resolved, else later.
    """

    __slots__ = ("done", "value", "_callbacks")

    def __init__(self) -> None:
        self.done = False
        self.value: Any = None
        self._callbacks: Optional[List[Callable[[Any], None]]] = None

    @classmethod
    def resolved(cls, value: Any) -> "Pending":
        p = cls()
        p.done = True
        p.value = value
        return p

    def then(self, fn: Callable[[Any], None]) -> None:
        if self.done:
            fn(self.value)
        else:
            if self._callbacks is None:
                self._callbacks = []
            self._callbacks.append(fn)

    def resolve(self, value: Any) -> None:
        if self.done:
            return
        self.done = True
        self.value = value
        callbacks, self._callbacks = self._callbacks, None
        if callbacks:
            for fn in callbacks:
                fn(value)


def run_steps(gen: Any) -> Pending:
    """Drive a generator that yields :class:`Pending` values; resolves with its return value.

    The generator is resumed with each Pending's value.  Already resolved values are fed back in
    a loop, so a chain of synchronous steps does not grow the stack.
    """
    result = Pending()

    def step(value: Any) -> None:
        while True:
            try:
                waiting = gen.send(value)
            except StopIteration as stop:
                result.resolve(stop.value)
                return
            if not isinstance(waiting, Pending):
                value = waiting
                continue
            if waiting.done:
                value = waiting.value
                continue
            waiting.then(step)
            return

    step(None)
    return result


class Handler:
    """One installed handler: a message name, a priority, an optional filter, a callback.

    ``callback(msg)`` returns the processed flag, or a :class:`Pending` firing with it.
    ``track`` is what goes into the ``handlers`` tracking parameter (``module:priority``).
    """

    __slots__ = ("name", "priority", "seq", "filter_name", "filter_value", "track", "callback",
                 "owner", "installed")

    def __init__(self, name: str, priority: int, callback: Callable[[SimMessage], Any],
                 track: Optional[str] = None, filter_name: Optional[str] = None,
                 filter_value: Optional[str] = None, owner: Any = None) -> None:
        self.name = name
        self.priority = priority
        self.seq = 0
        self.callback = callback
        self.track = track
        self.filter_name = filter_name
        self.filter_value = filter_value
        self.owner = owner
        self.installed = False

    @property
    def key(self) -> Tuple[int, int]:
        return (self.priority, self.seq)

    def matches(self, msg: SimMessage) -> bool:
        if self.name and self.name != msg.name:
            return False
        if self.filter_name is not None:
            # Exact comparison with the first parameter of that name; absent compares as ""
            # (yate-extmodule.md §5.6).
            if (msg.get(self.filter_name) or "") != (self.filter_value or ""):
                return False
        return True

    def __repr__(self) -> str:
        return f"<Handler {self.name}@{self.priority} {self.track or self.owner}>"


class _Dispatch:
    """One message walking the handler list; may pause on a handler that answers later."""

    __slots__ = ("engine", "msg", "result", "retv", "last")

    def __init__(self, engine: "Engine", msg: SimMessage) -> None:
        self.engine = engine
        self.msg = msg
        self.result = Pending()
        self.retv = False
        self.last: Tuple[int, int] = (-(1 << 62), -1)

    def walk(self) -> None:
        engine = self.engine
        msg = self.msg
        track = engine.trackparam
        by_name = engine._by_name
        while True:
            entry = by_name.get(msg.name)
            found = None
            if entry is not None:
                keys, handlers = entry
                i = bisect.bisect_right(keys, self.last)
                n = len(handlers)
                while i < n:
                    h = handlers[i]
                    if h.filter_name is None or h.matches(msg):
                        found = h
                        break
                    i += 1
            if found is None:
                self._finish()
                return
            h = found
            self.last = h.key
            if track and h.track:
                for pair in msg.params:
                    if pair[0] == track:
                        pair[1] = pair[1] + "," + h.track if pair[1] else h.track
                        break
                else:
                    msg.params.append([track, h.track])
            try:
                r = h.callback(msg)
            except Exception:
                engine.log.failure("Simulated handler {handler} raised", handler=repr(h))
                r = False
            if isinstance(r, Pending):
                if not r.done:
                    r.then(self._resume)
                    return
                r = r.value
            self.retv = bool(r) or self.retv
            if self.retv and not msg.broadcast:
                self._finish()
                return

    def _resume(self, value: Any) -> None:
        self.retv = bool(value) or self.retv
        if self.retv and not self.msg.broadcast:
            self._finish()
        else:
            self.walk()

    def _finish(self) -> None:
        msg = self.msg
        handled = self.retv
        self.engine.stats["dispatched"] += 1
        if msg.on_dispatched:
            for fn in msg.on_dispatched:
                fn(msg, handled)
        for hook in list(self.engine.posthooks):
            hook(msg, handled)
        if msg.on_released:
            for fn in msg.on_released:
                fn(msg, handled)
        self.result.resolve(handled)


class Engine:
    """Handler list, dispatch, job queue and engine-wide settings of one simulated Yate.

    ``clock`` is an ``IReactorTime``.  ``start_time`` is the wall-clock second the simulated
    engine started (Yate's run id); message times are ``start_time`` plus the clock's elapsed
    seconds, so a ``task.Clock`` starting at 0 still produces realistic times.
    """

    log = Logger()

    def __init__(self, clock: Any, start_time: Optional[float] = None) -> None:
        self.clock = clock
        now = clock.seconds()
        if start_time is None:
            start_time = now if now > 1e9 else 1_700_000_000.0
        self._offset = start_time - now
        self.runid = str(int(start_time))
        self.trackparam = "handlers"
        self._handlers: List[Handler] = []
        self._keys: List[Tuple[int, int]] = []
        # per message name: (keys, handlers) in dispatch order, for the dispatch walk
        self._by_name: Dict[str, Tuple[List[Tuple[int, int]], List[Handler]]] = {}
        self._seq = itertools.count(1)
        self._jobs: Deque[Tuple[Callable[..., Any], tuple]] = deque()
        self._draining = False
        self.posthooks: List[Callable[[SimMessage, bool], None]] = []
        self._msgids = itertools.count(1)
        self.stats: Dict[str, int] = {"dispatched": 0, "enqueued": 0}
        # One clock call for all the engine's timers; the timers due at a tick run as jobs,
        # so none re-enters a running one (the slack absorbs float drift of summed delays).
        self._timers = TimerHeap(self.clock, run=self.run, slack=1e-9, batch=True)

    # -- timers --------------------------------------------------------------------------------
    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        """Run ``fn(*args)`` after ``delay`` seconds of the clock (``cancel()`` to stop).

        The engine keeps its timers in a :class:`~yaypm.timers.TimerHeap`: a single clock
        call for the earliest one, since ``task.Clock.callLater`` sorts all its calls on every
        insertion, which made thousands of concurrent calls quadratic.
        """
        return self._timers.callLater(delay, fn, *args)

    # -- time --------------------------------------------------------------------------------
    def now(self) -> float:
        """Engine wall-clock time in seconds."""
        return self.clock.seconds() + self._offset

    def now_sec(self) -> int:
        return int(self.now())

    def new_message_id(self) -> str:
        """An id shaped like Yate's (holder address + random): ``0x7f5100000000.<n>``."""
        return "0x7f51%08x.%d" % (0x1000, next(self._msgids) * 7919 % 2147483647)

    # -- handlers ----------------------------------------------------------------------------
    def install(self, handler: Handler) -> Handler:
        handler.seq = next(self._seq)
        key = handler.key
        i = bisect.bisect_right(self._keys, key)
        self._keys.insert(i, key)
        self._handlers.insert(i, handler)
        keys, handlers = self._by_name.setdefault(handler.name, ([], []))
        j = bisect.bisect_right(keys, key)
        keys.insert(j, key)
        handlers.insert(j, handler)
        handler.installed = True
        return handler

    def uninstall(self, handler: Handler) -> bool:
        if not handler.installed:
            return False
        i = bisect.bisect_left(self._keys, handler.key)
        if i < len(self._handlers) and self._handlers[i] is handler:
            del self._keys[i]
            del self._handlers[i]
            keys, handlers = self._by_name[handler.name]
            j = bisect.bisect_left(keys, handler.key)
            del keys[j]
            del handlers[j]
            if not handlers:
                del self._by_name[handler.name]
            handler.installed = False
            return True
        return False

    def handlers(self, name: Optional[str] = None) -> List[Handler]:
        """Installed handlers in dispatch order (optionally for one message name)."""
        return [h for h in self._handlers if name is None or h.name == name]

    # -- jobs ----------------------------------------------------------------------------------
    def run(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` after the work already queued (at once if the queue is idle)."""
        self._jobs.append((fn, args))
        if not self._draining:
            self._drain()

    def _drain(self) -> None:
        self._draining = True
        jobs = self._jobs
        try:
            while jobs:
                fn, args = jobs.popleft()
                try:
                    fn(*args)
                except Exception:
                    self.log.failure("Simulator job {job} failed", job=getattr(fn, "__name__", fn))
        finally:
            self._draining = False

    @property
    def busy(self) -> bool:
        return self._draining

    # -- dispatch --------------------------------------------------------------------------------
    def dispatch(self, msg: SimMessage) -> Pending:
        """Walk the handler list now; the result fires with the processed flag."""
        if not msg.time:
            msg.time = self.now_sec()
        d = _Dispatch(self, msg)
        d.walk()
        return d.result

    def enqueue(self, msg: SimMessage) -> None:
        """Dispatch ``msg`` after the queued work (``Engine::enqueue``)."""
        if not msg.time:
            msg.time = self.now_sec()
        self.stats["enqueued"] += 1
        self.run(self.dispatch, msg)

    def message(self, name: str, *pairs: Tuple[str, str], **params: str) -> SimMessage:
        """A new message stamped with the current time."""
        m = SimMessage(name, list(pairs) + list(params.items()), time=self.now_sec())
        return m
