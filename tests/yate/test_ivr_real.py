"""yaypm.ivr on the real engine: apps run by a yaypm Dispatcher over extmodule TCP, sipp calls.

Every test routes (or dials) with the IVR layer as an application would, then checks both
sides: what sipp saw (final status, BYE/CANCEL, RTP) and the protocol lines that crossed the
connection (the TCP connector, recording each line it reads and writes).  Prompts are the
shipped ``yaypm/prompts`` files; recordings land in the test's folder.  Each test ends with
nothing left behind: no live leg in the switchboard, no pending operation or message.

sipp callers: ``uac_ivr_listen`` (silent, run with ``-rtp_echo``), ``uac_dtmf`` (INFO ``5``
``#``, RFC 2833 ``1``), ``uac_ivr_bargein``, ``uac_ivr_record``, ``uac_ivr_info`` (expects
a SIP INFO), ``uac_wait_bye``,
``uac_hangup`` (BYE 0.5 s after the answer); callees ``uas_answer`` / ``uas_busy`` /
``uas_noanswer`` (tests/sipp/).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Callable, List, Optional, Tuple

import pytest
import pytest_twisted
from twisted.internet import defer, threads
from twisted.internet.protocol import ClientFactory

from yaypm.connectors import ExtModuleLineProtocol
from yaypm.ivr import (BusyError, CallEnded, DialError, Leg, NoAnswerError, dial, originate, route,
                       switchboard)
from yaypm.prompts import prompt

pytestmark = pytest.mark.yate

EVENT = 10.0
MENU = prompt("menu")          # 5.3 s
WELCOME = prompt("welcome")    # 1.0 s
ONE = prompt("one")            # 0.4 s


def within(d: defer.Deferred, seconds: float = EVENT) -> defer.Deferred:
    from twisted.internet import reactor
    return d.addTimeout(seconds, reactor)


def pause(seconds: float) -> defer.Deferred:
    from twisted.internet import reactor, task
    return task.deferLater(reactor, seconds, lambda: None)


async def eventually(check: Callable[[], Any], what: str, timeout: float = 5.0) -> None:
    """Poll ``check`` (true or no AssertionError) until it holds; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check() is not False:
                return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pause(0.05)


def sip_outcome(agent) -> defer.Deferred:
    return threads.deferToThread(agent.wait, EVENT + 20)


# ------------------------------------------------------------------------------------------
# The connection: the real TCP connector, recording the lines
# ------------------------------------------------------------------------------------------

class RecordingProtocol(ExtModuleLineProtocol):
    """yaypm's TCP protocol, keeping every line: ``(">>", line)`` sent, ``("<<", line)`` read."""

    def __init__(self, wire: "Wire", start: Callable[..., Any]) -> None:
        super().__init__(start)
        self.wire = wire

    def lineReceived(self, line: bytes) -> None:
        self.wire.lines.append(("<<", line.decode("utf-8", "surrogateescape")))
        super().lineReceived(line)

    def _write(self, text: str) -> None:
        self.wire.lines.append((">>", text))
        super()._write(text)

    def connectionLost(self, reason: Any = None) -> None:
        super().connectionLost(reason)
        self.wire.closed.callback(None)


class Wire:
    """The lines of one connection, searched in order."""

    def __init__(self) -> None:
        self.lines: List[Tuple[str, str]] = []
        self.closed: defer.Deferred = defer.Deferred()

    def all(self, direction: str, pattern: str) -> List[re.Match]:
        rx = re.compile(pattern)
        return [m for d, line in self.lines if d == direction for m in [rx.search(line)] if m]

    def one(self, direction: str, pattern: str) -> re.Match:
        found = self.all(direction, pattern)
        assert len(found) == 1, f"{len(found)} lines {direction} {pattern!r}:\n{self.dump()}"
        return found[0]

    def index(self, direction: str, pattern: str) -> int:
        rx = re.compile(pattern)
        for i, (d, line) in enumerate(self.lines):
            if d == direction and rx.search(line):
                return i
        raise AssertionError(f"no line {direction} {pattern!r}:\n{self.dump()}")

    def in_order(self, *steps: Tuple[str, str]) -> None:
        """Each (direction, pattern) matches a line after the previous step's line."""
        pos = 0
        for direction, pattern in steps:
            rx = re.compile(pattern)
            for i in range(pos, len(self.lines)):
                d, line = self.lines[i]
                if d == direction and rx.search(line):
                    pos = i + 1
                    break
            else:
                raise AssertionError(f"no line {direction} {pattern!r} after line {pos}:\n"
                                     f"{self.dump()}")

    def dump(self) -> str:
        return "\n".join(f"{d} {line[:220]}" for d, line in self.lines[-80:])


