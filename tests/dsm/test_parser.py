"""Parser: line filter, includes, tokenizer, grammar forms, syntax errors (spec §1)."""
from __future__ import annotations

import os

import pytest

from yaypm.dsm import DSMSyntaxError, parse_file, parse_text
from yaypm.dsm.model import Action, For, If
from yaypm.dsm.parser import split_call
from yaypm.dsm.source import source_from_text, tokenize


def toks(text):
    return [(t.type, str(t)) for t in tokenize(source_from_text(text))]


def test_tokenizer_quotes_parens_and_delimiters():
    assert toks('log(2, "a; b") "got INVITE" (A, B);{}[]') == [
        ("WORD", 'log(2, "a; b")'), ("WORD", "got INVITE"), ("WORD", "(A, B)"), ("SEMI", ";"),
        ("LBRACE", "{"), ("RBRACE", "}"), ("LBRACK", "["), ("RBRACK", "]")]


def test_tokenizer_multiline_py_and_keywords():
    t = toks("py(#\nx = 1\nif x:\n  y = 2\n) -> --> -/ - / not exception import(mod_dlg) for(x)")
    assert t[0] == ("WORD", "py(#\nx = 1\nif x:\n  y = 2\n)")
    assert [k for k, _ in t[1:]] == ["ARROW", "ARROW", "DASHSLASH", "DASH", "SLASH", "NOT",
                                     "EXCEPTION", "IMPORT", "FOR"]


def test_quoted_token_loses_first_and_last_char_and_is_never_a_keyword():
    assert toks('"state" \'x y\'z') == [("WORD", "state"), ("WORD", "x y'")]


def test_slash_needs_blanks():
    assert toks("test($a==1)/stop") == [("WORD", "test($a==1)/stop")]


def test_comment_lines_removed_and_positions_kept():
    s = parse_text("-- comment\n  # another\ninitial state A;\n\n  state B;\n")
    assert [(st.name, st.pos.line, st.pos.column) for st in s.states] == [("A", 3, 1), ("B", 5, 3)]


def test_end_of_line_comment_is_an_error():
    with pytest.raises(DSMSyntaxError) as e:
        parse_text("initial state A enter { set($a=1); -- x\n };")
    assert "comments must stand on their own line" in str(e.value)
    assert ":1:36" in str(e.value)


@pytest.mark.parametrize("text,where", [
    ('initial state A enter { log(1, "abc); };', ":1:32"),
    ("initial state A enter { log(1, abc; };", ":1:28"),
])
def test_unterminated_runs_report_their_start(text, where):
    with pytest.raises(DSMSyntaxError) as e:
        parse_text(text, "x.dsm")
    assert "unterminated" in str(e.value) and where in str(e.value)


def test_error_has_position_line_caret_and_expected():
    with pytest.raises(DSMSyntaxError) as e:
        parse_text("initial state A;\nstate B foo;\n", "f.dsm")
    msg = str(e.value)
    assert msg.splitlines()[0].startswith("f.dsm:2:9: error: unexpected 'foo'")
    assert "expected" in msg
    assert msg.splitlines()[1].strip() == "state B foo;"
    assert msg.splitlines()[2] == "    " + " " * 8 + "^"


def test_unterminated_block_at_eof():
    with pytest.raises(DSMSyntaxError) as e:
        parse_text("initial state A enter {\n log(1, x);\n")
    assert "end of file" in str(e.value)


def test_else_if_rejected_with_advice():
    with pytest.raises(DSMSyntaxError) as e:
        parse_text("initial state A enter { if test(1==1) { a() } else if test(1==2) { b() } };")
    assert "else if" in str(e.value) and "else { if" in str(e.value)


def test_function_needs_final_semicolon():
    with pytest.raises(DSMSyntaxError):
        parse_text("function f() { log(1, x); }\ninitial state A;")


@pytest.mark.parametrize("text,conds,actions,target", [
    ("transition t A - c1; c2 -> B;", ["c1", "c2"], [], "B"),
    ("transition t A - c / a1; a2 -> B;", ["c"], ["a1", "a2"], "B"),
    ("transition t A - c / { a1; a2 } -> B;", ["c"], ["a1", "a2"], "B"),
    ("transition t A - / { a1 } -> B;", [], ["a1"], "B"),
    ("transition t A --> B;", [], [], "B"),
    ("transition t A -> B;", [], [], "B"),
    ("transition t A -/ a -> B;", [], ["a"], "B"),
    ("transition t A / a -> B;", [], ["a"], "B"),
    ("transition t A / a; b } -> B;", [], ["a", "b"], "B"),
    ("transition t A / { a } B;", [], ["a"], "B"),
    ("transition t A B;", [], [], "B"),
    ("transition t A - { c } [ d ] -> B;", ["c", "d"], [], "B"),
    ("transition t A / log(1, x)\n throwOnError()\n -> B;", [], ["log", "throwOnError"], "B"),
])
def test_transition_forms(text, conds, actions, target):
    s = parse_text("initial state A;\nstate B;\n" + text)
    t = s.transitions[0]
    assert [c.name for c in t.conditions] == conds
    assert [a.name for a in t.actions] == actions
    assert t.target == target


