"""The SEMS-style Dialog class on the simulator."""

from __future__ import annotations

from yaypm.ivr import Dialog, IvrDialogBase, route
from yaypm.prompts import digit_prompt, prompt
from yaypm.testing.simulator import answer, busy


WELCOME = prompt("welcome")
BEEP = prompt("beep")


def play(path):
    return "wave/play/" + path


class Recorder(Dialog):
    """Logs its events into ``events`` (a class attribute set per test)."""
    events: list = []

    def onStart(self):
        self.events.append(("start", self.dialog.caller))

    def onSessionStart(self):
        self.events.append("session")
        self.enqueue(WELCOME, None)
        self.enqueue(BEEP, None)

    def onEmptyQueue(self):
        self.events.append("empty")

    def onDtmf(self, key, duration):
        self.events.append(("dtmf", key, duration))
        if key == "#":
            self.bye()
        else:
            self.flush()
            self.enqueue(digit_prompt(key), None)

    def onBye(self):
        self.events.append("bye")


def test_events_in_sems_order_and_caller_bye(sim, assert_clean):
    Recorder.events = events = []
    d = sim.connect(lambda disp: route(disp, "100", Recorder))
    call = sim.place_call("100", caller="alice")
    sim.advance(3)
    assert events == [("start", "alice"), "session", "empty"]
    assert call.sip_status == 200 and call.heard() == [play(WELCOME), play(BEEP)]
    call.send_dtmf("4")
    sim.advance(1)
    assert events[-2:] == [("dtmf", "4", 0), "empty"]
    assert call.heard()[-1] == play(digit_prompt("4"))
    call.hangup()
    sim.advance(1)
    assert events[-1] == "bye"
    assert_clean(sim, d)


def test_flush_stops_the_current_prompt_and_bye_ends_without_on_bye(sim, assert_clean):
    Recorder.events = events = []
    d = sim.connect(lambda disp: route(disp, "100", Recorder))
    call = sim.place_call("100")
    sim.advance(0.5)                          # WELCOME is playing
    call.send_dtmf("7")
    sim.advance(1)
    assert call.heard() == [play(WELCOME), play(digit_prompt("7"))]
    call.send_dtmf("#")
    sim.advance(1)
    assert call.ended and "bye" not in events
    assert_clean(sim, d)


def test_record_item_until_flush(sim, tmp_path, assert_clean):
    path = str(tmp_path / "msg.au")

    class Rec(IvrDialogBase):
        def onSessionStart(self):
            self.enqueue(None, path)

        def onDtmf(self, key, duration):
            self.flush()
            self.enqueue(BEEP, None)

        def onEmptyQueue(self):
            self.bye()

    d = sim.connect(lambda disp: route(disp, "100", Rec))
    call = sim.place_call("100")
    sim.advance(2)
    call.send_dtmf("1")
    sim.advance(1)
    assert any(f"consumer=wave/record/{path}" in line for line in sim.lines(">>"))
    assert any("consumer=-" in line for line in sim.lines(">>"))
    assert call.heard() == [play(BEEP)] and call.ended
    assert_clean(sim, d)


def test_handler_exception_ends_the_call(sim, assert_clean):
    class Broken(Dialog):
        def onSessionStart(self):
            raise KeyError("bug")

    d = sim.connect(lambda disp: route(disp, "100", Broken))
    call = sim.place_call("100")
    sim.advance(1)
    assert call.ended
    assert_clean(sim, d)


def test_connect_callee_and_terminate_other_leg(sim, assert_clean):
    bob = sim.endpoint("bob", answer(after=1))
    replies = []

    class B2B(Dialog):
        def onSessionStart(self):
            self.connectCallee("Bob", bob.uri)

        def onOtherReply(self, code, reason):
            replies.append(code)

        def onDtmf(self, key, duration):
            if key == "0":
                self.terminateOtherLeg().addCallback(
                    lambda _: self.enqueue(BEEP, None))

        def onOtherBye(self):                 # the callee hung up (not us)
            replies.append("other-bye")

        def onEmptyQueue(self):
            self.bye()

    d = sim.connect(lambda disp: route(disp, "100", B2B))
    call = sim.place_call("100")
    sim.advance(2)
    assert replies == [200] and call.peer_id == bob.last.id
    call.send_dtmf("0")                       # passes the bridge, and we see it
    sim.advance(2)
    assert bob.last.ended and replies == [200]
    assert call.heard()[-1] == play(BEEP) and call.ended
    assert_clean(sim, d)


def test_callee_hangs_up_reports_other_bye(sim, assert_clean):
    bob = sim.endpoint("bob", answer(hangup_after=1))
    events = []

    class B2B(Dialog):
        def onSessionStart(self):
            self.connectCallee(None, bob.uri)

        def onOtherBye(self):
            events.append("other-bye")

        def onBye(self):
            events.append("bye")

    d = sim.connect(lambda disp: route(disp, "100", B2B))
    call = sim.place_call("100")
    sim.advance(3)
    # Bridged: when the callee leaves, Yate hangs the caller up too.
    assert sorted(events) == ["bye", "other-bye"] and call.ended
    assert_clean(sim, d)


def test_connect_callee_busy_reports_the_code(sim, assert_clean):
    bob = sim.endpoint("bob", busy())
    replies = []

    class B2B(Dialog):
        def onSessionStart(self):
            self.connectCallee(None, bob.uri).addErrback(lambda f: None)

        def onOtherReply(self, code, reason):
            replies.append((code, reason))
            self.bye()

    d = sim.connect(lambda disp: route(disp, "100", B2B))
    call = sim.place_call("100")
    sim.advance(2)
    assert replies == [(486, "busy")] and call.ended
    assert_clean(sim, d)
