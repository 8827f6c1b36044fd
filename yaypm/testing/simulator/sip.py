"""SIP legs without SIP: ``sip/N`` channels with the parameters ysipchan sets, and callfork.

A :class:`SipChannel` stands for one SIP dialog.  Its far end is a *remote party* object —
:class:`~yaypm.testing.simulator.api.SimCall` for calls placed into the engine, an outbound
leg driven by a scripted endpoint for calls the engine places — that receives what a SIP user
agent would: provisional responses, the final response, BYE, CANCEL, DTMF.

Parameter lists and their order are copied from the traces: ``call.route`` and
``chan.startup`` of incoming calls (B1), ``chan.dtmf`` from SIP INFO and RFC 2833 (B1),
``call.progress``/``call.ringing``/``call.answered`` of outgoing legs (C1, C2),
``chan.hangup`` after BYE, drop, reject, busy, no answer (B1–B5, C1–C3, D1).
"""

from __future__ import annotations

import itertools
from typing import Any, Dict, List, Optional, Tuple

from yaypm.testing.simulator.channels import (Channel, Driver, code_for_error, error_for_code,
                                              route_call, SIP_PHRASES)
from yaypm.testing.simulator.engine import SimMessage, run_steps

__all__ = ["SipChannel", "SipDriver", "ForkDriver", "ForkMaster", "RemoteParty",
           "SIP_ALLOW"]

SIP_ALLOW = "INVITE, ACK, CANCEL, BYE, INFO"


class RemoteParty:
    """What the far SIP user agent of a :class:`SipChannel` is told (override what you need)."""

    def sip_provisional(self, code: int) -> None:
        """A 180/183 was sent to it (incoming calls)."""

    def sip_answered(self) -> None:
        """200 OK to its INVITE (incoming calls)."""

    def sip_final(self, code: int, reason: str) -> None:
        """An error response to its INVITE (incoming calls)."""

    def sip_bye(self) -> None:
        """The engine hung up the established dialog."""

    def sip_cancel(self) -> None:
        """The engine cancelled its outgoing INVITE (outgoing legs)."""

    def sip_dtmf(self, text: str, method: str) -> None:
        """DTMF sent towards it (INFO or RFC 2833)."""

    def sip_ended(self, chan: "SipChannel") -> None:
        """The channel is gone (after any of the above)."""


