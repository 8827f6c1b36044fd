"""mod_monitoring: scripts add attributes to monitoring records (spec §2.9, §3.5)."""
from __future__ import annotations

from typing import Any

from ..values import resolve, split_list
from . import DSMModule, action, register_module


@register_module
class MonitoringModule(DSMModule):
    """`import(mod_monitoring)`: `monitoring.set/log/add/logAdd/inc/dec/logVars/setGlobal/
    addGlobal` on the session's (or any) record of the registry's MonitoringStore."""

    name = "mod_monitoring"

    def _rec(self, s: Any, sid: str | None = None) -> dict | None:
        return s.registry.monitoring.get(sid or s.id)

    @action("monitoring.set", split=",", arity=(2, 2))
    @action("monitoring.log", split=",", arity=(2, 2))
    def set_(self, s: Any, key: str = "", value: str = "") -> None:
        rec = self._rec(s)
        if rec is not None:
            rec[resolve(s, key)] = resolve(s, value)

    @action("monitoring.add", split=",", arity=(2, 2))
    @action("monitoring.logAdd", split=",", arity=(2, 2))
    def add(self, s: Any, key: str = "", value: str = "") -> None:
        rec = self._rec(s)
        if rec is not None:
            k = resolve(s, key)
            cur = rec.get(k)
            if not isinstance(cur, list):
                cur = [] if cur is None else [cur]
            cur.append(resolve(s, value))
            rec[k] = cur

    @action("monitoring.logVars", split="none", arity=(0, 0))
    def log_vars(self, s: Any) -> None:
        rec = self._rec(s)
        if rec is not None:
            rec.update(s.var)

    def _step(self, s: Any, key: str, delta: int) -> None:
        rec = self._rec(s)
        if rec is not None:
            k = resolve(s, key)
            try:
                rec[k] = str(int(rec.get(k, "0") or 0) + delta)
            except (TypeError, ValueError):
                rec[k] = str(delta)

    @action("monitoring.inc", arity=(1, 1))
    def inc(self, s: Any, key: str = "") -> None:
        self._step(s, key, 1)

    @action("monitoring.dec", arity=(1, 1))
    def dec(self, s: Any, key: str = "") -> None:
        self._step(s, key, -1)

    @action("monitoring.setGlobal", split="list", arity=(3, 3))
    def set_global(self, s: Any, sid: str = "", key: str = "", value: str = "") -> None:
        rec = self._rec(s, resolve(s, sid))
        if rec is not None:
            rec[resolve(s, key)] = resolve(s, value)

    @action("monitoring.addGlobal", split="list", arity=(3, 3))
    def add_global(self, s: Any, sid: str = "", key: str = "", value: str = "") -> None:
        rec = self._rec(s, resolve(s, sid))
        if rec is not None:
            k = resolve(s, key)
            cur = rec.get(k)
            cur = cur if isinstance(cur, list) else ([] if cur is None else [cur])
            cur.append(resolve(s, value))
            rec[k] = cur


_ = split_list
