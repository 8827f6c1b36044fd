"""DSM sessions on the simulated Yate: the LegBackend mapping (spec §5.1) end to end.

Every test runs on the simulator's `task.Clock` and ends with the leak check: no session,
backend, registry entry, leg, notify tag, wait, timer, unanswered message or channel left.
"""
from __future__ import annotations

import os
import re

import pytest

from yaypm.dsm import DSMModule, action, register_module
from yaypm.testing.simulator import busy, noanswer

from yate_helpers import IVR, PROMPTS, Harness, wave


def lines(sim, pattern, direction=None):
    rx = re.compile(pattern)
    return [w.line for w in sim.wire if rx.search(w.line)
            and (direction is None or w.direction == direction)]


# -- the small IVR ------------------------------------------------------------------------------

def test_ivr_answer_prompt_keys_check_and_hang_up(sim):
    h = Harness(sim, {"ivr": IVR}, routes={"ivr": "100"})
    call = sim.place_call("100", caller="alice", callername="Alice")
    sim.advance(1)
    assert call.sip_status == 200 and not call.ended
    call.send_dtmf("4")
    sim.advance(0.5)
    assert h.session().var["pin"] == "4"
    call.send_dtmf("2#", interval=0.2)
    sim.advance(3)
    assert call.ended and call.state == "ended"
    # The menu is cut by the first key (flushPlaylist), "one" plays to its end, then BYE.
    assert call.heard() == [wave("menu.au"), wave("one.au")]
    assert lines(sim, r"call\.drop::id=sip/1:reason=normal")
    rec = h.record()
    assert rec["app"] == "ivr" and rec["dir"] == "in" and rec["dsm_state"] == "END"
    assert rec["dsm_diag"] == "ivr" and h.registry.finished[h.ended_sessions[0].id].outcome
    assert rec["from"] == '"Alice" <sip:alice@127.0.0.1:5090>'
    assert rec["ruri"] == "sip:100@127.0.0.1:5070" and rec["chan"] == "sip/1"
    assert h.graph() == ["START", "COLLECT", "COLLECT", "COLLECT", "CHECK", "GOODBYE", "END"]
    h.clean()


def test_ivr_wrong_pin_then_caller_hangs_up(sim):
    h = Harness(sim, {"ivr": IVR}, routes={"ivr": "100"})
    call = sim.place_call("100")
    sim.advance(1)
    call.send_dtmf("7#", interval=0.2)
    sim.advance(0.5)
    s = h.session()
    assert s.state.name == "COLLECT" and "pin" not in s.var
    call.hangup()
    sim.advance(1)
    assert call.heard() == [wave("menu.au"), wave("invalid.au")]
    assert h.record()["dsm_state"] == "END"
    assert h.registry.finished and not h.registry.active
    h.clean()


def test_no_stategraph_without_monitoring_full_stategraph(sim):
    from yaypm.dsm import Engine
    from yaypm.dsm.yate import DSMRunner
    from yaypm.registry import CallRegistry

    eng = Engine.from_scripts({"ivr": IVR}, clock=sim.clock,
                              config={"route.ivr": "100", "prompts": PROMPTS, "pin": "1"})
    registry = CallRegistry(sim.clock)
    sim.connect(DSMRunner(eng, registry=registry).attach)
    call = sim.place_call("100")
    sim.advance(1)
    [rec] = registry.active.values()
    assert rec.attrs["dsm_state"] == "COLLECT" and "dsm_stategraph" not in rec.attrs
    call.hangup()
    sim.advance(1)
    assert not registry.active and not eng.registry.sessions


def test_selects_and_app_params(sim):
    script = """initial state S enter {
      sets($got=@user,@domain,@local_uri,@remote_uri,@callid);
      set($lt=@local_tag) };
    transition t S - hangup / stop(false) -> S;"""
    h = Harness(sim, {"sel": script}, routes={"sel": "555"},
                config={"set_param_variables": "yes"})
    h.engine.app_set.apps["sel"].set_param_variables = True
    call = sim.place_call("555", caller="bob", headers={"P-App-Param": "lang=de;x=1"})
    sim.advance(0.1)
    s = h.session()
    assert s.var["got"] == ("555,127.0.0.1,sip:555@127.0.0.1:5070,sip:bob@127.0.0.1:5090,"
                            "1-sim@127.0.0.1")
    assert (s.var["lang"], s.var["x"]) == ("de", "1")
    assert s.var["lt"] == s.id and "/" not in s.id
    call.hangup()
    sim.advance(1)
    h.clean()


# -- one registry entry per leg, shared with the IVR layer ------------------------------------------

