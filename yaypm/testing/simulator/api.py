"""The test-facing simulator: connect modules, place calls, script SIP endpoints, read the wire.

    sim = Simulator()                                  # task.Clock inside; sim.clock
    d = sim.connect(start)                             # a real Dispatcher on an in-memory link
    call = sim.place_call("100", caller="alice")       # an incoming SIP call: sip/1
    sim.endpoint("bob", answer(after=2.0))             # outbound legs to bob answer after 2 s
    call.send_dtmf("1234#", interval=0.2)
    sim.advance(5)                                     # time moves only when the test says so
    assert call.sip_status == 200 and call.heard() == ["wave/play/prompts/hello.slin"]
    sim.expect_line(r"%%<message::true:call.answered:")  # fails naming the unexpected line

Lines travel through the engine's job queue in both directions: a line written inside a
callback is queued, never delivered re-entrantly, and everything runs to completion before
``connect``/``place_call``/``advance`` return — no ``clock.advance(0)`` needed.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Pattern, Sequence, Tuple, Union

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import Logger

from yaypm.dispatcher import DisconnectedException, Dispatcher
from yaypm.testing.simulator.channels import Channel
from yaypm.testing.simulator.engine import Engine, SimMessage
from yaypm.testing.simulator.extmodule import ExtConnection
from yaypm.testing.simulator.media import MediaFiles
from yaypm.testing.simulator.modules import Modules
from yaypm.testing.simulator.sip import RemoteParty, SipChannel, _parse_uri

__all__ = ["Simulator", "SimCall", "SimLeg", "OutboundLeg", "SimEndpoint", "Behaviour",
           "WireLine", "RawConnection", "SimConnection", "answer", "answer_after", "busy",
           "reject", "noanswer", "unreachable", "SCRIPT", "ENGINE"]

SCRIPT = ">>"      #: direction of a line the script wrote
ENGINE = "<<"      #: direction of a line the engine wrote

log = Logger(namespace="yaypm.testing.simulator")
wire_log = Logger(namespace="yaypm.wire")


@dataclass(frozen=True)
class WireLine:
    """One line on a simulated connection: when, which connection, which way, what."""
    time: float
    conn: str
    direction: str       # ">>" script -> engine, "<<" engine -> script
    line: str

    def __str__(self) -> str:
        return f"{self.time:10.3f} {self.conn} {self.direction} {self.line}"


# ------------------------------------------------------------------------------------------------
# SIP endpoints and their behaviours
# ------------------------------------------------------------------------------------------------

class Behaviour:
    """What a scripted SIP endpoint does with an INVITE: timed steps after it arrives.

    Steps are ``(action, seconds_after_invite)``; actions: ``progress`` (183 with SDP),
    ``ring`` (180), ``answer`` (200), ``reject:<code>`` (final error), ``timeout`` (408 after
    no response), ``hangup`` (BYE after an answer).
    """

    def __init__(self, steps: Sequence[Tuple[str, float]], name: str = "custom") -> None:
        self.steps = sorted(((a, float(t)) for a, t in steps), key=lambda s: s[1])
        self.name = name

    def shifted(self, delay: float) -> "Behaviour":
        return Behaviour([(a, t + delay) for a, t in self.steps], self.name)

    def __repr__(self) -> str:
        return f"<Behaviour {self.name} {self.steps}>"


def answer(after: float = 0.0, ring: bool = True, progress: bool = False,
           hangup_after: Optional[float] = None) -> Behaviour:
    """Ring (180) at once, answer ``after`` seconds later; optionally 183 first, BYE later."""
    steps: List[Tuple[str, float]] = []
    if progress:
        steps.append(("progress", 0.0))
    if ring:
        steps.append(("ring", 0.0))
    steps.append(("answer", after))
    if hangup_after is not None:
        steps.append(("hangup", after + hangup_after))
    return Behaviour(steps, "answer")


def answer_after(seconds: float, **kw: Any) -> Behaviour:
    return answer(after=seconds, **kw)


def busy(after: float = 0.0) -> Behaviour:
    """486 Busy Here."""
    return Behaviour([("reject:486", after)], "busy")


def reject(code: int, after: float = 0.0, ring: bool = False) -> Behaviour:
    """A final error response with ``code`` (404, 480, 603...)."""
    steps = [("ring", 0.0)] if ring else []
    steps.append((f"reject:{int(code)}", after))
    return Behaviour(steps, f"reject({code})")


def noanswer(ring: bool = True) -> Behaviour:
    """Rings forever (until cancelled or the caller's ``maxcall``)."""
    return Behaviour([("ring", 0.0)] if ring else [], "noanswer")


def unreachable() -> Behaviour:
    """Nobody answers at all: 408 Request Timeout after 32 s (SIP timer B)."""
    return Behaviour([("timeout", 32.0)], "unreachable")


_NAMED = {"answer": answer, "busy": busy, "noanswer": noanswer, "unreachable": unreachable}


def _behaviour(spec: Any) -> Behaviour:
    if isinstance(spec, Behaviour):
        return spec
    if isinstance(spec, str):
        m = re.fullmatch(r"reject\((\d+)\)|reject:(\d+)|(\d{3})", spec)
        if m:
            return reject(int(m.group(1) or m.group(2) or m.group(3)))
        m = re.fullmatch(r"answer_after\(([\d.]+)\)", spec)
        if m:
            return answer(after=float(m.group(1)))
        if spec in _NAMED:
            return _NAMED[spec]()
        raise ValueError(f"unknown endpoint behaviour {spec!r}")
    if isinstance(spec, (list, tuple)):
        return Behaviour(list(spec))
    raise TypeError(f"endpoint behaviour must be a Behaviour, a name or steps, not {spec!r}")


class SimEndpoint:
    """A scripted SIP user agent that outgoing legs reach; ``legs`` are the calls it got."""

    def __init__(self, sim: "Simulator", target: str, behaviour: Behaviour,
                 host: str = "127.0.0.1", port: int = 5080) -> None:
        self.sim = sim
        self.target = target
        self.behaviour = behaviour
        self.host = host
        self.port = port
        self.legs: List["OutboundLeg"] = []

    @property
    def user(self) -> str:
        return _parse_uri(self.target)[0] if self.target.startswith("sip:") else self.target

    @property
    def uri(self) -> str:
        if self.target.startswith("sip:"):
            return self.target
        return f"sip:{self.target}@{self.host}:{self.port}"

    @property
    def last(self) -> "OutboundLeg":
        return self.legs[-1]

    def __repr__(self) -> str:
        return f"<SimEndpoint {self.target} {self.behaviour.name} legs={len(self.legs)}>"


# ------------------------------------------------------------------------------------------------
# Legs seen from the SIP side
# ------------------------------------------------------------------------------------------------

class SimLeg(RemoteParty):
    """The far SIP user agent of one ``sip/N`` channel, as a test sees it."""

    def __init__(self, sim: "Simulator", chan: Optional[SipChannel]) -> None:
        self.sim = sim
        self.chan: SipChannel = chan  # type: ignore[assignment]
        self.provisional: List[int] = []
        self.sip_status: Optional[int] = None
        self.sip_reason = ""
        self.state = "calling"
        self._answered_waiters: List[Deferred] = []
        self._ended_waiters: List[Deferred] = []
        self._dtmf: List[str] = []
        self._dtmf_call: Any = None

    # -- what the test reads ------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self.state == "ended"

    @property
    def is_answered(self) -> bool:
        return self.chan.answered

    def answered(self) -> Deferred:
        """Fires True once answered, False if the leg ends unanswered (at once if known)."""
        if self.chan.answered:
            return defer.succeed(True)
        if self.ended:
            return defer.succeed(False)
        d: Deferred = Deferred()
        self._answered_waiters.append(d)
        return d

    def when_ended(self) -> Deferred:
        """Fires with the final SIP status once the leg is gone."""
        if self.ended:
            return defer.succeed(self.sip_status)
        d: Deferred = Deferred()
        self._ended_waiters.append(d)
        return d

    def heard(self) -> List[str]:
        """Prompts and tones attached to this leg (or to its peer), in order."""
        return list(self.chan.heard)

    def dtmf_received(self) -> str:
        """Digits sent to this party (INFO or RFC 2833)."""
        return "".join(self._dtmf)

    @property
    def peer_id(self) -> str:
        return self.chan.peer_id

    # -- what the test does -------------------------------------------------------------------
    def send_dtmf(self, digits: str, interval: float = 0.1, method: Optional[str] = None
                  ) -> Deferred:
        """Send DTMF, one digit every ``interval`` s (the first at once); fires when sent."""
        method = method or getattr(self, "dtmf_method", "info")
        if method not in ("info", "rfc2833"):
            raise ValueError(f"dtmf method must be 'info' or 'rfc2833', not {method!r}")
        if self.ended:
            raise RuntimeError(f"{self.id} has ended")
        d: Deferred = Deferred()
        queue = list(digits)

        def one() -> None:
            self._dtmf_call = None
            if not queue or self.ended:
                d.callback(None)
                return
            digit = queue.pop(0)
            self.sim.engine.run(self.chan.remote_dtmf, digit, method)
            if queue:
                self._dtmf_call = self.sim.engine.call_later(interval, one)
            else:
                d.callback(None)
        one()
        return d

    def hangup(self) -> None:
        """BYE (answered) or CANCEL (not yet answered) from this party."""
        if self.ended:
            return
        if self.chan.answered:
            self.sim.engine.run(self.chan.remote_bye)
        else:
            self.sim.engine.run(self.chan.remote_cancel)

    # -- RemoteParty ----------------------------------------------------------------------------
    def sip_provisional(self, code: int) -> None:
        self.provisional.append(code)
        if self.state == "calling" or self.state in ("ringing", "progressing"):
            self.state = "ringing" if code == 180 else "progressing"

    def sip_answered(self) -> None:
        self.sip_status = 200
        self.sip_reason = "OK"
        self.state = "answered"
        waiters, self._answered_waiters = self._answered_waiters, []
        for d in waiters:
            d.callback(True)

    def sip_final(self, code: int, reason: str) -> None:
        self.sip_status = code
        self.sip_reason = reason

    def sip_dtmf(self, text: str, method: str) -> None:
        self._dtmf.append(text)

    def sip_ended(self, chan: SipChannel) -> None:
        self.state = "ended"
        if self._dtmf_call is not None and self._dtmf_call.active():
            self._dtmf_call.cancel()
        self._dtmf_call = None
        waiters, self._answered_waiters = self._answered_waiters, []
        for d in waiters:
            d.callback(False)
        ended, self._ended_waiters = self._ended_waiters, []
        for d in ended:
            d.callback(self.sip_status)
        self.sim._leg_ended(self)

    @property
    def id(self) -> str:
        """The ``sip/N`` channel id of this leg."""
        return self.chan.id

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.state} sip={self.sip_status}>"


