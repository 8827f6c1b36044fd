"""Channels and the modules that drive them: sip, dumb, conf, tone, wave, callfork, pbx, yrtp.

Modelled on ``engine/Channel.cpp`` (Channel, Driver, Router) and the modules named in
``yate-messages.md``; every message sequence and parameter order here is backed by a trace in
``traces/`` (the comments name it).  Media is not simulated: prompts end after their duration,
recorders write files of the right size, tones are remembered — timing and notifications are.

Life cycle rules (Yate's, reduced to what the traces show):

* ``a.connect(b)``: both lose their old peers (which get ``chan.disconnected``), then
  ``chan.connected`` for ``b`` and for ``a`` are enqueued, in that order.
* A channel whose peer leaves gets ``chan.disconnected`` (disconnect parameters copied, then
  its standard parameters, then ``reason``) and its ``targetid`` is cleared; when that message
  is done and nobody reconnected it, it dies (dumb, conf: at once; sip: hangs up).
* ``call.drop`` (``msgDrop``): status := reason (or ``dropped``), the peer is disconnected with
  the reason and the drop parameters; a dumb or conf channel then dies, a SIP leg hangs up.
* Dying: dumb and sip channels enqueue ``chan.hangup``; a notified prompt still attached yields
  ``chan.notify reason=replaced``.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from twisted.logger import Logger

from yaypm.testing.simulator.engine import Engine, SimMessage, run_steps
from yaypm.testing.simulator import media

if TYPE_CHECKING:  # pragma: no cover
    from yaypm.testing.simulator.modules import Modules

__all__ = ["Channel", "Driver", "DumbChannel", "ConfChannel", "ConfRoom", "ToneChannel",
           "ExtChannel", "DumbDriver", "ToneDriver", "WaveDriver", "ConfDriver", "ExtDriver",
           "route_call", "SIP_ERRORS", "SIP_PHRASES", "error_for_code",
           "code_for_error"]

log = Logger(namespace="yaypm.testing.simulator")

#: ``dict_errors`` of ysipchan.cpp: Yate error name -> SIP code (first match wins both ways).
SIP_ERRORS: List[Tuple[str, int]] = [
    ("incomplete", 484), ("noroute", 404), ("noroute", 604), ("noconn", 503), ("noconn", 408),
    ("noauth", 401), ("noautoauth", 401), ("nomedia", 415), ("nocall", 481), ("busy", 486),
    ("busy", 600), ("noanswer", 480), ("noanswer", 487), ("rejected", 406), ("rejected", 606),
    ("forbidden", 403), ("forbidden", 603), ("offline", 404), ("congestion", 480),
    ("unallocated", 410), ("moved", 410), ("failure", 500), ("pending", 491),
    ("looping", 483), ("timeout", 408), ("timeout", 504), ("postdialdelay", 504),
    ("service-not-implemented", 501), ("unimplemented", 501), ("service-unavailable", 503),
    ("unacceptable", 488), ("noresource", 503), ("interworking", 500), ("interworking", 400),
    ("invalid-message", 400), ("protocol-error", 400),
]

SIP_PHRASES: Dict[int, str] = {
    180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    406: "Not Acceptable", 408: "Request Timeout", 410: "Gone", 415: "Unsupported Media Type",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    483: "Too Many Hops", 484: "Address Incomplete", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 491: "Request Pending",
    500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
    504: "Server Time-out", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}


def code_for_error(error: Optional[str], default: int = 0) -> int:
    for name, code in SIP_ERRORS:
        if name == error:
            return code
    return default


def error_for_code(code: int) -> Optional[str]:
    for name, c in SIP_ERRORS:
        if c == code:
            return name
    return None


# ------------------------------------------------------------------------------------------------
# Channels
# ------------------------------------------------------------------------------------------------

class Channel:
    """A call leg (``Channel`` in Yate): id, status, peer, targetid, billid, disconnect params."""

    media_capable = False      # a leg with a media endpoint (SIP): prompts reach a party
    media_up = False           # ... and its audio flows now (so prompts progress, recorders record)
    emits_hangup = True        # chan.hangup when it dies (not for tone/wave/conf helpers)

    def __init__(self, driver: "Driver", outgoing: bool, address: str = "",
                 ident: Optional[str] = None) -> None:
        self.driver = driver
        self.engine: Engine = driver.engine
        self.outgoing = outgoing
        self.id = ident or driver.next_id()
        self.status = self.direction
        self.address = address
        self.targetid = ""
        self.billid = ""
        self.peer: Optional[Channel] = None
        self.lastpeer_id = ""
        self.answered = False
        self.params: List[Tuple[str, str]] = []        # disconnect parameters (m_parameters)
        self.maxcall = 0.0
        self.timeout = 0.0
        self.toutans = 0
        self.alive = True
        self.dtmf_seq = 0
        self._dtmf_last: Tuple[str, str, float] = ("", "", 0.0)
        self.media: Dict[str, Any] = {}                  # "source"/"consumer"/"override"...
        self.heard: List[str] = []                       # what this leg was played (SIP legs)
        self.dtmf_out: List[str] = []                    # digits sent to this leg (SIP legs)
        self.on_death: List[Callable[["Channel"], None]] = []
        if not outgoing:
            self.billid = driver.modules.new_billid()
        driver.add(self)

    # -- identity ------------------------------------------------------------------------------
    @property
    def direction(self) -> str:
        return "outgoing" if self.outgoing else "incoming"

    @property
    def peer_id(self) -> str:
        return self.peer.id if self.peer is not None else ""

    def rename(self, new_id: str) -> None:
        self.driver.rename(self, new_id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.status} peer={self.peer_id}>"

    # -- messages ------------------------------------------------------------------------------
    def complete(self, msg: SimMessage, minimal: bool = False) -> None:
        """Add the standard parameters (``Channel::complete``), in Yate's order."""
        msg.set("id", self.id)
        msg.set("module", self.driver.name)
        if msg.name == "chan.hangup":
            msg.copy_all(self.params)
        if minimal:
            return
        msg.set("status", self.status)
        if self.address:
            msg.set("address", self.address)
        if self.targetid:
            msg.set("targetid", self.targetid)
        if self.billid:
            msg.set("billid", self.billid)
        if self.peer is not None:
            msg.set("peerid", self.peer.id)
        if self.lastpeer_id:
            msg.set("lastpeerid", self.lastpeer_id)
        msg.set("answered", "true" if self.answered else "false")
        msg.set("direction", self.direction)

    def message(self, name: str, minimal: bool = False, data: bool = True) -> SimMessage:
        msg = SimMessage(name, time=self.engine.now_sec())
        if data:
            msg.userdata = self
        self.complete(msg, minimal)
        return msg

    def set_status(self, status: str) -> None:
        """``Channel::status``: ``answered`` also sets the answered flag and clears maxcall."""
        self.status = status
        if not self.answered and status == "answered":
            self.answered = True
            self.maxcall = 0.0
            if self.toutans:
                self.timeout = self.engine.now() + self.toutans / 1000.0

    # -- peers -----------------------------------------------------------------------------------
    def connect(self, peer: "Channel", reason: Optional[str] = None,
                notify: bool = True) -> bool:
        """``CallEndpoint::connect``: old peers are notified, then chan.connected (peer, self)."""
        if peer is self.peer:
            return True
        if peer is self or not self.alive or not peer.alive:
            return False
        self.disconnect(reason, notify)
        peer.disconnect(reason, notify)
        self.peer = peer
        peer._set_peer(self, reason, notify, None)
        self.params = []
        self.connected(reason)
        self.driver.modules.media_changed(self)
        return True

    def disconnect(self, reason: Optional[str] = None, notify: bool = True,
                   params: Optional[List[Tuple[str, str]]] = None) -> bool:
        """Leave the peer, which is told with ``reason`` and ``params`` when ``notify``."""
        temp = self.peer
        if temp is None:
            return False
        self.peer = None
        temp._set_peer(None, reason, notify, params)
        self.driver.modules.media_changed(self)
        return True

    def _set_peer(self, peer: Optional["Channel"], reason: Optional[str], notify: bool,
                  params: Optional[List[Tuple[str, str]]]) -> None:
        self.peer = peer
        if peer is not None:
            self.params = []
            self.connected(reason)
        else:
            if notify:
                self.params = list(params) if params else []
                self.disconnected(reason)
        self.driver.modules.media_changed(self)

    def connected(self, reason: Optional[str]) -> None:
        if not self.billid and self.peer is not None and self.peer.billid:
            self.billid = self.peer.billid
        msg = self.message("chan.connected")
        if self.peer is not None:
            self.lastpeer_id = self.peer.id
        if reason:
            msg.set("reason", reason)
        self.engine.enqueue(msg)

    def disconnected(self, reason: Optional[str]) -> None:
        """The peer left: enqueue ``chan.disconnected``; die after it unless reconnected."""
        msg = SimMessage("chan.disconnected", self.params, time=self.engine.now_sec())
        msg.clear("handlers")
        self.complete(msg)
        if reason:
            msg.set("reason", reason)
        msg.userdata = self
        self.targetid = ""
        self.params = []
        msg.when_released(self._disconnect_done)
        self.engine.enqueue(msg)

    def _disconnect_done(self, msg: SimMessage, handled: bool) -> None:
        if self.alive and self.peer is None:
            self.end_disconnected(msg)

    def end_disconnected(self, msg: SimMessage) -> None:
        """Nobody reconnected the channel while its chan.disconnected was processed."""
        self.die()

    # -- operations driven by messages -----------------------------------------------------------
    def msg_drop(self, msg: Optional[SimMessage], reason: Optional[str]) -> bool:
        """``Channel::msgDrop``."""
        self.timeout = self.maxcall = 0.0
        self.set_status(reason or "dropped")
        self.disconnect(reason, True, msg.pairs() if msg is not None else None)
        self.after_drop(reason)
        return True

    def after_drop(self, reason: Optional[str]) -> None:
        self.die()

    def msg_ringing(self, msg: SimMessage) -> bool:
        self.set_status("ringing")
        if not self.billid:
            self.billid = msg.get("billid") or ""
        return True

    def msg_progress(self, msg: SimMessage) -> bool:
        self.set_status("progressing")
        if not self.billid:
            self.billid = msg.get("billid") or ""
        return True

    def msg_answered(self, msg: SimMessage) -> bool:
        self.maxcall = 0.0
        tout = msg.get_int("timeout", self.toutans)
        self.toutans = tout if tout > 0 else 0
        self.set_status("answered")
        self.answered = True
        if not self.billid:
            self.billid = msg.get("billid") or ""
        return True

    def msg_tone(self, msg: SimMessage, text: str) -> bool:
        return False

    def msg_masquerade(self, msg: SimMessage) -> bool:
        """``Channel::msgMasquerade``; True stops the message (a refused DTMF duplicate)."""
        if not self.billid:
            self.billid = msg.get("billid") or ""
        if msg.name == "call.answered":
            self.maxcall = 0.0
            self.status = "answered"         # m_status only: answered stays false (pitfall 13)
        elif msg.name == "call.progress":
            self.set_status("progressing")
        elif msg.name == "call.ringing":
            self.set_status("ringing")
        elif msg.name == "chan.dtmf":
            if self.dtmf_sequence(msg):
                return True
        return False

    def dtmf_sequence(self, msg: SimMessage) -> bool:
        """Add ``sequence``/``duplicate`` (``Channel::dtmfSequence``); True for a duplicate."""
        if msg.name != "chan.dtmf" or "sequence" in msg:
            return False
        text = msg.get("text")
        detected = msg.get("detected")
        now = self.engine.now()
        duplicate = False
        seq = self.dtmf_seq
        last_text, last_det, last_time = self._dtmf_last
        if text is not None and detected is not None and text == last_text \
                and detected != last_det and now < last_time:
            duplicate = True
        else:
            self.dtmf_seq += 1
            seq = self.dtmf_seq
            self._dtmf_last = (text or "", detected or "", now + 4.0)
        msg.add("sequence", str(seq))
        msg.add("duplicate", "true" if duplicate else "false")
        return duplicate

    def set_maxcall(self, msg: Optional[SimMessage], default_tout: int = -1) -> None:
        """``Channel::setMaxcall``: ``timeout`` and ``maxcall`` (ms) from a message."""
        now = self.engine.now()
        tout = msg.get_int("timeout", default_tout) if msg is not None else default_tout
        if tout > 0:
            self.toutans = tout
            self.timeout = now + tout / 1000.0
        elif tout == 0:
            self.toutans = 0
            self.timeout = 0.0
        if self.answered:
            self.maxcall = 0.0
        elif msg is not None:
            mc = msg.get_int("maxcall", -1)
            if mc > 0:
                self.timeout = 0.0
                self.maxcall = now + mc / 1000.0
            elif mc == 0:
                self.maxcall = 0.0
        if self.maxcall or self.timeout:
            self.driver.modules.need_timer()

    def check_timers(self, msg: SimMessage, now: float) -> None:
        if self.timeout and self.timeout < now:
            self.msg_drop(msg, "timeout")
        elif self.maxcall and self.maxcall < now:
            self.msg_drop(msg, "noanswer")

    def call_routed(self, msg: SimMessage) -> bool:
        self.set_status("routed")
        if not self.billid:
            self.billid = msg.get("billid") or ""
        return True

    def call_accept(self, msg: SimMessage) -> None:
        """``Channel::callAccept``: autoanswer / autoring / autoprogress / no targetid."""
        self.set_status("accepted")
        self.set_maxcall(msg, -1)
        if not self.billid:
            self.billid = msg.get("billid") or ""
        self.targetid = msg.get("targetid") or ""
        if msg.get_bool("autoanswer"):
            self.msg_answered(msg)
        elif msg.get_bool("autoring"):
            self.msg_ringing(msg)
        elif msg.get_bool("autoprogress"):
            self.msg_progress(msg)
        elif not self.targetid and msg.get_bool("autoanswer", True):
            self.msg_answered(msg)

    def call_rejected(self, error: str, reason: Optional[str], msg: Optional[SimMessage]) -> None:
        self.set_status("rejected")

    # -- death -------------------------------------------------------------------------------------
    def die(self) -> None:
        """Destroy the channel: ``chan.hangup`` (if it emits one), media released."""
        if not self.alive:
            return
        self.alive = False
        if self.peer is not None:
            self.disconnect(None, True, None)
        if self.emits_hangup:
            self.engine.enqueue(self.message("chan.hangup", data=False))
        self.driver.modules.release_media(self)
        self.driver.remove(self)
        for fn in self.on_death:
            fn(self)

    def script_gone(self, reason: str) -> None:
        """The extmodule connection that owned this channel closed."""
        self.disconnect(reason or None, True, None)
        self.die()


