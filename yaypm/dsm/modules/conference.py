"""mod_conference: conference rooms through the backend (`conference.*`, spec §2.9)."""
from __future__ import annotations

from typing import Any

from ..backend import MediaError
from ..runtime import DSMException
from ..values import resolve, var_name
from . import DSMModule, action, register_module


@register_module
class ConferenceModule(DSMModule):
    """`import(mod_conference)`. Membership is tracked here (room → session ids) for
    `conference.size` and `conference.postEvent`; audio mixing is the backend's job."""

    name = "mod_conference"

    def __init__(self, engine: Any = None) -> None:
        super().__init__(engine)
        self.members: dict[str, list[str]] = {}

    def _room_of(self, s: Any) -> str | None:
        if s.mod_state is None:
            return None
        return s.mod_state.get("conference.room")

    def _join(self, s: Any, room: str, mode: str) -> Any:
        try:
            r = s.backend.join_conference(room, mode)
        except MediaError as e:
            raise DSMException("conference", {"text": str(e), **e.params}) from None
        s.module_state("conference.room", lambda: room)
        s.mod_state["conference.room"] = room
        self.members.setdefault(room, [])
        if s.id not in self.members[room]:
            self.members[room].append(s.id)
        return r

    def _leave(self, s: Any) -> bool:
        room = self._room_of(s)
        if room is None:
            return False
        s.backend.leave_conference()
        s.mod_state.pop("conference.room", None)
        ids = self.members.get(room, [])
        if s.id in ids:
            ids.remove(s.id)
        if not ids:
            self.members.pop(room, None)
        return True

    @action("conference.join", split=",", arity=(1, 2))
    def join(self, s: Any, room: str = "", mode: str = "") -> Any:
        """Join `room` (heard after the queued prompts, ⚑D5); failure throws `conference`."""
        return self._join(s, resolve(s, room), resolve(s, mode) if mode else "")

    @action("conference.rejoin", split=",", arity=(1, 2))
    def rejoin(self, s: Any, room: str = "", mode: str = "") -> Any:
        self._leave(s)
        return self._join(s, resolve(s, room), resolve(s, mode) if mode else "")

    @action("conference.leave", split="none", arity=(0, 0))
    def leave(self, s: Any) -> None:
        if self._leave(s):
            s.set_errno("")
        else:
            s.set_errno("script", "conference.leave: not in a conference")

    @action("conference.size", split=",", arity=(2, 2))
    def size(self, s: Any, room: str = "", dst: str = "") -> None:
        r = resolve(s, room)
        n = len(self.members.get(r, ())) or s.backend.conference_size(r)
        s.var[var_name(dst)] = str(n)

    @action("conference.postEvent", split=",", arity=(2, 2))
    def post_event(self, s: Any, room: str = "", event_id: str = "") -> None:
        """Post `event {type=conference_event, id}` to every member of the room."""
        r, i = resolve(s, room), resolve(s, event_id)
        for sid in list(self.members.get(r, ())):
            s.registry.post_event(sid, {"type": "conference_event", "id": i})

    for _n in ("conference.setPlayoutType", "conference.teejoin", "conference.teeleave",
               "conference.setupMixIn", "conference.playMixIn", "conference.playMixInList",
               "conference.flushMixInList"):
        def _mk(n: str) -> Any:
            @action(n, split="list", arity=(0, 3))
            def plumbing(self: Any, s: Any, *args: str) -> None:
                s.backend.media(n, ",".join(resolve(s, a) for a in args))
            plumbing.__name__ = "media_" + n.split(".")[1]
            return plumbing
        locals()["media_" + _n.split(".")[1]] = _mk(_n)
    del _n, _mk

    def session_end(self, s: Any) -> None:
        room = self._room_of(s)
        if room is not None:
            ids = self.members.get(room, [])
            if s.id in ids:
                ids.remove(s.id)
            if not ids:
                self.members.pop(room, None)
