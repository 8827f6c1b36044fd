"""Every core action and condition (spec §2.6, §2.8) on the FakeBackend."""
from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from yaypm.dsm import FakeBackend
from yaypm.dsm.modules.core import CoreModule

from dsm_helpers import run


def enter(body: str, **kw):
    """A session whose initial state's enter actions are `body`."""
    return run("initial state A enter {\n" + body + "\n};\n"
               "transition h A - hangup / stop -> A;", **kw)


@pytest.mark.parametrize("body,expected", [
    ("set($a=1)", {"a": "1"}),
    ("set(a=\"x,y\")", {"a": "x,y"}),
    ("set($a=$b)", {"a": "B"}),
    ("sets($a=x $b y)", {"a": "x B y"}),
    ("eval($a=$n+2)", {"a": "7"}),
    ("set($vn=b); var($a=$vn)", {"a": "B"}),
    ("set($vn=arr[3]); setVar($vn=$b)", {"arr[3]": "B"}),
    ("append($a, x); append($a, $b)", {"a": "xB"}),
    ("set($s=abcdef); substr($s, 2)", {"s": "cdef"}),
    ("set($s=abcdef); substr($s, 1, 3)", {"s": "bcd"}),
    ("set($s=abc); substr($s, 9)", {"s": "abc"}),
    ("inc($n)", {"n": "6"}),
    ("inc($z)", {"z": "1"}),
    ("set($a=1); clear($a)", {"a": None}),
    ("set($s.x=1); set($s.y=2); set($sx=3); clearStruct($s)", {"s.x": None, "s.y": None, "sx": "3"}),
    ("set($r[0]=1); set($r[1]=2); clearArray($r)", {"r[0]": None, "r[1]": None}),
    ("set($r[0]=1); set($r[1]=2); set($r[3]=2); size($r, $len)", {"len": "2"}),
    ("set($r[0]=a); set($r[1]=B); arrayIndex($r, $b)", {"b.index": "1"}),
    ("set($r[0]=a); arrayIndex($r, zz)", {"index": "nil"}),
])
def test_variable_actions(body, expected):
    s, _, _ = enter(body, variables=None) if False else enter("set($b=B); set($n=5);\n" + body)
    for k, v in expected.items():
        assert s.var.get(k) == v, k


def test_param_and_set_param():
    s, _, _ = run("initial state A;\ntransition t A - event / { param($p=x); set(#y=1); "
                  "sets(#z=#x:); set($y=#y); set($z=#z) } -> A;")
    s.post_event("event", {"x": "X"})
    assert s.var["p"] == "X" and s.var["y"] == "1" and s.var["z"] == "X:"


def test_set_param_without_map_is_ignored():
    s, _, _ = enter("set(#x=1); set($y=#x)")
    assert s.var["y"] == ""


def test_logging_actions_do_not_fail(caplog):
    s, _, _ = enter("log(0, $b); log(x, y); logs(1, a $b); dbg(a); info(b); warn(c); error(d); "
                    "logVars(1); logParams(2); logSelects(3); logAll(3)")
    assert not s.ended


def test_timers(clock):
    s, b, _ = run("initial state A enter { setTimer(1, 5); setTimer(2, 10); setTimer(x, 1) };\n"
                  "transition t A - timer(#id==1) / { set($e=$errno); removeTimer(2) } -> B;\n"
                  "state B enter { removeTimers() };", clock=clock)
    assert s.var["errno"] == "arg"
    clock.advance(5)
    assert s.state.name == "B" and s.var["e"] == "arg"
    assert clock.getDelayedCalls() == []


def test_timer_zero_is_queued(clock):
    s, _, _ = run("initial state A enter { setTimer(7, 0) };\n"
                  "transition t A - timerTest(#id == 7) -> B; state B;", clock=clock)
    assert s.state.name == "A"
    clock.advance(0)
    assert s.state.name == "B"


def test_repost_stop_and_flow():
    s, b, _ = run("initial state A;\ntransition t A - key / { set($x=1); repost() } -> B;\n"
                  "state B; transition u B - key / stop(true) -> C; state C;")
    s.key(1)
    assert s.state.name == "C" and s.ended and b.hung_up


