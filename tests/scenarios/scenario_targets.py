"""Two targets for the same call-level scenarios: the simulator and the real engine (issue 5).

A scenario is an ``async def scenario(target)`` that connects a Dispatcher, runs ``yaypm.ivr``
apps, places calls and scripts callees through the target, and returns what it observed (SIP
statuses, digits, what the app saw) as plain values.  The tests assert the same values on both
targets, so a simulator that drifts from Yate fails a test.

``await target.connect() -> Dispatcher``
    a Dispatcher on the target (the simulator's in-memory link, or extmodule TCP).
``await target.place_call(number, dtmf=..., dtmf_method=..., hangup_after=...) -> Caller``
    a SIP caller (sim: ``sim.place_call``; real: sipp with a generated scenario) that answers
    nothing itself: after the 200 it waits ``dtmf_delay``, sends the digits ``dtmf_interval``
    apart (``dtmf`` a string sent by ``dtmf_method``, or ``[(method, digit), ...]``), then
    either hangs up ``hangup_after`` seconds after the answer or waits for the BYE.
    ``await caller.outcome()`` -> :class:`CallerOutcome`.
``await target.endpoint(user, behaviour) -> Callee``
    a SIP callee (``answer``: 183, 180 at 0.3 s, 200 at 1 s; ``busy``: 486; ``noanswer``:
    180 forever) reached at ``callee.callto``; ``await callee.outcome()``.
``await target.wait(deferred, timeout)``, ``await target.sleep(seconds)``
    sim: the clock is advanced (50 ms steps) until the Deferred fires; real: real time.
``await target.clean(dispatcher)``
    nothing left behind: no live leg, pending operation or message, and no channel in the
    engine (sim: ``sim.leaks()``; real: ``engine.status`` of sip, dumb and conf).
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory

from yaypm.connectors import ExtModuleLineProtocol
from yaypm.ivr import switchboard
from yaypm.testing.simulator import Behaviour, Simulator, busy
from yaypm.testing.sipp_xml import sipp_reply, sipp_request, sipp_send
from yaypm.testing.yate import SippCall, SippCallee, YateEngine

EVENT = 10.0

Digits = Union[str, Sequence[Tuple[str, str]]]


@dataclass(frozen=True)
class CallerOutcome:
    """The caller's side: final status, the provisional responses (100 left out), who hung up."""
    status: Optional[int]
    provisional: Tuple[int, ...]
    bye_received: bool
    bye_sent: bool


@dataclass(frozen=True)
class CalleeOutcome:
    """The callee's side: the final status it sent, and whether it got a BYE or a CANCEL."""
    status: Optional[int]
    bye_received: bool
    cancel_received: bool


def _digit_steps(dtmf: Digits, method: str) -> List[Tuple[str, str]]:
    if isinstance(dtmf, str):
        return [(method, d) for d in dtmf]
    return [(m, d) for m, d in dtmf]


def _assert_ivr_clean(dispatcher: Any) -> None:
    board = switchboard(dispatcher)
    assert len(board) == 0, board.live
    assert board.legs == {} and board._tags == {} and board._retired == {}, \
        (board.legs, board._tags, board._retired)
    assert board.pending_count() == 0
    assert dispatcher.pending_count() == 0, dispatcher.pending_count()


# ------------------------------------------------------------------------------------------
# The simulator
# ------------------------------------------------------------------------------------------

# The sipp callees of tests/sipp, as simulator behaviours (same responses, same timing).
SIM_BEHAVIOURS = {
    "answer": lambda: Behaviour([("progress", 0.0), ("ring", 0.3), ("answer", 1.0)], "answer"),
    "busy": lambda: busy(),
    "noanswer": lambda: Behaviour([("ring", 0.0)], "noanswer"),
}


class SimCaller:
    def __init__(self, target: "SimTarget", call: Any) -> None:
        self.target = target
        self.call = call
        self.bye_sent = False

    async def outcome(self, timeout: float = EVENT + 20) -> CallerOutcome:
        await self.target.wait(self.call.when_ended(), timeout)
        c = self.call
        answered = c.sip_status == 200
        return CallerOutcome(c.sip_status, tuple(c.provisional),
                             answered and not self.bye_sent, self.bye_sent)


