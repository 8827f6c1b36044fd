"""Pictures and the `dsm check` / `dsm graph` sub-commands."""
from __future__ import annotations

import argparse
import io
import os
import shutil

import pytest

from yaypm.dsm import parse_file, parse_text
from yaypm.dsm.cli import add_subparsers, cmd_check, cmd_graph
from yaypm.dsm.graph import to_dot, to_svg

from dsm_helpers import QUIZ


def test_dot_has_states_labels_exception_style_and_highlight():
    s = parse_text('initial state A; state B;\ntransition "t 1" A - key(#key<10); not test($x==1) -> B;\n'
                   "transition e A - exception -> B;\ntransition u B -> NOWHERE;")
    dot = to_dot(s, current="B")
    assert '"A" [peripheries=2]' in dot
    assert '"B" [style="rounded,filled", fillcolor="gold"]' in dot
    assert '"A" -> "B" [label="t 1\\nkey(#key<10); not test($x==1)"]' in dot
    assert 'label="e\\nexception", style="dashed", color="red"' in dot
    assert '"NOWHERE" [style="dashed", color="grey"]' in dot


@pytest.mark.skipif(not shutil.which("dot"), reason="graphviz not installed")
def test_svg_of_quizconnect():
    svg = to_svg(parse_file(os.path.join(QUIZ, "quizconnect_caller.dsm")), current="WAIT_CALLEE")
    assert svg.lstrip().startswith("<?xml") and "WAIT_CALLEE" in svg


def _parse(argv):
    p = argparse.ArgumentParser(prog="yaypm")
    add_subparsers(p.add_subparsers(dest="command"))
    return p.parse_args(argv)


def test_cli_check_exit_codes(tmp_path):
    good = tmp_path / "good.dsm"
    good.write_text("initial state A; transition h A - hangup / stop -> A;")
    bad = tmp_path / "bad.dsm"
    bad.write_text("initial state A enter { nosuch() };\nstate B foo;")
    out = io.StringIO()
    args = _parse(["dsm", "check", str(good)])
    assert args.func(args, out) == 0 and out.getvalue() == ""
    out = io.StringIO()
    assert cmd_check(_parse(["dsm", "check", str(good), str(bad)]), out) == 1
    assert "bad.dsm:2:9: error: unexpected 'foo'" in out.getvalue()
    warn = tmp_path / "warn.dsm"
    warn.write_text("initial state A; transition t A -> Z;")
    assert cmd_check(_parse(["dsm", "check", str(warn)]), io.StringIO()) == 0
    assert cmd_check(_parse(["dsm", "check", "--strict", str(warn)]), io.StringIO()) == 1
    out = io.StringIO()
    cmd_check(_parse(["dsm", "check", str(tmp_path / "missing.dsm")]), out)
    assert "missing.dsm" in out.getvalue()


def test_cli_graph(tmp_path):
    f = os.path.join(QUIZ, "quizconnect_callee.dsm")
    out = io.StringIO()
    assert cmd_graph(_parse(["dsm", "graph", f, "--dot"]), out) == 0
    assert out.getvalue().startswith('digraph "quizconnect_callee"')
    if shutil.which("dot"):
        target = tmp_path / "g.svg"
        assert cmd_graph(_parse(["dsm", "graph", f, "-o", str(target)])) == 0
        assert "<svg" in target.read_text()
    bad = tmp_path / "bad.dsm"
    bad.write_text("state")
    assert cmd_graph(_parse(["dsm", "graph", str(bad), "--dot"]), io.StringIO()) == 1