class SipChannel(Channel):
    """One SIP dialog, incoming (a call placed into the engine) or outgoing."""

    media_capable = True
    driver: "SipDriver"

    @property
    def media_up(self) -> bool:
        """RTP flows once SDP went both ways: on the answer, or early (``early_media``).

        Before that a prompt on the peer does not progress and a recorder gets nothing: Yate
        starts RTP on an incoming call with its 200, or with a 180/183 carrying SDP, which
        ysipchan sends when the message says ``earlymedia=true`` or, without the parameter,
        when the peer already has a source (``createProvisionalSDP``); an outgoing call's
        media starts with the callee's 183 with SDP.
        """
        return self.answered or self.early_media

    def __init__(self, driver: "SipDriver", outgoing: bool, address: str,
                 remote: RemoteParty, *, call_id: str, local_tag: str = "",
                 remote_tag: str = "", domain: str = "", rfc2833: bool = True,
                 formats: str = "alaw,mulaw", contact: str = "") -> None:
        super().__init__(driver, outgoing, address)
        self.remote = remote
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.domain = domain
        self.rfc2833 = rfc2833
        self.formats = formats
        self.contact = contact
        # ysipchan's constructor: setReason() = "Request Terminated", 487, cleared on answer;
        # so an unanswered leg dropped for a reason it cannot map ends with 487.
        self.reason = "Request Terminated"
        self.reason_code = 487
        self.hungup = False
        self.answered_at: Optional[float] = None
        self.sdp_seen = False
        self.early_media = False      # a provisional response carried SDP (see media_capable)
        self.early_dialog = False     # outgoing: a 180/183 came (sipp's carry a To tag)
        self.final_received = False   # outgoing: the callee's own final error (or timer B)
        self.rtp_id = "yrtp/" + str(driver.next_rtp_id())

    # -- parameters --------------------------------------------------------------------------
    @property
    def callid(self) -> str:
        """``sip/<Call-ID>/<From tag>/<To tag>`` (Yate's addCallId)."""
        if self.outgoing:
            return f"sip/{self.call_id}/{self.local_tag}/{self.remote_tag}"
        return f"sip/{self.call_id}/{self.remote_tag}/{self.local_tag}"

    def complete(self, msg: SimMessage, minimal: bool = False) -> None:
        super().complete(msg, minimal)
        if minimal:
            return
        if self.domain:
            msg.set("domain", self.domain)
        msg.set("callid", self.callid)

    def rtp_stats(self) -> str:
        secs = 0.0
        if self.answered_at is not None:
            secs = max(self.engine.clock.seconds() - self.answered_at, 0.0)
        packets = int(secs * 50)
        return f"PS={packets},OS={packets * 160},PR={packets},OR={packets * 160},PL=0"

    # -- replies to the far end -------------------------------------------------------------------
    def msg_ringing(self, msg: SimMessage) -> bool:
        super().msg_ringing(msg)
        if not self.outgoing and not self.hungup:
            self._provisional_sdp(msg)
            self.remote.sip_provisional(180)
        return True

    def msg_progress(self, msg: SimMessage) -> bool:
        super().msg_progress(msg)
        if not self.outgoing and not self.hungup:
            self._provisional_sdp(msg)
            self.remote.sip_provisional(183)
        return True

    def _provisional_sdp(self, msg: SimMessage) -> None:
        """ysipchan ``createProvisionalSDP``: SDP (and RTP from then on) in a 180/183 when
        ``earlymedia`` says so, by default when the peer already has a source."""
        has_source = self.peer is not None and self.peer.media.get("source") is not None
        value = msg.get("earlymedia")
        early = has_source if value is None else value.lower() in ("true", "yes", "on", "1")
        if early and not self.early_media:
            self.early_media = True
            self._media_flowing()

    def _media_flowing(self) -> None:
        """Media started: prompts and recorders on this channel and its peer go on."""
        self.driver.modules.media_changed(self)
        if self.peer is not None:
            self.driver.modules.media_changed(self.peer)

    def msg_answered(self, msg: SimMessage) -> bool:
        super().msg_answered(msg)
        if not self.outgoing and not self.hungup:
            if not self.local_tag:
                self.local_tag = str(self.driver.next_tag())
            self.answered_at = self.engine.clock.seconds()
            self.set_reason("", 0)
            self.remote.sip_answered()
            self._media_flowing()
        return True

    def msg_tone(self, msg: SimMessage, text: str) -> bool:
        """DTMF towards the far end: RFC 2833 goes through the RTP session (B4)."""
        if self.hungup:
            return False
        methods = msg.get("methods") or ""
        use_rtp = self.rfc2833 and (not methods or methods.split(",")[0].strip() == "rfc2833")
        if use_rtp:
            msg.set("targetid", self.rtp_id)
            return False
        self.dtmf_out.append(text)
        self.remote.sip_dtmf(text, "info")
        return True

    def rtp_dtmf(self, msg: SimMessage) -> bool:
        text = msg.get("text") or ""
        self.dtmf_out.append(text)
        self.remote.sip_dtmf(text, "rfc2833")
        return True

    # -- events from the far end ------------------------------------------------------------------
    def remote_dtmf(self, text: str, method: str) -> None:
        """The far end sent DTMF: ``chan.dtmf`` from SIP INFO, or RFC 2833 via yrtp (B1)."""
        if method == "rfc2833":
            m = SimMessage("chan.masquerade", [("message", "chan.dtmf"), ("id", self.id),
                                               ("text", text), ("detected", "rfc2833")],
                           time=self.engine.now_sec())
            self.engine.enqueue(m)
            return
        m = self.message("chan.dtmf")
        if self.contact:
            m.add("sip_contact", self.contact)
        m.add("sip_content-type", "application/dtmf-relay")
        m.add("text", text)
        m.add("detected", "sip-info")
        if self.dtmf_sequence(m):
            return
        self.engine.enqueue(m)

    def remote_bye(self) -> None:
        """BYE from the far end of an established dialog (B2)."""
        if self.hungup:
            return
        self.params = [("cause_sip", "200"), ("rtp_stats", self.rtp_stats())]
        if self.contact:
            self.params.append(("sip_contact", self.contact))
        self.hangup()

    def remote_cancel(self) -> None:
        """CANCEL of an incoming INVITE that was not answered yet."""
        if self.hungup:
            return
        self.reason = "Cancelled"
        self.reason_code = 487
        self.hangup()

    def remote_progress(self, sdp: bool = True) -> None:
        """183 Session Progress from the callee (C1)."""
        if self.hungup or self.answered:
            return
        self._remote_tag()
        self.early_dialog = True
        self.set_status("progressing")
        m = self.message("call.progress")
        if self.contact:
            m.add("sip_contact", self.contact)
        if sdp:
            self.sdp_seen = True
            if not self.early_media:
                self.early_media = True
                self._media_flowing()
            m.add("sip_content-type", "application/sdp")
            self._media_params(m)
        self.engine.enqueue(m)

    def remote_ringing(self) -> None:
        """180 Ringing from the callee (C1 with early media seen, C2 without)."""
        if self.hungup or self.answered:
            return
        self._remote_tag()
        self.early_dialog = True
        self.set_status("ringing")
        m = self.message("call.ringing")
        if self.contact:
            m.add("sip_contact", self.contact)
        if self.sdp_seen:
            self._media_params(m)
        else:
            m.add("earlymedia", "false")
        self.engine.enqueue(m)

    def remote_answer(self) -> None:
        """200 OK from the callee (C1)."""
        if self.hungup or self.answered:
            return
        self._remote_tag()
        self.maxcall = 0.0
        self.set_reason("", 0)
        self.set_status("answered")
        self.answered_at = self.engine.clock.seconds()
        self._media_flowing()
        m = self.message("call.answered")
        if self.contact:
            m.add("sip_contact", self.contact)
        m.add("sip_allow", SIP_ALLOW)
        m.add("sip_content-type", "application/sdp")
        self._media_params(m)
        self.engine.enqueue(m)

    def remote_reject(self, code: int, phrase: Optional[str] = None) -> None:
        """A final error response from the callee: 486 Busy Here and the like (C3)."""
        if self.hungup or self.answered:
            return
        self._remote_tag()
        self.final_received = True
        phrase = phrase or SIP_PHRASES.get(code, "Error")
        self.params = [("cause_sip", str(code)), ("reason_sip", phrase)]
        self.reason = phrase
        self.reason_code = code
        self.hangup()

    def remote_timeout(self) -> None:
        """No response at all for 32 s (SIP timer B): 408."""
        if self.hungup or self.answered:
            return
        self.final_received = True
        self.reason = "Request Timeout"
        self.reason_code = 408
        self.hangup()

    def _remote_tag(self) -> None:
        if not self.remote_tag:
            self.remote_tag = self.driver.remote_tag_for(self)

    def _media_params(self, m: SimMessage) -> None:
        m.add("media", "yes")
        m.add("formats", self.formats.split(",")[0])
        m.add("transport", "RTP/AVP")
        if self.rfc2833:
            m.add("rtp_rfc2833", "101")

    # -- engine side ----------------------------------------------------------------------------
    def set_reason(self, reason: str, code: int) -> None:
        self.reason = reason
        self.reason_code = code

    def disconnected(self, reason: Optional[str]) -> None:
        """``YateSIPConnection::disconnected``: the reason becomes the SIP reason."""
        if reason:
            code = code_for_error(reason)
            if 300 <= code <= 699:
                self.set_reason(SIP_PHRASES.get(code, reason), code)
            else:
                self.set_reason(reason, 487)
        super().disconnected(reason)

    def end_disconnected(self, msg: SimMessage) -> None:
        self.hangup()

    def after_drop(self, reason: Optional[str]) -> None:
        code = code_for_error(reason)
        if 300 <= code <= 699:
            self.set_reason(SIP_PHRASES.get(code, reason or ""), code)
        self.hangup()

    def call_rejected(self, error: str, reason: Optional[str],
                      msg: Optional[SimMessage]) -> None:
        super().call_rejected(error, reason, msg)
        code = code_for_error(error, 500)
        if code < 300 or code > 699:
            code = 500
        self.set_reason(reason or "", code)
        self.hangup()

    def die(self) -> None:
        self.hangup()

    def script_gone(self, reason: str) -> None:
        self.disconnect(reason or None, True, None)

    def hangup(self) -> None:
        """``YateSIPConnection::hangup``: chan.hangup, then the far end and the peer are told."""
        if self.hungup:
            return
        self.hungup = True
        if self.answered and not any(k == "rtp_stats" for k, _ in self.params):
            self.params.append(("rtp_stats", self.rtp_stats()))
        m = self.message("chan.hangup", data=False)
        if self.reason:
            m.set("reason", self.reason)
        self.engine.enqueue(m)
        error = error_for_code(self.reason_code) or self.reason or None
        if self.outgoing:
            if self.answered:
                self.remote.sip_bye()
            elif not self.final_received:
                # Nothing to cancel once the callee answered 486 & co. (C3).  A CANCEL of an
                # early dialog is followed by a BYE on it (C2: CANCEL, BYE, then the 487).
                self.remote.sip_cancel()
                if self.early_dialog:
                    self.remote.sip_bye()
        else:
            if self.answered:
                self.remote.sip_bye()
            else:
                code = self.reason_code if 300 <= self.reason_code <= 699 else 500
                if self.reason_code == 487 and self.reason == "Cancelled":
                    code = 487
                self.remote.sip_final(code, self.reason or SIP_PHRASES.get(code, ""))
        self.alive = False
        self.disconnect(error, True, list(self.params))
        self.driver.modules.release_media(self)
        self.driver.remove(self)
        self.remote.sip_ended(self)
        for fn in self.on_death:
            fn(self)