class DumbChannel(Channel):
    """``dumb/N``: no media, no protocol; dies when its peer leaves (dumbchan.cpp)."""

    def __init__(self, driver: "Driver", address: str, exec_msg: SimMessage,
                 outgoing: bool) -> None:
        super().__init__(driver, outgoing, address)
        startup = self.message("chan.startup")
        if outgoing:
            startup.copy_params(exec_msg, "caller,callername,called,billid,callto,username")
        self.engine.enqueue(startup)


class ToneChannel(Channel):
    """``tone/N``: a tone generator leg (routing to ``tone/busy``...); no chan.hangup."""

    emits_hangup = False

    def __init__(self, driver: "Driver", tone: str) -> None:
        super().__init__(driver, True, tone)
        self.tone = tone


class ConfChannel(Channel):
    """``conf/N``: one leg of a conference room (conference.cpp); no chan.hangup."""

    emits_hangup = False
    media_capable = False

    def __init__(self, driver: "Driver", room: "ConfRoom", counted: bool = True) -> None:
        super().__init__(driver, True, room.name)
        self.room = room
        self.counted = counted

    def die(self) -> None:
        if not self.alive:
            return
        super().die()
        self.room.leave(self)


class ConfRoom:
    """A conference room: legs, ``lonely`` rule, ``chan.notify`` room events."""

    def __init__(self, modules: "Modules", name: str, params: SimMessage) -> None:
        self.modules = modules
        self.name = name
        self.legs: List[ConfChannel] = []
        self.maxusers = params.get_int("maxusers", 10)
        self.lonely = params.get_bool("lonely", False)
        self.notify = params.get("notify") or ""
        self.alive = True

    @property
    def users(self) -> int:
        return sum(1 for leg in self.legs if leg.counted)

    def join(self, leg: ConfChannel) -> None:
        self.legs.append(leg)
        self.event("joined", leg)

    def leave(self, leg: ConfChannel) -> None:
        if leg not in self.legs:
            return
        self.legs.remove(leg)
        self.event("left", leg)
        if not self.legs:
            self.destroy()
            return
        if not self.lonely and self.users == 1:
            # A single counted user left alone is dropped (yate-messages.md §2.21, D2/D3).
            for other in list(self.legs):
                if other.counted and other.alive:
                    other.msg_drop(None, "hangup")

    def drop_all(self, reason: Optional[str]) -> None:
        legs = list(self.legs)
        for leg in legs:
            if leg.alive:
                leg.msg_drop(None, reason)

    def destroy(self) -> None:
        if self.alive:
            self.alive = False
            self.event("destroyed", None)
            self.modules.rooms.pop(self.name, None)

    def event(self, event: str, leg: Optional[ConfChannel]) -> None:
        if not self.notify:
            return
        m = SimMessage("chan.notify", time=self.modules.engine.now_sec())
        m.add("targetid", self.notify)
        m.add("event", event)
        m.add("room", "conf/" + self.name)
        m.add("maxusers", str(self.maxusers))
        m.add("users", str(self.users))
        if leg is not None:
            m.add("id", leg.id)
            m.add("lastpeerid", leg.lastpeer_id or leg.peer_id)
        self.modules.engine.enqueue(m)


