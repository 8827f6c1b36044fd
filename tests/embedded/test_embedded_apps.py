"""yaypm apps loaded embedded (yaypmhost) and driven by sipp calls, checked as over TCP.

- quizconnect (the async version, and the DSM one) runs the scenarios of
  ``tests/yate/quiz_real_helpers.py`` with the very assertions of
  ``tests/yate/test_quizconnect_real.py``;
- ``yaypm.examples.keyecho`` runs over TCP (``yaypm run ... --connect``) and embedded, and the
  same assertions hold for both: what sipp saw, and what a spy (another extmodule
  connection) saw the app make Yate do;
- memory: sequential embedded IVR calls leave the interpreter's object count and Yate's RSS
  within bounds.

Each test gets its own Yate (``yate`` below, so the plugin's ``sip_call``/``sip_callee`` reach
it), started with what the test's ``app`` says.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from yaypm.prompts import prompt
from yaypm.testing.yate import Line, SipOutcome, SippAgent, YateEngine

from embedded_helpers import APPS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "yate"))   # quiz_real_helpers
from quiz_real_helpers import SCENARIOS, QuizScenario, config_text  # noqa: E402

pytestmark = pytest.mark.yate

REPO = Path(__file__).resolve().parents[2]

#: What one app on yaypm.ivr installs: call.route, chan.notify, chan.dtmf handlers and six
#: switchboard watches (call.execute, chan.hangup, chan.disconnected, call.answered,
#: call.ringing, call.progress).
IVR_HANDLERS = 9


# --------------------------------------------------------------------------------------------
# What runs in the test's Yate
# --------------------------------------------------------------------------------------------

class App:
    """What a test runs: ``scripts`` for yaypmhost, started before the engine; ``ready``
    returns once the app's handlers are in Yate; ``close`` stops what ``ready`` started."""

    mode = "embedded"
    handlers = IVR_HANDLERS

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def scripts(self) -> Dict[str, Path]:
        raise NotImplementedError

    def engine_options(self) -> Dict[str, Any]:
        """Extra EmbeddedYate keyword arguments."""
        return {}

    def ready(self, engine: YateEngine) -> None:
        with engine.connect() as conn:
            engine.wait_handlers(conn, self.handlers)

    def close(self) -> None:
        pass


class QuizApp(App):
    """quizconnect embedded: apps/quiz_app.py (the async version) or apps/quiz_dsm_app.py
    (the DSM version), copied beside the scenario's quizconnect.conf."""

    SCRIPTS = {"python": "quiz_app.py", "dsm": "quiz_dsm_app.py"}

    def __init__(self, folder: Path, version: str, scenario: QuizScenario) -> None:
        super().__init__(folder)
        self.version = version
        self.scenario = scenario

    def scripts(self) -> Dict[str, Path]:
        script = self.folder / self.SCRIPTS[self.version]
        shutil.copy(APPS / script.name, script)
        (self.folder / "quizconnect.conf").write_text(config_text(self.scenario.config))
        return {"quizconnect": script}


class KeyEchoEmbedded(App):
    def scripts(self) -> Dict[str, Path]:
        return {"keyecho": APPS / "keyecho_app.py"}


class KeyEchoTCP(App):
    """``yaypm run yaypm.examples.keyecho --connect tcp:...``: the app as deployed over TCP."""

    mode = "tcp"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.process: Optional[subprocess.Popen] = None
        self.log = folder / "yaypm-run.log"

    def scripts(self) -> Dict[str, Path]:
        return {}

    def ready(self, engine: YateEngine) -> None:
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "yaypm.cli", "run", "yaypm.examples.keyecho",
                 "--connect", f"tcp:127.0.0.1:{engine.global_port}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        # Yate answers one connection's lines in order: call.route, installed last, confirmed
        # means every handler and watch is in place.
        deadline = time.monotonic() + 15
        while "Installed call.route" not in self.log.read_text(errors="replace"):
            assert self.process.poll() is None, self.log.read_text(errors="replace")
            assert time.monotonic() < deadline, self.log.read_text(errors="replace")
            time.sleep(0.05)

    def assert_clean(self) -> None:
        """Still connected, and no traceback or error logged."""
        assert self.process is not None and self.process.poll() is None
        log = self.log.read_text(errors="replace")
        assert "Traceback" not in log and "[critical]" not in log and "[error]" not in log, log

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


class IvrMemory(App):
    """apps/ivr_memory_app.py: a short IVR flow plus the ``yaypm.test.memory`` probe."""

    handlers = IVR_HANDLERS + 1

    def scripts(self) -> Dict[str, Path]:
        return {"mem": APPS / "ivr_memory_app.py"}

    def engine_options(self) -> Dict[str, Any]:
        # SIP keeps a finished transaction for 64 x T1 (32 s with Yate's 500 ms): with the
        # shortest T1 Yate takes (100 ms) the engine reaches its steady size within seconds
        # instead of growing through the whole measurement.
        template = (REPO / "yate-conf" / "ysipchan.conf").read_text()
        sip = template.replace("[general]\n", "[general]\nt1=100\n", 1)
        assert sip != template, "no [general] in yate-conf/ysipchan.conf"
        return {"conf_overrides": {"ysipchan.conf": sip}}


