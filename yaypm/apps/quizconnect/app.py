"""quizconnect, the Deferred/async version: the first callee to type the right PIN gets the call.

The call flow, as :meth:`QuizConnect.call` reads from top to bottom:

1. A call to a handled number arrives; the callees registered for the dialled number are looked
   up (bound parameters) while ``call.route`` waits (the route's guard).  No callee: the
   number is left to Yate's other routers (``call.route`` unhandled; 404 unless one routes
   it) — or, with ``only_numbers_with_callees = no``, claimed and answered 404.  Database
   trouble -> the call is claimed and answered 500, logged with the cause.  The app uses the
   guard's lookup (``leg.claim``); the database is asked once per call.
2. The caller gets early media (SIP 183) and hears ``welcome_caller``, then ringback.
3. Every callee is called at once (``target`` template, ``ring_timeout``).  Each one that
   answers hears ``welcome_callee`` and types digits; ``#`` or ``*`` submits (typing exactly the
   PIN is enough, as in the SEMS tutorial); a wrong PIN plays ``sorry_pin_wrong`` and starts
   over, ``attempts`` times, then ``pin_goodbye`` and that leg hangs up.  Keys interrupt
   prompts.  A busy, rejecting or unreachable callee simply drops out of the race.
4. The race (``defer.race``) has exactly one winner, even when two PINs complete in the same
   instant: the first Deferred to fire wins and the race cancels the others *synchronously*,
   before any other message is read.  Cancelling a contender is its cleanup: an unanswered leg
   is cancelled (SIP CANCEL), an answered one hung up (BYE).
5. The caller is answered (200) and connected with the winner: directly with ``chan.connect``
   (``connect = bridge``, the default; trace D1 shows it end to end, including a hang-up on one
   side ending the other) or through the conference room named after the caller's leg
   (``connect = conference``; trace D2).  Either side hanging up hangs up the other.
6. Teardown: the caller cancelling while callees ring cancels every callee leg (the caller's SIP
   channel answers 487 itself); nobody winning within ``overall_timeout`` (or every callee
   dropping out) -> 480 and every leg dropped.

Wiring::

    qc = QuizConnect(load_config("quizconnect.conf"))
    qc.start(dispatcher)                  # claims the numbers; one flow per call

Every leg is registered in a :class:`~yaypm.registry.CallRegistry` (``app=quizconnect``,
``role``, ``state`` — also as ``dsm_state``, the attribute SEMS monitoring scripts read), and
every step is reported to the optional ``observer(event)`` (the ``yaypm demo`` timeline).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from yaypm.flow import XOR, sleep
from yaypm.ivr import CallEnded, DialError, Leg, dial, route
from yaypm.registry import CallRegistry, default_registry
from yaypm.sql import Database

from yaypm.apps.quizconnect.config import QuizConfig
from yaypm.apps.quizconnect.store import Callee, CalleeStore

if TYPE_CHECKING:
    from yaypm.dispatcher import Dispatcher
    from yaypm.ivr import Route

__all__ = ["QuizConnect", "QuizEvent", "WrongPinError", "NobodyWonError", "room_for"]

log = Logger(namespace="yaypm.apps.quizconnect")

APP = "quizconnect"


class WrongPinError(Exception):
    """A callee used up its attempts without typing its PIN."""

    def __init__(self, callee: str, attempts: int) -> None:
        super().__init__(f"{callee}: no right PIN in {attempts} attempt(s)")
        self.callee = callee
        self.attempts = attempts


class NobodyWonError(Exception):
    """Every callee dropped out (busy, no answer, wrong PINs) before anybody won."""


@dataclass(frozen=True)
class QuizEvent:
    """One step of a call, for observers: ``time`` (clock seconds), ``call`` (the caller's
    channel), ``who`` (``caller`` or the callee's name), ``what`` and details."""
    time: float
    call: str
    who: str
    what: str
    details: Dict[str, Any] = field(default_factory=dict)


def room_for(leg_id: str) -> str:
    """The conference room named after a caller leg (``sip/7`` -> ``quizconnect-sip-7``):
    room names must not contain ``/`` (``conf/<room>``)."""
    return APP + "-" + re.sub(r"[^A-Za-z0-9_.-]", "-", leg_id)


def _quiet(f: Any, leg: Leg) -> None:
    """The end of a background operation that nobody waits for: expected ends are silent."""
    if not f.check(CallEnded, defer.CancelledError):
        log.failure("quizconnect: background operation on {chan} failed", f, chan=leg.id)


@dataclass(frozen=True)
class _Lookup:
    """The route guard's callee lookup, kept for the call (``leg.claim``): the callees, or the
    database error.  True (the number is ours) when there are callees or an error to answer."""
    callees: Sequence[Callee] = ()
    error: Optional[Exception] = None

    def __bool__(self) -> bool:
        return bool(self.callees) or self.error is not None


class QuizConnect:
    """The quizconnect app: ``start(dispatcher)`` routes its numbers to :meth:`call`.

    ``store`` defaults to a :class:`CalleeStore` on ``config.db_url`` (``threaded`` decides the
    SQL executor: the reactor's thread pool, or inline for SQLite on a ``task.Clock``).
    ``observer`` gets every :class:`QuizEvent`.
    """

    def __init__(self, config: QuizConfig, store: Optional[CalleeStore] = None, *,
                 registry: Optional[CallRegistry] = None,
                 observer: Optional[Callable[[QuizEvent], None]] = None,
                 threaded: bool = True) -> None:
        self.config = config
        self.store = store if store is not None else \
            CalleeStore(Database(config.db_url, threaded=threaded))
        self.registry = registry if registry is not None else default_registry()
        self.observer = observer
        self.dispatcher: Optional["Dispatcher"] = None
        self.stats = {"calls": 0, "connected": 0, "not_found": 0, "left_to_yate": 0,
                      "db_errors": 0, "nobody": 0, "caller_left": 0}

    def start(self, dispatcher: "Dispatcher") -> "Route":
        """Claim the numbers of ``config.number`` on ``dispatcher`` — only those with callees
        when ``config.only_numbers_with_callees`` (an SQLite callee table is created on the
        first start)."""
        if self.dispatcher is None and self.store.db.scheme == "sqlite":
            self.store.init().addErrback(
                lambda f: log.error("quizconnect: cannot create the callees table: {error}",
                                    error=f.getErrorMessage()))
        self.dispatcher = dispatcher
        guard = self._lookup if self.config.only_numbers_with_callees else None
        return route(dispatcher, self.config.handles, self.call, guard=guard)

    async def _lookup(self, msg: Any) -> _Lookup:
        """The route guard: the callees of the dialled number; none -> not ours (Yate routes
        it); a database error -> ours, so that the call gets 500."""
        called = msg.get("called", "")
        try:
            callees = await self.store.lookup(called)
        except Exception as e:          # DatabaseError, or a driver error it did not wrap
            return _Lookup(error=e)
        if not callees:
            self.stats["left_to_yate"] += 1
            log.info("quizconnect: no callee for {called}, left to Yate's routing",
                     called=called, chan=msg.get("id", ""))
        return _Lookup(callees)

    def _callees(self, caller: Leg) -> "Deferred[List[Callee]]":
        """The callees of the call: the route guard's lookup, or a lookup now."""
        claim = caller.claim
        if isinstance(claim, _Lookup):
            if claim.error is not None:
                return defer.fail(claim.error)
            return defer.succeed(list(claim.callees))
        return self.store.lookup(caller.called)

    # -- the call flow ------------------------------------------------------------------------
    async def call(self, caller: Leg) -> None:
        """One incoming call, from lookup to hang-up (see the module documentation)."""
        self.stats["calls"] += 1
        rec = self.registry.start(None, app=APP, role="caller", dir="in", chan=caller.id or "",
                                  **{"from": caller.caller, "to": caller.called,
                                     "ruri": caller.params.get("sip_uri", caller.called)})
        outcome = "normal"
        try:
            outcome = await self._call(caller, rec)
        except CallEnded:
            outcome = "caller-left"
            raise
        finally:
            self._state(rec, "END")
            self.registry.end(rec, outcome)

    async def _call(self, caller: Leg, rec: str) -> str:
        cfg = self.config
        self._state(rec, "LOOKUP")
        try:
            callees = await self._callees(caller)
        except Exception as e:          # DatabaseError, or a driver error it did not wrap
            self.stats["db_errors"] += 1
            log.error("quizconnect: callee lookup for {called} failed, answering 500: {error}",
                      called=caller.called, error=str(e), chan=caller.id)
            self._emit(caller, "caller", "db-error", error=str(e))
            await caller.reject(500)
            return "db-error"
        if not callees:
            self.stats["not_found"] += 1
            log.info("quizconnect: no callee for {called}, answering 404",
                     called=caller.called, chan=caller.id)
            self._emit(caller, "caller", "no-callees")
            await caller.reject(404)
            return "not-found"

        await caller.progress()                           # 183: early media, not answered
        self._state(rec, "WAIT_CALLEE", callees=len(callees))
        self._emit(caller, "caller", "early-media", callees=[c.callee for c in callees])
        hold = Deferred.fromCoroutine(self._hold(caller)).addErrback(_quiet, caller)
        try:
            winner, callee = await self._first_right_pin(caller, callees)
        except NobodyWonError as e:
            self.stats["nobody"] += 1
            log.info("quizconnect: nobody won for {called}: {why}", called=caller.called,
                     why=str(e), chan=caller.id)
            self._emit(caller, "caller", "nobody-won", why=str(e))
            await caller.reject(480)
            return "nobody"
        finally:
            hold.cancel()
        if winner is None:
            self.stats["caller_left"] += 1
            self._emit(caller, "caller", "caller-left")
            return "caller-left"

        try:
            self._emit(caller, callee.callee, "won", chan=winner.id)
            await caller.answer()                          # 200, only now
            self._emit(caller, "caller", "answered")
            try:
                await self._connect(caller, winner)
            except CallEnded as e:
                if e.leg_id != winner.id:
                    raise
                self._emit(caller, callee.callee, "left", reason=e.reason)
                return "winner-left"                        # the caller is hung up next
            self.stats["connected"] += 1
            self._state(rec, "CONNECTED", callee=callee.callee)
            self._emit(caller, "caller", "connected", callee=callee.callee, mode=cfg.connect)
            first, _ = await XOR(caller.ended, winner.ended)
            self._emit(caller, "caller", "call-ended",
                       by=caller.caller or "caller" if first == 0 else callee.callee)
            return "connected"
        finally:
            if winner.alive:                               # the other side goes too
                winner.hangup()

    async def _hold(self, caller: Leg) -> None:
        """What the caller hears while the callees are tried: the welcome, then ringback."""
        await caller.play(self.config.prompt("welcome_caller"))
        await caller.tone("ring")

    async def _first_right_pin(self, caller: Leg, callees: Sequence[Callee]
                               ) -> Tuple[Optional[Leg], Callee]:
        """Race every callee; fires with (winning leg, its row), or (None, _) when the caller
        left first.  NobodyWonError when every callee dropped out or the time is up."""
        contenders = [Deferred.fromCoroutine(self._contender(caller, c)) for c in callees]
        pins = defer.race(contenders)
        try:
            index, result = await XOR(pins, caller.ended,
                                      sleep(self.config.overall_timeout, clock=caller.clock))
        except defer.FailureGroup:
            raise NobodyWonError("every callee dropped out") from None
        if index == 0:
            which, leg = result
            return leg, callees[which]
        if index == 1:
            return None, callees[0]
        raise NobodyWonError(f"nobody won in {self.config.overall_timeout:g} s")

    async def _contender(self, caller: Leg, callee: Callee) -> Leg:
        """Call one callee and ask for its PIN; fires with the answered leg once it typed it.

        Any other end — busy, no answer, too many wrong PINs, cancelled because somebody else
        won or the caller left — hangs that leg up (or cancels it while it rings).
        """
        cfg = self.config
        who = callee.callee
        rec = self.registry.start(None, app=APP, role="callee", dir="out", callee=who,
                                  caller_chan=caller.id or "", **{"from": cfg.caller_id,
                                                                  "to": who})
        leg: Optional[Leg] = None
        won = False
        outcome = "cancelled"
        try:
            self._state(rec, "DIALLING")
            target = cfg.callee_target(who, caller.called, caller.caller)
            self._emit(caller, who, "dialling", target=target)
            leg = await dial(caller.dispatcher, target, caller=cfg.caller_id,
                             timeout=cfg.ring_timeout)
            self.registry.set(rec, chan=leg.id or "")
            self._state(rec, "ENTER_PIN")
            self._emit(caller, who, "answered", chan=leg.id)
            prompt = cfg.prompt("welcome_callee")
            for attempt in range(1, cfg.attempts + 1):
                typed = await self._enter_pin(leg, callee.pin, prompt)
                if typed == callee.pin:
                    self._emit(caller, who, "right-pin", typed=typed, attempt=attempt)
                    won = True
                    outcome = "won"
                    self._state(rec, "CONNECTED")
                    return leg
                self._emit(caller, who, "wrong-pin", typed=typed, attempt=attempt)
                prompt = cfg.prompt("sorry_pin_wrong")
            outcome = "wrong-pin"
            self._emit(caller, who, "gave-up", attempts=cfg.attempts)
            await leg.play(cfg.prompt("pin_goodbye"))
            raise WrongPinError(who, cfg.attempts)
        except DialError as e:
            outcome = e.reason
            self._emit(caller, who, "dropped", reason=e.reason, code=e.code)
            raise
        except CallEnded as e:
            outcome = "hung-up"
            self._emit(caller, who, "left", reason=e.reason)
            raise
        except defer.CancelledError:
            self._emit(caller, who, "cancelled" if leg is None else "hung-up")
            raise
        except WrongPinError:
            raise
        except Exception:
            outcome = "error"
            log.failure("quizconnect: the leg to {callee} failed", callee=who, chan=caller.id)
            raise
        finally:
            if not won and leg is not None and leg.alive:
                leg.hangup()
            self._state(rec, "END")
            self.registry.end(rec, outcome)

    async def _enter_pin(self, leg: Leg, pin: str, prompt: str) -> str:
        """One attempt: play ``prompt`` (keys stop it), collect keys until ``#``/``*`` or until
        the keys typed are the PIN; fires with what was typed (a timeout ends the attempt)."""
        cfg = self.config
        await leg.play(prompt, barge_in=True)
        typed = ""
        while True:
            try:
                key = await leg.next_key(cfg.interdigit_timeout if typed else cfg.pin_timeout)
            except defer.TimeoutError:
                return typed
            if key in "#*":
                return typed
            typed += key
            if typed == pin:
                return typed

    async def _connect(self, caller: Leg, winner: Leg) -> None:
        if self.config.connect == "conference":
            room = room_for(caller.id or "caller")
            await caller.join(room)
            await winner.join(room)
        else:
            await caller.bridge(winner)

    # -- helpers -----------------------------------------------------------------------------
    def _state(self, rec: str, state: str, **attrs: Any) -> None:
        self.registry.set(rec, state=state, dsm_state=state, **attrs)

    def _emit(self, caller: Leg, who: str, what: str, **details: Any) -> None:
        if self.observer is None:
            return
        event = QuizEvent(caller.clock.seconds(), caller.id or "", who, what, details)
        try:
            self.observer(event)
        except Exception:
            log.failure("quizconnect observer failed")
