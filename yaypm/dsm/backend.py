"""The call interface the DSM runtime drives: `DSMCallBackend`.

The runtime never talks to Yate; each Session holds one backend for its call leg. An adapter
maps these methods onto the IVR leg (`yaypm.ivr`); `yaypm.dsm.testing.FakeBackend` records
calls for tests. Methods return None or a Deferred; a Deferred blocks the session's queue
until it fires (⚑D11) and an errback becomes a logged Python error that ends the session, so
failures that scripts must see are reported through the documented exceptions or events.

Events the backend must feed back into its session (`attach` hands it the Session; call these
Session methods, never from inside a backend method call):

========================  ====================================================================
`session.invite()`        inbound leg: the call was routed to us (before any answer)
`session.session_start()` inbound: our answer completed; outbound: the callee answered
`session.early_session()` outbound: early media (183 with SDP)
`session.ringing(code, reason, has_body)`   outbound: 180/183 without media
`session.failed(code, reason)`              outbound: rejected/unreachable (session ends)
`session.key(key, duration_ms)`             one DTMF digit (`*`=10, `#`=11, A-D=12-15)
`session.hangup(headers, reason)`           the peer hung up / cancelled (the leg is gone)
`session.no_audio(cleared=False)`           the playlist ran empty (not after flush_playlist)
`session.separator(id)`                     the playlist reached an `add_separator` marker
`session.post_event(kind, params)`          anything else (`B2B.otherReply`, `sipRequest`…)
`session.leg_closed()`                      the leg ended through our own reply/BYE/cancel
========================  ====================================================================

Optional: a backend method `session_ended(session)` is called once when its session has
ended (after `release`), so an adapter can drop its per-call state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from twisted.internet.defer import Deferred

__all__ = ["DSMCallBackend", "DialRequest", "MediaError"]


class MediaError(Exception):
    """A media operation failed in a way the script should see as a DSM exception.

    `kind` is the DSM exception type (`file`, `conference`, `core`…) and `params` its
    parameters (e.g. `{"path": f}`); raise it synchronously from the backend method.
    """

    def __init__(self, kind: str, message: str = "", **params: str) -> None:
        self.kind = kind
        self.params = params
        super().__init__(message or kind)


@dataclass(frozen=True)
class DialRequest:
    """An outbound leg for `dlg.dialout` (spec §2.9): who calls whom, and which session runs it.

    `ltag` is the new session's id, chosen by yaypm before any message is sent (⚑D2/⚑D12).
    """

    ltag: str
    caller: str
    callee: str
    domain: str
    app: str
    r_uri: str = ""
    from_: str = ""
    from_uri: str = ""
    to: str = ""
    auth_user: str = ""
    auth_pwd: str = ""
    headers: str = ""
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def target_uri(self) -> str:
        return self.r_uri or f"sip:{self.callee}@{self.domain}"


@runtime_checkable
class DSMCallBackend(Protocol):
    """One call leg as seen by a DSM session. File paths are local paths as the script wrote
    them; durations in seconds unless the name says otherwise."""

    def attach(self, session: Any) -> None:
        """Called once by the Session constructor: where to feed events (see module doc)."""

    # -- call control (initial INVITE, dialog) ----------------------------------------------
    def answer(self) -> Deferred | None:
        """Answer the call (200 OK; `dlg.acceptInvite()`, auto-answer). Feed `session_start`
        once the call is up."""

    def progress(self) -> Deferred | None:
        """Early media (183; `dlg.acceptInvite(183, …)`): the playlist is heard before answer."""

    def reject(self, code: int, reason: str, headers: str = "") -> Deferred | None:
        """Refuse the initial INVITE with a final reply ≥ 300 (`dlg.reply`); 487 after a CANCEL
        means nothing is left to send."""

    def hangup(self, headers: str = "") -> Deferred | None:
        """Hang up an established call (BYE) or cancel an unanswered outbound leg (CANCEL):
        `stop(true)`, `dlg.bye()`. Do not feed `hangup` back for our own hang-up."""

    def release(self) -> None:
        """The session ended without `stop(true)` (⚑D4): drop our side quietly (the dumb
        channel) if still there; no events afterwards."""

    # -- playlist ---------------------------------------------------------------------------
    def play(self, file: str, loop: bool = False, front: bool = False) -> Deferred | None:
        """Queue a file at the end (or front) of the playlist; `loop` replays it forever.
        Raise MediaError("file", path=file) synchronously if it cannot be opened."""

    def play_silence(self, ms: int, front: bool = False) -> None:
        """Queue `ms` milliseconds of silence."""

    def play_ringtone(self, length_ms: int, on_ms: int, off_ms: int, f: int, f2: int,
                      front: bool = False) -> None:
        """Queue a ring tone (length 0 = endless)."""

    def add_separator(self, sep_id: str, front: bool = False) -> None:
        """Queue a marker; feed `separator(id)` when playback reaches it."""

    def flush_playlist(self) -> None:
        """Drop queued items and stop playback; must **not** feed `no_audio`."""

    def record(self, file: str, max_seconds: float | None = None) -> Deferred | None:
        """Start recording the caller to `file` (replacing a running recording).
        Raise MediaError("file", path=file) if it cannot be opened."""

    def stop_record(self) -> bool:
        """Stop the recording; False if none was running."""

    def record_length(self) -> int:
        """Length of the current/last recording in ms."""

    def record_data_size(self) -> int:
        """Size of the current/last recording in bytes."""

    def media(self, op: str, arg: str = "") -> None:
        """Media plumbing without a Yate equivalent (connectMedia, mute, setInOutPlaylist,
        enableReceiving, monitorRTPTimeout, …): `op` is the DSM action name. May be a no-op."""

    def send_dtmf(self, key: int, duration_ms: int = 500) -> None:
        """Send one DTMF digit (0-15)."""

    # -- conference ---------------------------------------------------------------------------
    def join_conference(self, room: str, mode: str = "") -> Deferred | None:
        """Join room `room` (mode "", "speakonly", "listenonly") after the queued prompts
        (⚑D5). Raise MediaError("conference") on failure."""

    def leave_conference(self) -> bool:
        """Leave the room; False if not in one."""

    def conference_size(self, room: str) -> int:
        """Number of participants in `room`."""

    # -- new legs -----------------------------------------------------------------------------
    def dial(self, request: DialRequest) -> "DSMCallBackend":
        """Start an outbound leg (`dlg.dialout`) and return its backend at once; the new leg
        reports `ringing`/`early_session`/`session_start`/`failed` to the session attached to
        it later (⚑D12). Raise MediaError("dlg") if it cannot even be attempted."""

    def b2b_connect(self, remote_party: str, remote_uri: str, relayed: bool = False) -> Deferred | None:
        """B2B.connectCallee: call `remote_uri` and bridge it to this leg; feed
        `B2B.otherReply` / `B2B.otherBye` events."""

    def b2b_terminate_other(self) -> None:
        """B2B.terminateOtherLeg."""