class SimCallee:
    def __init__(self, target: "SimTarget", endpoint: Any) -> None:
        self.target = target
        self.endpoint = endpoint

    @property
    def callto(self) -> str:
        return "sip/" + self.endpoint.uri

    async def outcome(self, timeout: float = EVENT + 20) -> CalleeOutcome:
        await self.target.wait_for(lambda: self.endpoint.legs, timeout, "the INVITE")
        leg = self.endpoint.last
        await self.target.wait(leg.when_ended(), timeout)
        return CalleeOutcome(leg.sip_status, leg.bye_received, leg.cancelled)


class SimTarget:
    """The simulator on a ``task.Clock``: time moves only inside ``wait``/``sleep``."""

    name = "sim"
    step = 0.05

    def __init__(self, sim: Simulator, run_dir: Path) -> None:
        self.sim = sim
        self.run_dir = run_dir
        self.dispatchers: List[Any] = []

    async def connect(self) -> Any:
        d = self.sim.connect()
        self.dispatchers.append(d)
        return d

    async def place_call(self, number: str, *, dtmf: Digits = "", dtmf_method: str = "info",
                         dtmf_delay: float = 0.5, dtmf_interval: float = 0.3,
                         hangup_after: Optional[float] = None) -> SimCaller:
        steps = _digit_steps(dtmf, dtmf_method)
        call = self.sim.place_call(number, caller="caller",
                                   dtmf_method=steps[0][0] if steps else "info")
        caller = SimCaller(self, call)
        clock = self.sim.clock

        def answered(ok: bool) -> None:
            if not ok:
                return
            for i, (method, digit) in enumerate(steps):
                clock.callLater(dtmf_delay + i * dtmf_interval, send, method, digit)
            if hangup_after is not None:
                clock.callLater(hangup_after, hang_up)

        def send(method: str, digit: str) -> None:
            if not call.ended:
                call.send_dtmf(digit, method=method)

        def hang_up() -> None:
            if not call.ended:
                caller.bye_sent = True
                call.hangup()
        call.answered().addCallback(answered)
        return caller

    async def endpoint(self, user: str, behaviour: str) -> SimCallee:
        return SimCallee(self, self.sim.endpoint(user, SIM_BEHAVIOURS[behaviour]()))

    async def wait(self, d: Deferred, timeout: float = EVENT) -> Any:
        end = self.sim.clock.seconds() + timeout
        while not d.called and self.sim.clock.seconds() < end:
            self.sim.advance(self.step)
        if not d.called:
            d.cancel()
            raise defer.TimeoutError(f"not fired within {timeout} s of simulated time")
        return await d

    async def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> None:
        end = self.sim.clock.seconds() + timeout
        while not predicate():
            if self.sim.clock.seconds() >= end:
                raise AssertionError(f"timed out waiting for {what}")
            self.sim.advance(self.step)

    async def sleep(self, seconds: float) -> None:
        self.sim.advance(seconds)

    async def clean(self, dispatcher: Any) -> None:
        await self.wait_for(lambda: not self.sim.leaks() and _clean(dispatcher), 5.0,
                            "nothing left")
        _assert_ivr_clean(dispatcher)
        assert self.sim.leaks() == {}, self.sim.leaks()

    def close(self) -> None:
        self.sim.close()


def _clean(dispatcher: Any) -> bool:
    try:
        _assert_ivr_clean(dispatcher)
    except AssertionError:
        return False
    return True


# ------------------------------------------------------------------------------------------
# The real engine (sipp callers generated per call)
# ------------------------------------------------------------------------------------------

_PCAP = {"#": "pound", "*": "star"}
# Final responses a caller scenario accepts besides 200 (anything else fails sipp).
_REJECTS = (400, 403, 404, 408, 410, 480, 481, 484, 486, 487, 488, 500, 501, 503, 603)