class SimCall(SimLeg):
    """A call placed into the engine by a simulated SIP caller (``sim.place_call``)."""

    def __init__(self, sim: "Simulator", chan: Optional[SipChannel], called: str,
                 caller: str, dtmf_method: str) -> None:
        super().__init__(sim, chan)
        self.called = called
        self.caller = caller
        self.dtmf_method = dtmf_method

    def sip_bye(self) -> None:
        """Yate hung up the answered call: this caller got a BYE."""
        if self.sip_status is None:
            self.sip_status = 200


class OutboundLeg(SimLeg):
    """A call the engine placed to a scripted endpoint (``sim.endpoint``)."""

    def __init__(self, sim: "Simulator", chan: SipChannel, endpoint: Optional[SimEndpoint],
                 uri: str) -> None:
        super().__init__(sim, chan)
        self.endpoint = endpoint
        self.uri = uri
        self.invited_at = sim.clock.seconds()
        self.cancelled = False
        self.bye_received = False
        self.dtmf_method = "rfc2833" if chan.rfc2833 else "info"
        self._calls: List[Any] = []

    def start(self, behaviour: Behaviour) -> None:
        """Schedule the endpoint's steps; those at 0 s run as soon as the INVITE is handled."""
        for action, at in behaviour.steps:
            if at <= 0:
                self.sim.engine.run(self._step, action)
            else:
                self._calls.append(self.sim.engine.call_later(at, self._step, action))

    def _step(self, action: str) -> None:
        if self.ended:
            return
        chan = self.chan
        run = self.sim.engine.run
        if action == "progress":
            self.provisional.append(183)
            run(chan.remote_progress)
        elif action == "ring":
            self.provisional.append(180)
            self.state = "ringing"
            run(chan.remote_ringing)
        elif action == "answer":
            self.sip_status = 200
            self.state = "answered"
            run(chan.remote_answer)
            run(self._answered_now)
        elif action.startswith("reject:"):
            code = int(action.split(":", 1)[1])
            self.sip_status = code
            run(chan.remote_reject, code)
        elif action == "timeout":
            self.sip_status = 408
            run(chan.remote_timeout)
        elif action == "hangup":
            run(chan.remote_bye)

    def _answered_now(self) -> None:
        waiters, self._answered_waiters = self._answered_waiters, []
        for d in waiters:
            d.callback(True)

    def sip_bye(self) -> None:
        self.bye_received = True

    def sip_cancel(self) -> None:
        self.cancelled = True
        if self.sip_status is None:
            self.sip_status = 487

    def sip_ended(self, chan: SipChannel) -> None:
        for c in self._calls:
            if c.active():
                c.cancel()
        self._calls = []
        super().sip_ended(chan)


