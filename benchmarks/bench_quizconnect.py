"""quizconnect under load: N concurrent calls with three callees each, on the simulator.

Every call: the caller dials one of N numbers (each with its own three callees); the callees
answer after 1 s; one of them types its PIN, the other two only listen; the winner is bridged
with the caller (async version) or joins the caller's room (DSM version), the two losers are
hung up.  Calls arrive over ``--ramp`` simulated seconds and all of them are up at once —
N callers + 3N callee legs — before the first winner types its last digit.  Then the callers
hang up.  The engine is the simulator on a ``task.Clock`` and the callee table an SQLite file
(inline SQL), so the figures measure quizconnect, the IVR/DSM layers, the dispatcher and the
simulator, in one process and one thread.

    python benchmarks/bench_quizconnect.py                 # 500 calls, both versions
    python benchmarks/bench_quizconnect.py -n 1000 --version python --no-memory

Prints, per version:
* calls/s: complete calls (route to hang-up) per wall-clock second;
* peak memory per active call: Python heap (tracemalloc, a second run) with every call and
  its three callee legs up, minus the heap before the first call, divided by N;
* latency from the winning PIN's last digit to the caller's answer (wall clock: how long
  quizconnect and the layers under it take to turn that digit into the 200 OK), p50/p99/max;
* engine messages per call (what the simulator dispatched: the cost is mostly there);
* errors: calls not answered, not connected to the right callee, or anything left behind.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from typing import Any, Dict, List, Optional

from twisted.internet.task import Clock

from yaypm.apps.quizconnect.config import QuizConfig
from yaypm.apps.quizconnect.store import CalleeStore
from yaypm.registry import CallRegistry
from yaypm.sql import Database
from yaypm.testing import success_result_of
from yaypm.testing.simulator import Simulator, answer

PIN = "4711"


def seed(url: str, n: int) -> None:
    store = CalleeStore(Database(url, threaded=False))
    success_result_of(store.init())
    rows = [(f"{5000 + i}", f"c{i}x{k}", PIN if k == 0 else "9999") for i in range(n)
            for k in range(3)]

    def insert(cursor: Any) -> None:
        cursor.executemany("INSERT INTO callees (caller, callee, pin) VALUES (?, ?, ?)", rows)
    success_result_of(store.db.run_interaction(insert))
    store.db.close()


def _talking(sim: Simulator, a: Any, b: Any) -> bool:
    if a.peer_id == b.id:
        return True
    pa, pb = sim.channels.get(a.peer_id), sim.channels.get(b.peer_id)
    room = getattr(pa, "room", None)
    return room is not None and room is getattr(pb, "room", None)


def run(n: int, version: str, url: str, ramp: float, memory: bool) -> Dict[str, Any]:
    gc.collect()
    if memory:
        tracemalloc.start()
    clock = Clock()
    sim = Simulator(clock, wire_log=False)
    config = QuizConfig(number="5*", db_url=url, ring_timeout=60, pin_timeout=60,
                        interdigit_timeout=30, overall_timeout=120)
    db = Database(url, threaded=False)
    if version == "python":
        from yaypm.apps.quizconnect.app import QuizConnect
        app = QuizConnect(config, CalleeStore(db), registry=CallRegistry(clock, keep_finished=10))
        sim.connect(app.start)
    else:
        from yaypm.apps.quizconnect import dsm_runner
        engine = dsm_runner.make_engine(config, clock=clock, threaded=False)
        sim.connect(lambda d: dsm_runner.start(d, config, engine=engine))
    for i in range(n):
        for k in range(3):
            sim.endpoint(f"c{i}x{k}", answer(after=1.0))

    base = tracemalloc.get_traced_memory()[0] if memory else 0
    t0 = time.perf_counter()
    calls: List[Any] = []
    step = ramp / n if n else 0.0
    for i in range(n):
        calls.append(sim.place_call(f"{5000 + i}", caller=f"a{i}", dtmf_method="rfc2833"))
        sim.advance(step)
    sim.advance(2.0)                                   # every callee answered
    winners = [sim.endpoints[f"c{i}x0"].last for i in range(n)]
    legs_up = sum(1 for c in calls if not c.ended) + sum(
        1 for i in range(n) for k in range(3) if sim.endpoints[f"c{i}x{k}"].legs
        and not sim.endpoints[f"c{i}x{k}"].last.ended)
    for w in winners:
        w.send_dtmf(PIN[:-1], interval=0.05)
    sim.advance(1.0)
    peak = tracemalloc.get_traced_memory()[0] - base if memory else 0

    # the last digits, spread over the ramp again; latency = digit -> caller answered
    sent: Dict[int, float] = {}
    got: Dict[int, float] = {}
    for i, call in enumerate(calls):
        call.answered().addCallback(lambda ok, i=i: got.setdefault(i, time.perf_counter())
                                    if ok else None)

    def last_digit(i: int) -> None:
        sent[i] = time.perf_counter()
        winners[i].send_dtmf(PIN[-1])
    for i in range(n):
        clock.callLater(i * step, last_digit, i)
    sim.advance(ramp + 2.0)
    connected = sum(1 for i, c in enumerate(calls) if c.is_answered
                    and _talking(sim, c, winners[i]))
    for c in calls:
        c.hangup()
    sim.advance(5.0)
    elapsed = time.perf_counter() - t0
    if memory:
        tracemalloc.stop()
    lat = sorted(got[i] - sent[i] for i in got if i in sent)
    left = sim.leaks()
    messages = sim.engine.stats["dispatched"]
    errors = (n - connected) + (1 if left else 0)
    sim.close()
    db.close()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
    return {"version": version, "n": n, "elapsed": elapsed, "calls_per_s": n / elapsed,
            "legs_up": legs_up, "peak_per_call": peak / n if n else 0, "p50": pct(0.50),
            "p99": pct(0.99), "max": lat[-1] * 1000 if lat else float("nan"),
            "connected": connected, "errors": errors, "left": left, "messages": messages}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=500, help="concurrent calls (default 500)")
    ap.add_argument("--version", choices=["python", "dsm", "both"], default="both")
    ap.add_argument("--ramp", type=float, default=5.0,
                    help="simulated seconds over which calls arrive (default 5)")
    ap.add_argument("--no-memory", action="store_true",
                    help="skip the tracemalloc run (peak memory per call)")
    args = ap.parse_args(argv)
    versions = ["python", "dsm"] if args.version == "both" else [args.version]
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{os.path.join(tmp, 'quizconnect.db')}"
        seed(url, args.n)
        for version in versions:
            r = run(args.n, version, url, args.ramp, memory=False)
            mem = None if args.no_memory else run(args.n, version, url, args.ramp, memory=True)
            print(f"{version:6}  {r['n']} calls ({r['legs_up']} legs up at once) in "
                  f"{r['elapsed']:.2f} s: {r['calls_per_s']:.0f} calls/s; "
                  f"PIN->answer latency p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, "
                  f"max {r['max']:.2f} ms; "
                  + (f"peak heap {mem['peak_per_call'] / 1024:.1f} KiB per active call; "
                     if mem else "")
                  + f"{r['messages'] / r['n']:.0f} engine messages per call "
                    f"({r['messages'] / r['elapsed']:.0f}/s); "
                  + f"connected {r['connected']}/{r['n']}, errors {r['errors']}"
                  + (f" (left behind: {r['left']})" if r["left"] else ""))
            if r["errors"] or (mem and mem["errors"]):
                status = 1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"process peak RSS {rss / 1024:.0f} MiB")
    return status


if __name__ == "__main__":
    sys.exit(main())
