"""mod_dlg: replies to the initial INVITE, BYE, and new outbound legs (`dlg.*`, spec §2.9)."""
from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from ..backend import DialRequest, MediaError
from ..values import resolve
from . import DSMModule, action, condition, register_module

log = Logger(namespace="yaypm.dsm.modules.dlg")


@register_module
class DlgModule(DSMModule):
    """`import(mod_dlg)`. Replies map onto the backend: 183 → `progress`, 2xx → `answer`,
    ≥ 300 → `reject`. SIP-level actions without a Yate equivalent parse and set
    `$errno=script` at run time."""

    name = "mod_dlg"

    def _code(self, s: Any, code: str) -> int | None:
        c = resolve(s, code)
        return int(c) if c.isdigit() and 100 <= int(c) <= 699 else None

    def _send(self, s: Any, code: int, reason: str) -> Any:
        b = s.backend
        s.reply_sent = True
        if code >= 300:
            return b.reject(code, reason, s.var.get("dlg.reply.hdrs", "").replace("\\r\\n", "\r\n"))
        if code >= 200:
            return b.answer()
        if code == 183:
            return b.progress()
        b.media("reply", f"{code} {reason}")
        return None

    @action("dlg.reply", split=",", arity=(2, 2))
    def reply(self, s: Any, code: str = "", reason: str = "") -> Any:
        c = self._code(s, code)
        if c is None:
            s.set_errno("arg", f"dlg.reply: bad code {code!r}")
            return None
        try:
            r = self._send(s, c, resolve(s, reason))
        except MediaError as e:
            s.set_errno("general", str(e))
            return None
        s.set_errno("")
        return r

    @action("dlg.acceptInvite", split=",", arity=(0, 2))
    def accept_invite(self, s: Any, code: str = "", reason: str = "") -> Any:
        c = self._code(s, code) if code else 200
        if c is None or c >= 300:
            s.set_errno("arg", f"dlg.acceptInvite: bad code {code!r}")
            return None
        try:
            r = self._send(s, c, resolve(s, reason) if reason else "OK")
        except MediaError as e:
            s.set_errno("dlg", str(e))
            s.backend.reject(500, "Server Internal Error")
            return None
        s.set_errno("")
        return r

    @action("dlg.bye", arity=(0, 1))
    def bye(self, s: Any, hdrs: str = "") -> Any:
        """Hang up the call; the session continues (use stop() to end it)."""
        return s.backend.hangup(resolve(s, hdrs) if hdrs else "")

    @action("dlg.dialout", arity=(1, 1))
    def dialout(self, s: Any, prefix: str = "") -> None:
        """New outbound leg from `$x_caller`, `$x_callee`, `$x_domain`, running app `$x_app`;
        its id is in `$x_ltag` when this returns (⚑D12); set-up failures arrive later as
        the new leg's `failed` event."""
        x = resolve(s, prefix) if prefix.startswith(("$", "#", "@")) else prefix
        v = s.var
        caller, callee, domain, app = (v.get(f"{x}_{k}", "") for k in
                                       ("caller", "callee", "domain", "app"))
        if not (caller and callee and domain and app):
            s.set_errno("arg", f"dlg.dialout: ${x}_caller, _callee, _domain and _app are "
                               "mandatory")
            return
        engine = s.app.engine
        if engine is None:
            s.set_errno("general", "dlg.dialout: no engine")
            return
        ltag = v.get(f"{x}_ltag", "") or s.registry.new_id()
        if s.registry.find(ltag) is not None:
            v[f"{x}_ltag"] = ""
            s.set_errno("general", f"dlg.dialout: session id {ltag} is already in use")
            return
        pref = f"{x}_var."
        variables = {k[len(pref):]: val for k, val in v.items() if k.startswith(pref)}
        req = DialRequest(
            ltag=ltag, caller=caller, callee=callee, domain=domain, app=app,
            r_uri=v.get(f"{x}_r_uri", ""), from_=v.get(f"{x}_from", ""),
            from_uri=v.get(f"{x}_from_uri", ""), to=v.get(f"{x}_to", ""),
            auth_user=v.get(f"{x}_auth_user", ""), auth_pwd=v.get(f"{x}_auth_pwd", ""),
            headers=v.get(f"{x}_hdrs", "").replace("\\r\\n", "\r\n"), variables=variables)
        try:
            engine.dialout(s, req)
        except (MediaError, KeyError, ValueError) as e:
            v[f"{x}_ltag"] = ""
            s.set_errno("general", f"dlg.dialout failed: {e}")
            return
        v[f"{x}_ltag"] = ltag
        s.set_errno("")

    def _unsupported(self, s: Any, *args: str) -> None:
        log.warn("SIP-level dlg action not supported on Yate (session {session})", session=s.id)
        s.set_errno("script", "not supported on Yate")

    for _n in ("dlg.connectCalleeRelayed", "dlg.replyRequest", "dlg.getRequestBody",
               "dlg.getReplyBody", "dlg.addReplyBodyPart", "dlg.deleteReplyBodyPart",
               "dlg.refer", "dlg.info", "dlg.relayReply", "dlg.relayError", "dlg.getOtherId",
               "dlg.getRtpRelayMode"):
        _unsupported = action(_n, split="list", arity=(0, 9))(_unsupported)
    del _n

    @condition("dlg.replyHasContentType", split="1", arity=(1, 1))
    @condition("dlg.requestHasContentType", split="1", arity=(1, 1))
    def has_content_type(self, s: Any, ct: str = "") -> bool:
        body = s.params.get("content_type", "") if s.params else ""
        return body.lower() == resolve(s, ct).lower()
