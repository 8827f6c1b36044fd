"""Spec §4 on the simulated Yate: SEMS's quizconnect tutorial scripts, unchanged, with SQLite
through `yaypm.sql.Database` (inline), two scripted callees and a SIP caller."""
from __future__ import annotations

import os
import shutil

from yaypm.dsm.sql import AdbapiExecutor

from dsm_helpers import QUIZ, QUIZ_SQL
from yate_helpers import PROMPTS, Harness


def quizconnect(sim, tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    for name in ("welcome_caller", "welcome_callee", "sorry_pin_wrong"):
        shutil.copy(os.path.join(PROMPTS, name + ".au"), prompts / (name + ".wav"))
    db = tmp_path / "quiz.db"
    setup = AdbapiExecutor(f"sqlite:{db}", threaded=False)
    setup.database.run_script(QUIZ_SQL)
    setup.close()
    scripts = {}
    for n in ("quizconnect_caller", "quizconnect_callee"):
        with open(os.path.join(QUIZ, n + ".dsm")) as f:
            scripts[n] = f.read()
    executors = []

    def connect(url):
        executors.append(AdbapiExecutor(url, threaded=False))
        return executors[-1]
    h = Harness(sim, scripts, routes={"quizconnect_caller": "35"},
                config={"prompt_path": str(prompts) + "/", "db_url": f"sqlite:{db}",
                        "outbound_domain": "127.0.0.1"})
    h.engine.sql_connect = connect
    h.executors = executors
    return h, prompts


def test_quizconnect_caller_two_callees_pin_conference_and_byes(sim, tmp_path):
    h, prompts = quizconnect(sim, tmp_path)
    sim.endpoint("john", "answer_after(1)")
    sim.endpoint("anna", "answer_after(1.5)")
    a_call = sim.place_call("35", caller="quizmaster")
    sim.advance(0.5)
    a = h.session(0)
    assert a.state.name == "WAIT_CALLEE" and 183 in a_call.provisional
    assert a_call.heard() == [f"wave/play/{prompts}//welcome_caller.wav"]    # "//": harmless, as in SEMS
    b1, b2 = h.session(1), h.session(2)
    assert (b1.var["pin"], b2.var["pin"]) == ("12345", "54321")
    assert a.var["b_ltags[0]"] == b1.id and a.var["b_ltags[1]"] == b2.id
    sim.advance(2)
    assert b1.state.name == "ENTER_PIN" and b2.state.name == "ENTER_PIN"
    john, anna = sim.endpoints["john"].last, sim.endpoints["anna"].last
    assert john.heard() == [f"wave/play/{prompts}//welcome_callee.wav"]
    john.send_dtmf("12345", interval=0.2)
    sim.advance(1.5)
    # B1 matched: A connected (200, room A), anna cancelled by her own script (BYE).
    assert b1.state.name == "CONNECTED" and a.state.name == "CONNECTED"
    assert a_call.sip_status == 200
    assert anna.ended and not john.ended
    assert h.runner.room_size(a.id) == 2
    a_call.hangup()
    sim.advance(1)
    assert john.ended
    graphs = {h.record(i)["app"]: h.graph(i) for i in range(2)}
    assert graphs["quizconnect_caller"][-3:] == ["CANCEL_OTHER_CALLEES", "CONNECTED", "END"]
    assert h.graph(1)[-3:] == ["MATCHING_PIN", "CONNECTED", "END"]
    assert h.graph(2)[-2:] == ["ENTER_PIN", "END"]
    for ex in h.executors:
        ex.close()
    h.clean()


def test_quizconnect_unknown_caller_number_gets_404(sim, tmp_path):
    h, _ = quizconnect(sim, tmp_path)
    h.engine.app_set.bundles[""].conf["route.quizconnect_caller"] = "35,36"
    h.runner._table = None
    call = sim.place_call("36")
    sim.advance(0.5)
    assert call.sip_status == 404           # "no results": dlg.reply(404) after the query
    for ex in h.executors:
        ex.close()
    h.clean()
