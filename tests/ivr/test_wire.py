"""The exact lines the IVR layer writes, against the shapes of the recorded traces (B1-D3).

Yate's side is literal lines fed to the dispatcher; ids are the dispatcher's (``yp<n>``) and
notify tags the leg's (``<dumb>/<n>``).
"""

from __future__ import annotations

from twisted.internet import defer

from yaypm.ivr import (BusyError, CallEnded, MediaError, NoAnswerError, RejectedError, dial,
                       route, switchboard)
from yaypm.testing import assert_no_result, failure_result_of, success_result_of

ROUTE = "id=sip/1:module=sip:status=incoming:billid=1-1:caller=caller:called=1234"
EXECUTE = ("%%<message::true:call.execute::id=sip/1:module=sip:callto=dumb/:peerid=dumb/1:"
           "targetid=dumb/1:autoring=true")


def hold(leg):
    """An app that keeps the call until it ends (the test drives the leg)."""
    return leg.ended


def incoming(wire, app, called="1234"):
    """Route one call to ``app``; returns the leg once the dumb channel is known."""
    legs = []

    def capture(leg):
        legs.append(leg)
        return app(leg)
    route(wire.dispatcher, called, capture)
    wire.take()
    rid = wire.message("call.route", ROUTE)
    return legs, rid


def test_setup_installs_and_watches_once(wire):
    route(wire.dispatcher, "1234", lambda leg: None)
    route(wire.dispatcher, "5678", lambda leg: None)
    lines = wire.conn.take()
    assert lines == [
        "%%>install:50:chan.notify", "%%>install:50:chan.dtmf", "%%>watch:call.execute",
        "%%>watch:chan.hangup", "%%>watch:chan.disconnected", "%%>watch:call.answered",
        "%%>watch:call.ringing", "%%>watch:call.progress", "%%>install:50:call.route"]


def test_unclaimed_route_is_answered_unhandled_at_once(wire):
    route(wire.dispatcher, "1234", lambda leg: None)
    wire.take()
    wire.message("call.route", "id=sip/9:called=999")
    assert wire.take() == ["%%<message:0x1:false:"]


def test_b1_answer_play_dtmf_record_hangup(wire):
    seen = []

    async def app(leg):
        await leg.answer()
        seen.append(await leg.play("prompt.au"))
        seen.append(await leg.digits(terminator="#"))
        seen.append((await leg.record("rec.au", maxlen=16000)).reason)

    legs, rid = incoming(wire, app)
    assert wire.take() == [f"%%<message:{rid}:true:call.route:dumb/"]
    wire.feed(EXECUTE)
    assert wire.take() == ["%%>message:yp1::chan.masquerade::message=call.answered:id=dumb/1"]
    wire.feed("%%<message:yp1:true:call.answered::id=dumb/1:module=dumb:status=answered:"
              "targetid=sip/1:peerid=sip/1")
    assert wire.take() == ["%%>message:yp2::chan.masquerade::message=chan.attach:id=dumb/1:"
                           "source=wave/play/prompt.au:notify=dumb/1/1"]
    wire.feed("%%<message:yp2:false:chan.attach::id=dumb/1:notify=dumb/1/1:module=dumb")
    n = wire.message("chan.notify", "id=dumb/1:targetid=dumb/1/1:reason=eof")
    assert wire.take() == [f"%%<message:{n}:true:chan.notify:"]
    d1 = wire.message("chan.dtmf", "id=sip/1:targetid=dumb/1:peerid=dumb/1:text=5:"
                      "detected=sip-info:sequence=1:duplicate=false")
    d2 = wire.message("chan.dtmf", "id=sip/1:text=#:detected=rfc2833:sequence=2:"
                      "duplicate=false:targetid=dumb/1")
    assert wire.take() == [
        f"%%<message:{d1}:true:chan.dtmf:",
        "%%>message:yp3::chan.masquerade::message=chan.attach:id=dumb/1:"
        "consumer=wave/record/rec.au:maxlen=16000:notify=dumb/1/2",
        f"%%<message:{d2}:true:chan.dtmf:"]
    wire.feed("%%<message:yp3:false:chan.attach::id=dumb/1:maxlen=16000:notify=dumb/1/2")
    wire.message("chan.notify", "id=dumb/1:targetid=dumb/1/2:reason=maxlen")
    assert seen == [None, "5", "maxlen"]
    assert wire.take()[0] == "%%>message:yp4::call.drop::id=sip/1:reason=normal"
    ended = legs[0].ended
    wire.feed("%%<message:yp4:true:call.drop::id=sip/1:reason=normal",
              "%%<message::false:chan.disconnected::id=dumb/1:reason=normal:module=dumb",
              "%%<message::false:chan.hangup::id=dumb/1:module=dumb",
              "%%<message::false:chan.hangup::id=sip/1:module=sip:status=normal")
    assert success_result_of(ended) == "normal"
    board = switchboard(wire.dispatcher)
    assert len(board) == 0 and board.legs == {} and board.pending_count() == 0
    assert wire.dispatcher.pending_count() == 0 and wire.clock.getDelayedCalls() == []


