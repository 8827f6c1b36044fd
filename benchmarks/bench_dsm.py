"""DSM runtime benchmark: key events/s through a session, and bytes per idle session.

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


if __name__ == "__main__":
    bench_events(2000)
    print(f"events/s (key -> transition -> 3 actions): {bench_events():,.0f}")
    print(f"bytes per idle session (incl. backend, monitoring record): {bench_idle_memory():,.0f}")
