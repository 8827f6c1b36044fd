"""Configuration files, Engine loading, bundles, hot reload (spec §3)."""
from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from yaypm.dsm import DSMConfigError, DSMLoadError, Engine, FakeBackend, conf_list, read_conf


def test_read_conf_rules(tmp_path):
    (tmp_path / "inc.conf").write_text("inc=1\n")
    p = tmp_path / "a.conf"
    p.write_text('# comment\na = b c\nq="x y # z"\ne="a\\"b"\nh=v # trailing\n@inc.conf\n'
                 "list=a, b,,c\na=override\n")
    conf = read_conf(str(p))
    assert conf == {"a": "override", "q": "x y # z", "e": 'a\\"b', "h": "v", "inc": "1",
                    "list": "a,"}
    assert conf_list("a, b,,c") == ["a", " b", "c"]
    (tmp_path / "bad.conf").write_text("just words\n")
    with pytest.raises(DSMConfigError) as e:
        read_conf(str(tmp_path / "bad.conf"))
    assert "bad.conf:1" in str(e.value)


def _setup(tmp_path, caller_text="initial state A; transition h A - hangup / stop -> A;"):
    diags = tmp_path / "diags"
    diags.mkdir(exist_ok=True)
    (diags / "app1.dsm").write_text(caller_text)
    (diags / "sub.dsm").write_text("initial state S;")
    bundles = tmp_path / "bundles"
    bundles.mkdir(exist_ok=True)
    (bundles / "quiz.conf").write_text(f"diag_path={diags}\nload_diags=app1,sub\n"
                                       "register_apps=app1\nprompt_path=/p/\n")
    (bundles / "broken.conf").write_text(f"diag_path={diags}\nload_diags=nothere\n")
    (tmp_path / "dsm.conf").write_text(f"conf_dir={bundles}\nmonitoring_full_stategraph=yes\n")
    return str(tmp_path / "dsm.conf"), diags


def test_engine_loads_bundles_and_skips_broken_ones(tmp_path):
    conf, _ = _setup(tmp_path)
    eng = Engine(conf, clock=Clock())
    eng.load()
    assert set(eng.app_set.apps) == {"app1"}
    assert any("broken" in e for e in eng.app_set.errors)
    s = eng.create_session("app1", FakeBackend())
    assert s.var["config.prompt_path"] == "/p/"
    assert s.app.diagrams["sub"].name == "sub"
    with pytest.raises(KeyError):
        eng.create_session("nope", FakeBackend())


def test_hot_reload_keeps_running_sessions_and_failures_keep_old_set(tmp_path):
    conf, diags = _setup(tmp_path)
    eng = Engine(conf, clock=Clock())
    eng.load()
    old = eng.create_session("app1", FakeBackend())
    old.start()
    (diags / "app1.dsm").write_text("initial state NEW; transition h NEW - hangup / stop -> NEW;")
    ok, msg = eng.reload()
    assert not ok and "broken" in msg and "quiz" not in msg   # only the broken bundle failed
    new = eng.create_session("app1", FakeBackend())
    new.start()
    assert old.state.name == "A" and new.state.name == "NEW"
    (diags / "app1.dsm").write_text("initial state BROKEN foo;")
    ok, msg = eng.reload()
    assert not ok and "old version kept" in msg and "app1.dsm:1:22" in msg
    assert eng.create_session("app1", FakeBackend()).app.diagram.initial.name == "NEW"


def test_load_config_replaces_a_bundle_for_new_calls_only(tmp_path):
    conf, diags = _setup(tmp_path)
    eng = Engine(conf, clock=Clock())
    eng.load()
    before = eng.app_set.apps["app1"]
    (diags / "app1.dsm").write_text("initial state V2; transition h V2 - hangup / stop -> V2;")
    assert eng.load_config(str(tmp_path / "bundles" / "quiz.conf"), "quiz.conf") == (200, "OK")
    assert eng.app_set.apps["app1"].diagram.initial.name == "V2"
    (diags / "app1.dsm").write_text("initial state X; x y z")
    code, text = eng.load_config(str(tmp_path / "bundles" / "quiz.conf"), "quiz")
    assert code == 500 and "reload config failed" in text
    assert eng.app_set.apps["app1"].diagram.initial.name == "V2"
    assert before.diagram.initial.name == "A"


def test_main_conf_errors_raise(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "x.dsm").write_text("initial state A enter { nosuch() };")
    (tmp_path / "dsm.conf").write_text(f"diag_path={d}\nload_diags=x\nregister_apps=x\n")
    eng = Engine(str(tmp_path / "dsm.conf"), clock=Clock())
    with pytest.raises(DSMLoadError) as e:
        eng.load()
    assert "x.dsm:1:25" in str(e.value)
    ok, msg = eng.reload()
    assert not ok and "nosuch" in msg


def test_param_variables_prompts_and_generic_app(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "x.dsm").write_text("initial state A enter { playPrompt(hi) };")
    (tmp_path / "p.conf").write_text("hi=/w/hi.wav\n")
    (tmp_path / "dsm.conf").write_text(
        f"diag_path={d}\nload_diags=x\nregister_apps=x\nset_param_variables=yes\n"
        f"load_prompts={tmp_path}/p.conf\ninbound_start_diag=x\nrun_system_dsms=\n")
    eng = Engine(str(tmp_path / "dsm.conf"), clock=Clock())
    eng.load()
    b = FakeBackend()
    s = eng.create_session("dsm", b, app_params="a=1;b=two")
    s.start()
    assert s.var["a"] == "1" and s.var["b"] == "two"
    assert b.calls == [("play", "/w/hi.wav", False, False)]


def test_system_dsms_start(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "sys.dsm").write_text("initial state S; transition t S - startup / set($up=1) -> S;")
    (tmp_path / "dsm.conf").write_text(f"diag_path={d}\nload_diags=sys\nrun_system_dsms=sys\n")
    eng = Engine(str(tmp_path / "dsm.conf"), clock=Clock())
    eng.load()
    [s] = eng.start_system_dsms()
    assert s.var["up"] == "1"
