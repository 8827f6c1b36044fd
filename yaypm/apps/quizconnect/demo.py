"""``yaypm demo``: one quizconnect call on the in-process simulator, told as a timeline.

Nothing real is involved: the Yate simulator runs on a ``task.Clock`` (the call's 12 simulated
seconds take a fraction of a real one), the callee table is a fresh SQLite file in a temporary
folder.  The story: alice dials 35; john, anna and bob are called at once; anna is busy, bob
rings; john answers, types a wrong PIN, then his PIN and wins; bob's ringing leg is cancelled;
alice is answered and bridged with john, talks, hangs up.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any, Dict, List, TextIO, Tuple

from twisted.internet.task import Clock

from yaypm.apps.quizconnect.config import QuizConfig
from yaypm.apps.quizconnect.store import CalleeStore
from yaypm.registry import CallRegistry
from yaypm.sql import Database
from yaypm.testing import success_result_of
from yaypm.testing.simulator import Simulator, answer, busy, noanswer

__all__ = ["run_demo"]

NUMBER = "35"
CALLEES = [("john", "12345"), ("anna", "54321"), ("bob", "24680")]


class _Timeline:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lines: List[Tuple[float, int, str, str]] = []
        self._n = 0

    def add(self, who: str, text: str, at: float = -1.0) -> None:
        self._n += 1
        self.lines.append((self.clock.seconds() if at < 0 else at, self._n, who, text))

    def render(self, out: TextIO) -> None:
        for t, _, who, text in sorted(self.lines):
            out.write(f"  {t:6.2f} s  {who:<12} {text}\n")


def _describe(event: Any, timeline: _Timeline) -> None:
    """An app event (QuizEvent) as a timeline line."""
    d: Dict[str, Any] = event.details
    who = "quizconnect" if event.who == "caller" else event.who
    text = {
        "early-media": lambda: f"found {len(d['callees'])} callees ({', '.join(d['callees'])}); "
                               f"caller gets early media (183) and the welcome prompt",
        "dialling": lambda: f"is called: {d['target']}",
        "answered": lambda: (f"answers ({d['chan']}) and hears welcome_callee"
                             if event.who != "caller" else "answers the caller (200 OK)"),
        "wrong-pin": lambda: f"typed {d['typed'] or 'nothing'!r}: wrong PIN "
                             f"(attempt {d['attempt']}), hears sorry_pin_wrong",
        "right-pin": lambda: f"typed {d['typed']!r}: the right PIN",
        "won": lambda: "WINS",
        "cancelled": lambda: "is cancelled while ringing (CANCEL)",
        "hung-up": lambda: "was answered, is hung up (BYE)",
        "call-ended": lambda: f"{d['by']} hung up: the other side is hung up too",
        "dropped": lambda: f"drops out: {d['reason']}" + (f" ({d['code']})" if d.get("code")
                                                            else ""),
        "connected": lambda: f"caller bridged with {d['callee']} ({d['mode']})",
        "gave-up": lambda: f"used up {d['attempts']} attempts, hears pin_goodbye",
        "left": lambda: f"hung up ({d['reason']})",
        "no-callees": lambda: "no callee for this number: 404",
        "db-error": lambda: f"database error: 500 ({d['error']})",
        "nobody-won": lambda: f"nobody won: 480 ({d['why']})",
        "caller-left": lambda: "the caller left: every callee leg dropped",
    }.get(event.what, lambda: event.what)()
    timeline.add(who, text, event.time)


def _talking(sim: Simulator, a: Any, b: Any) -> bool:
    """Bridged directly, or in the same conference room."""
    if a.peer_id == b.id:
        return True
    pa, pb = sim.channels.get(a.peer_id), sim.channels.get(b.peer_id)
    return getattr(pa, "room", None) is not None and getattr(pa, "room", None) is \
        getattr(pb, "room", None)


def run_demo(out: TextIO, version: str = "python") -> int:
    """Run the story, print the timeline to ``out``; 0 when john won and nothing is left."""
    clock = Clock()
    clock.advance(0)
    tmp = tempfile.mkdtemp(prefix="yaypm-demo-")
    try:
        return _run(out, clock, tmp, version)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(out: TextIO, clock: Clock, tmp: str, version: str) -> int:
    url = f"sqlite:///{tmp}/quizconnect.db"
    db = Database(url, threaded=False)
    store = CalleeStore(db)
    success_result_of(store.init())
    for callee, pin in CALLEES:
        success_result_of(store.add(NUMBER, callee, pin))
    config = QuizConfig(db_url=url, number=NUMBER)

    sim = Simulator(clock)
    timeline = _Timeline(clock)
    registry = CallRegistry(clock)
    out.write(f"quizconnect demo ({version} version, simulated Yate, database {url})\n")
    out.write("  callees for 35: " + ", ".join(f"{c} (PIN {p})" for c, p in CALLEES) + "\n\n")

    if version == "dsm":
        from yaypm.apps.quizconnect import dsm_runner
        if not dsm_runner.adapter_available():
            out.write("the DSM version needs yaypm.dsm.yate (the DSM engine's Yate adapter), "
                      "which is not installed\n")
            return 1
        engine = dsm_runner.make_engine(config, clock=clock, threaded=False)
        dsm_runner.watch(engine, lambda who, text: timeline.add(who, text))
        sim.connect(lambda d: dsm_runner.start(d, config, engine=engine))
    else:
        from yaypm.apps.quizconnect.app import QuizConnect
        app = QuizConnect(config, store, registry=registry,
                          observer=lambda e: _describe(e, timeline))
        sim.connect(app.start)

    john = sim.endpoint("john", answer(after=1.5))
    sim.endpoint("anna", busy(after=0.8))
    bob = sim.endpoint("bob", noanswer())

    timeline.add("alice", f"dials {NUMBER}")
    call = sim.place_call(NUMBER, caller="alice")
    sim.advance(2.5)
    timeline.add("john", "types 11111#")
    john.last.send_dtmf("11111#", interval=0.25)
    sim.advance(3.0)
    timeline.add("john", "types 12345")
    john.last.send_dtmf("12345", interval=0.25)
    sim.advance(1.5)
    talking = call.is_answered and _talking(sim, call, john.last)
    timeline.add("alice", f"hears {'john' if talking else 'nobody'}; SIP "
                          f"{sorted(set(call.provisional))} then {call.sip_status}")
    sim.advance(5.0)
    timeline.add("alice", "hangs up")
    call.hangup()
    sim.advance(1.0)
    timeline.add("john", f"call ended ({'BYE' if john.last.bye_received else 'gone'})")
    timeline.render(out)

    left = sim.leaks()
    ok = (talking and call.sip_status == 200 and bob.last.cancelled
          and john.last.bye_received and not left)
    out.write("\n" + (f"john won; bob's ringing leg was cancelled ({bob.last.sip_status}); "
                      f"anna was busy; nothing left behind\n" if ok
                      else f"unexpected outcome (left behind: {left})\n"))
    sim.close()
    db.close()
    return 0 if ok else 1
