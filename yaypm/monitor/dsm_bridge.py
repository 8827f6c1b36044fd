"""Plugging `yaypm.dsm` into monitoring: its records in the `CallRegistry`, its engine as the
XML-RPC `ControlTarget`.

    engine = Engine("dsm.conf", monitoring=RegistryMonitoringStore(registry))
    monitor = Monitor(registry, EngineControl(engine))

`RegistryMonitoringStore` has the interface of ``yaypm.dsm.runtime.MonitoringStore``
(``create``/``get``/``mark_finished``/``clear_finished``, ``full_stategraph``,
``full_transitions``) but keeps each session's record as the attribute dict of a registry
entry, so the runtime's in-place updates (``dsm_state``, ``dsm_stategraph``, mod_monitoring)
are what XML-RPC, the status page and metrics read, at no extra cost per update.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional, Set

from twisted.internet import threads
from twisted.logger import Logger

from yaypm.monitor.control import ControlError
from yaypm.monitor.graph import StatePath, have_dot, render_dot
from yaypm.registry import CallRegistry

__all__ = ["RegistryMonitoringStore", "EngineControl", "attach_engine", "mark_path"]

_SVG = "{http://www.w3.org/2000/svg}"
_SHAPES = (_SVG + "polygon", _SVG + "path", _SVG + "ellipse")
ET.register_namespace("", "http://www.w3.org/2000/svg")
ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")


class RegistryMonitoringStore:
    """DSM monitoring records kept in a `CallRegistry` (ids = DSM session ids).

    A session whose id is already registered (the IVR layer recorded the call leg under the
    same id: `yaypm.dsm.yate.DSMRunner` names a leg's session after its record) gets its DSM
    attributes merged into that entry, whose end stays the IVR layer's business (with the
    leg's end reason as outcome), so each leg is counted once; entries this store created
    end (``normal``) when the session does.
    """

    def __init__(self, registry: CallRegistry, full_stategraph: bool = False,
                 full_transitions: bool = False) -> None:
        self.registry = registry
        self.full_stategraph = full_stategraph
        self.full_transitions = full_transitions
        self._owned: Set[str] = set()

    @property
    def active(self) -> Dict[str, Dict[str, Any]]:
        return {i: r.attrs for i, r in self.registry.active.items()}

    @property
    def finished(self) -> Dict[str, Dict[str, Any]]:
        return {i: r.attrs for i, r in self.registry.finished.items()}

    def create(self, sid: str, attrs: Dict[str, Any]) -> Dict[str, Any]:
        rec = self.registry.get(sid)
        if rec is None:
            self.registry.start(sid, **attrs)
            self._owned.add(sid)
            return self.registry.active[sid].attrs
        # The leg's record; already finished when a dial-out failed before its session existed.
        self.registry.set(sid, **attrs)
        return rec.attrs

    def get(self, sid: str) -> Optional[Dict[str, Any]]:
        rec = self.registry.get(sid)
        return None if rec is None else rec.attrs

    def mark_finished(self, sid: str) -> None:
        if sid in self._owned:
            self._owned.discard(sid)
            self.registry.end(sid, "normal")

    def clear_finished(self) -> None:
        self.registry.finished.clear()


def attach_engine(engine: Any, registry: CallRegistry) -> RegistryMonitoringStore:
    """Make an existing ``yaypm.dsm.Engine`` keep its monitoring records in ``registry``
    (before its first session; keeps the engine's ``monitoring_full_*`` settings). New code
    passes ``Engine(..., monitoring=RegistryMonitoringStore(registry))`` instead."""
    store = engine.monitoring
    if isinstance(store, RegistryMonitoringStore) and store.registry is registry:
        return store
    new = RegistryMonitoringStore(registry, store.full_stategraph, store.full_transitions)
    engine.monitoring = new
    return new


def _add_class(el: ET.Element, cls: str) -> None:
    el.set("class", (el.get("class", "") + " " + cls).strip())


def mark_path(svg_text: str, path: StatePath) -> str:
    """Mark, in a Graphviz SVG of a whole diagram, the states and transitions of ``path``
    (classes ``visited`` / ``current``, drawn thicker and blue)."""
    root = ET.fromstring(svg_text)
    diag = path.diagram
    states = set(path.states)
    taken = {(e.source, e.target, e.label) for e in path.edges}
    for g in root.iter(_SVG + "g"):
        kind = g.get("class", "")
        title_el = g.find(_SVG + "title")
        if title_el is None or not title_el.text:
            continue
        title = title_el.text
        if kind == "node":
            key = f"{diag}/{title}"
            shapes = [e for e in g.iter() if e.tag in _SHAPES]   # also inside <a> wrappers
            if key in states:
                _add_class(g, "visited")
                for shape in shapes:
                    shape.set("stroke", "#3d6fb4")
                    shape.set("stroke-width", "2")
            if key == path.current:
                _add_class(g, "current")
                for shape in shapes:
                    shape.set("fill", "#ffcf66")
                    shape.set("stroke", "#c47f00")
                    shape.set("stroke-width", "3")
        elif kind == "edge" and "->" in title:
            src, _, dst = title.partition("->")
            texts = [t.text or "" for t in g.iter(_SVG + "text")]
            label = texts[0] if texts else ""
            if (f"{diag}/{src}", f"{diag}/{dst}", label) in taken:
                _add_class(g, "visited")
                for shape in g.iter():
                    if shape.tag == _SVG + "path":
                        shape.set("stroke", "#3d6fb4")
                        shape.set("stroke-width", "2.5")
                    elif shape.tag == _SVG + "polygon":
                        shape.set("stroke", "#3d6fb4")
                        shape.set("fill", "#3d6fb4")
    return ET.tostring(root, encoding="unicode")


class EngineControl:
    """`ControlTarget` over a ``yaypm.dsm.Engine`` (its ``load_config``/``reload`` return
    SEMS status pairs; sessions live in ``engine.registry``)."""

    log = Logger()

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def load_config(self, conf_file: str, app_name: str) -> str:
        code, reason = self.engine.load_config(conf_file, app_name)
        if code != 200:
            raise ControlError(code, reason)
        return reason

    def reload(self) -> str:
        ok, reason = self.engine.reload()
        if not ok:
            raise ControlError(500, reason)
        return reason

    def post_event(self, call_id: str, params: Dict[str, str]) -> bool:
        return bool(self.engine.registry.post_event(call_id, params))

    def graph_svg(self, call_id: str) -> Any:
        """The whole diagram through ``yaypm.dsm.graph`` (Graphviz, in a thread), with the
        session's visited path marked; None (monitor draws the record) without Graphviz or
        for an unknown or ended session."""
        session = self.engine.registry.sessions.get(call_id)
        if session is None or not have_dot():
            return None
        from yaypm.dsm.graph import to_dot
        current = session.state.name if session.state is not None else None
        record = self.engine.monitoring.get(call_id) or {}
        path = StatePath.from_record(record)
        path.diagram = session.diagram.name
        if current is not None:
            path.current = f"{session.diagram.name}/{current}"
        d = threads.deferToThread(render_dot, to_dot(session.diagram.script, current))
        d.addCallback(mark_path, path)
        return d

    def list_dsms(self, app: Optional[str] = None) -> List[str]:
        bundles = self.engine.app_set.bundles
        if app is not None:
            b = bundles.get(app)
            return sorted(b.diagrams) if b is not None else []
        return sorted({d for b in bundles.values() for d in b.diagrams})

    def has_dsm(self, name: str, app: Optional[str] = None) -> bool:
        return name in self.list_dsms(app)

    def create_system_dsm(self, bundle: str, diagram: str) -> str:
        try:
            self.engine.create_system_session(bundle, diagram)
        except KeyError as e:
            raise ControlError(500, str(e.args[0] if e.args else e)) from None
        return "OK"