def test_b2_caller_hangs_up_during_prompt(wire):
    results = []

    async def app(leg):
        await leg.answer()
        try:
            await leg.play("long.au")
        except CallEnded as e:
            results.append(e.reason)
            raise

    legs, rid = incoming(wire, app)
    wire.feed(EXECUTE, "%%<message:yp1:true:call.answered::id=dumb/1")
    wire.feed("%%<message:yp2:false:chan.attach::id=dumb/1:notify=dumb/1/1")
    wire.take()
    wire.feed("%%<message::false:chan.hangup::id=sip/1:module=sip:cause_sip=200:"
              "status=answered:targetid=dumb/1:peerid=dumb/1:answered=true")
    wire.feed("%%<message::false:chan.disconnected::cause_sip=200:id=dumb/1:module=dumb")
    assert results == ["hangup"]
    wire.feed("%%<message::false:chan.hangup::id=dumb/1:module=dumb")
    n = wire.message("chan.notify", "targetid=dumb/1/1:reason=replaced")
    # A notify for a forgotten tag is not ours: unhandled.  Nothing else is sent.
    assert wire.take() == [f"%%<message:{n}:false:"]
    assert len(switchboard(wire.dispatcher)) == 0


def test_b3_reject_in_call_route(wire):
    async def app(leg):
        if leg.caller == "caller":
            leg.reject(486)
            return
        await leg.answer()

    legs, rid = incoming(wire, app)
    assert wire.take() == [f"%%<message:{rid}:true:call.route:-:error=busy:reason=Busy Here"]
    assert legs[0].end_reason == "busy" and not legs[0].alive
    assert len(switchboard(wire.dispatcher)) == 0


def test_reject_487_routes_then_drops_with_an_unknown_reason(wire):
    legs, rid = incoming(wire, lambda leg: leg.reject(487))
    assert wire.take() == [f"%%<message:{rid}:true:call.route:dumb/",
                           "%%>message:yp1::call.drop::id=sip/1:reason=cancelled"]


def test_reject_after_answering_the_route_drops_with_the_reason(wire):
    async def app(leg):
        await leg.progress()
        await leg.reject(404)

    legs, rid = incoming(wire, app)
    wire.feed(EXECUTE)
    assert wire.take()[1:] == ["%%>message:yp1::chan.masquerade::message=call.progress:"
                               "id=dumb/1:earlymedia=true"]
    wire.feed("%%<message:yp1:true:call.progress::id=dumb/1:status=progressing")
    assert legs[0].state == "progressing"
    assert wire.take() == ["%%>message:yp2::call.drop::id=sip/1:reason=noroute"]


def test_b3_tone_and_missing_file(wire):
    seen = []

    async def app(leg):
        await leg.answer()
        await leg.tone("dial")
        try:
            await leg.play("/nonexistent/file.au")
        except MediaError as e:
            seen.append(e.resource)
        await leg.hangup()

    legs, rid = incoming(wire, app)
    wire.feed(EXECUTE, "%%<message:yp1:true:call.answered::id=dumb/1")
    assert wire.take()[-1] == ("%%>message:yp2::chan.masquerade::message=chan.attach:"
                               "id=dumb/1:source=tone/dial")
    wire.feed("%%<message:yp2:false:chan.attach::id=dumb/1:module=dumb")
    assert wire.take() == ["%%>message:yp3::chan.masquerade::message=chan.attach:id=dumb/1:"
                           "source=wave/play//nonexistent/file.au:notify=dumb/1/1"]
    wire.feed("%%<message:yp3:false:chan.attach::id=dumb/1:notify=dumb/1/1")
    wire.message("chan.notify", "targetid=dumb/1/1")
    assert seen == ["wave/play//nonexistent/file.au"]


