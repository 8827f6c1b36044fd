"""The switchboard: one per dispatcher, it hands Yate's call messages to the legs they concern.

Thousands of legs must not mean thousands of one-shot waits (each would be tried against every
message).  The switchboard installs each message once — persistent handlers for ``call.route``,
``chan.dtmf``, ``chan.notify`` at priority 50 (before the modules: conf 75, drivers 100) and
watchers for ``call.execute``, ``chan.hangup``, ``chan.disconnected``, ``call.answered``,
``call.ringing``, ``call.progress`` — and finds the leg by channel id in a dict, and a prompt or
recorder by its notify tag in another.  A message for nobody of ours is answered unhandled at
once (``chan.dtmf``/``chan.notify``) or ignored (notifications).
"""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple

from twisted.logger import Logger

from yaypm.timers import TimerHeap

if TYPE_CHECKING:
    from yaypm.dispatcher import Dispatcher, Message, Registration
    from yaypm.ivr.leg import Leg
    from yaypm.ivr.media import Media
    from yaypm.ivr.routing import Route

__all__ = ["Switchboard", "switchboard", "TimerHeap"]      # TimerHeap: yaypm.timers

DEFAULT_PRIORITY = 50

_ATTR = "_yaypm_ivr_switchboard"      # kept on the dispatcher: it lives and dies with it


def switchboard(dispatcher: "Dispatcher", priority: int = DEFAULT_PRIORITY) -> "Switchboard":
    """The dispatcher's switchboard, created (and its handlers installed) on first use."""
    board = getattr(dispatcher, _ATTR, None)
    if board is None or board.closed:
        board = Switchboard(dispatcher, priority)
        setattr(dispatcher, _ATTR, board)
    return board


