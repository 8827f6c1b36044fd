"""The engine side of one extmodule connection, as ``modules/extmodule.cpp`` implements it.

:class:`ExtConnection` reads script lines (``ExtModReceiver::processLine``) and writes engine
lines through a ``write(str)`` callable; it knows nothing of sockets.  Replies and ``Error in:``
texts are Yate's, byte for byte (traces A0–A5):

* a role-less connection needs ``%%>connect:global|channel`` first; anything else closes it
  silently; ``%%>connect`` on a connection whose role is known is an ``Error in``;
* ``install``: priority read like ``strtol`` (default 100, junk skipped up to the ``:``), one
  handler per name, optional ``name:value`` filter (value may contain ``:``);
* ``setlocal``: every parameter of §5.9 with its clamping and read-only rules;
* messages from the script are enqueued, skip the connection's own handlers unless
  ``reenter``, and are answered after the watchers saw them (``selfwatch``);
* handler calls wait ``timeout`` ms (0 = forever), then the message goes on unhandled — with
  whatever a malformed answer already changed (§5.2) — and ``timebomb`` closes the connection;
* ``maxqueue`` messages already waiting: the message skips this connection;
* a line longer than ``bufsize - 2`` closes the connection;
* on close: watchers and handlers removed, waiting messages released as unhandled.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, Dict, List, Optional

from twisted.logger import Logger

from yaypm import protocol as P
from yaypm.testing.simulator.engine import Engine, Handler, Pending, SimMessage

__all__ = ["ExtConnection", "ENGINE_PARAMS", "CONFIG", "LOADED_PLUGINS"]

#: ``setlocal:engine.<name>`` values (A1_setlocal; paths are the simulator's own).
ENGINE_PARAMS: Dict[str, str] = {
    "version": "6.4.1", "release": "devel1", "revision": "", "nodename": "vm",
    "configname": "yate", "sharedpath": "/usr/share/yate", "configpath": "/etc/yate",
    "usercfgpath": "~/.yate", "cfgsuffix": ".conf", "modulepath": "/usr/lib/yate",
    "modsuffix": ".yate", "logfile": "", "interactive": "false", "clientmode": "false",
    "supervised": "false", "runattempt": "0", "maxworkers": "10",
}

#: ``setlocal:config.<section>.<key>``: the simulated yate.conf.
CONFIG: Dict[str, Dict[str, str]] = {
    "general": {"modload": "disable", "nodename": "vm"},
    "modules": {"extmodule.yate": "yes", "ysipchan.yate": "yes", "dumbchan.yate": "yes",
                "wavefile.yate": "yes", "tonegen.yate": "yes", "conference.yate": "yes",
                "callfork.yate": "yes", "pbx.yate": "yes", "yrtpchan.yate": "yes",
                "regexroute.yate": "yes"},
}

#: ``setlocal:loaded.<plugin>`` — plugin (file) names, as in A1 (``sip`` is false, ``ysipchan``
#: true).
LOADED_PLUGINS = frozenset(("extmodule", "ysipchan", "dumbchan", "wavefile", "tonegen",
                            "conference", "callfork", "pbx", "yrtpchan", "regexroute"))

_TRUE = frozenset(("true", "yes", "on", "enable", "t"))
_FALSE = frozenset(("false", "no", "off", "disable", "f"))
_INSTALL_FILTER = re.compile(r"([^:]*):([^:]*):?(.*)\Z", re.S)
_INT_PREFIX = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def _bool(text: str, default: bool) -> bool:
    """Yate's ``String::toBoolean``: exact lower-case words, anything else keeps the default."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return default


def _btext(value: bool) -> str:
    return "true" if value else "false"


def _to_int(text: str, default: int, minimum: Optional[int] = None,
            maximum: Optional[int] = None) -> int:
    """``String::toInteger``: the whole text must parse (base auto), else the default; clamp."""
    t = text.strip()
    m = _INT_PREFIX.fullmatch(t)
    if not m:
        value = default
    else:
        value = P._strtol_prefix(t, default)
    if minimum is not None and value < minimum:
        value = minimum
    if maximum is not None and value > maximum:
        value = maximum
    return value


def _strtol_head(text: str, default: int) -> "tuple[int, str]":
    """``id >> prio >> ":"``: read a leading integer (if any), then skip through the first ':'."""
    m = _INT_PREFIX.match(text)
    value = default
    if m and m.group(2):
        value = P._strtol_prefix(text, default)
    colon = text.find(":")
    rest = text[colon + 1:] if colon >= 0 else ""
    return value, rest


class _DecodeError(Exception):
    pass