def test_a_dsm_leg_is_one_registry_entry_with_ivr_and_dsm_attributes(sim):
    from yaypm.monitor.dsm_bridge import EngineControl
    from yaypm.monitor.rpc import MonitorRPC
    h = Harness(sim, {"ivr": IVR}, routes={"ivr": "100"}, ivr_records=True)
    rpc = MonitorRPC(h.registry, EngineControl(h.engine), clock=sim.clock)
    call = sim.place_call("100", caller="alice", callername="Alice")
    sim.advance(1)
    assert rpc.calls() == 1 and rpc.list_active() == [h.session().id]
    [rec] = h.registry.active.values()
    assert rec.id == h.session().id and h.registry.started_total == 1
    attrs = rec.attrs
    assert attrs["dir"] == "in" and attrs["chan"] == "sip/1" and attrs["app"] == "ivr"
    assert attrs["from"] == '"Alice" <sip:alice@127.0.0.1:5090>' and "to" in attrs
    assert attrs["dsm_diag"] == "ivr" and attrs["dsm_state"] == "COLLECT"
    assert [e.split("/", 1)[1] for e in attrs["dsm_stategraph"]] == ["START", "COLLECT"]
    call.hangup()
    sim.advance(1)
    assert rpc.calls() == 0 and rpc.list_finished() == [rec.id]
    assert h.registry.ended_total == {"hangup": 1}
    assert h.registry.finished[rec.id].outcome == "hangup" and attrs["dsm_state"] == "END"
    h.clean()


def test_dialout_legs_are_one_entry_each_named_after_their_sessions(sim):
    h = Harness(sim, {"caller": CALLER, "callee": CALLEE}, routes={"caller": "35"},
                config={"callee": "john"}, ivr_records=True)
    sim.endpoint("john", "answer_after(2)")
    call = sim.place_call("35")
    sim.advance(3)
    a, b = h.session(0), h.session(1)
    assert sorted(h.registry.active) == sorted([a.id, b.id]) and h.registry.started_total == 2
    rec_b = h.registry.active[b.id].attrs
    assert rec_b["dir"] == "out" and rec_b["app"] == "callee" and rec_b["chan"] == ""
    assert rec_b["dsm_diag"] == "callee" and rec_b["dsm_state"] == "CONNECTED"
    call.hangup()
    sim.advance(1)
    assert not h.registry.active and sorted(h.registry.finished) == sorted([a.id, b.id])
    assert sum(h.registry.ended_total.values()) == 2
    assert h.registry.finished[b.id].attrs["chan"]       # the leg's channel, once known
    h.clean()


def test_registry_store_merges_into_the_legs_entry_even_once_it_ended():
    from twisted.internet.task import Clock

    from yaypm.monitor.dsm_bridge import RegistryMonitoringStore
    from yaypm.registry import CallRegistry
    registry = CallRegistry(Clock())
    store = RegistryMonitoringStore(registry)
    registry.start("leg-1", chan="sip/1", dir="in")
    rec = store.create("leg-1", {"dsm_state": ""})
    assert rec is registry.active["leg-1"].attrs and rec == {"chan": "sip/1", "dir": "in",
                                                            "dsm_state": ""}
    registry.start("leg-2", dir="out")
    registry.end("leg-2", "noroute")          # a dial-out that failed before its session
    rec2 = store.create("leg-2", {"dsm_state": ""})
    rec2["dsm_state"] = "END"
    store.mark_finished("leg-1")
    store.mark_finished("leg-2")              # the IVR layer ends its entries, not the store
    assert registry.started_total == 2 and registry.ended_total == {"noroute": 1}
    assert registry.finished["leg-2"].attrs == {"dir": "out", "dsm_state": "END"}
    store.create("own", {})                   # no leg entry: the store's own, ended by it
    store.mark_finished("own")
    assert registry.finished["own"].outcome == "normal"


def test_a_separate_ivr_registry_keeps_its_own_entries(sim):
    from yaypm.dsm import Engine
    from yaypm.dsm.yate import DSMRunner
    from yaypm.registry import CallRegistry

    eng = Engine.from_scripts({"ivr": IVR}, clock=sim.clock,
                              config={"route.ivr": "100", "prompts": PROMPTS, "pin": "1"})
    dsm_records, ivr_records = CallRegistry(sim.clock), CallRegistry(sim.clock)
    runner = DSMRunner(eng, registry=dsm_records)

    def start(dispatcher):
        dispatcher.call_registry = ivr_records
        runner.attach(dispatcher)
    sim.connect(start)
    call = sim.place_call("100")
    sim.advance(1)
    [dsm_rec], [ivr_rec] = dsm_records.active.values(), ivr_records.active.values()
    assert "dsm_state" in dsm_rec.attrs and "dsm_state" not in ivr_rec.attrs
    call.hangup()
    sim.advance(1)
    assert dsm_records.ended_total == {"normal": 1} and ivr_records.ended_total == {"hangup": 1}


# -- the engine's monitoring store ------------------------------------------------------------------