class Switchboard:
    """Every live leg of one dispatcher, by channel id, and the persistent handlers feeding them.

    ``len(board)`` is the number of live legs.  ``media_root``: a folder prepended to relative
    prompt and recording names (None: names go to Yate as given, relative to its working
    directory).  ``calls``: a :class:`~yaypm.registry.CallRegistry` that monitoring reads;
    when set, every leg is recorded there (``from``, ``to``, ``dir``, ``chan``, ``app``) and
    ended with its end reason as the outcome.
    """

    log = Logger()

    def __init__(self, dispatcher: "Dispatcher", priority: int = DEFAULT_PRIORITY,
                 media_root: Optional[str] = None) -> None:
        self.dispatcher = dispatcher
        self.priority = priority
        self.media_root = media_root
        self.closed = False
        # An optional yaypm.registry.CallRegistry; `yaypm run --monitor` presets one on the
        # dispatcher so apps are monitored without a line of code.
        self.calls: Any = getattr(dispatcher, "call_registry", None)
        self.timers = TimerHeap(dispatcher.clock)  # the legs' clock for timeouts and sleeps
        self.legs: Dict[str, "Leg"] = {}           # party and dumb channel ids -> leg
        self.live: Set["Leg"] = set()              # every live leg (dialling ones have no id)
        self._tags: Dict[str, "Media"] = {}        # notify tag -> prompt/recorder
        self._retired: Dict[str, "Leg"] = {}       # tags of stopped media owed a "replaced"
        self.routes: List["Route"] = []
        # Notifications for ids nobody knows yet, kept while a dial() waits for the answer to
        # its call.execute: an engine in the same process (or a fast one) may report the new
        # leg ringing, answered or gone before that answer reaches us.
        self._dialing = 0
        self._orphans: List[Tuple[Callable[["Message"], None], "Message"]] = []
        self._route_ids = itertools.count(1)
        self._regs: List["Registration"] = []
        self.stats = {"legs": 0, "routed": 0, "unclaimed": 0, "app_errors": 0}
        d = dispatcher
        self._regs += [
            d.handler("chan.notify", self._on_notify, priority),
            d.handler("chan.dtmf", self._on_dtmf, priority),
            d.watcher("call.execute", self._on_execute),
            d.watcher("chan.hangup", self._on_hangup),
            d.watcher("chan.disconnected", self._on_disconnected),
            d.watcher("call.answered", self._on_answered),
            d.watcher("call.ringing", self._on_progress),
            d.watcher("call.progress", self._on_progress),
        ]
        self._route_reg: Optional["Registration"] = None
        # Connection loss: the legs end here (nobody will tell us about them any more) and their
        # calls, which Yate keeps, are dropped once we are back.  The dispatcher has no hook
        # for this, so its attach/detach are wrapped on the instance (undone by close()).
        self.offline = False
        self._stale: List[str] = []
        self._orig_attach = dispatcher.attach
        self._orig_detach = dispatcher.detach
        dispatcher.attach = self._attach            # type: ignore[method-assign]
        dispatcher.detach = self._detach            # type: ignore[method-assign]

    def __len__(self) -> int:
        return len(self.live)

    def path(self, name: str) -> str:
        if self.media_root and not os.path.isabs(name) and name != "-" \
                and not name.startswith(("wave/", "tone/")):
            return os.path.join(self.media_root, name)
        return name

    def _detach(self, reason: Any = None) -> None:
        self.connection_lost(reason)
        self._orig_detach(reason)

    def _attach(self, write: Callable[[str], None]) -> None:
        self._orig_attach(write)
        self.offline = False
        stale, self._stale = self._stale, []
        for cid in stale:
            try:
                self.dispatcher.msg("call.drop", {"id": cid, "reason": "disconnected"}).enqueue()
            except Exception:
                self.log.failure("Dropping {chan} after reconnecting failed", chan=cid)

    def connection_lost(self, reason: Any = None) -> None:
        """The connection to Yate is gone: every live leg ends (``disconnected``) and its call
        is remembered, to be dropped once the dispatcher is attached again."""
        self.offline = True
        for leg in list(self.live):
            cid = leg.id or leg.chan
            if cid and len(self._stale) < 100000:
                self._stale.append(cid)
            leg._end("disconnected")

    def close(self) -> None:
        """Remove the switchboard's handlers and routes (live legs are left as they are)."""
        self.closed = True
        for name in ("attach", "detach"):
            if name in vars(self.dispatcher):
                delattr(self.dispatcher, name)
        for reg in self._regs:
            reg.cancel()
        self._regs = []
        if self._route_reg is not None:
            self._route_reg.cancel()
            self._route_reg = None
        self.routes = []
        if getattr(self.dispatcher, _ATTR, None) is self:
            delattr(self.dispatcher, _ATTR)

    # -- bookkeeping used by legs ---------------------------------------------------------------
    def _adopt(self, leg: "Leg", app: str = "", record_id: Optional[str] = None) -> None:
        self.live.add(leg)
        self.stats["legs"] += 1
        if self.calls is not None:
            leg.record_id = self.calls.start(
                record_id, app=app, dir="in" if leg.direction == "incoming" else "out",
                chan=leg.id or "", **{"from": leg.caller, "to": leg.called or leg.target or ""})
        for cid in (leg.id, leg.chan):
            if cid:
                self.legs[cid] = leg

    def _map(self, cid: str, leg: "Leg") -> None:
        self.legs[cid] = leg

    def _unmap(self, cid: str) -> None:
        self.legs.pop(cid, None)

    def _forget(self, leg: "Leg") -> None:
        self.live.discard(leg)
        if self.calls is not None and leg.record_id is not None:
            self.calls.set(leg.record_id, chan=leg.id or "")
            self.calls.end(leg.record_id, leg.end_reason or "ended")
        for cid in (leg.id, leg.chan):
            if cid and self.legs.get(cid) is leg:
                del self.legs[cid]
        for tag in leg._tags:
            self._tags.pop(tag, None)
            self._retired.pop(tag, None)
        leg._tags = set()

    def _orphan(self, handler: Callable[["Message"], None], msg: "Message") -> None:
        if self._dialing and len(self._orphans) < 4096:
            self._orphans.append((handler, msg))

    def _dial_started(self) -> None:
        self._dialing += 1

    def _dial_answered(self, leg: Optional["Leg"]) -> None:
        """A dial's call.execute came back: replay what arrived early for its ids."""
        self._dialing -= 1
        orphans = self._orphans
        if self._dialing <= 0:
            self._dialing = 0
            self._orphans = []
        if leg is None:
            return
        ids = {leg.id, leg.chan}
        mine = [(h, m) for h, m in orphans if m.get("id") in ids]
        if mine and self._orphans:
            self._orphans = [(h, m) for h, m in self._orphans if m.get("id") not in ids]
        for handler, msg in mine:
            handler(msg)

    def pending_count(self) -> int:
        """Prompts/recorders waiting for a notify, and pending leg operations (for tests)."""
        return len(self._tags) + len(self._retired) + sum(len(leg._waits) for leg in self.live)

    # -- handlers ---------------------------------------------------------------------------------
    def _on_notify(self, msg: "Message") -> bool:
        tag = msg.get("targetid", "")
        media = self._tags.get(tag)
        if media is None:
            leg = self._retired.pop(tag, None)
            if leg is None:
                return False
            leg._tags.discard(tag)
            return True
        media.notified(msg)
        return True

    def _on_dtmf(self, msg: "Message") -> bool:
        cid = msg.get("id", "")
        leg = self.legs.get(cid)
        if leg is None or leg.id != cid:
            return False
        return leg._dtmf(msg)

    def _on_execute(self, msg: "Message") -> None:
        leg = self.legs.get(msg.get("id", ""))
        if leg is not None and leg.direction == "incoming" and leg.chan is None:
            leg._executed(msg)

    def _on_hangup(self, msg: "Message") -> None:
        leg = self.legs.get(msg.get("id", ""))
        if leg is None:
            self._orphan(self._on_hangup, msg)
        else:
            leg._hangup_seen(msg)

    def _on_disconnected(self, msg: "Message") -> None:
        leg = self.legs.get(msg.get("id", ""))
        if leg is None:
            self._orphan(self._on_disconnected, msg)
        else:
            leg._disconnected(msg)

    def _on_answered(self, msg: "Message") -> None:
        cid = msg.get("id", "")
        leg = self.legs.get(cid)
        if leg is None:
            self._orphan(self._on_answered, msg)
        elif leg.id == cid:
            leg._remote_answered(msg)

    def _on_progress(self, msg: "Message") -> None:
        cid = msg.get("id", "")
        leg = self.legs.get(cid)
        if leg is None:
            self._orphan(self._on_progress, msg)
        elif leg.id == cid:
            leg._remote_progress(msg)
