"""Test helpers for DSM: a FakeBackend that records what the runtime asked of the call leg.

Shipped with the package so users can test their own DSM scripts::

    engine = Engine.from_scripts({"app": text}, clock=Clock())
    backend = FakeBackend()
    s = engine.create_session("app", backend)
    s.start(); s.key(5)
    assert ("play", "x.wav", False, False) in backend.calls
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from .backend import DialRequest, MediaError

__all__ = ["FakeBackend"]


class FakeBackend:
    """Records every call as a tuple `(method, *args)` in `calls`.

    - `missing_files`: paths for which play/record raise MediaError("file").
    - `dialled`: (DialRequest, child FakeBackend) for each `dial`.
    - `defer`: method names that return an unfired Deferred (kept in `pending[name]`), to test
      suspended sessions.
    """

    def __init__(self, missing_files: set[str] | None = None, defer: set[str] | None = None) -> None:
        self.calls: list[tuple] = []
        self.session: Any = None
        self.missing_files = set(missing_files or ())
        self.defer = set(defer or ())
        self.pending: dict[str, list[Deferred]] = {}
        self.dialled: list[tuple[DialRequest, FakeBackend]] = []
        self.room: str | None = None
        self.recording: str | None = None
        self.answered = False
        self.released = False
        self.hung_up = False
        self.rooms: dict[str, int] = {}

    def _rec(self, *call: Any) -> Deferred | None:
        self.calls.append(call)
        if call[0] in self.defer:
            d: Deferred = Deferred()
            self.pending.setdefault(call[0], []).append(d)
            return d
        return None

    def names(self) -> list[str]:
        """Method names called, in order."""
        return [c[0] for c in self.calls]

    def attach(self, session: Any) -> None:
        self.session = session

    def answer(self) -> Deferred | None:
        self.answered = True
        return self._rec("answer")

    def progress(self) -> Deferred | None:
        return self._rec("progress")

    def reject(self, code: int, reason: str, headers: str = "") -> Deferred | None:
        return self._rec("reject", code, reason)

    def hangup(self, headers: str = "") -> Deferred | None:
        self.hung_up = True
        return self._rec("hangup")

    def release(self) -> None:
        self.released = True
        self._rec("release")

    def play(self, file: str, loop: bool = False, front: bool = False) -> Deferred | None:
        if file in self.missing_files:
            raise MediaError("file", f"cannot open {file}", path=file)
        return self._rec("play", file, loop, front)

    def play_silence(self, ms: int, front: bool = False) -> None:
        self._rec("play_silence", ms, front)

    def play_ringtone(self, length_ms: int, on_ms: int, off_ms: int, f: int, f2: int,
                      front: bool = False) -> None:
        self._rec("play_ringtone", length_ms, on_ms, off_ms, f, f2, front)

    def add_separator(self, sep_id: str, front: bool = False) -> None:
        self._rec("add_separator", sep_id, front)

    def flush_playlist(self) -> None:
        self._rec("flush_playlist")

    def record(self, file: str, max_seconds: float | None = None) -> Deferred | None:
        if file in self.missing_files:
            raise MediaError("file", f"cannot open {file}", path=file)
        self.recording = file
        return self._rec("record", file)

    def stop_record(self) -> bool:
        self._rec("stop_record")
        was = self.recording is not None
        self.recording = None
        return was

    def record_length(self) -> int:
        return 1500

    def record_data_size(self) -> int:
        return 24000

    def media(self, op: str, arg: str = "") -> None:
        self._rec("media", op, arg)

    def send_dtmf(self, key: int, duration_ms: int = 500) -> None:
        self._rec("send_dtmf", key, duration_ms)

    def join_conference(self, room: str, mode: str = "") -> Deferred | None:
        self.room = room
        self.rooms[room] = self.rooms.get(room, 0) + 1
        return self._rec("join_conference", room, mode)

    def leave_conference(self) -> bool:
        self._rec("leave_conference")
        was = self.room is not None
        self.room = None
        return was

    def conference_size(self, room: str) -> int:
        return self.rooms.get(room, 0)

    def dial(self, request: DialRequest) -> "FakeBackend":
        self._rec("dial", request.ltag, request.target_uri)
        child = FakeBackend(self.missing_files)
        self.dialled.append((request, child))
        return child

    def b2b_connect(self, remote_party: str, remote_uri: str, relayed: bool = False) -> Deferred | None:
        return self._rec("b2b_connect", remote_party, remote_uri, relayed)

    def b2b_terminate_other(self) -> None:
        self._rec("b2b_terminate_other")