class AppRun:
    """One call an app handled: ``leg`` fires with the Leg, ``done`` with the app's outcome."""

    def __init__(self) -> None:
        self.leg: defer.Deferred = defer.Deferred()
        self.done: defer.Deferred = defer.Deferred()


class IVR:
    """A Dispatcher connected to the engine's global listener, with the IVR layer on it."""

    def __init__(self) -> None:
        self.wire = Wire()
        self.dispatcher: Any = None
        self.protocol: Optional[RecordingProtocol] = None

    async def open(self, port: int) -> "IVR":
        from twisted.internet import reactor
        ready: defer.Deferred = defer.Deferred()

        def build() -> RecordingProtocol:
            self.protocol = RecordingProtocol(self.wire, ready.callback)
            return self.protocol
        factory = ClientFactory.forProtocol(build)
        factory.noisy = False
        self.connector = reactor.connectTCP("127.0.0.1", port, factory)
        self.dispatcher = await within(ready)
        self.board = switchboard(self.dispatcher)
        return self

    def route(self, number: str, app: Callable[[Leg], Any]) -> AppRun:
        """Route ``number`` to ``app``; the run's ``done`` fires with what the app returned
        (or its failure)."""
        run = AppRun()

        async def wrapped(leg: Leg) -> Any:
            run.leg.callback(leg)
            try:
                result = await app(leg)
            except BaseException as e:
                run.done.errback(e)
                raise
            run.done.callback(result)
            return result
        route(self.dispatcher, number, wrapped)
        return run

    async def installed(self) -> None:
        """Wait until Yate confirmed every install and watch (before placing calls)."""
        await eventually(lambda: len(self.wire.all("<<", r"^%%<(install|watch):")) ==
                         len(self.wire.all(">>", r"^%%>(install|watch):")),
                         "installs and watches to be confirmed")

    def assert_clean(self) -> None:
        board = self.board
        assert len(board) == 0, board.live
        assert board.legs == {} and board._tags == {} and board._retired == {}
        assert board.pending_count() == 0
        assert self.dispatcher.pending_count() == 0, self.dispatcher.pending_count()

    async def clean(self) -> None:
        await eventually(self.assert_clean, "the IVR to be clean")

    async def close(self) -> None:
        if self.protocol is None:
            return
        self.connector.disconnect()
        await within(self.wire.closed)


@pytest_twisted.async_yield_fixture
async def ivr(yate):
    conn = await IVR().open(yate.global_port)
    try:
        yield conn
    finally:
        await conn.close()


def param(line_match: re.Match, name: str) -> str:
    """A parameter of the matched line (``name=value`` up to the next ':')."""
    m = re.search(rf":{re.escape(name)}=([^:]*)", line_match.string)
    assert m, f"no {name} in {line_match.string}"
    return m.group(1)


def rtp_stats(text: str) -> dict:
    m = re.search(r":rtp_stats=([^:]*)", text)
    assert m, f"no rtp_stats in {text}"
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split(","))}


def esc(path: str) -> str:
    """A path as it appears on the wire (no ':' in ours) and as a regex."""
    return re.escape(path)


