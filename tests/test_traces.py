"""Transcripts from a real Yate 6.4.1 (``shared/traces``) as tests.

1. Codec: every ``<<`` line parses and re-encodes byte for byte; every ``>>`` line parses with
   ``script_side=True`` and re-encodes byte for byte, except the deliberately malformed ones
   (which raise ProtocolError) and the non-canonical ones listed in ``NON_CANONICAL``.
2. Replay (A0-A5): the ``<<`` side is fed to a Dispatcher whose app does what the recorded
   script did (same API calls at the same points, same handler behaviour), and the lines the
   dispatcher writes are compared with the recorded ``>>`` lines after normalising our message
   ids and the time field.  Intended differences are listed in ``DIFFERENCES``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import pytest
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from yaypm import protocol as P
from yaypm.dispatcher import Dispatcher, DisconnectedException, LineTooLongError, Message
from yaypm.protocol import ProtocolError, parse_line
from yaypm.testing.traces import (ENGINE, SCRIPT, TraceEntry, find_traces, load_trace,
                                  parse_trace)

TRACES = find_traces(__file__) or Path(__file__).parent / "no-traces"
pytestmark = pytest.mark.skipif(not (TRACES / "A0_connect.txt").exists(),
                                reason="shared/traces not found")
ALL = sorted(p.name for p in TRACES.glob("*.txt")) if TRACES.exists() else []

#: Script lines that parse but are not in canonical form: (trace, line) -> why.
NON_CANONICAL: Dict[Tuple[str, str], str] = {
    ("A2_install_watch", "%%>install:abc:test.e"):
        "non-numeric priority: Yate (strtol) and we read it as the default 100",
    ("A2_install_watch", "%%>debug:notanumber:text"):
        "non-numeric debug level: Yate and we read it as 10",
    ("A3_errors", "%%<message:nosuchid:true:test.x::"):
        "empty parameter segment ('::'), skipped by Yate and by us",
    ("A3_errors", "%%>setlocal:engine.version:\r"):
        "CR before LF: stripped by Yate and by us",
    ("A3_errors", "%%>message:x15:0:test.x::a=b\r"):
        "CR before LF: stripped by Yate and by us",
}

#: Script lines that must raise ProtocolError: every one of them got ``Error in`` from Yate
#: or was refused/misread (the lone '%', the unanswerable answer without a processed flag).
MALFORMED_MIN = 20


# --------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------

def test_loader_reads_directions_connections_comments_and_times():
    trace = parse_trace(b"+000.5 # connected to 127.0.0.1:5039\n"
                        b"+001.25 >> %%>install:90:x\n+002.0 <<2 %%<install:90:x:true\n"
                        b"+003 >> \n>> bytes \xc0\r\nplain table line\n")
    e = trace.entries
    assert (e[0].comment, e[0].time) == ("connected to 127.0.0.1:5039", 0.5)
    assert (e[1].direction, e[1].connection, e[1].line, e[1].time) == \
        (SCRIPT, 1, "%%>install:90:x", 1.25)
    assert (e[2].direction, e[2].connection) == (ENGINE, 2)
    assert e[4].raw() == b"bytes \xc0\r"
    assert e[5].comment == "plain table line"
    assert [x.line for x in trace.lines(connection=2)] == ["%%<install:90:x:true"]


def test_find_traces_looks_in_yaypm_shared_then_upwards(tmp_path, monkeypatch):
    monkeypatch.delenv("YAYPM_SHARED", raising=False)
    shared = tmp_path / "shared" / "traces"
    shared.mkdir(parents=True)
    deep = tmp_path / "main" / "tests" / "simulator"
    deep.mkdir(parents=True)
    assert find_traces(deep) is None                  # no A0_connect.txt yet
    (shared / "A0_connect.txt").write_text(">> %%>connect:global\n")
    assert find_traces(deep / "test_x.py") == shared
    other = tmp_path / "elsewhere"
    (other / "traces").mkdir(parents=True)
    (other / "traces" / "A0_connect.txt").write_text("")
    monkeypatch.setenv("YAYPM_SHARED", str(other))
    assert find_traces(deep) == other / "traces"


@pytest.mark.parametrize("name", [n for n in ALL if n.endswith(".timed.txt")])
def test_timed_and_untimed_transcripts_agree(name):
    timed = load_trace(TRACES / name)
    plain = load_trace(TRACES / name.replace(".timed.txt", ".txt"))
    assert [(e.direction, e.connection, e.line, e.comment) for e in timed.entries] == \
        [(e.direction, e.connection, e.line, e.comment) for e in plain.entries]
    times = [e.time for e in timed.entries]
    assert None not in times and times == sorted(times)


# --------------------------------------------------------------------------------------------
# 1. Codec against every recorded line
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in ALL if not n.endswith(".timed.txt")])
def test_every_engine_line_round_trips_byte_exactly(name):
    trace = load_trace(TRACES / name)
    for e in trace.lines(direction=ENGINE):
        rec = parse_line(e.line)
        assert rec.encode(engine_side=True).encode("utf-8", "surrogateescape") == e.raw(), \
            f"{name}:{e.lineno}"


@pytest.mark.parametrize("name", [n for n in ALL if not n.endswith(".timed.txt")])
def test_every_script_line_round_trips_or_is_refused(name):
    trace = load_trace(TRACES / name)
    malformed = 0
    for e in trace.lines(direction=SCRIPT):
        try:
            rec = parse_line(e.line, script_side=True)
        except ProtocolError as err:
            assert err.line == e.line.rstrip("\r")
            assert name.startswith(("A1", "A2", "A3")), f"{name}:{e.lineno}: {err}"
            malformed += 1
            continue
        out = rec.encode()
        if (trace.name, e.line) in NON_CANONICAL:
            assert out != e.line
            assert parse_line(out, script_side=True) == rec      # same meaning
        else:
            assert out.encode("utf-8", "surrogateescape") == e.raw(), f"{name}:{e.lineno}"
    if name.startswith("A3"):
        assert malformed >= MALFORMED_MIN


def test_malformed_script_lines_got_error_in_from_yate():
    """Every script line our codec refuses got ``Error in`` or no reply at all from Yate."""
    for name in ("A1_setlocal.txt", "A2_install_watch.txt", "A3_errors.txt"):
        entries = list(load_trace(TRACES / name).lines())
        for i, e in enumerate(entries):
            if e.direction != SCRIPT:
                continue
            try:
                parse_line(e.line, script_side=True)
            except ProtocolError:
                nxt = entries[i + 1] if i + 1 < len(entries) else None
                refused = nxt is None or nxt.direction == SCRIPT or \
                    nxt.line.startswith(("Error in: ", "%%<install:100::false")) or \
                    "%%>message:x6:" in e.line          # lone '%': Yate misreads memory
                assert refused, f"{name}:{e.lineno}: {e.line!r} -> {nxt.line!r}"


def test_non_canonical_list_is_not_stale():
    for (trace, line) in NON_CANONICAL:
        assert any(e.line == line for e in load_trace(TRACES / f"{trace}.txt").lines())


# --------------------------------------------------------------------------------------------
# 2. Replaying the protocol traces through a Dispatcher
# --------------------------------------------------------------------------------------------

#: Where our dispatcher intentionally writes something else than the recorded script.
DIFFERENCES = {
    "priority": "we always write the install priority (the recorded script left it empty "
                "for Yate's default 100)",
    "dedup": "a second install/watch of a name we hold is not sent (Yate would refuse it); "
             "the wait shares the first one",
    "time": "our messages carry an empty time field (Yate: now) instead of a timestamp",
    "too_long": "a line over bufsize-2 bytes raises LineTooLongError instead of making Yate "
                "close the connection",
    "connect_id": "the id and type fields of %%>connect (ignored by Yate 6.4.1) are not "
                  "written",
    "unexpressible": "the line is a deliberate protocol error the API cannot produce",
    "deadline": "an unanswered message is answered '%%<message:<id>:false:' at our deadline "
                "(0.9 x Yate's timeout) instead of being left to time out and answered late",
}


def _norm_time(line: str) -> str:
    """Blank the time field of a script's %%>message (we leave it empty: 'now')."""
    if line.startswith("%%>message:"):
        parts = line.split(":", 3)
        if len(parts) == 4:
            parts[2] = ""
            return ":".join(parts)
    return line


