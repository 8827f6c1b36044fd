"""quizconnect seen through monitoring: the async app on the Yate simulator, and the SEMS
tutorial's DSM scripts on yaypm.dsm, each watched by seed 002's scripts over live XML-RPC."""

from __future__ import annotations

import json
import os
from typing import Any, Tuple

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import Clock

from yaypm.monitor import Monitor
from yaypm.registry import CallRegistry
from yaypm.testing import success_result_of

from monitor_helpers import HERE, http, rpc, run_python, serving
from test_monitor_server import script_copy

QUIZ = os.path.join(HERE, "..", "dsm", "corpus", "sems", "doc", "dsm", "tutorials", "quizconnect")


def states_printed(out: bytes) -> Tuple[int, dict]:
    lines = out.decode().splitlines()
    assert lines[1] == "call id                                 state"
    calls = int(lines[0].split(": ")[1])
    return calls, dict(ln.split("     ", 1) for ln in lines[2:])


# -- the async app on the simulator -----------------------------------------------------------
def quizconnect_on_simulator(registry: CallRegistry) -> Tuple[Any, Any, Any]:
    from yaypm.apps.quizconnect.app import QuizConnect
    from yaypm.apps.quizconnect.config import PROMPTS, QuizConfig
    from yaypm.apps.quizconnect.store import CalleeStore
    from yaypm.sql import Database
    from yaypm.testing.simulator import Simulator
    from yaypm.testing.simulator.api import answer

    sim = Simulator()
    cfg = QuizConfig(number="^35$", db_url="sqlite:///:memory:")
    for p in PROMPTS:
        sim.media.declare(cfg.prompt(p), 2.0)
    store = CalleeStore(Database(cfg.db_url, threaded=False))
    success_result_of(store.init())
    success_result_of(store.add("35", "john", "12345"))
    success_result_of(store.add("35", "anna", "54321"))
    registry._clock = sim.clock           # ages in simulated time
    qc = QuizConnect(cfg, store, registry=registry, threaded=False)
    dispatcher = sim.connect(qc.start)
    sim.endpoint("john", answer(after=1.0))
    sim.endpoint("anna", answer(after=1.5))
    return sim, qc, dispatcher


@pytest_twisted.ensureDeferred
async def test_simulated_quizconnect_call(tmp_path) -> None:
    pytest.importorskip("yaypm.apps.quizconnect.app")
    registry = CallRegistry()
    sim, qc, dispatcher = quizconnect_on_simulator(registry)
    mon = Monitor(registry, graph="builtin", latency_sample_every=1)
    mon.watch_dispatcher(dispatcher)
    caller = sim.place_call("35", caller="5")
    sim.advance(3)
    async with serving(mon) as url:
        states_py = script_copy(tmp_path, "sems_sessions_states.py", url)
        out, err, code = await run_python(states_py)
        assert (code, err) == (0, b"")
        calls, states = states_printed(out)
        assert calls == 3
        assert sorted(states.values()) == ["ENTER_PIN", "ENTER_PIN", "WAIT_CALLEE"]
        caller_id = [i for i, s in states.items() if s == "WAIT_CALLEE"][0]
        out, _, code = await run_python(script_copy(tmp_path, "sems_get_session.py", url),
                                        caller_id)
        assert code == 0 and "app                 quizconnect" in out.decode().splitlines()
        assert "dir                 in" in out.decode().splitlines()

        # john types his PIN: the caller is connected to him, anna's leg is dropped.  (The
        # app ends a callee's record when the race ends: "won" / "cancelled".)
        sim.endpoints["john"].last.send_dtmf("12345#", interval=0.2)
        sim.advance(3)
        calls, states = states_printed((await run_python(states_py))[0])
        assert calls == 1 and states == {caller_id: "CONNECTED"}
        assert sorted(map(tuple, await rpc(url, "getAttributeFinished", "callee"))) == \
            [("call-2", "john"), ("call-3", "anna")]

        data = json.loads((await http(url + "/calls.json"))[2])
        assert [(c["app"], c["state"]) for c in data["active"]] == [("quizconnect", "CONNECTED")]
        assert {c["outcome"] for c in data["finished"]} == {"won", "cancelled"}
        metrics = (await http(url + "/metrics"))[2].decode()
        assert 'yaypm_calls_active{app="quizconnect"} 1.0' in metrics
        assert 'yaypm_calls_ended_total{outcome="won"} 1.0' in metrics
        assert "yaypm_calls_started_total 3.0" in metrics
        assert 'yaypm_handler_latency_seconds_count{message="call.route"} 1.0' in metrics
        assert "yaypm_messages_unanswered 0.0" in metrics
        in_total = [ln for ln in metrics.splitlines() if ln.startswith("yaypm_messages_in_total")]
        assert float(in_total[0].split()[1]) == dispatcher.stats["received"] >= 10
    caller.hangup()
    sim.advance(2)
    assert registry.active == {}