class SipDriver(Driver):
    """ysipchan: incoming calls (:meth:`incoming`), ``callto=sip/...`` outgoing legs."""

    def __init__(self, modules: Any, name: str, dtype: str) -> None:
        super().__init__(modules, name, dtype)
        self._tags = itertools.count(1171057107, 7919)
        self._rtp = itertools.count(824040208, 104729)
        self._callids = itertools.count(1)
        self.local_host = "127.0.0.1"
        self.local_port = 5070
        #: ``outbound(chan, uri, msg) -> RemoteParty``: who answers an outgoing leg.
        self.outbound: Any = None

    def next_tag(self) -> int:
        return next(self._tags)

    def next_rtp_id(self) -> int:
        return next(self._rtp)

    def remote_tag_for(self, chan: SipChannel) -> str:
        return f"{chan.id.split('/')[1]}SimTag{next(self._callids):03d}"

    def extra_status(self) -> str:
        return "transactions=0"

    # -- incoming ------------------------------------------------------------------------------
    def incoming(self, remote: RemoteParty, *, caller: str, called: str,
                 callername: Optional[str], address: Tuple[str, int],
                 call_id: str, from_tag: str, rfc2833: bool = True,
                 formats: str = "alaw,mulaw", rtp_port: int = 26000,
                 headers: Optional[List[Tuple[str, str]]] = None,
                 extra: Optional[List[Tuple[str, str]]] = None) -> SipChannel:
        """A new INVITE: create ``sip/N``, enqueue ``chan.startup`` and start routing."""
        host, port = address
        addr = f"{host}:{port}"
        server = f"{self.local_host}:{self.local_port}"
        contact = f"<sip:{caller}@{addr}>"
        chan = SipChannel(self, False, addr, remote, call_id=call_id, remote_tag=from_tag,
                          domain=self.local_host, rfc2833=rfc2833, formats=formats,
                          contact=contact)
        route = SimMessage("call.route", time=self.engine.now_sec())
        for k, v in (("id", chan.id), ("module", "sip"), ("status", "incoming"),
                     ("address", addr), ("billid", chan.billid), ("answered", "false"),
                     ("direction", "incoming"), ("callid", chan.callid), ("caller", caller),
                     ("called", called)):
            route.add(k, v)
        if callername is not None:
            route.add("callername", callername)
        for k, v in (("antiloop", "19"), ("ip_host", host), ("ip_port", str(port)),
                     ("ip_transport", "UDP"), ("address", addr), ("connection_id", "general"),
                     ("connection_reliable", "false"),
                     ("sip_uri", f"sip:{called}@{server}"),
                     ("sip_from", f"sip:{caller}@{addr}"),
                     ("sip_to", f"<sip:{called}@{server}>"), ("sip_callid", call_id),
                     ("device", ""), ("sip_contact", contact)):
            route.add(k, v)
        for k, v in headers or ():
            route.add(k, v)
        route.add("sip_content-type", "application/sdp")
        route.add("newcall", "true")
        route.add("domain", self.local_host)
        route.add("rtp_addr", host)
        route.add("media", "yes")
        route.add("formats", formats)
        route.add("transport", "RTP/AVP")
        if rfc2833:
            route.add("rtp_rfc2833", "101")
        route.add("rtp_port", str(rtp_port))
        route.add("rtp_forward", "possible")
        for k, v in extra or ():
            route.set(k, v)
        startup = chan.message("chan.startup")
        startup.add("caller", caller)
        startup.add("called", called)
        startup.add("connection_id", "general")
        # Routing starts before chan.startup is dispatched (B1: call.route first).
        route.userdata = chan
        run_steps(route_call(self.engine, chan, route))
        self.engine.enqueue(startup)
        return chan

    # -- outgoing ------------------------------------------------------------------------------
    def msg_execute(self, msg: SimMessage, dest: str) -> Any:
        dd = msg.userdata
        if not isinstance(dd, Channel):
            return False
        uri = dest
        user, host, port = _parse_uri(uri)
        addr = f"{host}:{port}"
        call_id = f"{next(self._tags) % 10**10}@{self.local_host}:{self.local_port}"
        chan = SipChannel(self, True, addr, RemoteParty(), call_id=call_id,
                          local_tag=str(next(self._tags) % 10**9),
                          contact=f"<sip:{user}@{addr}>", formats="alaw")
        chan.targetid = msg.get("id") or dd.id
        startup = chan.message("chan.startup")
        for name in ("caller", "callername", "called"):
            v = msg.get(name)
            if v is not None:
                startup.add(name, v)
        startup.add("callto", msg.get("callto") or "")
        startup.add("calledfull", user)
        startup.add("sip_callid", call_id)
        startup.add("connection_id", "general")
        self.engine.enqueue(startup)
        chan.set_maxcall(msg)
        if not chan.connect(dd):
            chan.hungup = True
            chan.alive = False
            self.remove(chan)
            return False
        msg.set("peerid", chan.id)
        msg.set("targetid", chan.id)
        if self.outbound is not None:
            chan.remote = self.outbound(chan, uri, msg) or chan.remote
        return True

    def on_rtp_dtmf(self, msg: SimMessage) -> bool:
        """yrtp at 150: DTMF to a leg whose SIP driver handed it to the RTP session (B4)."""
        target = msg.get("targetid") or ""
        if not target.startswith("yrtp/"):
            return False
        for chan in self.channels.values():
            if isinstance(chan, SipChannel) and chan.rtp_id == target:
                return chan.rtp_dtmf(msg)
        return False