@pytest.fixture
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    """``quiz-VERSION-SCENARIO`` (VERSION ``python`` or ``dsm``; SCENARIO ``winner`` or
    ``cancel``), ``keyecho-tcp``, ``keyecho-embedded``, ``ivr-memory``."""
    kind = request.param
    folder = tmp_path / "app"
    made: App
    if kind.startswith("quiz-"):
        _, version, scenario = kind.split("-")
        made = QuizApp(folder, version, SCENARIOS[scenario](tmp_path / "quiz"))
    elif kind == "keyecho-tcp":
        made = KeyEchoTCP(folder)
    elif kind == "keyecho-embedded":
        made = KeyEchoEmbedded(folder)
    elif kind == "ivr-memory":
        made = IvrMemory(folder)
    else:
        raise ValueError(kind)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def yate(app: App, embedded_yate: Callable[..., YateEngine]) -> YateEngine:
    """This test's Yate, with yaypmhost loaded and ``app`` running (and ready)."""
    engine = embedded_yate(app.scripts(), **app.engine_options())
    app.ready(engine)
    return engine


def host_status(engine: YateEngine) -> Dict[str, str]:
    with engine.connect() as conn:
        return engine.host_status(conn)            # type: ignore[attr-defined]


def assert_host_clean(engine: YateEngine) -> None:
    """Every message Python got was answered (none pending, none timed out) and no Python
    traceback was logged."""
    st = host_status(engine)
    assert int(st["answered"]) > 0 and st["pending"] == "0" and st["timeouts"] == "0", st
    log = engine.log_text()
    assert "Traceback" not in log, log[-4000:]


# --------------------------------------------------------------------------------------------
# quizconnect embedded: the TCP tests' scenarios and assertions
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("app", [f"quiz-{version}-{scenario}" for scenario in ("winner", "cancel")
                                 for version in ("python", "dsm")], indirect=True)
def test_quizconnect_embedded(app, yate, sip_call, sip_callee):
    scenario = app.scenario
    scenario.start_callees(sip_callee)
    scenario.place_call(sip_call)
    scenario.check()
    assert_host_clean(yate)


# --------------------------------------------------------------------------------------------
# keyecho over TCP and embedded: the same assertions
# --------------------------------------------------------------------------------------------

class Spy:
    """A third extmodule connection: watches what an app makes Yate do during a sipp call.

    It watches ``WATCHED`` and also handles ``chan.attach`` first (priority 10, answered
    unhandled at once, changing nothing), since the wave module clears ``source`` from the
    message before watchers see it.
    """

    WATCHED = ("call.route", "call.answered", "chan.dtmf", "chan.notify", "chan.hangup")

    def __init__(self, engine: YateEngine) -> None:
        self.conn = engine.connect()
        for name in self.WATCHED:
            self.conn.watch(name)
        self.conn.install("chan.attach", 10)
        self.attached: List[Line] = []
        self.notifications: List[Line] = []

    def run(self, agent: SippAgent, timeout: float = 30.0) -> SipOutcome:
        """Read (and answer) lines until ``agent`` ends; then until Yate is quiet for 0.3 s.
        Returns the agent's outcome."""
        deadline = time.monotonic() + timeout
        quiet_until = None
        while True:
            now = time.monotonic()
            assert now < deadline, f"{agent.label} still running after {timeout} s"
            if quiet_until is None and not agent.running:
                quiet_until = now
            try:
                line = self.conn.read_line(0.1 if quiet_until is None else 0.3)
            except TimeoutError:
                if quiet_until is not None:
                    break
                continue
            if line.kind == "handle":
                self.conn.answer(line, False)
                if line.name == "chan.attach":
                    self.attached.append(line)
            elif line.kind == "notification":
                self.notifications.append(line)
        self.conn.close()
        return agent.wait(5)

    def of(self, name: str, **params: str) -> List[Line]:
        """The notifications of ``name`` whose parameters include ``params``."""
        return [m for m in self.notifications if m.name == name
                and all(m.params.get(k) == v for k, v in params.items())]