def test_unknown_tone_is_a_media_error(wire):
    legs, rid = incoming(wire, hold)
    wire.feed(EXECUTE)
    wire.take()
    d = legs[0].tone("dtmf/5")
    wire.take()
    wire.feed("%%<message:yp1:false:chan.attach::id=dumb/1:source=tone/dtmf/5")
    failure_result_of(d, MediaError)


def test_b4_barge_in_stops_the_prompt_with_source_minus(wire):
    legs, rid = incoming(wire, hold)
    wire.feed(EXECUTE)
    wire.take()
    leg = legs[0]
    d = leg.play(["long.au", "more.au"], barge_in=True)
    wire.feed("%%<message:yp1:false:chan.attach::id=dumb/1:notify=dumb/1/1")
    wire.take()
    wire.message("chan.dtmf", "id=sip/1:text=7:duplicate=false")
    assert success_result_of(d) == "7"
    assert wire.take()[0] == ("%%>message:yp2::chan.masquerade::message=chan.attach:"
                              "id=dumb/1:source=-")
    # The key stays for the next reader.
    assert success_result_of(leg.digits(count=1)) == "7"
    # Yate's "replaced" for the stopped prompt is still ours (handled), once.
    n = wire.message("chan.notify", "targetid=dumb/1/1:reason=replaced")
    assert wire.take() == [f"%%<message:{n}:true:chan.notify:"]
    n = wire.message("chan.notify", "targetid=dumb/1/1:reason=replaced")
    assert wire.take() == [f"%%<message:{n}:false:"]


def test_cancel_waits_for_the_attach_answer_before_detaching(wire):
    legs, rid = incoming(wire, hold)
    wire.feed(EXECUTE)
    wire.take()
    leg = legs[0]
    d = leg.play("long.au")
    assert len(wire.take()) == 1
    d.cancel()
    assert wire.take() == []             # the detach waits for the attach's answer (pitfall 9)
    wire.feed("%%<message:yp1:false:chan.attach::id=dumb/1:notify=dumb/1/1")
    assert wire.take() == ["%%>message:yp2::chan.masquerade::message=chan.attach:id=dumb/1:"
                           "source=-"]
    failure_result_of(d, defer.CancelledError)


def test_cancelling_a_queued_prompt_never_sends_it(wire):
    legs, rid = incoming(wire, hold)
    wire.feed(EXECUTE)
    wire.take()
    leg = legs[0]
    first = leg.play("a.au")
    second = leg.play("b.au")           # replaces a.au once sent
    second.cancel()
    failure_result_of(second, defer.CancelledError)
    assert len(wire.take()) == 1
    wire.feed("%%<message:yp1:false:chan.attach::id=dumb/1:notify=dumb/1/1")
    assert wire.take() == []
    assert_no_result(first)
    wire.message("chan.notify", "id=dumb/1:targetid=dumb/1/1:reason=eof")
    assert success_result_of(first) is None


def test_b4_record_stopped_by_key_and_send_dtmf(wire):
    legs, rid = incoming(wire, hold)
    wire.feed(EXECUTE)
    wire.take()
    leg = legs[0]
    d = leg.record("rec.slin", max_seconds=2)
    assert wire.take() == ["%%>message:yp1::chan.masquerade::message=chan.attach:id=dumb/1:"
                           "consumer=wave/record/rec.slin:maxlen=32000:notify=dumb/1/1"]
    wire.feed("%%<message:yp1:false:chan.attach::id=dumb/1:notify=dumb/1/1")
    wire.clock.advance(1.5)
    wire.message("chan.dtmf", "id=sip/1:text=#:duplicate=false")
    result = success_result_of(d)
    assert (result.reason, result.key, result.duration) == ("dtmf", "#", 1.5)
    assert wire.take()[0] == ("%%>message:yp2::chan.masquerade::message=chan.attach:"
                              "id=dumb/1:consumer=-")
    wire.feed("%%<message:yp2:false:chan.attach::id=dumb/1:consumer=-")
    leg.send_dtmf("12")
    assert wire.take() == ["%%>message:yp3::chan.dtmf::id=dumb/1:targetid=sip/1:text=12"]
    assert wire.clock.getDelayedCalls() == []


