"""XML-RPC methods (dsm-language.md §3.4, §3.5) called on the resource, on a Clock: SEMS's
result shapes, faults for everything malformed, control calls shaped and bounded in time."""

from __future__ import annotations

import xmlrpc.client
from typing import Any, Dict, List

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.xmlrpc import Fault

from yaypm.monitor import ControlError, MonitorRPC
from yaypm.monitor.rpc import BAD_ARGUMENTS, TIMED_OUT, UNKNOWN_ID, to_xmlrpc
from yaypm.registry import CallRegistry
from yaypm.testing import assert_no_result, failure_result_of, success_result_of

from monitor_helpers import ANNA, CALLER, CALLER_GRAPH, JOHN, quiz_registry


def call(rpc: MonitorRPC, name: str, *args: Any) -> Any:
    """Call a procedure as Twisted's XMLRPC.render_POST does; return its result or Fault,
    after checking the result survives XML-RPC marshalling."""
    d = defer.maybeDeferred(rpc.lookupProcedure(name), *args)
    results: List[Any] = []
    d.addBoth(results.append)
    assert results, f"{name} left its request unanswered"
    r = results[0]
    if isinstance(r, Failure):
        assert r.check(Fault), f"{name} raised {r.value!r} instead of a Fault"
        return r.value
    xmlrpc.client.loads(xmlrpc.client.dumps((r,), methodresponse=True))
    return r


class Target:
    """A ControlTarget recording its calls; `answers[method]` is returned or raised."""

    def __init__(self, **answers: Any) -> None:
        self.calls: List[tuple] = []
        self.answers: Dict[str, Any] = answers

    def _answer(self, method: str, *args: Any) -> Any:
        self.calls.append((method, *args))
        a = self.answers.get(method)
        if isinstance(a, BaseException):
            raise a
        return a

    def load_config(self, conf_file: str, app_name: str) -> Any:
        return self._answer("load_config", conf_file, app_name)

    def reload(self) -> Any:
        return self._answer("reload")

    def post_event(self, call_id: str, params: Dict[str, str]) -> Any:
        return self._answer("post_event", call_id, params)

    def graph_svg(self, call_id: str) -> Any:
        return None

    def has_dsm(self, name: str, app: Any = None) -> Any:
        return self._answer("has_dsm", name, app)

    def list_dsms(self, app: Any = None) -> Any:
        return self._answer("list_dsms", app)

    def load_dsm_with_paths(self, name: str, diag: str, mods: str) -> Any:
        return self._answer("load_dsm_with_paths", name, diag, mods)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rpc(clock: Clock) -> MonitorRPC:
    return MonitorRPC(quiz_registry(clock), Target(), clock=clock)


# -- monitoring -----------------------------------------------------------------------------
def test_counts_lists_and_records_in_sems_shapes(rpc: MonitorRPC) -> None:
    assert call(rpc, "calls") == 3
    assert call(rpc, "listActive") == [CALLER, JOHN, ANNA]
    assert call(rpc, "listFinished") == []
    [rec] = call(rpc, "get", CALLER)
    assert rec["dsm_state"] == "WAIT_CALLEE" and rec["app"] == "quizconnect_caller"
    assert rec["dsm_stategraph"] == CALLER_GRAPH and rec["dir"] == "in"
    assert call(rpc, "getSingle", JOHN, "dsm_state") == ["ENTER_PIN"]
    assert call(rpc, "getAttributeActive", "dsm_state") == [
        [CALLER, "WAIT_CALLEE"], [JOHN, "ENTER_PIN"], [ANNA, "ENTER_PIN"]]


def test_finished_calls_move_lists(rpc: MonitorRPC) -> None:
    rpc.registry.end(ANNA, "cancelled")
    assert call(rpc, "calls") == 2
    assert call(rpc, "list") == [CALLER, JOHN, ANNA]
    assert call(rpc, "listFinished") == [ANNA]
    assert call(rpc, "getAttributeFinished", "dsm_state") == [[ANNA, "ENTER_PIN"]]
    assert call(rpc, "getAttribute", "app")[-1] == [ANNA, "quizconnect_callee"]
    assert call(rpc, "get", ANNA)[0]["to"] == "<sip:anna@192.168.5.106:5080>"


def test_unknown_session_answers_as_sems_does(rpc: MonitorRPC) -> None:
    assert call(rpc, "get", "nope") == []
    assert call(rpc, "getSingle", "nope", "dsm_state") == []
    assert call(rpc, "getSingle", CALLER, "no_such_attribute") == []


def test_missing_attribute_is_empty_string_never_nil(rpc: MonitorRPC) -> None:
    rpc.registry.start("ivr-1", app="voicemail")        # an IVR leg: no DSM attributes
    assert call(rpc, "getAttributeActive", "dsm_state")[-1] == ["ivr-1", ""]


