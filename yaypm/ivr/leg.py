"""One call leg driven from a Yate dumb channel: answer, play, record, digits, bridge, hang up.

A :class:`Leg` is the far party as the IVR sees it: ``id`` is the party's channel (``sip/7``),
``chan`` our dumb channel connected to it (``dumb/3``), through which prompts, tones and
recorders are attached (``chan.masquerade`` + ``chan.attach``, yate-messages §4).  Legs come
from :func:`yaypm.ivr.routing.route` (incoming calls) and :func:`dial` (outgoing calls); the
:class:`~yaypm.ivr.switchboard.Switchboard` of the dispatcher feeds them Yate's messages.

Every operation returns a new Deferred (await it in ``async def``, yield it in a ``go`` flow):

* it errbacks :class:`~yaypm.ivr.errors.CallEnded` as soon as the leg is gone;
* cancelling it undoes it: the prompt is detached, the recorder stopped, the timer removed.

The leg's messages to Yate (answer, attaches, detaches, DTMF) are sent one at a time, in order:
Yate may otherwise process two back-to-back messages in either order (pitfall 9).
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import (TYPE_CHECKING, Any, Callable, Deque, Dict, List, NamedTuple,
                    Optional, Sequence, Union)

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from yaypm.flow import XOR, sleep as _sleep
from yaypm.ivr.digits import DTMFStream, Keypad
from yaypm.ivr.errors import (BridgeError, CallEnded, IVRError, code_for_reason, dial_error,
                              reason_for_code)
from yaypm.ivr.media import CONSUMER, SOURCE, Media, RecordResult, bytes_per_second, resource

if TYPE_CHECKING:
    from yaypm.dispatcher import Dispatcher, Message
    from yaypm.ivr.switchboard import Switchboard

__all__ = ["Leg", "Call", "Joined", "dial", "originate"]

# Channel statuses that are not a drop reason (yate-messages §1.1); any other status in a
# chan.hangup is the reason the channel was dropped with (``ivr-done``, ``noanswer``...).
_PLAIN_STATUSES = frozenset(["incoming", "outgoing", "prerouted", "routed", "accepted",
                             "ringing", "progressing", "answered", "dropped", ""])

# SIP reason phrases for rejecting in call.route (Yate puts ``reason`` in the response line).
_PHRASES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            406: "Not Acceptable", 408: "Request Timeout", 410: "Gone",
            415: "Unsupported Media Type", 480: "Temporarily Unavailable",
            481: "Call/Transaction Does Not Exist", 483: "Too Many Hops",
            484: "Address Incomplete", 486: "Busy Here", 488: "Not Acceptable Here",
            491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented",
            503: "Service Unavailable", 504: "Server Time-out"}


_PHRASE_CODES = {phrase: code for code, phrase in _PHRASES.items()}

# cause_sip -> reason, as Yate's dict_errors maps a SIP code back (first name of the code).
_CODE_NAMES = {486: "busy", 600: "busy", 480: "noanswer", 487: "noanswer", 408: "noconn",
               404: "noroute", 604: "noroute", 403: "forbidden", 603: "forbidden",
               500: "failure", 503: "noconn", 406: "rejected", 606: "rejected",
               484: "incomplete", 410: "unallocated", 483: "looping", 488: "unacceptable"}


class Joined(NamedTuple):
    """A leg's place in a conference: Yate's room id (``conf/room1``), whether the join created
    the room, and the number of users after it."""
    room: str
    newroom: bool
    users: int


class _Control:
    __slots__ = ("name", "attrs", "deferred", "sent")

    def __init__(self, name: str, attrs: Dict[str, Any]) -> None:
        self.name = name
        self.attrs = attrs
        self.deferred: Optional[Deferred] = None
        self.sent = False


class Leg:
    """One call leg: the far party (``id``) as driven from our dumb channel (``chan``).

    States: ``routing`` (incoming, ``call.route`` not answered yet), ``ringing`` (routed to our
    dumb channel, ringing), ``calling`` (outgoing, not answered), ``progressing`` (early
    media), ``answered``, ``bridged`` (``chan.connect``-ed to another leg: no dumb channel),
    ``conference``, ``ended``.
    """

    log = Logger()

    def __init__(self, board: "Switchboard", leg_id: Optional[str], *,
                 chan: Optional[str] = None, direction: str = "incoming",
                 params: Optional[Dict[str, str]] = None, state: str = "routing") -> None:
        self.board = board
        self.dispatcher: "Dispatcher" = board.dispatcher
        self.clock: Any = board.timers        # the dispatcher's clock, through one heap
        self.id = leg_id
        self.chan = chan
        self.direction = direction
        self.params: Dict[str, str] = dict(params or {})
        self.state = state
        self.is_answered = False
        self.peer: Optional[str] = None          # the bridged party's channel
        self.room: Optional[str] = None          # conference room (``conf/<name>``)
        self.end_reason: Optional[str] = None
        self.end_params: Dict[str, str] = {}
        self.app: Optional[Deferred] = None      # the flow running this leg, if any
        self.claim: Any = None                   # what its route's guard answered (routing)
        self.target: Optional[str] = None        # what dial() called
        self.record_id: Optional[str] = None     # its id in the switchboard's CallRegistry
        self._children: List[Deferred] = []      # dials placed by leg.dial(), not answered
        self._child_legs: List["Leg"] = []       # ... and answered
        self.keypad = Keypad(self)
        self._waits: Dict[Deferred, Optional[Callable[[], None]]] = {}
        self._ended_waiters: List[Deferred] = []
        self._ready_waiters: List[Deferred] = []
        self._queue: Deque[_Control] = deque()
        self._in_flight: Optional[_Control] = None
        self._media: Dict[str, Optional[Media]] = {SOURCE: None, CONSUMER: None}
        self._tags: set = set()
        self._tag_ids = itertools.count(1)
        self._route_msg: Optional["Message"] = None
        self._route_reject: Optional[str] = None
        self._drop_after_route: Optional[str] = None
        self._drop_reason: Optional[str] = None
        self._disc_reason: Optional[str] = None
        self._party_gone: Optional[Dict[str, str]] = None    # the party's chan.hangup
        self._unhooking = False                   # our dumb channel is leaving on purpose
        self._answer_waiters: List[Deferred] = []
        self._progress_listeners: List[Callable[[str, Any], Any]] = []
        self._dial_cancelled = False
        self.started = self.clock.seconds()

    # -- identity ---------------------------------------------------------------------------------
    @property
    def caller(self) -> str:
        return self.params.get("caller", "")

    @property
    def called(self) -> str:
        return self.params.get("called", "")

    @property
    def callername(self) -> str:
        return self.params.get("callername", "")

    @property
    def billid(self) -> str:
        return self.params.get("billid", "")

    @property
    def alive(self) -> bool:
        return self.state != "ended"

    def __repr__(self) -> str:
        return f"<Leg {self.id} via {self.chan} {self.state}>"

    # -- ending -----------------------------------------------------------------------------------
    @property
    def ended(self) -> Deferred[str]:
        """A new Deferred firing with the end reason when the leg is gone (at once if it is).

        Reasons: ``hangup`` (the far end hung up normally), our own hang-up/reject reason,
        ``busy``/``noanswer``/... from Yate, ``transferred``, ``gone``.  Cancelling it only
        stops this one observer.
        """
        if self.state == "ended":
            return defer.succeed(self.end_reason or "ended")
        d: Deferred[str] = Deferred(lambda d: self._ended_waiters.remove(d))
        self._ended_waiters.append(d)
        return d

    def _end(self, reason: str, params: Optional[Dict[str, str]] = None) -> None:
        """The leg is gone: forget it, fire ``ended``, fail every pending operation."""
        if self.state == "ended":
            return
        self.state = "ended"
        self.end_reason = reason
        if params:
            self.end_params = params
        self.board._forget(self)
        self.log.debug("Leg {chan} ended: {reason}", chan=self.id, reason=reason)
        waiters, self._ended_waiters = self._ended_waiters, []
        for d in waiters:
            d.callback(reason)
        exc = CallEnded(self.id, reason)
        answer_waiters, self._answer_waiters = self._answer_waiters, []
        for d in answer_waiters:
            self._waits.pop(d, None)
            if not d.called:
                d.errback(Failure(self._unanswered_error(reason)))
        queue = list(self._queue)
        if self._in_flight is not None:
            queue.append(self._in_flight)
        self._queue.clear()
        for entry in queue:
            if entry.deferred is not None and not entry.deferred.called:
                entry.deferred.errback(Failure(exc))
        waits, self._waits = self._waits, {}
        for d, cleanup in waits.items():
            if cleanup is not None:
                cleanup()
            if not d.called:
                d.errback(Failure(exc))
        self._ready_waiters.clear()
        self._progress_listeners.clear()
        self.keypad.reset()

    def _reason(self) -> str:
        """Why the leg ended: our own hang-up reason, else the reason our dumb channel (or the
        party) was disconnected with, else what the party's chan.hangup says, else ``hangup``."""
        if self._drop_reason:
            return self._drop_reason
        if self._disc_reason:
            return self._disc_reason
        party = self._party_gone or {}
        code = party.get("cause_sip", "")
        if self.direction == "outgoing" and code.isdigit() and int(code) >= 300:
            return _CODE_NAMES.get(int(code), "rejected")
        status = party.get("status", "")
        if status not in _PLAIN_STATUSES:
            return status
        return "hangup"

    def _dial_failure(self, reason: str) -> Exception:
        """The exception for a dial that ended unanswered (trace C3's three endings)."""
        party = self._party_gone or {}
        code_text = party.get("cause_sip", "")
        code = int(code_text) if code_text.isdigit() else None
        status = party.get("status", "") or self.end_params.get("status", "")
        if code is None and reason != "noanswer" and status != "noanswer":
            code = _PHRASE_CODES.get(party.get("reason", ""))   # e.g. 408 Request Timeout
        return dial_error(self.target or "", reason, code, status)

    # -- messages from the switchboard ------------------------------------------------------------
    def _executed(self, msg: "Message") -> None:
        """The call.execute watch after our route answer: it names our dumb channel (§3.1)."""
        chan = msg.get("peerid") or msg.get("targetid")
        if self.chan is not None or self.state == "ended":
            return
        if not msg.processed or not chan:
            self._end(msg.get("reason") or msg.get("error") or "failure", msg.attrs)
            return
        self.chan = chan
        self.board._map(chan, self)
        if self.state == "routing":
            self.state = "ringing"
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            self._settle(d, None)

    def _on_ivr(self) -> bool:
        """Our dumb channel is the party's peer (not bridged, in a room, or moving away)."""
        return self.chan is not None and not self._unhooking and \
            self.state not in ("bridged", "conference")

    def _hangup_seen(self, msg: "Message") -> None:
        cid = msg.get("id")
        if cid == self.id:
            self._party_gone = msg.attrs
            if not self._on_ivr():
                self._end(self._reason(), msg.attrs)
            # else our dumb channel reports next, with the disconnect reason (busy, noconn...)
        elif cid == self.chan:
            on_ivr = self._on_ivr()
            self.board._unmap(cid)
            self.chan = None
            if on_ivr or self._party_gone is not None:
                self._end(self._reason(), {**(self._party_gone or {}), **msg.attrs})

    def _disconnected(self, msg: "Message") -> None:
        cid = msg.get("id")
        if cid == self.chan and self._on_ivr():
            # Our dumb channel lost the party: it hangs up next, so the IVR is over now.
            if msg.get("reason"):
                self._disc_reason = msg.get("reason")
            self._end(self._reason(), {**(self._party_gone or {}), **msg.attrs})
        elif cid == self.id and msg.get("reason"):
            self._disc_reason = msg.get("reason")

    def _remote_answered(self, msg: "Message") -> None:
        if self.direction != "outgoing" or self.is_answered or self.state == "ended":
            return
        self.params.update((k, v) for k, v in msg.attrs.items() if k not in self.params)
        self._now_answered()

    def _now_answered(self) -> None:
        self.is_answered = True
        if self.state in ("ringing", "progressing", "calling"):
            self.state = "answered"
        waiters, self._answer_waiters = self._answer_waiters, []
        for d in waiters:
            self._settle(d, self)

    def _unanswered_error(self, reason: str) -> Exception:
        if self.direction == "outgoing" and not self.is_answered:
            return self._dial_failure(reason)
        return CallEnded(self.id, reason)

    def answered(self) -> Deferred["Leg"]:
        """Fires with the leg once it is answered (at once if it is): by the callee for an
        outgoing leg, by us (``answer()``) for an incoming one.  An outgoing leg that ends
        unanswered errbacks with :class:`~yaypm.ivr.errors.BusyError`,
        :class:`~yaypm.ivr.errors.NoAnswerError` or :class:`~yaypm.ivr.errors.RejectedError`;
        otherwise :class:`~yaypm.ivr.errors.CallEnded`.  Cancelling only stops waiting."""
        if self.is_answered and self.state != "ended":
            return defer.succeed(self)
        if self.state == "ended":
            return defer.fail(self._unanswered_error(self.end_reason or "ended"))
        d: Deferred = self._wait(lambda: self._answer_waiters.remove(d)
                                 if d in self._answer_waiters else None)
        self._answer_waiters.append(d)
        return d

    def _remote_progress(self, msg: "Message") -> None:
        if self.direction == "outgoing" and not self.is_answered and self.state != "ended":
            kind = "progress" if msg.name == "call.progress" else "ringing"
            self.state = "progressing" if kind == "progress" else "ringing"
            for callback in list(self._progress_listeners):
                try:
                    callback(kind, msg)
                except Exception:
                    self.log.failure("Progress listener failed on {chan}", chan=self.id)

    def on_progress(self, callback: Callable[[str, "Message"], Any]) -> Callable[[], None]:
        """Call ``callback(kind, message)`` when an outgoing leg rings (``ringing``, SIP 180)
        or gets early media (``progress``, 183); returns a function removing it."""
        self._progress_listeners.append(callback)

        def remove() -> None:
            if callback in self._progress_listeners:
                self._progress_listeners.remove(callback)
        return remove

    def _dtmf(self, msg: "Message") -> bool:
        """A chan.dtmf from our party; the answer: consume it while we hold the party."""
        on_ivr = self.state not in ("bridged", "conference")
        if msg.get("duplicate") != "true":
            self.keypad.received(msg.get("text", ""))
        return on_ivr

    # -- waits ------------------------------------------------------------------------------------
    def _wait(self, cleanup: Optional[Callable[[], None]] = None) -> Deferred:
        """A pending Deferred failed with CallEnded when the leg ends; ``cleanup`` runs when it
        is cancelled or the leg ends (not when it is settled)."""
        def cancel(d: Deferred) -> None:
            if d in self._waits:
                fn = self._waits.pop(d)
                if fn is not None:
                    fn()
        d: Deferred = Deferred(cancel)
        self._waits[d] = cleanup
        return d

    def _settle(self, d: Deferred, value: Any) -> None:
        self._waits.pop(d, None)
        if not d.called:
            d.callback(value)

    def _settle_failure(self, d: Deferred, error: Any) -> None:
        self._waits.pop(d, None)
        if not d.called:
            d.errback(error if isinstance(error, Failure) else Failure(error))

    def _guard(self, make: Callable[[], Any]) -> Deferred:
        """Run an operation unless the leg is gone (then fail with CallEnded at once)."""
        if self.state == "ended":
            return defer.fail(CallEnded(self.id, self.end_reason or "ended"))
        try:
            result = make()
        except Exception:
            return defer.fail(Failure())
        if isinstance(result, Deferred):
            return result
        return Deferred.fromCoroutine(result)

    def _ready(self) -> Deferred[None]:
        """Fires once our dumb channel is known (right after routing)."""
        if self.chan is not None:
            return defer.succeed(None)
        if self.state in ("routing", "ringing", "calling", "progressing"):
            d = self._wait(lambda: self._ready_waiters.remove(d)
                           if d in self._ready_waiters else None)
            self._ready_waiters.append(d)
            return d
        return defer.fail(IVRError(f"leg {self.id} has no dumb channel ({self.state}); "
                                   f"media needs the leg back on the IVR"))

    # -- the message queue ------------------------------------------------------------------------
    def _control(self, name: str, attrs: Dict[str, Any]) -> Deferred:
        """Send a message for this leg after the previous one was answered; fires with the
        answered Message.  Cancelling an unsent message removes it; a sent one stays sent."""
        entry = _Control(name, attrs)

        def cancel(d: Deferred) -> None:
            if not entry.sent:
                try:
                    self._queue.remove(entry)
                except ValueError:
                    pass
        entry.deferred = Deferred(cancel)
        self._queue.append(entry)
        self._pump()
        return entry.deferred

    def _unsent(self, d: Deferred) -> bool:
        """Whether the message behind ``d`` (from :meth:`_control`) is still queued."""
        return any(entry.deferred is d for entry in self._queue)

    def _pump(self) -> None:
        while self._in_flight is None and self._queue:
            entry = self._queue.popleft()
            entry.sent = True
            m = self.dispatcher.msg(entry.name, entry.attrs)
            self._in_flight = entry
            m.dispatch().addBoth(self._answered, entry, m)

    def _answered(self, result: Any, entry: _Control, m: "Message") -> None:
        if self._in_flight is entry:
            self._in_flight = None
        d = entry.deferred
        if d is not None and not d.called:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(m)
        if self.state != "ended":
            self._pump()

    def _new_tag(self) -> str:
        return f"{self.chan}/{next(self._tag_ids)}"

    def _register_tag(self, tag: str, media: Media) -> None:
        self._tags.add(tag)
        self.board._tags[tag] = media

    def _unregister_tag(self, tag: str, retire: bool = False) -> None:
        self.board._tags.pop(tag, None)
        if retire and self.state != "ended":
            self.board._retired[tag] = self
        else:
            self._tags.discard(tag)

    def _masquerade(self, message: str, **params: Any) -> Deferred:
        attrs = {"message": message, "id": self.chan}
        attrs.update(params)
        return self._control("chan.masquerade", attrs)

    # -- call control -----------------------------------------------------------------------------
    def answer(self) -> Deferred[None]:
        """Answer the call (SIP 200 OK): ``chan.masquerade message=call.answered`` (B1)."""
        return self._guard(self._answer)

    async def _answer(self) -> None:
        if self.is_answered:
            return
        await self._ready()
        m = await self._masquerade("call.answered")
        self._check_channel(m)
        self._now_answered()

    def progress(self) -> Deferred[None]:
        """Early media (SIP 183): ``chan.masquerade message=call.progress earlymedia=true``
        (B3); prompts played afterwards reach the caller before the call is answered.

        ``earlymedia=true`` makes ysipchan put SDP in the 183 and start RTP; without it, it
        does so only if a prompt is already attached (``createProvisionalSDP``), and a prompt
        attached later never plays (seen on the real engine: no ``eof``, the caller hears
        nothing)."""
        return self._guard(lambda: self._signal("call.progress", "progressing",
                                                earlymedia="true"))

    def ringing(self) -> Deferred[None]:
        """Ringing (SIP 180); routing to ``dumb/`` already rings (autoring)."""
        return self._guard(lambda: self._signal("call.ringing", "ringing"))

    def _check_channel(self, m: "Message") -> None:
        if self.state == "ended":
            raise CallEnded(self.id, self.end_reason or "ended")
        if m.name == "chan.masquerade":         # no driver owns our dumb channel any more
            self._end("gone")
            raise CallEnded(self.id, "gone")

    def hangup(self, reason: str = "normal") -> Deferred[str]:
        """Hang up (``call.drop``; BYE, or the SIP error ``reason`` maps to if unanswered).

        Fires with the end reason once Yate reports the leg gone.  Before routing is answered
        (in the app's first synchronous steps) this rejects the call in ``call.route`` instead.
        """
        if self.state == "ended":
            return defer.succeed(self.end_reason or "ended")
        d = self.ended
        if self._route_msg is not None:
            if self._route_reject is None and self._drop_after_route is None:
                self._route_reject = reason
            return d
        if self._drop_reason is not None:
            return d
        self._drop_reason = reason
        if self.direction == "outgoing" and not self.is_answered:
            target = self.chan                   # C2: dropping our dumb cancels the INVITE
            if target is None:
                self._dial_cancelled = True      # dropped when call.execute comes back
                return d
        else:
            target = self.id
        self._drop(target, reason)
        return d

    def _drop(self, target: str, reason: str) -> None:
        if self.board.offline:                   # dropped when the connection is back
            self._end(reason)
            return
        m = self.dispatcher.msg("call.drop", {"id": target, "reason": reason})

        def dropped(processed: bool) -> None:
            if not processed:                    # nothing by that id: it is gone already
                self._end(reason)

        def failed(f: Failure) -> None:
            self.log.warn("call.drop {chan} failed: {error}", chan=target, error=f.value)
            self._end(reason)
        m.dispatch().addCallbacks(dropped, failed)

    def reject(self, code: Union[int, str] = 486) -> Deferred[str]:
        """Refuse an unanswered call with a SIP code (404, 486, 480, 487, 500, 403, 503...) or
        a Yate reason (``busy``, ``noroute``...).

        In the app's first synchronous steps it answers ``call.route`` with ``-`` and ``error``
        (trace B3); later, ``call.drop`` with the reason (Yate maps it to the SIP code; an
        unknown reason gives 487).  On an answered call it hangs up with that reason.
        """
        reason = reason_for_code(code)
        if self._route_msg is not None and code_for_reason(reason) is None:
            # No call.route error gives this code (callRejected would send 500): route to the
            # dumb channel, then drop with the reason (the SIP channel then answers 487).
            self._drop_after_route = reason
            return self.ended
        return self.hangup(reason)

    def _answer_route(self, msg: "Message") -> None:
        """Called by routing once the app's synchronous part ran: answer call.route."""
        self._route_msg = None
        reject = self._route_reject
        if reject is not None:
            code = code_for_reason(reject) or 500
            msg["error"] = reject
            msg["reason"] = _PHRASES.get(code, reject)
            msg.ret(True, "-")
            self._end(reject)
            return
        msg.ret(True, "dumb/")
        if self._drop_after_route is not None:
            self.hangup(self._drop_after_route)

    # -- media ------------------------------------------------------------------------------------
    def play(self, files: Union[str, Sequence[str]], barge_in: bool = False) -> Deferred:
        """Play one file or a list in order; fires at the end of the last one.

        Fires with None when the prompts played to their end (or were stopped or replaced);
        with ``barge_in=True`` a key stops the prompt and the Deferred fires with that key,
        which stays buffered for the next ``digits()`` (a key typed ahead skips the prompt).
        Errbacks :class:`~yaypm.ivr.errors.MediaError` if a file cannot be opened.
        Cancelling detaches the prompt.
        """
        names = [files] if isinstance(files, str) else list(files)
        return self._guard(lambda: self._play(names, barge_in))

    async def _play(self, names: List[str], barge_in: bool) -> Optional[str]:
        await self._ready()
        for name in names:
            if barge_in and self.keypad.buffer:
                return self.keypad.buffer[0]
            media = Media(self, SOURCE, resource(SOURCE, self.board.path(name)))
            if barge_in:
                index, outcome = await XOR(media.deferred, self.keypad.peek_key())
                if index == 1:
                    return outcome
            else:
                outcome = await media.deferred
            if outcome in ("replaced", "stopped"):
                return None
        return None

    def tone(self, name: str, duration: Optional[float] = None) -> Deferred[None]:
        """Play a continuous tone (``dial``, ``busy``, ``ring``, ``congestion``, ``silence``...).

        Without ``duration`` it fires once the tone is on (it goes on until ``stop_media()``
        or the next prompt); with it, fires after ``duration`` seconds and stops the tone.
        """
        return self._guard(lambda: self._tone(name, duration))

    async def _tone(self, name: str, duration: Optional[float]) -> None:
        await self._ready()
        media = Media(self, SOURCE, "tone/" + name, notify=False)
        await media.deferred
        if duration is not None:
            try:
                await self.sleep(duration)
            finally:
                if self.state != "ended":
                    media._detach()

    def record(self, file: str, max_seconds: Optional[float] = None,
               maxlen: Optional[int] = None, terminators: Optional[str] = "#",
               flush: bool = True) -> Deferred[RecordResult]:
        """Record what the party says into ``file`` (format from its extension).

        Ends at ``maxlen`` bytes (Yate's limit; computed from ``max_seconds`` when not given),
        after ``max_seconds`` on our clock (a caller sending no audio never reaches maxlen), or
        on a key in ``terminators`` (``None``: keys do not stop it).  ``flush`` drops keys typed
        before.  Fires with a :class:`~yaypm.ivr.media.RecordResult`; cancelling stops the
        recorder (``consumer=-``).
        """
        return self._guard(lambda: self._record(file, max_seconds, maxlen, terminators, flush))

    async def _record(self, file: str, max_seconds: Optional[float], maxlen: Optional[int],
                      terminators: Optional[str], flush: bool) -> RecordResult:
        await self._ready()
        if flush:
            self.keypad.clear()
        if maxlen is None and max_seconds is not None:
            maxlen = int(max_seconds * bytes_per_second(file))
        extra = {"maxlen": str(maxlen)} if maxlen else None
        started = self.clock.seconds()
        media = Media(self, CONSUMER, resource(CONSUMER, self.board.path(file)), extra=extra)
        racers: List[Deferred] = [media.deferred]
        if terminators:
            racers.append(Deferred.fromCoroutine(self.keypad.until_key(terminators)))
        if max_seconds is not None:
            # A little after Yate's own limit, which wins whenever audio flows.
            racers.append(_sleep(max_seconds + 1.0, clock=self.clock))
        index, outcome = await XOR(*racers)
        duration = self.clock.seconds() - started
        if index == 0:
            return RecordResult(file, outcome, None, duration)
        if terminators and index == 1:
            return RecordResult(file, "dtmf", outcome, duration)
        return RecordResult(file, "timeout", None, duration)

    def stop_media(self) -> Deferred[None]:
        """Stop the current prompt/tone and recording (their operations fire ``stopped``)."""
        def stop() -> Deferred[None]:
            for kind in (SOURCE, CONSUMER):
                m = self._media.get(kind)
                if m is not None:
                    m.stop()
            # Fires once everything queued so far (the detaches) has been answered.
            return self._control_barrier()
        return self._guard(stop)

    def _control_barrier(self) -> Deferred[None]:
        """Fires once every message queued so far has been answered."""
        last = self._queue[-1] if self._queue else self._in_flight
        if last is None or last.deferred is None or last.deferred.called:
            return defer.succeed(None)
        out: Deferred[None] = Deferred()

        def done(result: Any) -> Any:
            if not out.called:
                out.callback(None)
            return result
        last.deferred.addBoth(done)
        return out

    def attach(self, **params: Any) -> Deferred["Message"]:
        """Low level: ``chan.attach`` with these parameters on our dumb channel (in order with
        the leg's other messages); fires with Yate's answer."""
        return self._guard(lambda: self._masquerade("chan.attach", **params))

    # -- DTMF -------------------------------------------------------------------------------------
    def digits(self, count: Optional[int] = None, timeout: Optional[float] = 10.0,
               interdigit: Optional[float] = 5.0, terminator: Optional[str] = "#",
               prompt: Union[None, str, Sequence[str]] = None,
               flush: bool = False) -> Deferred[str]:
        """Collect digits: up to ``count``, or until a ``terminator`` key (not included).

        ``timeout``: seconds to wait for the first key (after the prompt); ``interdigit``: for
        each next key.  An interdigit timeout ends a variable-length entry (``count=None``) with
        what was typed; otherwise a timeout errbacks
        :class:`~yaypm.ivr.errors.DigitTimeoutError` (a ``defer.TimeoutError`` carrying the
        partial ``digits``).  ``prompt`` is played first with barge-in.  Keys typed ahead count;
        ``flush=True`` drops them first.
        """
        return self._guard(lambda: self._digits(count, timeout, interdigit, terminator,
                                                prompt, flush))

    async def _digits(self, count: Optional[int], timeout: Optional[float],
                      interdigit: Optional[float], terminator: Optional[str],
                      prompt: Union[None, str, Sequence[str]], flush: bool) -> str:
        if flush:
            self.keypad.clear()
        if prompt:
            names = [prompt] if isinstance(prompt, str) else list(prompt)
            await self._play(names, barge_in=True)
        return await self.keypad.collect(count, timeout, interdigit, terminator)

    def dtmf(self) -> DTMFStream:
        """``async for key in leg.dtmf()``: every key in order (buffered ones first)."""
        return DTMFStream(self.keypad)

    def next_key(self, timeout: Optional[float] = None) -> Deferred[str]:
        """The next key (a buffered one at once); ``defer.TimeoutError`` after ``timeout``."""
        return self._guard(lambda: self.keypad.next_key(timeout))

    def on_dtmf(self, callback: Callable[[str], Any]) -> Callable[[], None]:
        """Call ``callback(key)`` for every key as it arrives (keys stay buffered for readers);
        returns a function that removes the callback."""
        return self.keypad.listen(callback)

    def flush_dtmf(self) -> None:
        """Forget keys typed ahead."""
        self.keypad.clear()

    def send_dtmf(self, digits: str, duration: Optional[float] = None,
                  methods: Optional[str] = None) -> Deferred[None]:
        """Send DTMF to the party (``chan.dtmf targetid=<party>``, B4); ``duration`` per digit
        in seconds, ``methods`` e.g. ``rfc2833,info,inband``."""
        attrs: Dict[str, Any] = {}
        if self.chan is not None:
            attrs["id"] = self.chan
        attrs["targetid"] = self.id
        attrs["text"] = digits
        if duration is not None:
            attrs["duration"] = str(int(duration * 1000))
        if methods:
            attrs["methods"] = methods
        return self._guard(lambda: self._control("chan.dtmf", attrs)
                           .addCallback(lambda _: None))

    # -- time -------------------------------------------------------------------------------------
    def sleep(self, seconds: float) -> Deferred[None]:
        """Wait ``seconds`` on the leg's clock; errbacks CallEnded if the leg ends first."""
        def make() -> Deferred[None]:
            call: List[Any] = []
            d = self._wait(lambda: call[0].cancel() if call and call[0].active() else None)
            call.append(self.clock.callLater(seconds, self._settle, d, None))
            return d
        return self._guard(make)

    # -- connecting legs --------------------------------------------------------------------------
    def bridge(self, other: "Leg") -> Deferred[None]:
        """Connect this leg's party to ``other``'s directly (``chan.connect``, pbx; trace D1).

        Fires once connected; both legs go to ``bridged`` and lose their dumb channels (no more
        prompts).  When either party hangs up, Yate ends the other too.  Errbacks
        :class:`~yaypm.ivr.errors.BridgeError` if Yate refuses.
        """
        return self._guard(lambda: self._bridge(other))

    async def _bridge(self, other: "Leg") -> None:
        if other.state == "ended":
            raise CallEnded(other.id, other.end_reason or "ended")
        if self.id is None or other.id is None:
            raise BridgeError("chan.connect", "a leg is not set up yet")
        self._unhooking = other._unhooking = True
        try:
            m = await self._control("chan.connect", {"id": self.id, "targetid": other.id,
                                                      "reason": "bridged"})
        except BaseException:
            self._unhooking = other._unhooking = False
            raise
        if not m.processed:
            self._unhooking = other._unhooking = False
            raise BridgeError("chan.connect", m.get("reason", ""))
        for leg, peer in ((self, other), (other, self)):
            if leg.state != "ended":
                leg.state = "bridged"
                leg.peer = peer.id
                leg.room = None

    def join(self, room: str, **params: Any) -> Deferred[Joined]:
        """Move the party into conference room ``room`` (``chan.masquerade message=call.execute
        callto=conf/<room>``, trace D2); room parameters (``lonely``, ``maxusers``, ``notify``)
        apply when the join creates the room.  The dumb channel hangs up; ``leave()`` brings the
        party back to the IVR.  By default a room left with one user drops it (``lonely``).
        Answer first: a masqueraded ``call.execute`` does not answer the party.
        """
        return self._guard(lambda: self._join(room, params))

    async def _join(self, room: str, params: Dict[str, Any]) -> Joined:
        if self.id is None:
            raise BridgeError("conference", "the leg is not set up yet")
        callto = room if room.startswith("conf/") else "conf/" + room
        attrs = {"message": "call.execute", "id": self.id, "callto": callto}
        attrs.update({k: ("true" if v is True else "false" if v is False else v)
                      for k, v in params.items()})
        self._unhooking = True
        try:
            m = await self._control("chan.masquerade", attrs)
        except BaseException:
            self._unhooking = False
            raise
        if self.state == "ended":
            raise CallEnded(self.id, self.end_reason or "ended")
        if not m.processed:
            self._unhooking = False
            raise BridgeError("conference " + callto, m.get("reason") or m.get("error") or "")
        self.state = "conference"
        self.room = m.get("room") or callto
        self.peer = m.get("peerid")
        users = m.get("users", "")
        return Joined(self.room, m.get("newroom") == "true", int(users) if users.isdigit()
                      else 0)

    def leave(self) -> Deferred[None]:
        """Bring the party back from a conference or bridge to a new dumb channel (IVR):
        ``chan.masquerade message=call.execute callto=dumb/`` on the party."""
        return self._guard(self._leave)

    async def _leave(self) -> None:
        if self.state not in ("conference", "bridged"):
            return
        m = await self._control("chan.masquerade", {"message": "call.execute", "id": self.id,
                                                     "callto": "dumb/"})
        if self.state == "ended":
            raise CallEnded(self.id, self.end_reason or "ended")
        chan = m.get("peerid") or m.get("targetid")
        if not m.processed or not chan:
            raise BridgeError("call.execute dumb/", m.get("reason") or m.get("error") or "")
        if self.chan is not None:
            self.board._unmap(self.chan)
        self.chan = chan
        self.board._map(chan, self)
        self.state = "answered"
        self.room = None
        self.peer = None
        self._unhooking = False

    def transfer(self, callto: str, **params: Any) -> Deferred[None]:
        """Blind transfer: connect the party to ``callto`` (``sip/sip:op@host``, ``conf/x``...)
        with a masqueraded ``call.execute``.  The leg then leaves our control: it ends with
        reason ``transferred``."""
        return self._guard(lambda: self._transfer(callto, params))

    async def _transfer(self, callto: str, params: Dict[str, Any]) -> None:
        attrs = {"message": "call.execute", "id": self.id, "callto": callto}
        attrs.update(params)
        self._unhooking = True
        m = await self._control("chan.masquerade", attrs)
        if self.state == "ended":
            raise CallEnded(self.id, self.end_reason or "ended")
        if not m.processed:
            self._unhooking = False
            raise BridgeError("transfer to " + callto, m.get("reason") or m.get("error") or "")
        self._end("transferred")

    def dial(self, target: str, **kwargs: Any) -> Deferred["Leg"]:
        """:func:`dial` on this leg's dispatcher, the new leg owned by this one: when this
        leg's app ends, a call it placed that is still ringing is cancelled and one still on
        the IVR is hung up (a bridged one ends with its peer anyway)."""
        def make() -> Deferred["Leg"]:
            d = dial(self.dispatcher, target, **kwargs)
            self._children.append(d)

            def answered(child: "Leg") -> "Leg":
                self._child_legs.append(child)
                return child

            def gone(result: Any) -> Any:
                if d in self._children:
                    self._children.remove(d)
                return result
            return d.addCallback(answered).addBoth(gone)
        return self._guard(make)

    def _release_children(self) -> None:
        """The app owning this leg ended: stop the calls it placed."""
        pending, self._children = self._children, []
        for d in pending:
            if not d.called:
                d.addErrback(lambda f: None)
                d.cancel()
        legs, self._child_legs = self._child_legs, []
        for child in legs:
            if child.alive and child.state != "bridged":
                child.hangup("normal")

    # -- private helpers for signals --------------------------------------------------------------
    async def _signal(self, message: str, state: str, **params: Any) -> None:
        await self._ready()
        m = await self._masquerade(message, **params)
        self._check_channel(m)
        if not self.is_answered and self.state in ("ringing", "progressing"):
            self.state = state