_INVITE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- generated by tests/scenarios/scenario_targets.py -->
<scenario name="scenario_caller">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Scenario Caller" <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Allow: INVITE, ACK, CANCEL, BYE, INFO
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=caller 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 0 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
"""

_ACK_200 = ('  <recv response="200" rtd="true" rrs="true" timeout="30000"/>\n'
            + sipp_request("ACK", 1, "caller", retrans=False) + """  <nop>
    <action>
      <exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap"/>
    </action>
  </nop>
""")


def _info(cseq: int, digit: str) -> str:
    return (sipp_request("INFO", cseq, "caller", headers=["Content-Type: application/dtmf-relay"],
                         body=[f"Signal={digit}", "Duration=160"])
            + '  <recv response="100" optional="true"/>\n  <recv response="200"/>\n')


_RFC2833 = """  <nop>
    <action>
      <exec play_pcap_audio="/usr/share/sip-tester/dtmf_2833_{name}.pcap"/>
    </action>
  </nop>
"""

_OK_TO_BYE = sipp_reply("200 OK", "caller")


def _bye(cseq: int) -> str:
    return (sipp_request("BYE", cseq, "caller")
            + '  <recv response="100" optional="true"/>\n  <recv response="200"/>\n')


_ACK_ERROR = ('  <label id="rejected"/>\n'
              + sipp_send("ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0",
                          ["[last_Via:]", "[last_From:]", "[last_To:]", "Call-ID: [call_id]",
                           "CSeq: 1 ACK", "Contact: <sip:caller@[local_ip]:[local_port]>",
                           "Max-Forwards: 70"])
              + '  <label id="end"/>\n  <pause milliseconds="100"/>\n</scenario>\n')


def caller_scenario(steps: Sequence[Tuple[str, str]], dtmf_delay: float, dtmf_interval: float,
                    hangup_after: Optional[float]) -> str:
    """sipp XML for :meth:`YateTarget.place_call` (same timeline as :meth:`SimTarget.place_call`:
    digits from ``dtmf_delay`` after the answer, ``dtmf_interval`` apart)."""
    out = [_INVITE]
    out += [f'  <recv response="{code}" optional="true" next="rejected"/>\n' for code in _REJECTS]
    out.append(_ACK_200)
    cseq = itertools.count(2)
    elapsed = 0.0
    for i, (method, digit) in enumerate(steps):
        at = dtmf_delay + i * dtmf_interval
        out.append(f'  <pause milliseconds="{int((at - elapsed) * 1000)}"/>\n')
        elapsed = at
        if method == "info":
            out.append(_info(next(cseq), digit))
        elif method == "rfc2833":
            out.append(_RFC2833.format(name=_PCAP.get(digit, digit)))
        else:
            raise ValueError(f"dtmf method {method!r}")
    if hangup_after is None:
        out.append('  <recv request="BYE" timeout="40000"/>\n' + _OK_TO_BYE)
        out.append('  <pause milliseconds="100" next="end"/>\n')
    else:
        wait = max(int((hangup_after - elapsed) * 1000), 1)
        out.append(f'  <recv request="BYE" timeout="{wait}" ontimeout="hangup"/>\n' + _OK_TO_BYE)
        out.append('  <pause milliseconds="100" next="end"/>\n')
        out.append('  <label id="hangup"/>\n' + _bye(next(cseq)))
        out.append('  <pause milliseconds="100" next="end"/>\n')
    out.append(_ACK_ERROR)
    return "".join(out)


class YateCaller:
    def __init__(self, agent: SippCall) -> None:
        self.agent = agent

    async def outcome(self, timeout: float = EVENT + 20) -> CallerOutcome:
        out = await threads.deferToThread(self.agent.wait, timeout)
        assert out.exit_code == 0, f"sipp caller failed: {out}\n{out.errors[-2000:]}"
        provisional = tuple(m.status for m in out.responses("INVITE", "received")
                            if m.status is not None and 100 < m.status < 200)
        return CallerOutcome(out.status, provisional, out.bye_received, out.bye_sent)


class YateCallee:
    def __init__(self, agent: SippCallee) -> None:
        self.agent = agent

    @property
    def callto(self) -> str:
        return self.agent.callto

    async def outcome(self, timeout: float = EVENT + 20) -> CalleeOutcome:
        out = await threads.deferToThread(self.agent.wait, timeout)
        assert out.exit_code == 0, f"sipp callee failed: {out}\n{out.errors[-2000:]}"
        return CalleeOutcome(out.status, out.bye_received, out.cancel_received)


class YateTarget:
    """A real Yate (the module's ``yate`` fixture) and sipp agents, in real time."""

    name = "yate"

    def __init__(self, engine: YateEngine, run_dir: Path) -> None:
        self.engine = engine
        self.run_dir = run_dir
        self.agents: List[Any] = []
        self.connectors: List[Any] = []
        self.dispatchers: List[Any] = []
        self._n = itertools.count(1)

    async def connect(self) -> Any:
        """A Dispatcher connected to the engine's global listener."""
        from twisted.internet import reactor
        ready: Deferred = Deferred()
        factory = ClientFactory.forProtocol(lambda: ExtModuleLineProtocol(ready.callback))
        factory.noisy = False
        self.connectors.append(reactor.connectTCP("127.0.0.1", self.engine.global_port, factory))
        dispatcher = await self.wait(ready)
        self.dispatchers.append(dispatcher)
        return dispatcher

    async def _confirmed(self) -> None:
        """Every install/watch asked so far confirmed by Yate (so the next call is routed)."""
        def done() -> bool:
            return all(d.connected and all(i.confirmed for i in d._installs.values())
                       and all(w.confirmed for w in d._watches.values())
                       for d in self.dispatchers)
        await self.wait_for(done, EVENT, "installs and watches to be confirmed")

    async def place_call(self, number: str, *, dtmf: Digits = "", dtmf_method: str = "info",
                         dtmf_delay: float = 0.5, dtmf_interval: float = 0.3,
                         hangup_after: Optional[float] = None) -> YateCaller:
        await self._confirmed()
        n = next(self._n)
        path = self.run_dir / f"caller{n}.xml"
        path.write_text(caller_scenario(_digit_steps(dtmf, dtmf_method), dtmf_delay,
                                        dtmf_interval, hangup_after))
        agent = SippCall(self.engine.sip_port, number, self.run_dir, scenario=path,
                         timeout=EVENT + 15, label=f"caller{n}")
        self.agents.append(agent)
        agent.start()
        return YateCaller(agent)

    async def endpoint(self, user: str, behaviour: str) -> YateCallee:
        await self._confirmed()
        agent = SippCallee(behaviour, self.run_dir, timeout=EVENT + 15,
                           label=f"callee{next(self._n)}")
        self.agents.append(agent)
        await threads.deferToThread(agent.start)
        return YateCallee(agent)

    async def wait(self, d: Deferred, timeout: float = EVENT) -> Any:
        from twisted.internet import reactor
        return await d.addTimeout(timeout, reactor)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await self.sleep(0.05)

    async def sleep(self, seconds: float) -> None:
        from twisted.internet import reactor, task
        await task.deferLater(reactor, seconds, lambda: None)

    async def _channels(self, dispatcher: Any) -> dict:
        """Live channels per module, from ``engine.status`` (``chans=N``)."""
        counts = {}
        for module in ("sip", "dumb", "conf"):
            m = dispatcher.msg("engine.status", {"module": module})
            await self.wait(m.dispatch())
            found = re.search(r"[;,]chans=(\d+)", m.retvalue)
            counts[module] = int(found.group(1)) if found else -1
        return counts

    async def clean(self, dispatcher: Any) -> None:
        await self.wait_for(lambda: _clean(dispatcher), 5.0, "the IVR to be clean")
        deadline = time.monotonic() + 5.0
        while True:
            counts = await self._channels(dispatcher)
            if not any(counts.values()) or time.monotonic() > deadline:
                break
            await self.sleep(0.1)
        assert counts == {"sip": 0, "dumb": 0, "conf": 0}, counts
        _assert_ivr_clean(dispatcher)

    def close(self) -> None:
        for agent in self.agents:
            agent.kill()
        for connector in self.connectors:
            connector.disconnect()