# ------------------------------------------------------------------------------------------
# Incoming calls
# ------------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_answer_and_prompt_reach_the_caller(ivr, sip_call):
    async def app(leg):
        await leg.answer()
        t0 = time.monotonic()
        result = await leg.play(WELCOME)
        return result, time.monotonic() - t0

    run = ivr.route("7601", app)
    await ivr.installed()
    call = sip_call("7601", "uac_ivr_listen", sipp_args=["-rtp_echo"])
    leg = await within(run.leg)
    result, played = await within(run.done)
    assert result is None and 0.8 < played < 3.0          # welcome.au lasts 1.0 s
    assert await within(leg.ended) == "normal"
    out = await sip_outcome(call)
    assert (out.outcome, out.bye_received, out.bye_sent, out.exit_code) == \
        ("answered", True, False, 0)
    assert [m.status for m in out.responses("INVITE", "received")][-1] == 200

    w = ivr.wire
    caller, chan = leg.id, leg.chan
    assert caller.startswith("sip/") and chan.startswith("dumb/")
    play = w.one(">>", rf"^%%>message:[^:]+:\d*:chan\.masquerade::message=chan\.attach:"
                       rf"id={chan}:source=wave/play/{esc(WELCOME)}:notify=([^:]+)$")
    tag = play.group(1)
    w.in_order(
        ("<<", rf"^%%>message:[^:]+:\d*:call\.route::id={caller}:"),
        (">>", r"^%%<message:[^:]+:true:call\.route:dumb/$"),
        ("<<", rf"^%%<message::true:call\.execute::id={caller}:.*:peerid={chan}:"),
        (">>", rf"^%%>message:[^:]+:\d*:chan\.masquerade::message=call\.answered:id={chan}$"),
        ("<<", rf"^%%<message:[^:]+:true:call\.answered::id={chan}:"),
        (">>", rf"source=wave/play/{esc(WELCOME)}:notify={tag}$"),
        ("<<", rf"^%%>message:[^:]+:\d*:chan\.notify::id={chan}:targetid={tag}:reason=eof$"),
        (">>", rf"^%%>message:[^:]+:\d*:call\.drop::id={caller}:reason=normal$"),
        ("<<", rf"^%%<message::false:chan\.hangup::id={caller}:"),
    )
    notify = w.one("<<", rf"^%%>message:([^:]+):\d*:chan\.notify::.*:targetid={tag}:")
    w.one(">>", rf"^%%<message:{re.escape(notify.group(1))}:true:chan\.notify:$")
    # Yate sent the prompt as RTP and sipp echoed it back: sipp received it.
    hangup = w.one("<<", rf"^%%<message::false:chan\.hangup::id={caller}:")
    stats = rtp_stats(hangup.string)
    assert stats["PS"] >= 40 and stats["PR"] >= 40, stats     # 20 ms packets, ~1 s
    await ivr.clean()


@pytest_twisted.ensureDeferred
async def test_early_media_prompt_before_the_answer(ivr, sip_call):
    async def app(leg):
        await leg.progress()
        state = leg.state
        await leg.play(ONE)
        await leg.answer()
        return state

    run = ivr.route("7609", app)
    await ivr.installed()
    call = sip_call("7609", "uac_ivr_listen", sipp_args=["-rtp_echo"])
    leg = await within(run.leg)
    assert await within(run.done) == "progressing"
    out = await sip_outcome(call)
    assert (out.outcome, out.bye_received, out.exit_code) == ("answered", True, 0)
    responses = [m for m in out.responses("INVITE", "received") if m.status > 100]
    # dumb/'s autoring 180 races with our progress: it may come first, or not at all
    assert [m.status for m in responses] in ([180, 183, 200], [183, 200])
    assert "m=audio" in responses[-2].body           # the 183 carries SDP: RTP starts
    w, chan = ivr.wire, leg.chan or ivr.wire.one(">>", r"call\.progress:id=(dumb/\d+)").group(1)
    w.in_order(
        (">>", rf"^%%>message:[^:]+:\d*:chan\.masquerade::message=call\.progress:id={chan}"
               r":earlymedia=true$"),
        (">>", rf"source=wave/play/{esc(ONE)}:notify="),
        ("<<", rf"chan\.notify::id={chan}:targetid=[^:]+:reason=eof$"),     # it played
        (">>", rf"chan\.masquerade::message=call\.answered:id={chan}$"),
    )
    await ivr.clean()


@pytest_twisted.ensureDeferred
async def test_digits_by_sip_info_and_rfc2833(ivr, sip_call):
    async def app(leg):
        await leg.answer()
        first = await leg.digits(timeout=5, interdigit=3)    # '5' then '#' (terminator)
        second = await leg.digits(count=1, timeout=5)        # '1' by RFC 2833
        return first, second

    run = ivr.route("7602", app)
    await ivr.installed()
    call = sip_call("7602", "uac_dtmf")
    leg = await within(run.leg)
    assert await within(run.done) == ("5", "1")
    out = await sip_outcome(call)
    assert (out.outcome, out.bye_received, out.exit_code) == ("answered", True, 0)
    assert [m.status for m in out.responses("INFO", "received") if m.status >= 200] == [200, 200]

    w = ivr.wire
    dtmf = w.all("<<", rf"^%%>message:([^:]+):\d*:chan\.dtmf::id={leg.id}:")
    assert [(param(m, "text"), param(m, "detected")) for m in dtmf] == \
        [("5", "sip-info"), ("#", "sip-info"), ("1", "rfc2833")]
    for m in dtmf:      # each one consumed (handled) by the IVR
        w.one(">>", rf"^%%<message:{re.escape(m.group(1))}:true:chan\.dtmf:")
    await ivr.clean()