class ExtChannel(Channel):
    """The call endpoint of a channel-role connection (extmodule's ``ExtModChan``).

    Created by the first ``call.execute`` the connection sends; its id is ``ExtModule`` until
    ``setlocal:id`` changes it (yate-extmodule.md §9.4).  Without ``setlocal:disconnected`` it
    dies silently when its peer leaves; it never emits ``chan.hangup``.
    """

    emits_hangup = False

    def __init__(self, driver: "Driver") -> None:
        super().__init__(driver, False, "", ident="ExtModule")
        self.notify_disconnected = False

    def disconnected(self, reason: Optional[str]) -> None:
        if self.notify_disconnected:
            super().disconnected(reason)
        else:
            self.die()


# ------------------------------------------------------------------------------------------------
# Drivers
# ------------------------------------------------------------------------------------------------

class Driver:
    """A channel driver: name, ``prefix/N`` ids, its channels."""

    def __init__(self, modules: "Modules", name: str, dtype: str = "misc") -> None:
        self.modules = modules
        self.engine = modules.engine
        self.name = name
        self.type = dtype
        self.prefix = name + "/"
        self._ids = itertools.count(1)
        self.channels: Dict[str, Channel] = {}
        self.total = 0
        self.routed = 0

    def next_id(self) -> str:
        return self.prefix + str(next(self._ids))

    def add(self, chan: Channel) -> None:
        self.channels[chan.id] = chan
        self.total += 1
        self.modules.all_channels[chan.id] = chan

    def remove(self, chan: Channel) -> None:
        if self.channels.get(chan.id) is chan:
            del self.channels[chan.id]
        if self.modules.all_channels.get(chan.id) is chan:
            del self.modules.all_channels[chan.id]
        if self.modules._timer_call is not None:
            self.modules.timer_check()

    def rename(self, chan: Channel, new_id: str) -> None:
        self.remove(chan)
        chan.id = new_id
        self.add(chan)
        self.total -= 1

    def find(self, ident: Optional[str]) -> Optional[Channel]:
        if not ident:
            return None
        return self.channels.get(ident)

    def status_text(self, details: bool = True) -> str:
        s = (f"name={self.name},type={self.type},format=Status|Address|Peer;"
             f"routed={self.routed},routing=0,total={self.total},chans={len(self.channels)}")
        extra = self.extra_status()
        if extra:
            s += "," + extra
        if details and self.channels:
            s += ";" + ",".join(f"{c.id}={c.status}|{c.address}|{c.peer_id}"
                                for c in self.channels.values())
        return s + "\r\n"

    def extra_status(self) -> str:
        return ""

    # -- relay entry points (``Driver::received``) ---------------------------------------------
    def dest_for(self, msg: SimMessage) -> str:
        dest = msg.get("peerid") or ""
        if not dest.startswith(self.prefix):
            dest = msg.get("targetid") or ""
        return dest

    def on_masquerade(self, msg: SimMessage) -> bool:
        chan = self.find(msg.get("id"))
        if chan is None:
            return False
        msg.name = msg.get("message") or ""
        msg.clear("message")
        msg.userdata = chan
        if chan.msg_masquerade(msg):
            return True
        chan.complete(msg, msg.get_bool("complete_minimal", False))
        return False

    def on_locate(self, msg: SimMessage) -> bool:
        chan = self.find(msg.get("id"))
        if chan is None:
            return False
        msg.userdata = chan
        return True

    def on_drop(self, msg: SimMessage) -> bool:
        dest = msg.get("id") or ""
        if dest == self.name or not dest or dest == self.type:
            reason = msg.get("reason")
            for each in list(self.channels.values()):
                each.msg_drop(msg, reason)
            return dest == self.name
        chan = self.find(dest)
        if chan is None:
            return False
        return chan.msg_drop(msg, msg.get("reason"))

    def on_execute(self, msg: SimMessage) -> Any:
        callto = msg.get("callto") or ""
        if not callto.startswith(self.prefix):
            return False
        if msg.get_bool("stop_call") and not self.can_stop_call():
            msg.set("error", "stopped_call")
            return False
        return self.msg_execute(msg, callto[len(self.prefix):])

    def can_stop_call(self) -> bool:
        return False

    def msg_execute(self, msg: SimMessage, dest: str) -> Any:
        return False

    def _incoming_event(self, msg: SimMessage, method: str) -> bool:
        """call.answered / call.ringing / call.progress: ``chan.<method>(msg)`` for the
        addressed channel, only if it is incoming and not answered yet."""
        chan = self.find(self.dest_for(msg))
        if chan is None:
            return False
        return (not chan.outgoing) and not chan.answered and getattr(chan, method)(msg)

    def on_answered(self, msg: SimMessage) -> bool:
        return self._incoming_event(msg, "msg_answered")

    def on_ringing(self, msg: SimMessage) -> bool:
        return self._incoming_event(msg, "msg_ringing")

    def on_progress(self, msg: SimMessage) -> bool:
        return self._incoming_event(msg, "msg_progress")

    def on_tone(self, msg: SimMessage) -> bool:
        chan = self.find(self.dest_for(msg))
        if chan is None:
            return False
        return chan.msg_tone(msg, msg.get("text") or "")

    def on_timer(self, msg: SimMessage) -> bool:
        now = self.engine.now()
        for chan in list(self.channels.values()):
            if chan.alive:
                chan.check_timers(msg, now)
        return False


