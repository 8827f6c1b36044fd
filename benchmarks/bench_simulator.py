"""Simulator throughput: N concurrent IVR calls in one process.

Each call: INVITE -> call.route (script answers ``dumb/``) -> call.execute watch -> the script
answers (``chan.masquerade`` of ``call.answered``) and plays a 1 s prompt -> eof -> the caller
sends 4 digits -> the script drops the call.  The IVR is a trivial handler set written with
:class:`yaypm.dispatcher.Dispatcher`; the engine is the simulator on a ``task.Clock``, so the
numbers measure the simulator and the dispatcher, not a network.

    python benchmarks/bench_simulator.py            # 2000 concurrent calls
    python benchmarks/bench_simulator.py -n 5000 --rounds 3 --tracemalloc

Prints calls/s (wall clock) and peak memory (``ru_maxrss``, and the Python heap peak with
``--tracemalloc``, which slows the run).
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
import tracemalloc
from typing import Any, Dict, List

from twisted.internet.task import Clock

from yaypm.dispatcher import Dispatcher, Message
from yaypm.testing.simulator import Simulator

PROMPT = "prompts/welcome.slin"


def ivr(d: Dispatcher, digits_wanted: int = 4) -> Dict[str, Any]:
    """A trivial IVR: answer, play, collect ``digits_wanted`` digits, hang up."""
    calls: Dict[str, Dict[str, Any]] = {}     # caller id -> state
    stats = {"answered": 0, "dropped": 0}

    def route(m: Message) -> None:
        m.ret(True, "dumb/")

    def executed(m: Message) -> None:
        if m.get("callto") != "dumb/":
            return
        caller, dumb = m["id"], m["peerid"]
        calls[caller] = {"dumb": dumb, "digits": ""}
        d.msg("chan.masquerade", {"message": "call.answered", "id": dumb}).dispatch()
        d.msg("chan.masquerade", {"message": "chan.attach", "id": dumb,
                                  "source": "wave/play/" + PROMPT,
                                  "notify": dumb + "/p"}).dispatch()
        stats["answered"] += 1

    def dtmf(m: Message) -> bool:
        st = calls.get(m.get("id", ""))
        if st is None:
            return False
        st["digits"] += m.get("text", "")
        if len(st["digits"]) >= digits_wanted:
            d.msg("call.drop", {"id": m["id"], "reason": "done"}).dispatch()
            stats["dropped"] += 1
        return True

    def hangup(m: Message) -> None:
        calls.pop(m.get("id", ""), None)

    d.handler("call.route", route, priority=50)
    d.handler("chan.dtmf", dtmf, priority=50)
    d.handler("chan.notify", lambda m: True, priority=50)
    d.watcher("call.execute", executed)
    d.watcher("chan.hangup", hangup)
    return {"calls": calls, "stats": stats}


def run(n: int) -> Dict[str, float]:
    clock = Clock()
    sim = Simulator(clock, durations={PROMPT: 1.0}, wire_log=False)
    state: Dict[str, Any] = {}
    sim.connect(lambda d: state.update(ivr(d)))
    t0 = time.perf_counter()
    calls = [sim.place_call(str(1000 + i), caller=f"c{i}", dtmf_method="rfc2833"
                            if i % 2 else "info") for i in range(n)]
    t1 = time.perf_counter()
    sim.advance(1.1)                               # answered, prompt played
    for c in calls:
        c.send_dtmf("1234", interval=0.1)
    sim.advance(1.0)
    t2 = time.perf_counter()
    ended = sum(1 for c in calls if c.ended)
    answered = sum(1 for c in calls if c.sip_status == 200)
    leaks = sim.leaks()
    sim.close()
    if ended != n or answered != n or leaks or state["calls"]:
        raise SystemExit(f"FAILED: {ended}/{n} ended, {answered} answered, leaks {leaks}, "
                         f"{len(state['calls'])} calls left in the IVR")
    return {"setup": t1 - t0, "total": t2 - t0, "dispatched": sim.engine.stats["dispatched"],
            "lines": 0}


def main(argv: List[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=2000, help="concurrent calls (default 2000)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--tracemalloc", action="store_true", help="measure the Python heap peak")
    args = ap.parse_args(argv)
    if args.tracemalloc:
        tracemalloc.start()
    best = None
    for _ in range(args.rounds):
        gc.collect()
        r = run(args.n)
        if best is None or r["total"] < best["total"]:
            best = r
    assert best is not None
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"{args.n} concurrent calls (answer, 1 s prompt, 4 digits, hang-up)")
    print(f"  wall time        {best['total']:.2f} s  (placing the calls: {best['setup']:.2f} s)")
    print(f"  calls/s          {args.n / best['total']:.0f}")
    print(f"  engine messages  {best['dispatched']:.0f}  "
          f"({best['dispatched'] / best['total']:.0f} dispatches/s)")
    print(f"  peak RSS         {rss_mb:.0f} MiB")
    if args.tracemalloc:
        _, peak = tracemalloc.get_traced_memory()
        print(f"  Python heap peak {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
