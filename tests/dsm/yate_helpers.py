"""Helpers for the DSM-on-Yate tests: an engine + runner on the simulator, and the leak check."""
from __future__ import annotations

import os
from typing import Any

from yaypm.dsm import Engine
from yaypm.dsm.yate import DSMRunner
from yaypm.examples import example_path
from yaypm.ivr import switchboard
from yaypm.prompts import prompt
from yaypm.registry import CallRegistry

PROMPTS = os.path.dirname(prompt("menu"))

#: The small IVR of the tests and docs (shipped as yaypm/examples/ivr.dsm): answer, play the
#: menu, collect a PIN into $pin until '#', check it, say "one" (right) or "invalid" (wrong, try
#: again), hang up after it.
with open(example_path("ivr.dsm"), encoding="utf-8") as _f:
    IVR = _f.read()


def wave(name: str) -> str:
    """What the simulator reports as heard for a shipped prompt."""
    return "wave/play/" + os.path.join(PROMPTS, name)


class Harness:
    """An Engine (scripts or a conf file), a CallRegistry and a DSMRunner on `sim`."""

    def __init__(self, sim: Any, scripts: dict[str, str] | None = None, *,
                 config: dict[str, str] | None = None, conf_path: str | None = None,
                 routes: dict[str, str] | None = None, ivr_records: bool = False,
                 **runner_kw: Any) -> None:
        """`ivr_records`: the switchboard records its legs in the same registry (as under
        `yaypm run --monitor`)."""
        self.sim = sim
        if conf_path is not None:
            self.engine = Engine(conf_path, clock=sim.clock)
            self.engine.load()
        else:
            cfg = {"prompts": PROMPTS, "pin": "42"}
            cfg.update(config or {})
            for app, numbers in (routes or {}).items():
                cfg["route." + app] = numbers
            self.engine = Engine.from_scripts(scripts or {}, clock=sim.clock, config=cfg,
                                              conf={"monitoring_full_stategraph": "yes"})
        self.registry = CallRegistry(sim.clock)
        self.runner = DSMRunner(self.engine, registry=self.registry, **runner_kw)

        def start(dispatcher: Any) -> None:
            if ivr_records:
                dispatcher.call_registry = self.registry
            self.runner.attach(dispatcher)
        self.dispatcher = sim.connect(start)
        self.ended_sessions: list[Any] = []
        real_end = self.engine.registry.remove

        def remove(session: Any) -> None:
            self.ended_sessions.append(session)
            real_end(session)
        self.engine.registry.remove = remove  # type: ignore[method-assign]

    def record(self, index: int = 0) -> dict[str, Any]:
        """Attributes of the index-th call registered (active or finished)."""
        recs = list(self.registry.active.values()) + list(self.registry.finished.values())
        recs.sort(key=lambda r: (r.started, int(r.id.rsplit("-", 1)[-1])))
        return recs[index].attrs

    def graph(self, index: int = 0) -> list[str]:
        return [e.split("/", 1)[1] for e in self.record(index)["dsm_stategraph"]]

    def session(self, index: int = 0) -> Any:
        return sorted(self.engine.registry.sessions.values(),
                      key=lambda s: int(s.id.rsplit("-", 1)[-1]))[index]

    def session_var_after_end(self, name: str, index: int = 0) -> str:
        """A variable of an ended session (kept by the test through `keep_sessions`)."""
        return self.ended_sessions[index].var.get(name, "")

    def clean(self) -> None:
        assert_clean(self)


def assert_clean(h: Harness) -> None:
    """Nothing left behind: sessions, backends, registry entries, legs, waits, timers."""
    board = switchboard(h.dispatcher)
    assert h.engine.registry.sessions == {}, h.engine.registry.sessions
    assert h.runner.backends == set() and h.runner._rooms == {}
    assert h.registry.active == {}, h.registry.active
    assert len(board) == 0, board.live
    assert board.legs == {} and board._tags == {} and board._retired == {}
    assert board.pending_count() == 0
    assert h.dispatcher.pending_count() == 0, h.dispatcher.pending_count()
    assert h.sim.clock.getDelayedCalls() == [], h.sim.clock.getDelayedCalls()
    assert h.sim.leaks() == {}, h.sim.leaks()
