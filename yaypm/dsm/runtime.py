"""The DSM runtime: one `Session` per call leg, each with its own event queue.

Events of one session are processed strictly one at a time (spec §2.4); an action returning an
unfired Deferred suspends its session with the queue still blocked while other sessions run
(⚑D11). Sessions never call each other directly: `postEvent` queues into the target and the
`SessionRegistry` runs it after the poster's current event (⚑D9, always asynchronous). An
address not in this process goes to the registry's `remote` forwarder (the Yate adapter sends
it as a Yate message), if one is set.

Python errors inside an action end only that session, logged with the action's `file:line`;
they never reach the caller of `post_event`.
"""
from __future__ import annotations

import itertools
import os
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from .diagram import CAction, CFor, CIf, CState, CTransition, Diagram
from .values import interpolate, resolve

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from .backend import DSMCallBackend

__all__ = ["Session", "SessionRegistry", "DSMException", "AppContext", "Jump", "Call",
           "Return", "BREAK", "MonitoringStore", "NO_PARAMS_EVENTS", "MAX_REPOSTS",
           "MAX_EXCEPTIONS"]

log = Logger(namespace="yaypm.dsm.runtime")

#: Spec §2.4/⚑D8: SEMS has no loop guard; yaypm drops the event after this many reposts or
#: exception re-entries within one event.
MAX_REPOSTS = 1000
MAX_EXCEPTIONS = 100

#: Events that have no parameter map (spec §2.1).
NO_PARAMS_EVENTS = frozenset({"start", "invite", "sessionStart", "earlySession"})


class DSMException(Exception):
    """A DSM exception (`throw`, `throwOnError`, actions that throw): `type` plus params.

    Caught by the runtime, which re-processes the event in exception mode (spec §2.5).
    """

    def __init__(self, type: str, params: dict[str, str] | None = None) -> None:
        self.type = type
        self.params = dict(params or {})
        self.params["type"] = type
        super().__init__(type, self.params)


class ActionError(Exception):
    """A Python error raised by an action or condition handler (a bug, not a DSM exception)."""

    def __init__(self, element: Any, error: BaseException) -> None:
        self.element = element
        self.error = error
        super().__init__(f"{element.pos}: {element.name}: {error!r}")


class _Control:
    __slots__ = ("name",)

    def __init__(self, name: str = "") -> None:
        self.name = name


class Jump(_Control):
    """Returned by jumpFSM: make diagram `name`'s initial state current."""


class Call(_Control):
    """Returned by callFSM: like Jump, after pushing the current place on the call stack."""


class Return(_Control):
    """Returned by returnFSM: pop the call stack and run the saved rest of the list."""


class _Break(_Control):
    pass


BREAK = _Break("break")
_NORMAL, _TRANSFER, _BROKE = 0, 1, 2


@dataclass(eq=False)
class AppContext:
    """What sessions of one application share: its diagram, the bundle's diagrams (for
    jumpFSM/callFSM), the bundle's config (copied to `$config.*`) and options."""

    name: str
    diagram: Diagram
    diagrams: dict[str, Diagram]
    config: dict[str, str] = field(default_factory=dict)
    legacy: bool = False                 # ⚑D1: dsm_init_mode=legacy
    run_invite_event: bool = True
    set_param_variables: bool = False
    bundle: str = ""
    engine: Any = None

    def __repr__(self) -> str:
        return f"<AppContext {self.name} diagram={self.diagram.name}>"


class MonitoringStore:
    """In-memory monitoring records keyed by session id (spec §3.5)."""

    def __init__(self, full_stategraph: bool = False, full_transitions: bool = False) -> None:
        self.full_stategraph = full_stategraph
        self.full_transitions = full_transitions
        self.active: dict[str, dict[str, Any]] = {}
        self.finished: dict[str, dict[str, Any]] = {}

    def create(self, sid: str, attrs: dict[str, Any]) -> dict[str, Any]:
        rec = dict(attrs)
        self.active[sid] = rec
        return rec

    def get(self, sid: str) -> dict[str, Any] | None:
        return self.active.get(sid) or self.finished.get(sid)

    def mark_finished(self, sid: str) -> None:
        rec = self.active.pop(sid, None)
        if rec is not None:
            self.finished[sid] = rec

    def clear_finished(self) -> None:
        self.finished.clear()


