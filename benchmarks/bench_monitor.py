"""What monitoring costs: call throughput with monitoring off and on, in the same run.

*Off*: the call registry (apps always write to it) and a dispatcher, nothing watching.
*On*: a :class:`yaypm.monitor.Monitor` on the same registry — the dispatcher's observer hook
times every handler (latency histogram, unanswered count) — and, every ``--scrape`` seconds of
wall time, ``/calls.json`` and ``/metrics`` are rendered through their twisted.web resources
(a status page open all the time plus a Prometheus scraping every second: pessimistic).

Scenarios:

* ``synthetic``: 500 concurrent call legs round-robin; each leg is registered with DSM-shaped
  attributes, gets a ``call.route``, 10 DSM state changes (``dsm_state`` + ``dsm_stategraph``),
  5 ``chan.dtmf`` and a ``chan.notify`` through a real Dispatcher, and ends.
* ``quizconnect``: the async quizconnect app on the Yate simulator, 500 concurrent calls (each
  a caller and two callees, one of whom types the PIN), connected, hung up.
* ``bench_quizconnect``: ``benchmarks/bench_quizconnect.py``'s own load (500 calls x 3
  callees), its python and DSM versions, with a Monitor attached for the "on" runs.

Rounds alternate off/on; the median of each is reported.  Rates are per second of this
process's CPU time (``time.process_time``), and scrapes are scheduled by it too, so other
load on the machine counts as little as it can (it still adds noise: use more rounds).

    python benchmarks/bench_monitor.py                       # both scenarios
    python benchmarks/bench_monitor.py --scenario synthetic --rounds 7 --scrape 0.2
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.web.test.requesthelper import DummyRequest

from yaypm.dispatcher import Dispatcher
from yaypm.monitor import Monitor
from yaypm.registry import CallRegistry

STATES = ["START", "RUN_INVITE", "CREATE_CALLEE_LEGS", "CREATE_CALLEE_LEGS",
          "CREATE_CALLEE_LEGS", "WAIT_CALLEE", "CANCEL_OTHER_CALLEES", "CANCEL_OTHER_CALLEES",
          "CANCEL_OTHER_CALLEES", "CONNECTED"]


class Scraper:
    """Renders /calls.json and /metrics through the real resources when ``interval`` s of
    this process's CPU time have passed since the last time (on a busy process that is at
    least as often as by the wall clock, and it does not depend on other load)."""

    def __init__(self, monitor: Monitor, interval: float) -> None:
        root = monitor.resource()
        self._pages = [root.children[b"calls.json"], root.children[b"metrics"]]
        self.interval = interval
        self._next = time.process_time()          # the first one at once
        self.count = 0
        self.seconds = 0.0

    def maybe(self) -> None:
        now = time.process_time()
        if now < self._next:
            return
        self._next = now + self.interval
        for page in self._pages:
            body = page.render(DummyRequest([b""]))
            assert body
        self.count += 1
        self.seconds += time.process_time() - now


# -- synthetic ----------------------------------------------------------------------------------
def _quiet(disp: Dispatcher) -> None:
    """No per-line debug events, as ``yaypm run`` without ``-v`` (when the dispatcher has
    the switch): the cheaper the dispatcher, the larger monitoring's share."""
    if hasattr(disp, "log_wire"):
        disp.log_wire = False


SAMPLE_EVERY = 8


def _synthetic(monitoring: bool, concurrent: int, steps: int, scrape: float
               ) -> Tuple[float, Optional[Scraper]]:
    from twisted.internet import reactor         # its clock (time.time), as in production
    registry = CallRegistry(reactor)
    disp = Dispatcher(reactor)
    _quiet(disp)
    disp.attach(lambda line: None)
    disp.handler("call.route", lambda m: True)
    disp.handler("chan.dtmf", lambda m: True)
    disp.handler("chan.notify", lambda m: True)
    scraper = None
    if monitoring:
        mon = Monitor(registry, clock=reactor, graph="builtin",
                      latency_sample_every=SAMPLE_EVERY)
        mon.watch_dispatcher(disp)
        scraper = Scraper(mon, scrape)
    msg_ids = iter(range(1, 1 << 62))
    legs: List[List[Any]] = []                 # [call id, step]
    serial = iter(range(1 << 62))

    def new_leg() -> List[Any]:
        n = next(serial)
        cid = registry.start(f"L{n}", **{
            "from": f'"c{n}" <sip:{n}@192.0.2.1>', "to": "<sip:35@192.0.2.1>",
            "ruri": "sip:35@192.0.2.1", "app": "quizconnect_caller", "dir": "in",
            "dsm_diag": "quizconnect_caller", "dsm_state": "START",
            "dsm_stategraph": ["quizconnect_caller/START"]})
        return [cid, 0]

    for _ in range(concurrent):
        legs.append(new_leg())
    feed = disp.line_received
    t0 = time.process_time()
    i = 0
    for _ in range(steps):
        leg = legs[i]
        cid, step = leg
        if step == 0:
            feed(f"%%>message:m{next(msg_ids)}:1700000000:call.route::called=35:id={cid}")
        elif step <= 10:
            state = STATES[step - 1]
            rec = registry.active[cid]
            rec.attrs["dsm_stategraph"].append(f"> t{step} >")
            rec.attrs["dsm_stategraph"].append(f"quizconnect_caller/{state}")
            registry.set(cid, dsm_state=state)
        elif step <= 15:
            feed(f"%%>message:m{next(msg_ids)}:1700000000:chan.dtmf::id={cid}:text={step % 10}")
        elif step == 16:
            feed(f"%%>message:m{next(msg_ids)}:1700000000:chan.notify::targetid={cid}")
        else:
            registry.end(cid, "normal")
            legs[i] = leg = new_leg()
            step = -1
        leg[1] = step + 1
        i = (i + 1) % concurrent
        if scraper is not None and not i:
            scraper.maybe()
    elapsed = time.process_time() - t0
    assert len(registry.active) == concurrent and disp.stats["unhandled"] == 0
    return steps / elapsed, scraper