def test_throw_and_throw_on_error():
    s, _, _ = run("initial state A;\n"
                  "transition t A - key / throw(mine, a=1;b=$v;broken) -> B;\n"
                  "transition e A - exception; test(#type==mine) / { set($a=#a); set($b=#b) } -> C;\n"
                  "state C;\n"
                  "transition f C - key / { set($errno=boom); set($strerror=why); throwOnError() } -> D;\n"
                  "transition g C - exception / set($t=#text) -> E;\n"
                  "state B; state D; state E;")
    s.var["v"] = "V"
    s.key(1)
    assert s.state.name == "C" and (s.var["a"], s.var["b"]) == ("1", "V")
    s.key(1)
    assert s.state.name == "E" and s.var["t"] == "why"


def test_jump_call_return_fsm():
    from dsm_helpers import make_engine
    eng = make_engine({
        "main": "initial state A;\ntransition t A - key / { callFSM(sub); set($after=1) } -> B;\n"
                "transition j A - event / jumpFSM(sub) -> B;\nstate B;",
        "sub": "initial state S enter { set($in_sub=1) };\n"
               "transition r S - key / returnFSM() -> S;"})
    s = eng.create_session("main", FakeBackend())
    s.start()
    s.key(1)
    assert s.diagram.name == "sub" and s.var["in_sub"] == "1" and "after" not in s.var
    s.key(2)
    assert s.diagram.name == "main" and s.state.name == "A" and s.var["after"] == "1"
    s.post_event("event", {})
    assert s.diagram.name == "sub" and s.state.name == "S"


def test_break_ends_for_and_cancels_transition():
    s, _, _ = enter("for ($i in range(0, 10)) { if test($i==3) { break } append($s, $i) }")
    assert s.var["s"] == "012" and "i" not in s.var
    s2, _, _ = run("initial state A;\ntransition t A - key / { break; set($x=1) } -> B; state B;")
    s2.key(1)
    assert s2.state.name == "A" and "x" not in s2.var


def test_post_event_and_event_queues():
    from dsm_helpers import make_engine
    eng = make_engine({"a": "initial state A enter { registerEventQueue(q1) };\n"
                            "transition t A - eventTest(#x==1) / { set($got=#x); set($s=#s.k);"
                            " unregisterEventQueue(q1) } -> B; state B;",
                       "b": "initial state A;\ntransition t A - key / { set($x=1); set($s.k=K);"
                            " postEvent(q1, x;s.;nothere); set($e1=$errno); postEvent(nobody, x);"
                            " set($e2=$errno) } -> A;"})
    a = eng.create_session("a", FakeBackend())
    b = eng.create_session("b", FakeBackend())
    a.start(), b.start()
    b.key(1)
    assert a.var["got"] == "1" and a.var["s"] == "K"
    assert (b.var["e1"], b.var["e2"]) == ("", "arg")
    assert "q1" not in eng.registry.queues


def test_create_system_dsm():
    from dsm_helpers import make_engine
    eng = make_engine({"main": "initial state A enter { createSystemDSM(\"\", sys) };",
                       "sys": "initial state S; transition t S - startup / set($up=1) -> T;"
                              "state T enter { playFile(x.wav) };"
                              "transition e T - exception / set($why=#type) -> U; state U;"})
    s = eng.create_session("main", FakeBackend())
    s.start()
    sys_s = [x for x in eng.registry.sessions.values() if x.app.name == "sys"][0]
    assert sys_s.var["up"] == "1" and sys_s.var["why"] == "core"
    s2, _, _ = enter("createSystemDSM(nobundle, x)")
    s3, _, _ = run("initial state A enter { createSystemDSM(x, y) };\n"
                   "transition e A - exception; test(#type==core) -> B; state B;")
    assert s3.state.name == "B"