@pytest_twisted.ensureDeferred
async def test_digits_barge_in_over_a_long_prompt(ivr, sip_call):
    async def app(leg):
        await leg.answer()
        t0 = time.monotonic()
        entered = await leg.digits(prompt=[MENU, MENU], timeout=5, interdigit=3)
        return entered, time.monotonic() - t0

    run = ivr.route("7603", app)
    await ivr.installed()
    call = sip_call("7603", "uac_ivr_bargein")
    leg = await within(run.leg)
    entered, took = await within(run.done)
    assert entered == "42"
    assert took < 3.5, took              # two menus would last 10.6 s
    out = await sip_outcome(call)
    assert (out.outcome, out.bye_received, out.exit_code) == ("answered", True, 0)

    w, chan = ivr.wire, leg.chan
    play = w.one(">>", rf"message=chan\.attach:id={chan}:source=wave/play/{esc(MENU)}"
                       rf":notify=([^:]+)$")        # the second menu never started
    tag = play.group(1)
    w.in_order(
        (">>", rf"source=wave/play/{esc(MENU)}:notify={tag}$"),
        ("<<", rf"^%%>message:[^:]+:\d*:chan\.dtmf::id={leg.id}:(.*:)?text=4:detected=rfc2833"),
        (">>", rf"^%%>message:[^:]+:\d*:chan\.masquerade::message=chan\.attach:id={chan}"
               r":source=-$"),
        ("<<", rf"^%%>message:[^:]+:\d*:chan\.notify::(.*:)?targetid={tag}:reason=replaced"),
        (">>", r"^%%<message:[^:]+:true:chan\.notify:"),
    )
    assert not w.all("<<", rf"targetid={tag}:reason=eof")
    await ivr.clean()


@pytest_twisted.ensureDeferred
async def test_recordings_land_on_disk_with_their_length(ivr, sip_call, tmp_path):
    files = [str(tmp_path / "rec.slin"), str(tmp_path / "rec.au")]

    async def app(leg):
        await leg.answer()
        first = await leg.record(files[0], max_seconds=1.5)
        second = await leg.record(files[1], max_seconds=1.0)
        return first, second

    run = ivr.route("7604", app)
    await ivr.installed()
    call = sip_call("7604", "uac_ivr_record")
    leg = await within(run.leg)
    first, second = await within(run.done)
    out = await sip_outcome(call)
    assert (out.outcome, out.bye_received, out.exit_code) == ("answered", True, 0)

    # slin: 8000 samples/s x 2 bytes; .au: mu-law, 1 byte per sample, plus Yate's header
    for result, seconds, rate in ((first, 1.5, 16000), (second, 1.0, 8000)):
        assert result.reason == "maxlen", result
        assert seconds - 0.3 < result.duration < seconds + 1.0, result
        size = os.path.getsize(result.file)      # seen: 24000 and 8192 (8160 + 32 header)
        assert abs(size - seconds * rate) <= 0.03 * seconds * rate + 64, (result.file, size)
    w, chan = ivr.wire, leg.chan
    for path, maxlen in ((files[0], 24000), (files[1], 8000)):
        rec = w.one(">>", rf"message=chan\.attach:id={chan}:consumer=wave/record/{esc(path)}"
                          rf":maxlen={maxlen}:notify=([^:]+)$")
        w.one("<<", rf"chan\.notify::(.*:)?targetid={re.escape(rec.group(1))}:reason=maxlen$")
    await ivr.clean()