# -- quizconnect on the simulator -------------------------------------------------------------
def _quizconnect(monitoring: bool, concurrent: int, scrape: float
                 ) -> Tuple[float, Optional[Scraper]]:
    from yaypm.apps.quizconnect.app import QuizConnect
    from yaypm.apps.quizconnect.config import PROMPTS, QuizConfig
    from yaypm.apps.quizconnect.store import CalleeStore
    from yaypm.sql import Database
    from yaypm.testing import success_result_of
    from yaypm.testing.simulator import Simulator
    from yaypm.testing.simulator.api import answer

    sim = Simulator(wire_log=False)
    cfg = QuizConfig(number="^35$", db_url="sqlite:///:memory:")
    for p in PROMPTS:
        sim.media.declare(cfg.prompt(p), 1.0)
    store = CalleeStore(Database(cfg.db_url, threaded=False))
    success_result_of(store.init())
    success_result_of(store.add("35", "john", "12345"))
    success_result_of(store.add("35", "anna", "54321"))
    registry = CallRegistry(sim.clock)
    qc = QuizConnect(cfg, store, registry=registry, threaded=False)
    disp = sim.connect(qc.start)
    _quiet(disp)
    scraper = None
    if monitoring:
        mon = Monitor(registry, clock=sim.clock, graph="builtin",
                      latency_sample_every=SAMPLE_EVERY)
        mon.watch_dispatcher(disp)
        scraper = Scraper(mon, scrape)
    sim.endpoint("john", answer(after=1.0))
    sim.endpoint("anna", answer(after=1.5))

    def advance(seconds: float) -> None:
        for _ in range(int(seconds / 0.1)):
            sim.advance(0.1)
            if scraper is not None:
                scraper.maybe()

    t0 = time.process_time()
    calls = [sim.place_call("35", caller=f"c{i}") for i in range(concurrent)]
    advance(3.0)                                # callees answer and hear the prompt
    for leg in sim.endpoints["john"].legs:
        leg.send_dtmf("12345#", interval=0.1)
    advance(2.0)                                # PINs typed: callers connected to john
    connected = sum(1 for r in registry.active.values() if r.attrs.get("state") == "CONNECTED")
    for c in calls:
        c.hangup()
    advance(1.0)
    elapsed = time.process_time() - t0
    if connected != concurrent or registry.active:
        raise SystemExit(f"quizconnect run failed: {connected}/{concurrent} connected, "
                         f"{len(registry.active)} legs left")
    return concurrent / elapsed, scraper


def _bench_quizconnect(monitoring: bool, n: int, scrape: float, version: str
                       ) -> Tuple[float, Optional[Scraper]]:
    """One run of benchmarks/bench_quizconnect.py (its ``run``), monitored or not: its module
    names ``Simulator`` and ``CallRegistry`` (and ``dsm_runner.start``, which it calls without
    a registry) are swapped, for this run only, for versions that attach a Monitor."""
    import os
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_quizconnect as bq
    from yaypm.apps.quizconnect import dsm_runner

    state: Dict[str, Any] = {}

    def registry(*args: Any, **kw: Any) -> CallRegistry:
        state["registry"] = CallRegistry(*args, **kw)
        return state["registry"]

    class MonitoredSimulator(bq.Simulator):          # type: ignore[name-defined,misc]
        def connect(self, start: Any = None, *args: Any, **kw: Any) -> Dispatcher:
            disp = super().connect(start, *args, **kw)
            _quiet(disp)
            if monitoring:
                reg = state.setdefault("registry", CallRegistry(self.clock, keep_finished=10))
                mon = Monitor(reg, clock=self.clock, graph="builtin",
                              latency_sample_every=SAMPLE_EVERY)
                mon.watch_dispatcher(disp)
                state["scraper"] = Scraper(mon, scrape)
            return disp

        def advance(self, seconds: float) -> None:
            super().advance(seconds)
            if state.get("scraper") is not None:
                state["scraper"].maybe()

    start = dsm_runner.start

    def dsm_start(d: Any, config: Any, *, engine: Any = None, registry: Any = None) -> Any:
        if monitoring:            # the registry must exist before connect() finishes
            registry = state.setdefault("registry", CallRegistry(engine.registry.clock,
                                                                 keep_finished=10))
        return start(d, config, engine=engine, registry=registry)

    saved = (bq.Simulator, bq.CallRegistry)
    bq.Simulator, bq.CallRegistry = MonitoredSimulator, registry
    dsm_runner.start = dsm_start
    tmp = tempfile.mkdtemp(prefix="bench-monitor-")
    url = f"sqlite:///{tmp}/quiz.db"
    try:
        bq.seed(url, n)
        t0 = time.process_time()
        result = bq.run(n, version, url, 5.0, False)
        cpu = time.process_time() - t0
    finally:
        bq.Simulator, bq.CallRegistry = saved
        dsm_runner.start = start
        shutil.rmtree(tmp, ignore_errors=True)
    if result["errors"]:
        raise SystemExit(f"bench_quizconnect {version} run failed: {result}")
    return n / cpu, state.get("scraper")