def test_engine_takes_a_registry_store_and_the_runner_keeps_it(sim):
    from yaypm.dsm import Engine
    from yaypm.dsm.runtime import MonitoringStore
    from yaypm.dsm.yate import DSMRunner
    from yaypm.monitor.dsm_bridge import RegistryMonitoringStore, attach_engine
    from yaypm.registry import CallRegistry

    registry = CallRegistry(sim.clock)
    store = RegistryMonitoringStore(registry)
    eng = Engine.from_scripts({"ivr": IVR}, clock=sim.clock, monitoring=store,
                              config={"route.ivr": "100", "prompts": PROMPTS, "pin": "1"},
                              conf={"monitoring_full_transitions": "yes"})
    assert eng.monitoring is store and eng.registry.monitoring is store
    assert store.full_transitions and not store.full_stategraph    # the conf turns options on
    runner = DSMRunner(eng, registry=registry)
    assert eng.monitoring is store and attach_engine(eng, registry) is store
    sim.connect(runner.attach)
    sim.place_call("100")
    sim.advance(1)
    [rec] = registry.active.values()
    assert rec.attrs["dsm_stategraph"][:3] == ["ivr/START", "> answered >", "ivr/COLLECT"]
    # An engine made without one (old callers): attach_engine swaps in a registry store,
    # keeping the conf's options.
    other = Engine.from_scripts({"ivr": IVR}, conf={"monitoring_full_stategraph": "yes"})
    assert type(other.monitoring) is MonitoringStore
    swapped = attach_engine(other, registry)
    assert other.monitoring is swapped and other.registry.monitoring is swapped
    assert swapped.full_stategraph and not swapped.full_transitions


# -- playlist --------------------------------------------------------------------------------------

PLAYLIST = """
initial state S;
transition go S - sessionStart / {
  sets($a=$(config.prompts)/beep.au); sets($b=$(config.prompts)/two.au);
  playFile($a); addSeparator(mid); playFile($b);
} -> PLAYING;
state PLAYING;
transition sep PLAYING - separator / { set($sep=#id); inc($seps) } -> PLAYING;
transition empty PLAYING - noAudio / { inc($empties); set($t=$config.t) } -> DONE;
state DONE;
transition key DONE - key / { sets($c=$(config.prompts)/three.au); playFile($c, true) } -> LOOP;
state LOOP;
transition k2 LOOP - key / flushPlaylist() -> FLUSHED;
state FLUSHED;
transition never FLUSHED - noAudio / set($bad=1) -> FLUSHED;
transition bye (S, PLAYING, DONE, LOOP, FLUSHED) - hangup / stop(false) -> S;
"""


def test_playlist_plays_in_order_separator_then_no_audio_once(sim):
    h = Harness(sim, {"pl": PLAYLIST}, routes={"pl": "200"})
    call = sim.place_call("200")
    sim.advance(0.2)
    assert call.heard() == [wave("beep.au")]
    sim.advance(0.2)                            # beep is 0.3 s: separator, then two.au
    s = h.session()
    assert s.var["sep"] == "mid" and call.heard() == [wave("beep.au"), wave("two.au")]
    assert s.state.name == "PLAYING"
    sim.advance(0.5)
    assert s.state.name == "DONE" and s.var["empties"] == "1" and s.var["seps"] == "1"
    sim.advance(5)
    assert s.var["empties"] == "1"              # nothing more to play: no second noAudio
    call.hangup()
    sim.advance(1)
    h.clean()


def test_looped_file_replays_and_flush_detaches_without_no_audio(sim):
    h = Harness(sim, {"pl": PLAYLIST}, routes={"pl": "200"})
    call = sim.place_call("200")
    sim.advance(2)
    call.send_dtmf("1")
    sim.advance(1.0)                            # three.au is 0.31 s: played 4 times so far
    assert call.heard().count(wave("three.au")) >= 3
    call.send_dtmf("2")
    sim.advance(0.01)
    s = h.session()
    assert s.state.name == "FLUSHED"
    assert lines(sim, r"chan\.attach:id=dumb/1:source=-$")
    n = len(call.heard())
    sim.advance(3)
    assert len(call.heard()) == n and "bad" not in s.var
    call.hangup()
    sim.advance(1)
    h.clean()


def test_prompts_wait_for_the_answer_and_early_media_plays_them(sim):
    script = """import(mod_dlg);
    initial state S;
    transition inv S - invite / {
      set($connect_session=0);
      dlg.acceptInvite(183, Session Progress);
      sets($w=$(config.prompts)/welcome.au); playFile($w);
    } -> EARLY;
    state EARLY;
    transition heard EARLY - noAudio / dlg.acceptInvite(200, OK) -> UP;
    state UP;
    transition up UP - sessionStart / { sets($b=$(config.prompts)/beep.au); playFile($b) } -> UP2;
    state UP2;
    transition done UP2 - noAudio / stop(true) -> UP2;
    transition bye (S, EARLY, UP, UP2) - hangup / stop(false) -> S;"""
    h = Harness(sim, {"early": script}, routes={"early": "183"})
    call = sim.place_call("183")
    sim.advance(0.5)
    assert 183 in call.provisional and call.sip_status is None
    assert call.heard() == [wave("welcome.au")]
    sim.advance(1.0)
    assert call.sip_status == 200
    sim.advance(1)
    assert call.heard() == [wave("welcome.au"), wave("beep.au")] and call.ended
    assert h.graph() == ["S", "EARLY", "UP", "UP2", "UP2"]
    h.clean()