def test_list_by_filter(rpc: MonitorRPC) -> None:
    assert call(rpc, "listByFilter", ["app", "quizconnect_callee"]) == [JOHN, ANNA]
    assert call(rpc, "listByFilter", ["app", "quizconnect_callee"],
                ["to", "<sip:anna@192.168.5.106:5080>"]) == [ANNA]
    assert call(rpc, "listByFilter", ["app", "x"]) == []
    assert call(rpc, "listByFilter", "app").faultCode == BAD_ARGUMENTS


def test_monitoring_writes(rpc: MonitorRPC) -> None:
    assert call(rpc, "set", CALLER, "note", "vip", "lang", "de") == [0, "OK"]
    assert call(rpc, "log", CALLER, "note", "regular") == [0, "OK"]
    assert call(rpc, "add", CALLER, "events", "a") == [0, "OK"]
    assert call(rpc, "logAdd", CALLER, "events", "b") == [0, "OK"]
    assert call(rpc, "inc", CALLER, "n") == [0, "OK"]
    assert call(rpc, "inc", CALLER, "n") == [0, "OK"]
    assert call(rpc, "dec", CALLER, "n") == [0, "OK"]
    attrs = call(rpc, "get", CALLER)[0]
    assert (attrs["note"], attrs["lang"], attrs["events"], attrs["n"]) == \
        ("regular", "de", ["a", "b"], 1)
    assert call(rpc, "markFinished", JOHN) == [0, "OK"]
    assert call(rpc, "listFinished") == [JOHN]
    assert call(rpc, "erase", ANNA) == [0, "OK"]
    assert call(rpc, "clear", CALLER) == [0, "OK"]
    assert call(rpc, "list") == [JOHN]
    assert call(rpc, "clearFinished") == [0, "OK"]
    assert call(rpc, "list") == []


@pytest.mark.parametrize("name,args", [
    ("set", ("nope", "a", "b")), ("add", ("nope", "a", "b")), ("inc", ("nope", "a")),
    ("dec", ("nope", "a")), ("markFinished", ("nope",)), ("erase", ("nope",))])
def test_writes_to_unknown_ids_are_faults(rpc: MonitorRPC, name: str, args: tuple) -> None:
    f = call(rpc, name, *args)
    assert isinstance(f, Fault) and f.faultCode == UNKNOWN_ID and "nope" in f.faultString


@pytest.mark.parametrize("name,args", [
    ("get", ()), ("get", (CALLER, "x")), ("calls", (1,)), ("get", (5,)), ("get", ([CALLER],)),
    ("getAttribute", ({"a": 1},)), ("set", (CALLER, "odd")), ("set", (CALLER,)),
    ("loadConfig", ("/x.conf",)), ("loadConfig", (["a"], "b")), ("postDSMEvent", (CALLER,)),
    ("postDSMEvent", (CALLER, "b_status=MATCHED")), ("postDSMEvent", (CALLER, [["a"]])),
    ("postDSMEvent", (CALLER, [["a", ["nested"]]])), ("di", ("dsm",)),
])
def test_malformed_arguments_are_faults(rpc: MonitorRPC, name: str, args: tuple) -> None:
    f = call(rpc, name, *args)
    assert isinstance(f, Fault) and f.faultCode == BAD_ARGUMENTS, f


def test_unknown_method_is_a_fault(rpc: MonitorRPC) -> None:
    with pytest.raises(Fault) as e:
        rpc.lookupProcedure("dropAllCalls")
    assert e.value.faultCode == rpc.NOT_FOUND
    assert "dropAllCalls" not in rpc.listProcedures()
    assert {"calls", "getAttributeActive", "loadConfig", "postDSMEvent", "reloadDSMs",
            "loadDSMWithPath", "di"} <= set(rpc.listProcedures())


def test_values_that_xmlrpc_cannot_carry_are_converted(rpc: MonitorRPC) -> None:
    rpc.registry.set(CALLER, none=None, big=2**40, obj=object(), raw=b"\xff\x00a",
                     text="bad\x00ctl\udcff", nested={"k": [None, (1, 2)]},
                     nan=float("nan"))
    attrs = call(rpc, "get", CALLER)[0]
    assert attrs["none"] == "" and attrs["big"] == str(2**40)
    assert attrs["text"] == "bad\ufffdctl\ufffd" and attrs["raw"] == "\ufffd\ufffda"
    assert attrs["nested"] == {"k": ["", [1, 2]]} and attrs["obj"].startswith("<object")
    assert attrs["nan"] == "nan"
    cyclic: List[Any] = []
    cyclic.append(cyclic)
    assert isinstance(to_xmlrpc(cyclic), list)          # depth-limited, no RecursionError