def _rounds(name: str, unit: str, run: Callable[[bool], Tuple[float, Optional[Scraper]]],
            rounds: int) -> Dict[str, float]:
    """Alternate off/on ``rounds`` times; the cost is the median of each pair's ratio (robust
    to load that changes during the run)."""
    off: List[float] = []
    on: List[float] = []
    scrapes = 0
    scrape_s = 0.0
    run(False)                                  # warm-up: imports, caches
    for r in range(rounds):
        pair = {}
        for monitoring in ((False, True) if r % 2 == 0 else (True, False)):
            gc.collect()
            rate, scraper = run(monitoring)
            pair[monitoring] = rate
            if scraper is not None:
                scrapes += scraper.count
                scrape_s += scraper.seconds
        off.append(pair[False])
        on.append(pair[True])
    cost = statistics.median(1 - b / a for a, b in zip(off, on))
    print(f"{name}: {unit}/s, {rounds} rounds each (alternating)")
    print(f"  monitoring off  {statistics.median(off):12,.0f}   "
          f"(min {min(off):,.0f}, max {max(off):,.0f})")
    print(f"  monitoring on   {statistics.median(on):12,.0f}   "
          f"(min {min(on):,.0f}, max {max(on):,.0f})")
    print(f"  cost            {cost:12.1%}   (median of the rounds' ratios; {scrapes} scrapes, "
          f"{1000 * scrape_s / max(scrapes, 1):.1f} ms each)")
    return {"off": statistics.median(off), "on": statistics.median(on), "cost": cost}


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="both",
                    choices=("synthetic", "quizconnect", "both", "bench_quizconnect", "all"),
                    help="both = synthetic + quizconnect; bench_quizconnect = "
                         "benchmarks/bench_quizconnect.py's run (python and dsm versions); all")
    ap.add_argument("-n", "--concurrent", type=int, default=500)
    ap.add_argument("--steps", type=int, default=200_000, help="synthetic steps per round")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--scrape", type=float, default=1.0,
                    help="seconds between renders of /calls.json + /metrics (default 1)")
    ap.add_argument("--sample-every", type=int, default=8,
                    help="time one message in N for the latency histogram (default 8)")
    ap.add_argument("--max-cost", type=float, default=None,
                    help="exit 1 if monitoring costs more than this fraction (e.g. 0.05)")
    args = ap.parse_args(argv)
    global SAMPLE_EVERY
    SAMPLE_EVERY = args.sample_every
    results = []
    if args.scenario in ("synthetic", "both", "all"):
        results.append(_rounds(
            f"synthetic, {args.concurrent} concurrent legs, {args.steps:,} steps per round",
            "steps", lambda on: _synthetic(on, args.concurrent, args.steps, args.scrape),
            args.rounds))
    if args.scenario in ("quizconnect", "both", "all"):
        try:
            __import__("yaypm.apps.quizconnect.app")
        except ImportError as e:
            print(f"quizconnect scenario skipped: {e}")
        else:
            results.append(_rounds(
                f"quizconnect on the simulator, {args.concurrent} concurrent calls "
                f"(3 legs each)", "calls",
                lambda on: _quizconnect(on, args.concurrent, args.scrape), args.rounds))
    if args.scenario in ("bench_quizconnect", "all"):
        for version in ("python", "dsm"):
            results.append(_rounds(
                f"bench_quizconnect.py --version {version}, {args.concurrent} concurrent calls "
                f"(4 legs each)", "calls",
                lambda on, v=version: _bench_quizconnect(on, args.concurrent, args.scrape, v),
                max(3, args.rounds // 3)))
    if args.max_cost is not None and any(r["cost"] > args.max_cost for r in results):
        print(f"FAILED: monitoring costs more than {args.max_cost:.0%}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