def test_missing_file_throws_file_exception_synchronously(sim):
    script = """initial state S;
    transition go S - sessionStart / { set($p=/nonexistent/x.au); playFile($p); set($after=1) } -> S2;
    transition err S - exception / { set($type=#type); set($path=#path); stop(true) } -> S;
    state S2;"""
    h = Harness(sim, {"f": script}, routes={"f": "300"})
    call = sim.place_call("300")
    sim.advance(0.5)
    assert call.ended and call.heard() == []
    assert h.graph() == ["S", "S"]                 # "go" never completed; "err" taken
    s = h.ended_sessions[0]
    assert (s.var["type"], s.var["path"]) == ("file", "/nonexistent/x.au")
    assert "after" not in s.var
    h.clean()


def test_missing_file_exception_keeps_params():
    from yaypm.dsm.backend import MediaError
    from yaypm.dsm.yate import LegBackend

    class R:
        check_files = True
    b = LegBackend(R(), None)
    with pytest.raises(MediaError) as e:
        b.play("/nonexistent/prompt.au")
    assert e.value.kind == "file" and e.value.params == {"path": "/nonexistent/prompt.au"}
    b.play("tone/ring")                            # resources are not files


# -- recording -------------------------------------------------------------------------------------

def test_record_stop_length_and_missing_directory(sim, tmp_path):
    rec = str(tmp_path / "msg.alaw")
    script = f"""initial state S;
    transition go S - sessionStart / recordFile({rec}) -> REC;
    state REC;
    transition stop REC - key / {{ stopRecord(); getRecordLength(); getRecordDataSize($size);
      stopRecord(); set($e2=$errno) }} -> STOPPED;
    state STOPPED;
    transition bad STOPPED - key / recordFile(/nonexistent/dir/x.alaw) -> STOPPED;
    transition err STOPPED - exception / {{ set($type=#type); stop(true) }} -> STOPPED;
    transition bye (S, REC, STOPPED) - hangup / stop(false) -> S;"""
    h = Harness(sim, {"r": script}, routes={"r": "400"})
    call = sim.place_call("400")
    sim.advance(2.5)
    assert lines(sim, r"consumer=wave/record/" + re.escape(rec))
    call.send_dtmf("1")
    sim.advance(0.1)
    s = h.session()
    assert s.var["record_length"] == "2500"
    assert s.var["size"] == str(os.path.getsize(rec)) and int(s.var["size"]) > 0
    assert s.var["e2"] == "script"              # nothing left to stop
    assert lines(sim, r"chan\.attach:id=dumb/1:consumer=-$")
    call.send_dtmf("2")
    sim.advance(0.5)
    assert s.var["type"] == "file" and call.ended
    h.clean()


# -- replies ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("code,sip,error", [
    (404, 404, "noroute"), (486, 486, "busy"), (480, 480, "noanswer"), (403, 403, "forbidden"),
    (503, 503, "noconn"), (500, 500, "failure"), (599, 500, "failure"), (484, 484, "incomplete"),
])
def test_reject_during_invite_answers_call_route(sim, code, sip, error):
    script = f"""import(mod_dlg);
    initial state S;
    transition inv S - invite / {{ dlg.reply({code}, Go away); stop(false) }} -> S;"""
    h = Harness(sim, {"rej": script}, routes={"rej": "486"})
    call = sim.place_call("486")
    sim.advance(0.5)
    assert call.sip_status == sip and call.ended
    route_answer = lines(sim, r"call\.route:-:", ">>")
    assert route_answer and f"error={error}" in route_answer[0]
    h.clean()


LATE = """import(mod_dlg);
initial state S;
transition inv S - invite / { set($connect_session=0); setTimer(1, 2) } -> WAIT;
state WAIT;
transition t WAIT - timer / { dlg.reply($config.code, Later) } -> WAIT;
transition gone WAIT - hangup / set($hup=1) -> WAIT;"""

@pytest.mark.parametrize("code,sip,reason", [
    ("486", 486, "busy"), ("404", 404, "noroute"),
    ("487", 487, "cancelled")])
def test_late_reject_drops_with_the_reason(sim, code, sip, reason):
    h = Harness(sim, {"late": LATE}, routes={"late": "700"}, config={"code": code})
    call = sim.place_call("700")
    sim.advance(1)
    assert call.sip_status is None and 180 in call.provisional
    sim.advance(1.5)
    assert lines(sim, r"call\.drop::id=sip/1:reason=" + reason, ">>")
    assert call.ended
    s = h.ended_sessions[0]
    assert "hup" not in s.var                  # our own reject: no hangup event
    h.clean()
    assert call.sip_status == sip


def test_stop_true_on_an_unanswered_call_sends_487(sim):
    script = """initial state S;
    transition inv S - invite / { set($connect_session=0); stop(true) } -> S;"""
    h = Harness(sim, {"s": script}, routes={"s": "1"})
    call = sim.place_call("1")
    sim.advance(0.5)
    assert lines(sim, r"call\.drop::id=sip/1:reason=cancelled", ">>") and call.ended
    h.clean()
    assert call.sip_status == 487