class ExtDriver(Driver):
    """extmodule's channels: several may share the id ``ExtModule``, so they are kept apart."""

    def add(self, chan: Channel) -> None:
        self.channels[str(id(chan))] = chan
        self.total += 1

    def remove(self, chan: Channel) -> None:
        self.channels.pop(str(id(chan)), None)

    def rename(self, chan: Channel, new_id: str) -> None:
        chan.id = new_id


class DumbDriver(Driver):
    """dumbchan.cpp: ``callto=dumb/`` connects a calling channel or originates a call."""

    def can_stop_call(self) -> bool:
        return True

    def msg_execute(self, msg: SimMessage, dest: str) -> Any:
        dd = msg.userdata
        if isinstance(dd, Channel):
            if msg.get_bool("stop_call"):
                msg.set("error", "stopped_call")
                return False
            c = DumbChannel(self, dest, msg, True)
            if dd.connect(c):
                msg.set("peerid", c.id)
                msg.set("targetid", c.id)
                c.targetid = dd.id
                if "autoring" not in msg:
                    msg.add("autoring", "true")
                return True
            c.alive = False
            self.remove(c)
            return False
        target = msg.get("target")
        if not target:
            return False
        return run_steps(self._originate(msg, dest, target))

    def _originate(self, msg: SimMessage, dest: str, target: str) -> Any:
        c = DumbChannel(self, dest, msg, False)
        caller = msg.get("caller") or (self.prefix + dest)
        m = SimMessage("call.route", time=self.engine.now_sec())
        m.add("driver", "dumb")
        m.add("id", c.id)
        m.add("caller", caller)
        m.add("called", target)
        for name in ("callername", "maxcall", "timeout", "stop_call"):
            v = msg.get(name)
            if v is not None:
                m.set(name, v)
        copy = msg.get("copyparams")
        if copy:
            m.copy_params(msg, copy)
        direct = msg.get("direct") or ""
        ok = True
        if not direct:
            ok = yield self.engine.dispatch(m)
        if ok:
            m.name = "call.execute"
            if direct:
                m.add("callto", direct)
            else:
                m.add("callto", m.retvalue)
                m.retvalue = ""
            m.set("id", c.id)
            m.userdata = c
            m.time = self.engine.now_sec()
            executed = yield self.engine.dispatch(m)
            if executed and c.alive and c.call_routed(m):
                c.call_accept(m)
                for name in ("id", "peerid"):
                    v = m.get(name)
                    if v is not None:
                        msg.set(name, v)
                targetid = m.get("targetid")
                if targetid:
                    msg.set("targetid", targetid)
                    c.targetid = targetid
                return True
            for name in ("error", "reason"):
                v = m.get(name)
                if v is not None:
                    msg.set(name, v)
        c.die()
        return False