def test_not_and_exception_and_sources():
    s = parse_text('initial state A; state B;\n'
                   'transition "x y" ( A , B ) - not not key; not test($a==1); exception -> B;')
    t = s.transitions[0]
    assert t.name == "x y" and t.sources == ("A", "B") and t.exception
    assert [(c.name, c.negated) for c in t.conditions] == [("key", False), ("test", True)]
    assert t.conditions[1].arg == "$a==1"


def test_state_enter_exit_any_order_second_enter_replaces():
    s = parse_text("initial state A exit { x() } enter { a() } enter { b() };")
    st = s.states[0]
    assert [a.name for a in st.enter] == ["b"] and [a.name for a in st.exit] == ["x"]


def test_if_else_for_and_function_expansion():
    s = parse_text("""
function greet() { log(1, hi); log(2, there) };
initial state A enter {
  if test($a==1) { greet() } else { c() }
  for ($x in $arr) { d() }
  for($i in range(1, 5)) { break }
  for ($k,$v in $s) { e() }
  for ($n in range(3)) { f() }
};
""")
    enter = s.states[0].enter
    assert isinstance(enter[0], If)
    assert [a.name for a in enter[0].then] == ["log", "log"]
    assert [a.name for a in enter[0].otherwise] == ["c"]
    kinds = [(f.kind, f.var, f.key, f.array, f.start, f.stop) for f in enter[1:]]
    assert kinds == [("array", "x", "", "arr", "", ""), ("range", "i", "", "", "1", "5"),
                     ("struct", "v", "k", "s", "", ""), ("range", "n", "", "", "0", "3")]
    assert all(isinstance(f, For) for f in enter[1:])


def test_function_used_before_definition_stays_unresolved():
    s = parse_text("initial state A enter { f() };\nfunction f() { log(1, x) };")
    assert s.states[0].enter == (Action("f", "", s.states[0].enter[0].pos),)


def test_bad_for_head():
    with pytest.raises(DSMSyntaxError) as e:
        parse_text("initial state A enter { for ($x) { a() } };")
    assert "for" in str(e.value)


def test_split_call():
    assert split_call("log(2, (a) b)") == ("log", "2, (a) b", True)
    assert split_call("stop") == ("stop", "", False)


def test_import_item():
    s = parse_text("import(mod_dlg); import(mod_utils)\ninitial state A;")
    assert [i.module for i in s.imports] == ["mod_dlg", "mod_utils"]


def test_includes_resolve_against_load_path_and_detect_cycles(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "b.dsm").write_text("state B;\n")
    (tmp_path / "lib" / "a.dsm").write_text("state A2;\n")
    (tmp_path / "common.dsm").write_text("state C;\n")
    (tmp_path / "main.dsm").write_text("initial state A;\n#include \"common\"\n#include lib\n")
    s = parse_file(str(tmp_path / "main.dsm"))
    assert [st.name for st in s.states] == ["A", "C", "A2", "B"]
    c = s.states[1]
    assert c.pos.file.endswith("common.dsm") and c.pos.chain[0][1] == 2
    (tmp_path / "x.dsm").write_text("#include y.dsm\n")
    (tmp_path / "y.dsm").write_text("#include x.dsm\n")
    with pytest.raises(DSMSyntaxError) as e:
        parse_file(str(tmp_path / "x.dsm"))
    assert "cycle" in str(e.value) and "x.dsm -> y.dsm -> x.dsm" in str(e.value)
    (tmp_path / "m.dsm").write_text("#include nothere\n")
    with pytest.raises(DSMSyntaxError) as e:
        parse_file(str(tmp_path / "m.dsm"))
    assert "not found" in str(e.value) and "m.dsm:1:1" in str(e.value)
    (tmp_path / "e.dsm").write_text('#include ""\n')
    with pytest.raises(DSMSyntaxError):
        parse_file(str(tmp_path / "e.dsm"))


def test_error_inside_include_shows_chain(tmp_path):
    (tmp_path / "bad.dsm").write_text("state X foo;\n")
    (tmp_path / "main.dsm").write_text("initial state A;\n#include bad.dsm\n")
    with pytest.raises(DSMSyntaxError) as e:
        parse_file(str(tmp_path / "main.dsm"))
    assert "bad.dsm:1:9" in str(e.value) and "included from" in str(e.value)
    assert os.path.basename(e.value.pos.chain[0][0]) == "main.dsm"