Call = Leg     # design.md's name for it


def _user_part(callto: str) -> str:
    """``sip/sip:bob@10.0.0.5:5060`` -> ``bob`` (the ``target`` Yate reports as ``called``)."""
    rest = callto.split("/", 1)[1] if "/" in callto else callto
    if ":" in rest and "@" in rest:
        rest = rest.split(":", 1)[1]
    return rest.split("@", 1)[0]


def originate(dispatcher: "Dispatcher", target: str, *, caller: Optional[str] = None,
              callername: Optional[str] = None, timeout: Optional[float] = 30.0,
              called: Optional[str] = None, record_id: Optional[str] = None,
              **params: Any) -> Leg:
    """Place an outbound call and return its :class:`Leg` at once (state ``calling``).

    ``await leg.answered()`` for the answer (or the dial error); ``leg.hangup()`` cancels it.
    Parameters as for :func:`dial`; ``record_id``: the leg's id in the switchboard's
    ``calls`` registry, when one is set (default: a new one).
    """
    from yaypm.ivr.switchboard import switchboard
    board = switchboard(dispatcher)
    leg = Leg(board, None, direction="outgoing", state="calling")
    leg.target = target
    attrs: Dict[str, Any] = {"callto": "dumb/"}
    if "/" in target:
        attrs["direct"] = target
        attrs["target"] = called or _user_part(target)
    else:
        attrs["target"] = called or target
    if caller is not None:
        attrs["caller"] = caller
    if callername is not None:
        attrs["callername"] = callername
    if timeout is not None:
        attrs["maxcall"] = str(int(timeout * 1000))
    attrs.update({k: str(v) for k, v in params.items()})
    leg.params = {"caller": caller or "", "called": attrs["target"],
                  "callername": callername or ""}
    board._adopt(leg, "dial", record_id)
    m = dispatcher.msg("call.execute", attrs)

    def sent(processed: bool) -> None:
        if leg.state == "ended":
            board._dial_answered(None)
            return
        if not processed:
            board._dial_answered(None)
            # dumbchan copies error/reason only when the inner call.execute failed; with no
            # route for ``target`` there is neither (dumbchan.cpp): that is "noroute".
            default = "failure" if "direct" in attrs else "noroute"
            leg._end(m.get("error") or m.get("reason") or default, m.attrs)
            return
        leg.chan = m.get("id")
        leg.id = m.get("peerid") or m.get("targetid")
        if leg.chan:
            board._map(leg.chan, leg)
        if leg.id:
            board._map(leg.id, leg)
        board._dial_answered(leg)
        if leg.state == "ended":
            return
        if leg.chan:
            waiters, leg._ready_waiters = leg._ready_waiters, []
            for w in waiters:
                leg._settle(w, None)
        if leg._dial_cancelled or not leg.chan:
            target_id = leg.chan or leg.id
            if target_id:
                leg._drop(target_id, leg._drop_reason or "cancelled")
            else:
                leg._end(leg._drop_reason or "cancelled")

    def failed(f: Failure) -> None:
        board._dial_answered(None)
        waiters, leg._answer_waiters = leg._answer_waiters, []
        for d in waiters:
            leg._settle_failure(d, f)
        leg._end("failure")

    board._dial_started()
    try:
        m.dispatch().addCallbacks(sent, failed)
    except Exception:
        failed(Failure())
    return leg