def test_record_without_audio_ends_on_our_clock(wire):
    legs, rid = incoming(wire, hold)
    wire.feed(EXECUTE)
    wire.take()
    d = legs[0].record("rec.au", max_seconds=3, terminators=None)
    wire.feed("%%<message:yp1:false:chan.attach::id=dumb/1:notify=dumb/1/1")
    wire.clock.advance(4)
    assert success_result_of(d).reason == "timeout"
    assert wire.take()[-1] == "%%>message:yp2::chan.masquerade::message=chan.attach:" \
                              "id=dumb/1:consumer=-"


def test_c1_dial_answered_and_hung_up(wire):
    d = dial(wire.dispatcher, "sip/sip:callee@127.0.0.1:5080", caller="yaypm",
             callername="Acceptance Probe", timeout=10)
    assert wire.take() == ["%%>message:yp1::call.execute::callto=dumb/:"
                           "direct=sip/sip%zcallee@127.0.0.1%z5080:target=callee:caller=yaypm:"
                           "callername=Acceptance Probe:maxcall=10000"]
    wire.feed("%%<message:yp1:true:call.execute::callto=dumb/:id=dumb/5:peerid=sip/7:"
              "targetid=sip/7")
    wire.feed("%%<message::true:call.ringing::id=sip/7:module=sip:status=ringing:"
              "targetid=dumb/5:peerid=dumb/5")
    assert_no_result(d)
    wire.feed("%%<message::true:call.answered::id=sip/7:module=sip:status=answered:"
              "targetid=dumb/5:peerid=dumb/5:answered=true")
    leg = success_result_of(d)
    assert (leg.id, leg.chan, leg.state) == ("sip/7", "dumb/5", "answered")
    leg.hangup("script-hangup")
    assert wire.take() == ["%%>message:yp2::call.drop::id=sip/7:reason=script-hangup"]


def test_c2_cancelling_a_ringing_dial_drops_our_dumb_channel(wire):
    d = dial(wire.dispatcher, "sip/sip:callee@127.0.0.1:5080")
    wire.take()
    wire.feed("%%<message:yp1:true:call.execute::id=dumb/6:peerid=sip/8:targetid=sip/8")
    d.cancel()
    assert wire.take() == ["%%>message:yp2::call.drop::id=dumb/6:reason=cancelled"]
    wire.feed("%%<message:yp2:true:call.drop::id=dumb/6:reason=cancelled",
              "%%<message::false:chan.disconnected::id=sip/8:reason=cancelled",
              "%%<message::false:chan.hangup::id=dumb/6:status=cancelled",
              "%%<message::false:chan.hangup::id=sip/8:status=ringing:reason=cancelled")
    failure_result_of(d, defer.CancelledError)
    assert len(switchboard(wire.dispatcher)) == 0


def test_cancelling_before_the_execute_answer_drops_once_it_comes(wire):
    d = dial(wire.dispatcher, "bob")
    assert wire.take() == ["%%>message:yp1::call.execute::callto=dumb/:target=bob:"
                           "maxcall=30000"]
    d.cancel()
    failure_result_of(d, defer.CancelledError)
    wire.feed("%%<message:yp1:true:call.execute::id=dumb/6:peerid=sip/8:targetid=sip/8")
    assert wire.take() == ["%%>message:yp2::call.drop::id=dumb/6:reason=cancelled"]