def test_playlist_actions():
    s, b, _ = enter("playFile(a.wav); playFile(b.wav, true); playFileFront(c.wav); "
                    "playSilence(200); playSilenceFront(10); set($r.length=100); set($r.f=425);"
                    " playRingtone($r, true); recordFile(/tmp/r.wav); getRecordLength(); "
                    "getRecordDataSize($sz); stopRecord(); set($e1=$errno); stopRecord(); "
                    "addSeparator(5); addSeparator(6, true); flushPlaylist(); closePlaylist()")
    assert b.calls[:6] == [("play", "a.wav", False, False), ("play", "b.wav", True, False),
                           ("play", "c.wav", False, True), ("play_silence", 200, False),
                           ("play_silence", 10, True),
                           ("play_ringtone", 100, 1000, 4000, 425, 0, True)]
    assert ("record", "/tmp/r.wav") in b.calls and ("add_separator", "6", True) in b.calls
    assert s.var["record_length"] == "1500" and s.var["sz"] == "24000"
    assert s.var["e1"] == "" and s.var["errno"] == "script"
    assert b.names().count("flush_playlist") == 2


@pytest.mark.parametrize("action,kind", [("playFile(missing.wav)", "file"),
                                         ("recordFile(missing.wav)", "file"),
                                         ("playSilence(x)", "core"),
                                         ("playPrompt(nope)", "prompt"),
                                         ("playPromptFront(nope)", "prompt"),
                                         ("playPromptLooped(nope)", "prompt"),
                                         ("setPrompts(nope)", "prompt"),
                                         ("setPromptSet(nope)", "prompt"),
                                         ("sendDTMF(x)", "core"),
                                         ("sendDTMFSequence(1x)", "core"),
                                         ("B2B.relayEvent(a)", "script")])
def test_actions_that_throw(action, kind):
    s, _, _ = run("initial state A;\ntransition t A - key / " + action + " -> B;\n"
                  "transition e A - exception / { set($type=#type); set($path=#path);"
                  " set($name=#name) } -> C; state B; state C;",
                  backend=FakeBackend(missing_files={"missing.wav"}))
    s.key(1)
    assert s.state.name == "C" and s.var["type"] == kind
    if kind == "file":
        assert s.var["path"] == "missing.wav"


def test_prompts_and_prompt_sets():
    from dsm_helpers import make_engine
    eng = make_engine({"p": "initial state A enter { playPrompt(hello); playPromptFront(hello);"
                            " playPromptLooped(hello); setPrompts(de); playPrompt(hello);"
                            " setPromptSet(de) };"})
    ctx = eng.app("p")
    ctx.prompts = {"": {"hello": "en/hello.wav"}, "de": {"hello": "de/hallo.wav"}}
    b = FakeBackend()
    eng.create_session("p", b).start()
    assert [c[1:] for c in b.calls] == [("en/hello.wav", False, False), ("en/hello.wav", False, True),
                                       ("en/hello.wav", True, False), ("de/hallo.wav", False, False)]


def test_media_plumbing_and_dtmf():
    names = ["setInOutPlaylist", "setInputPlaylist", "setOutputPlaylist", "connectMedia",
             "disconnectMedia", "mute", "unmute", "enableReceiving", "disableReceiving",
             "enableForceDTMFReceiving", "disableForceDTMFReceiving", "monitorRTPTimeout",
             "enableDTMFDetection", "disableDTMFDetection"]
    s, b, _ = enter("; ".join(n + "()" for n in names) + "; sendDTMF(5); sendDTMF(11, 100); "
                    "sendDTMFSequence(1*A, 80)")
    assert [c[1] for c in b.calls if c[0] == "media"] == names
    assert [c[1:] for c in b.calls if c[0] == "send_dtmf"] == [(5, 500), (11, 100), (1, 80),
                                                               (10, 80), (12, 80)]


def test_di_actions():
    from dsm_helpers import make_engine
    eng = make_engine({"d": "initial state A enter { set($a[0]=x); set($a[1]=y); set($st.k=v);"
                            " DI(f, echo, \"s\"); DIgetResult(f, echo, (int)4, $n);"
                            " DIgetResult(f, list, (array)a, (struct)st, (json)$j);"
                            " DIgetResultArray(f, list, 1, 2) };"})
    calls = []
    eng.di_functions[("f", "echo")] = lambda *a: (calls.append(a), "R")[1]
    eng.di_functions[("f", "list")] = lambda *a: list(a)
    s = eng.create_session("d", FakeBackend(), variables={"n": "N", "j": "[1, 2]"})
    s.start()
    assert calls == [("s",), (4, "N")]
    assert s.var["DI_res[0]"] == "1" and s.var["DI_res_size"] == "2"
    s2, _, _ = run("initial state A; transition t A - key / DI(x, y) -> B; state B;"
                   "transition e A - exception; test(#type==di) -> C; state C;")
    s2.key(1)
    assert s2.state.name == "C"


