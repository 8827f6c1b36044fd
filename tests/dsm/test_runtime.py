"""Runtime semantics (spec §2.3–2.5): ordering, repost, exceptions, isolation, memory."""
from __future__ import annotations

import gc
import tracemalloc

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from yaypm.dsm import FakeBackend
from yaypm.dsm.runtime import MAX_EXCEPTIONS, MAX_REPOSTS

from dsm_helpers import make_engine, run


class Logs:
    def __init__(self):
        self.events = []

    def __enter__(self):
        globalLogPublisher.addObserver(self.events.append)
        return self

    def __exit__(self, *a):
        globalLogPublisher.removeObserver(self.events.append)

    def text(self):
        from twisted.logger import formatEvent
        return "\n".join(formatEvent(e) for e in self.events)


def test_exit_transition_enter_order_and_self_transition():
    s, _, _ = run("initial state A exit { append($o, x) } enter { append($o, e) };\n"
                  "transition t A - key / append($o, t) -> A;")
    assert s.var["o"] == "e"
    s.key(1)
    assert s.var["o"] == "exte"


def test_first_matching_transition_only_and_condition_order():
    s, _, _ = run("import(mod_py);\ninitial state A;\n"
                  "transition t1 A - key; test($x==1); py(session.setvar('saw', 'yes') or True) -> B;\n"
                  "transition t2 A - key -> C;\ntransition t3 A - key -> D;\n"
                  "state B; state C; state D;")
    s.key(1)
    assert s.state.name == "C" and "saw" not in s.var      # stopped at the first false


def test_repost_in_transient_state_and_cap():
    s, _, _ = run("initial state A;\ntransition t A - key -> T;\n"
                  "state T enter { inc($n); repost() };\ntransition l T - test(1==1) -> T;")
    with Logs() as logs:
        s.key(1)
    assert int(s.var["n"]) == MAX_REPOSTS + 1
    assert "reposts" in logs.text()
    s.key(1)            # the next event is processed normally
    assert int(s.var["n"]) > MAX_REPOSTS + 1


def test_repost_in_initial_enter_has_no_effect():
    s, _, _ = run("initial state A enter { repost() };\n"
                  "transition s A - start / inc($n) -> B; state B;")
    assert s.var["n"] == "1"


def test_exception_in_enter_actions_is_handled_in_new_state():
    s, _, _ = run("initial state A;\ntransition t A - key -> B;\n"
                  "state B enter { set($x=1); throw(oops); set($y=1) };\n"
                  "transition e B - exception; test(#type==oops) / set($h=#type) -> C;\n"
                  "transition e2 A - exception -> D; state C; state D;")
    s.key(1)
    assert s.state.name == "C" and s.var["x"] == "1" and "y" not in s.var


def test_exception_without_handler_is_swallowed_and_event_type_is_exception():
    s, _, _ = run("initial state A;\ntransition t A - key / { set($a=1); throw(x); set($b=1) } -> B;\n"
                  "transition k A - exception; key -> C; state B; state C;")
    s.key(1)
    assert s.state.name == "A" and s.var["a"] == "1" and "b" not in s.var


def test_exception_loop_is_capped():
    s, _, _ = run("initial state A;\ntransition t A - key / throw(x) -> A;\n"
                  "transition e A - exception / { inc($n); throw(y) } -> A;")
    with Logs() as logs:
        s.key(1)
    assert int(s.var["n"]) == MAX_EXCEPTIONS
    assert "exceptions" in logs.text()


def test_exception_at_startup_keeps_start_event_type():
    s, _, _ = run("initial state A enter { throw(boot) };\n"
                  "transition e A - exception; start / set($ok=#type) -> B; state B;")
    assert s.state.name == "B" and s.var["ok"] == "boot"


def test_unknown_target_keeps_state_and_runs_actions():
    s, _, _ = run("initial state A exit { set($ex=1) };\ntransition t A - key / set($t=1) -> NOWHERE;")
    with Logs() as logs:
        s.key(1)
    assert s.state.name == "A" and s.var["ex"] == "1" and s.var["t"] == "1"
    assert "NOWHERE" in logs.text()


def test_post_event_to_self_is_delivered_after_current_event():
    s, _, _ = run("initial state A;\n"
                  "transition t A - key / { set($x=1); postEvent(@local_tag, x); set($after=1) } -> B;\n"
                  "state B; transition e B - event / set($got=$after) -> C; state C;")
    s.key(1)
    assert s.state.name == "C" and s.var["got"] == "1"


def test_python_error_in_action_ends_only_that_session():
    eng2 = make_engine({"a": "initial state A;\ntransition t A - key / DI(f, boom) -> B; state B;"})
    eng2.di_functions[("f", "boom")] = lambda: 1 / 0
    b1, b2 = FakeBackend(), FakeBackend()
    s1 = eng2.create_session("a", b1)
    s2 = eng2.create_session("a", b2)
    s1.start(), s2.start()
    with Logs() as logs:
        s1.key(1)                              # must not raise
    assert s1.ended and b1.released and not s2.ended
    assert "a.dsm:2" in logs.text()
    assert any(e.get("log_failure") and e["log_failure"].check(ZeroDivisionError)
               for e in logs.events)
    s2.key(2)                                  # the other session still works (and fails alone)
    assert s2.ended