def dial(dispatcher: "Dispatcher", target: str, *, caller: Optional[str] = None,
         callername: Optional[str] = None, timeout: Optional[float] = 30.0,
         called: Optional[str] = None, **params: Any) -> Deferred[Leg]:
    """Place an outbound call; fires with the answered :class:`Leg`.

    ``target``: a callto resource (``sip/sip:bob@10.0.0.5``: sent as ``direct``) or a number
    that Yate routes (``call.route`` from the new dumb channel).  ``timeout``: seconds it may
    ring (Yate's ``maxcall``, checked on Yate's 1 s timer).  ``caller``/``callername``: the
    identity shown; ``called``: the ``target`` parameter when ``target`` is a resource.  Extra
    ``params`` go into the ``call.execute``.

    Errbacks :class:`~yaypm.ivr.errors.BusyError`, :class:`~yaypm.ivr.errors.NoAnswerError`
    or :class:`~yaypm.ivr.errors.RejectedError` (with the SIP ``code`` when known).
    Cancelling hangs up the call being placed (``call.drop`` of our dumb channel, trace C2).
    """
    leg = originate(dispatcher, target, caller=caller, callername=callername,
                    timeout=timeout, called=called, **params)
    inner = leg.answered()

    def cancel(_: Deferred) -> None:
        inner.cancel()
        if leg.alive:
            leg.hangup("cancelled")

    out: Deferred[Leg] = Deferred(cancel)
    inner.addCallbacks(out.callback, out.errback)
    return out