def probe(m: Message) -> None:
    """The recorded probe's handler (trace A2): answer, change, rename, decline."""
    if m.name == "test.mod":
        m["added"] = "yes"
        del m["remove_me"]
        m.ret(True, "changed retval")
    elif m.name == "test.ren":
        m.name = "test.renamed"
        m.ret(True, "renamed by handler")
    elif m.name == "test.unh":
        m["touched"] = "yes"
        m.ret(False, "retval from unhandled")
    else:
        m.ret(True, "handled by probe")


def hold(m: Message) -> None:
    """A handler that never answers (traces A4, A5)."""


class Replay:
    """Drive one connection of a transcript through a real Dispatcher on a Clock."""

    def __init__(self, entries: List[TraceEntry], handler: Callable[[Message], None],
                 connection: int = 1) -> None:
        self.entries = [e for e in entries if e.direction and e.connection == connection]
        self.handler = handler
        self.clock = Clock()
        first = self.entries[0] if self.entries else None
        role = None
        if first is not None and first.direction == SCRIPT and \
                first.line.startswith("%%>connect:"):
            role = parse_line(first.line, script_side=True).role
        self.dispatcher = Dispatcher(self.clock, role=role)
        self.written: List[str] = []
        self.expected: List[str] = []
        self.ids: Dict[str, str] = {}          # trace id -> our id
        self.skip_replies: List[Tuple[type, str]] = []
        self.differences: List[Tuple[str, str]] = []
        self.results: List[object] = []
        self.engine_ids: set = set()
        self.closed = False
        self.dispatcher.attach(self.written.append)
        if role is not None:
            self.expected.append(P.Connect(role).encode())
            if first.line != self.expected[-1]:
                self.differences.append(("connect_id", first.line))
            self.entries = self.entries[1:]

    def run(self, time_limit: Optional[float] = None) -> "Replay":
        for e in self.entries:
            if e.time is not None and e.time > self.clock.seconds():
                self.clock.advance(e.time - self.clock.seconds())
            if e.direction == SCRIPT:
                self._script(e)
            else:
                self._engine(e)
        return self

    # the app: do what the recorded script did, through the dispatcher's API
    def _script(self, e: TraceEntry) -> None:
        try:
            rec = parse_line(e.line, script_side=True)
        except ProtocolError:
            return                               # deliberately malformed: Yate said Error in
        d = self.dispatcher
        before = len(self.written)
        expected = rec.encode()                  # canonical form (see NON_CANONICAL)
        kind = type(rec)
        try:
            if kind is P.Install:
                if not rec.name:
                    self.differences.append(("unexpressible", e.line))
                    self.skip_replies.append((P.InstallReply, ""))
                    return
                filt = (rec.filter_name, rec.filter_value) if rec.filter_name else None
                d.handler(rec.name, self.handler, rec.priority, filt)
                if rec.priority is None:
                    self.differences.append(("priority", e.line))
                    expected = P.Install(100, rec.name, rec.filter_name,
                                         rec.filter_value).encode()
            elif kind is P.Uninstall:
                self._keep(d.uninstall(rec.name))
            elif kind is P.Watch:
                self._keep(d.watch(rec.name))
            elif kind is P.Unwatch:
                self._keep(d.unwatch(rec.name))
            elif kind is P.SetLocal:
                self._keep(d.setlocal(rec.name, rec.value))
            elif kind is P.Output:
                d.output(rec.text)
            elif kind is P.Debug:
                d.debug(rec.level, rec.text)
            elif kind is P.Quit:
                d.quit()
            elif kind is P.Message:
                if any(v is None for _, v in rec.params):
                    self.differences.append(("unexpressible", e.line))
                    return
                m = d.msg(rec.name, rec.params, rec.retvalue)
                if rec.id == "":
                    m.enqueue()
                else:
                    self._keep(m.dispatch())
                    last = self.results[-1] if self.results else None
                    if isinstance(last, Failure) and last.check(LineTooLongError):
                        self.results.pop()
                        self.differences.append(("too_long", e.line[:40]))
                        return
                    self.ids[rec.id] = m.id
                expected = _norm_time(expected)
                self.differences.append(("time", e.line))
            elif kind is P.MessageAnswer:
                # answers are written by the handler when the message comes in
                if rec.id not in self.engine_ids:
                    self.differences.append(("unexpressible", e.line))
                else:
                    self.expected.append(expected)
                return
            elif kind is P.Connect:
                self.differences.append(("unexpressible", e.line))   # only as first line
                return
            else:
                raise AssertionError(f"no API call for {e.line!r}")
        except LineTooLongError:
            self.differences.append(("too_long", e.line[:40]))
            return
        if len(self.written) == before and kind in (P.Install, P.Watch):
            self.differences.append(("dedup", e.line))
            self.skip_replies.append((P.InstallReply if kind is P.Install else P.WatchReply,
                                      rec.name))
            return
        self.expected.append(expected)

    def _keep(self, d) -> None:
        d.addBoth(self.results.append)

    def _engine(self, e: TraceEntry) -> None:
        line = e.line
        rec = parse_line(line)
        for kind, name in list(self.skip_replies):
            if type(rec) is kind and rec.name == name:
                self.skip_replies.remove((kind, name))
                return
        if type(rec) is P.Message:
            self.engine_ids.add(rec.id)
        if type(rec) is P.MessageAnswer and rec.id:
            ours = self.ids.get(rec.id)
            if ours is not None:
                line = "%%<message:" + P.escape(ours) + line[len("%%<message:")
                                                               + len(P.escape(rec.id)):]
        self.dispatcher.line_received(line)

    def written_normalised(self) -> List[str]:
        back = {ours: theirs for theirs, ours in self.ids.items()}
        out = []
        for line in self.written:
            if line.startswith("%%>message:"):
                ident = line.split(":", 2)[1]
                if ident in back:
                    line = "%%>message:" + back[ident] + line[11 + len(ident):]
                line = _norm_time(line)
            out.append(line)
        return out