def test_stop_false_drops_an_answered_call_and_refuses_an_unanswered_one(sim):
    script = """initial state S;
    transition inv S - invite / { set($connect_session=0); stop(false) } -> S;"""
    script2 = """initial state S;
    transition up S - sessionStart / stop(false) -> S;"""
    h = Harness(sim, {"s": script, "s2": script2}, routes={"s": "1", "s2": "2"})
    call = sim.place_call("1")
    call2 = sim.place_call("2")
    sim.advance(0.5)
    assert call.sip_status == 500 and call2.sip_status == 200 and call2.ended
    h.clean()


def test_caller_cancels_before_answer_gets_hangup_event(sim):
    script = """initial state S;
    transition inv S - invite / set($connect_session=0) -> WAIT;
    state WAIT;
    transition gone WAIT - hangup / { set($h=1); stop(false) } -> GONE;
    state GONE;"""
    h = Harness(sim, {"c": script}, routes={"c": "5"})
    call = sim.place_call("5")
    sim.advance(0.5)
    call.hangup()
    sim.advance(0.5)
    assert call.sip_status == 487 and h.record()["dsm_state"] == "GONE"
    h.clean()


def test_unclaimed_numbers_are_left_to_other_routers(sim):
    h = Harness(sim, {"ivr": IVR}, routes={"ivr": "100"})
    call = sim.place_call("999")
    sim.advance(0.5)
    assert call.sip_status == 404
    assert lines(sim, r"^%%<message:[^:]+:false:", ">>")
    h.clean()


# -- conference ------------------------------------------------------------------------------------

CONF = """import(mod_conference);
initial state S;
transition up S - sessionStart / {
  sets($w=$(config.prompts)/beep.au); playFile($w);
  conference.join(room1);
  conference.size(room1, $n);
} -> IN;
state IN;
transition bye IN - hangup / stop(false) -> S;
"""


def test_conference_join_after_queued_prompts(sim):
    h = Harness(sim, {"conf": CONF}, routes={"conf": "800"})
    a = sim.place_call("800", caller="a")
    sim.advance(0.1)
    assert not lines(sim, r"callto=conf/room1")          # after the beep (⚑D5)
    sim.advance(0.5)
    joins = lines(sim, r"chan\.masquerade::message=call\.execute:id=sip/1:callto=conf/room1")
    assert joins and "lonely=true" in joins[0]
    b = sim.place_call("800", caller="b")
    sim.advance(1)
    assert h.runner.room_size("room1") == 2
    assert h.session(1).var["n"] == "2"
    a.hangup()
    sim.advance(0.5)
    assert h.runner.room_size("room1") == 1 and not b.ended     # lonely: b stays
    b.hangup()
    sim.advance(0.5)
    h.clean()


def test_leave_conference_returns_to_the_ivr(sim):
    script = """import(mod_conference);
    initial state S;
    transition up S - sessionStart / conference.join(r2) -> IN;
    state IN;
    transition k IN - key / { conference.leave(); sets($w=$(config.prompts)/beep.au); playFile($w) } -> OUT;
    state OUT;
    transition e OUT - noAudio / stop(true) -> OUT;
    transition bye (S, IN, OUT) - hangup / stop(false) -> S;"""
    h = Harness(sim, {"c": script}, routes={"c": "801"})
    call = sim.place_call("801")
    sim.advance(0.5)
    call.send_dtmf("1")
    sim.advance(1)
    assert lines(sim, r"message=call\.execute:id=sip/1:callto=dumb/")
    assert call.heard()[-1] == wave("beep.au") and call.ended
    h.clean()


# -- dial-out and postEvent ------------------------------------------------------------------------

CALLER = """import(mod_dlg);
import(mod_conference);
initial state START;
transition inv START - invite / {
  set($connect_session=0);
  dlg.acceptInvite(183, Session Progress);
  set($b_caller=ivr); set($b_callee=$config.callee); set($b_domain=127.0.0.1);
  set($b_app=callee); set($b_var.a_ltag=@local_tag); set($b_var.greeting=hello);
  dlg.dialout(b);
  set($errno_dial=$errno);
} -> WAIT;
state WAIT;
transition won WAIT - event(#status == answered) / {
  set($b_ltag=#ltag);
  dlg.acceptInvite(200, OK);
  conference.join(@local_tag);
} -> CONNECTED;
transition lost WAIT - event(#status == failed) / { set($why=#code); dlg.reply(480, Nobody); stop(false) } -> END;
state CONNECTED;
transition bye (WAIT, CONNECTED) - hangup / { set($status=bye); postEvent($b_ltag, status); stop(false) } -> END;
state END;
"""

CALLEE = """import(mod_dlg);
import(mod_conference);
initial state START;
transition ring START - ringing / set($rang=1) -> START;
transition up START - sessionStart / {
  set($status=answered); set($ltag=@local_tag);
  postEvent($a_ltag, status;ltag);
  conference.join($a_ltag);
} -> CONNECTED;
transition fail START - failed / {
  set($status=failed); set($code=#code);
  postEvent($a_ltag, status;code);
} -> END;
state CONNECTED;
transition other CONNECTED - event(#status == bye) / stop(true) -> END;
transition bye CONNECTED - hangup / stop(false) -> END;
state END;
"""


