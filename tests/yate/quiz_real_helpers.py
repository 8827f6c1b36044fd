"""quizconnect's end-to-end scenarios on a real Yate: sipp scenarios, seeding, assertions.

Shared by the TCP tests (``tests/yate/test_quizconnect_real.py``: the app runs in the test's
reactor over the extmodule listener) and the embedded ones
(``tests/embedded/test_embedded_apps.py``: the app runs inside Yate, in ``yaypmhost``), so
both make the same calls and check the same things.  A scenario is used in four steps::

    scenario = WinnerAmongThree(tmp_path)     # number, SQLite file, scenarios, config
    scenario.start_callees(sip_callee)        # sipp callees listening, the table seeded
    ... run quizconnect with scenario.config (over TCP, or embedded) ...
    scenario.place_call(sip_call)             # the sipp caller dials scenario.number
    scenario.check()                          # blocking: waits for every sipp, asserts

Each callee is a sipp on its own port, so the table holds ``name@127.0.0.1:<port>`` (a
callee written ``user@host:port`` is called there).  The sipp scenarios are generated into
the scenario's folder.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from yaypm.apps.quizconnect.config import QuizConfig
from yaypm.apps.quizconnect.store import CalleeStore
from yaypm.sql import Database
from yaypm.testing.sipp_xml import sipp_reply, sipp_request, sipp_send
from yaypm.testing.yate import SipOutcome, SippAgent

__all__ = ["QuizScenario", "WinnerAmongThree", "CallerCancels", "SCENARIOS", "caller_scenario",
           "cancelling_caller_scenario", "pin_callee_scenario", "seed", "statuses",
           "config_text"]

_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
"""

_SDP = ["v=0", "o=user 53655765 2353687637 IN IP[local_ip_type] [local_ip]", "s=-",
        "c=IN IP[media_ip_type] [media_ip]", "t=0 0", "m=audio [media_port] RTP/AVP 8 101",
        "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15"]

# The caller's INVITE, and the dialog lines its CANCEL and ACK repeat.
_VIA = "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK[pid]quiz[call_number]"
_FROM = 'From: "Quiz Caller" <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]'
_SERVICE = "sip:[service]@[remote_ip]:[remote_port]"

_INVITE = sipp_send(f"INVITE {_SERVICE} SIP/2.0",
                    [_VIA, _FROM, f"To: <{_SERVICE}>", "Call-ID: [call_id]", "CSeq: 1 INVITE",
                     "Contact: <sip:alice@[local_ip]:[local_port]>", "Max-Forwards: 70",
                     "Allow: INVITE, ACK, CANCEL, BYE, INFO", "Subject: quizconnect",
                     "Content-Type: application/sdp"], [*_SDP, ""], retrans=True)


def _reply(code: str, tag: bool = True, sdp: bool = False) -> str:
    return sipp_reply(code, "callee", to_tag="[pid]SIPpTag01[call_number]" if tag else "",
                      headers=["Content-Type: application/sdp"] if sdp else [],
                      body=_SDP if sdp else [])


def caller_scenario(folder: Path, hold_ms: int) -> Path:
    """INVITE, provisional responses, 200 (up to 60 s), ACK, talk ``hold_ms``, BYE."""
    text = _HEAD + '<scenario name="quiz_caller">\n' + _INVITE + f"""  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" rrs="true" timeout="60000"/>
""" + sipp_request("ACK", 1, "alice", retrans=False) + f"""  <pause milliseconds="{hold_ms}"/>
""" + sipp_request("BYE", 2, "alice") + """  <recv response="100" optional="true"/>
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
""" + sipp_send(f"CANCEL {_SERVICE} SIP/2.0",
                [_VIA, _FROM, f"To: <{_SERVICE}>", "Call-ID: [call_id]", "CSeq: 1 CANCEL",
                 "Max-Forwards: 70"]) + """  <recv response="100" optional="true"/>
  <recv response="200" optional="true"/>
  <recv response="487"/>
""" + sipp_send(f"ACK {_SERVICE} SIP/2.0",
                [_VIA, _FROM, "[last_To:]", "Call-ID: [call_id]", "CSeq: 1 ACK",
                 "Max-Forwards: 70"]) + """  <!-- Yate answers the CANCEL 100, then 487 to the INVITE; its 200 may follow or not -->
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
            body.append(sipp_request(
                "INFO", cseq, "callee", uri="[$contact]",
                dialog=("From: [$to];tag=[pid]SIPpTag01[call_number]", "To: [$from]"),
                headers=["Content-Type: application/dtmf-relay"],
                body=[f"Signal={key}", "Duration=160"]))
            body.append('  <recv response="100" optional="true"/>\n  <recv response="200"/>\n'
                        '  <pause milliseconds="150"/>\n')
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


def seed(db_url: str, number: str, rows: Sequence[Tuple[str, str]]) -> None:
    store = CalleeStore(Database(db_url, threaded=False))
    store.init()
    for callee, pin in rows:
        store.add(number, callee, pin)
    store.db.close()


def statuses(outcome: SipOutcome) -> List[int]:
    """Response codes to the INVITE, in order (the caller's view)."""
    return [m.status for m in outcome.messages if m.is_response and m.method == "INVITE"
            and m.direction == "received"]


def config_text(config: QuizConfig) -> str:
    """``config`` as a ``quizconnect.conf`` (``[quizconnect]``) that load_config reads back."""
    lines = ["[quizconnect]"]
    lines += [f"{f.name} = {getattr(config, f.name)}" for f in dataclasses.fields(config)]
    return "\n".join(lines) + "\n"


# -- scenarios ------------------------------------------------------------------------------

class QuizScenario:
    """One call through quizconnect: the callees, the caller, what each of them must see.

    ``folder`` receives the sipp scenarios and the SQLite file; ``number`` is fresh, so
    scenarios can share an engine.  ``config`` is what quizconnect runs with.
    """

    name = "?"
    config_kw: Dict[str, Any] = {}

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.scenarios = self.folder / "scenarios"
        self.scenarios.mkdir(parents=True, exist_ok=True)
        self.number = "35" + uuid.uuid4().hex[:8]
        self.db_url = f"sqlite:///{self.folder}/quizconnect.db"
        self.config = QuizConfig(number=self.number, db_url=self.db_url, **self.config_kw)
        self.callees: Dict[str, SippAgent] = {}
        self.caller: Optional[SippAgent] = None

    def start_callees(self, sip_callee: Callable[..., SippAgent]) -> None:
        """Start the sipp callees (each listening once this returns) and seed the table."""
        raise NotImplementedError

    def place_call(self, sip_call: Callable[..., SippAgent]) -> SippAgent:
        """Start the sipp caller towards ``number``."""
        raise NotImplementedError

    def check(self) -> None:
        """Wait for every sipp to finish (blocking) and assert what each one saw."""
        raise NotImplementedError

    def _seed(self, pins: Dict[str, str]) -> None:
        seed(self.db_url, self.number, [(f"{name}@127.0.0.1:{self.callees[name].port}", pin)
                                        for name, pin in pins.items()])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.number}>"