def _replay(name: str, handler, session: Optional[int] = None, connection: int = 1,
            timed: bool = True) -> List[Replay]:
    trace = load_trace(TRACES / (name + (".timed.txt" if timed else ".txt")))
    sessions = trace.sessions()
    if session is not None:
        sessions = [sessions[session]]
    out = []
    with capturedLogs():
        for s in sessions:
            out.append(Replay(s, handler, connection).run())
    return out


def test_replay_A0_connect():
    sessions = _replay("A0_connect", probe)
    assert len(sessions) == 6
    for r in sessions:
        assert r.written_normalised() == r.expected
    first = sessions[0]
    assert first.written[0] == "%%>connect:global"
    assert first.results == ["6.4.1"]
    channel = sessions[4]                  # channel role without a channel: id refused
    assert [type(x).__name__ if not isinstance(x, str) else x for x in channel.results] == \
        ["Failure", "Failure", "6.4.1"]
    assert sessions[5].written[-1] == "%%>quit"


def test_replay_A1_setlocal():
    [r] = _replay("A1_setlocal", probe)
    assert r.written_normalised() == r.expected
    assert len(r.expected) == 69
    values = [x for x in r.results if isinstance(x, str)]
    assert "acceptance" in values and "6.4.1" in values
    assert r.dispatcher.bufsize == 65536          # followed Yate's clamped replies
    assert r.dispatcher.pending_count() == 0