def _parse_uri(uri: str) -> Tuple[str, str, int]:
    """``sip:user@host:port`` -> (user, host, port); defaults 127.0.0.1 and 5060."""
    u = uri
    if u.startswith("sip:"):
        u = u[4:]
    user, _, hostport = u.rpartition("@")
    if not _:
        user, hostport = u, "127.0.0.1"
    host, _, port = hostport.partition(":")
    try:
        p = int(port) if port else 5060
    except ValueError:
        p = 5060
    return user, host or "127.0.0.1", p


# ------------------------------------------------------------------------------------------------
# callfork
# ------------------------------------------------------------------------------------------------

class ForkSlave(Channel):
    """``fork/N/k``: the peer of one outgoing leg; remembers why its leg failed."""

    driver: "ForkDriver"

    emits_hangup = False

    def __init__(self, driver: "ForkDriver", master: "ForkMaster", target: str) -> None:
        super().__init__(driver, False, target, ident=f"{master.id}/{next(master.slave_ids)}")
        self.master = master
        self.billid = master.caller.billid

    def disconnected(self, reason: Optional[str]) -> None:
        if reason:
            self.master.last_error = reason
        super().disconnected(reason)


class ForkMaster(Channel):
    """``fork/N``: the caller's peer while the targets ring; no chan.hangup."""

    driver: "ForkDriver"

    emits_hangup = False

    def __init__(self, driver: "ForkDriver", caller: Channel, groups: List[List[str]],
                 msg: SimMessage) -> None:
        super().__init__(driver, True, "")
        self.caller = caller
        self.groups = groups
        self.exec_params = [(k, v) for k, v in msg.params
                            if k not in ("callto", "id", "peerid", "targetid", "handlers",
                                         "autoring", "error", "reason")]
        self.slaves: List[Channel] = []
        self.legs: Dict[str, Channel] = {}        # slave id -> outgoing leg
        self.slave_ids = itertools.count(1)
        self.answered_leg: Optional[Channel] = None
        self.last_error = "noanswer"
        self.last_reason: Optional[str] = None
        self.ringing = False

    def start_group(self) -> Any:
        while self.groups:
            group = self.groups.pop(0)
            started = 0
            for target in group:
                ok = yield run_steps(self.call_target(target))
                if ok:
                    started += 1
            if started:
                return True
        return False

    def call_target(self, target: str) -> Any:
        slave = ForkSlave(self.driver, self, target)
        slave.on_death.append(self._slave_died)
        self.slaves.append(slave)
        m = SimMessage("call.execute", self.exec_params, time=self.engine.now_sec())
        m.set("callto", target)
        m.set("id", slave.id)
        m.set("fork.master", self.id)
        m.userdata = slave
        ok = yield self.engine.dispatch(m)
        if ok and slave.peer is not None:
            self.legs[slave.id] = slave.peer
            return True
        self.last_error = m.get("error") or self.last_error
        self.last_reason = m.get("reason") or self.last_reason
        slave.alive = False
        self.driver.remove(slave)
        self.slaves.remove(slave)
        return False

    def _slave_died(self, slave: Channel) -> None:
        if slave in self.slaves:
            self.slaves.remove(slave)
        self.legs.pop(slave.id, None)
        if self.answered_leg is None and self.alive and not self.slaves:
            def next_group(started: Any) -> None:
                if not started and self.alive:
                    self.msg_drop(None, self.last_error)
            run_steps(self.start_group()).then(next_group)

    def leg_answered(self, slave: Channel, leg: Channel) -> None:
        """First answer wins: the caller is connected to it, the other legs are dropped."""
        self.answered_leg = leg
        caller = self.caller
        rep = SimMessage("chan.replaced", time=self.engine.now_sec())
        rep.add("id", self.id)
        rep.add("newid", leg.id)
        rep.add("peerid", caller.id)
        rep.add("id.1", slave.id)
        rep.add("newid.1", caller.id)
        rep.add("peerid.1", leg.id)
        for other in list(self.slaves):
            if other is not slave and other.peer is not None:
                other.peer.msg_drop(None, "cancelled")
        leg.targetid = caller.id
        caller.targetid = leg.id
        slave.disconnect(None, False)
        self.disconnect(None, False)
        caller.connect(leg)
        self.engine.enqueue(rep)
        for s in list(self.slaves):
            s.alive = False
            self.driver.remove(s)
        self.slaves = []
        self.alive = False
        self.driver.remove(self)

    def die(self) -> None:
        """The caller left or the fork failed: every ringing leg is cancelled."""
        if not self.alive:
            return
        slaves, self.slaves = list(self.slaves), []
        for s in slaves:
            leg = s.peer
            s.alive = False
            self.driver.remove(s)
            if leg is not None and leg.alive:
                leg.msg_drop(None, "cancelled")
        super().die()


