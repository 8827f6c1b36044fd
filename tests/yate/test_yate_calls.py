"""Real SIP calls (sipp) through a real Yate, driven by a script on a raw extmodule socket.

The call-control recipes of yate-messages.md section 4, as recorded in traces B1, C1-C3:
each test checks both what the SIP peer saw (sipp's message log) and the protocol lines
the script exchanged with the engine.
"""

from __future__ import annotations

import pytest

from yaypm.testing.yate import ExtModuleConnection, message_is

pytestmark = pytest.mark.yate

# Bounded waits for real events; they only run out when something is broken.
EVENT = 10.0


def ivr_script(yate_connect, number: str) -> ExtModuleConnection:
    """A global script that claims ``number`` in call.route and follows its calls."""
    ivr = yate_connect()
    assert ivr.install("call.route", 50, "called", number) == "%%<install:50:call.route:true"
    assert ivr.install("chan.dtmf", 50) == "%%<install:50:chan.dtmf:true"
    for name in ("call.execute", "chan.disconnected", "chan.hangup"):
        assert ivr.watch(name) == f"%%<watch:{name}:true"
    return ivr


def route_to_dumb(ivr: ExtModuleConnection, number: str) -> tuple[str, str]:
    """Answer the call.route for ``number`` with ``dumb/``; the caller's and the dumb
    channel's ids (the dumb id from the call.execute notification, recipe 3.1)."""
    route = ivr.expect(message_is("call.route", "handle", called=number), EVENT)
    caller = route.params["id"]
    assert caller.startswith("sip/") and route.params["module"] == "sip"
    ivr.answer(route, True, "dumb/")
    execute = ivr.expect(message_is("call.execute", "notification", id=caller), EVENT)
    assert execute.processed is True and execute.params["callto"] == "dumb/"
    dumb = execute.params["peerid"]
    assert dumb.startswith("dumb/") and execute.params["targetid"] == dumb
    return caller, dumb


def answer(ivr: ExtModuleConnection, dumb: str, caller: str) -> None:
    answered = ivr.dispatch("chan.masquerade", {"message": "call.answered", "id": dumb})
    assert answered.processed is True and answered.name == "call.answered"
    assert answered.params["id"] == dumb and answered.params["status"] == "answered"
    assert answered.params["targetid"] == caller and answered.params["peerid"] == caller


# --- incoming calls ---------------------------------------------------------------------

def test_number_no_script_claims_gets_404(sip_call):
    out = sip_call("40404").wait(EVENT)
    assert out.outcome == "404"
    assert [m.first_line.split()[0] for m in out.messages if m.direction == "sent"] == ["INVITE", "ACK"]


def test_script_rejects_call_in_route_with_busy(yate_connect, sip_call):
    ivr = ivr_script(yate_connect, "7100")
    call = sip_call("7100")
    route = ivr.expect(message_is("call.route", "handle", called="7100"), EVENT)
    ivr.answer(route, True, "-", {"error": "busy"})
    out = call.wait(EVENT)
    assert out.outcome == "486"
    hangup = ivr.expect(message_is("chan.hangup", "notification", id=route.params["id"]), EVENT)
    # the SIP side gets 486, but the channel's own status only says it was not routed
    assert hangup.params["status"] == "rejected" and "reason" not in hangup.params


def test_call_routed_to_dumb_is_answered_then_dropped_by_script(yate_connect, sip_call):
    ivr = ivr_script(yate_connect, "7200")
    call = sip_call("7200")
    caller, dumb = route_to_dumb(ivr, "7200")
    answer(ivr, dumb, caller)

    drop = ivr.dispatch("call.drop", {"id": caller, "reason": "ivr-done"})
    assert drop.processed is True
    assert ivr.expect(message_is("chan.disconnected", "notification", id=dumb), EVENT) \
        .params["reason"] == "ivr-done"
    hangup = ivr.expect(message_is("chan.hangup", "notification", id=caller), EVENT)
    assert hangup.params["status"] == "ivr-done" and hangup.params["answered"] == "true"

    out = call.wait(EVENT)
    assert (out.outcome, out.bye_received, out.exit_code) == ("answered", True, 0)
    assert [m.status for m in out.responses("INVITE", "received")] == [100, 180, 200]


def test_caller_hangup_reaches_the_script(yate_connect, sip_call):
    ivr = ivr_script(yate_connect, "7300")
    call = sip_call("7300", scenario="uac_hangup")
    caller, dumb = route_to_dumb(ivr, "7300")
    answer(ivr, dumb, caller)

    hangup = ivr.expect(message_is("chan.hangup", "notification", id=caller), EVENT)
    assert hangup.params["answered"] == "true"
    ivr.expect(message_is("chan.hangup", "notification", id=dumb), EVENT)
    out = call.wait(EVENT)
    assert (out.outcome, out.bye_sent, out.exit_code) == ("answered", True, 0)
    assert [m.status for m in out.responses("BYE", "received")][-1] == 200


