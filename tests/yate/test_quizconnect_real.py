"""quizconnect against a real Yate with sipp callers and callees, for both versions.

The winner-among-three and caller-cancels scenarios of tests/quizconnect, end to end: sipp
calls the quizconnect number, sipp callees answer busy, answer and type DTMF (SIP INFO) or
ring; quizconnect (the async version, or the DSM version on yaypm.dsm.yate) runs on the real
reactor over the extmodule TCP listener.  Each callee is a sipp on its own port, so the table
holds ``name@127.0.0.1:<port>`` (a callee written ``user@host:port`` is called there).  The
sipp scenarios are generated into the test's folder.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, List, Sequence, Tuple

import pytest
import pytest_twisted
from twisted.internet import defer, threads

from yaypm.apps.quizconnect.config import QuizConfig
from yaypm.apps.quizconnect.store import CalleeStore
from yaypm.connectors import TCPDispatcherFactory
from yaypm.registry import CallRegistry
from yaypm.sql import Database

pytestmark = pytest.mark.yate

EVENT = 10.0
VERSIONS = ["python", "dsm"]

_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
"""

_SDP = """      v=0
      o=user 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
"""

_INVITE = """  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK[pid]quiz[call_number]
      From: "Quiz Caller" <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:alice@[local_ip]:[local_port]>
      Max-Forwards: 70
      Allow: INVITE, ACK, CANCEL, BYE, INFO
      Subject: quizconnect
      Content-Type: application/sdp
      Content-Length: [len]

""" + _SDP + """
    ]]>
  </send>
"""


def _reply(code: str, tag: bool = True, sdp: bool = False) -> str:
    body = ("      Content-Type: application/sdp\n      Content-Length: [len]\n\n" + _SDP
            if sdp else "      Content-Length: 0\n\n")
    return f"""  <send>
    <![CDATA[
      SIP/2.0 {code}
      [last_Via:]
      [last_From:]
      [last_To:]{';tag=[pid]SIPpTag01[call_number]' if tag else ''}
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:callee@[local_ip]:[local_port]>
{body}    ]]>
  </send>
"""


def caller_scenario(folder: Path, hold_ms: int) -> Path:
    """INVITE, provisional responses, 200 (up to 60 s), ACK, talk ``hold_ms``, BYE."""
    text = _HEAD + '<scenario name="quiz_caller">\n' + _INVITE + f"""  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" rrs="true" timeout="60000"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:alice@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="{hold_ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:alice@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
</scenario>
"""
    path = folder / "quiz_caller.xml"
    path.write_text(text)
    return path


def cancelling_caller_scenario(folder: Path, after_ms: int) -> Path:
    """INVITE, provisional responses, CANCEL after ``after_ms``: 487 (and 200), ACK."""
    text = _HEAD + '<scenario name="quiz_cancel">\n' + _INVITE + f"""  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183"/>
  <pause milliseconds="{after_ms}"/>
  <send>
    <![CDATA[
      CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK[pid]quiz[call_number]
      From: "Quiz Caller" <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200" optional="true"/>
  <recv response="487"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK[pid]quiz[call_number]
      From: "Quiz Caller" <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <!-- Yate answers the CANCEL 100, then 487 to the INVITE; its 200 may follow or not -->
  <recv response="200" timeout="1000" ontimeout="done"/>
  <label id="done"/>
</scenario>
"""
    path = folder / "quiz_cancel.xml"
    path.write_text(text)
    return path


def pin_callee_scenario(folder: Path, name: str, answer_ms: int,
                        steps: Sequence[Tuple[str, Any]]) -> Path:
    """A callee that rings, answers after ``answer_ms``, then follows ``steps`` —
    ``("pause", ms)`` or ``("dtmf", "12#")`` (one SIP INFO per key, 150 ms apart) — and
    waits for Yate's BYE."""
    body: List[str] = []
    cseq = 0
    for kind, arg in steps:
        if kind == "pause":
            body.append(f'  <pause milliseconds="{int(arg)}"/>\n')
            continue
        for key in arg:
            cseq += 1
            body.append(f"""  <send retrans="500">
    <![CDATA[
      INFO [$contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$to];tag=[pid]SIPpTag01[call_number]
      To: [$from]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Contact: <sip:callee@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={key}
      Duration=160
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <pause milliseconds="150"/>
""")
    capture = """    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="from"/>
      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="to"/>
      <ereg regexp="sip:[^>]*" search_in="hdr" header="Contact:" check_it="true" assign_to="contact"/>
    </action>
""" if cseq else ""          # sipp refuses variables it never uses
    text = _HEAD + f"""<scenario name="quiz_callee_{name}">
  <recv request="INVITE" crlf="true">
{capture}  </recv>
""" + _reply("100 Trying", tag=False) + _reply("180 Ringing") + \
        f'  <pause milliseconds="{answer_ms}"/>\n' + \
        _reply("200 OK", sdp=True).replace("<send>", '<send retrans="500">') + \
        '  <recv request="ACK" rtd="true" crlf="true"/>\n' + "".join(body) + \
        '  <recv request="BYE" timeout="60000"/>\n' + _reply("200 OK", tag=False) + \
        '  <pause milliseconds="300"/>\n</scenario>\n'
    path = folder / f"quiz_callee_{name}.xml"
    path.write_text(text)
    return path


# -- quizconnect on the real reactor --------------------------------------------------------