@pytest_twisted.ensureDeferred
async def test_tone_stop_media_and_dtmf_to_the_caller(ivr, sip_call):
    async def app(leg):
        await leg.answer()
        await leg.tone("ring", duration=0.6)          # on, then detached after 0.6 s
        await leg.tone("busy")                        # on until stopped
        await leg.sleep(0.3)
        await leg.stop_media()
        await leg.send_dtmf("7", methods="info")      # SIP INFO to the caller
        return await leg.play(ONE)

    run = ivr.route("7610", app)
    await ivr.installed()
    call = sip_call("7610", "uac_ivr_info")
    leg = await within(run.leg)
    assert await within(run.done) is None
    out = await sip_outcome(call)
    assert (out.outcome, out.bye_received, out.exit_code) == ("answered", True, 0), out
    [info] = out.requests("INFO", "received")
    assert re.search(r"Signal\s*=\s*7", info.body), info.text
    w, chan = ivr.wire, ivr.wire.one(">>", r"message=call\.answered:id=(dumb/\d+)$").group(1)
    w.in_order(
        (">>", rf"message=chan\.attach:id={chan}:source=tone/ring$"),
        (">>", rf"message=chan\.attach:id={chan}:source=-$"),
        (">>", rf"message=chan\.attach:id={chan}:source=tone/busy$"),
        (">>", rf"message=chan\.attach:id={chan}:source=-$"),
        (">>", rf"^%%>message:[^:]+:\d*:chan\.dtmf::id={chan}:targetid={leg.id}:text=7"
               r":methods=info$"),
        ("<<", r"^%%<message:[^:]+:true:chan\.dtmf::"),
        (">>", rf"source=wave/play/{esc(ONE)}:notify="),
    )
    await ivr.clean()


@pytest_twisted.ensureDeferred
async def test_caller_hanging_up_mid_prompt_ends_the_app(ivr, sip_call):
    seen: list = []

    async def app(leg):
        await leg.answer()
        try:
            await leg.play(MENU)
        except CallEnded as e:
            seen.append(("play", e.reason))
            raise
        seen.append("prompt ended")       # not reached

    run = ivr.route("7605", app)
    await ivr.installed()
    call = sip_call("7605", "uac_hangup")
    leg = await within(run.leg)
    with pytest.raises(CallEnded):
        await within(run.done)
    out = await sip_outcome(call)
    assert (out.outcome, out.bye_sent, out.bye_received, out.exit_code) == \
        ("answered", True, False, 0)
    assert seen == [("play", "hangup")] and leg.end_reason == "hangup"
    await ivr.clean()
    w = ivr.wire
    chan = w.one(">>", r"message=call\.answered:id=(dumb/\d+)$").group(1)   # leg.chan: gone
    tag = w.one(">>", rf"source=wave/play/{esc(MENU)}:notify=([^:]+)$").group(1)
    w.in_order(
        ("<<", rf"^%%<message::false:chan\.hangup::id={leg.id}:.*:status=answered:"),
        ("<<", rf"^%%<message::false:chan\.hangup::id={chan}:"),
    )
    # nothing sent for the gone call: no drop, no detach
    assert not w.all(">>", r"call\.drop|:source=-")
    await eventually(lambda: w.all("<<", rf"chan\.notify::(.*:)?targetid={re.escape(tag)}"
                                         r":reason=replaced"), "Yate's late 'replaced'")


# ------------------------------------------------------------------------------------------
# Outgoing calls
# ------------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_dial_answered_plays_and_hangs_up(ivr, sip_callee):
    callee = sip_callee("answer")
    await ivr.installed()
    leg = await within(dial(ivr.dispatcher, callee.callto, caller="yaypm", timeout=10))
    assert (leg.state, leg.direction, leg.is_answered) == ("answered", "outgoing", True)
    assert leg.id.startswith("sip/") and leg.chan.startswith("dumb/")
    assert await within(leg.play(ONE)) is None
    assert await within(leg.hangup()) == "normal"
    out = await sip_outcome(callee)
    assert (out.outcome, out.bye_received, out.exit_code) == ("answered", True, 0)

    w = ivr.wire
    direct = re.escape(callee.callto.replace(":", "%z"))
    w.in_order(
        (">>", rf"^%%>message:[^:]+:\d*:call\.execute::callto=dumb/:direct={direct}"
               r":target=callee:caller=yaypm:maxcall=10000$"),
        ("<<", rf"^%%<message:[^:]+:true:call\.execute::.*:id={leg.chan}:peerid={leg.id}:"),
        ("<<", rf"^%%<message::true:call\.answered::id={leg.id}:"),
        (">>", rf"message=chan\.attach:id={leg.chan}:source=wave/play/{esc(ONE)}:notify="),
        ("<<", rf"chan\.notify::id={leg.chan}:targetid=[^:]+:reason=eof$"),
        (">>", rf"^%%>message:[^:]+:\d*:call\.drop::id={leg.id}:reason=normal$"),
        ("<<", rf"^%%<message::false:chan\.hangup::id={leg.id}:"),
    )
    await ivr.clean()


