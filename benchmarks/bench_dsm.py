"""DSM benchmarks: key events/s through a session, and bytes per idle session — on the
FakeBackend (runtime alone) and on the Yate adapter driven by the simulator (the whole path:
chan.dtmf line -> dispatcher -> switchboard -> Leg -> LegBackend -> session -> transition ->
actions -> answer line).

Run: python benchmarks/bench_dsm.py
"""
from __future__ import annotations

import gc
import time
import tracemalloc

from twisted.internet.task import Clock

from yaypm.dsm import Engine, FakeBackend

SCRIPT = """
initial state MENU;
transition "digit" MENU - key(#key < 10) / {
  append($digits, #key);
  set($last=#key);
  inc($count);
} -> MENU;
transition "hash" MENU - key(#key == 11) / clear($digits) -> MENU;
transition "bye" MENU - hangup / stop(false) -> END;
state END;
"""


class NullBackend(FakeBackend):
    """FakeBackend that does not keep a call log (so memory stays flat)."""

    def _rec(self, *call):
        return None


def bench_events(n: int = 100_000) -> float:
    eng = Engine.from_scripts({"menu": SCRIPT}, clock=Clock())
    s = eng.create_session("menu", NullBackend())
    s.start()
    t0 = time.perf_counter()
    for i in range(n):
        s.key(i % 10)
        if len(s.var.get("digits", "")) > 50:
            s.key(11)
    dt = time.perf_counter() - t0
    assert s.var["count"] == str(n)
    return n / dt


def bench_idle_memory(n: int = 2000) -> float:
    eng = Engine.from_scripts({"menu": SCRIPT}, clock=Clock())
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = []
    for _ in range(n):
        s = eng.create_session("menu", NullBackend(), selects={"user": "100"})
        s.start()
        keep.append(s)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / n


# -- on the Yate adapter, driven by the simulator ------------------------------------------------

SIM_SCRIPT = """
initial state START;
transition "answered" START - sessionStart -> MENU;
state MENU;
transition "digit" MENU - keyTest(#key < 10) / {
  append($digits, #key);
  set($last=#key);
  inc($count);
} -> MENU;
transition "hash" MENU - keyTest(#key == 11) / clear($digits) -> MENU;
transition "bye" (START, MENU) - hangup / stop(false) -> END;
state END;
"""


def _sim_runner(n_calls: int):
    from yaypm.dsm.yate import DSMRunner
    from yaypm.registry import CallRegistry
    from yaypm.testing.simulator import Simulator

    from yaypm.dispatcher import Dispatcher
    Dispatcher.log_wire = False            # as `yaypm dsm run` without -v
    sim = Simulator(wire_log=False)
    eng = Engine.from_scripts({"menu": SIM_SCRIPT}, clock=sim.clock,
                              config={"route.menu": "100"})
    runner = DSMRunner(eng, registry=CallRegistry(sim.clock))
    sim.connect(runner.attach)
    calls = [sim.place_call("100", caller=f"c{i}") for i in range(n_calls)]
    sim.advance(0.5)
    return sim, eng, runner, calls


def bench_sim_events(n: int = 20_000) -> float:
    """Key presses/s through one simulated call (each key: a chan.dtmf handled and answered,
    a transition with three actions)."""
    sim, eng, runner, [call] = _sim_runner(1)
    session = next(iter(eng.registry.sessions.values()))
    chan = call.chan
    keys = "1234567890" * 5 + "#"
    t0 = time.perf_counter()
    for i in range(n):
        sim.engine.run(chan.remote_dtmf, keys[i % len(keys)], "info")
    dt = time.perf_counter() - t0
    assert int(session.var["count"]) == n - n // len(keys), session.var["count"]
    call.hangup()
    sim.advance(1)
    sim.close()
    return n / dt


def bench_sim_session_memory(n: int = 500) -> float:
    """Bytes per answered, idle DSM call allocated by yaypm (dispatcher, switchboard, Leg,
    LegBackend, Session, registry record) — the simulator's own objects not counted."""
    import os

    import yaypm
    root = os.path.dirname(yaypm.__file__)
    keep = tracemalloc.Filter(True, os.path.join(root, "*"))
    drop = tracemalloc.Filter(False, os.path.join(root, "testing", "*"))
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot().filter_traces([keep, drop])
    sim, eng, runner, calls = _sim_runner(n)
    assert len(eng.registry.sessions) == n and all(c.is_answered for c in calls)
    gc.collect()
    after = tracemalloc.take_snapshot().filter_traces([keep, drop])
    tracemalloc.stop()
    size = sum(s.size_diff for s in after.compare_to(before, "filename"))
    for c in calls:
        c.hangup()
    sim.advance(1)
    assert not eng.registry.sessions
    sim.close()
    return size / n


if __name__ == "__main__":
    bench_events(2000)
    print(f"events/s (key -> transition -> 3 actions): {bench_events():,.0f}")
    print(f"bytes per idle session (incl. backend, monitoring record): {bench_idle_memory():,.0f}")
    bench_sim_events(2000)
    print(f"simulator: key presses/s through a Yate call (chan.dtmf -> transition -> 3 actions): "
          f"{bench_sim_events():,.0f}")
    print(f"simulator: bytes per answered idle DSM call allocated by yaypm (adapter, leg, "
          f"session, registry): {bench_sim_session_memory():,.0f}")