async def run_quizconnect(yate: Any, version: str, config: QuizConfig) -> Tuple[Any, Any]:
    """Connect the version under test to ``yate``; returns (connector, app or runner)."""
    from twisted.internet import reactor
    holder: List[Any] = []
    if version == "python":
        from yaypm.apps.quizconnect.app import QuizConnect
        app: Any = QuizConnect(config, registry=CallRegistry())
        start = app.start
    else:
        from yaypm.apps.quizconnect import dsm_runner
        if not dsm_runner.adapter_available():
            pytest.skip("the DSM engine's Yate adapter is not installed")
        app = dsm_runner.make_runner(config)
        start = app.attach
    ready: defer.Deferred = defer.Deferred()

    def started(dispatcher: Any) -> None:
        holder.append(start(dispatcher))
        ready.callback(dispatcher)
    connector = reactor.connectTCP("127.0.0.1", yate.global_port, TCPDispatcherFactory(started))
    dispatcher = await ready.addTimeout(EVENT, reactor)
    for _ in range(200):                # Yate confirmed every install/watch: calls may come
        if dispatcher.pending_count() == 0:
            break
        await _sleep(0.05)
    assert dispatcher.pending_count() == 0, "installs not confirmed"
    return connector, app


async def _sleep(seconds: float) -> None:
    from twisted.internet import reactor, task
    await task.deferLater(reactor, seconds, lambda: None)


def seed(db_url: str, number: str, rows: Sequence[Tuple[str, str]]) -> None:
    store = CalleeStore(Database(db_url, threaded=False))
    store.init()
    for callee, pin in rows:
        store.add(number, callee, pin)
    store.db.close()


def statuses(outcome: Any) -> List[int]:
    """Response codes to the INVITE, in order (the caller's view)."""
    return [m.status for m in outcome.messages if m.is_response and m.method == "INVITE"
            and m.direction == "received"]


async def wait(agent: Any, seconds: float) -> Any:
    return await threads.deferToThread(agent.wait, seconds)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("version", VERSIONS)
async def test_winner_among_three_real(yate, sip_call, sip_callee, tmp_path, version):
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    john = sip_callee(str(pin_callee_scenario(scenarios, "john", 800, [
        ("pause", 1000), ("dtmf", "11111#"), ("pause", 1500), ("dtmf", "12345")])),
        timeout=60)
    anna = sip_callee("busy", timeout=60)
    bob = sip_callee(str(pin_callee_scenario(scenarios, "bob", 1200, [
        ("pause", 800), ("dtmf", "9")])), timeout=60)
    for agent in (john, anna, bob):
        agent.wait_listening()
    number = "35" + uuid.uuid4().hex[:8]
    db_url = f"sqlite:///{tmp_path}/quizconnect.db"
    seed(db_url, number, [(f"john@127.0.0.1:{john.port}", "12345"),
                          (f"anna@127.0.0.1:{anna.port}", "54321"),
                          (f"bob@127.0.0.1:{bob.port}", "999")])
    config = QuizConfig(number=number, db_url=db_url, ring_timeout=20, pin_timeout=10,
                        interdigit_timeout=5, overall_timeout=40)
    connector, _ = await run_quizconnect(yate, version, config)
    try:
        call = sip_call(number, scenario=str(caller_scenario(scenarios, 1500)), timeout=60)
        out = await wait(call, 60)
        assert out.outcome == "answered", out
        codes = statuses(out)
        assert 183 in codes and codes.index(183) < codes.index(200), codes   # early media first
        john_out = await wait(john, 20)
        assert john_out.answered and john_out.bye_received, john_out   # BYE after alice's BYE
        assert (await wait(anna, 20)).outcome == "486"
        bob_out = await wait(bob, 20)
        assert bob_out.answered and bob_out.bye_received, bob_out     # the answered loser
        assert out.exit_code == 0 and john_out.exit_code == 0 and bob_out.exit_code == 0
    finally:
        connector.disconnect()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("version", VERSIONS)
async def test_caller_cancels_while_callees_ring_real(yate, sip_call, sip_callee, tmp_path,
                                                      version):
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    john = sip_callee("noanswer", timeout=60)
    anna = sip_callee("noanswer", timeout=60)
    bob = sip_callee(str(pin_callee_scenario(scenarios, "bob", 500, [("pause", 500)])),
                     timeout=60)
    for agent in (john, anna, bob):
        agent.wait_listening()
    number = "35" + uuid.uuid4().hex[:8]
    db_url = f"sqlite:///{tmp_path}/quizconnect.db"
    seed(db_url, number, [(f"john@127.0.0.1:{john.port}", "1"),
                          (f"anna@127.0.0.1:{anna.port}", "2"),
                          (f"bob@127.0.0.1:{bob.port}", "3")])
    config = QuizConfig(number=number, db_url=db_url, ring_timeout=30, overall_timeout=40)
    connector, _ = await run_quizconnect(yate, version, config)
    try:
        call = sip_call(number, scenario=str(cancelling_caller_scenario(scenarios, 2500)),
                        timeout=30)
        out = await wait(call, 30)
        assert out.outcome == "487" and out.exit_code == 0, out
        for agent in (john, anna):
            o = await wait(agent, 20)
            assert o.cancel_received and o.outcome == "487", o       # ringing: CANCEL
        bob_out = await wait(bob, 20)
        assert bob_out.answered and bob_out.bye_received, bob_out    # answered: BYE
    finally:
        connector.disconnect()