@pytest_twisted.ensureDeferred
async def test_dial_busy(ivr, sip_callee):
    callee = sip_callee("busy")
    await ivr.installed()
    with pytest.raises(BusyError) as info:
        await within(dial(ivr.dispatcher, callee.callto, caller="yaypm", timeout=10))
    assert info.value.code == 486 and info.value.target == callee.callto
    out = await sip_outcome(callee)
    assert (out.outcome, out.exit_code) == ("486", 0)
    ivr.wire.one("<<", r"^%%<message::false:chan\.hangup::id=sip/\d+:.*:cause_sip=486:")
    assert not ivr.wire.all(">>", r"call\.drop")
    await ivr.clean()


@pytest_twisted.ensureDeferred
async def test_dial_not_answered_in_time(ivr, sip_callee):
    callee = sip_callee("noanswer")
    await ivr.installed()
    t0 = time.monotonic()
    with pytest.raises(NoAnswerError):
        await within(dial(ivr.dispatcher, callee.callto, caller="yaypm", timeout=2))
    assert 1.9 < time.monotonic() - t0 < 4.5      # maxcall, on Yate's 1 s timer
    out = await sip_outcome(callee)
    assert (out.outcome, out.cancel_received, out.exit_code) == ("487", True, 0)
    w = ivr.wire
    w.one(">>", r"call\.execute::callto=dumb/:.*:maxcall=2000$")
    w.one("<<", r"^%%<message::false:chan\.hangup::id=dumb/\d+:.*:status=noanswer:")
    assert not w.all(">>", r"call\.drop")           # Yate cancelled it itself
    await ivr.clean()


@pytest_twisted.ensureDeferred
async def test_dial_cancelled_by_the_script(ivr, sip_callee):
    callee = sip_callee("noanswer")
    await ivr.installed()
    leg = originate(ivr.dispatcher, callee.callto, caller="yaypm", timeout=30)
    ringing: defer.Deferred = defer.Deferred()
    leg.on_progress(lambda kind, m: None if ringing.called else ringing.callback(kind))
    assert await within(ringing) == "ringing"
    answered = leg.answered()
    chan = leg.chan                         # forgotten once the leg ended
    assert await within(leg.hangup("cancelled")) == "cancelled"
    with pytest.raises(DialError) as info:      # documented: unanswered -> a DialError
        await within(answered)
    assert info.value.reason == "cancelled"
    out = await sip_outcome(callee)
    assert (out.outcome, out.cancel_received, out.exit_code) == ("487", True, 0)
    w = ivr.wire
    w.in_order(
        ("<<", rf"^%%<message::true:call\.ringing::id={leg.id}:"),
        (">>", rf"^%%>message:[^:]+:\d*:call\.drop::id={chan}:reason=cancelled$"),
        ("<<", rf"^%%<message::false:chan\.hangup::id={leg.id}:"),
    )
    await ivr.clean()


# ------------------------------------------------------------------------------------------
# Two legs
# ------------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_bridge_caller_and_callee(ivr, sip_call, sip_callee):
    callee_sip = sip_callee("answer")

    async def app(leg):
        await leg.answer()
        other = await leg.dial(callee_sip.callto, caller=leg.caller, timeout=10)
        await leg.bridge(other)
        states = (leg.state, other.state, leg.peer, other.peer)
        await leg.sleep(1.0)
        return other, states

    run = ivr.route("7606", app)
    await ivr.installed()
    call = sip_call("7606", "uac_wait_bye")
    leg = await within(run.leg)
    other, states = await within(run.done)
    assert states == ("bridged", "bridged", other.id, leg.id)
    reason = await within(other.ended)
    assert reason == "normal"     # Yate passes the drop reason on: chan.disconnected reason=normal
    caller_out, callee_out = await sip_outcome(call), await sip_outcome(callee_sip)
    assert (caller_out.outcome, caller_out.bye_received, caller_out.exit_code) == \
        ("answered", True, 0)
    assert (callee_out.outcome, callee_out.bye_received, callee_out.exit_code) == \
        ("answered", True, 0)
    w = ivr.wire
    w.in_order(
        (">>", rf"^%%>message:([^:]+):\d*:chan\.connect::id={leg.id}:targetid={other.id}"
               r":reason=bridged$"),
        ("<<", r"^%%<message:[^:]+:true:chan\.connect::"),
        (">>", rf"^%%>message:[^:]+:\d*:call\.drop::id={leg.id}:reason=normal$"),
        ("<<", rf"^%%<message::false:chan\.hangup::id={other.id}:"),
    )
    # both dumb channels left with the bridge's reason (D1)
    assert len(w.all("<<", r"chan\.disconnected::id=dumb/\d+:.*:reason=bridged$")) == 2
    await ivr.clean()


