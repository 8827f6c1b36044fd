"""SEMS-style dialog classes, for users coming from SEMS's Python IVR (``IvrDialogBase``).

Subclass :class:`Dialog`, override the event handlers, drive media with ``enqueue``/``flush``::

    class Echo(Dialog):
        def onSessionStart(self):
            self.enqueue(prompt("welcome"), None)

        def onDtmf(self, key, duration):
            self.flush()
            self.enqueue(digit_prompt(key), None)

        def onBye(self):
            log.info("caller left")

    route(dispatcher, "echo", Echo)             # a Dialog subclass is an app

Life of a dialog (as in SEMS): ``onStart()`` when the call arrives, the call is answered,
``onSessionStart()``; then a playlist plays item after item and ``onEmptyQueue()`` is called
each time it runs dry; every key calls ``onDtmf(key, duration)`` (Yate gives no duration: 0);
``onBye()`` when the caller hangs up.  ``bye()`` ends the call from our side (no ``onBye``).

Built on :class:`~yaypm.ivr.leg.Leg` (``self.leg``): anything the leg does is available too.
Handlers run synchronously; an exception in one is logged and ends the call, like an app's.
B2B: ``connectCallee(party, uri)`` dials and bridges, ``terminateOtherLeg()`` hangs the callee
up and brings the caller back to the IVR; ``onOtherReply(code, reason)`` / ``onOtherBye()``.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from yaypm import flow
from yaypm.ivr.errors import CallEnded, DialError
from yaypm.ivr.leg import Leg
from yaypm.ivr.playlist import Playlist

__all__ = ["Dialog", "IvrDialogBase"]


def _path(audio: Any) -> Optional[str]:
    """A file name from what SEMS scripts enqueue: a path, or an object with ``path``/``name``
    (SEMS's ``IvrAudioFile``-like objects)."""
    if audio is None or isinstance(audio, str):
        return audio
    for attr in ("path", "filename", "name"):
        value = getattr(audio, attr, None)
        if isinstance(value, str):
            return value
    raise TypeError(f"cannot play or record {audio!r}: give a file name")


class Dialog:
    """One call handled SEMS-style.  ``route(dispatcher, number, MyDialog)`` runs one per call.

    ``self.leg`` is the call leg; ``self.dialog`` is the same object (SEMS exposes the SIP
    dialog's properties there: ``caller``, ``called``, ``callername``, ``params``).
    """

    log = Logger()
    B2BMode = False

    def __init__(self, leg: Leg) -> None:
        self.leg = leg
        self.dialog = leg
        self.callee: Optional[Leg] = None
        self.playlist = Playlist(leg, on_empty=lambda: self._call(self.onEmptyQueue),
                                 on_error=self._failed, active=False)
        self._keys: Optional[Deferred] = None
        self._bye_sent = False
        self._done: Optional[Deferred] = None

    # -- event handlers (override) ----------------------------------------------------------------
    def onStart(self) -> None:
        """The call arrived (before it is answered)."""

    def onSessionStart(self) -> None:
        """The call is answered: media can flow."""

    def onEmptyQueue(self) -> None:
        """The playlist played its last item."""

    def onDtmf(self, key: str, duration: int) -> None:
        """A key from the caller (``duration`` in ms; 0: Yate does not tell)."""

    def onBye(self) -> None:
        """The caller hung up."""

    def onOtherReply(self, code: int, reason: str) -> None:
        """The callee of ``connectCallee`` answered (200) or failed (486, 480, ...)."""

    def onOtherBye(self) -> None:
        """The callee hung up."""

    # -- session control --------------------------------------------------------------------------
    def bye(self) -> None:
        """End the call (BYE, or CANCEL-like rejection when not answered)."""
        self._bye_sent = True
        self.flush()
        if self.leg.alive:
            self.leg.hangup("normal")

    terminateLeg = bye
    stopSession = bye

    # -- media ------------------------------------------------------------------------------------
    def enqueue(self, audio_play: Any, audio_rec: Any) -> None:
        """Add an item to the playlist: play ``audio_play`` (a file), record into ``audio_rec``
        while it plays (with no play part, the recording lasts until ``flush()``)."""
        self.playlist.enqueue(_path(audio_play), _path(audio_rec))

    def flush(self) -> None:
        """Empty the playlist and stop what plays or records now (no ``onEmptyQueue``)."""
        self.playlist.flush()

    # -- B2B --------------------------------------------------------------------------------------
    def connectCallee(self, remote_party: Optional[str], remote_uri: Optional[str],
                      **kwargs: Any) -> Deferred:
        """Call ``remote_uri`` (``sip:bob@host`` or a Yate callto / number) and bridge the caller
        to it once answered.  ``onOtherReply(code, reason)`` reports the outcome; the returned
        Deferred fires with the callee leg (or fails with the dial error)."""
        uri = remote_uri or self.leg.called
        target = "sip/" + uri if uri.startswith(("sip:", "sips:")) else uri
        kwargs.setdefault("caller", self.leg.caller or None)
        if remote_party:
            kwargs.setdefault("callername", remote_party)
        d = self.leg.dial(target, **kwargs)      # owned: stopped when the dialog ends

        async def connect() -> Leg:
            try:
                callee = await d
            except DialError as e:
                self._call(self.onOtherReply, e.code or 500, e.reason)
                raise
            self.callee = callee
            self._call(self.onOtherReply, 200, "OK")
            self.flush()
            if not self.leg.alive:
                callee.hangup("normal")
                raise CallEnded(self.leg.id, self.leg.end_reason or "ended")
            callee.ended.addCallback(self._callee_ended, callee)
            await self.leg.bridge(callee)
            return callee

        out = Deferred.fromCoroutine(connect())
        out.addErrback(self._b2b_failed)
        return out

    def _b2b_failed(self, f: Failure) -> Failure:
        if not f.check(DialError, CallEnded, defer.CancelledError):
            self._failed(f)
        return f

    def _callee_ended(self, reason: str, callee: Leg) -> None:
        if self.callee is callee:
            self.callee = None
            self._call(self.onOtherBye)

    def terminateOtherLeg(self) -> Deferred:
        """Hang up the callee; the caller comes back to the IVR (a new dumb channel)."""
        callee, self.callee = self.callee, None
        if callee is None:
            return defer.succeed(None)

        async def terminate() -> None:
            if self.leg.alive and self.leg.state == "bridged":
                await self.leg.leave()          # first, or Yate hangs the caller up too
            if callee.alive:
                await callee.hangup("normal")
        return Deferred.fromCoroutine(terminate())

    # -- running ----------------------------------------------------------------------------------
    @classmethod
    def serve(cls, leg: Leg) -> Deferred:
        """The app for :func:`~yaypm.ivr.routing.route`: run one dialog on ``leg``."""
        return cls(leg).run()

    def run(self) -> Deferred:
        """Run the dialog until the call ends; fires with the end reason."""
        return Deferred.fromCoroutine(self._run())

    async def _run(self) -> str:
        self._done = Deferred()
        try:
            self._call(self.onStart)
            if self.leg.alive and not self._bye_sent and not self._done.called:
                await self.leg.answer()
                self._call(self.onSessionStart)
                self._keys = Deferred.fromCoroutine(self._read_keys())
                self._keys.addErrback(lambda f: None if f.check(CallEnded, defer.CancelledError)
                                      else self._failed(f))
                self.playlist.start()
            await flow.XOR(self.leg.ended, self._done)
            if self.leg.alive:                   # a handler failed: end the call
                await self.leg.hangup("failure")
            elif not self._bye_sent:
                self._call(self.onBye)
            return self.leg.end_reason or "ended"
        except CallEnded:
            if not self._bye_sent:
                self._call(self.onBye)
            return self.leg.end_reason or "ended"
        finally:
            self.flush()
            if self._keys is not None and not self._keys.called:
                self._keys.cancel()
            if self.callee is not None and self.callee.alive:
                self.callee.hangup("normal")
            self._done = None

    async def _read_keys(self) -> None:
        async for key in self.leg.dtmf():
            self._call(self.onDtmf, key, 0)

    def _call(self, handler: Any, *args: Any) -> None:
        try:
            handler(*args)
        except Exception:
            self._failed(Failure())

    def _failed(self, f: Failure) -> None:
        self.log.failure("Dialog {cls} failed on {chan}", f, cls=type(self).__name__,
                         chan=self.leg.id)
        done = self._done
        if done is not None and not done.called:
            done.callback(None)
        elif self.leg.alive:
            self.leg.hangup("failure")


IvrDialogBase = Dialog     # SEMS's name
