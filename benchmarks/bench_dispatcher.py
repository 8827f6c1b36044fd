"""Dispatcher throughput: engine ``%%>message`` in -> persistent handler -> answer line out.

The dispatcher runs over an in-memory connection (bytes in, bytes out, no socket): each
recorded engine message (every ``<< %%>message`` line of the traces, call.route, chan.dtmf,
chan.notify, engine.timer...) is decoded, parsed, handed to a persistent ``handler()`` that
answers ``m.ret(True, "dumb/")``, and the answer is encoded to bytes.  The baseline is
python-yate's codec doing the least the same job needs (``parse_yate_message`` + the
answer's ``encode_answer_for_yate``), measured in the same run: python-yate's own dispatcher
needs a live asyncio connection, so its codec is its upper bound.

    python benchmarks/bench_dispatcher.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from typing import List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from twisted.internet.task import Clock  # noqa: E402

from bench_codec import find_traces  # noqa: E402
from yaypm.dispatcher import Dispatcher  # noqa: E402
from yaypm.testing.traces import load_trace  # noqa: E402

try:
    from yate import protocol as pyyate
except ImportError:                                   # pragma: no cover
    pyyate = None


def engine_messages(traces_dir: str) -> List[bytes]:
    out = []
    for path in sorted(glob.glob(os.path.join(traces_dir, "*.txt"))):
        if path.endswith(".timed.txt"):
            continue
        for e in load_trace(path).lines(direction="<<"):
            if e.line.startswith("%%>message:"):
                raw = e.raw()
                try:
                    pyyate.parse_yate_message(raw)
                except Exception:
                    continue
                out.append(raw)
    return out


class Bench:
    """One dispatcher with a persistent handler for every message name in the mix."""

    def __init__(self, lines: List[bytes], log_wire: bool) -> None:
        self.out: List[bytes] = []
        self.dispatcher = Dispatcher(Clock(), answer_deadline=None)
        self.dispatcher.log_wire = log_wire
        out = self.out

        def write(text: str) -> None:
            out.append(text.encode("utf-8", "surrogateescape") + b"\n")

        self.dispatcher.attach(write)
        names = {raw.split(b":")[3].decode() for raw in lines}
        for name in names:
            self.dispatcher.handler(name, lambda m: m.ret(True, "dumb/"))
            self.dispatcher.line_received(f"%%<install:100:{name}:true")
        del self.out[:]
        # unique ids per round, as Yate gives (an id is reused only once answered)
        self.lines = lines

    def run(self, lines: List[bytes]) -> None:
        received = self.dispatcher.line_received
        for raw in lines:
            received(raw.decode("utf-8", "surrogateescape"))
        assert len(self.out) == len(lines)
        del self.out[:]


def pyyate_codec(lines: List[bytes]) -> None:
    parse = pyyate.parse_yate_message
    for raw in lines:
        m = parse(raw)
        m.return_value = "dumb/"
        m.encode_answer_for_yate(True) + b"\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--traces", default=None)
    args = ap.parse_args(argv)
    if pyyate is None:
        sys.exit("bench_dispatcher: pip install python-yate (the baseline) first")
    lines = engine_messages(find_traces(args.traces))
    quiet, logged = Bench(lines, log_wire=False), Bench(lines, log_wire=True)
    fns = (quiet.run, logged.run, pyyate_codec)
    for fn in fns:
        fn(lines)
    best = [0.0] * len(fns)
    deadline = time.perf_counter() + len(fns) * args.seconds
    while time.perf_counter() < deadline:
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn(lines)
            best[i] = max(best[i], len(lines) / (time.perf_counter() - t0))
    theirs = best[2]
    print(f"message mix: {len(lines)} recorded engine messages "
          f"({sum(map(len, lines)) / len(lines):.0f} bytes on average)")
    print(f"{'path':<62}{'messages/s':>12}{'ratio':>8}")
    for label, rate in [
            ("yaypm: bytes -> Dispatcher -> handler -> answer bytes", best[0]),
            ("  same, every line also logged to yaypm.wire (debug)", best[1]),
            ("python-yate codec only: parse + encode answer", theirs)]:
        print(f"{label:<62}{rate:>12,.0f}{rate / theirs:>7.2f}x")
    for bench in (quiet, logged):
        assert bench.dispatcher.pending_count() == 0, "messages left unanswered"
    print(f"(dispatchers answered {quiet.dispatcher.stats['answered']:,} + "
          f"{logged.dispatcher.stats['answered']:,} messages, none left pending)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
