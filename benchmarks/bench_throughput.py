"""Handler throughput on a real Yate: yaypm vs a raw stdlib client vs python-yate.

One engine per ``idlemsec`` value (Yate's default 5 ms, and 1 ms as in
``traces/E_throughput_idlemsec1.txt``).  A driver (a stdlib socket on extmodule's global
listener, TCP_NODELAY + TCP_QUICKACK) sends ``%%>message:<id>:0:<name>::n=<i>`` pipelined,
at most ``--window`` unanswered; Yate dispatches each to the handler under test, a separate
process on its own extmodule connection, which answers it handled:

  engine only              no handler for the name: what the driver and Yate cost alone
  raw socket               a stdlib loop answering ``%%<message:<id>:true:`` at once,
                           TCP_NODELAY; "+ QUICKACK" re-arms TCP_QUICKACK after every read
  yaypm TCP                yaypm's Dispatcher on ExtModuleLineProtocol(quickack=True|False),
                           as ``yaypm run`` runs it (wire logging off)
  python-yate              python-yate 0.5's asyncio client (YateAsync over TCP, on the
                           role-less listener: it sends %%>connect), handler returning True

Each measurement runs ``--seconds`` (or ``--count`` messages, whichever ends first) after a
warm-up, ``--rounds`` times; the table shows the median rate, its ratio to the raw
QUICKACK socket and to python-yate, and the handler process's CPU time per message.  Yate writes each line and its newline in two write()s
with Nagle on: a peer that delays its ACKs waits ~40 ms per exchange (yate-module.md), which is
what TCP_QUICKACK avoids.

    python benchmarks/bench_throughput.py [--seconds 4] [--window 100] [--idlemsec 5,1]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from yaypm.testing.yate import YateEngine, find_yate  # noqa: E402

from _rawclient import RAW_HANDLER, RawClient  # noqa: E402

YAYPM_HANDLER = '''
import sys
from twisted.internet import reactor
from twisted.internet.protocol import ClientFactory
from yaypm.connectors import ExtModuleLineProtocol
from yaypm.dispatcher import Dispatcher

port, name, quickack = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
Dispatcher.log_wire = False          # as `yaypm run` without -v


def start(dispatcher):
    reg = dispatcher.handler(name, lambda m: True, priority=100)
    reg.installed.addCallback(lambda _: print("ready", flush=True))


factory = ClientFactory.forProtocol(lambda: ExtModuleLineProtocol(start, quickack=quickack))
factory.noisy = False
reactor.connectTCP("127.0.0.1", port, factory)
reactor.run()
'''

PYTHON_YATE_HANDLER = '''
import asyncio, logging, sys
from yate.asyncio import YateAsync

port, name = int(sys.argv[1]), sys.argv[2]
logging.getLogger("yate").setLevel(logging.WARNING)


async def main(yate):
    await yate.register_message_handler_async(name, lambda msg: True, 100)
    print("ready", flush=True)
    await asyncio.Event().wait()

YateAsync("127.0.0.1", port).run(main)
'''

# (label, code, listener, extra argv): the listener is "global" (role=global) or "connect"
# (role-less: the client sends %%>connect first).
HANDLERS: List[Tuple[str, Optional[str], str, List[str]]] = [
    ("engine only (no handler)", None, "global", []),
    ("raw socket", RAW_HANDLER, "global", ["0"]),
    ("raw socket + QUICKACK", RAW_HANDLER, "global", ["1"]),
    ("yaypm TCP, quickack=False", YAYPM_HANDLER, "global", ["0"]),
    ("yaypm TCP, quickack=True", YAYPM_HANDLER, "global", ["1"]),
    ("python-yate 0.5 (asyncio)", PYTHON_YATE_HANDLER, "connect", []),
]


class Driver(RawClient):
    """Sends pipelined messages on one extmodule connection and counts the answers."""

    def _answers(self) -> Tuple[int, int]:
        """Block for at least one line; (answers, answers processed=true)."""
        answers = handled = 0
        for ln in self.read_lines():
            if ln.startswith(b"%%<message:d"):
                answers += 1
                handled += ln.split(b":", 3)[2] == b"true"
        return answers, handled

    def run(self, name: bytes, window: int, count: int, seconds: float) -> Tuple[int, int, float]:
        """(answered, handled, elapsed): send until ``count`` or ``seconds``, drain the rest."""
        sent = done = handled = 0
        t0 = time.perf_counter()
        stop = t0 + seconds
        while done < sent or (sent < count and time.perf_counter() < stop):
            batch = []
            while sent < count and sent - done < window and time.perf_counter() < stop:
                self.n += 1
                batch.append(b"%%%%>message:d%d:0:%s::n=%d\n" % (self.n, name, sent))
                sent += 1
            if batch:
                self.sock.sendall(b"".join(batch))
            if done < sent:
                a, h = self._answers()
                done += a
                handled += h
        return done, handled, time.perf_counter() - t0


def add_lines(conf: str, section: str, lines: List[str]) -> str:
    """Insert ``lines`` after the ``[section]`` header line."""
    return re.sub(rf"^\[{section}\][ \t]*$", lambda m: m.group(0) + "\n" + "\n".join(lines),
                  conf, count=1, flags=re.M)


def start_handler(code: str, port: int, name: str, extra: List[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(port), name] + extra,
                         stdout=subprocess.PIPE, env=env, text=True)
    if p.stdout is None or p.stdout.readline().strip() != "ready":
        p.kill()
        raise RuntimeError(f"handler for {name} did not start")
    return p


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(engine: YateEngine, args: argparse.Namespace
            ) -> Tuple[Dict[str, List[float]], Dict[str, List[float]]]:
    """Rates (msg/s) and handler CPU per message (µs) per handler label, one per round."""
    rates: Dict[str, List[float]] = {label: [] for label, *_ in HANDLERS}
    cpu: Dict[str, List[float]] = {label: [] for label, *_ in HANDLERS}
    drv = Driver(engine.global_port)
    try:
        for rnd in range(args.rounds):
            for i, (label, code, listener, extra) in enumerate(HANDLERS):
                name = f"bench.h{i}r{rnd}"
                proc = None
                if code is not None:
                    port = engine.global_port if listener == "global" else engine.connect_port
                    proc = start_handler(code, port, name, extra)
                try:
                    drv.run(name.encode(), args.window, 200, 1.0)          # warm-up
                    c0 = cpu_seconds(proc.pid) if proc is not None else 0.0
                    done, handled, secs = drv.run(name.encode(), args.window, args.count,
                                                  args.seconds)
                    if proc is not None:
                        cpu[label].append((cpu_seconds(proc.pid) - c0) / max(done, 1) * 1e6)
                finally:
                    if proc is not None:
                        proc.terminate()
                        proc.wait(5)
                expect = 0 if code is None else done
                if handled != expect:
                    raise RuntimeError(f"{label}: {handled} of {done} answers handled")
                rates[label].append(done / secs)
                print(f"  round {rnd + 1} {label:<28} {done:>6} msgs {secs:6.2f} s "
                      f"{done / secs:8.0f} msg/s", file=sys.stderr)
    finally:
        drv.close()
    return rates, cpu


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each measurement")
    ap.add_argument("--count", type=int, default=200000, help="messages per measurement, at most")
    ap.add_argument("--window", type=int, default=100, help="unanswered messages at most")
    ap.add_argument("--rounds", type=int, default=3, help="measurements per handler (median)")
    ap.add_argument("--idlemsec", default="5,1",
                    help="Yate [general] idlemsec values, one engine each (5 = Yate's default)")
    args = ap.parse_args(argv)

    prefix = find_yate()
    if prefix is None:
        sys.exit("bench_throughput: no Yate build (run scripts/install-yate)")
    results: Dict[int, Dict[str, float]] = {}
    cpus: Dict[int, Dict[str, float]] = {}
    for idle in [int(x) for x in args.idlemsec.split(",") if x]:
        run = Path(tempfile.mkdtemp(prefix=f"yaypm-bench-throughput-{idle}-"))
        yate_conf = (REPO / "yate-conf" / "yate.conf").read_text()
        if idle != 5:
            yate_conf = add_lines(yate_conf, "general", [f"idlemsec={idle}"])
        engine = YateEngine(prefix, run, verbosity=0, conf_overrides={"yate.conf": yate_conf})
        print(f"idlemsec={idle}: Yate at {run}", file=sys.stderr)
        try:
            engine.start()
            rates, cpu = measure(engine, args)
        finally:
            engine.stop()
        results[idle] = {label: statistics.median(r) for label, r in rates.items()}
        cpus[idle] = {label: statistics.median(c) for label, c in cpu.items() if c}

    print(f"\nYate {prefix.name}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
          f"window {args.window}, {args.seconds:g} s per measurement, median of {args.rounds}; "
          f"msg/s (x raw+QUICKACK, x python-yate), handler CPU per message\n")
    idles = list(results)
    head = ["handler"] + [f"idlemsec={i}" for i in idles]
    widths = [28] + [40] * len(idles)
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for label, *_ in HANDLERS:
        cells = [label.ljust(widths[0])]
        for idle in idles:
            r = results[idle]
            rate = r[label]
            raw, pyy = r["raw socket + QUICKACK"], r["python-yate 0.5 (asyncio)"]
            c = cpus[idle].get(label)
            cpu_text = f"{c:5.0f} µs" if c is not None else ""
            cells.append(f"{rate:8.0f} ({rate / raw:4.2f}x, {rate / pyy:5.2f}x) {cpu_text}"
                         .ljust(widths[1]))
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
