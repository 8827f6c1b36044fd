"""IVR and call control on Yate dumb channels: one :class:`Leg` object per call leg.

::

    from yaypm.ivr import route, DigitTimeoutError
    from yaypm.prompts import prompt

    async def menu(leg):
        await leg.answer()
        try:
            choice = await leg.digits(count=1, prompt=prompt("menu"), timeout=5)
        except DigitTimeoutError:
            return                                   # returning hangs up
        ...

    route(dispatcher, "100", menu)

API in one place (every operation returns a new Deferred; ``await`` it or ``yield`` it in a
``yaypm.flow.go`` flow; it errbacks :class:`CallEnded` as soon as the leg is gone, and
cancelling it undoes it — prompt detached, recorder stopped, timer removed):

Incoming calls (:mod:`yaypm.ivr.routing`)
    ``route(dispatcher, called, app, *, guard=None, priority=50) -> Route`` — ``called``: a
    number, a compiled regex (full match), a callable on the number, or a list of those;
    ``app(leg)``: ``async def``, generator flow, plain function or :class:`Dialog` subclass.
    The app runs inside ``call.route`` until its first wait (``leg.reject()`` there rejects in
    routing); the leg is hung up when the app returns; its exceptions are logged and end only
    that call.  ``guard(message)``: a bool, a ``Deferred[bool]`` or an ``async def``;
    ``call.route`` waits for it (a failure, or no answer within 80% of the answer deadline:
    not claimed); its true value is the app's ``leg.claim``.  ``Route.cancel()``.
    ``run_app(leg, app)``.

Outgoing calls
    ``dial(dispatcher, target, *, caller=None, callername=None, timeout=30.0, called=None,
    **params) -> Deferred[Leg]`` (fires on answer; :class:`BusyError`,
    :class:`NoAnswerError`, :class:`RejectedError` with ``.code``; cancel = hang up the
    INVITE).  ``originate(...) -> Leg`` returns the ringing leg at once (``await
    leg.answered()``).  ``leg.dial(...)``: dial owned by ``leg``'s app.

:class:`Leg` (:mod:`yaypm.ivr.leg`)
    attributes ``id`` (party channel), ``chan`` (our dumb channel), ``direction``, ``state``,
    ``is_answered``, ``caller``/``called``/``callername``/``billid``, ``params``, ``peer``,
    ``room``, ``end_reason``, ``end_params``, ``alive``, ``app``, ``claim``, ``keypad``;
    ``ended`` (property: new Deferred[str] with the end reason), ``on_progress(cb)``;
    ``answered() -> Deferred[Leg]``, ``answer()``, ``progress()``, ``ringing()``,
    ``hangup(reason="normal") -> Deferred[str]``,
    ``reject(code_or_reason=486)``;
    ``play(files, barge_in=False) -> Deferred[key|None]``, ``tone(name, duration=None)``,
    ``record(file, max_seconds=None, maxlen=None, terminators="#", flush=True)
    -> Deferred[RecordResult]``, ``stop_media()``, ``attach(**params)``;
    ``digits(count=None, timeout=10, interdigit=5, terminator="#", prompt=None,
    flush=False) -> Deferred[str]`` (:class:`DigitTimeoutError` with ``.digits``),
    ``next_key(timeout=None)``, ``dtmf()`` (async iterator), ``on_dtmf(callback) -> remove``,
    ``flush_dtmf()``, ``send_dtmf(digits, duration=None, methods=None)``;
    ``sleep(seconds)``; ``bridge(other)``, ``join(room, **room_params) -> Joined``,
    ``leave()``, ``transfer(callto, **params)``.

:class:`Playlist` (:mod:`yaypm.ivr.playlist`), :class:`Dialog` (SEMS ``IvrDialogBase``,
:mod:`yaypm.ivr.dialog`), :class:`Switchboard` / ``switchboard(dispatcher)`` (the
per-dispatcher handlers, ``len()`` = live legs, ``media_root``, ``calls`` for monitoring).
"""

from yaypm.ivr.dialog import Dialog, IvrDialogBase
from yaypm.ivr.errors import (BridgeError, BusyError, CallEnded, DialError, DigitTimeoutError,
                              IVRError, MediaError, NoAnswerError, RejectedError)
from yaypm.ivr.leg import Call, Joined, Leg, dial, originate
from yaypm.ivr.media import RecordResult
from yaypm.ivr.playlist import Playlist
from yaypm.ivr.routing import Route, route, run_app
from yaypm.ivr.switchboard import Switchboard, switchboard

__all__ = [
    "Leg", "Call", "Joined", "dial", "originate", "Playlist", "route", "Route", "run_app",
    "Switchboard", "switchboard", "RecordResult", "IVRError", "CallEnded", "MediaError",
    "DialError", "BusyError", "NoAnswerError", "RejectedError", "BridgeError",
    "DigitTimeoutError", "Dialog", "IvrDialogBase",
]
