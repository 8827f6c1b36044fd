"""The engine's own modules, installed at the priorities and in the order the traces show.

:class:`Modules` builds the drivers (sip, dumb, tone, wave, conf, callfork, extmodule's
channels) and installs every handler a stock Yate 6.4.1 has for call control — the
``handlers=`` tracking parameter of each trace names them (``callfork:10,tone:10,dumb:10`` for
``chan.masquerade``, ``yrtp:50,tone:90,dumb:90`` for ``call.execute``...).  It also owns what is
not a driver: pbx (``chan.connect``, detaching media), wavefile/tonegen attachments,
``engine.status`` texts, the regexroute stand-in that routes the numbers of scripted endpoints,
and the one-second ``engine.timer`` (run only while a connection or a channel timer needs it).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Dict, List, Optional, Tuple

from yaypm.testing.simulator import media
from yaypm.testing.simulator.channels import (Channel, ConfDriver, ConfRoom, DumbDriver,
                                              ExtChannel, ExtDriver, ToneDriver, WaveDriver)
from yaypm.testing.simulator.engine import Engine, Handler, SimMessage

__all__ = ["Modules"]


class Modules:
    """The engine's own modules, installed at the priorities the traces show.

    ``tracking`` names what appears in the ``handlers`` parameter (``module:priority``).
    """

    def __init__(self, engine: Engine, media_files: "media.MediaFiles",
                 routes: Optional[Callable[[str, SimMessage], Optional[str]]] = None) -> None:
        self.engine = engine
        self.media_files = media_files
        self.all_channels: Dict[str, Channel] = {}
        self.rooms: Dict[str, ConfRoom] = {}
        self._room_ids = itertools.count(1)
        self._billids = itertools.count(1)
        self.routes = routes
        self.recordings: List[Tuple[str, int]] = []
        self._timer_call: Any = None
        self.timer_users = 0                  # connections with engine.timer handlers/watches
        from yaypm.testing.simulator.sip import SipDriver, ForkDriver
        self.sip = SipDriver(self, "sip", "varchans")
        self.dumb = DumbDriver(self, "dumb")
        self.tone = ToneDriver(self, "tone")
        self.wave = WaveDriver(self, "wave")
        self.conf = ConfDriver(self, "conf")
        self.fork = ForkDriver(self, "fork")
        self.external = ExtDriver(self, "external")
        self.drivers = [self.tone, self.dumb, self.wave, self.sip, self.conf]
        self.status_modules: List[Tuple[str, Callable[[bool], str], bool]] = []
        self._install_handlers()
        engine.subscribed = self.subscribed         # type: ignore[attr-defined]
        engine.create_ext_channel = self.create_ext_channel   # type: ignore[attr-defined]

    def create_ext_channel(self, conn: Any) -> "ExtChannel":
        return ExtChannel(self.external)

    def new_billid(self) -> str:
        return f"{self.engine.runid}-{next(self._billids)}"

    # -- the handler table -------------------------------------------------------------------
    def _install_handlers(self) -> None:
        eng = self.engine
        sip, dumb, tone, wave, conf, fork = (self.sip, self.dumb, self.tone, self.wave,
                                             self.conf, self.fork)
        no = _never

        def h(name: str, prio: int, module: str, cb: Callable[[SimMessage], Any]) -> None:
            eng.install(Handler(name, prio, cb, track=f"{module}:{prio}", owner=module))

        # priority 10: chan.masquerade, every driver (B1, D2)
        h("chan.masquerade", 10, "callfork", fork.on_masquerade)
        for d in (tone, dumb, wave, sip, conf):
            h("chan.masquerade", 10, d.name, d.on_masquerade)
        # 20: callfork rewrites its slaves' call progress
        h("call.answered", 20, "callfork", fork.on_answered_fork)
        h("call.ringing", 20, "callfork", fork.on_ringing_fork)
        h("call.progress", 20, "callfork", fork.on_progress_fork)
        for d in (tone, dumb, wave, sip, conf):
            h("chan.locate", 40, d.name, d.on_locate)
        # 50: yrtp
        for name in ("call.execute", "call.answered", "call.ringing", "call.progress",
                     "chan.hangup"):
            h(name, 50, "yrtp", no)
        for d in (tone, dumb, wave, sip, conf):
            h("call.drop", 60, d.name, d.on_drop)
        h("chan.dtmf", 75, "conf", no)
        for d in (tone, dumb, wave, sip, conf):
            h("call.execute", 90, d.name, d.on_execute)
        h("chan.connect", 90, "pbx", self.on_chan_connect)
        for name in ("callfork", "tone", "yrtp", "dumb", "wave", "sip", "conf", "pbx"):
            cb = {"dumb": dumb.on_timer, "sip": sip.on_timer, "conf": conf.on_timer,
                  "tone": tone.on_timer, "wave": wave.on_timer}.get(name, no)
            h("engine.timer", 90, name, cb)
        h("engine.status", 90, "engine", self.on_engine_status)
        h("engine.status", 100, "rex_debug", self._rex_debug_status)
        h("call.execute", 100, "callfork", fork.on_execute)
        h("call.execute", 100, "pbx", no)
        for d in (dumb, wave, sip, conf):
            h("call.answered", 100, d.name, d.on_answered)
            h("call.ringing", 100, d.name, d.on_ringing)
        h("call.progress", 100, "sip", sip.on_progress)
        h("chan.dtmf", 100, "callfork", no)
        for d in (dumb, wave, sip):
            h("chan.dtmf", 100, d.name, d.on_tone)
        h("chan.attach", 100, "yrtp", no)
        h("chan.attach", 100, "tone", self.on_attach_tone)
        h("chan.attach", 100, "wave", self.on_attach_wave)
        h("chan.attach", 100, "pbx", self.on_attach_pbx)
        h("call.route", 100, "regexroute", self.on_route)
        for name in ("callfork", "tone", "yrtp", "dumb", "regexroute", "wave", "sip", "conf",
                     "pbx", "extmodule"):
            h("engine.status", 110, name, self._status_for(name))
        h("chan.hangup", 150, "conf", no)
        h("chan.dtmf", 150, "yrtp", sip.on_rtp_dtmf)
        h("call.conference", 150, "conf", conf.on_conference)

    # -- routing of numbers the test registered (regexroute stand-in) --------------------------
    def on_route(self, msg: SimMessage) -> bool:
        if self.routes is None:
            return False
        target = self.routes(msg.get("called") or "", msg)
        if target:
            msg.retvalue = target
            return True
        return False

    # -- pbx: chan.connect -----------------------------------------------------------------------
    def on_chan_connect(self, msg: SimMessage) -> bool:
        a = self.all_channels.get(msg.get("id") or "")
        b = self.all_channels.get(msg.get("targetid") or "")
        if a is not None and msg.get_bool("id_peer"):
            a = a.peer
        if b is not None and msg.get_bool("targetid_peer"):
            b = b.peer
        if a is None or b is None or a is b:
            return False
        return a.connect(b, msg.get("reason"))

    # -- engine.status -----------------------------------------------------------------------------
    def on_engine_status(self, msg: SimMessage) -> bool:
        module = msg.get("module")
        if module and module != "engine":
            return False
        msg.retvalue += (f"name=engine,type=system,version=6.4.1,nodename=vm;"
                         f"chans={len(self.all_channels)}\r\n")
        return module == "engine"

    def _rex_debug_status(self, msg: SimMessage) -> bool:
        if not msg.get("module"):
            msg.retvalue += "name=rex_debug,type=misc;\r\n"
        return False

    def _status_for(self, name: str) -> Callable[[SimMessage], bool]:
        drivers = {d.name: d for d in self.drivers}

        def status(msg: SimMessage) -> bool:
            module = msg.get("module")
            if module and module != name:
                d = drivers.get(name)
                if d is not None and module.startswith(d.prefix):
                    chan = d.find(module)
                    if chan is not None:
                        msg.retvalue = f"name={chan.id},type=channel;module={name}\r\n"
                        return True
                return False
            details = msg.get_bool("details", True)
            d = drivers.get(name)
            if name == "tone":
                text = f"name=tone,type=misc;tones=0,chans={len(self.tone.channels)}\r\n"
            elif d is not None:
                text = d.status_text(details)
            elif name == "extmodule":
                conns = getattr(self.engine, "ext_connections", ())
                text = f"name=extmodule,type=misc;scripts={len(conns)},chans=0\r\n"
            elif name == "callfork":
                text = f"name=callfork,type=misc;total=0,forks={len(self.fork.channels)}\r\n"
            elif name == "tone":
                text = "name=tone,type=misc;tones=0,chans=0\r\n"
            elif name == "yrtp":
                text = "name=yrtp,type=misc;chans=0,mirrors=0\r\n"
            elif name == "regexroute":
                text = "name=regexroute,type=route;sections=2,extra=0,variables=0,processing=0\r\n"
            else:
                text = f"name={name},type=misc;\r\n"
            msg.retvalue += text
            # A module named by ``module=`` answers processed (D2 conf, A2 extmodule) — except
            # sip, whose status handler never claims it (A2 p19).
            return bool(module) and name != "sip"
        return status

    # -- media -------------------------------------------------------------------------------------
    def note_heard(self, chan: Channel, resource: str) -> None:
        """Remember what a SIP leg hears (a prompt or tone attached to it or to its peer)."""
        target = chan if chan.media_capable else chan.peer
        if target is not None and target.media_capable:
            target.heard.append(resource)

    def on_attach_tone(self, msg: SimMessage) -> bool:
        chan = msg.userdata
        if not isinstance(chan, Channel):
            return False
        handled = False
        for kind in ("source", "override", "replace"):
            res = msg.get(kind) or ""
            if not res.startswith("tone/"):
                continue
            name = res[5:]
            if kind == "source":
                if name not in media.CONTINUOUS_TONES:
                    continue
            else:
                if not chan.media_capable or not media.valid_tone(name):
                    continue
                if name.startswith("dtmfstr/") or name.startswith("dtmf/"):
                    digits = name.split("/", 1)[1]
                    chan.dtmf_out.append(digits)
            msg.clear(kind)
            self.replace_media(chan, kind, media.ToneResource(res))
            if kind == "source":
                self.note_heard(chan, res)
            else:
                chan.heard.append(res)
            handled = True
        return handled and msg.get_bool("single")

    def on_attach_wave(self, msg: SimMessage) -> bool:
        chan = msg.userdata
        if not isinstance(chan, Channel):
            return False
        handled = False
        notify = msg.get("notify") or ""
        for kind in ("source", "override", "replace"):
            res = msg.get(kind) or ""
            if not res.startswith("wave/play/"):
                continue
            if kind != "source" and not chan.media_capable:
                continue
            msg.clear(kind)
            path = res[10:]
            tag = msg.get("notify_" + kind) or notify
            if path == "-":
                self.replace_media(chan, kind, media.SilenceResource())
            else:
                self.attach_wave_source(chan, path, tag, kind,
                                        repeat=msg.get_bool("autorepeat"))
                if kind == "source":
                    self.note_heard(chan, res)
                else:
                    chan.heard.append(res)
            handled = True
        res = msg.get("consumer") or ""
        if res.startswith("wave/record/"):
            msg.clear("consumer")
            path = res[12:]
            if path == "-":
                self.replace_media(chan, "consumer", None)
            else:
                tag = msg.get("notify_consumer") or notify
                rec = media.Recorder(self, chan, path, msg.get_int("maxlen", 0), tag,
                                     fmt=msg.get("format"), append=msg.get_bool("append"))
                self.replace_media(chan, "consumer", rec)
                rec.start()
            handled = True
        return handled and msg.get_bool("single")

    def on_attach_pbx(self, msg: SimMessage) -> bool:
        chan = msg.userdata
        if not isinstance(chan, Channel):
            return False
        done = False
        for kind in ("source", "consumer", "override", "replace"):
            if msg.get(kind) == "-":
                self.replace_media(chan, kind, None)
                done = True
        return done and msg.get_bool("single")

    def attach_wave_source(self, chan: Channel, path: str, tag: str, kind: str = "source",
                           repeat: bool = False) -> None:
        src = media.WaveSource(self, chan, path, tag, repeat=repeat)
        self.replace_media(chan, kind, src)
        src.start()

    def replace_media(self, chan: Channel, kind: str, resource: Any) -> None:
        old = chan.media.pop(kind, None)
        if resource is not None:
            chan.media[kind] = resource
        if old is not None and old is not resource:
            old.stop(replaced=True)

    def release_media(self, chan: Channel) -> None:
        media_items, chan.media = chan.media, {}
        for res in media_items.values():
            res.stop(replaced=True)

    def media_changed(self, chan: Channel) -> None:
        """A peer changed: sources on the channel start or pause accordingly."""
        for res in list(chan.media.values()):
            res.peer_changed()

    # -- engine.timer --------------------------------------------------------------------------------
    def need_timer(self) -> None:
        """Start the one-second ``engine.timer`` if nothing runs it yet."""
        if self._timer_call is None or not self._timer_call.active():
            now = self.engine.now()
            delay = (int(now) + 1) - now
            if delay <= 0:
                delay = 1.0
            self._timer_call = self.engine.call_later(delay, self._tick)

    def subscribed(self, name: str) -> None:
        """A connection (un)installed or (un)watched ``name``: start or stop engine.timer."""
        if name in ("", "engine.timer"):
            self.timer_check()

    def timer_check(self) -> None:
        """Run the one-second timer only while something needs it (no stray clock calls)."""
        if self._timer_wanted():
            self.need_timer()
        elif self._timer_call is not None:
            self._timer_call.cancel()
            self._timer_call = None

    def _timer_wanted(self) -> bool:
        for conn in getattr(self.engine, "ext_connections", ()):
            if conn.wants("engine.timer"):
                return True
        for d in self.drivers:
            for c in d.channels.values():
                if c.maxcall or c.timeout:
                    return True
        return False

    def _tick(self) -> None:
        self._timer_call = None
        if not self._timer_wanted():
            return
        sec = self.engine.now_sec()
        m = SimMessage("engine.timer", [("time", str(sec)), ("nodename", "vm")], time=sec)
        self.engine.run(self.engine.dispatch, m)
        self.need_timer()

    def stop(self) -> None:
        if self._timer_call is not None and self._timer_call.active():
            self._timer_call.cancel()
        self._timer_call = None


def _never(msg: SimMessage) -> bool:
    return False
