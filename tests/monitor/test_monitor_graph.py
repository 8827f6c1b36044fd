"""Reading dsm_stategraph (spec §3.5) into states and edges, and drawing it."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from yaypm.monitor.graph import StatePath, dot_source, have_dot, render_dot, svg

from monitor_helpers import CALLER_GRAPH


def test_path_of_the_tutorial_caller() -> None:
    p = StatePath.from_record({"dsm_diag": "quizconnect_caller", "dsm_state": "WAIT_CALLEE",
                               "dsm_stategraph": CALLER_GRAPH})
    assert [p.short(s) for s in p.states] == ["START", "RUN_INVITE", "CREATE_CALLEE_LEGS",
                                              "WAIT_CALLEE"]
    assert [(p.short(e.source), p.short(e.target), e.label, e.steps) for e in p.edges] == [
        ("START", "RUN_INVITE", "got INVITE in caller leg", [1]),
        ("RUN_INVITE", "CREATE_CALLEE_LEGS", "we have results", [2]),
        ("CREATE_CALLEE_LEGS", "CREATE_CALLEE_LEGS", "create one more callee legs", [3, 4]),
        ("CREATE_CALLEE_LEGS", "WAIT_CALLEE", "done creating callee legs", [5])]
    assert p.current == "quizconnect_caller/WAIT_CALLEE"


def test_legacy_graph_with_the_2010_leading_zero_and_a_reinit() -> None:
    # seed 002's caller record: a 0 first, re-init to START at sessionStart (no transition)
    g = [0, "quizconnect_caller/START", "> got INVITE in caller leg >",
         "quizconnect_caller/WAIT_CALLEE", "quizconnect_caller/START",
         "> got session start in caller leg >", "quizconnect_caller/WAIT_CALLEE"]
    p = StatePath.from_record({"dsm_diag": "quizconnect_caller", "dsm_stategraph": g})
    assert [(p.short(e.source), p.short(e.target), e.label) for e in p.edges] == [
        ("START", "WAIT_CALLEE", "got INVITE in caller leg"), ("WAIT_CALLEE", "START", ""),
        ("START", "WAIT_CALLEE", "got session start in caller leg")]
    text = svg(p)
    assert text.count('class="edge visited jump"') == 1


def test_records_without_a_graph() -> None:
    p = StatePath.from_record({"dsm_diag": "d", "dsm_state": "S"})
    assert (p.states, p.edges, p.current) == (["d/S"], [], "d/S")
    empty = StatePath.from_record({"app": "voicemail"})
    assert (empty.states, empty.current) == ([], None)
    ET.fromstring(svg(empty))                              # still a valid (empty) SVG
    # another diagram after jumpFSM: prefixed labels keep the diagram
    p = StatePath.from_record({"dsm_diag": "b", "dsm_state": "X",
                               "dsm_stategraph": ["a/START", "b/X"]})
    assert [p.short(s) for s in p.states] == ["a/START", "X"]


def test_svg_is_well_formed_and_escapes_names() -> None:
    p = StatePath.from_record({"dsm_diag": "d", "dsm_stategraph": [
        "d/A<&>", '> say "hi" & <go> >', "d/B", "> back >", "d/A<&>", "> skip >", "d/C",
        "> far >", "d/A<&>", "> down >", "d/C"]})
    root = ET.fromstring(svg(p))                           # parses: everything escaped
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert 'say "hi" & <go>' in texts and "A<&>" in texts
    assert re.search(r'viewBox="0 0 \d+ \d+"', svg(p))


def test_dot_source_and_graphviz() -> None:
    p = StatePath.from_record({"dsm_diag": "d", "dsm_state": "B",
                               "dsm_stategraph": ["d/A", '> q"uote\\ >', "d/B"]})
    src = dot_source(p)
    assert 'label="q\\"uote\\\\"' in src and 'class="state current"' in src
    if not have_dot():
        pytest.skip("graphviz dot not installed")
    out = render_dot(src)
    assert out.startswith("<svg") and "state current" in out