# -- DSM control ----------------------------------------------------------------------------
def test_load_config_strips_conf_suffix_and_answers_200(rpc: MonitorRPC) -> None:
    assert call(rpc, "loadConfig", "/etc/dsm/quizconnect.conf", "quizconnect") == [200, "OK"]
    assert call(rpc, "loadConfig", "/etc/dsm/quizconnect.conf", "quizconnect.conf") == \
        [200, "OK"]
    assert rpc.control.calls == [("load_config", "/etc/dsm/quizconnect.conf", "quizconnect")] * 2


def test_control_failures_are_sems_status_pairs(clock: Clock, logged_failures: list) -> None:
    target = Target(load_config=ValueError("boom"), reload=ControlError(500, "x.dsm:3: bad"))
    rpc = MonitorRPC(CallRegistry(clock), target, clock=clock)
    assert call(rpc, "loadConfig", "/a.conf", "a") == [500, "reload config failed"]
    assert [e["log_failure"].type for e in logged_failures] == [ValueError]   # logged, once
    logged_failures.clear()
    assert call(rpc, "reloadDSMs") == [500, "x.dsm:3: bad"]
    target.answers["reload"] = None
    assert call(rpc, "reloadDSMs") == [200, "DSMs reloaded"]


def test_without_an_engine_control_calls_fail_cleanly(clock: Clock) -> None:
    rpc = MonitorRPC(CallRegistry(clock), clock=clock)
    assert call(rpc, "loadConfig", "/a.conf", "a")[0] == 500
    assert call(rpc, "reloadDSMs")[0] == 500
    assert call(rpc, "postDSMEvent", "x", []) == [404, "Session not found"]
    assert call(rpc, "listDSMs") == []
    assert call(rpc, "loadDSM", "x") == [500, "load_dsm not supported by this DSM engine"]


def test_post_dsm_event(rpc: MonitorRPC) -> None:
    rpc.control.answers["post_event"] = True
    assert call(rpc, "postDSMEvent", CALLER, [["b_status", "MATCHED"], ["b_ltag", JOHN]]) == \
        [200, "OK"]
    assert rpc.control.calls[-1] == ("post_event", CALLER,
                                     {"b_status": "MATCHED", "b_ltag": JOHN})
    rpc.control.answers["post_event"] = False
    assert call(rpc, "postDSMEvent", "gone", [["a_status", "BYE"]]) == [404, "Session not found"]


def test_dsm_module_calls(rpc: MonitorRPC) -> None:
    rpc.control.answers.update(has_dsm=True, list_dsms=["quizconnect_caller", "x"])
    assert call(rpc, "hasDSM", "quizconnect_caller") == ["1"]
    rpc.control.answers["has_dsm"] = False
    assert call(rpc, "hasDSM", "nope", "quizconnect") == ["0"]
    assert call(rpc, "listDSMs") == ["quizconnect_caller", "x"]
    assert call(rpc, "loadDSMWithPaths", "d", "/diag/", "/mods/") == [200, "DSM loaded"]
    assert call(rpc, "loadDSMWithPath", "d", "/diag/", "/mods/") == [200, "DSM loaded"]
    assert call(rpc, "createSystemDSM", "b", "d")[0] == 500       # not implemented by Target


def test_di_reaches_the_same_methods(rpc: MonitorRPC) -> None:
    assert call(rpc, "di", "monitoring", "calls") == 3
    assert call(rpc, "di", "monitoring", "getSingle", JOHN, "dsm_state") == ["ENTER_PIN"]
    assert call(rpc, "di", "dsm", "loadConfig", "/q.conf", "q") == [200, "OK"]
    for bad in (("dsm", "calls"), ("monitoring", "loadConfig"), ("sbc", "calls"),
                ("dsm", "di")):
        assert call(rpc, "di", *bad).faultCode == rpc.NOT_FOUND


def test_a_stuck_control_call_times_out_as_a_fault(clock: Clock) -> None:
    stuck: defer.Deferred = defer.Deferred()
    rpc = MonitorRPC(CallRegistry(clock), Target(reload=None), clock=clock, control_timeout=5)
    rpc.control.reload = lambda: stuck                     # type: ignore[method-assign]
    d = defer.maybeDeferred(rpc.lookupProcedure("reloadDSMs"))
    clock.advance(4.9)
    assert_no_result(d)
    clock.advance(0.1)
    f = failure_result_of(d, Fault)
    assert f.value.faultCode == TIMED_OUT
    assert clock.getDelayedCalls() == []


def test_deferred_control_results(clock: Clock) -> None:
    later: defer.Deferred = defer.Deferred()
    rpc = MonitorRPC(CallRegistry(clock), Target(), clock=clock)
    rpc.control.load_config = lambda f, n: later           # type: ignore[method-assign]
    d = defer.maybeDeferred(rpc.lookupProcedure("loadConfig"), "/a.conf", "a")
    assert_no_result(d)
    later.callback(None)
    assert success_result_of(d) == [200, "OK"]
    assert clock.getDelayedCalls() == []
