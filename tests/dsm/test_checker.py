"""Checker: all problems at once with positions (spec §1.5)."""
from __future__ import annotations

from yaypm.dsm import check_script, parse_text


def problems(text, **kw):
    return [(p.severity, p.pos.line, p.message) for p in check_script(parse_text(text, "c.dsm"), **kw)]


def test_reports_everything_at_once():
    ps = problems("""import(mod_nothere);
state A;
transition t B - key -> A;
initial state B enter { playFile(); dlg.reply(200, OK); nosuch(1) };
transition u B - nocond -> Z;
state B;
initial state C;
""")
    msgs = "\n".join(f"{s}:{line}:{m}" for s, line, m in ps)
    assert "error:1:unknown DSM module 'mod_nothere'" in msgs
    assert "error:3:state 'B' for transition 't' not found (source states must be defined above" in msgs
    assert "playFile takes 1 to 2 parameter(s), got 0" in msgs
    assert "could not find action for 'dlg.reply' (missing import(mod_dlg)?)" in msgs
    assert "could not find action for 'nosuch' (missing import?)" in msgs
    assert "could not find condition for 'nocond'" in msgs
    assert "warning:5:transition 'u' targets state 'Z', which is never defined" in msgs
    assert "error:6:duplicate state 'B'" in msgs
    assert "error:7:second initial state 'C'" in msgs
    assert [line for _, line, _ in ps] == sorted(line for _, line, _ in ps)


def test_missing_initial_state():
    assert problems("state A;")[0][2] == "diagram 'c' has no initial state"


def test_strict_turns_warnings_into_errors():
    ps = problems("initial state A; transition t A -> Z;", strict=True)
    assert ps and all(s == "error" for s, _, _ in ps)


def test_function_defined_later_hint():
    ps = problems("initial state A enter { f() };\nfunction f() { log(1, x) };")
    assert "defined later, at c.dsm:2:1" in ps[0][2]


def test_test_without_operator_is_a_warning():
    ps = problems('initial state A; transition t A - test(#type="file") -> A;')
    assert ps == [("warning", 1, "test: no operator in '#type=\"file\"': never true "
                                 "(use ==, !=, < or >)")]


def test_two_parameter_warning_and_clean_script():
    ps = problems("initial state A enter { set($pin) };")
    assert ps[0][0] == "warning" and "expected two parameters" in ps[0][2]
    assert problems("initial state A enter { set($a=1) }; transition h A - hangup / stop -> A;") == []


def test_no_hangup_transition_warning():
    ps = problems("initial state A; state B; transition k A - key -> B; transition k2 B - key -> A;"
                  "transition h A - hangup / stop -> A;")
    assert ps == [("warning", 1, "state 'B' has no hangup transition")]
