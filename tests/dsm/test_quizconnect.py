"""Spec §4: the quizconnect tutorial scripts, run on the FakeBackend (modern model)."""
from __future__ import annotations

from twisted.internet.task import Clock

from yaypm.dsm import Engine, FakeBackend, check_file
from yaypm.dsm.parser import parse_file

from dsm_helpers import QUIZ, QUIZ_SQL, SyncSQLite

import os


def _engine(db: SyncSQLite, clock: Clock, legacy: bool = False) -> Engine:
    scripts = {}
    for n in ("quizconnect_caller", "quizconnect_callee"):
        with open(os.path.join(QUIZ, n + ".dsm")) as f:
            scripts[n] = f.read()
    config = {"prompt_path": "/p/", "db_url": "sqlite::memory:", "outbound_domain": "example.org"}
    eng = Engine.from_scripts(scripts, config=config, clock=clock, legacy=legacy,
                              sql_connect=lambda url: db,
                              conf={"monitoring_full_stategraph": "yes",
                                    "monitoring_full_transitions": "yes"})
    eng.monitoring.full_stategraph = eng.monitoring.full_transitions = True
    return eng


def test_quizconnect_scripts_parse_and_check():
    for n in ("quizconnect_caller", "quizconnect_callee"):
        path = os.path.join(QUIZ, n + ".dsm")
        script = parse_file(path)
        assert script.initial_state.name == "START"
        assert not [p for p in check_file(path) if p.severity == "error"]


def _graph(eng, sid):
    return [e.split("/", 1)[-1] for e in eng.monitoring.get(sid)["dsm_stategraph"]]


def test_quizconnect_caller_and_callees_modern():
    clock = Clock()
    db = SyncSQLite(QUIZ_SQL)
    eng = _engine(db, clock)
    a_b = FakeBackend()
    a = eng.create_session("quizconnect_caller", a_b, selects={"user": "35"}, session_id="A")
    a.invite()
    assert a.state.name == "WAIT_CALLEE"
    assert _graph(eng, "A") == [
        "START", "> got INVITE in caller leg >", "RUN_INVITE", "> we have results >",
        "CREATE_CALLEE_LEGS", "> create one more callee legs >", "CREATE_CALLEE_LEGS",
        "> create one more callee legs >", "CREATE_CALLEE_LEGS",
        "> done creating callee legs >", "WAIT_CALLEE"]
    # bound parameter, not spliced
    assert db.queries[-1] == ("select callee, pin from callees where caller=?", ("35",))
    assert ("progress",) in a_b.calls and ("play", "/p//welcome_caller.wav", False, False) in a_b.calls
    assert "answer" not in a_b.names()      # a reply was sent during invite (⚑D3)
    assert len(a_b.dialled) == 2
    (r1, b1_b), (r2, b2_b) = a_b.dialled
    assert (r1.callee, r1.app, r1.variables) == ("john", "quizconnect_callee",
                                                 {"pin": "12345", "a_ltag": "A"})
    b1, b2 = eng.registry.find(r1.ltag), eng.registry.find(r2.ltag)
    assert a.var["b_ltags[0]"] == b1.id and a.var["b_ltags[1]"] == b2.id
    assert "b_leg_ltag" not in a.var
    assert b1.var["config.prompt_path"] == "/p/" and b1.state.name == "START"
    # callee B1 answers and enters its pin
    b1.session_start()
    assert b1.state.name == "ENTER_PIN"
    assert b1_b.calls[-1] == ("play", "/p//welcome_callee.wav", False, False)
    b2.session_start()
    for k in "1234":
        b1.key(int(k))
        assert b1.state.name == "ENTER_PIN"
    order = []
    orig = a.post_event

    b1.key(5)
    # B1 is CONNECTED before A handles MATCHED; A got the event afterwards
    assert b1.state.name == "CONNECTED"
    assert b1_b.room == "A"
    assert a.state.name == "CONNECTED"
    assert a_b.room == "A" and ("answer",) in a_b.calls
    assert b2.ended and b2_b.hung_up          # "got cancel from A leg" → stop(true)
    assert not b1.ended                        # CANCEL ignored in CONNECTED
    # A hangs up: B1 gets BYE event, stops with BYE
    a.hangup()
    assert a.ended and b1.ended and b1_b.hung_up
    assert eng.registry.sessions == {}
    assert clock.getDelayedCalls() == []
    del order, orig


def test_quizconnect_no_results_replies_404():
    clock = Clock()
    db = SyncSQLite(QUIZ_SQL)
    eng = _engine(db, clock)
    bk = FakeBackend()
    s = eng.create_session("quizconnect_caller", bk, selects={"user": "35' OR '1'='1"})
    s.invite()
    assert ("reject", 404, "Not found") in bk.calls
    assert s.ended and bk.dialled == []


def test_quizconnect_missing_prompt_throws_file():
    clock = Clock()
    db = SyncSQLite(QUIZ_SQL)
    eng = _engine(db, clock)
    bk = FakeBackend(missing_files={"/p//welcome_caller.wav"})
    s = eng.create_session("quizconnect_caller", bk, selects={"user": "35"})
    s.invite()
    assert ("reject", 500, "Server Internal Error") in bk.calls
    assert s.ended


def test_quizconnect_db_connect_failure():
    clock = Clock()

    def broken(url):
        raise OSError("access denied")
    eng = _engine(SyncSQLite(), clock)
    eng.sql_connect = broken
    bk = FakeBackend()
    s = eng.create_session("quizconnect_caller", bk, selects={"user": "35"})
    s.invite()
    assert ("reject", 500, "Server Internal Error") in bk.calls
    assert s.state.name == "END" and s.var["db.errno"] == "connection"


def test_quizconnect_caller_cancel_while_waiting():
    clock = Clock()
    eng = _engine(SyncSQLite(QUIZ_SQL), clock)
    bk = FakeBackend()
    a = eng.create_session("quizconnect_caller", bk, selects={"user": "35"}, session_id="A")
    a.invite()
    b1 = eng.registry.find(a.var["b_ltags[0]"])
    b2 = eng.registry.find(a.var["b_ltags[1]"])
    a.hangup()
    assert ("reject", 487, "Request Terminated") in bk.calls
    assert a.ended and b1.ended and b2.ended


def test_quizconnect_legacy_graph():
    clock = Clock()
    eng = _engine(SyncSQLite(QUIZ_SQL), clock, legacy=True)
    bk = FakeBackend()
    a = eng.create_session("quizconnect_caller", bk, selects={"user": "35"}, session_id="A")
    a.invite()
    b1 = eng.registry.find(a.var["b_ltags[0]"])
    a.session_start()
    assert _graph(eng, "A")[-4:] == ["WAIT_CALLEE", "START", "> got session start in caller leg >",
                                     "WAIT_CALLEE"]
    b1.session_start()
    assert _graph(eng, b1.id) == ["START", "> got INVITE in callee leg >", "RUN_INVITE", "START",
                                  "> session starts in callee leg >", "ENTER_PIN"]