def _unescape(field: str, at_line_end: bool = False) -> str:
    """``String::msgUnescape`` with Yate's acceptance rules.

    A lone ``%`` that ends the *line* reproduces Yate's bug (A3: ``a=b%`` became ``a=b\\xC0``
    followed by whatever was in memory; the simulator appends only the 0xC0 byte).  A lone
    ``%`` anywhere else is treated as an error (Yate reads past the field; documented
    divergence).
    """
    if "%" not in field:
        for ch in field:
            if ch < " ":
                raise _DecodeError("control character")
        return field
    out = []
    i = 0
    n = len(field)
    while i < n:
        ch = field[i]
        if ch < " ":
            raise _DecodeError("control character")
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= n:
            if at_line_end:
                out.append("\udcc0")
                break
            raise _DecodeError("lone %")
        nxt = field[i + 1]
        if nxt == "%":
            out.append("%")
        elif "A" <= nxt <= "_":
            out.append(chr(ord(nxt) - 64))
        elif nxt == "z":
            out.append(":")
        else:
            raise _DecodeError("bad escape")
        i += 2
    return "".join(out)


def _common_decode(msg: SimMessage, rest: str) -> bool:
    """``Message::commonDecode`` on ``name:retvalue[:params]``; changes ``msg`` as it goes.

    Returns False (leaving the partial changes) where Yate stops with an error.
    """
    sep = rest.find(":")
    if sep < 0:
        return False
    try:
        name = _unescape(rest[:sep])
        if name:
            msg.name = name
        fields = rest[sep + 1:].split(":")
        last = len(fields) - 1
        msg.retvalue = _unescape(fields[0], at_line_end=(last == 0))
        for idx in range(1, len(fields)):
            chunk = fields[idx]
            if not chunk:
                continue
            chunk = _unescape(chunk, at_line_end=(idx == last))
            pos = chunk.find("=")
            if pos < 0:
                msg.clear(chunk)
            elif pos == 0:
                return False
            else:
                msg.set(chunk[:pos], chunk[pos + 1:])
    except _DecodeError:
        return False
    return True


def encode_message(msg: SimMessage, ident: str) -> str:
    """``Message::encode(id)``: the ``%%>message`` line for a handler call."""
    return ("%%>message:" + P.escape(ident) + ":" + str(int(msg.time)) + ":"
            + _common_encode(msg))


def encode_answer(msg: SimMessage, handled: bool, ident: str) -> str:
    """``Message::encode(received, id)``: an answer (or, with ``ident == ""``, a notification)."""
    return ("%%<message:" + P.escape(ident) + (":true:" if handled else ":false:")
            + _common_encode(msg))


def _common_encode(msg: SimMessage) -> str:
    """``name:retvalue:key=value...``, every field escaped (``Message::commonEncode``)."""
    esc = P.escape
    esck = P.escape_key
    parts = [esc(msg.name), ":", esc(msg.retvalue)]
    for k, v in msg.params:
        parts.append(":")
        parts.append(esck(k))
        parts.append("=")
        parts.append(esc(v))
    return "".join(parts)


class _Holder:
    """A message this connection must answer (``MsgHolder``)."""
    __slots__ = ("id", "msg", "ret", "result", "timer")

    def __init__(self, ident: str, msg: SimMessage) -> None:
        self.id = ident
        self.msg = msg
        self.ret = False
        self.result = Pending()
        self.timer: Any = None


