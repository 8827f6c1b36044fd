"""Conformance corpus: SEMS's own scripts and ours parse and check without errors (spec §6)."""
from __future__ import annotations

import glob
import os

import pytest

from yaypm.dsm import FakeBackend, check_file, parse_file
from yaypm.dsm.config import read_conf

from dsm_helpers import CORPUS, SEMS, make_engine

SEMS_FILES = sorted(glob.glob(os.path.join(SEMS, "**", "*.dsm"), recursive=True))
OWN_FILES = sorted(glob.glob(os.path.join(CORPUS, "own", "*.dsm")))


def test_corpus_present():
    assert len(SEMS_FILES) >= 35 and len(OWN_FILES) >= 12


@pytest.mark.parametrize("path", SEMS_FILES + OWN_FILES, ids=os.path.basename)
def test_corpus_script_checks_without_errors(path):
    errors = [str(p) for p in check_file(path) if p.severity == "error"]
    assert errors == []


def test_sems_conf_files_read():
    for p in glob.glob(os.path.join(SEMS, "**", "*.conf"), recursive=True):
        conf = read_conf(p)
        assert conf


def test_quizconnect_conf_value_rules():
    conf = read_conf(os.path.join(SEMS, "doc/dsm/tutorials/quizconnect/quizconnect.conf"))
    assert conf["prompt_path"] == "/usr/local/lib/sems/dsm/quizconnect/prompts/"
    assert conf["load_diags"] == "quizconnect_caller,quizconnect_callee"


def _load(rel):
    with open(os.path.join(SEMS, rel)) as f:
        return f.read()


def test_sems_test_exception_runs():
    eng = make_engine({"test_exception": _load("doc/dsm/examples/test_exception.dsm")})
    s = eng.create_session("test_exception", FakeBackend())
    s.start()
    s.invite()
    assert not s.ended


def test_sems_pin_example_call_and_return():
    eng = make_engine({"main": _load("doc/dsm/examples/pin/main.dsm"),
                       "ok_pin": _load("doc/dsm/examples/pin/ok_pin.dsm")})
    s = eng.create_session("main", FakeBackend())
    s.start()
    s.session_start()
    assert s.state is not None


def test_own_scripts_structure():
    s = parse_file(os.path.join(CORPUS, "own", "12_quoting.dsm"))
    assert s.states[0].name == "the start"
    assert s.transitions[0].name == "a name with blanks"
