"""`postEvent` between processes (⚑D9): two runners, each on its own connection to the
simulated Yate, stand for two yaypm processes; an event for a session the poster's process
does not hold travels as a `yaypm.dsm.event` message addressed by session id."""
from __future__ import annotations

import re

from yaypm.dsm.yate import EVENT_MESSAGE

from yate_helpers import Harness

#: Answers, then on key 1 posts $msg to the session named in $peer and keeps the errno.
POSTER = """\
initial state START;
transition "answered" START - sessionStart -> READY;
state READY;
transition "post" READY - keyTest(#key == 1) / {
  set($msg=hello: 100%);
  postEvent($peer, msg);
  set($post_errno=$errno);
} -> POSTED;
state POSTED;
transition "left" (START, READY, POSTED) - hangup / stop(false) -> END;
state END;
"""

#: Answers, then waits for an event and keeps its `msg`.
RECEIVER = """\
initial state START;
transition "answered" START - sessionStart -> WAIT;
state WAIT;
transition "got it" WAIT - eventTest(#msg != "") / set($got=#msg) -> GOT;
state GOT;
transition "left" (START, WAIT, GOT) - hangup / stop(false) -> END;
state END;
"""


def event_lines(sim):
    """`yaypm.dsm.event` messages the runners sent to Yate."""
    rx = re.compile(r"^%%>message:[^:]*::" + re.escape(EVENT_MESSAGE) + ":")
    return [w.line for w in sim.wire if w.direction == ">>" and rx.search(w.line)]


def event_answers(sim, handled):
    """Answers to `yaypm.dsm.event` that Yate handed to a runner (`handled`: true/false)."""
    rx = re.compile(r"^%%<message:[^:]*:" + handled + ":" + re.escape(EVENT_MESSAGE) + ":")
    return [w.line for w in sim.wire if w.direction == "<<" and rx.search(w.line)]


def two_processes(sim, local_receiver=False):
    """Runner A holds the poster (100); the receiver (200) is in runner B, or in A."""
    a = Harness(sim, {"poster": POSTER, "receiver": RECEIVER},
                routes={"poster": "100", **({"receiver": "200"} if local_receiver else {})})
    b = Harness(sim, {"receiver": RECEIVER}, routes={} if local_receiver else {"receiver": "200"})
    caller = sim.place_call("100")
    callee = sim.place_call("200")
    sim.advance(1)
    return a, b, caller, callee


def hang_up(sim, *calls):
    for c in calls:
        c.hangup()
    sim.advance(1)


def test_post_event_reaches_a_session_of_another_process(sim):
    a, b, caller, callee = two_processes(sim)
    poster, receiver = a.session(), b.session()
    assert receiver.id not in a.engine.registry.sessions
    poster.var["peer"] = receiver.id
    caller.send_dtmf("1")
    sim.advance(1)
    assert receiver.state.name == "GOT" and receiver.var["got"] == "hello: 100%"
    assert poster.state.name == "POSTED" and poster.var["post_errno"] == ""
    [line] = event_lines(sim)
    # Addressed by id, the sender named, the variable escaped by the dispatcher.
    assert line.endswith(f":target={receiver.id}:sender={poster.id}:var.msg=hello%z 100%%")
    assert len(event_answers(sim, "true")) == 1
    hang_up(sim, caller, callee)
    a.clean()
    b.clean()


def test_post_event_to_an_unknown_session_is_unhandled_everywhere(sim):
    a, b, caller, callee = two_processes(sim)
    poster, receiver = a.session(), b.session()
    poster.var["peer"] = "NOBODY-1"
    caller.send_dtmf("1")
    sim.advance(1)
    assert poster.state.name == "POSTED" and poster.var["post_errno"] == "arg"
    assert receiver.state.name == "WAIT" and "got" not in receiver.var
    assert len(event_lines(sim)) == 1
    assert len(event_answers(sim, "false")) == 1 and event_answers(sim, "true") == []
    hang_up(sim, caller, callee)
    a.clean()
    b.clean()


def test_local_target_takes_the_in_process_path(sim):
    a, b, caller, callee = two_processes(sim, local_receiver=True)
    poster, receiver = a.session(0), a.session(1)
    assert b.engine.registry.sessions == {}
    poster.var["peer"] = receiver.id
    caller.send_dtmf("1")
    sim.advance(1)
    assert receiver.state.name == "GOT" and receiver.var["got"] == "hello: 100%"
    assert poster.var["post_errno"] == ""
    assert event_lines(sim) == []
    hang_up(sim, caller, callee)
    a.clean()
    b.clean()


def test_ids_of_shared_records_are_unique_across_processes(sim):
    a = Harness(sim, {"receiver": RECEIVER}, routes={"receiver": "200"}, ivr_records=True)
    assert a.registry.node and a.registry.new_id().startswith(f"call-{a.registry.node}-")