def test_replay_A2_install_watch():
    [r] = _replay("A2_install_watch", probe)
    assert r.written_normalised() == r.expected
    kinds = {k for k, _ in r.differences}
    assert kinds <= set(DIFFERENCES)
    assert ("dedup", "%%>install:40:test.a") in r.differences
    assert ("dedup", "%%>watch:test.w") in r.differences
    assert ("priority", "%%>install::test.b") in r.differences
    assert r.dispatcher.pending_count() == 0
    assert r.clock.getDelayedCalls() == []
    assert r.results.count(True) >= 10           # dispatches processed by the probe


def test_replay_A2_answers_are_what_the_probe_wrote():
    """The answers alone, literally, as recorded (they carry Yate's ids unchanged)."""
    [r] = _replay("A2_install_watch", probe)
    answers = [x for x in r.written if x.startswith("%%<message:")]
    recorded = [e.line for e in load_trace(TRACES / "A2_install_watch.txt").lines(SCRIPT)
                if e.line.startswith("%%<message:")]
    assert answers == recorded


def test_replay_A3_errors():
    sessions = _replay("A3_errors", probe)
    assert len(sessions) == 2
    for r in sessions:
        assert r.written_normalised() == r.expected
    first, second = sessions
    assert any(k == "too_long" and line.startswith("%%>message:long1:")
               for k, line in first.differences)
    assert any(line.startswith("%%>message:long2:") for line in second.written_normalised())
    assert second.dispatcher.bufsize == 16384
    assert first.dispatcher.pending_count() == 0