def quiz(sim, callee_behaviour):
    h = Harness(sim, {"caller": CALLER, "callee": CALLEE}, routes={"caller": "35"},
                config={"callee": "john"})
    sim.endpoint("john", callee_behaviour)
    return h


def test_dialout_callee_leg_posts_events_between_sessions(sim):
    h = quiz(sim, "answer_after(2)")
    call = sim.place_call("35")
    sim.advance(0.5)
    a, b = h.session(0), h.session(1)
    assert a.var["errno_dial"] == "" and a.var["b_ltag"] == b.id
    assert b.var["a_ltag"] == a.id and b.var["greeting"] == "hello"
    assert b.direction == "out" and b.var["rang"] == "1"
    assert lines(sim, r"call\.execute::callto=dumb/:direct=sip/sip%zjohn@127\.0\.0\.1:"
                      r"target=john:caller=ivr")
    assert 183 in call.provisional and call.sip_status is None
    sim.advance(2)
    assert call.sip_status == 200
    assert a.state.name == "CONNECTED" and b.state.name == "CONNECTED"
    assert a.var["b_ltag"] == b.id
    assert lines(sim, r"id=sip/1:callto=conf/" + a.id) and lines(sim, r"id=sip/2:callto=conf/"
                                                                   + a.id)
    rec_b = h.record(1)
    assert rec_b["dir"] == "out" and rec_b["app"] == "callee"
    call.hangup()                    # A leaves: A posts bye, B hangs up (stop(true))
    sim.advance(1)
    john = sim.endpoints["john"].last
    assert john.ended
    assert h.graph(1) == ["START", "START", "CONNECTED", "END"]    # ringing, answered, bye
    h.clean()


def test_dialout_to_a_busy_callee_fails_that_session_only(sim):
    h = quiz(sim, busy())
    call = sim.place_call("35")
    sim.advance(1)
    assert call.sip_status == 480
    assert h.record(1)["dsm_state"] == "END"
    h.clean()


def test_caller_hangs_up_while_callee_rings_cancels_it(sim):
    script = CALLER.replace(
        "transition bye (WAIT, CONNECTED) - hangup",
        "transition cancel WAIT - hangup / { set($status=bye); postEvent($b_ltag, status);"
        " stop(false) } -> END;\ntransition bye CONNECTED - hangup")
    callee = CALLEE.replace("transition ring START - ringing / set($rang=1) -> START;",
                            "transition ring START - ringing / set($rang=1) -> START;\n"
                            "transition c START - event(#status == bye) / stop(true) -> END;")
    h = Harness(sim, {"caller": script, "callee": callee}, routes={"caller": "35"},
                config={"callee": "john"})
    sim.endpoint("john", noanswer())
    call = sim.place_call("35")
    sim.advance(1)
    call.hangup()
    sim.advance(1)
    john = sim.endpoints["john"].last
    assert john.ended and john.sip_status == 487
    assert h.record(1)["dsm_state"] == "END"
    h.clean()


def test_post_dsm_event_from_monitoring_control(sim):
    from yaypm.monitor.dsm_bridge import EngineControl
    script = """initial state S;
    transition e S - event / { set($x=#x); stop(true) } -> S;"""
    h = Harness(sim, {"ev": script}, routes={"ev": "9"})
    call = sim.place_call("9")
    sim.advance(0.5)
    control = EngineControl(h.engine)
    assert control.post_event(h.session().id, {"x": "1"}) is True
    assert control.post_event("nobody", {}) is False
    sim.advance(0.5)
    assert call.ended and h.session_var_after_end("x") == "1"
    h.clean()


# -- B2B --------------------------------------------------------------------------------------------

def test_b2b_connect_callee_bridges_and_reports_other_bye(sim):
    script = """initial state S;
    transition up S - sessionStart / B2B.connectCallee("Bob" <sip:bob@x>, sip:bob@127.0.0.1) -> CALLING;
    state CALLING;
    transition r CALLING - B2B.otherReply / { append($replies, #code); append($replies, ",") } -> CALLING;
    transition b CALLING - B2B.otherBye / { set($obye=1); stop(true) } -> END;
    transition bye CALLING - hangup / stop(false) -> END;
    state END;"""
    h = Harness(sim, {"b2b": script}, routes={"b2b": "77"})
    sim.endpoint("bob", "answer_after(1)")
    call = sim.place_call("77")
    sim.advance(2)
    s = h.session()
    assert s.var["replies"].startswith("180,") and s.var["replies"].endswith("200,")
    assert lines(sim, r"chan\.connect::id=sip/1:targetid=sip/2")
    bob = sim.endpoints["bob"].last
    bob.hangup()
    sim.advance(1)
    assert call.ended
    h.clean()


# -- isolation ---------------------------------------------------------------------------------------