def test_b2b_actions():
    s, b, _ = enter("set($b2b_relayed_invite=true); B2B.connectCallee(<sip:b@x>, sip:b@x); "
                    "B2B.addHeader(X-A: 1); B2B.addHeader(X-B: 2); B2B.removeHeader(X-A); "
                    "B2B.setHeaders(X-C: 3\\r\\nX-D: 4, true); B2B.clearHeaders(); "
                    "B2B.sendReinvite(); B2B.enableEarlyMediaRelay(); B2B.setRelayOnly(); "
                    "B2B.terminateOtherLeg(); trackObject($o); releaseObject($o); freeObject($o)")
    assert ("b2b_connect", "<sip:b@x>", "sip:b@x", True) in b.calls
    assert ("b2b_terminate_other",) in b.calls
    assert s.mod_state["core.b2b"]["headers"] == []


def test_event_conditions():
    cases = [("start", None), ("invite", None), ("sessionStart", None), ("early", None),
             ("earlySession", None), ("ringing", {"code": "180"}), ("failed", {"code": "486"}),
             ("hangup", {}), ("key", {"key": "1"}), ("keyTest", {"key": "1"}),
             ("timer", {"id": "1"}), ("timerTest", {"id": "1"}), ("noAudio", {}),
             ("noAudioTest", {}), ("separator", {"id": "1"}), ("separatorTest", {"id": "1"}),
             ("event", {}), ("eventTest", {}), ("B2Bevent", {}), ("B2B.otherReply", {}),
             ("B2B.otherBye", {}), ("sipRequest", {}), ("sipReply", {}),
             ("remoteDisappeared", {}), ("sessionTimeout", {}), ("rtpTimeout", {}),
             ("beforeDestroy", {}), ("system", {}), ("startup", {}), ("reload", {})]
    kinds = {"early": "earlySession", "keyTest": "key", "timerTest": "timer",
             "noAudioTest": "noAudio", "separatorTest": "separator", "eventTest": "event"}
    for cond, params in cases:
        kind = kinds.get(cond, cond)
        s, _, _ = run(f"initial state A;\ntransition t A - {cond} -> B;\n"
                      "transition o A - test(1==1) -> C; state B; state C;", start=False)
        s._started = True
        s.post_event("__init__", None)
        s.post_event(kind, params)
        assert s.state.name == "B", cond
        s2, _, _ = run(f"initial state A;\ntransition t A - {cond} -> B;\n"
                       "transition o A - test(1==1) -> C; state B; state C;", start=False)
        s2._started = True
        s2.post_event("__init__", None)
        s2.post_event("other" if kind != "other" else "x", {})
        assert s2.state.name == "C", cond


def test_key_press_and_key_expressions_and_test():
    s, _, _ = run("initial state A;\ntransition p A - keyPress(5) -> B;\n"
                  "transition k A - key(#key < 10); test($x == 1) -> C;\n"
                  "transition n A - not key; test($y == 1) -> D; state B; state C; state D;")
    s.key(3)
    assert s.state.name == "A"
    s.var["x"] = "1"
    s.key(3)
    assert s.state.name == "C"
    s3, _, _ = run("initial state A; transition n A - not key; test($y == 1) -> D; state D;")
    s3.var["y"] = "1"
    s3.key(1)
    assert s3.state.name == "A"
    s3.post_event("event", {})
    assert s3.state.name == "D"
    s2, _, _ = run("initial state A; transition p A - keyPress(5) -> B; state B;")
    s2.key(5)
    assert s2.state.name == "B"


def test_every_core_name_is_tested():
    import inspect
    import sys
    src = inspect.getsource(sys.modules[__name__]) + open(__file__.replace(
        "test_core.py", "test_runtime.py")).read()
    missing = [n for n in list(CoreModule.actions) + list(CoreModule.conditions)
               if n not in src]
    assert missing == []
