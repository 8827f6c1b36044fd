"""DSM sessions on Yate: the call backend on a `yaypm.ivr.Leg`, and the runner that claims
numbers and starts one session per call (dsm-language.md §5.1).

    engine = Engine("dsm.conf"); engine.load()
    runner = DSMRunner(engine, registry=registry)     # registry: monitoring (optional)
    runner.attach(dispatcher)                         # or: connect_service(..., runner.attach)

**Routes** (which called numbers run which application) come from the configuration, read
again on every reload (new calls only). In `dsm.conf` or any bundle conf of `conf_dir`:

    route.<app>=<pattern>[,<pattern>…]   # exact number, `^regex` (full match), or `prefix*`
    number=<pattern>[,…]                 # bundle conf: the bundle's first register_apps app

Exact numbers win over patterns; patterns are tried in file order (`dsm.conf` first, then
the bundles by name). `<app>` is any registered application, or `dsm` (the generic app that
runs `inbound_start_diag`).

**Mapping** (spec §5.1): an inbound call claimed in `call.route` gets a session whose `invite`
runs inside `call.route` (so `dlg.reply(486)` there refuses the call in `call.route` itself),
auto-answer per ⚑D3, `sessionStart` once our answer is confirmed. The playlist is an
engine-side queue: its head item is attached to the leg's dumb channel when the leg is
answered (or in early media), `eof` plays the next item, an empty list raises `noAudio`;
`flushPlaylist` detaches without `noAudio`. `conference.join(room)` is a playlist item
(heard after the queued prompts, ⚑D5) that moves the party into `conf/<room>` (kept when
alone, as in SEMS). `dlg.dialout` places `sip/<r-uri>` through a new dumb channel (⚑D12).

**postEvent across processes** (⚑D9): a target not in this process is sent as a
`yaypm.dsm.event` message (`target`, `sender`, each variable as `var.<name>`); every runner
handles that message and answers true only for a session or queue it holds, so Yate offers
it to the next process; unhandled everywhere = unknown target (`$errno=arg`).
"""
from __future__ import annotations

import os
import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Deque, Optional

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from yaypm.ivr.errors import CallEnded, DialError, code_for_reason, reason_for_code
from yaypm.ivr.leg import Leg, originate
from yaypm.ivr.media import bytes_per_second
from yaypm.ivr.routing import Route, route
from yaypm.ivr.switchboard import DEFAULT_PRIORITY, switchboard

from .backend import DialRequest, MediaError
from .config import conf_list

if TYPE_CHECKING:
    from yaypm.dispatcher import Dispatcher, Message
    from yaypm.registry import CallRegistry

    from .config import DSMApplicationSet, Engine
    from .runtime import Session

__all__ = ["LegBackend", "DSMRunner", "DSMService", "RouteTable", "reply_reason", "KEY_CODES"]

log = Logger(namespace="yaypm.dsm.yate")