@pytest.mark.parametrize("app", ["keyecho-tcp", "keyecho-embedded"], indirect=True)
def test_keyecho_tcp_and_embedded(app, yate, sip_call):
    """Answer, the welcome prompt, keys by SIP INFO (5, #) and RFC 2833 (1), each said back;
    the caller hangs up.  The spy sees what the app made Yate do."""
    spy = Spy(yate)
    out = spy.run(sip_call("echo", "uac_keyecho"))
    assert (out.outcome, out.bye_sent, out.bye_received, out.exit_code) == \
        ("answered", True, False, 0), out
    assert [m.status for m in out.responses("INFO", "received") if m.status >= 200] == \
        [200, 200]
    # routed to a dumb channel by the app, which answered it
    routed = spy.of("call.route", called="echo")
    assert [(m.processed, m.retvalue) for m in routed] == [(True, "dumb/")], routed
    caller = routed[0].params["id"]
    answered = spy.of("call.answered", targetid=caller)
    assert [m.processed for m in answered] == [True], answered
    chan = answered[0].params["id"]
    assert chan.startswith("dumb/"), chan
    # every key reached the app, which consumed it (handled)
    assert [(m.params.get("text"), m.params.get("detected"), m.processed)
            for m in spy.of("chan.dtmf", id=caller)] == \
        [("5", "sip-info", True), ("#", "sip-info", True), ("1", "rfc2833", True)]
    # the welcome, then each key said back, in order, each played to its end
    attach = [m for m in spy.attached if m.params.get("id") == chan]
    assert [m.params.get("source") for m in attach] == \
        [f"wave/play/{prompt(n)}" for n in ("welcome", "five", "pound", "one")], attach
    ends = {m.params.get("targetid"): (m.params.get("reason"), m.processed)
            for m in spy.of("chan.notify", id=chan)}
    assert [ends.get(m.params["notify"]) for m in attach] == [("eof", True)] * 4, ends
    # Yate sent the four prompts as RTP: 1.01 + 0.42 + 0.39 + 0.37 s = 110 packets of 20 ms
    hangup = spy.of("chan.hangup", id=caller)
    assert len(hangup) == 1 and spy.of("chan.hangup", id=chan), spy.notifications
    sent = int(dict(kv.split("=") for kv in hangup[0].params["rtp_stats"].split(","))["PS"])
    assert 100 <= sent <= 125, hangup[0].params["rtp_stats"]
    # nothing went wrong on the app's side
    if app.mode == "embedded":
        assert_host_clean(yate)
    else:
        app.assert_clean()


# --------------------------------------------------------------------------------------------
# Memory: many sequential embedded calls
# --------------------------------------------------------------------------------------------

#: Calls before the first reading: Yate keeps each SIP transaction 64 x T1 (6.4 s with
#: t1=100), so the engine reaches its steady size once calls have run for that long (~8 s).
WARMUP = 200
CALLS = 200
#: Bounds for CALLS calls after the warm-up, on the objects the collector tracks and on the
#: blocks Python allocated (``sys.getallocatedblocks()``, after ``gc.collect()``), and on
#: Yate's VmRSS.  Measured (2-core VM): +0 objects, +6 blocks, +92..176 KiB.  A leaked Leg,
#: Message or Deferred per call would add dozens of objects and blocks per call; a leaked Yate
#: message copy per handled message (~15 a call) some 30 KiB per call (~6 MiB).
MAX_OBJECT_GROWTH = CALLS // 2
MAX_RSS_GROWTH_KIB = 2048


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def probe(engine: YateEngine) -> Dict[str, int]:
    """The memory app's counters: objects (after gc.collect()), calls, keys, ended."""
    with engine.connect() as conn:
        line = conn.dispatch("yaypm.test.memory", timeout=10)
    assert line.processed, line
    return {k: int(v) for k, v in (kv.split("=") for kv in line.retvalue.split(","))}


@pytest.mark.parametrize("app", ["ivr-memory"], indirect=True)
def test_sequential_embedded_calls_leave_memory_bounded(app, yate, sip_call):
    """CALLS sequential IVR calls (answer, prompt, a key by INFO stopping it, caller's BYE)
    after WARMUP: Python's object count and Yate's RSS stay within the bounds above."""
    def calls(count: int) -> float:
        t0 = time.monotonic()
        agent = sip_call("mem", "uac_ivr_short", timeout=80,
                         sipp_args=["-m", str(count), "-l", "1", "-r", "100"])
        out = agent.wait(90)
        assert out.exit_code == 0, out
        byes = [m for m in out.responses("BYE", "received") if m.status == 200]
        assert len(byes) == count, out
        return time.monotonic() - t0

    calls(WARMUP)
    before, rss_before = probe(yate), vm_rss_kib(yate.pid)
    took = calls(CALLS)
    after, rss_after = probe(yate), vm_rss_kib(yate.pid)
    figures = (f"{CALLS} calls in {took:.1f} s: Python objects {before['objects']} -> "
               f"{after['objects']}, blocks {before['blocks']} -> {after['blocks']}, Yate VmRSS {rss_before} -> {rss_after} KiB; {after}")
    print(figures)
    # every call ran the whole flow: the key reached the app, the app saw the hang-up
    assert after == {**after, "calls": WARMUP + CALLS, "keys": WARMUP + CALLS,
                     "ended": WARMUP + CALLS}, figures
    assert after["objects"] - before["objects"] <= MAX_OBJECT_GROWTH, figures
    assert after["blocks"] - before["blocks"] <= MAX_OBJECT_GROWTH, figures
    assert rss_after - rss_before <= MAX_RSS_GROWTH_KIB, figures
    assert_host_clean(yate)