# ------------------------------------------------------------------------------------------------
# Connections
# ------------------------------------------------------------------------------------------------

class SimConnection:
    """One extmodule connection: the engine side plus whatever is on the script side."""

    def __init__(self, sim: "Simulator", name: str, role: Optional[str]) -> None:
        self.sim = sim
        self.name = name
        self.ext = ExtConnection(sim.engine, self._to_script, self._closed_by_engine, role,
                                 name, defaults=sim.ext_defaults)
        self.dispatcher: Optional[Dispatcher] = None
        self.transport: Any = None          # a TCP protocol, when over a socket
        self.raw: Optional["RawConnection"] = None
        self.closed = False

    # engine -> script
    def _to_script(self, line: str) -> None:
        self.sim._log(self.name, ENGINE, line)
        self.sim.engine.run(self._deliver, line)

    def _deliver(self, line: str) -> None:
        if self.closed:
            return
        if self.dispatcher is not None:
            self.dispatcher.line_received(line)
        elif self.raw is not None:
            self.raw.lines.append(line)
        elif self.transport is not None:
            self.transport.send_line(line)

    # script -> engine
    def from_script(self, line: str) -> None:
        if self.closed:
            raise DisconnectedException(f"{self.name} is closed")
        self.sim._log(self.name, SCRIPT, line)
        if self.sim._stepping and not self.sim.engine.busy:
            # Written from one of the script's own timers (a leg's sleep or timeout): Yate
            # reads it once the timer returned, so its answers cannot arrive inside the write.
            self.sim._held.append((self, line))
            return
        self.sim.engine.run(self.ext.data_received, line)

    def _closed_by_engine(self) -> None:
        self.sim.engine.run(self._close_now, "closed by the simulated engine")

    def _close_now(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.sim._log(self.name, ENGINE, "# connection closed by the engine")
        if self.dispatcher is not None:
            self.dispatcher.detach(DisconnectedException(reason))
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        """The script side goes away (socket closed)."""
        if self.closed:
            return
        self.closed = True
        self.sim._log(self.name, SCRIPT, "# connection closed by the script")
        self.sim.engine.run(self.ext.connection_lost)
        if self.dispatcher is not None:
            self.dispatcher.detach(DisconnectedException("disconnected by the test"))

    def __repr__(self) -> str:
        return f"<SimConnection {self.name} role={self.ext.role} closed={self.closed}>"


class RawConnection:
    """A connection driven line by line (protocol tests, trace replay)."""

    def __init__(self, conn: SimConnection) -> None:
        self.conn = conn
        self.lines: List[str] = []

    @property
    def name(self) -> str:
        return self.conn.name

    @property
    def closed(self) -> bool:
        return self.conn.closed

    def send(self, *lines: str) -> None:
        for line in lines:
            self.conn.from_script(line)

    def take(self) -> List[str]:
        out, self.lines = self.lines, []
        return out

    def close(self) -> None:
        self.conn.close()


# ------------------------------------------------------------------------------------------------
# The simulator
# ------------------------------------------------------------------------------------------------

class Simulator:
    """A simulated Yate 6.4.1 with sip, dumb, wave, tone, conf, callfork, pbx and extmodule.

    ``clock`` defaults to a fresh ``task.Clock``; pass the reactor to run in real time (the
    ``yaypm simulate`` command does).  ``media_dir`` is where relative prompt and recording
    paths are resolved (Yate's working directory); ``durations`` declares prompt lengths per
    path (``None`` = missing file).  ``wire_log=False`` keeps no line log (benchmarks).
    """

    def __init__(self, clock: Any = None, *, start_time: Optional[float] = None,
                 media_dir: Optional[str] = None,
                 durations: Optional[Dict[str, Optional[float]]] = None,
                 caller_address: Tuple[str, int] = ("127.0.0.1", 5090),
                 timeout: int = 10000, wire_log: bool = True) -> None:
        self.clock = clock if clock is not None else Clock()
        self.engine = Engine(self.clock, start_time)
        self.media = MediaFiles(media_dir)
        for path, secs in (durations or {}).items():
            self.media.declare(path, secs)
        self.modules = Modules(self.engine, self.media, routes=self._route)
        self.modules.sip.outbound = self._outbound
        self.engine.ext_connections = []          # type: ignore[attr-defined]
        self.ext_defaults = {"timeout": timeout}
        self.caller_address = caller_address
        self.wire: List[WireLine] = []
        self._wire_on = wire_log
        self.log_wire = False          # also send every line to the yaypm.wire logger
        self._cursor: Dict[Tuple[Optional[str], str], int] = {}
        self.connections: List[SimConnection] = []
        self._conn_ids = itertools.count(1)
        self.calls: List[SimCall] = []
        self.endpoints: Dict[str, SimEndpoint] = {}
        self.default_endpoint: Behaviour = unreachable()
        self._callseq = itertools.count(1)
        self.ended_legs: List[SimLeg] = []
        self._stepping = False        # inside advance()'s clock step
        self._held: List[Tuple[SimConnection, str]] = []   # lines written by script timers

    # -- connections ---------------------------------------------------------------------------
    def _new_connection(self, role: Optional[str], name: Optional[str]) -> SimConnection:
        name = name or f"conn{next(self._conn_ids)}"
        conn = SimConnection(self, name, role)
        self.connections.append(conn)
        self.engine.ext_connections.append(conn.ext)   # type: ignore[attr-defined]
        return conn

    def connect(self, start: Optional[Callable[..., Any]] = None, role: Optional[str] = None,
                *args: Any, name: Optional[str] = None,
                dispatcher: Optional[Dispatcher] = None, **kwargs: Any) -> Dispatcher:
        """Connect a real :class:`Dispatcher` to the engine; ``start(dispatcher, *args)`` runs.

        ``role=None``: the simulated listener has ``role=global`` preset (no ``%%>connect``).
        ``role="global"``/``"channel"``: the listener has no role and the dispatcher sends
        ``%%>connect:<role>`` first.  Keyword arguments go to ``start``.
        """
        conn = self._new_connection(None if role else "global", name)
        d = dispatcher or Dispatcher(self.clock, role=role)
        conn.dispatcher = d
        d.attach(conn.from_script)
        if start is not None:
            start(d, *args, **kwargs)
        return d

    def connect_raw(self, role: Optional[str] = "global",
                    name: Optional[str] = None) -> RawConnection:
        """A connection you drive with literal lines; ``role=None`` requires ``%%>connect``."""
        conn = self._new_connection(role, name)
        raw = RawConnection(conn)
        conn.raw = raw
        return raw

    def connection_of(self, dispatcher: Dispatcher) -> SimConnection:
        for conn in self.connections:
            if conn.dispatcher is dispatcher:
                return conn
        raise KeyError(dispatcher)

    def disconnect(self, who: Union[Dispatcher, RawConnection, SimConnection]) -> None:
        """Close a connection from the script side (the socket goes away)."""
        if isinstance(who, Dispatcher):
            self.connection_of(who).close()
        elif isinstance(who, RawConnection):
            who.close()
        else:
            who.close()

    def listen(self, endpoint: str = "tcp:5039:interface=127.0.0.1",
               role: Optional[str] = "global", reactor: Any = None) -> Deferred:
        """Accept real extmodule connections (``yaypm simulate``); fires with the port."""
        from yaypm.testing.simulator.tcp import listen
        return listen(self, endpoint, role, reactor)

    # -- wire log --------------------------------------------------------------------------------
    def _log(self, conn: str, direction: str, line: str) -> None:
        if self.log_wire:
            wire_log.debug("{conn} {direction} {line}", conn=conn, direction=direction,
                           line=line)
        if self._wire_on:
            self.wire.append(WireLine(self.clock.seconds(), conn, direction, line))

    def lines(self, direction: Optional[str] = None, conn: Optional[str] = None) -> List[str]:
        """Logged lines (``"<<"`` engine->script, ``">>"`` script->engine), optionally filtered."""
        return [w.line for w in self.wire
                if (direction is None or w.direction == direction)
                and (conn is None or w.conn == conn)]

    def expect_line(self, pattern: Union[str, Pattern[str]], direction: str = ENGINE,
                    conn: Optional[str] = None, skip: bool = False) -> WireLine:
        """Check the next unread line of ``direction`` (and ``conn``) against a regexp.

        Without ``skip`` the very next line must match, else AssertionError naming it; with
        ``skip`` non-matching lines are passed over.  Returns the matching line.
        """
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        key = (conn, direction)
        pos = self._cursor.get(key, 0)
        candidates = [(i, w) for i, w in enumerate(self.wire)
                      if i >= pos and w.direction == direction and
                      (conn is None or w.conn == conn) and not w.line.startswith("# ")]
        for i, w in candidates:
            if rx.search(w.line):
                self._cursor[key] = i + 1
                return w
            if not skip:
                raise AssertionError(f"unexpected line {w}\n  expected: {rx.pattern}")
        raise AssertionError(f"no line matching {rx.pattern!r} (direction {direction}"
                             f"{', ' + conn if conn else ''}); last lines:\n  "
                             + "\n  ".join(str(w) for w in self.wire[-8:]))

    def expect_no_more_lines(self, direction: str = ENGINE, conn: Optional[str] = None) -> None:
        """AssertionError naming the first line not yet read by :meth:`expect_line`."""
        pos = self._cursor.get((conn, direction), 0)
        for w in self.wire[pos:]:
            if w.direction == direction and (conn is None or w.conn == conn) \
                    and not w.line.startswith("# "):
                raise AssertionError(f"unexpected line {w}")

    def skip_lines(self) -> None:
        """Mark every line logged so far as read."""
        for key in list(self._cursor) + [(None, ENGINE), (None, SCRIPT)]:
            self._cursor[key] = len(self.wire)
        for conn in self.connections:
            for d in (ENGINE, SCRIPT):
                self._cursor[(conn.name, d)] = len(self.wire)

    # -- time ----------------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Move the clock forward, running each timer at its own time (task.Clock only)."""
        if not isinstance(self.clock, Clock):
            raise TypeError("advance() needs a task.Clock; a real reactor keeps its own time")
        target = self.clock.seconds() + seconds
        while True:
            calls = getattr(self.clock, "calls", None)    # task.Clock keeps them sorted
            if calls is None:
                calls = sorted(self.clock.getDelayedCalls(), key=lambda c: c.getTime())
            if not calls or calls[0].getTime() > target:
                break
            self._step(max(calls[0].getTime() - self.clock.seconds(), 0.0))
        self._step(max(target - self.clock.seconds(), 0.0))

    def _step(self, seconds: float) -> None:
        """One clock step; then the lines script timers wrote during it (see from_script)."""
        self._stepping = True
        try:
            self.clock.advance(seconds)
        finally:
            self._stepping = False
        while self._held:
            held, self._held = self._held, []
            for conn, line in held:
                if not conn.closed:
                    self.engine.run(conn.ext.data_received, line)

    # -- calls ---------------------------------------------------------------------------------------
    def place_call(self, called: str, caller: str = "alice", *,
                   callername: Optional[str] = None, dtmf_method: str = "info",
                   address: Optional[Tuple[str, int]] = None, rfc2833: bool = True,
                   formats: str = "alaw,mulaw", headers: Optional[Dict[str, str]] = None,
                   params: Optional[Dict[str, str]] = None) -> SimCall:
        """A SIP caller sends an INVITE for ``called``: ``sip/N`` is created and routed.

        ``dtmf_method`` is how :meth:`SimCall.send_dtmf` sends digits (``info`` or
        ``rfc2833``).  ``headers`` become ``sip_<name>`` parameters of ``call.route`` (the
        default carries ``sip_allow`` as sipp sends it); ``params`` override any parameter.
        """
        if dtmf_method not in ("info", "rfc2833"):
            raise ValueError("dtmf_method must be 'info' or 'rfc2833'")
        n = next(self._callseq)
        host, port = address or self.caller_address
        hdrs = [("sip_allow", "INVITE, ACK, CANCEL, BYE, INFO")]
        for k, v in (headers or {}).items():
            key = k if k.startswith("sip_") else "sip_" + k.lower()
            hdrs = [(a, b) for a, b in hdrs if a != key] + [(key, v)]
        call = SimCall(self, None, called, caller, dtmf_method)

        def start() -> None:
            call.chan = self.modules.sip.incoming(
                call, caller=caller, called=called, callername=callername,
                address=(host, port), call_id=f"{n}-sim@{host}", from_tag=f"SimTag{n:03d}",
                rfc2833=rfc2833, formats=formats, headers=hdrs,
                extra=list((params or {}).items()))
        self.engine.run(start)
        self.calls.append(call)
        return call

    def endpoint(self, target: str, behaviour: Any = "answer", delay: float = 0.0, *,
                 host: str = "127.0.0.1", port: int = 5080) -> SimEndpoint:
        """Script the SIP user agent that outgoing legs to ``target`` reach.

        ``target`` is a user/number (``bob``, ``100``) or a URI (``sip:bob@10.0.0.5``).
        Legs match by URI user (or full URI).  ``behaviour``: :func:`answer`, :func:`busy`,
        :func:`reject`, :func:`noanswer`, :func:`answer_after`, :func:`unreachable`, a name
        (``"busy"``, ``"reject(603)"``) or a list of ``(action, seconds)`` steps; ``delay``
        shifts every step.  The number is also routable: ``call.route called=<user>`` that no
        script handles is routed to ``sip/<uri>`` (a regexroute stand-in).
        """
        b = _behaviour(behaviour)
        if delay:
            b = b.shifted(delay)
        ep = SimEndpoint(self, target, b, host, port)
        self.endpoints[ep.user] = ep
        if target.startswith("sip:"):
            self.endpoints[target] = ep
        return ep

    def _route(self, called: str, msg: SimMessage) -> Optional[str]:
        ep = self.endpoints.get(called)
        if ep is None:
            return None
        return "sip/" + ep.uri

    def _outbound(self, chan: SipChannel, uri: str, msg: SimMessage) -> RemoteParty:
        user = _parse_uri(uri)[0]
        ep = self.endpoints.get(uri) or self.endpoints.get("sip:" + uri.split("sip:", 1)[-1]) \
            or self.endpoints.get(user)
        leg = OutboundLeg(self, chan, ep, uri)
        if ep is not None:
            ep.legs.append(leg)
        leg.start(ep.behaviour if ep is not None else self.default_endpoint)
        return leg

    def _leg_ended(self, leg: SimLeg) -> None:
        self.ended_legs.append(leg)

    # -- engine-side helpers -------------------------------------------------------------------------
    def dispatch(self, name: str, params: Any = (), retvalue: str = "") -> Deferred:
        """Dispatch a message inside the engine (as a module would); fires ``(handled, msg)``."""
        pairs = list(params.items()) if isinstance(params, dict) else list(params)
        msg = SimMessage(name, pairs, retvalue, time=self.engine.now_sec())
        d: Deferred = Deferred()

        def go() -> None:
            self.engine.dispatch(msg).then(lambda ok: d.callback((ok, msg)))
        self.engine.run(go)
        return d

    def declare_media(self, path: str, seconds: Optional[float]) -> None:
        """Declare a prompt's duration (``None``: the file is missing)."""
        self.media.declare(path, seconds)

    # -- introspection -----------------------------------------------------------------------------
    @property
    def channels(self) -> Dict[str, Channel]:
        """Live channels by id (sip/N, dumb/N, conf/N, fork/N...)."""
        return dict(self.modules.all_channels)

    def channel(self, ident: str) -> Channel:
        return self.modules.all_channels[ident]

    def handlers(self, conn: Any = None) -> Dict[str, Dict[str, int]]:
        """Installed script handlers: ``{connection: {message: priority}}`` (or one conn's)."""
        if conn is not None:
            c = self.connection_of(conn) if isinstance(conn, Dispatcher) else conn
            if isinstance(c, RawConnection):
                c = c.conn
            return {c.name: c.ext.installed()}
        return {c.name: c.ext.installed() for c in self.connections if not c.ext.dead}

    def watches(self) -> Dict[str, List[str]]:
        return {c.name: list(c.ext.watched) for c in self.connections if not c.ext.dead}

    def pending(self) -> Dict[str, int]:
        """Messages each live connection still has to answer."""
        return {c.name: c.ext.pending for c in self.connections if not c.ext.dead}

    def leaks(self) -> Dict[str, Any]:
        """Everything still alive: channels, rooms, unanswered messages, SIP timers."""
        out: Dict[str, Any] = {}
        if self.modules.all_channels:
            out["channels"] = sorted(self.modules.all_channels)
        if self.modules.rooms:
            out["rooms"] = sorted(self.modules.rooms)
        pend = {k: v for k, v in self.pending().items() if v}
        if pend:
            out["pending"] = pend
        return out

    def hangup_all(self) -> None:
        """Drop every channel (engine shutdown)."""
        for chan in list(self.modules.all_channels.values()):
            if chan.alive:
                self.engine.run(chan.msg_drop, None, "shutdown")

    def close(self) -> None:
        """Close all connections and stop the engine timer (test teardown)."""
        for conn in list(self.connections):
            if not conn.closed:
                conn.close()
        self.modules.stop()