def test_replay_A4_timeout_answers_before_yate_gives_up():
    trace = load_trace(TRACES / "A4_timeout.timed.txt")
    with capturedLogs():
        r = Replay(list(trace.entries), hold).run()
    out = r.written_normalised()
    engine_ids = [e.line.split(":")[1] for e in trace.lines(ENGINE, 1)
                  if e.line.startswith("%%>message:")]
    # every message Yate handed us was answered exactly once, by the deadline
    assert len(engine_ids) == 4
    for ident in engine_ids[:2]:       # Yate's timeout 1000 ms: answered at 0.9 s
        assert out.count(f"%%<message:{ident}:false:") == 1
    # timeout 0 (Yate waits forever): our configured 9 s deadline applies, the trace ends first
    # ... and the recorded late answer ("too late") is exactly what we do not write
    assert not any("too late" in line for line in out)
    assert r.dispatcher.answer_deadline == pytest.approx(0.9)
    # still pending: the last two messages (inside their deadlines) and our p4 dispatch,
    # until Yate's timebomb closes the connection
    assert r.dispatcher.pending_count() == 3
    r.dispatcher.detach(DisconnectedException("connection closed by Yate"))
    assert r.dispatcher.pending_count() == 0
    assert r.clock.getDelayedCalls() == []
    assert out.count(f"%%<message:{engine_ids[2]}:false:") == 0


def test_replay_A4_second_connection():
    [r] = _replay("A4_timeout", probe, connection=2)
    assert r.written_normalised() == [
        "%%>install:90:test.slow",
        "%%<message:0x7f0abc0d5c60.1205320330:true:test.slow:handled by probe"]


def test_replay_A5_disconnect_pending():
    trace = load_trace(TRACES / "A5_disconnect_pending.timed.txt")
    with capturedLogs():
        holder = Replay(list(trace.entries), hold, connection=1).run()
        sender = Replay(list(trace.entries), hold, connection=2).run()
    assert holder.written == ["%%>install:50:test.hold"]
    assert holder.dispatcher.pending_count() == 1        # the held message
    holder.dispatcher.detach(DisconnectedException("closing connection 1"))
    assert holder.dispatcher.pending_count() == 0
    assert holder.clock.getDelayedCalls() == []
    assert sender.written_normalised() == sender.expected
    assert sender.results == [False, False]               # released unhandled, then no handler
