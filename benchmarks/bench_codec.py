"""Codec throughput: yaypm.protocol vs python-yate's codec, on a line mix taken from the traces.

Each line is handled as it travels: bytes from the socket -> record -> bytes back (a parse and
an encode per line).  python-yate (PyPI ``python-yate``, module ``yate.protocol``) is measured in
the same run on the same lines: ``parse_yate_message(bytes)`` and the object's
``encode()``/``encode_answer_for_yate()``.  Lines that python-yate cannot read (``Error in``,
``output``, invalid UTF-8...) are left out of the mix for both.

    python benchmarks/bench_codec.py [--seconds 2] [--traces DIR]
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from typing import Callable, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from yaypm.protocol import parse_line  # noqa: E402
from yaypm.testing.traces import find_traces as _find_traces  # noqa: E402
from yaypm.testing.traces import load_trace  # noqa: E402

try:
    from yate import protocol as pyyate
except ImportError:                                   # pragma: no cover
    pyyate = None


def find_traces(explicit: str | None) -> str:
    for cand in [explicit, os.environ.get("YAYPM_TRACES")]:
        if cand and os.path.exists(os.path.join(cand, "A0_connect.txt")):
            return cand
    found = _find_traces(HERE)
    if found is None:
        sys.exit("bench_codec: traces not found (use --traces DIR)")
    return str(found)


def line_mix(traces_dir: str) -> List[Tuple[bytes, bool]]:
    """(raw line, script_side) for every recorded line both codecs can read."""
    mix = []
    for path in sorted(glob.glob(os.path.join(traces_dir, "*.txt"))):
        if path.endswith(".timed.txt"):
            continue
        for e in load_trace(path).lines():
            raw = e.raw()
            script = e.direction == ">>"
            try:
                rec = parse_line(e.line, script_side=script)
                if rec.encode(engine_side=not script) != e.line:
                    continue
                if pyyate is not None:
                    _pyyate_encode(pyyate.parse_yate_message(raw))
            except Exception:
                continue
            mix.append((raw, script))
    return mix


def _pyyate_encode(obj) -> bytes:
    if isinstance(obj, pyyate.Message):
        return obj.encode_answer_for_yate(obj.processed if obj.reply else True)
    return obj.encode()


def ours_round_trip(mix):
    for raw, script in mix:
        parse_line(raw.decode("utf-8", "surrogateescape"), script_side=script) \
            .encode(engine_side=not script).encode("utf-8", "surrogateescape")


def ours_parse(mix):
    for raw, script in mix:
        parse_line(raw.decode("utf-8", "surrogateescape"), script_side=script)


def pyyate_round_trip(mix):
    parse, enc = pyyate.parse_yate_message, _pyyate_encode
    for raw, _ in mix:
        enc(parse(raw))


def pyyate_parse(mix):
    parse = pyyate.parse_yate_message
    for raw, _ in mix:
        parse(raw)


def measure(fns, mix, seconds: float) -> List[float]:
    """Lines per second of each function: rounds alternate between them (so a busy machine
    slows both alike) and the best round of each counts."""
    for fn in fns:
        fn(mix)                                      # warm up
    best = [0.0] * len(fns)
    deadline = time.perf_counter() + seconds * len(fns)
    while time.perf_counter() < deadline:
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn(mix)
            best[i] = max(best[i], len(mix) / (time.perf_counter() - t0))
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    ap.add_argument("--traces", default=None)
    args = ap.parse_args(argv)
    if pyyate is None:
        sys.exit("bench_codec: pip install python-yate (the baseline) first")
    mix = line_mix(find_traces(args.traces))
    size = sum(len(r) for r, _ in mix)
    print(f"line mix: {len(mix)} recorded lines, {size / len(mix):.0f} bytes on average "
          f"(every kind both codecs read, both directions)")
    print(f"{'operation':<26}{'yaypm lines/s':>15}{'python-yate lines/s':>21}{'ratio':>8}")
    results = {}
    for label, ours, theirs in [("parse + encode", ours_round_trip, pyyate_round_trip),
                                ("parse only", ours_parse, pyyate_parse)]:
        a, b = measure([ours, theirs], mix, args.seconds)
        results[label] = a / b
        print(f"{label:<26}{a:>15,.0f}{b:>21,.0f}{a / b:>7.2f}x")
    target = 3.0
    verdict = "meets" if results["parse + encode"] >= target else "BELOW"
    print(f"target: yaypm >= {target:.0f}x python-yate on parse + encode: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