@pytest_twisted.ensureDeferred
async def test_conference_of_caller_and_callee(ivr, sip_call, sip_callee):
    callee_sip = sip_callee("answer")

    async def app(leg):
        await leg.answer()
        other = await leg.dial(callee_sip.callto, caller=leg.caller, timeout=10)
        first = await leg.join("ivr-room")
        second = await other.join("ivr-room")
        states = (leg.state, other.state, leg.room, other.room)
        await leg.sleep(1.0)
        return other, first, second, states

    run = ivr.route("7607", app)
    await ivr.installed()
    call = sip_call("7607", "uac_wait_bye")
    leg = await within(run.leg)
    other, first, second, states = await within(run.done)
    assert (first.room, first.newroom, second.room, second.newroom, second.users) == \
        ("conf/ivr-room", True, "conf/ivr-room", False, 2), (first, second)
    assert states == ("conference", "conference", "conf/ivr-room", "conf/ivr-room")
    await within(other.ended)
    caller_out, callee_out = await sip_outcome(call), await sip_outcome(callee_sip)
    assert (caller_out.outcome, caller_out.bye_received, caller_out.exit_code) == \
        ("answered", True, 0)
    assert (callee_out.outcome, callee_out.bye_received, callee_out.exit_code) == \
        ("answered", True, 0)
    w = ivr.wire
    w.in_order(
        (">>", rf"chan\.masquerade::message=call\.execute:id={leg.id}:callto=conf/ivr-room$"),
        ("<<", rf"^%%<message:[^:]+:true:call\.execute::id={leg.id}:callto=conf/ivr-room:"),
        (">>", rf"chan\.masquerade::message=call\.execute:id={other.id}:callto=conf/ivr-room$"),
        ("<<", rf"^%%<message:[^:]+:true:call\.execute::id={other.id}:callto=conf/ivr-room:"),
    )
    await ivr.clean()


@pytest_twisted.ensureDeferred
async def test_leave_a_conference_back_to_the_ivr(ivr, sip_call):
    async def app(leg):
        await leg.answer()
        joined = await leg.join("solo-room")
        await leg.sleep(0.5)
        await leg.leave()
        state, chan = leg.state, leg.chan
        await leg.play(ONE)                # the IVR has the caller again
        return joined, state, chan

    run = ivr.route("7611", app)
    await ivr.installed()
    call = sip_call("7611", "uac_wait_bye")
    leg = await within(run.leg)
    joined, state, chan = await within(run.done)
    assert (joined.room, joined.newroom, joined.users) == ("conf/solo-room", True, 1)
    assert state == "answered" and chan.startswith("dumb/")
    out = await sip_outcome(call)
    assert (out.outcome, out.bye_received, out.exit_code) == ("answered", True, 0)
    first = ivr.wire.one(">>", r"message=call\.answered:id=(dumb/\d+)$").group(1)
    assert chan != first
    ivr.wire.in_order(
        (">>", rf"chan\.masquerade::message=call\.execute:id={leg.id}:callto=conf/solo-room$"),
        (">>", rf"chan\.masquerade::message=call\.execute:id={leg.id}:callto=dumb/$"),
        ("<<", rf"^%%<message:[^:]+:true:call\.execute::id={leg.id}:callto=dumb/:"),
        (">>", rf"message=chan\.attach:id={chan}:source=wave/play/{esc(ONE)}:notify="),
        ("<<", rf"chan\.notify::id={chan}:targetid=[^:]+:reason=eof$"),
    )
    await ivr.clean()