class ForkDriver(Driver):
    """callfork: ``callto=fork A B | C``; ringing/answer of slaves rewritten at priority 20."""

    def msg_execute(self, msg: SimMessage, dest: str) -> Any:  # pragma: no cover - unused
        return False

    def on_execute(self, msg: SimMessage) -> Any:
        callto = msg.get("callto") or ""
        if not (callto == "fork" or callto.startswith("fork ")):
            return False
        caller = msg.userdata
        if not isinstance(caller, Channel):
            return False
        groups: List[List[str]] = [[]]
        targets = callto[4:].split()
        if not targets:
            n = 1
            while msg.get(f"callto.{n}"):
                targets.append(msg.get(f"callto.{n}") or "")
                n += 1
        for t in targets:
            if t == "|" or t.startswith("|"):
                groups.append([])
            else:
                groups[-1].append(t)
        groups = [g for g in groups if g]
        if not groups:
            return False
        master = ForkMaster(self, caller, groups, msg)
        if not caller.connect(master):
            master.alive = False
            self.remove(master)
            return False
        return run_steps(self._start(master, msg))

    def _start(self, master: ForkMaster, msg: SimMessage) -> Any:
        ok = yield run_steps(master.start_group())
        if not ok:
            master.disconnect(None, False)
            master.alive = False
            self.remove(master)
            msg.set("error", master.last_error)
            if master.last_reason:
                msg.set("reason", master.last_reason)
            return False
        msg.set("peerid", master.id)
        msg.set("targetid", master.id)
        return True

    def _slave_of(self, msg: SimMessage) -> Tuple[Optional[ForkMaster], Optional[Channel]]:
        for key in ("peerid", "targetid"):
            sid = msg.get(key) or ""
            if sid.startswith(self.prefix) and sid.count("/") == 2:
                slave = self.channels.get(sid)
                master = self.channels.get(sid.rsplit("/", 1)[0])
                if isinstance(master, ForkMaster) and slave is not None:
                    return master, slave
        return None, None

    def on_masquerade(self, msg: SimMessage) -> bool:
        return super().on_masquerade(msg)

    def _rewrite(self, msg: SimMessage, master: ForkMaster) -> None:
        msg.set("peerid", master.caller.id)
        msg.set("targetid", master.caller.id)
        msg.set("fork.master", master.id)

    def on_answered_fork(self, msg: SimMessage) -> bool:
        master, slave = self._slave_of(msg)
        if master is None or slave is None or master.answered_leg is not None:
            return False
        leg = slave.peer
        if leg is None:
            return False
        master.leg_answered(slave, leg)
        self._rewrite(msg, master)
        return False

    def on_ringing_fork(self, msg: SimMessage) -> bool:
        master, slave = self._slave_of(msg)
        if master is None:
            return False
        if master.ringing:
            return True
        master.ringing = True
        self._rewrite(msg, master)
        return False

    def on_progress_fork(self, msg: SimMessage) -> bool:
        master, slave = self._slave_of(msg)
        if master is None:
            return False
        self._rewrite(msg, master)
        return False
