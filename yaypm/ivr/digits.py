"""DTMF of one leg: a type-ahead buffer, waiters, listeners, and the digit collector.

Yate has no digit collector for dumb channels (yate-messages §4b): every ``chan.dtmf`` from the
caller's leg arrives at the switchboard's one ``chan.dtmf`` handler, which hands each key of its
``text`` to the leg's :class:`Keypad`.  Keys nobody waits for are buffered (type-ahead is not
lost: a caller who knows the menu can dial through the prompt).

Three ways to read keys:

* ``await leg.digits(count=4, timeout=10)`` — the collector (below);
* ``async for key in leg.dtmf(): ...`` — every key, in order (consuming);
* ``leg.on_dtmf(callback)`` — observe every key as it arrives (not consuming).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, List, Optional

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from yaypm.ivr.errors import DigitTimeoutError

if TYPE_CHECKING:
    from yaypm.ivr.leg import Leg

__all__ = ["Keypad", "DTMFStream", "KEYS"]

KEYS = frozenset("0123456789*#ABCDabcd")


class Keypad:
    """The DTMF state of one leg."""

    log = Logger()
    max_buffered = 64          # a caller leaning on a key cannot grow memory without bound

    def __init__(self, leg: "Leg") -> None:
        self.leg = leg
        self.buffer: Deque[str] = deque(maxlen=self.max_buffered)
        self._takers: Deque[Deferred[str]] = deque()       # consume the next key
        self._peekers: List[Deferred[str]] = []            # see the next key, leave it buffered
        self._listeners: List[Callable[[str], Any]] = []

    # -- keys in -----------------------------------------------------------------------------
    def received(self, text: str) -> None:
        """Keys from one ``chan.dtmf`` (``text`` may hold several)."""
        for key in text:
            if key not in KEYS:
                continue
            key = key.upper()
            self.buffer.append(key)
            for listener in list(self._listeners):
                try:
                    listener(key)
                except Exception:
                    self.log.failure("DTMF listener failed on {chan}", chan=self.leg.id)
            peekers, self._peekers = self._peekers, []
            for d in peekers:
                self.leg._settle(d, key)
            while self._takers and self.buffer:
                self.leg._settle(self._takers.popleft(), self.buffer.popleft())

    # -- keys out ----------------------------------------------------------------------------
    def next_key(self, timeout: Optional[float] = None) -> Deferred[str]:
        """The next key (buffered first); errbacks ``defer.TimeoutError`` after ``timeout``."""
        if self.buffer and not self._takers:
            return defer.succeed(self.buffer.popleft())
        d = self.leg._wait(lambda: self._forget(self._takers, d))
        self._takers.append(d)
        if timeout is not None:
            d.addTimeout(timeout, self.leg.clock)
        return d

    def peek_key(self) -> Deferred[str]:
        """Fires with the next key (or the oldest buffered one) without consuming it."""
        if self.buffer:
            return defer.succeed(self.buffer[0])
        d = self.leg._wait(lambda: self._forget(self._peekers, d))
        self._peekers.append(d)
        return d

    @staticmethod
    def _forget(table: Any, d: Deferred) -> None:
        try:
            table.remove(d)
        except ValueError:
            pass

    def listen(self, callback: Callable[[str], Any]) -> Callable[[], None]:
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)
        return remove

    def clear(self) -> None:
        self.buffer.clear()

    def reset(self) -> None:
        """The leg ended: drop everything (waiters were failed by the leg)."""
        self.buffer.clear()
        self._takers.clear()
        self._peekers.clear()
        self._listeners.clear()

    # -- the collector --------------------------------------------------------------------------
    async def collect(self, count: Optional[int], timeout: Optional[float],
                      interdigit: Optional[float], terminator: Optional[str]) -> str:
        """See :meth:`yaypm.ivr.leg.Leg.digits`."""
        got = ""
        while True:
            wait = timeout if not got else interdigit
            try:
                key = await self.next_key(wait)
            except defer.TimeoutError:
                if got and count is None:
                    return got
                raise DigitTimeoutError(got)
            if terminator and key in terminator:
                return got
            got += key
            if count and len(got) >= count:
                return got

    async def until_key(self, keys: str) -> str:
        """Consume keys until one of ``keys`` arrives; fires with it."""
        while True:
            key = await self.next_key()
            if key in keys:
                return key


class DTMFStream:
    """``async for key in leg.dtmf()``: every key of the leg, in order, buffered ones first.

    Iteration raises :class:`~yaypm.ivr.errors.CallEnded` when the leg ends (so an app's loop
    ends like every other operation on a dead call).
    """

    def __init__(self, keypad: Keypad) -> None:
        self._keypad = keypad

    def __aiter__(self) -> "DTMFStream":
        return self

    def __anext__(self) -> Deferred[str]:
        return self._keypad.leg._guard(lambda: self._keypad.next_key())