# -- the SEMS tutorial's DSM scripts on yaypm.dsm ---------------------------------------------
class _SQL:
    """mod_mysql's executor over an in-memory SQLite (synchronous)."""

    paramstyle = "qmark"
    version = "sqlite-test"

    def __init__(self) -> None:
        import sqlite3
        self.db = sqlite3.connect(":memory:")
        self.db.executescript(
            "create table callees (id integer primary key, caller text, callee text, pin text);"
            "insert into callees (caller, callee, pin) values ('35', 'john', '12345');"
            "insert into callees (caller, callee, pin) values ('35', 'anna', '54321');")

    def execute(self, query: str, params: tuple) -> Any:
        from twisted.internet.defer import succeed

        from yaypm.dsm.sql import SQLResult
        return succeed(SQLResult.from_cursor(self.db.execute(query, params)))


def dsm_engine(registry: CallRegistry) -> Any:
    dsm = pytest.importorskip("yaypm.dsm")
    from yaypm.monitor.dsm_bridge import attach_engine
    scripts = {}
    for n in ("quizconnect_caller", "quizconnect_callee"):
        with open(os.path.join(QUIZ, n + ".dsm")) as f:
            scripts[n] = f.read()
    sql = _SQL()
    eng = dsm.Engine.from_scripts(
        scripts, config={"prompt_path": "/p/", "db_url": "sqlite::memory:",
                         "outbound_domain": "example.org"},
        clock=Clock(), sql_connect=lambda url: sql,
        conf={"monitoring_full_stategraph": "yes", "monitoring_full_transitions": "yes"})
    eng.monitoring.full_stategraph = eng.monitoring.full_transitions = True
    attach_engine(eng, registry)
    return eng


@pytest_twisted.ensureDeferred
async def test_dsm_quizconnect_sessions_over_xmlrpc(tmp_path) -> None:
    from yaypm.dsm import FakeBackend
    from yaypm.monitor.dsm_bridge import EngineControl
    registry = CallRegistry(reactor)
    eng = dsm_engine(registry)
    a = eng.create_session("quizconnect_caller", FakeBackend(), session_id="A",
                           selects={"user": "35", "remote_party": '"bee" <sip:5@192.0.2.1>',
                                    "local_party": "<sip:35@192.0.2.1>",
                                    "local_uri": "sip:35@192.0.2.1"})
    a.invite()
    b1, b2 = (eng.registry.find(a.var[f"b_ltags[{i}]"]) for i in (0, 1))
    b1.session_start()
    b2.session_start()
    mon = Monitor(registry, EngineControl(eng))
    async with serving(mon) as url:
        calls, states = states_printed((await run_python(
            script_copy(tmp_path, "sems_sessions_states.py", url)))[0])
        assert calls == 3
        assert states == {"A": "WAIT_CALLEE", b1.id: "ENTER_PIN", b2.id: "ENTER_PIN"}
        out = (await run_python(script_copy(tmp_path, "sems_get_session.py", url), "A"))[0]
        lines = out.decode().splitlines()
        assert 'from                "bee" <sip:5@192.0.2.1>' in lines
        assert "dsm_diag            quizconnect_caller" in lines
        [rec] = await rpc(url, "get", "A")
        assert rec["dsm_stategraph"][-3:] == [
            "quizconnect_caller/CREATE_CALLEE_LEGS", "> done creating callee legs >",
            "quizconnect_caller/WAIT_CALLEE"]
        assert (rec["app"], rec["dir"]) == ("quizconnect_caller", "in")

        # the caller's side tells B2 to go away, as the tutorial's CANCEL_OTHER_CALLEES does
        assert await rpc(url, "postDSMEvent", b2.id, [["a_status", "CANCEL"]]) == [200, "OK"]
        assert b2.ended
        assert await rpc(url, "listFinished") == [b2.id]
        assert await rpc(url, "postDSMEvent", b2.id, [["a_status", "CANCEL"]]) == \
            [404, "Session not found"]
        assert await rpc(url, "hasDSM", "quizconnect_callee") == ["1"]
        assert await rpc(url, "listDSMs") == ["quizconnect_callee", "quizconnect_caller"]

        from yaypm.monitor.graph import have_dot
        status, _, svg = await http(url + "/call/A/graph.svg")
        assert status == 200
        if have_dot():          # the whole diagram (yaypm.dsm.graph), visited path marked
            text = svg.decode()
            assert "CANCEL_CALLEES" in text              # a state this call never visited
            assert text.count('class="node visited') == 4
            assert 'class="node visited current"' in text
            assert text.count('class="edge visited"') == 4

        # loadConfig with the tutorial's bundle, made loadable here
        conf = tmp_path / "quizconnect.conf"
        conf.write_text(f"diag_path={QUIZ}/\nload_diags=quizconnect_caller,quizconnect_callee\n"
                        "register_apps=quizconnect_caller,quizconnect_callee\n"
                        "preload_mods=mod_mysql\nprompt_path=/p/\n")
        assert await rpc(url, "loadConfig", str(conf), "quizconnect") == [200, "OK"]
        bad = tmp_path / "broken.conf"
        bad.write_text("load_diags=nothere\ndiag_path=/nonexistent/\n")
        code, reason = await rpc(url, "loadConfig", str(bad), "broken.conf")
        assert code == 500 and reason.startswith("reload config failed")