class WinnerAmongThree(QuizScenario):
    """john types a wrong PIN then the right one, anna is busy, bob answers and types 9:
    alice gets early media (183) first, then 200 and john; both answered callees get a BYE."""

    name = "winner"
    config_kw = dict(ring_timeout=20, pin_timeout=10, interdigit_timeout=5, overall_timeout=40)

    def start_callees(self, sip_callee: Callable[..., SippAgent]) -> None:
        self.callees = {
            "john": sip_callee(str(pin_callee_scenario(self.scenarios, "john", 800, [
                ("pause", 1000), ("dtmf", "11111#"), ("pause", 1500), ("dtmf", "12345")])),
                timeout=60),
            "anna": sip_callee("busy", timeout=60),
            "bob": sip_callee(str(pin_callee_scenario(self.scenarios, "bob", 1200, [
                ("pause", 800), ("dtmf", "9")])), timeout=60),
        }
        for agent in self.callees.values():
            agent.wait_listening()
        self._seed({"john": "12345", "anna": "54321", "bob": "999"})

    def place_call(self, sip_call: Callable[..., SippAgent]) -> SippAgent:
        self.caller = sip_call(self.number, scenario=str(caller_scenario(self.scenarios, 1500)),
                               timeout=60)
        return self.caller

    def check(self) -> None:
        assert self.caller is not None, "place_call() first"
        out = self.caller.wait(60)
        assert out.outcome == "answered", out
        codes = statuses(out)
        assert 183 in codes and codes.index(183) < codes.index(200), codes   # early media first
        john = self.callees["john"].wait(20)
        assert john.answered and john.bye_received, john      # BYE after alice's BYE
        assert self.callees["anna"].wait(20).outcome == "486"
        bob = self.callees["bob"].wait(20)
        assert bob.answered and bob.bye_received, bob         # the answered loser
        assert out.exit_code == 0 and john.exit_code == 0 and bob.exit_code == 0


class CallerCancels(QuizScenario):
    """alice cancels after 2.5 s while john and anna ring and bob (answered) waits for his
    PIN: alice gets 487, the ringing callees a CANCEL (487), bob a BYE."""

    name = "cancel"
    config_kw = dict(ring_timeout=30, overall_timeout=40)

    def start_callees(self, sip_callee: Callable[..., SippAgent]) -> None:
        self.callees = {
            "john": sip_callee("noanswer", timeout=60),
            "anna": sip_callee("noanswer", timeout=60),
            "bob": sip_callee(str(pin_callee_scenario(self.scenarios, "bob", 500,
                                                      [("pause", 500)])), timeout=60),
        }
        for agent in self.callees.values():
            agent.wait_listening()
        self._seed({"john": "1", "anna": "2", "bob": "3"})

    def place_call(self, sip_call: Callable[..., SippAgent]) -> SippAgent:
        self.caller = sip_call(self.number,
                               scenario=str(cancelling_caller_scenario(self.scenarios, 2500)),
                               timeout=30)
        return self.caller

    def check(self) -> None:
        assert self.caller is not None, "place_call() first"
        out = self.caller.wait(30)
        assert out.outcome == "487" and out.exit_code == 0, out
        for name in ("john", "anna"):
            o = self.callees[name].wait(20)
            assert o.cancel_received and o.outcome == "487", o      # ringing: CANCEL
        bob = self.callees["bob"].wait(20)
        assert bob.answered and bob.bye_received, bob                # answered: BYE


#: The scenarios by name (``winner``, ``cancel``).
SCENARIOS = {cls.name: cls for cls in (WinnerAmongThree, CallerCancels)}