@register_module
class _CrashModule(DSMModule):
    name = "mod_testcrash"

    @action("crash.now", split="none", arity=(0, 0))
    def now(self, s):
        raise ZeroDivisionError("boom")


def test_exception_in_an_action_ends_only_that_session(sim):
    script = """import(mod_testcrash);
    initial state S;
    transition up S - sessionStart / { sets($m=$(config.prompts)/menu.au); playFile($m) } -> MENU;
    state MENU;
    transition k MENU - keyPress(1) / crash.now() -> MENU;
    transition k2 MENU - keyPress(2) / stop(true) -> MENU;
    transition bye MENU - hangup / stop(false) -> MENU;"""
    h = Harness(sim, {"cr": script}, routes={"cr": "66"})
    c1, c2 = sim.place_call("66"), sim.place_call("66")
    sim.advance(0.5)
    sim.skip_lines()
    c1.send_dtmf("1")
    sim.advance(0.2)
    # The chan.dtmf was still answered (handled), the crashed call dropped, the other one fine.
    sim.expect_line(r"^%%<message:[^:]+:true:chan\.dtmf:", direction=">>", skip=True)
    assert c1.ended and not c2.ended
    s2 = h.session(0)
    assert s2.state.name == "MENU"
    c2.send_dtmf("2")
    sim.advance(0.5)
    assert c2.ended and c2.sip_status == 200
    h.clean()


def test_exception_during_invite_still_answers_call_route(sim):
    script = """import(mod_testcrash);
    initial state S;
    transition inv S - invite / crash.now() -> S;"""
    h = Harness(sim, {"cr": script, "ivr": IVR}, routes={"cr": "67", "ivr": "100"})
    call = sim.place_call("67")
    sim.advance(0.5)
    assert call.sip_status == 500 and call.ended
    assert lines(sim, r"call\.route:-:error=failure", ">>")
    ok = sim.place_call("100")
    sim.advance(0.5)
    assert ok.sip_status == 200
    ok.hangup()
    sim.advance(0.5)
    h.clean()


# -- reload ------------------------------------------------------------------------------------------

def write_conf(tmp_path, prompt_name, extra=""):
    d = tmp_path / "diags"
    d.mkdir(exist_ok=True)
    (d / "hello.dsm").write_text(f"""initial state S;
transition up S - sessionStart / {{ sets($p=$(config.prompts)/{prompt_name}); playFile($p) }} -> WAIT;
state WAIT;
transition k WAIT - key / {{ sets($p=$(config.prompts)/{prompt_name}); playFile($p) }} -> PLAY;
state PLAY;
transition done PLAY - noAudio / stop(true) -> PLAY;
transition bye (WAIT, PLAY) - hangup / stop(false) -> WAIT;
{extra}""")
    conf = tmp_path / "dsm.conf"
    conf.write_text(f"diag_path={d}\nload_diags=hello\nregister_apps=hello\n"
                    f"route.hello=600\nprompts={PROMPTS}\nmonitoring_full_stategraph=yes\n")
    return str(conf)


def test_reload_while_a_call_runs(sim, tmp_path):
    conf = write_conf(tmp_path, "one.au")
    h = Harness(sim, conf_path=conf)
    old = sim.place_call("600")
    sim.advance(1)
    write_conf(tmp_path, "two.au", extra="state EXTRA;\n")
    assert h.runner.reload() == (True, "DSMs reloaded")
    new = sim.place_call("600")
    sim.advance(1)
    old.send_dtmf("1")
    new.send_dtmf("1")
    sim.advance(2)
    assert old.heard() == [wave("one.au"), wave("one.au")]       # old call: old diagram
    assert new.heard() == [wave("two.au"), wave("two.au")]
    assert old.ended and new.ended
    # a broken reload keeps the running set
    (tmp_path / "diags" / "hello.dsm").write_text("initial state S;\ntransition x S - nonsense -> S;\n")
    ok, msg = h.runner.reload()
    assert not ok and "nonsense" in msg
    again = sim.place_call("600")
    sim.advance(1)
    again.hangup()
    sim.advance(0.5)
    assert again.heard() == [wave("two.au")]
    h.clean()


def test_load_config_adds_a_bundle_and_its_route(sim, tmp_path):
    conf = write_conf(tmp_path, "one.au")
    h = Harness(sim, conf_path=conf)
    bundle = tmp_path / "extra.conf"
    (tmp_path / "diags" / "extra.dsm").write_text(
        "initial state S;\ntransition up S - sessionStart / stop(true) -> S;\n")
    bundle.write_text(f"diag_path={tmp_path / 'diags'}\nload_diags=extra\nregister_apps=extra\n"
                      "number=601,^61[0-9]$\n")
    assert h.runner.load_config(str(bundle), "extra.conf") == (200, "OK")
    assert h.runner.app_for("601") == "extra" and h.runner.app_for("615") == "extra"
    call = sim.place_call("615")
    sim.advance(0.5)
    assert call.sip_status == 200 and call.ended
    h.clean()


# -- many calls ---------------------------------------------------------------------------------------