class SessionRegistry:
    """All live sessions (by id and by extra event-queue names), the clock, and the run queue.

    Scheduling is a trampoline: posting an event makes the target *ready*; ready sessions run
    only when no session is in the middle of an event, so `postEvent` is delivered after the
    poster's current event — also when the target is the poster itself.

    `remote(address, params, sender)`, when set (the Yate adapter), forwards an event for an
    address that is not in this process and returns a Deferred firing whether a process
    took it (⚑D9).
    """

    def __init__(self, clock: IReactorTime | None = None,
                 monitoring: MonitoringStore | None = None) -> None:
        if clock is None:
            from twisted.internet import reactor
            clock = reactor  # type: ignore[assignment]
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self.queues: dict[str, Session] = {}
        self.monitoring = monitoring or MonitoringStore()
        self._ready: deque[Session] = deque()
        self._depth = 0
        self._ids = itertools.count(1)
        self.remote: Callable[[str, dict[str, str], str], Deferred] | None = None

    def new_id(self) -> str:
        """⚑D2: session ids are generated by yaypm, known before any Yate message, and valid
        as Yate conference room names (no '/'); the random part keeps them unique across
        processes, as cross-process `postEvent` addresses them (⚑D9)."""
        return uuid.uuid4().hex[:8].upper() + "-" + str(next(self._ids))

    def add(self, session: Session) -> None:
        if session.id in self.sessions:
            raise ValueError(f"session id {session.id!r} is already in use")
        self.sessions[session.id] = session

    def remove(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        for q in [q for q, s in self.queues.items() if s is session]:
            del self.queues[q]

    def find(self, address: str) -> Session | None:
        return self.sessions.get(address) or self.queues.get(address)

    def post_event(self, address: str, params: dict[str, str] | None,
                   kind: str = "event") -> bool:
        """Queue an event for the session or named queue `address`; False if unknown."""
        target = self.find(address)
        if target is None or target.ended:
            return False
        target.post_event(kind, params)
        return True

    def schedule(self, session: Session) -> None:
        if not session._scheduled:
            session._scheduled = True
            self._ready.append(session)
        if self._depth == 0:
            self._pump()

    def _pump(self) -> None:
        ready = self._ready
        while ready and self._depth == 0:
            s = ready.popleft()
            s._scheduled = False
            if not s._busy and s._queue and not s.ended:
                s._start()

    def idle(self) -> bool:
        """True when no session has queued or running work (tests)."""
        return not self._ready and all(not s._busy and not s._queue for s in self.sessions.values())


class Session:
    """One DSM session (call leg): variables, current state, event queue, timers.

    Created by the Engine (`Engine.create_session`) or by `dlg.dialout`; the backend feeds it
    events through `post_event` or the helpers `invite()`, `session_start()`, `key()`…
    """

    __slots__ = ("id", "app", "backend", "registry", "var", "params", "event_kind", "diagram",
                 "state", "selects", "direction", "mod_state", "reply_sent", "ended",
                 "_queue", "_busy", "_scheduled", "_repost", "_stop", "_stop_bye", "_timers",
                 "_stack", "_record", "_started", "_legacy_reinit", "_leg_gone", "__weakref__")

    log = Logger()

    def __init__(self, app: AppContext, backend: DSMCallBackend, registry: SessionRegistry,
                 session_id: str | None = None, direction: str = "in",
                 selects: dict[str, str] | None = None,
                 variables: dict[str, str] | None = None) -> None:
        self.id = session_id or registry.new_id()
        self.app = app
        self.backend = backend
        self.registry = registry
        self.var: dict[str, str] = {}
        for k, v in app.config.items():
            self.var["config." + k] = v
        if variables:
            self.var.update(variables)
        self.params: dict[str, str] | None = None
        self.event_kind = ""
        self.diagram: Diagram = app.diagram
        self.state: CState | None = None
        self.selects = selects or {}
        self.direction = direction
        self.mod_state: dict[str, Any] | None = None
        self.reply_sent = False
        self.ended = False
        self._queue: deque[tuple[str, dict[str, str] | None]] = deque()
        self._busy = False
        self._scheduled = False
        self._repost = False
        self._stop = False
        self._stop_bye = False
        self._timers: dict[str, IDelayedCall] | None = None
        self._stack: list[tuple[Diagram, CState | None, tuple, int]] | None = None
        self._record: dict[str, Any] | None = None
        self._started = False
        self._legacy_reinit = False
        self._leg_gone = False
        registry.add(self)
        mon = registry.monitoring
        self._record = mon.create(self.id, {
            "app": app.name, "dir": direction, "from": self.selects.get("remote_party", ""),
            "to": self.selects.get("local_party", ""), "ruri": self.selects.get("local_uri", ""),
            "dsm_diag": self.diagram.name, "dsm_state": ""})
        if mon.full_stategraph or mon.full_transitions:
            self._record["dsm_stategraph"] = []
        backend.attach(self)

    def __repr__(self) -> str:
        st = self.state.name if self.state else None
        return f"<Session {self.id} {self.diagram.name}/{st}>"

    # -- what modules use -------------------------------------------------------------------

    @property
    def clock(self) -> IReactorTime:
        return self.registry.clock

    def select(self, name: str) -> str:
        if name == "local_tag":
            return self.id
        return self.selects.get(name, "")

    def resolve(self, text: str) -> str:
        return resolve(self, text)

    def interpolate(self, text: str) -> str:
        return interpolate(self, text)

    def set_errno(self, errno: str, strerror: str = "") -> None:
        self.var["errno"] = errno
        if errno or strerror:
            self.var["strerror"] = strerror

    def module_state(self, name: str, factory: Callable[[], Any]) -> Any:
        """Per-session state of module `name`, created by `factory` on first use."""
        if self.mod_state is None:
            self.mod_state = {}
        st = self.mod_state.get(name)
        if st is None:
            st = self.mod_state[name] = factory()
        return st

    def request_repost(self) -> None:
        self._repost = True

    def request_stop(self, bye: bool) -> None:
        self._stop = True
        self._stop_bye = self._stop_bye or bye

    @property
    def stopping(self) -> bool:
        return self._stop

    def set_timer(self, timer_id: str, seconds: float) -> None:
        if self._timers is None:
            self._timers = {}
        old = self._timers.pop(timer_id, None)
        if old is not None and old.active():
            old.cancel()
        self._timers[timer_id] = self.clock.callLater(seconds, self._timer_fired, timer_id)

    def remove_timer(self, timer_id: str) -> bool:
        if not self._timers or timer_id not in self._timers:
            return False
        dc = self._timers.pop(timer_id)
        if dc.active():
            dc.cancel()
        return True

    def remove_timers(self) -> None:
        for dc in (self._timers or {}).values():
            if dc.active():
                dc.cancel()
        self._timers = None

    def _timer_fired(self, timer_id: str) -> None:
        if self._timers:
            self._timers.pop(timer_id, None)
        self.post_event("timer", {"id": timer_id})

    def monitor_set(self, key: str, value: Any) -> None:
        if self._record is not None:
            self._record[key] = value

    # -- feeding events (backend / adapter / other sessions) ----------------------------------

    def post_event(self, kind: str, params: dict[str, str] | None = None) -> None:
        """Queue an event; it is processed after the events queued before it. Never raises."""
        if self.ended:
            return
        self._queue.append((kind, params))
        if not self._busy:
            self.registry.schedule(self)

    def start(self) -> None:
        """Modern model: enter the initial state (run its enter actions) and process `start`.
        Legacy model: nothing happens until `invite()`/`session_start()` (spec §2.3)."""
        if self._started:
            return
        self._started = True
        if not self.app.legacy:
            self.post_event("__init__", None)
            self.post_event("start", None)

    def invite(self) -> None:
        """The leg's INVITE arrived (inbound) or was sent (legacy outbound)."""
        if self.app.legacy:
            self._started = True
            if self.app.run_invite_event:
                self.post_event("__init__", None)
                self.post_event("invite", None)
            else:
                self.post_event("__autoanswer__", None)
            return
        self.start()
        self.post_event("invite", None)

    def session_start(self) -> None:
        """The call is established (inbound: after our answer; outbound: callee answered)."""
        if self.app.legacy and not self._legacy_reinit:
            self._legacy_reinit = True
            self.post_event("__init__", None)
        self.post_event("sessionStart", None)

    def early_session(self) -> None:
        if self.var.get("accept_early_session") == "0" or self.var.get("connect_early_session") == "0":
            return
        self.post_event("earlySession", None)

    def ringing(self, code: int = 180, reason: str = "Ringing", has_body: bool = False) -> None:
        self.post_event("ringing", {"code": str(code), "reason": reason,
                                    "has_body": "true" if has_body else "false"})

    def failed(self, code: int, reason: str) -> None:
        """The outbound leg was rejected; the session ends after this event."""
        self._leg_gone = True
        self.post_event("failed", {"code": str(code), "reason": reason})

    def key(self, key: int | str, duration_ms: int = 0) -> None:
        """A DTMF digit: 0-9, 10 for '*', 11 for '#', 12-15 for A-D (or the character)."""
        if isinstance(key, str):
            key = {"*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}.get(key.upper(), key)
        self.post_event("key", {"key": str(key), "duration": str(duration_ms)})

    def hangup(self, headers: str = "", reason: str = "") -> None:
        """The leg is gone (BYE, CANCEL before answer, missing ACK)."""
        self._leg_gone = True
        params = {"headers": headers}
        if reason:
            params["reason"] = reason
        self.post_event("hangup", params)

    def leg_closed(self) -> None:
        """The leg ended through our own doing (a final reply, `dlg.bye`, a cancelled
        dial-out): as in SEMS, whose session stops once its dialog is disconnected, the
        session ends after the events already queued, without a `hangup` event."""
        if self.ended:
            return
        self._leg_gone = True
        self.post_event("__closed__", None)

    def no_audio(self, cleared: bool = False) -> None:
        """The playlist ran empty (`cleared`: the audio was cleared)."""
        self.post_event("noAudio", {"type": "cleared" if cleared else "noAudio"})

    def separator(self, sep_id: str) -> None:
        self.post_event("separator", {"id": sep_id})

    # -- the engine ------------------------------------------------------------------------

    def _start(self) -> None:
        self._busy = True
        d = Deferred.fromCoroutine(self._drain())
        d.addErrback(self._crashed)

    def _crashed(self, f: Failure) -> None:
        self.log.failure("DSM session {session} failed", f, session=self.id)
        self._end_now()

    async def _drain(self) -> None:
        reg = self.registry
        reg._depth += 1
        try:
            while self._queue and not self.ended:
                kind, params = self._queue.popleft()
                if kind == "__init__":
                    await self._init()
                elif kind == "__autoanswer__":
                    self._auto_answer()
                elif kind == "__closed__":
                    await self._finish()
                    break
                else:
                    if kind == "invite":
                        self.reply_sent = False
                    await self._process(kind, params)
                    if kind == "invite":
                        self._auto_answer()
                if self._stop:
                    await self._finish()
                    break
                if self._leg_gone and kind in ("hangup", "failed"):
                    if kind == "hangup":
                        self.log.warn("DSM session {session} in state {state} did not stop "
                                      "after hangup: ending it (⚑D4)", session=self.id,
                                      state=self.state.name if self.state else "")
                    await self._finish()
                    break
        except ActionError as e:
            self.log.failure("DSM session {session}: {name} at {file}:{line} failed; ending the "
                             "session", Failure(e.error), session=self.id, name=e.element.name,
                             file=e.element.pos.file, line=e.element.pos.line)
            self._end_now()
        except Exception:
            self.log.failure("DSM session {session} failed; ending it", session=self.id)
            self._end_now()
        finally:
            self._busy = False
            reg._depth -= 1
            if reg._depth == 0:
                reg._pump()

    def _auto_answer(self) -> None:
        # ⚑D3: answer iff no reply was sent during `invite` and $connect_session != "0".
        if not self.reply_sent and self.var.get("connect_session") != "0" and not self.ended:
            self.reply_sent = True
            self._call_backend(self.backend.answer)

    def _call_backend(self, fn: Callable, *args: Any) -> None:
        try:
            r = fn(*args)
            if isinstance(r, Deferred):
                r.addErrback(lambda f: self.log.failure("backend call failed", f))
        except Exception:
            self.log.failure("backend call failed in session {session}", session=self.id)

    async def _init(self) -> None:
        diag = self.diagram
        if diag.initial is None:
            self.log.error("diagram {diag} has no initial state", diag=diag.name)
            self._stop = True
            return
        self.state = diag.initial
        self._graph(f"{diag.name}/{diag.initial.name}")
        self.monitor_set("dsm_state", diag.initial.name)
        init_kind = "start"
        if self.app.legacy:
            init_kind = "sessionStart" if self._legacy_reinit else "invite"
        self.event_kind = init_kind
        self.params = None
        try:
            saved = self._repost
            await self._run(diag.initial.enter)
            self._repost = saved        # a repost() in the initial enter actions has no effect
        except DSMException as e:
            # at start-up the event type stays the start-up event's (spec §2.5)
            await self._process(init_kind, e.params, exception_mode=True,
                                exception_kind=init_kind)

    def _graph(self, entry: str) -> None:
        rec = self._record
        if rec is not None and "dsm_stategraph" in rec:
            rec["dsm_stategraph"].append(entry)

    async def _process(self, kind: str, params: dict[str, str] | None,
                       exception_mode: bool = False, exception_kind: str = "exception") -> None:
        """Spec §2.4: first matching transition of the current state; repost; exceptions."""
        reposts = 0
        exceptions = 0
        while True:
            self._repost = False
            self.event_kind = exception_kind if exception_mode else kind
            self.params = params
            state = self.state
            if state is None:
                return
            try:
                for t in state.transitions:
                    if t.exception != exception_mode or not self._match(t.conditions):
                        continue
                    await self._take(state, t)
                    break
            except DSMException as e:
                exceptions += 1
                if exceptions > MAX_EXCEPTIONS:
                    self.log.error("DSM session {session}: more than {n} exceptions in one event "
                                   "in state {state}; dropping the event", session=self.id,
                                   n=MAX_EXCEPTIONS, state=self.state.name if self.state else "")
                    return
                exception_mode = True
                params = e.params
                self._repost = True
            if not self._repost:
                return
            reposts += 1
            if reposts > MAX_REPOSTS:
                self.log.error("DSM session {session}: more than {n} reposts of one event in "
                               "state {state}; dropping the event", session=self.id,
                               n=MAX_REPOSTS, state=self.state.name if self.state else "")
                return

    def _match(self, conds: tuple) -> bool:
        kind = self.event_kind
        for c in conds:
            ev = c.events
            try:
                ok = (ev is None or kind in ev) and bool(c.fn(self, *c.parts))
            except DSMException:
                raise
            except Exception as e:
                raise ActionError(c, e) from e
            if ok == c.negated:
                return False
        return True

    async def _take(self, state: CState, t: CTransition) -> None:
        diag = self.diagram
        target = diag.states.get(t.target)
        if await self._run(state.exit):
            return
        if await self._run(t.actions):
            return
        if target is None:
            self.log.error("DSM session {session}: transition '{transition}' ({file}:{line}) "
                           "targets unknown state '{target}'; state unchanged",
                           session=self.id, transition=t.name, file=t.pos.file, line=t.pos.line,
                           target=t.target)
            return
        self.state = target
        mon = self.registry.monitoring
        if mon.full_transitions:
            self._graph(f"> {t.name} >")
        if mon.full_stategraph or mon.full_transitions:
            self._graph(f"{diag.name}/{target.name}")
        self.monitor_set("dsm_state", target.name)
        await self._run(target.enter)

    async def _run(self, stmts: tuple) -> int:
        """Execute statements; returns _NORMAL, _TRANSFER (jump/call/return/break) or _BROKE."""
        for idx, st in enumerate(stmts):
            cls = type(st)
            if cls is CAction:
                try:
                    r = st.fn(self, *st.parts)
                except DSMException:
                    raise
                except Exception as e:
                    raise ActionError(st, e) from e
                if r is None:
                    continue
                if isinstance(r, Deferred):
                    r = await self._await(r, st)
                    if r is None:
                        continue
                if isinstance(r, _Control):
                    return await self._control(r, stmts, idx)
            elif cls is CIf:
                branch = st.then if self._match(st.conditions) else st.otherwise
                if branch:
                    code = await self._run(branch)
                    if code:
                        return code
            elif cls is CFor:
                code = await self._for(st)
                if code == _TRANSFER:
                    return code
        return _NORMAL

    async def _await(self, d: Deferred, st: CAction) -> Any:
        if d.called:
            return await d
        reg = self.registry
        reg._depth -= 1
        if reg._depth == 0:
            reg._pump()
        try:
            return await d
        except DSMException:
            raise
        except Exception as e:
            raise ActionError(st, e) from e
        finally:
            reg._depth += 1

    async def _control(self, ctl: _Control, stmts: tuple, idx: int) -> int:
        if ctl is BREAK:
            return _BROKE
        if isinstance(ctl, Return):
            if not self._stack:
                self.log.error("returnFSM with empty call stack in session {session}",
                               session=self.id)
                return await self._continue(stmts, idx)
            diag, state, rest, at = self._stack.pop()
            self.diagram, self.state = diag, state
            self._graph(f"{diag.name}/{state.name if state else ''}")
            self.monitor_set("dsm_diag", diag.name)
            self.monitor_set("dsm_state", state.name if state else "")
            await self._run(rest[at:])
            return _TRANSFER
        target = self.app.diagrams.get(ctl.name)
        if target is None or target.initial is None:
            self.log.error("{kind}: unknown diagram '{name}' in session {session}",
                           kind=type(ctl).__name__, name=ctl.name, session=self.id)
            return await self._continue(stmts, idx)
        if isinstance(ctl, Call):
            if self._stack is None:
                self._stack = []
            self._stack.append((self.diagram, self.state, stmts, idx + 1))
        self.diagram = target
        self.state = target.initial
        self._graph(f"{target.name}/{target.initial.name}")
        self.monitor_set("dsm_diag", target.name)
        self.monitor_set("dsm_state", target.initial.name)
        saved = self._repost
        await self._run(target.initial.enter)
        self._repost = saved            # repost() inside the new enter actions is ignored
        return _TRANSFER

    async def _continue(self, stmts: tuple, idx: int) -> int:
        """Unknown diagram / empty stack: error logged, the list continues."""
        return await self._run(stmts[idx + 1:])

    async def _for(self, f: CFor) -> int:
        var = self.var
        names = [f.var] + ([f.key] if f.kind == "struct" else [])
        saved = {n: var.get(n) for n in names}
        code = _NORMAL
        try:
            if f.kind == "range":
                try:
                    a = int(self.resolve(f.start) or 0)
                    b = int(self.resolve(f.stop) or 0)
                except ValueError:
                    self.log.error("for: bad range({a}, {b}) at {pos}", a=f.start, b=f.stop,
                                   pos=str(f.pos))
                    return _NORMAL
                step = 1 if b >= a else -1
                values: Any = (str(i) for i in range(a, b, step))
                for v in values:
                    var[f.var] = v
                    code = await self._run(f.body)
                    if code:
                        break
            elif f.kind == "array":
                i = 0
                while True:     # ⚑D8: numeric indices, not SEMS's sorted-map walk
                    key = f"{f.array}[{i}]"
                    if key not in var:
                        break
                    var[f.var] = var[key]
                    code = await self._run(f.body)
                    if code:
                        break
                    i += 1
            else:
                prefix = f.array
                items = sorted((k[len(prefix) + 1:], v) for k, v in var.items()
                               if k.startswith(prefix) and len(k) > len(prefix) + 1
                               and k not in names)
                for k, v in items:
                    var[f.key] = k
                    var[f.var] = v
                    code = await self._run(f.body)
                    if code:
                        break
        finally:
            for n, old in saved.items():
                if old is None:
                    var.pop(n, None)
                else:
                    var[n] = old
        return _TRANSFER if code == _TRANSFER else _NORMAL

    async def _finish(self) -> None:
        """End after the current event: BYE if asked, `beforeDestroy`, cleanup."""
        if self.ended:
            return
        if self._stop_bye and not self._leg_gone:
            self._call_backend(self.backend.hangup, "")
        self._stop = False
        try:
            await self._process("beforeDestroy", {})
        except Exception:
            self.log.failure("beforeDestroy failed in session {session}", session=self.id)
        self._end_now()

    def _end_now(self) -> None:
        if self.ended:
            return
        self.ended = True
        self._queue.clear()
        self.remove_timers()
        self.registry.remove(self)
        self.registry.monitoring.mark_finished(self.id)
        mods = {id(m): m for d in (self.diagram, *self.app.diagrams.values()) for m in d.modules}
        for mod in mods.values():
            try:
                mod.session_end(self)
            except Exception:
                self.log.failure("module {module} session_end failed", module=mod.name)
        if not self._leg_gone and not self._stop_bye:
            # ⚑D4: stop(false) on a live leg drops our side of the call quietly
            self._call_backend(self.backend.release)
        ended = getattr(self.backend, "session_ended", None)
        if ended is not None:
            self._call_backend(ended, self)
        self.log.debug("DSM session {session} ended", session=self.id)
