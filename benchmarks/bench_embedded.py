"""Handler round trips on one real Yate: embedded (yaypmhost) vs yaypm over TCP vs a raw socket.

One engine, one run.  A driver (a stdlib socket on extmodule's global listener, TCP_NODELAY and
TCP_QUICKACK) sends ``%%>message`` lines; Yate dispatches each message to the handler under
test, which answers it handled:

  engine only   no handler for the name: what the driver and Yate cost by themselves
  embedded      a yaypm app inside Yate (yaypmhost.yate): Yate thread -> reactor -> answer
  yaypm TCP     yaypm's Dispatcher over TCPDispatcherFactory, in its own process
  raw socket    a stdlib loop in its own process answering "%%<message:<id>:true:" at once,
                with TCP_NODELAY and TCP_QUICKACK re-armed after every read

Two patterns per handler: sequential (send one, wait for its answer: latency) and pipelined
(a window of outstanding messages: throughput).  Yate dispatches messages a script sends on
its worker threads ([general] minworkers, set with --workers).

    python benchmarks/bench_embedded.py [--sequential 2000] [--pipelined 20000] [--window 64]
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
from typing import List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from yaypm.embedded_cli import BuildError, build_module  # noqa: E402
from yaypm.testing.yate import YateEngine, find_yate  # noqa: E402

from _rawclient import RAW_HANDLER, RawClient  # noqa: E402

PARAMS = b":called=1234:caller=5678:billid=1700000000-1"

EMBEDDED_APP = '''
import threading, time
import _yaypmhost
import yaypm.embedded
from twisted.internet import reactor

PARAMS = [("called", "1234"), ("caller", "5678"), ("billid", "1700000000-1")]


def drive(m):
    """bench.drive: Engine::dispatch(target) from `threads` Python threads (GIL released while
    Yate dispatches), for `seconds` or `count` messages; answers with the latencies."""
    target, threads = m["target"], int(m["threads"])
    count, seconds = int(m["count"]), float(m["seconds"])
    lat = [[] for _ in range(threads)]
    handled = [0] * threads

    def work(i):
        end = time.perf_counter() + seconds
        mine = lat[i]
        while len(mine) < count // threads and time.perf_counter() < end:
            t0 = time.perf_counter()
            ok = _yaypmhost.dispatch(0, target, "", PARAMS)[0]
            mine.append(time.perf_counter() - t0)
            handled[i] += ok

    def run():
        t0 = time.perf_counter()
        ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wall = time.perf_counter() - t0
        all_lat = sorted(x for part in lat for x in part)
        reactor.callFromThread(finish, all_lat, wall, sum(handled))

    def finish(all_lat, wall, ok):
        n = len(all_lat)
        m["n"] = n
        m["handled"] = ok
        m["wall"] = wall
        m["p50"] = all_lat[n // 2] if n else 0
        m["p99"] = all_lat[max(0, int(n * 0.99) - 1)] if n else 0
        m.ret(True)
    threading.Thread(target=run).start()


def start(yate):
    yate.handler("bench.embedded", lambda m: True, priority=50)
    yate.handler("bench.drive", drive)

if __name__ == "__embedded_yaypm_module__":
    yaypm.embedded.embededStart(start)
reactor.run(0)
'''

TCP_HANDLER = '''
import sys
from twisted.internet import reactor
from yaypm import TCPDispatcherFactory

def start(yate):
    reg = yate.handler("bench.tcp", lambda m: True, priority=50)
    reg.installed.addCallback(lambda _: (print("ready", flush=True)))

reactor.connectTCP("127.0.0.1", int(sys.argv[1]), TCPDispatcherFactory(start))
reactor.run()
'''

class Driver(RawClient):
    """extmodule client sending messages and matching answers by id."""

    def line(self, name: bytes) -> tuple[bytes, bytes]:
        self.n += 1
        mid = b"d%d" % self.n
        return mid, b"%%>message:" + mid + b":0:" + name + b":" + PARAMS + b"\n"

    def answers(self) -> List[bytes]:
        """Block for at least one line; return the ids of the answers received."""
        return [ln.split(b":", 3)[1] for ln in self.read_lines()
                if ln.startswith(b"%%<message:") and ln.split(b":", 2)[2].startswith((b"t", b"f"))]

    def sequential(self, name: bytes, count: int) -> List[float]:
        times = []
        for _ in range(count):
            mid, data = self.line(name)
            t0 = time.perf_counter()
            self.sock.sendall(data)
            while mid not in self.answers():
                pass
            times.append(time.perf_counter() - t0)
        return times

    def pipelined(self, name: bytes, count: int, window: int) -> float:
        sent = done = 0
        t0 = time.perf_counter()
        while done < count:
            batch = []
            while sent < count and sent - done < window:
                batch.append(self.line(name)[1])
                sent += 1
            if batch:
                self.sock.sendall(b"".join(batch))
            done += len(self.answers())
        return time.perf_counter() - t0

    def request(self, name: bytes, params: bytes = b"") -> tuple[bool, dict]:
        """Send one message, wait for its answer: (processed, params)."""
        self.n += 1
        mid = b"d%d" % self.n
        self.sock.sendall(b"%%>message:" + mid + b":0:" + name + b":" + params + b"\n")
        while True:
            while b"\n" not in self.buf:
                data = self.sock.recv(1 << 16)
                if not data:
                    raise EOFError("Yate closed the driver connection")
                self.buf += data
            line, self.buf = self.buf.split(b"\n", 1)
            if line.startswith(b"%%<message:" + mid + b":"):
                fields = line.decode().split(":")
                return fields[2] == "true", dict(f.split("=", 1) for f in fields[5:] if "=" in f)

    def drive(self, target: bytes, threads: int, count: int, seconds: float) -> dict:
        """The in-engine driver of the embedded app (Engine::dispatch from Python threads)."""
        ok, res = self.request(b"bench.drive", b":target=%s:threads=%d:count=%d:seconds=%f" % (
            target, threads, count, seconds))
        if not ok:
            raise RuntimeError("bench.drive was not handled")
        return {k: float(v) for k, v in res.items() if k in ("n", "handled", "wall", "p50", "p99")}


def add_lines(conf: str, section: str, lines: List[str]) -> str:
    """Insert ``lines`` after the ``[section]`` header line (not a mention in a comment)."""
    return re.sub(rf"^\[{section}\][ \t]*$", lambda m: m.group(0) + "\n" + "\n".join(lines),
                  conf, count=1, flags=re.M)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="time limit of each in-engine measurement")
    ap.add_argument("--sequential", type=int, default=5000,
                    help="messages of each sequential in-engine measurement (at most)")
    ap.add_argument("--threads", type=int, default=4, help="in-engine concurrent dispatchers")
    ap.add_argument("--pipelined", type=int, default=10000,
                    help="messages of each pipelined extmodule-driver measurement")
    ap.add_argument("--window", type=int, default=64, help="outstanding messages when pipelined")
    ap.add_argument("--workers", type=int, default=4, help="Yate [general] minworkers")
    ap.add_argument("--idlemsec", type=int, default=0,
                    help="Yate [general] idlemsec (0: Yate's default, 5 ms); extmodule polls "
                         "its sockets and answer queues at this interval")
    args = ap.parse_args(argv)

    prefix = find_yate()
    if prefix is None:
        sys.exit("bench_embedded: no Yate build (run scripts/install-yate)")
    try:
        module = build_module(prefix, Path(tempfile.gettempdir()) / "yaypm-bench-module")
    except BuildError as e:
        sys.exit(f"bench_embedded: {e}")

    run = Path(tempfile.mkdtemp(prefix="yaypm-bench-"))
    app = run / "bench_app.py"
    app.write_text(EMBEDDED_APP)
    yate_conf = (REPO / "yate-conf" / "yate.conf").read_text()
    general = [f"extrapath={module.parent}", f"minworkers={args.workers}"]
    if args.idlemsec:
        general.append(f"idlemsec={args.idlemsec}")
    yate_conf = add_lines(yate_conf, "general", general)
    yate_conf = add_lines(yate_conf, "modules", ["yaypmhost.yate=yes"])
    engine = YateEngine(prefix, run, verbosity=0, conf_overrides={
        "yate.conf": yate_conf,
        "yaypmhost.conf": (f"[general]\npython_path={REPO}\ntimeout=300000\n"
                           f"[scripts]\nbench={app}\n")})
    procs: List[subprocess.Popen] = []
    try:
        engine.start()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        for code, extra in ((TCP_HANDLER, []), (RAW_HANDLER, ["bench.raw", "1", "50"])):
            p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code),
                                  str(engine.global_port)] + extra, stdout=subprocess.PIPE,
                                 env=env, text=True)
            procs.append(p)
            if p.stdout is None or p.stdout.readline().strip() != "ready":
                sys.exit("bench_embedded: a handler process did not start")
        drv = Driver(engine.global_port)
        deadline = time.monotonic() + 10
        while not drv.request(b"bench.embedded")[0]:
            if time.monotonic() > deadline:
                sys.exit("bench_embedded: the embedded app did not install its handler\n"
                         + engine.log_text()[-3000:])
            time.sleep(0.05)

        rows = [("engine only (no handler)", b"bench.none"),
                ("embedded (yaypmhost)", b"bench.embedded"),
                ("yaypm Dispatcher over TCP", b"bench.tcp"),
                ("raw socket + TCP_QUICKACK", b"bench.raw")]
        results = []
        for label, name in rows:
            drv.sequential(name, 50)                        # warm-up
            drv.pipelined(name, 500, args.window)
            drv.drive(name, 1, 200, 1.0)
            one = drv.drive(name, 1, args.sequential, args.seconds)
            many = drv.drive(name, args.threads, 1 << 30, args.seconds)
            expect = 0 if name == b"bench.none" else one["n"]
            if one["handled"] != expect:
                sys.exit(f"bench_embedded: {label}: {one['handled']:.0f} of {one['n']:.0f} "
                         "messages handled")
            ext = drv.sequential(name, 100)
            secs = drv.pipelined(name, args.pipelined, args.window)
            results.append((label, one["p50"] * 1e6, one["p99"] * 1e6, one["n"] / one["wall"],
                            many["n"] / many["wall"], statistics.median(ext) * 1e6,
                            args.pipelined / secs))
    finally:
        for p in procs:
            p.terminate()
            p.wait(5)
        engine.stop()

    print(f"\nYate {prefix.name}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"minworkers={args.workers}, idlemsec={args.idlemsec or 'default (5)'}")
    print("in-engine: Engine::dispatch from Python threads inside Yate, sequential "
          f"(1 thread, <= {args.sequential} msgs or {args.seconds:g} s) and "
          f"{args.threads} threads ({args.seconds:g} s);")
    print(f"extmodule driver: a socket client, sequential (100 msgs) and pipelined "
          f"({args.pipelined} msgs, window {args.window}).\n")
    head = ("handler", "in-engine p50 µs", "p99 µs", "seq msg/s", f"{args.threads} thr msg/s",
            "ext seq p50 µs", "ext pipelined msg/s")
    widths = [27, 16, 8, 9, 11, 14, 19]
    print("| " + " | ".join(h.ljust(w) if i == 0 else h.rjust(w)
                            for i, (h, w) in enumerate(zip(head, widths))) + " |")
    print("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":"
                         for i, w in enumerate(widths)) + "|")
    for row in results:
        cells = [row[0].ljust(widths[0])] + [f"{v:>{w}.0f}" for v, w in zip(row[1:], widths[1:])]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