def test_stop_runs_before_destroy_discards_queue_and_cancels_timers(clock):
    s, b, eng = run("initial state A enter { setTimer(1, 100) };\n"
                    "transition t A - key / stop -> B; state B;\n"
                    "transition d B - beforeDestroy / set($bd=1) -> C; state C;",
                    clock=clock)
    s.key(1)
    assert s.ended and s.var["bd"] == "1" and clock.getDelayedCalls() == []
    assert b.released and not b.hung_up
    assert eng.monitoring.get(s.id) is eng.monitoring.finished[s.id]
    s.key(2)                                   # ignored


def test_leg_gone_without_stop_ends_session_with_warning():
    s, b, _ = run("initial state A;\ntransition h A - hangup / set($h=1) -> B; state B;")
    with Logs() as logs:
        s.hangup()
    assert s.ended and s.var["h"] == "1" and not b.released
    assert "did not stop" in logs.text()


def test_auto_answer_rules():
    s, b, _ = run("initial state A;", start=False)
    s.invite()
    assert b.names() == ["answer"]
    s2, b2, _ = run("initial state A; transition i A - invite / set($connect_session=0) -> A;",
                    start=False)
    s2.invite()
    assert b2.names() == []
    s3, b3, _ = run("import(mod_dlg); initial state A;\n"
                    "transition i A - invite / dlg.acceptInvite(183, Progress) -> A;", start=False)
    s3.invite()
    assert b3.names() == ["progress"]


def test_suspended_session_blocks_its_queue_but_not_others():
    eng = make_engine({"a": "initial state A;\ntransition t A - key / { recordFile(x.wav);"
                            " append($o, #key) } -> A;"})
    b1 = FakeBackend(defer={"record"})
    s1 = eng.create_session("a", b1)
    s2 = eng.create_session("a", FakeBackend())
    s1.start(), s2.start()
    s1.key(1)
    s1.key(2)
    s2.key(7)
    assert "o" not in s1.var and s2.var["o"] == "7"
    b1.pending["record"][0].callback(None)
    assert s1.var["o"] == "1"
    b1.pending["record"][1].callback(None)
    assert s1.var["o"] == "12"


def test_for_loops_numeric_indices_struct_and_restore():
    body = "; ".join(f"set($a[{i}]={i})" for i in range(12))
    s, _, _ = run("initial state A enter { set($x=keep); " + body + ";\n"
                  "for ($x in $a) { append($s, $x) }\n"
                  "set($st.b=2); set($st.a=1);\n"
                  "for ($k,$v in $st) { append($kv, $k); append($kv, $v) }\n"
                  "for ($i in range(3, 0)) { append($down, $i) }\n"
                  "set($n=2); for ($j in range($n)) { append($up, $j) } };")
    assert s.var["s"] == "01234567891011" and s.var["x"] == "keep"
    assert s.var["kv"] == "a1b2" and "k" not in s.var
    assert s.var["down"] == "321" and s.var["up"] == "01"


def test_if_else_and_call_inside_if_saves_rest_of_branch():
    eng = make_engine({
        "m": "initial state A;\ntransition t A - key / { if test(#key==1) { callFSM(s);"
             " append($o, b) } else { append($o, e) } append($o, z) } -> B; state B;",
        "s": "initial state S; transition r S - key / returnFSM() -> S;"})
    s = eng.create_session("m", FakeBackend())
    s.start()
    s.key(1)
    assert s.diagram.name == "s"
    s.key(2)
    assert s.var["o"] == "b" and s.state.name == "A"
    s.key(3)
    assert s.var["o"] == "bez" and s.state.name == "B"


def test_unknown_diagram_and_empty_stack_continue_the_list():
    s, _, _ = run("initial state A enter { jumpFSM(nope); returnFSM(); set($x=1) };")
    assert s.var["x"] == "1"


def test_idle_session_memory_is_small():
    eng = make_engine({"t": "initial state A; transition k A - key / set($a=#key) -> A;"
                            "transition h A - hangup / stop -> A;"})
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = []
    for _ in range(200):
        s = eng.create_session("t", FakeBackend())
        s.start()
        s.key(1)
        keep.append(s)
    gc.collect()
    per = (tracemalloc.get_traced_memory()[0] - before) / 200
    tracemalloc.stop()
    assert per < 20_000


def test_monitoring_state_updates():
    s, _, eng = run("initial state A; transition t A - key -> B; state B;")
    rec = eng.monitoring.get(s.id)
    assert rec["dsm_state"] == "A" and rec["app"] == "t" and rec["dir"] == "in"
    s.key(1)
    assert rec["dsm_state"] == "B"


def test_failed_outbound_leg_ends_session():
    s, b, _ = run("initial state A; transition f A - failed / set($c=#code) -> B; state B;")
    s.failed(486, "Busy Here")
    assert s.ended and s.var["c"] == "486"


def test_events_helpers():
    s, _, _ = run("initial state A;\n"
                  "transition r A - ringing / set($r=#code) -> A;\n"
                  "transition e A - earlySession / set($e=1) -> A;\n"
                  "transition n A - noAudio(#type==noAudio) / set($n=1) -> A;\n"
                  "transition s A - separator / set($sep=#id) -> A;\n"
                  "transition k A - key(#key==11) / set($k=#duration) -> A;")
    s.ringing()
    s.early_session()
    s.no_audio()
    s.separator("7")
    s.key("#", 120)
    assert (s.var["r"], s.var["e"], s.var["n"], s.var["sep"], s.var["k"]) == \
        ("180", "1", "1", "7", "120")


_ = (Deferred, Clock)