class ToneDriver(Driver):
    """tonegen: ``callto=tone/<name>`` legs; continuous tones as sources (chan.attach)."""

    def msg_execute(self, msg: SimMessage, dest: str) -> Any:
        dd = msg.userdata
        if not isinstance(dd, Channel):
            return False
        if dest not in media.CONTINUOUS_TONES:
            return False
        t = ToneChannel(self, dest)
        if dd.connect(t):
            msg.set("peerid", t.id)
            self.modules.note_heard(dd, "tone/" + dest)
            return True
        return False


class WaveDriver(Driver):
    """wavefile: ``callto=wave/play/<file>`` or ``wave/record/<file>`` legs."""

    def status_text(self, details: bool = True) -> str:
        text = super().status_text(details)
        return text.replace(";routed=", ";play=0,record=0,routed=", 1)

    def msg_execute(self, msg: SimMessage, dest: str) -> Any:
        dd = msg.userdata
        if not isinstance(dd, Channel):
            return False
        if not (dest.startswith("play/") or dest.startswith("record/")):
            return False
        w = Channel(self, True, dest)
        w.emits_hangup = False
        if dd.connect(w):
            msg.set("peerid", w.id)
            if dest.startswith("play/"):
                self.modules.note_heard(dd, "wave/" + dest)
                self.modules.attach_wave_source(w, dest[5:], msg.get("notify") or "",
                                                kind="source")
            return True
        return False