class ExtConnection:
    """Yate's extmodule receiver for one connection (socket or in-memory).

    ``write(line)`` sends one engine line (no newline); ``close()`` is called when the engine
    drops the connection (quit, timebomb, bad role, overflow).  ``role`` is the listener's
    preset role (``"global"``/``"channel"``) or None when ``%%>connect`` is required.
    """

    log = Logger()

    def __init__(self, engine: Engine, write: Callable[[str], None],
                 close: Optional[Callable[[], None]] = None, role: Optional[str] = None,
                 name: str = "conn", defaults: Optional[Dict[str, Any]] = None) -> None:
        self.engine = engine
        self.name = name
        self._write = write
        self._close = close
        self.role = role
        d = defaults or {}
        self.timeout = int(d.get("timeout", 10000))
        self.timebomb = bool(d.get("timebomb", False))
        self.maxqueue = int(d.get("maxqueue", 1000))
        self.bufsize = 8192
        self.reenter = False
        self.selfwatch = False
        self.setdata = True
        self.settime = bool(d.get("settime", False))
        self.restart = False
        self.trackname = ""
        self.reason = ""
        self.debuglevel = 10
        self.debugname = ""
        self.relays: Dict[str, Handler] = {}
        self.watched: List[str] = []
        self.waiting: Dict[str, _Holder] = {}
        self.dead = False
        self.quit = False
        self._hooked = False
        self.chan: Any = None          # the channel of a channel-role connection, if any
        self.log_lines: List[str] = []  # %%>output / %%>debug text

    # -- output ------------------------------------------------------------------------------
    def output(self, line: str) -> None:
        if not self.dead:
            self._write(line)

    # -- input ---------------------------------------------------------------------------------
    def data_received(self, line: str) -> None:
        """One line from the script, without its LF (a trailing CR is stripped here)."""
        if self.dead or self.quit:
            return
        if line.endswith("\r"):
            line = line[:-1]
        if "\x00" in line:
            # A NUL ends a line in Yate's reader (it works on C strings).
            for part in line.split("\x00"):
                self.data_received(part)
            return
        if len(line.encode("utf-8", "surrogateescape")) > self.bufsize - 2:
            self.log.info("{conn}: line of {n} bytes over bufsize {b}: closing",
                          conn=self.name, n=len(line), b=self.bufsize)
            self.die()
            return
        if not line:
            return
        if self.process_line(line):
            self.die()

    def process_line(self, line: str) -> bool:
        """``ExtModReceiver::processLine``; True means: close the connection."""
        if self.role is None:
            if line.startswith("%%>connect:"):
                role = line[11:].split(":", 1)[0]
                if role in ("global", "channel"):
                    self.role = role
                    return False
            return True
        if line.startswith("%%<message:"):
            self._answer_received(line)
            return False
        if line.startswith("%%>install:"):
            self._install(line[11:])
            return False
        if line.startswith("%%>uninstall:"):
            name = line[13:]
            h = self.relays.pop(name, None)
            prio = 0
            if h is not None:
                prio = h.priority
                self.engine.uninstall(h)
                self._subscribed(name)
            self.output(f"%%<uninstall:{prio}:{name}:{_btext(h is not None)}")
            return False
        if line.startswith("%%>watch:"):
            name = line[9:]
            ok = name not in self.watched
            if ok:
                if name == "":
                    self.watched.insert(0, name)
                else:
                    self.watched.append(name)
                self._hook()
                self._subscribed(name)
            self.output(f"%%<watch:{name}:{_btext(ok)}")
            return False
        if line.startswith("%%>unwatch:"):
            name = line[11:]
            ok = name in self.watched
            if ok:
                self.watched.remove(name)
                self._subscribed(name)
            self.output(f"%%<unwatch:{name}:{_btext(ok)}")
            return False
        if line.startswith("%%>output:"):
            self.log_lines.append(line[10:].strip(" \t"))
            return False
        if line.startswith("%%>debug:"):
            rest = line[9:]
            pos = rest.find(":")
            if pos > 0:
                try:
                    self.log_lines.append(_unescape(rest[pos + 1:]))
                except _DecodeError:
                    self.log_lines.append(rest[pos + 1:])
                return False
        elif line.startswith("%%>setlocal:"):
            rest = line[12:]
            col = rest.find(":")
            if col > 0:
                self._setlocal(rest[:col], rest[col + 1:].strip(" \t\r\n"))
                return False
        elif line == "%%>quit":
            self.quit = True
            self.output("%%<quit")
            return True
        elif line.startswith("%%>message:"):
            if self._message_from_script(line):
                return False
        self.output("Error in: " + line)
        return False

    # -- install / setlocal ------------------------------------------------------------------
    def _install(self, rest: str) -> None:
        prio, ident = _strtol_head(rest, 100)
        fname = fvalue = None
        m = _INSTALL_FILTER.match(ident)
        if m:
            fname = _lenient_unescape(m.group(2))
            fvalue = _lenient_unescape(m.group(3))
            ident = m.group(1)
        ok = bool(ident) and not self.dead and ident not in self.relays
        if ok:
            track = (self.trackname + ":" + str(prio)) if self.trackname else None
            h = Handler(ident, prio, self._handle, track=track, filter_name=fname or None,
                        filter_value=fvalue if fname else None, owner=self)
            self.relays[ident] = h
            self.engine.install(h)
            self._subscribed(ident)
        self.output(f"%%<install:{prio}:{ident}:{_btext(ok)}")

    def _setlocal(self, name: str, val: str) -> None:
        ok = False
        eng = self.engine
        if self.chan is not None and name == "id":
            if val:
                self.chan.rename(val)
            else:
                val = self.chan.id
            ok = True
        elif self.chan is not None and name == "disconnected":
            self.chan.notify_disconnected = _bool(val, self.chan.notify_disconnected)
            val = _btext(self.chan.notify_disconnected)
            ok = True
        elif name == "trackparam":
            if not val:
                val = self.trackname
            else:
                self.trackname = val
            ok = True
        elif name == "reason":
            self.reason = val
            ok = True
        elif name == "timeout":
            self.timeout = _to_int(val, self.timeout)
            val = str(self.timeout)
            ok = True
        elif name == "timebomb":
            self.timebomb = _bool(val, self.timebomb)
            val = _btext(self.timebomb)
            ok = True
        elif name == "maxqueue":
            self.maxqueue = _to_int(val, self.maxqueue, 0, 10000)
            val = str(self.maxqueue)
            ok = True
        elif name == "bufsize":
            self.bufsize = _to_int(val, self.bufsize, 2048, 65536)
            val = str(self.bufsize)
            ok = True
        elif name == "restart":
            self.restart = False          # sockets are never restarted
            val = "false"
            ok = True
        elif name in ("reenter", "setdata", "settime", "selfwatch"):
            attr = name
            setattr(self, attr, _bool(val, getattr(self, attr)))
            val = _btext(getattr(self, attr))
            ok = True
        elif name.startswith("engine."):
            key = name[7:]
            params = eng_params(eng)
            ok = val == "" and key in params
            val = params.get(key, "")
        elif name.startswith("config."):
            ok = val == ""
            rest = name[7:]
            sep = rest.find(".")
            if sep > 0:
                section = CONFIG.get(rest[:sep].strip())
                key = rest[sep + 1:].strip()
                if section is not None and key in section:
                    val = section[key]
                else:
                    val = ""
                    ok = False
            else:
                ok = rest in CONFIG
                val = ""
        elif name.startswith("loaded."):
            ok = val == ""
            val = _btext(name[7:] in LOADED_PLUGINS)
        elif name == "runid":
            ok = val == ""
            val = eng.runid
        elif name == "debuglevel":
            ok = True
            if val:
                self.debuglevel = _to_int(val, 10, 1, 10)
            val = str(self.debuglevel)
        elif name == "debugname":
            ok = True
            if val and not self.debugname:
                self.debugname = val
            else:
                val = self.debugname or (self.role or "global")
        self.output(f"%%<setlocal:{name}:{val}:{_btext(ok)}")

    # -- messages from the script --------------------------------------------------------------
    def _message_from_script(self, line: str) -> bool:
        """Decode ``%%>message`` (``Message::decode``); False = Error in."""
        rest = line[11:]
        sep = rest.find(":")
        if sep < 0:
            return False
        sep2 = rest.find(":", sep + 1)
        if sep2 < 0:
            return False
        try:
            ident = _unescape(rest[:sep])
        except _DecodeError:
            return False
        t = rest[sep + 1:sep2]
        parsed = P._strtoul(t) if t else 0
        if parsed is None:
            return False
        tm: int = parsed
        msg = SimMessage("")
        if not _common_decode(msg, rest[sep2 + 1:]):
            return False
        if self.settime or not tm:
            tm = self.engine.now_sec()
        msg.time = tm
        msg.origin = self
        if self.setdata and self.chan is not None:
            msg.userdata = self.chan
        created = False
        if self.role == "channel" and self.chan is None and self.setdata \
                and msg.name == "call.execute":
            hook = getattr(self.engine, "create_ext_channel", None)
            if hook is not None:
                self.chan = hook(self)
                msg.set("id", self.chan.id)
                msg.userdata = self.chan
                created = True
        if ident and not created:
            holder = self.waiting.get(ident)
            if holder is not None:
                # Id reuse inherits the pending message's user data (extmodule.md §5.3).
                msg.userdata = holder.msg.userdata
        if ident:
            msg.when_released(functools.partial(self._answer_back, ident))
        self.engine.enqueue(msg)
        return True

    def _answer_back(self, ident: str, msg: SimMessage, handled: bool) -> None:
        if not self.dead:
            self.output(encode_answer(msg, handled, ident))

    # -- handler calls ---------------------------------------------------------------------------
    def _handle(self, msg: SimMessage) -> Any:
        """The connection's handler (``ExtModReceiver::received``)."""
        if self.dead or self.quit:
            return False
        if not self.reenter and msg.origin is self:
            return False
        if self.maxqueue and len(self.waiting) >= self.maxqueue:
            return False
        ident = self.engine.new_message_id()
        holder = _Holder(ident, msg)
        self.waiting[ident] = holder
        self.output(encode_message(msg, ident))
        if self.timeout > 0:
            holder.timer = self.engine.call_later(self.timeout / 1000.0, self._timed_out,
                                                  holder)
        return holder.result

    def _answer_received(self, line: str) -> None:
        # Yate compares the raw line with "%%<message:<id>:" for each waiting message; its ids
        # never contain ':', so the field up to the next ':' finds the only candidate.
        end = line.find(":", 11)
        holder = self.waiting.get(line[11:end]) if end > 0 else None
        if holder is None:
            self.log.debug("{conn}: unmatched answer {line}", conn=self.name, line=line)
            return
        rest = line[end + 1:]
        sep = rest.find(":")
        if sep < 0:
            return
        word = rest[:sep].lstrip(" \t")
        if word in _TRUE:
            holder.ret = True
        elif word in _FALSE:
            holder.ret = False
        else:
            return
        tail = rest[sep + 1:]
        if tail and not _common_decode(holder.msg, tail):
            return          # unmatched, but the partial changes stay (extmodule.md §5.2)
        self._release(holder, holder.ret)

    def _release(self, holder: _Holder, ret: bool) -> None:
        if self.waiting.pop(holder.id, None) is None:
            return
        if holder.timer is not None and holder.timer.active():
            holder.timer.cancel()
        holder.timer = None
        # Resume the dispatch from the job queue, never from inside the caller's stack.
        self.engine.run(holder.result.resolve, ret)

    def _timed_out(self, holder: _Holder) -> None:
        holder.timer = None
        if self.waiting.pop(holder.id, None) is None:
            return
        self.log.info("{conn}: message {name} did not return in {ms} msec",
                      conn=self.name, name=holder.msg.name, ms=self.timeout)
        if self.timebomb:
            # die() first: the message then returns to a dead connection, so an answer to a
            # message this connection sent is never written (A4, p4).
            self.die()
        self.engine.run(holder.result.resolve, holder.ret)

    def _subscribed(self, name: str) -> None:
        hook = getattr(self.engine, "subscribed", None)
        if hook is not None:
            hook(name)

    def wants(self, name: str) -> bool:
        """Does this connection handle or watch ``name``?"""
        if self.dead:
            return False
        return name in self.relays or name in self.watched or "" in self.watched

    # -- watchers ----------------------------------------------------------------------------------
    def _hook(self) -> None:
        if not self._hooked:
            self._hooked = True
            self.engine.posthooks.append(self._watch_hook)

    def _watch_hook(self, msg: SimMessage, handled: bool) -> None:
        if self.dead or not self.watched:
            return
        if not self.selfwatch and msg.origin is self:
            return
        for name in self.watched:
            if name == "" or name == msg.name:
                self.output(encode_answer(msg, handled, ""))
                return

    # -- teardown ------------------------------------------------------------------------------------
    def die(self) -> None:
        """Close from the engine side (quit, timebomb, overflow, bad first line)."""
        if self.dead:
            return
        self.connection_lost()
        if self._close is not None:
            self._close()

    def connection_lost(self) -> None:
        """The transport is gone: remove watchers/handlers, release waiting messages."""
        if self.dead:
            return
        self.dead = True
        if self._hooked:
            try:
                self.engine.posthooks.remove(self._watch_hook)
            except ValueError:
                pass
        self.watched = []
        for h in self.relays.values():
            self.engine.uninstall(h)
        self.relays = {}
        waiting, self.waiting = self.waiting, {}
        for holder in waiting.values():
            if holder.timer is not None and holder.timer.active():
                holder.timer.cancel()
            self.engine.run(holder.result.resolve, False)
        if self.chan is not None:
            chan, self.chan = self.chan, None
            self.engine.run(chan.script_gone, self.reason)
        self._subscribed("engine.timer")

    # -- introspection ---------------------------------------------------------------------------
    def installed(self) -> Dict[str, int]:
        """Message name -> priority of this connection's handlers."""
        return {name: h.priority for name, h in self.relays.items()}

    @property
    def pending(self) -> int:
        """Messages waiting for this connection's answer."""
        return len(self.waiting)


def _lenient_unescape(text: str) -> str:
    """Install filters: bad escapes silently truncate (yate-extmodule.md §3.2)."""
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(text):
            break
        nxt = text[i + 1]
        if nxt == "%":
            out.append("%")
        elif "A" <= nxt <= "_":
            out.append(chr(ord(nxt) - 64))
        elif nxt == "z":
            out.append(":")
        else:
            break
        i += 2
    return "".join(out)


def eng_params(engine: Engine) -> Dict[str, str]:
    params = dict(ENGINE_PARAMS)
    params.update(getattr(engine, "engine_params", {}) or {})
    params["runid"] = engine.runid
    return params
