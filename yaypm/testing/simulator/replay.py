"""Replay a recorded Yate transcript against a target and compare what comes back.

A transcript (``traces/*.timed.txt``, read with :mod:`yaypm.testing.traces`) becomes a
:class:`Scenario`: timed script lines (``>>``), expected engine lines (``<<``), connection
openings and closings, and SIP events taken from its ``#`` comments — a caller's INVITE, INFO
(DTMF), BYE; a callee's 183/180/200/486 answers, turned into a scripted endpoint.  :func:`replay`
drives any :class:`Target` with it — :class:`SimTarget` wraps the simulator; a real engine
with sipp can implement the same five methods — and compares the engine's lines with the
recorded ones, per connection, in order.

Comparison (:class:`LineMatcher`): lines are split into literal text and *tokens* — Yate's
message ids (``0x….n``), channel ids (``sip/N``, ``dumb/N``, ``conf/N``, ``fork/N``,
``yrtp/N``), billids (``runid-N``), SIP call ids — which must map one-to-one between the
recording and the replay for the whole transcript (``dumb/3`` in the trace is always the same
simulator channel); times, ``rtp_stats`` and run ids match any value.  Script lines are
rewritten through the same mapping before they are sent, so a recorded answer to
``0x7f0a….1638`` answers the simulator's own id.  Engine lines may arrive out of order within a
small window: Yate dispatches enqueued messages (``chan.startup``, ``chan.connected``,
``chan.hangup``…) on several worker threads, so their relative order is not fixed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from yaypm.testing.traces import Trace

__all__ = ["LineMatcher", "Scenario", "Event", "Target", "SimTarget", "replay",
           "scenario_from_trace", "ReplayError"]


class ReplayError(AssertionError):
    """The target's lines differ from the recording (the message says where)."""


# ------------------------------------------------------------------------------------------------
# Tokens
# ------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"(?P<callid>(?<=callid=)[^:]*)"
    r"|(?P<msgid>0x[0-9a-f]+\.\d+)"
    r"|(?P<chan>\b(?:sip|dumb|conf|fork|yrtp|tone|wave)/\d+(?:/\d+)?)"
    r"|(?P<billid>\b\d{9,11}-\d+\b)"
    r"|(?P<rtpstats>(?<=rtp_stats=)PS=\d+,OS=\d+,PR=\d+,OR=\d+,PL=\d+)"
    r"|(?P<time>(?<=:time=)\d+|(?<=runid:)\d+)"
)

#: Token classes that match any value (no binding).
_WILD = frozenset(("rtpstats", "time"))


def _scan(text: str, out: List[Tuple[str, str]]) -> None:
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() > pos:
            out.append(("", text[pos:m.start()]))
        out.append((m.lastgroup or "", m.group(0)))
        pos = m.end()
    if pos < len(text):
        out.append(("", text[pos:]))


