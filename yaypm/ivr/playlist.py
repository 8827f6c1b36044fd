"""A playlist on a leg: items play one after the other; a callback when it runs dry.

SEMS's playlist model (``enqueue(play, record)``, ``flush()``, an "empty queue" event), for the
SEMS-style :class:`~yaypm.ivr.dialog.Dialog` and for DSM sessions (``playFile``,
``flushPlaylist``, the ``noAudio`` event)::

    playlist = Playlist(leg, on_empty=lambda: print("done"))
    playlist.enqueue(prompt("welcome"))
    playlist.enqueue(prompt("menu"), front=True)     # plays first

An item plays ``play`` and, at the same time, records into ``record``; with no ``play`` part the
recording lasts until ``flush()``.  Errors (a missing file) are reported to ``on_error`` (logged
by default) and the playlist goes on with the next item.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Optional, Tuple

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from yaypm.ivr.errors import CallEnded, MediaError
from yaypm.ivr.leg import Leg

__all__ = ["Playlist"]


class Playlist:
    """Items played in order on ``leg``.

    ``on_empty()`` is called each time the last item finished (not after ``flush()``).
    ``active=False`` holds items until :meth:`start` (e.g. until the call is answered).
    """

    log = Logger()

    def __init__(self, leg: Leg, on_empty: Optional[Callable[[], Any]] = None,
                 on_error: Optional[Callable[[Failure], Any]] = None,
                 active: bool = True) -> None:
        self.leg = leg
        self.on_empty = on_empty
        self.on_error = on_error
        self.active = active
        self.items: Deque[Tuple[Optional[str], Optional[str]]] = deque()
        self._player: Optional[Deferred] = None

    @property
    def playing(self) -> bool:
        return self._player is not None

    def __len__(self) -> int:
        return len(self.items) + (1 if self._player is not None else 0)

    def enqueue(self, play: Optional[str], record: Optional[str] = None,
                front: bool = False) -> None:
        """Add an item (at the end, or next with ``front=True``); starts playing if idle."""
        if front:
            self.items.appendleft((play, record))
        else:
            self.items.append((play, record))
        self._kick()

    def start(self) -> None:
        """Let held items play (``active=False`` playlists)."""
        self.active = True
        self._kick()

    def flush(self) -> None:
        """Drop every item and stop what plays or records now."""
        self.items.clear()
        player, self._player = self._player, None
        if player is not None:
            player.cancel()

    def _kick(self) -> None:
        if self._player is None and self.active and self.items and self.leg.alive:
            d = Deferred.fromCoroutine(self._play_items())
            self._player = d
            d.addBoth(self._stopped, d)

    def _stopped(self, result: Any, d: Deferred) -> None:
        if self._player is not d:
            return None                          # flushed: cancelled, and replaced or idle
        self._player = None
        if isinstance(result, Failure):
            if not result.check(defer.CancelledError, CallEnded):
                self._report(result)
            return None
        if self.leg.alive and self.on_empty is not None:
            try:
                self.on_empty()
            except Exception:
                self._report(Failure())
        return None

    def _report(self, f: Failure) -> None:
        if self.on_error is not None:
            self.on_error(f)
        else:
            self.log.failure("Playlist on {chan} failed", f, chan=self.leg.id)

    async def _play_items(self) -> None:
        while self.items:
            play, record = self.items.popleft()
            recording = self.leg.record(record, terminators=None, flush=False) \
                if record else None
            try:
                if play:
                    try:
                        await self.leg.play(play)
                    except MediaError:
                        self._report(Failure())
                elif recording is not None:
                    await recording
            finally:
                if recording is not None and not recording.called:
                    recording.addErrback(lambda f: None)
                    recording.cancel()