def test_c3_busy(wire):
    d = dial(wire.dispatcher, "sip/sip:callee@127.0.0.1:5080")
    wire.take()
    wire.feed("%%<message:yp1:true:call.execute::id=dumb/7:peerid=sip/9:targetid=sip/9",
              "%%<message::false:chan.hangup::id=sip/9:module=sip:cause_sip=486:"
              "reason_sip=Busy Here:status=outgoing:targetid=dumb/7:reason=Busy Here",
              "%%<message::false:chan.disconnected::cause_sip=486:reason_sip=Busy Here:"
              "id=dumb/7:status=accepted:reason=busy")
    f = failure_result_of(d, BusyError)
    assert f.value.code == 486


def test_c3_no_answer_after_maxcall(wire):
    d = dial(wire.dispatcher, "sip/sip:nobody@127.0.0.1:5087", timeout=4)
    wire.take()
    wire.feed("%%<message:yp1:true:call.execute::id=dumb/8:peerid=sip/10:targetid=sip/10",
              "%%<message::false:chan.disconnected::time=1:id=sip/10:status=outgoing:"
              "targetid=dumb/8:reason=noanswer",
              "%%<message::false:chan.hangup::id=dumb/8:status=noanswer:targetid=sip/10",
              "%%<message::false:chan.hangup::id=sip/10:status=noanswer:"
              "reason=Temporarily Unavailable")
    failure_result_of(d, NoAnswerError)


def test_c3_unknown_driver_is_rejected(wire):
    d = dial(wire.dispatcher, "nosuchdriver/x")
    wire.take()
    wire.feed("%%<message:yp1:false:call.execute::callto=dumb/:error=noroute")
    f = failure_result_of(d, RejectedError)
    assert f.value.code == 404
    assert len(switchboard(wire.dispatcher)) == 0


def test_d1_bridge(wire):
    legs, rid = incoming(wire, hold)
    wire.feed(EXECUTE)
    d = dial(wire.dispatcher, "sip/sip:callee@127.0.0.1:5080")
    wire.take()
    wire.feed("%%<message:yp1:true:call.execute::id=dumb/10:peerid=sip/12:targetid=sip/12",
              "%%<message::true:call.answered::id=sip/12:targetid=dumb/10:peerid=dumb/10")
    callee = success_result_of(d)
    caller = legs[0]
    b = caller.bridge(callee)
    assert wire.take() == ["%%>message:yp2::chan.connect::id=sip/1:targetid=sip/12:"
                           "reason=bridged"]
    # The dumb channels go before the answer may even arrive: not the end of the legs.
    wire.feed("%%<message::false:chan.disconnected::id=dumb/10:reason=bridged",
              "%%<message::false:chan.hangup::id=dumb/10",
              "%%<message:yp2:true:chan.connect::id=sip/1:targetid=sip/12:reason=bridged",
              "%%<message::false:chan.disconnected::id=dumb/1:reason=bridged",
              "%%<message::false:chan.hangup::id=dumb/1")
    success_result_of(b)
    assert (caller.state, callee.state, caller.peer, caller.chan) == \
        ("bridged", "bridged", "sip/12", None)
    # DTMF passes through a bridge (answered false) but is still seen.
    k = wire.message("chan.dtmf", "id=sip/1:text=3:duplicate=false")
    assert wire.take() == [f"%%<message:{k}:false:"]
    wire.feed("%%<message::false:chan.disconnected::id=sip/12:lastpeerid=sip/1",
              "%%<message::false:chan.hangup::id=sip/1:status=dropped",
              "%%<message::false:chan.hangup::id=sip/12:status=answered")
    assert (caller.end_reason, callee.end_reason) == ("hangup", "hangup")
    assert len(switchboard(wire.dispatcher)) == 0


def test_d2_conference_join(wire):
    legs, rid = incoming(wire, hold)
    wire.feed(EXECUTE)
    wire.take()
    leg = legs[0]
    d = leg.join("acc-room", lonely=True)
    assert wire.take() == ["%%>message:yp1::chan.masquerade::message=call.execute:id=sip/1:"
                           "callto=conf/acc-room:lonely=true"]
    wire.feed("%%<message::false:chan.disconnected::id=dumb/1",
              "%%<message::false:chan.hangup::id=dumb/1",
              "%%<message:yp1:true:call.execute::id=sip/1:callto=conf/acc-room:peerid=conf/1:"
              "room=conf/acc-room:newroom=true:users=1")
    joined = success_result_of(d)
    assert joined == ("conf/acc-room", True, 1)
    assert leg.state == "conference" and leg.alive
    wire.feed("%%<message::false:chan.disconnected::id=sip/1:lastpeerid=conf/1:reason=hangup",
              "%%<message::false:chan.hangup::id=sip/1:status=answered")
    assert leg.end_reason == "hangup"