class ConfDriver(Driver):
    """conference.cpp: rooms, ``callto=conf/<room>``, ``call.conference``, room drop."""

    def extra_status(self) -> str:
        return f"rooms={len(self.modules.rooms)}"

    def room(self, name: str, params: SimMessage) -> Tuple[ConfRoom, bool]:
        if not name:
            name = "x-" + str(next(self.modules._room_ids))
        room = self.modules.rooms.get(name)
        if room is not None:
            return room, False
        room = ConfRoom(self.modules, name, params)
        self.modules.rooms[name] = room
        room.event("created", None)
        return room, True

    def msg_execute(self, msg: SimMessage, dest: str) -> Any:
        chan = msg.userdata
        if not isinstance(chan, Channel):
            return False
        if msg.get_bool("existing") and dest not in self.modules.rooms:
            return False
        room, new = self.room(dest, msg)
        if room.users >= room.maxusers:
            msg.set("error", "congestion")
            return False
        leg = ConfChannel(self, room, counted=msg.get_bool("counted", True))
        if not chan.connect(leg):
            leg.alive = False
            self.remove(leg)
            return False
        room.join(leg)
        msg.set("peerid", leg.id)
        msg.set("room", "conf/" + room.name)
        msg.set("newroom", "true" if new else "false")
        msg.set("users", str(room.users))
        return True

    def on_conference(self, msg: SimMessage) -> bool:
        """``call.conference``: the channel and its old peer both get legs (D3)."""
        chan = msg.userdata
        if not isinstance(chan, Channel):
            return False
        name = msg.get("room") or ""
        if name.startswith(self.prefix):
            name = name[len(self.prefix):]
        room, new = self.room(name, msg)
        old = chan.peer
        reason = msg.get("reason") or "conference"
        leg = ConfChannel(self, room)
        chan.connect(leg, reason, notify=False)
        room.join(leg)
        if old is not None and old.alive:
            leg2 = ConfChannel(self, room)
            old.connect(leg2, reason, notify=False)
            room.join(leg2)
        msg.set("peerid", leg.id)
        msg.set("room", "conf/" + room.name)
        msg.set("newroom", "true" if new else "false")
        msg.set("users", str(room.users))
        return True

    def on_drop(self, msg: SimMessage) -> bool:
        dest = msg.get("id") or ""
        if dest.startswith(self.prefix):
            room = self.modules.rooms.get(dest[len(self.prefix):])
            if room is not None:
                room.drop_all(msg.get("reason"))
                return True
        return super().on_drop(msg)


