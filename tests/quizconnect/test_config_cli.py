"""quizconnect.conf reading, the DSM scripts' own check, and the command line."""

from __future__ import annotations

import os

import pytest

from yaypm.apps.quizconnect.config import ConfigError, QuizConfig, load_config, number_matcher
from yaypm.apps.quizconnect.dsm_runner import DSM_DIR, SCRIPTS
from yaypm.cli import build_parser, main
from yaypm.dsm import check_file
from yaypm.prompts import PROMPTS_DIR

SHIPPED = os.path.join(DSM_DIR, "quizconnect.conf")


def test_shipped_conf_is_read_by_both_versions():
    from yaypm.dsm.config import read_conf
    dsm = read_conf(SHIPPED)
    assert dsm["load_diags"] == "quizconnect_caller,quizconnect_callee"
    cfg = load_config(SHIPPED)
    assert cfg.number == dsm["number"] == "*"
    assert cfg.prompt_path == PROMPTS_DIR and os.path.isfile(cfg.prompt("welcome_caller"))
    assert cfg.db_url == "sqlite:///" + os.path.join(DSM_DIR, "quizconnect.db")
    assert (cfg.ring_timeout, cfg.attempts, cfg.connect) == (30.0, 3, "bridge")


def test_ini_section_overrides_and_relative_paths(tmp_path):
    conf = tmp_path / "quizconnect.conf"
    conf.write_text("[other]\nnumber = 1\n\n[quizconnect]\n; a comment\nnumber = 35, ^4\\d+$\n"
                    "db_url = sqlite:///callees.db\nprompt_path = prompts\nattempts = 2\n"
                    "overall_timeout = 12.5\nconnect = conference\n")
    cfg = load_config(str(conf), attempts=5)
    assert cfg.attempts == 5 and cfg.overall_timeout == 12.5 and cfg.connect == "conference"
    assert cfg.db_url == f"sqlite:///{tmp_path}/callees.db"
    assert cfg.prompt_path == str(tmp_path / "prompts")
    assert cfg.handles("35") and cfg.handles("4711") and not cfg.handles("36")


def test_dsm_config_has_whole_seconds():
    c = QuizConfig(ring_timeout=0.4, pin_timeout=7.6).dsm_config()
    assert c["ring_timeout"] == "1" and c["pin_timeout"] == "8" and c["attempts"] == "3"


@pytest.mark.parametrize("text, key", [
    ("attempts = 0", "attempts"), ("attempts = two", "attempts"),
    ("ring_timeout = soon", "ring_timeout"), ("connect = fork", "connect"),
    ("number = ^(", "number"), ("number = ,", "number"), ("target = sip/{nobody}", "target"),
])
def test_bad_settings_name_the_key_and_file(tmp_path, text, key):
    conf = tmp_path / "q.conf"
    conf.write_text(text + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(conf))
    assert e.value.key == key and str(conf) in str(e.value)


def test_number_patterns():
    m = number_matcher("35,8*,^9\\d{2}$")
    assert [m(n) for n in ("35", "350", "8", "81", "912", "9123")] == \
        [True, False, True, True, True, False]
    assert number_matcher("*")("anything")


def test_dsm_scripts_check_clean():
    for name in SCRIPTS:
        assert check_file(os.path.join(DSM_DIR, name + ".dsm"), strict=True) == []


def test_cli_registers_demo_and_quizconnect():
    parser = build_parser()
    assert parser.parse_args(["demo"]).func.__name__ == "_cmd_demo"
    args = parser.parse_args(["quizconnect", "run", "--connect", "tcp:127.0.0.1:5039"])
    assert args.func.__name__ == "_cmd_run" and not args.dsm
    args = parser.parse_args(["quizconnect", "run", "--connect", "tcp:127.0.0.1:5039", "--dsm",
                              "--monitor", "tcp:8090:interface=127.0.0.1"])
    assert args.dsm and args.monitor == "tcp:8090:interface=127.0.0.1"


def test_cli_manages_the_callee_table(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/q.db"
    assert main(["quizconnect", "init-db", "--db-url", url]) == 0
    assert main(["quizconnect", "add-callee", "35", "john", "12345", "--db-url", url]) == 0
    assert main(["quizconnect", "add-callee", "35", "anna", "54321", "--db-url", url]) == 0
    capsys.readouterr()
    assert main(["quizconnect", "list", "--db-url", url]) == 0
    assert capsys.readouterr().out.splitlines() == ["35  john", "35  anna"]
    assert main(["quizconnect", "list", "--pins", "--db-url", url]) == 0
    assert "35  anna  PIN 54321" in capsys.readouterr().out
    assert main(["quizconnect", "remove-callee", "35", "anna", "--db-url", url]) == 0
    assert main(["quizconnect", "remove-callee", "35", "anna", "--db-url", url]) == 1
    assert main(["quizconnect", "add-callee", "35", "bob", "12a", "--db-url", url]) == 2
    assert "a PIN is made of digits" in capsys.readouterr().err


def test_cli_reports_an_unreachable_database_in_one_line(capsys):
    pytest.importorskip("pymysql")
    assert main(["quizconnect", "init-db", "--db-url", "mysql://u:pw@127.0.0.1:1/x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("yaypm: error: ") and "pw@" not in err and len(err.splitlines()) == 1


def test_cli_bad_conf_is_a_usage_error(tmp_path, capsys):
    conf = tmp_path / "q.conf"
    conf.write_text("attempts=none\n")
    assert main(["quizconnect", "list", "--conf", str(conf)]) == 2
    assert "attempts" in capsys.readouterr().err


def test_yaypm_demo_runs_and_tells_who_won(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "john         WINS" in out
    assert "bob          is cancelled while ringing" in out
    assert "anna         drops out: busy (486)" in out
    assert "nothing left behind" in out


def test_yaypm_demo_dsm_version(capsys):
    assert main(["demo", "--dsm"]) == 0
    out = capsys.readouterr().out
    assert "john         pin matches -> MATCHING_PIN" in out
    assert "john         we won -> CONNECTED" in out
    assert "bob          got cancel from A leg -> END" in out
    assert "nothing left behind" in out


def test_only_numbers_with_callees_reads_yes_and_no(tmp_path):
    conf = tmp_path / "q.conf"
    conf.write_text("only_numbers_with_callees=no\n")
    assert load_config(str(conf)).only_numbers_with_callees is False
    assert load_config().only_numbers_with_callees is True
    assert load_config(str(conf), only_numbers_with_callees="yes").only_numbers_with_callees
    assert QuizConfig(only_numbers_with_callees=False).dsm_config()[
        "only_numbers_with_callees"] == "no"
    conf.write_text("only_numbers_with_callees=maybe\n")
    with pytest.raises(ConfigError, match="only_numbers_with_callees"):
        load_config(str(conf))