def test_events_before_the_execute_answer_are_replayed(wire):
    """An engine in the same process reports the new leg before call.execute returns."""
    d = dial(wire.dispatcher, "sip/sip:callee@127.0.0.1:5080")
    wire.take()
    wire.feed("%%<message::true:call.ringing::id=sip/8:targetid=dumb/6:peerid=dumb/6",
              "%%<message::true:call.answered::id=sip/8:targetid=dumb/6:peerid=dumb/6",
              "%%<message::true:call.answered::id=sip/99:targetid=dumb/77")   # not ours
    assert_no_result(d)
    wire.feed("%%<message:yp1:true:call.execute::id=dumb/6:peerid=sip/8:targetid=sip/8")
    assert success_result_of(d).state == "answered"
    board = switchboard(wire.dispatcher)
    assert board._orphans == [] and board._dialing == 0


def test_busy_before_the_execute_answer(wire):
    d = dial(wire.dispatcher, "sip/sip:callee@127.0.0.1:5080")
    wire.take()
    wire.feed("%%<message::false:chan.hangup::id=sip/9:cause_sip=486:reason=Busy Here",
              "%%<message::false:chan.disconnected::id=dumb/7:reason=busy",
              "%%<message::false:chan.hangup::id=dumb/7",
              "%%<message:yp1:true:call.execute::id=dumb/7:peerid=sip/9:targetid=sip/9")
    failure_result_of(d, BusyError)
    assert len(switchboard(wire.dispatcher)) == 0


def test_media_on_an_outgoing_leg_waits_for_its_dumb_channel(wire):
    from yaypm.ivr import originate
    leg = originate(wire.dispatcher, "sip/sip:callee@127.0.0.1:5080")
    wire.take()
    d = leg.play("hello.au")
    assert wire.take() == []
    wire.feed("%%<message:yp1:true:call.execute::id=dumb/5:peerid=sip/7:targetid=sip/7")
    assert wire.take() == ["%%>message:yp2::chan.masquerade::message=chan.attach:id=dumb/5:"
                           "source=wave/play/hello.au:notify=dumb/5/1"]
    assert_no_result(d)


def test_connection_loss_ends_the_legs_and_reconnecting_drops_their_calls(wire):
    results = []

    async def app(leg):
        await leg.answer()
        try:
            await leg.digits(count=4)
        except CallEnded as e:
            results.append(e.reason)
            raise

    legs, rid = incoming(wire, app)
    wire.feed(EXECUTE, "%%<message:yp1:true:call.answered::id=dumb/1")
    wire.take()
    wire.conn.disconnect()
    assert results == ["disconnected"] and legs[0].end_reason == "disconnected"
    board = switchboard(wire.dispatcher)
    assert len(board) == 0
    wire.conn.reconnect()
    # Reinstalled handlers, then the stale call dropped (enqueued: no answer awaited).
    assert wire.take()[-1] == "%%>message:::call.drop::id=sip/1:reason=disconnected"
    assert wire.dispatcher.pending_count() == 0
    board.close()
    assert "detach" not in vars(wire.dispatcher)


def test_progress_of_an_outgoing_leg(wire):
    from yaypm.ivr import originate
    leg = originate(wire.dispatcher, "sip/sip:callee@127.0.0.1:5080")
    seen = []
    leg.on_progress(lambda kind, m: seen.append((kind, m.get("id"))))
    wire.take()
    wire.feed("%%<message:yp1:true:call.execute::id=dumb/5:peerid=sip/7:targetid=sip/7",
              "%%<message::false:call.progress::id=sip/7:status=progressing:targetid=dumb/5",
              "%%<message::true:call.ringing::id=sip/7:status=ringing:targetid=dumb/5")
    assert seen == [("progress", "sip/7"), ("ringing", "sip/7")] and leg.state == "ringing"