def tokenize(line: str) -> List[Tuple[str, str]]:
    """``[(kind, text)]``: kind ``""`` for literal text, else a token class.

    The time field of a ``%%>message`` line is a wildcard token.
    """
    out: List[Tuple[str, str]] = []
    if line.startswith("%%>message:"):
        parts = line.split(":", 3)
        if len(parts) == 4:
            out.append(("", "%%>message:"))
            _scan(parts[1], out)
            out.append(("", ":"))
            out.append(("time", parts[2]))
            out.append(("", ":"))
            _scan(parts[3], out)
        else:
            _scan(line, out)
    else:
        _scan(line, out)
    merged: List[Tuple[str, str]] = []
    for kind, text in out:
        if kind == "" and merged and merged[-1][0] == "":
            merged[-1] = ("", merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


class LineMatcher:
    """A one-to-one mapping between recorded and replayed tokens, built as lines match."""

    def __init__(self) -> None:
        self.forward: Dict[Tuple[str, str], str] = {}      # (kind, trace value) -> target value
        self.backward: Dict[Tuple[str, str], str] = {}

    def match(self, expected: str, actual: str) -> Optional[Dict[Tuple[str, str], str]]:
        """The new bindings that make ``actual`` equal ``expected``, or None if it cannot."""
        e = tokenize(expected)
        a = tokenize(actual)
        if len(e) != len(a):
            return None
        new: Dict[Tuple[str, str], str] = {}
        newb: Dict[Tuple[str, str], str] = {}
        for (ek, ev), (ak, av) in zip(e, a):
            if ek != ak:
                return None
            if ek == "":
                if ev != av:
                    return None
                continue
            if ek in _WILD:
                continue
            key = (ek, ev)
            bound = self.forward.get(key, new.get(key))
            if bound is not None:
                if bound != av:
                    return None
                continue
            back = self.backward.get((ek, av), newb.get((ek, av)))
            if back is not None and back != ev:
                return None
            new[key] = av
            newb[(ek, av)] = ev
        return new

    def commit(self, bindings: Dict[Tuple[str, str], str]) -> None:
        for (kind, ev), av in bindings.items():
            self.forward[(kind, ev)] = av
            self.backward[(kind, av)] = ev

    def rewrite(self, line: str) -> str:
        """A recorded script line with recorded tokens replaced by the target's."""
        out = []
        for kind, text in tokenize(line):
            if kind and kind not in _WILD:
                out.append(self.forward.get((kind, text), text))
            else:
                out.append(text)
        return "".join(out)


# ------------------------------------------------------------------------------------------------
# Scenarios
# ------------------------------------------------------------------------------------------------

@dataclass
class Event:
    """One step of a scenario at ``time`` seconds."""
    time: float
    kind: str                 # send, expect, open, close, closed_by_engine, call, dtmf,
                              # hangup, sip_response
    conn: int = 1
    line: str = ""
    args: Dict[str, Any] = field(default_factory=dict)
    lineno: int = 0


@dataclass
class Scenario:
    """What to do and what to expect, independent of the target."""
    name: str
    events: List[Event]
    endpoints: Dict[str, List[Tuple[str, float]]] = field(default_factory=dict)


_INVITE = re.compile(r"sip (uac\d*) -> INVITE sip:([^@\s]+)@")
_UAC_EVENT = re.compile(r"sip (uac\d*) -> (INFO|BYE|CANCEL) ")
_UAC_RESPONSE = re.compile(r"sip (uac\d*) <- SIP/2\.0 (\d{3}) ")
_UAS_INVITE = re.compile(r"sip uas <- INVITE sip:([^@\s]+)@")
_UAS_RESPONSE = re.compile(r"sip uas -> SIP/2\.0 (\d{3}) ")
_UAS_END = re.compile(r"sip uas <- (CANCEL|BYE) ")
_UAC_BYE_IN = re.compile(r"sip (uac\d*) <- BYE ")
_CONNECTED = re.compile(r"connected to [\d.]+:(\d+)(?: as connection (\d+))?")
_CLOSING = re.compile(r"closing connection(?: (\d+))?\Z")
_CLOSED = re.compile(r"connection closed by Yate")


def scenario_from_trace(trace: Trace, *, role_for_port: Optional[Dict[int, Optional[str]]] = None,
                        dtmf: Optional[Dict[str, List[str]]] = None,
                        call_params: Optional[Dict[str, Any]] = None,
                        extra: Sequence[Event] = (),
                        substitute: Optional[Callable[[str], str]] = None) -> Scenario:
    """Turn a timed transcript into a :class:`Scenario`.

    ``role_for_port``: listener role per port (default 5039 global, 5040 none).  ``dtmf``: the
    digits each caller sends by INFO, in order (sipp scenarios carry them, the comments do
    not).  ``call_params``: keyword arguments for ``place_call``.  ``extra``: events the
    comments do not show (RFC 2833 digits).  ``substitute``: applied to every line (paths).
    """
    roles = role_for_port or {5039: "global", 5040: None}
    sub = substitute or (lambda s: s)
    digits = {k: list(v) for k, v in (dtmf or {}).items()}
    events: List[Event] = []
    endpoints: Dict[str, List[Tuple[str, float]]] = {}
    uas_user: Optional[str] = None
    uas_t0 = 0.0
    uas_done = True
    uas_ended = True
    last_t = 0.0
    for e in trace.entries:
        t = e.time if e.time is not None else last_t
        last_t = t
        if e.direction == ">>":
            events.append(Event(t, "send", e.connection, sub(e.line or ""), lineno=e.lineno))
            continue
        if e.direction == "<<":
            events.append(Event(t, "expect", e.connection, sub(e.line or ""), lineno=e.lineno))
            continue
        c = (e.comment or "").strip()
        m = _CONNECTED.match(c)
        if m:
            port = int(m.group(1))
            events.append(Event(t, "open", int(m.group(2) or 1),
                                args={"role": roles.get(port, "global")}, lineno=e.lineno))
            continue
        m = _CLOSING.match(c)
        if m:
            events.append(Event(t, "close", int(m.group(1) or 1), lineno=e.lineno))
            continue
        if _CLOSED.match(c):
            events.append(Event(t, "closed_by_engine", 1, lineno=e.lineno))
            continue
        m = _INVITE.match(c)
        if m:
            args = dict(call_params or {})
            args["called"] = m.group(2)
            events.append(Event(t, "call", 1, args={"uac": m.group(1), **args},
                                lineno=e.lineno))
            continue
        m = _UAC_EVENT.match(c)
        if m:
            uac, what = m.group(1), m.group(2)
            if what == "INFO":
                ds = digits.get(uac) or []
                if not ds:
                    raise ValueError(f"{trace.name}:{e.lineno}: {uac} sends INFO but no DTMF "
                                     f"digits were given for it (dtmf={{{uac!r}: [...]}})")
                events.append(Event(t, "dtmf", 1, args={"uac": uac, "digits": ds.pop(0),
                                                        "method": "info"}, lineno=e.lineno))
            else:
                events.append(Event(t, "hangup", 1, args={"uac": uac}, lineno=e.lineno))
            continue
        m = _UAC_RESPONSE.match(c)
        if m:
            events.append(Event(t, "sip_response", 1,
                                args={"uac": m.group(1), "code": int(m.group(2))},
                                lineno=e.lineno))
            continue
        m = _UAS_INVITE.match(c)
        if m:
            uas_user = m.group(1)
            uas_t0 = t
            uas_done = False
            uas_ended = False
            endpoints.setdefault(uas_user, [])
            continue
        m = _UAS_RESPONSE.match(c)
        if m and uas_user is not None and not uas_done:
            code = int(m.group(1))
            action = {180: "ring", 183: "progress", 200: "answer"}.get(code)
            if code >= 300:
                action = f"reject:{code}"
            if action is not None:
                endpoints[uas_user].append((action, round(t - uas_t0, 6)))
            if code >= 200:
                uas_done = True
            continue
        m = _UAS_END.match(c)
        if m:
            if uas_user is not None and not uas_ended:
                events.append(Event(t, "callee_got", 1, args={"user": uas_user,
                                                               "what": m.group(1)},
                                    lineno=e.lineno))
                uas_ended = True
            uas_done = True
            continue
        m = _UAC_BYE_IN.match(c)
        if m:
            events.append(Event(t, "caller_got_bye", 1, args={"uac": m.group(1)},
                                lineno=e.lineno))
    events.extend(extra)
    events.sort(key=lambda ev: ev.time)
    return Scenario(trace.name, events, endpoints)


# ------------------------------------------------------------------------------------------------
# Targets
# ------------------------------------------------------------------------------------------------

class Target:
    """What a replay needs from an engine (simulated or real)."""

    def open(self, role: Optional[str]) -> Any:
        """A raw connection: ``send(line)``, ``lines`` (received so far), ``close()``,
        ``closed``."""
        raise NotImplementedError

    def place_call(self, called: str, **kwargs: Any) -> Any:
        """An incoming SIP call: ``send_dtmf(digits, method=...)``, ``hangup()``,
        ``sip_status``, ``provisional``."""
        raise NotImplementedError

    def endpoint(self, user: str, steps: List[Tuple[str, float]]) -> None:
        """A callee answering INVITEs to ``user`` with timed steps."""
        raise NotImplementedError

    def advance_to(self, t: float) -> None:
        """Let time pass until ``t`` seconds since the start."""
        raise NotImplementedError

    def callee_legs(self, user: str) -> List[Any]:
        """The calls a scripted callee received: ``cancelled``, ``bye_received``."""
        raise NotImplementedError

    def now(self) -> float:
        raise NotImplementedError


class SimTarget(Target):
    """The simulator as a replay target (``task.Clock`` time)."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim

    def open(self, role: Optional[str]) -> Any:
        return self.sim.connect_raw(role)

    def place_call(self, called: str, **kwargs: Any) -> Any:
        return self.sim.place_call(called, **kwargs)

    def endpoint(self, user: str, steps: List[Tuple[str, float]]) -> None:
        self.sim.endpoint(user, steps)

    def callee_legs(self, user: str) -> List[Any]:
        ep = self.sim.endpoints.get(user)
        return list(ep.legs) if ep is not None else []

    def advance_to(self, t: float) -> None:
        now = self.sim.clock.seconds()
        if t > now:
            self.sim.advance(t - now)

    def now(self) -> float:
        return self.sim.clock.seconds()


# ------------------------------------------------------------------------------------------------
# The replay
# ------------------------------------------------------------------------------------------------

class _Conn:
    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.expected: List[Event] = []        # not matched yet, in order
        self.used = 0                          # actual lines consumed (matched prefix)
        self.matched: set = set()              # indexes of actual lines matched


@dataclass
class ReplayResult:
    matched: int
    calls: Dict[str, Any]
    matcher: LineMatcher


def replay(target: Target, scenario: Scenario, *, window: int = 8, patience: float = 3.0,
           normalise: Optional[Callable[[str], str]] = None) -> ReplayResult:
    """Drive ``target`` with ``scenario``; ReplayError on the first difference.

    ``window``: how far ahead (in lines of one connection) an engine line may be matched out
    of order.  ``patience``: how many seconds beyond the recorded time the target may take to
    produce a line the next script line depends on.  ``normalise(line)`` is applied to both
    the recorded and the replayed engine lines before comparison.
    """
    norm = normalise or (lambda s: s)
    matcher = LineMatcher()
    conns: Dict[int, _Conn] = {}
    history: List[_Conn] = []
    calls: Dict[str, Any] = {}
    total = 0
    for user, steps in scenario.endpoints.items():
        target.endpoint(user, steps)

    def try_match(conn: _Conn) -> None:
        nonlocal total
        while conn.expected:
            ev = conn.expected[0]
            lines = conn.raw.lines
            found = None
            limit = min(len(lines), conn.used + window)
            i = conn.used
            while i < limit:
                if i not in conn.matched:
                    b = matcher.match(norm(ev.line), norm(lines[i]))
                    if b is not None:
                        found = (i, b)
                        break
                i += 1
            if found is None:
                if len(lines) >= conn.used + window:
                    raise ReplayError(_explain(scenario, ev, conn, matcher, norm))
                return
            i, b = found
            matcher.commit(b)
            conn.matched.add(i)
            conn.expected.pop(0)
            total += 1
            while conn.used in conn.matched:
                conn.used += 1

    def settle(conn: _Conn, deadline: float) -> None:
        """Wait (in target time) until every expected line so far has arrived."""
        try_match(conn)
        step = 0.01
        while conn.expected and target.now() < deadline:
            target.advance_to(min(target.now() + step, deadline))
            try_match(conn)
        if conn.expected:
            raise ReplayError("missing line (nothing matching arrived in time):\n"
                              + _explain(scenario, conn.expected[0], conn, matcher, norm))

    for ev in scenario.events:
        target.advance_to(ev.time)
        if ev.kind == "open":
            old = conns.get(ev.conn)
            if old is not None:
                settle(old, ev.time + patience)
                if not old.raw.closed:
                    old.raw.close()
            conns[ev.conn] = _Conn(target.open(ev.args.get("role")))
            history.append(conns[ev.conn])
        elif ev.kind == "expect":
            conn = conns[ev.conn]
            conn.expected.append(ev)
            try_match(conn)
        elif ev.kind == "send":
            conn = conns[ev.conn]
            for c in conns.values():
                settle(c, ev.time + patience)
            conn.raw.send(matcher.rewrite(ev.line))
        elif ev.kind == "close":
            conn = conns.get(ev.conn)
            if conn is not None:
                settle(conn, ev.time + patience)
                conn.raw.close()
        elif ev.kind == "closed_by_engine":
            conn = conns[ev.conn]
            settle(conn, ev.time + patience)
            deadline = ev.time + patience
            while not conn.raw.closed and target.now() < deadline:
                target.advance_to(target.now() + 0.05)
            if not conn.raw.closed:
                raise ReplayError(f"{scenario.name}:{ev.lineno}: the engine should have closed "
                                  f"the connection")
        elif ev.kind == "call":
            args = dict(ev.args)
            uac = args.pop("uac")
            calls[uac] = target.place_call(args.pop("called"), **args)
        elif ev.kind == "dtmf":
            for c in conns.values():
                try_match(c)
            calls[ev.args["uac"]].send_dtmf(ev.args["digits"], method=ev.args["method"])
        elif ev.kind == "hangup":
            calls[ev.args["uac"]].hangup()
        elif ev.kind in ("callee_got", "caller_got_bye"):
            _wait_sip(target, scenario, ev, calls, ev.time + patience)
        elif ev.kind == "sip_response":
            call = calls.get(ev.args["uac"])
            code = ev.args["code"]
            if call is not None and code >= 180:
                _check_sip(scenario, ev, call, code)
    end = (scenario.events[-1].time if scenario.events else 0.0) + patience
    for conn in history:
        settle(conn, end)
        extra = [line for i, line in enumerate(conn.raw.lines)
                 if i not in conn.matched and i >= 0]
        if extra:
            raise ReplayError(f"{scenario.name}: unexpected engine line(s):\n  "
                              + "\n  ".join(extra[:5]))
    return ReplayResult(total, calls, matcher)


def _wait_sip(target: Target, scenario: Scenario, ev: Event, calls: Dict[str, Any],
              deadline: float) -> None:
    """A callee got CANCEL/BYE, or a caller got BYE, by ``deadline``."""
    def done() -> bool:
        if ev.kind == "caller_got_bye":
            call = calls.get(ev.args["uac"])
            return call is not None and call.ended and call.sip_status == 200
        legs = target.callee_legs(ev.args["user"])
        if not legs:
            return False
        leg = legs[-1]
        return leg.cancelled if ev.args["what"] == "CANCEL" else leg.bye_received
    while not done() and target.now() < deadline:
        target.advance_to(target.now() + 0.01)
    if not done():
        what = "BYE" if ev.kind == "caller_got_bye" else ev.args["what"]
        raise ReplayError(f"{scenario.name}:{ev.lineno}: the SIP side should have received "
                          f"{what}")


def _check_sip(scenario: Scenario, ev: Event, call: Any, code: int) -> None:
    if code == 200:
        ok = call.sip_status == 200 or 200 in getattr(call, "provisional", ())
    elif code < 200:
        ok = code in call.provisional
    else:
        ok = call.sip_status == code
    if not ok:
        raise ReplayError(f"{scenario.name}:{ev.lineno}: the caller should have received "
                          f"{code}; it has provisional {call.provisional}, final "
                          f"{call.sip_status}")


def _explain(scenario: Scenario, ev: Event, conn: _Conn, matcher: LineMatcher,
             norm: Callable[[str], str]) -> str:
    lines = conn.raw.lines
    near = [f"  [{i}] {lines[i]}" for i in range(conn.used, min(len(lines), conn.used + 8))
            if i not in conn.matched]
    best = ""
    exp_tokens = tokenize(norm(ev.line))
    for i in range(conn.used, min(len(lines), conn.used + 8)):
        if i in conn.matched:
            continue
        act = tokenize(norm(lines[i]))
        if len(act) == len(exp_tokens):
            diffs = [(x, y) for x, y in zip(exp_tokens, act) if x[0] == "" and x != y]
            if diffs:
                best = f"\n  first literal difference vs [{i}]: {diffs[0][0][1]!r} != " \
                       f"{diffs[0][1][1]!r}"
                break
    return (f"{scenario.name}:{ev.lineno} (t={ev.time:.3f}) expected on connection "
            f"{ev.conn}:\n  {ev.line}\nnext unmatched engine lines:\n"
            + ("\n".join(near) or "  (none)") + best)
