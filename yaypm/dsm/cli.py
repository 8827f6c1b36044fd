"""`yaypm dsm …` sub-commands: `dsm check FILE...` and `dsm graph FILE`.

`yaypm/cli.py` calls `add_subparsers(subparsers)`; each command is a function taking the
argparse namespace and returning the exit status.
"""
from __future__ import annotations

import argparse
import sys
from typing import TextIO

from .checker import check_file
from .errors import DSMSyntaxError
from .parser import parse_file

__all__ = ["add_subparsers", "cmd_check", "cmd_graph"]


def add_subparsers(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `dsm` with its `check` and `graph` sub-commands; returns the `dsm` parser
    (so `dsm run` can be added to its subparsers later via `parser._dsm_subparsers`)."""
    dsm = subparsers.add_parser("dsm", help="DSM (SEMS DonkeySM) scripts")
    sub = dsm.add_subparsers(dest="dsm_command", required=True)
    dsm._dsm_subparsers = sub  # type: ignore[attr-defined]
    chk = sub.add_parser("check", help="parse and check DSM scripts (exit 1 on problems)")
    chk.add_argument("files", nargs="+", metavar="FILE")
    chk.add_argument("--strict", action="store_true", help="treat warnings as errors")
    chk.add_argument("--load-path", default=None, help="directory for #include (default: "
                     "the file's directory)")
    chk.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    chk.set_defaults(func=cmd_check)
    gr = sub.add_parser("graph", help="draw the state graph of a DSM script")
    gr.add_argument("file", metavar="FILE")
    gr.add_argument("-o", "--output", default=None, help="output file (default: stdout)")
    gr.add_argument("--dot", action="store_true", help="write DOT text instead of SVG")
    gr.add_argument("--current", default=None, help="state to highlight")
    gr.set_defaults(func=cmd_graph)
    return dsm


def cmd_check(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print every problem as `file:line:col: severity: message`; 1 if any error (or any
    warning under --strict), else 0."""
    out = out or sys.stdout
    status = 0
    for f in args.files:
        problems = check_file(f, strict=getattr(args, "strict", False),
                              load_path=getattr(args, "load_path", None))
        for p in problems:
            if p.severity == "error" or not getattr(args, "quiet", False):
                print(p, file=out)
            if p.severity == "error":
                status = 1
    return status


def cmd_graph(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Write the state graph as SVG (default) or DOT (`--dot`)."""
    from .graph import GraphvizMissingError, to_dot, to_svg
    out = out or sys.stdout
    try:
        script = parse_file(args.file)
    except DSMSyntaxError as e:
        print(e, file=sys.stderr)
        return 1
    try:
        text = to_dot(script, args.current) if args.dot else to_svg(script, args.current)
    except GraphvizMissingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        out.write(text)
    return 0