def test_dtmf_by_sip_info_and_rfc2833_reaches_the_script(yate_connect, sip_call):
    ivr = ivr_script(yate_connect, "7400")
    call = sip_call("7400", scenario="uac_dtmf")
    caller, dumb = route_to_dumb(ivr, "7400")
    answer(ivr, dumb, caller)

    digits = []
    for _ in range(3):
        dtmf = ivr.expect(message_is("chan.dtmf", "handle", id=caller), EVENT)
        assert dtmf.params["targetid"] == dumb and dtmf.params["duplicate"] == "false"
        digits.append((dtmf.params["text"], dtmf.params["detected"]))
        ivr.answer(dtmf, True)
    assert digits == [("5", "sip-info"), ("#", "sip-info"), ("1", "rfc2833")]

    ivr.dispatch("call.drop", {"id": caller, "reason": "done"})
    out = call.wait(EVENT)
    assert (out.outcome, out.bye_received, out.exit_code) == ("answered", True, 0)
    infos = out.requests("INFO", "sent")
    assert [m.body.splitlines()[0] for m in infos] == ["Signal=5", "Signal=#"]
    assert [m.status for m in out.responses("INFO", "received") if m.status >= 200] == [200, 200]


# --- outbound calls ---------------------------------------------------------------------

def originate(ivr: ExtModuleConnection, callee) -> tuple[str, str]:
    """call.execute callto=dumb/ direct=<callee>: the new dumb channel and SIP leg ids."""
    execute = ivr.dispatch("call.execute", {"callto": "dumb/", "direct": callee.callto,
                                            "target": "callee", "caller": "yaypm"}, timeout=EVENT)
    assert execute.processed is True
    dumb, leg = execute.params["id"], execute.params["peerid"]
    assert dumb.startswith("dumb/") and leg.startswith("sip/") and execute.params["targetid"] == leg
    return dumb, leg


def outbound_script(yate_connect) -> ExtModuleConnection:
    ivr = yate_connect()
    for name in ("call.ringing", "call.answered", "chan.disconnected", "chan.hangup"):
        assert ivr.watch(name) == f"%%<watch:{name}:true"
    return ivr


def test_outbound_call_answered_then_dropped(yate_connect, sip_callee):
    ivr, callee = outbound_script(yate_connect), sip_callee("answer")
    dumb, leg = originate(ivr, callee)

    answered = ivr.expect(message_is("call.answered", "notification", id=leg), EVENT)
    assert answered.params["targetid"] == dumb and answered.params["answered"] == "true"
    assert ivr.dispatch("call.drop", {"id": leg, "reason": "script-hangup"}).processed is True
    assert ivr.expect(message_is("chan.hangup", "notification", id=leg), EVENT) \
        .params["status"] == "script-hangup"

    out = callee.wait(EVENT)
    assert (out.outcome, out.bye_received, out.exit_code) == ("answered", True, 0)
    assert out.requests("INVITE", "received")[0].first_line == "INVITE sip:callee@" \
        f"{callee.uri.split('@')[1]} SIP/2.0"


def test_outbound_call_busy(yate_connect, sip_callee):
    ivr, callee = outbound_script(yate_connect), sip_callee("busy")
    dumb, leg = originate(ivr, callee)

    hangup = ivr.expect(message_is("chan.hangup", "notification", id=leg), EVENT)
    assert (hangup.params["cause_sip"], hangup.params["reason"]) == ("486", "Busy Here")
    assert ivr.expect(message_is("chan.disconnected", "notification", id=dumb), EVENT) \
        .params["reason"] == "busy"
    out = callee.wait(EVENT)
    assert (out.outcome, out.exit_code) == ("486", 0)


def test_outbound_call_not_answered_is_cancelled_by_script(yate_connect, sip_callee):
    ivr, callee = outbound_script(yate_connect), sip_callee("noanswer")
    dumb, leg = originate(ivr, callee)

    ringing = ivr.expect(message_is("call.ringing", "notification", id=leg), EVENT)
    assert ringing.params["targetid"] == dumb
    assert ivr.dispatch("call.drop", {"id": dumb, "reason": "cancelled-by-script"}).processed is True
    assert ivr.expect(message_is("chan.hangup", "notification", id=leg), EVENT) \
        .params["reason"] == "cancelled-by-script"

    out = callee.wait(EVENT)
    assert (out.outcome, out.cancel_received, out.exit_code) == ("487", True, 0)