# ------------------------------------------------------------------------------------------------
# The router
# ------------------------------------------------------------------------------------------------

def route_call(engine: Engine, chan: Channel, msg: SimMessage) -> Any:
    """``Router::route`` as a step generator: preroute, route, execute, accept or reject."""
    callto = msg.get("callto")
    ok = bool(callto)
    if ok:
        msg.retvalue = callto or ""
    else:
        msg.name = "call.preroute"
        ok = yield engine.dispatch(msg)
        if not chan.alive:
            return False
        if ok and msg.retvalue in ("-", "error"):
            chan.call_rejected(msg.get("error") or "unknown", msg.get("reason"), msg)
            return False
        chan.status = "prerouted"
        billid = msg.get("billid")
        if billid is not None:
            chan.billid = billid
        msg.name = "call.route"
        msg.retvalue = ""
        msg.clear(engine.trackparam)
        msg.time = engine.now_sec()
        ok = yield engine.dispatch(msg)
    if not chan.alive:
        return False
    msg.userdata = chan
    rv = msg.retvalue.strip()
    msg.retvalue = rv
    if ok and rv:
        if rv in ("-", "error"):
            chan.call_rejected(msg.get("error") or "unknown", msg.get("reason"), msg)
            return False
        if msg.get_int("antiloop", 1) <= 0:
            error = msg.get("error") or "looping"
            chan.call_rejected(error, msg.get("reason") or
                               ("Call is looping" if error == "looping" else None), msg)
            return False
        chan.call_routed(msg)
        chan.driver.routed += 1
        msg.name = "call.execute"
        msg.set("callto", rv)
        msg.clear("error")
        msg.retvalue = ""
        msg.clear(engine.trackparam)
        msg.time = engine.now_sec()
        ok = yield engine.dispatch(msg)
        if not chan.alive:
            return False
        if ok:
            chan.call_accept(msg)
            return True
        error = msg.get("error") or "noconn"
        reason = msg.get("reason") or \
            ("Could not connect to target" if error == "noconn" else None)
        m = SimMessage("chan.disconnected", time=engine.now_sec())
        copy = msg.get("copyparams")
        if copy:
            m.copy_params(msg, copy)
        chan.complete(m)
        m.set("error", error)
        if reason is not None:
            m.set("reason", reason)
        m.set("reroute", "true")
        m.userdata = chan
        handled = yield engine.dispatch(m)
        if not handled and chan.alive and chan.peer is None:
            chan.call_rejected(error, reason, msg)
        return False
    error = msg.get("error") or "noroute"
    chan.call_rejected(error, msg.get("reason") or
                       ("No route to call target" if error == "noroute" else None), msg)
    return False