#: DTMF characters -> DSM key codes (spec §2.6).
KEY_CODES = {**{str(i): i for i in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14,
             "D": 15}
_KEY_CHARS = {v: k for k, v in KEY_CODES.items()}

#: The Yate message carrying a `postEvent` to another process (⚑D9), and the prefix of the
#: posted variables among its parameters (so `target`/`sender` and Yate's own never clash).
EVENT_MESSAGE = "yaypm.dsm.event"
_VAR = "var."
#: This process's part of call record ids, when sessions are named after records.
_NODE = uuid.uuid4().hex[:6].upper()

#: An endless item (looped ring tone without length) is a tone this long, cut by a flush.
_ENDLESS = 86400.0


def reply_reason(code: int) -> str:
    """The Yate reason that makes Yate send SIP `code` (spec §5.1: 404 `noroute`, 486
    `busy`, 480 `noanswer`, 403 `forbidden`, 503 `noconn`, 487 `cancelled`…); `failure`
    (500) for codes Yate cannot produce."""
    try:
        return reason_for_code(code)
    except ValueError:
        return "failure"


def _strip_uri(text: str) -> str:
    text = text.strip()
    if "<" in text and ">" in text:
        text = text[text.index("<") + 1:text.index(">")]
    return text


def _uri_host(uri: str) -> str:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    host = rest.split("@", 1)[-1]
    return host.split(";", 1)[0].split(":", 1)[0]


def _headers_params(headers: str) -> dict[str, str]:
    """`Name: value` lines (`$x_hdrs`) -> Yate's `osip_Name` parameters of call.execute."""
    out: dict[str, str] = {}
    for line in headers.replace("\r\n", "\n").split("\n"):
        name, sep, value = line.partition(":")
        if sep and name.strip():
            out["osip_" + name.strip()] = value.strip()
    return out


def _display_name(party: str) -> str:
    m = re.match(r'\s*"([^"]*)"', party)
    if m:
        return m.group(1)
    head = party.split("<", 1)[0].strip()
    return head if "<" in party else ""


def _originate(dispatcher: Dispatcher, target: str, **kw: Any) -> tuple[Leg, Deferred]:
    """Place a call: the Leg at once (CANCEL, DTMF and progress before the answer) and a
    Deferred firing with it once answered (or failing with the dial error)."""
    leg = originate(dispatcher, target, **kw)
    return leg, leg.answered()


def _ignore_ended(f: Failure) -> None:
    if not f.check(CallEnded, defer.CancelledError):
        log.failure("DSM leg operation failed", f)


# ------------------------------------------------------------------------------------------
# Routes
# ------------------------------------------------------------------------------------------

@dataclass
class RouteTable:
    """Called number -> application, from `route.<app>` / `number` keys (see module doc)."""

    exact: dict[str, str] = field(default_factory=dict)
    patterns: list[tuple[Callable[[str], bool], str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.exact) + len(self.patterns)

    def app_for(self, called: str) -> Optional[str]:
        app = self.exact.get(called)
        if app is not None:
            return app
        for match, app, _ in self.patterns:
            if match(called):
                return app
        return None

    def describe(self) -> list[str]:
        """`pattern -> app` lines, as matched (for logs and `--help`-style listings)."""
        return ([f"{n} -> {a}" for n, a in self.exact.items()]
                + [f"{t} -> {a}" for _, a, t in self.patterns])

    def add(self, pattern: str, app: str, where: str) -> None:
        p = pattern.strip()
        if not p:
            return
        if p.startswith("^"):
            try:
                rx = re.compile(p)
            except re.error as e:
                self.errors.append(f"{where}: bad regular expression {p!r}: {e}")
                return
            self.patterns.append((_full_match(rx), app, p))
        elif p.endswith("*"):
            self.patterns.append((_prefix(p[:-1]), app, p))
        elif p in self.exact:
            if self.exact[p] != app:
                self.errors.append(f"{where}: number {p} already routed to {self.exact[p]}; "
                                   f"not to {app}")
        else:
            self.exact[p] = app

    @classmethod
    def from_app_set(cls, app_set: DSMApplicationSet, engine: Any = None) -> "RouteTable":
        table = cls()
        names = [""] + sorted(n for n in app_set.bundles if n)
        for name in names:
            b = app_set.bundles.get(name)
            if b is None:
                continue
            where = f"bundle {name}" if name else "dsm.conf"
            for key, value in b.conf.items():
                if key.startswith("route."):
                    app = key[len("route."):]
                elif key == "number" and name:
                    if not b.apps:
                        table.errors.append(f"{where}: number= but no register_apps")
                        continue
                    app = b.apps[0]
                else:
                    continue
                if not _known_app(app_set, engine, app):
                    table.errors.append(f"{where}: {key}: unknown application '{app}' "
                                        "(not in register_apps)")
                    continue
                for pattern in conf_list(value):
                    table.add(pattern, app, where)
        return table


def _full_match(rx: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda number: rx.fullmatch(number) is not None


def _prefix(prefix: str) -> Callable[[str], bool]:
    return lambda number: number.startswith(prefix)


def _known_app(app_set: DSMApplicationSet, engine: Any, app: str) -> bool:
    if app in app_set.apps:
        return True
    if app == "dsm" and engine is not None:
        return engine.conf.get("inbound_start_diag", "") in app_set.apps
    return False


# ------------------------------------------------------------------------------------------
# The backend
# ------------------------------------------------------------------------------------------

class _Item:
    """One playlist entry: a file, silence, a tone, a separator or a conference join."""

    __slots__ = ("kind", "arg", "loop", "extra")

    def __init__(self, kind: str, arg: Any, loop: bool = False, extra: str = "") -> None:
        self.kind = kind
        self.arg = arg
        self.loop = loop
        self.extra = extra

    def __repr__(self) -> str:
        return f"<{self.kind} {self.arg}{' loop' if self.loop else ''}>"


class LegBackend:
    """`DSMCallBackend` on one `yaypm.ivr.Leg` (inbound: routed to us; outbound: dialled).

    Media operations never block the session: they queue and return None. Script-visible
    failures (a prompt file that does not exist, a recording into a missing directory, a
    conference join of a gone call) raise `MediaError` synchronously; later failures are
    logged. `finished` fires once the session has ended and the leg is gone (or handed over
    to a conference/bridge that outlives the session).
    """

    log = Logger()

    def __init__(self, runner: DSMRunner, leg: Optional[Leg], direction: str = "in") -> None:
        self.runner = runner
        self.leg = leg
        self.direction = direction
        self.session: Optional[Session] = None
        self.finished: Deferred[None] = Deferred()
        self._pending: list[tuple[Callable[..., Any], tuple]] = []
        self._session_done = False
        self._leg_done = leg is None
        self._own_end = False
        self._started = False              # sessionStart fed
        self._answering = False
        # playlist
        self._items: Deque[_Item] = deque()
        self._playing: Optional[Deferred] = None
        self._token = 0
        self._joining: Optional[Deferred] = None
        self.room: Optional[str] = None
        # recording
        self._rec: Optional[Deferred] = None
        self._rec_file = ""
        self._rec_start: Optional[float] = None
        self._rec_end: Optional[float] = None
        # B2B
        self._b2b_leg: Optional[Leg] = None
        self._b2b_dial: Optional[Deferred] = None
        if leg is not None:
            leg.on_dtmf(self._on_key)
            leg.ended.addCallback(self._leg_ended)

    def __repr__(self) -> str:
        sid = self.session.id if self.session is not None else None
        return f"<LegBackend {sid} {self.leg!r}>"

    @property
    def clock(self) -> Any:
        return self.runner.clock

    # -- feeding the session --------------------------------------------------------------
    def _feed(self, fn: Callable[..., Any], *args: Any) -> None:
        if self.session is None:
            self._pending.append((fn, args))
        elif not self.session.ended:
            fn(self.session, *args)

    def attach(self, session: Session) -> None:
        self.session = session
        self.runner._adopt(self)
        if session.ended:
            return
        pending, self._pending = self._pending, []
        if pending:
            # Fed before the session existed (a dial-out failing at once): after `start`.
            def deliver() -> None:
                for fn, args in pending:
                    if not session.ended:
                        fn(session, *args)
            self.clock.callLater(0, deliver)

    def session_ended(self, session: Session) -> None:
        self._session_done = True
        self.flush_playlist()
        if self.room is not None:
            self.runner._left_room(self)
        if self._rec is not None and not self._rec.called:
            self._rec.cancel()
        self._check_finished()

    def _check_finished(self) -> None:
        if self._session_done and self._leg_done and not self.finished.called:
            self.runner._forget(self)
            self.finished.callback(None)

    # -- events from Yate -------------------------------------------------------------------
    def _on_key(self, key: str) -> None:
        leg = self.leg
        if leg is not None:
            leg.flush_dtmf()                  # the session consumes every key
        code = KEY_CODES.get(key.upper())
        if code is not None:
            self._feed(_ev_key, code, 0)

    def _leg_ended(self, reason: str) -> None:
        self._leg_done = True
        leg = self.leg
        self._items.clear()
        self._token += 1
        self._playing = None
        if self.room is not None:
            self.runner._left_room(self)
        if self._b2b_dial is not None and not self._b2b_dial.called:
            self.b2b_terminate_other()
        if self._own_end:
            self._feed(_ev_leg_closed)
        elif self.direction == "out" and not self._started:
            params = leg.end_params if leg is not None else {}
            code = params.get("cause_sip", "")
            n = int(code) if code.isdigit() and int(code) >= 300 else \
                (code_for_reason(reason) or 500)
            text = params.get("reason_sip") or params.get("reason") or reason
            self._feed(_ev_failed, n, text)
        else:
            self._feed(_ev_hangup, "", "")
        self._check_finished()

    def _remote_progress(self, kind: str, msg: Message) -> None:
        """The outbound leg rings (`call.ringing`) or has early media (`call.progress`)."""
        if self.direction != "out" or self._started:
            return
        if kind == "progress":
            self._feed(_ev_early)
        else:
            self._feed(_ev_ringing, 180, "Ringing", msg.get("earlymedia") == "true")

    def _dialled(self, leg: Leg) -> None:
        self._on_answered()

    def _dial_failed(self, f: Failure) -> None:
        if not f.check(DialError, CallEnded, defer.CancelledError):
            self.log.failure("dial-out for session {session} failed", f,
                             session=self.session.id if self.session else None)

    def _on_answered(self, _: Any = None) -> None:
        if not self._started and self.leg is not None and self.leg.alive:
            self._started = True
            self._feed(_ev_session_start)
        self._kick()

    # -- call control ---------------------------------------------------------------------------
    def _alive(self) -> bool:
        return self.leg is not None and self.leg.alive

    def answer(self) -> None:
        if self.direction == "out" or self._answering or not self._alive():
            return None
        assert self.leg is not None
        self._answering = True
        self.leg.answer().addCallbacks(self._on_answered, _ignore_ended)
        return None

    def progress(self) -> None:
        if self.direction == "out" or not self._alive():
            return None
        assert self.leg is not None
        self.leg.progress().addCallbacks(lambda _: self._kick(), _ignore_ended)
        return None

    def reject(self, code: int, reason: str, headers: str = "") -> None:
        if not self._alive():
            return None                        # e.g. 487 after the CANCEL: nothing to send
        assert self.leg is not None
        self._own_end = True
        if self.direction == "out" and not self._started:
            self._cancel_dial()
        else:
            self.leg.reject(reply_reason(code))
        return None

    def hangup(self, headers: str = "") -> None:
        """`stop(true)`, `dlg.bye()`: BYE; CANCEL for a dial-out still ringing; an inbound
        call not answered yet gets 487 (SEMS's bye() in the early state)."""
        if not self._alive():
            return None
        assert self.leg is not None
        self._own_end = True
        if self.direction == "out" and not self._started:
            self._cancel_dial()
        elif self.direction == "in" and not self.leg.is_answered:
            self.leg.reject(487)
        else:
            self.leg.hangup("normal")
        return None

    def release(self) -> None:
        """⚑D4: the session ended without `stop(true)`. A party in a conference or bridge
        stays there; otherwise our side is dropped (an unanswered inbound call with 500)."""
        if not self._alive():
            return
        assert self.leg is not None
        if self.leg.state in ("conference", "bridged") or self._joining is not None:
            self.log.info("DSM session {session} ended; {chan} stays in {where}",
                          session=self.session.id if self.session else None, chan=self.leg.id,
                          where=self.leg.room or self.leg.peer or "the conference")
            return
        self._own_end = True
        if self.direction == "out" and not self._started:
            self._cancel_dial()
        elif self.direction == "in" and not self.leg.is_answered:
            self.leg.reject(500)
        else:
            self.leg.hangup("normal")

    def _cancel_dial(self) -> None:
        if self.leg is not None and self.leg.alive:
            self.leg.hangup("cancelled")           # drops our dumb channel: CANCEL (C2)

    # -- playlist --------------------------------------------------------------------------------
    def _path(self, file: str) -> str:
        board = self.leg.board if self.leg is not None else None
        return board.path(file) if board is not None else file

    def _check_file(self, file: str) -> None:
        if not self.runner.check_files or file.startswith(("wave/", "tone/")):
            return
        if not os.path.isfile(self._path(file)):
            raise MediaError("file", f"cannot open {file}", path=file)

    def play(self, file: str, loop: bool = False, front: bool = False) -> None:
        self._check_file(file)
        self._queue(_Item("file", file, loop), front)

    def play_silence(self, ms: int, front: bool = False) -> None:
        self._queue(_Item("tone", ms / 1000.0, extra="silence"), front)

    def play_ringtone(self, length_ms: int, on_ms: int, off_ms: int, f: int, f2: int,
                      front: bool = False) -> None:
        # Yate's tone generator has no cadence/frequency parameters here: its ring tone.
        secs = length_ms / 1000.0 if length_ms > 0 else _ENDLESS
        self._queue(_Item("tone", secs, extra="ring"), front)

    def add_separator(self, sep_id: str, front: bool = False) -> None:
        self._queue(_Item("sep", sep_id), front)

    def flush_playlist(self) -> None:
        self._items.clear()
        self._token += 1
        playing, self._playing = self._playing, None
        if playing is not None and not playing.called:
            playing.cancel()

    def _queue(self, item: _Item, front: bool) -> None:
        if not front:
            self._items.append(item)
        else:
            # SEMS puts the new item before the current one, which resumes afterwards (here:
            # restarts, Yate has no pause).
            self._items.appendleft(item)
            playing, self._playing = self._playing, None
            if playing is not None:
                self._token += 1
                playing.cancel()
        self._kick()

    def _media_ok(self) -> bool:
        leg = self.leg
        if leg is None or not leg.alive or leg.chan is None or self._joining is not None:
            return False
        if leg.state in ("conference", "bridged"):
            return False
        if self.direction == "out":
            return self._started
        return leg.is_answered or leg.state == "progressing"

    def _kick(self) -> None:
        """Start the head item if nothing plays and the leg can hear it."""
        leg = self.leg
        while self._playing is None and self._items and self._media_ok():
            assert leg is not None
            item = self._items[0]
            if item.kind == "sep":
                self._items.popleft()
                self._feed(_ev_separator, item.arg)
                if not self._items:
                    self._feed(_ev_no_audio)
                continue
            if item.kind == "join":
                self._items.popleft()
                self._join(item.arg, item.extra)
                return
            self._token += 1
            token = self._token
            if item.kind == "file":
                d = leg.play(item.arg)
            else:
                d = leg.tone(item.extra, item.arg)
            self._playing = d
            d.addBoth(self._item_done, item, token)
            return

    def _item_done(self, result: Any, item: _Item, token: int) -> None:
        if token != self._token:
            if isinstance(result, Failure) and not result.check(defer.CancelledError, CallEnded):
                self.log.failure("playlist item {item} failed", result, item=repr(item))
            return                                 # flushed or interrupted meanwhile
        self._playing = None
        if isinstance(result, Failure):
            if result.check(CallEnded, defer.CancelledError):
                return
            # The file was checked; it vanished or Yate cannot play it: skip it.
            self.log.warn("DSM session {session}: cannot play {item}: {error}",
                          session=self.session.id if self.session else None, item=repr(item),
                          error=result.getErrorMessage())
            loop = False
        else:
            loop = item.loop
        if not loop and self._items and self._items[0] is item:
            self._items.popleft()
        if not self._items:
            self._feed(_ev_no_audio)
        else:
            self._kick()

    # -- recording ---------------------------------------------------------------------------------
    def record(self, file: str, max_seconds: float | None = None) -> None:
        if self.runner.check_files:
            d = os.path.dirname(self._path(file)) or "."
            if not os.path.isdir(d) or not os.access(d, os.W_OK):
                raise MediaError("file", f"cannot write {file}", path=file)
        if not self._alive():
            raise MediaError("file", "the call is gone", path=file)
        assert self.leg is not None
        if self._rec is not None and not self._rec.called:
            self._rec.cancel()
        rec = self.leg.record(file, max_seconds=max_seconds, terminators=None, flush=False)
        self._rec, self._rec_file = rec, file
        self._rec_start, self._rec_end = self.clock.seconds(), None

        def ended(result: Any) -> Any:
            if self._rec is rec:
                self._rec_end = self.clock.seconds()
            if isinstance(result, Failure) and not result.check(CallEnded,
                                                                defer.CancelledError):
                self.log.warn("recording {file} failed: {error}", file=file,
                              error=result.getErrorMessage())
            return None
        rec.addBoth(ended)
        return None

    def stop_record(self) -> bool:
        rec = self._rec
        if rec is None or rec.called:
            return False
        rec.cancel()
        return True

    def record_length(self) -> int:
        if self._rec_start is None:
            return 0
        end = self._rec_end if self._rec_end is not None else self.clock.seconds()
        return int(round((end - self._rec_start) * 1000))

    def record_data_size(self) -> int:
        if not self._rec_file:
            return 0
        try:
            return os.path.getsize(self._path(self._rec_file))
        except OSError:
            return self.record_length() * bytes_per_second(self._rec_file) // 1000

    # -- misc --------------------------------------------------------------------------------------
    def media(self, op: str, arg: str = "") -> None:
        self.log.debug("DSM media action {op}({arg}): no Yate equivalent", op=op, arg=arg)

    def send_dtmf(self, key: int, duration_ms: int = 500) -> None:
        char = _KEY_CHARS.get(key)
        if char is None:
            raise MediaError("core", f"bad DTMF key {key}")
        if self._alive():
            assert self.leg is not None
            self.leg.send_dtmf(char, duration=duration_ms / 1000.0).addErrback(_ignore_ended)

    # -- conference --------------------------------------------------------------------------------
    def join_conference(self, room: str, mode: str = "") -> None:
        if not self._alive():
            raise MediaError("conference", "the call is gone")
        if not room or "/" in room or ":" in room:
            raise MediaError("conference", f"bad room name {room!r}")
        if mode:
            self.log.debug("conference mode {mode} not supported on Yate: joined normally",
                           mode=mode)
        self._queue(_Item("join", room, extra=mode), False)
        return None

    def _join(self, room: str, mode: str) -> None:
        assert self.leg is not None
        d = self.leg.join(room, lonely=True)
        self._joining = d

        def joined(_: Any) -> None:
            self._joining = None
            if self.room is not None:
                self.runner._left_room(self)
            self.room = room
            self.runner._entered_room(self, room)

        def failed(f: Failure) -> None:
            self._joining = None
            if not f.check(CallEnded, defer.CancelledError):
                self.log.warn("DSM session {session}: conference {room} refused: {error}",
                              session=self.session.id if self.session else None, room=room,
                              error=f.getErrorMessage())
                self._kick()
        d.addCallbacks(joined, failed)

    def leave_conference(self) -> bool:
        for item in list(self._items):
            if item.kind == "join":
                self._items.remove(item)
                return True
        if self.room is None or not self._alive():
            return False
        assert self.leg is not None
        self.runner._left_room(self)
        self.room = None
        self.leg.leave().addCallbacks(lambda _: self._kick(), _ignore_ended)
        return True

    def conference_size(self, room: str) -> int:
        return self.runner.room_size(room)

    # -- new legs --------------------------------------------------------------------------------------
    def dial(self, request: DialRequest) -> LegBackend:
        return self.runner.dial(request)

    def b2b_connect(self, remote_party: str, remote_uri: str, relayed: bool = False) -> None:
        """Call `remote_uri`, then bridge this leg to it (`chan.connect`); the outcome comes
        as `B2B.otherReply` (180, 200 or the failure code) and `B2B.otherBye`."""
        if not self._alive():
            raise MediaError("core", "B2B.connectCallee: the call is gone")
        assert self.leg is not None
        dispatcher = self.runner.dispatcher
        if dispatcher is None or not dispatcher.connected:
            raise MediaError("core", "B2B.connectCallee: not connected to Yate")
        uri = remote_uri or f"sip:{self.leg.called}"
        target = "sip/" + uri if uri.startswith(("sip:", "sips:")) else uri
        self.b2b_terminate_other()
        callee, d = _originate(dispatcher, target, caller=self.leg.caller or None,
                               callername=_display_name(remote_party) or None,
                               timeout=self.runner.dialout_timeout)
        self._b2b_leg, self._b2b_dial = callee, d
        callee.on_progress(lambda kind, msg: self._b2b_progress(callee, kind, msg))
        d.addCallbacks(self._b2b_answered, self._b2b_failed, errbackArgs=(callee,))
        return None

    def _b2b_event(self, kind: str, **params: str) -> None:
        self._feed(_ev_post, kind, params)

    def _b2b_answered(self, callee: Leg) -> None:
        if self._b2b_leg is not callee:            # terminated by us meanwhile
            callee.hangup("normal")
            return
        self._b2b_event("B2B.otherReply", code="200", reason="OK", hdrs="")
        callee.ended.addCallback(self._b2b_bye, callee)
        if not self._alive():
            callee.hangup("normal")
            return
        assert self.leg is not None
        self.flush_playlist()
        self.leg.bridge(callee).addErrback(_ignore_ended)

    def _b2b_failed(self, f: Failure, callee: Leg) -> None:
        if self._b2b_leg is not callee:
            return                                 # terminated by us meanwhile
        if f.check(DialError):
            e = f.value
            self._b2b_event("B2B.otherReply", code=str(e.code or code_for_reason(e.reason) or 500),
                            reason=e.reason, hdrs="")
        elif not f.check(CallEnded, defer.CancelledError):
            self.log.failure("B2B.connectCallee failed", f)
        if self._b2b_leg is callee:
            self._b2b_leg = self._b2b_dial = None

    def _b2b_bye(self, reason: str, callee: Leg) -> None:
        if self._b2b_leg is callee:
            self._b2b_leg = self._b2b_dial = None
            self._b2b_event("B2B.otherBye", hdrs="")

    def _b2b_progress(self, callee: Leg, kind: str, msg: Message) -> None:
        if self._b2b_leg is not callee:
            return
        if kind == "ringing":
            self._b2b_event("B2B.otherReply", code="180", reason="Ringing", hdrs="")
        else:
            self._b2b_event("B2B.otherReply", code="183", reason="Session Progress", hdrs="")

    def b2b_terminate_other(self) -> None:
        callee, d = self._b2b_leg, self._b2b_dial
        self._b2b_leg = self._b2b_dial = None
        if callee is None or not callee.alive:
            if d is not None and not d.called:
                d.cancel()
            return
        if d is not None and not d.called:
            callee.hangup("cancelled")             # still ringing: CANCEL
            return

        async def terminate() -> None:
            if self.leg is not None and self.leg.alive and self.leg.state == "bridged":
                await self.leg.leave()            # first, or Yate hangs our party up too
                self._kick()
            if callee.alive:
                await callee.hangup("normal")
        Deferred.fromCoroutine(terminate()).addErrback(_ignore_ended)


# What the backend feeds its session (functions of the session, so `_feed` can hold them
# until the session is attached).
def _ev_key(s: Session, key: int, duration: int) -> None:
    s.key(key, duration)


def _ev_hangup(s: Session, headers: str, reason: str) -> None:
    s.hangup(headers, reason)


def _ev_failed(s: Session, code: int, reason: str) -> None:
    s.failed(code, reason)


def _ev_leg_closed(s: Session) -> None:
    s.leg_closed()


def _ev_session_start(s: Session) -> None:
    s.session_start()


def _ev_early(s: Session) -> None:
    s.early_session()


def _ev_ringing(s: Session, code: int, reason: str, has_body: bool) -> None:
    s.ringing(code, reason, has_body)


def _ev_separator(s: Session, sep_id: str) -> None:
    s.separator(sep_id)


def _ev_no_audio(s: Session) -> None:
    s.no_audio()


def _ev_post(s: Session, kind: str, params: dict[str, str]) -> None:
    s.post_event(kind, params)


# ------------------------------------------------------------------------------------------
# The runner
# ------------------------------------------------------------------------------------------

class DSMRunner:
    """Runs an `Engine`'s applications on Yate calls through one dispatcher.

    - `attach(dispatcher)` (usable as the `start` of `connect_service` or `sim.connect`)
      claims the configured numbers in `call.route` (`yaypm.ivr.route`, `priority`) and
      starts one session per call; every claimed `call.route` is answered in its handler.
    - `registry`: a `yaypm.registry.CallRegistry` that keeps the sessions' monitoring
      records (`dsm_state`, `dsm_diag`, `dsm_stategraph`…) for `yaypm.monitor` (the
      engine is given a `RegistryMonitoringStore` on it unless it has one already). When
      the switchboard records its legs in the same registry (`switchboard(d).calls`, as
      under `yaypm run --monitor`), a leg's session is named after the leg's record, so
      each leg has one entry with the IVR attributes and the DSM ones, ended with the leg.
    - `media_root`: folder for relative prompt/recording names (also where the file checks
      look); `check_files=False` skips the local existence checks (Yate on another host).
    - `dialout_timeout`: seconds a `dlg.dialout`/`B2B.connectCallee` leg may ring.
    - `reload()` / `load_config()` swap diagrams and routes for new calls only.
    """

    log = Logger()

    def __init__(self, engine: Engine, *, registry: Optional[CallRegistry] = None,
                 priority: int = DEFAULT_PRIORITY, media_root: Optional[str] = None,
                 check_files: bool = True, dialout_timeout: Optional[float] = 120.0,
                 clock: Any = None) -> None:
        self.engine = engine
        self.registry = registry
        if registry is not None:
            from yaypm.monitor.dsm_bridge import attach_engine
            attach_engine(engine, registry)
            if not registry.node:         # sessions named after records: unique ids (⚑D9)
                registry.node = _NODE
        self.priority = priority
        self.media_root = media_root
        self.check_files = check_files
        self.dialout_timeout = dialout_timeout
        self._clock = clock
        self.dispatcher: Optional[Dispatcher] = None
        self.backends: set[LegBackend] = set()
        self._rooms: dict[str, set[LegBackend]] = {}
        self._route: Optional[Route] = None
        self._events: Any = None
        self._table: Optional[RouteTable] = None
        self._table_for: Any = None
        self._logged_errors: Any = None
        self.stats = {"calls": 0, "dialouts": 0, "unrouted": 0, "errors": 0}

    @property
    def clock(self) -> Any:
        if self._clock is None:
            self._clock = self.engine.registry.clock
        return self._clock

    # -- routes ---------------------------------------------------------------------------
    def routes(self) -> RouteTable:
        """The route table of the engine's current configuration (rebuilt after reloads)."""
        app_set = self.engine.app_set
        if self._table is None or self._table_for is not app_set:
            self._table = RouteTable.from_app_set(app_set, self.engine)
            self._table_for = app_set
            for e in self._table.errors:
                self.log.error("DSM routes: {error}", error=e)
        return self._table

    def app_for(self, called: str) -> Optional[str]:
        return self.routes().app_for(called)

    # -- connection -----------------------------------------------------------------------
    def attach(self, dispatcher: Dispatcher) -> None:
        """Claim the routes on `dispatcher` (once; a reconnecting dispatcher keeps them)."""
        if self.dispatcher is dispatcher:
            return
        self.close()
        self.dispatcher = dispatcher
        board = switchboard(dispatcher, self.priority)
        if self.media_root is not None:
            board.media_root = self.media_root
        self._route = route(dispatcher, self._claims, self._serve, priority=self.priority)
        if self._events is not None:
            self._events.cancel()
        self._events = dispatcher.handler(EVENT_MESSAGE, self._event_received,
                                          priority=self.priority)
        self.engine.registry.remote = self._post_remote
        table = self.routes()
        self.log.info("DSM routes: {routes}", routes=", ".join(table.describe()) or "none")

    __call__ = attach

    def close(self) -> None:
        """Stop claiming numbers (running calls go on, and still get their posted events)."""
        if self._route is not None:
            self._route.cancel()
            self._route = None

    def start_system_dsms(self) -> list[Session]:
        return self.engine.start_system_dsms()

    # -- postEvent between processes (⚑D9) --------------------------------------------------
    def _post_remote(self, target: str, params: dict[str, str], sender: str) -> Deferred:
        """The registry's `remote`: send the event to whichever process holds `target`;
        fires whether one took it."""
        d = self.dispatcher
        if d is None or not d.connected:
            self.log.warn("postEvent to {target}: not here, and no connection to Yate",
                          target=target)
            return defer.succeed(False)
        m = d.msg(EVENT_MESSAGE, [("target", target), ("sender", sender)]
                  + [(_VAR + k, v) for k, v in params.items() if "=" not in k])

        def answered(taken: bool) -> bool:
            if not taken:
                self.log.warn("postEvent from {sender}: no process holds {target}",
                              sender=sender, target=target)
            return taken

        def failed(f: Failure) -> bool:
            self.log.warn("postEvent from {sender} to {target} failed: {error}",
                          sender=sender, target=target, error=f.getErrorMessage())
            return False
        return m.dispatch().addCallbacks(answered, failed)

    def _event_received(self, msg: Message) -> bool:
        """`yaypm.dsm.event`: true (the event queued after this answer, ⚑D9) only for a
        session or queue of this process; false lets Yate offer it to the next one."""
        target = msg.get("target", "")
        registry = self.engine.registry
        session = registry.find(target)
        if session is None or session.ended:
            self.log.debug("postEvent for {target}: not here", target=target)
            return False
        params = {k[len(_VAR):]: v for k, v in msg.items() if k.startswith(_VAR)}
        self.clock.callLater(0, self._deliver_event, target, params, msg.get("sender", ""))
        return True

    def _deliver_event(self, target: str, params: dict[str, str], sender: str) -> None:
        if not self.engine.registry.post_event(target, params):
            self.log.debug("postEvent from {sender}: {target} ended before delivery",
                           sender=sender, target=target)

    # -- reload ---------------------------------------------------------------------------
    def reload(self) -> tuple[bool, str]:
        """`reloadDSMs` / SIGHUP: new diagrams and routes for new calls; running calls keep
        theirs. On failure the running set stays."""
        ok, msg = self.engine.reload()
        errors = self.routes().errors
        if ok and errors:
            ok, msg = False, "DSMs reloaded; route problems: " + "; ".join(errors)
        (self.log.info if ok else self.log.error)("DSM reload: {msg}", msg=msg)
        return ok, msg

    def load_config(self, file: str, name: str) -> tuple[int, str]:
        code, msg = self.engine.load_config(file, name)
        self.routes()
        return code, msg

    # -- calls ----------------------------------------------------------------------------
    def _claims(self, called: str) -> bool:
        return self.app_for(called) is not None

    def _serve(self, leg: Leg) -> Deferred:
        app = self.app_for(leg.called)
        if app is None:                       # a reload removed the route meanwhile
            self.stats["unrouted"] += 1
            leg.reject(404)
            return leg.ended
        backend = LegBackend(self, leg, "in")
        session = self.engine.create_session(
            app, backend, session_id=leg.record_id if self._shares_records(leg.board) else None,
            direction="in", selects=self.selects(leg),
            app_params=leg.params.get("sip_p-app-param", ""))
        self.stats["calls"] += 1
        session.monitor_set("chan", leg.id or "")
        session.invite()
        return backend.finished

    @staticmethod
    def selects(leg: Leg) -> dict[str, str]:
        """DSM selects of an inbound leg (spec §5.1) from its `call.route` parameters."""
        p = leg.params
        called, caller = leg.called, leg.caller
        local_uri = _strip_uri(p.get("sip_uri", ""))
        domain = p.get("domain") or (_uri_host(local_uri) if local_uri else "")
        if not local_uri:
            local_uri = f"sip:{called}@{domain}" if domain else f"sip:{called}"
        remote_uri = _strip_uri(p.get("sip_from", ""))
        if not remote_uri:
            host = p.get("address", "").rsplit(":", 1)[0]
            remote_uri = f"sip:{caller}@{host}" if host else f"sip:{caller}"
        name = leg.callername
        remote_party = f'"{name}" <{remote_uri}>' if name else f"<{remote_uri}>"
        return {"user": called, "domain": domain, "local_uri": local_uri,
                "local_party": p.get("sip_to") or f"<{local_uri}>",
                "remote_uri": remote_uri, "remote_party": remote_party,
                "callid": p.get("sip_callid") or p.get("billid", ""), "remote_tag": ""}

    def dial(self, request: DialRequest) -> LegBackend:
        """`dlg.dialout`: call `sip/<r-uri>` through a new dumb channel; the returned backend
        feeds `ringing`/`earlySession`/`sessionStart`/`failed` to the session attached to it.
        Raises MediaError("dlg") when Yate cannot even be asked."""
        d = self.dispatcher
        if d is None or not d.connected:
            raise MediaError("dlg", "not connected to Yate")
        uri = request.target_uri
        target = uri if "/" in uri.split(":", 1)[0] else "sip/" + uri
        params = _headers_params(request.headers)
        # Sharing the registry, the leg's record is its session's (named before the dial).
        record_id = request.ltag if self._shares_records(switchboard(d)) else None
        leg, dd = _originate(d, target, caller=request.caller,
                             callername=_display_name(request.from_) or None,
                             timeout=self.dialout_timeout, called=request.callee,
                             record_id=record_id, **params)
        backend = LegBackend(self, leg, "out")
        leg.on_progress(backend._remote_progress)
        dd.addCallbacks(backend._dialled, backend._dial_failed)
        self.stats["dialouts"] += 1
        return backend

    # -- bookkeeping ------------------------------------------------------------------------
    def _shares_records(self, board: Any) -> bool:
        """Whether the switchboard records its legs in our registry (one entry per leg)."""
        return self.registry is not None and board.calls is self.registry

    def _adopt(self, backend: LegBackend) -> None:
        self.backends.add(backend)

    def _forget(self, backend: LegBackend) -> None:
        self.backends.discard(backend)

    def _entered_room(self, backend: LegBackend, room: str) -> None:
        self._rooms.setdefault(room, set()).add(backend)

    def _left_room(self, backend: LegBackend) -> None:
        room = backend.room
        backend.room = None
        members = self._rooms.get(room or "")
        if members is not None:
            members.discard(backend)
            if not members:
                del self._rooms[room or ""]

    def room_size(self, room: str) -> int:
        """Our legs in conference `room`."""
        return len(self._rooms.get(room, ()))

    def active_calls(self) -> int:
        return len(self.backends)


class DSMService(Service):
    """A `DSMRunner` on a reconnecting connection to Yate, as a Twisted application service.

    `endpoint` is a client endpoint string (`tcp:127.0.0.1:5039`); `role` as for
    `yaypm.connectors.connect_service`. Starting connects (with backoff) and starts the
    system DSMs once; stopping closes the connection and the runner's routes.
    """

    def __init__(self, runner: DSMRunner, endpoint: str, role: Optional[str] = None,
                 reactor: Any = None) -> None:
        self.runner = runner
        self.endpoint = endpoint
        self.role = role
        self._reactor = reactor
        self.connection: Any = None
        self._systems_started = False

    def startService(self) -> None:
        from yaypm.connectors import connect_service
        super().startService()
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.connection = connect_service(reactor, self.endpoint, self.runner.attach,
                                          role=self.role)
        if not self._systems_started:
            self._systems_started = True
            self.runner.start_system_dsms()

    def stopService(self) -> Any:
        super().stopService()
        self.runner.close()
        connection, self.connection = self.connection, None
        return connection.stopService() if connection is not None else None