def test_200_concurrent_calls_leave_nothing_behind(sim):
    h = Harness(sim, {"ivr": IVR}, routes={"ivr": "100"})
    calls = [sim.place_call("100", caller=f"c{i}") for i in range(200)]
    sim.advance(1)
    assert len(h.engine.registry.sessions) == 200 and len(h.registry.active) == 200
    for i, c in enumerate(calls):
        c.send_dtmf("42#" if i % 2 else "9#", interval=0.1)
    sim.advance(1)
    for i, c in enumerate(calls):
        if i % 2 == 0:
            c.hangup()               # wrong PIN: they hang up during "invalid"
    sim.advance(3)
    assert all(c.ended for c in calls)
    assert sum(c.heard()[-1] == wave("one.au") for c in calls) == 100
    assert len(h.registry.finished) == 200
    h.clean()


# -- route table ---------------------------------------------------------------------------------------

def test_route_table_exact_patterns_order_and_errors():
    from yaypm.dsm.config import Bundle, DSMApplicationSet
    from yaypm.dsm.yate import RouteTable

    main = Bundle("", {"route.menu": "100,101", "route.any": "^9[0-9]{2}$,8*",
                       "route.ghost": "1"}, apps=["menu", "any"])
    quiz = Bundle("quiz", {"number": "35,9*", "route.menu": "101"}, apps=["quiz_caller"])
    empty = Bundle("zzz", {"number": "5"})
    apps = {"menu": object(), "any": object(), "quiz_caller": object()}
    table = RouteTable.from_app_set(DSMApplicationSet(
        {"": main, "quiz": quiz, "zzz": empty}, apps))  # type: ignore[arg-type]
    assert table.app_for("100") == "menu" and table.app_for("101") == "menu"
    assert table.app_for("35") == "quiz_caller"
    assert table.app_for("950") == "any"          # dsm.conf patterns before the bundle's
    assert table.app_for("9") == "quiz_caller" and table.app_for("8123") == "any"
    assert table.app_for("2") is None
    assert len(table) == 6
    assert any("unknown application 'ghost'" in e for e in table.errors)
    assert any("zzz" in e and "register_apps" in e for e in table.errors)
    assert table.describe()[0] == "100 -> menu"


def test_route_table_bad_regex_is_an_error():
    from yaypm.dsm.config import Bundle, DSMApplicationSet
    from yaypm.dsm.yate import RouteTable

    b = Bundle("", {"route.a": "^(1"}, apps=["a"])
    table = RouteTable.from_app_set(DSMApplicationSet({"": b}, {"a": object()}))  # type: ignore
    assert len(table) == 0 and "bad regular expression" in table.errors[0]


def test_generic_dsm_app_runs_inbound_start_diag(sim):
    h = Harness(sim, {"hello": "initial state S;\ntransition up S - sessionStart / stop(true) -> S;"},
                routes={"dsm": "42"})
    h.engine.conf["inbound_start_diag"] = "hello"
    h.runner._table = None
    call = sim.place_call("42")
    sim.advance(0.5)
    assert call.sip_status == 200 and call.ended and h.record()["app"] == "hello"
    h.clean()


def test_reply_reason_table():
    from yaypm.dsm.yate import reply_reason
    assert [reply_reason(c) for c in (404, 486, 480, 403, 503, 487, 500, 599, 302)] == \
        ["noroute", "busy", "noanswer", "forbidden", "noconn", "cancelled", "failure",
         "failure", "failure"]


def test_dialout_without_a_connection_sets_errno(sim):
    script = """import(mod_dlg);
    initial state S;
    transition inv S - invite / {
      set($b_caller=a); set($b_callee=b); set($b_domain=x); set($b_app=s);
      dlg.dialout(b); set($e=$errno); set($lt=$b_ltag); stop(true) } -> S;"""
    h = Harness(sim, {"s": script}, routes={"s": "1"})
    h.runner.dispatcher = None            # as if Yate were not connected
    call = sim.place_call("1")
    sim.advance(0.5)
    s = h.ended_sessions[0]
    assert s.var["e"] == "general" and s.var["lt"] == ""
    h.runner.dispatcher = h.dispatcher
    h.clean()
    assert call.ended


def test_connection_loss_ends_the_sessions_and_reconnect_serves_new_calls(sim):
    h = Harness(sim, {"ivr": IVR}, routes={"ivr": "100"})
    old = sim.place_call("100")
    sim.advance(1)
    sim.disconnect(h.dispatcher)
    sim.advance(0.1)
    # The session saw its leg go ("hangup") and ended; its registry record is finished.
    assert h.engine.registry.sessions == {} and h.runner.backends == set()
    assert h.record()["dsm_state"] == "END" and not h.registry.active
    sim.connect(dispatcher=h.dispatcher)         # the reconnecting client's next connection
    sim.advance(0.5)
    assert old.ended                             # dropped once we are back
    new = sim.place_call("100")
    sim.advance(1)
    new.send_dtmf("42#", interval=0.1)
    sim.advance(2)
    assert new.ended and new.heard()[-1] == wave("one.au")
    h.clean()
