"""Media on a dumb channel: one ``chan.attach`` (through ``chan.masquerade``) per operation.

An attach with ``notify=<tag>`` is answered later by a ``chan.notify`` whose ``targetid`` is the
tag (yate-messages §2.13): ``reason=eof`` (prompt played to its end), ``reason=maxlen``
(recording limit), ``reason=replaced`` (something else took the slot, or the channel went), no
reason at all (the file could not be opened).  Tags are unique per operation (``dumb/3/p7``) so
an old prompt's ``replaced`` is never taken for the new prompt's ``eof``.

Stopping is attaching ``-`` in the slot (``source=-`` / ``consumer=-``, pbx module; trace B4).
Every attach and detach of one leg goes through the leg's message queue, one at a time, because
Yate may process two messages sent back to back in either order (pitfall 9): a detach overtaking
the next prompt's attach would silence the new prompt.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, NamedTuple, Optional

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from yaypm.ivr.errors import MediaError

if TYPE_CHECKING:
    from yaypm.ivr.leg import Leg

__all__ = ["RecordResult", "bytes_per_second", "resource"]

SOURCE = "source"
CONSUMER = "consumer"

# Bytes per second of the formats wavefile reads from a file name (yate-messages §2.11).
_RATES = {".slin": 16000, ".alaw": 8000, ".a": 8000, ".mulaw": 8000, ".u": 8000,
          ".au": 8000, ".gsm": 1650, ".2slin": 32000, ".2alaw": 16000, ".2mulaw": 16000,
          ".g722": 8000, ".g729": 1000, ".ilbc20": 1900, ".ilbc30": 1667, ".lbc": 1667}


def bytes_per_second(path: str) -> int:
    """The byte rate Yate's recorder writes for ``path``'s extension (``maxlen`` is in bytes).

    Unknown extensions are slin, as in wavefile.
    """
    ext = os.path.splitext(path)[1].lower()
    return _RATES.get(ext, 16000)


def resource(kind: str, name: str) -> str:
    """``wave/play/<name>`` (or ``wave/record/<name>``) unless ``name`` is already a resource
    (``tone/ring``, ``wave/play/-``, ``-``)."""
    if name == "-" or name.startswith(("wave/", "tone/")):
        return name
    return ("wave/play/" if kind == SOURCE else "wave/record/") + name


class RecordResult(NamedTuple):
    """How a recording ended.

    ``reason``: ``maxlen`` (Yate's byte limit), ``timeout`` (``max_seconds`` passed on our
    clock), ``dtmf`` (a terminator key, in ``key``), ``stopped`` (stop_media), ``replaced``
    (something else took the channel's consumer).  ``duration`` is seconds on the leg's clock.
    """
    file: str
    reason: str
    key: Optional[str]
    duration: float


class Media:
    """One attached resource (a prompt, a tone, a recorder) of a leg, and its outcome.

    ``deferred`` fires with ``eof``/``maxlen``/``replaced``/``stopped`` (with a notify tag) or,
    for tag-less resources such as tones, once Yate accepted the attach.  Cancelling it
    detaches the resource if it is still the leg's current one.  When the leg ends it errbacks
    with :class:`~yaypm.ivr.errors.CallEnded` and nothing is sent.
    """

    __slots__ = ("leg", "kind", "resource", "tag", "deferred", "_sent", "_done", "_previous",
                 "_notified")

    def __init__(self, leg: "Leg", kind: str, res: str, notify: bool = True,
                 extra: Optional[Dict[str, Any]] = None) -> None:
        self.leg = leg
        self.kind = kind
        self.resource = res
        self._done = False
        self._notified = False
        self.tag: Optional[str] = leg._new_tag() if notify else None
        self.deferred: Deferred[str] = leg._wait(self._cancelled)
        # The resource we replace is told by Yate (``replaced``); as a fallback it is finished
        # when our attach is answered.  Not before: ours may still be cancelled unsent.
        self._previous = leg._media.get(kind)
        leg._media[kind] = self
        attrs: Dict[str, Any] = {"message": "chan.attach", "id": leg.chan, kind: res}
        if extra:
            attrs.update(extra)
        if self.tag is not None:
            attrs["notify"] = self.tag
            leg._register_tag(self.tag, self)
        self._sent = leg._control("chan.masquerade", attrs)
        self._sent.addCallbacks(self._answered, self._send_failed)

    # -- outcomes ---------------------------------------------------------------------------------
    def _answered(self, m: Any) -> None:
        previous, self._previous = self._previous, None
        if previous is not None:
            previous._finish("replaced")
        if self._done:
            return
        if m.name == "chan.masquerade":           # no driver owns the id: the channel is gone
            self._fail(MediaError(self.resource, f"channel {self.leg.chan} is gone"))
            return
        if m.get(self.kind) == self.resource:     # nobody took it (e.g. an unknown tone name)
            self._fail(MediaError(self.resource, "not accepted by any module"))
            return
        if self.tag is None:
            self._settle("attached")

    def _send_failed(self, f: Failure) -> None:
        if not self._done:
            self._fail(f)

    def notified(self, msg: Any) -> None:
        """The ``chan.notify`` for our tag arrived."""
        self._notified = True
        reason = msg.get("reason")
        if reason is None and msg.get("id") is None:
            self._fail(MediaError(self.resource, "cannot be opened"))
        else:
            self._finish(reason or "replaced")

    def _finish(self, outcome: str) -> None:
        """Ended on Yate's side (eof, maxlen, replaced): nothing to detach."""
        if self._done:
            return
        if self.leg._media.get(self.kind) is self:
            self.leg._media[self.kind] = None
        self._settle(outcome)

    def stop(self) -> None:
        """Detach now; the operation fires ``stopped``.

        A tag-less resource (a tone) fired its operation when it went on and plays until
        detached: it is still the leg's current one, so it is detached all the same."""
        if self._done:
            if self.tag is None:
                self._detach()              # only if it still holds the slot
            return
        self._detach()
        self._settle("stopped")

    # -- plumbing ---------------------------------------------------------------------------------
    def _settle(self, outcome: str) -> None:
        self._done = True
        self._unregister()
        self.leg._settle(self.deferred, outcome)

    def _fail(self, error: Any) -> None:
        self._done = True
        if self.leg._media.get(self.kind) is self:
            self.leg._media[self.kind] = None
        self._unregister()
        self.leg._settle_failure(self.deferred, error)

    def _unregister(self) -> None:
        if self.tag is not None:
            # Ended by anything but its own notification: Yate still owes us a ``replaced``
            # for this tag; keep answering it (handled) until it comes or the leg ends.
            sent = not self.leg._unsent(self._sent) if hasattr(self, "_sent") else False
            self.leg._unregister_tag(self.tag, retire=sent and not self._notified)

    def _cancelled(self) -> None:
        """Cleanup when the operation is cancelled, or the leg ended (then nothing is sent)."""
        if self._done:
            return
        self._done = True
        self._unregister()
        if self.leg.state != "ended":
            if self.leg._unsent(self._sent):
                self._sent.cancel()               # still queued: simply never send it
                if self.leg._media.get(self.kind) is self:
                    self.leg._media[self.kind] = self._previous
                self._previous = None
            else:
                self._detach()
        elif self.leg._media.get(self.kind) is self:
            self.leg._media[self.kind] = None

    def _detach(self) -> None:
        if self.leg._media.get(self.kind) is not self:
            return                                # a newer resource holds the slot
        self.leg._media[self.kind] = None
        if self.leg.state == "ended" or self.leg.chan is None:
            return
        d = self.leg._control("chan.masquerade", {"message": "chan.attach",
                                                  "id": self.leg.chan, self.kind: "-"})
        d.addErrback(lambda f: None)
