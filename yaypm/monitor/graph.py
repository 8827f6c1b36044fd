"""A call's DSM path as a graph: from the ``dsm_stategraph`` monitoring attribute to DOT and SVG.

``dsm_stategraph`` (dsm-language.md §3.5) lists ``"<diagram>/<state>"`` at start, jump, return
and every state change, each change preceded by ``"> <transition name> >"``.  `StatePath` turns
it into the states visited, the transitions taken (with how often and at which steps) and the
current state.  `svg` draws it without any external program (a column of states in visiting
order, back and skipping edges as arcs); `dot_source` gives the same graph to Graphviz, which
`render_dot` runs when ``dot`` is installed.  A DSM engine that knows the whole diagram draws it
itself (`ControlTarget.graph_svg`); this is the fallback that needs only the monitoring record.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from html import escape as _xml
from typing import Any, Dict, List, Mapping, Optional, Tuple

__all__ = ["StatePath", "Edge", "svg", "dot_source", "render_dot", "have_dot"]


@dataclass
class Edge:
    """A transition taken at least once: ``label`` is its name ("" for a jump or re-init)."""

    source: str
    target: str
    label: str
    steps: List[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.steps)


@dataclass
class StatePath:
    """States in first-visit order, edges taken, and the current state (a state key)."""

    states: List[str]
    edges: List[Edge]
    current: Optional[str]
    diagram: str = ""

    @classmethod
    def from_record(cls, attrs: Mapping[str, Any]) -> "StatePath":
        """Read ``dsm_stategraph`` (if any), ``dsm_diag`` and ``dsm_state`` of a record."""
        diag = str(attrs.get("dsm_diag") or "")
        entries = attrs.get("dsm_stategraph")
        path: List[Tuple[str, str]] = []          # (state key, label of the edge into it)
        label: Optional[str] = None
        if isinstance(entries, (list, tuple)):
            for e in entries:
                if not isinstance(e, str) or not e:
                    continue                      # the 2010 leading 0 (⚑D10), junk
                if e.startswith("> ") and e.endswith(" >") and len(e) >= 4:
                    label = e[2:-2]
                else:
                    path.append((e, label or ""))
                    label = None
        state = str(attrs.get("dsm_state") or "")
        if state:
            key = f"{diag}/{state}" if diag and "/" not in state else state
            if not path or path[-1][0] != key:
                path.append((key, ""))            # no graph recorded: at least the state now
        states: List[str] = []
        edges: Dict[Tuple[str, str, str], Edge] = {}
        prev: Optional[str] = None
        for step, (key, into) in enumerate(path):
            if key not in states:
                states.append(key)
            if prev is not None:
                edge = edges.setdefault((prev, key, into), Edge(prev, key, into))
                edge.steps.append(step)
            prev = key
        return cls(states, list(edges.values()), prev, diag)

    def short(self, key: str) -> str:
        """A state's label: without the diagram prefix when it is the call's own diagram."""
        d, _, s = key.rpartition("/")
        return s if d == self.diagram or not d else key


_STYLE = """
.state rect{fill:#eef3fb;stroke:#5b7db1;stroke-width:1.2}
.state text,.edge text{font:12px sans-serif;fill:#1c2733}
.state.current rect{fill:#ffcf66;stroke:#c47f00;stroke-width:3}
.edge path{fill:none;stroke:#3d6fb4;stroke-width:1.6}
.edge.jump path{stroke-dasharray:5 3;stroke:#888}
"""


def svg(path: StatePath) -> str:
    """An SVG drawing of ``path``: states top to bottom in visiting order (current one
    highlighted, class ``current``), each transition taken an arrow (class ``edge visited``)
    labelled with its name and ``×n`` when taken more than once."""
    row, top, box_h = 64, 24, 30
    box_w = max([80] + [8 * len(path.short(s)) + 24 for s in path.states])
    index = {s: i for i, s in enumerate(path.states)}
    y = [top + i * row for i in range(len(path.states))]
    texts = [e.label + (f" \u00d7{e.count}" if e.count > 1 else "") for e in path.edges]
    # Edges skipping rows forward go on the left, back edges on the right; nest them outwards.
    left_off: Dict[int, int] = {}
    right_off: Dict[int, int] = {}
    for k, e in enumerate(path.edges):
        i, j = index[e.source], index[e.target]
        if j > i + 1:
            left_off[k] = 30 + 14 * len(left_off)
        elif j < i:
            right_off[k] = 60 + 18 * len(right_off)
    margin = max([20] + [off + 7 * len(texts[k]) + 12 for k, off in left_off.items()])
    cx = margin + box_w // 2
    left, right = cx - box_w // 2, cx + box_w // 2
    mid = box_h // 2
    parts: List[str] = []
    extent = right + 40
    for k, e in enumerate(path.edges):
        i, j = index[e.source], index[e.target]
        text = texts[k]
        cls = "edge visited" + ("" if e.label else " jump")
        title = f"{e.label or '(jump)'}: steps {', '.join(map(str, e.steps))}"
        anchor = "start"
        if i == j:                                 # self transition: loop on the right
            y0 = y[i] + 8
            d = (f"M{right},{y0} C{right + 40},{y0 - 22} {right + 40},{y0 + 36} "
                 f"{right},{y0 + 14}")
            lx, ly = right + 44, y0 + 10
        elif j == i + 1:                           # next row: straight down
            d = f"M{cx},{y[i] + box_h} L{cx},{y[j]}"
            lx, ly = cx + 8, (y[i] + box_h + y[j]) // 2 + 4
        elif k in left_off:                        # skipping rows: arc on the left
            off = left_off[k]
            d = (f"M{left},{y[i] + mid} C{left - off},{y[i] + mid} "
                 f"{left - off},{y[j] + mid} {left},{y[j] + mid}")
            lx, ly, anchor = left - off * 3 // 4 - 4, (y[i] + y[j]) // 2 + mid, "end"
        else:                                      # back: arc on the right
            off = right_off[k]
            d = (f"M{right},{y[i] + mid} C{right + off},{y[i] + mid} "
                 f"{right + off},{y[j] + mid} {right},{y[j] + mid}")
            lx, ly = right + off * 3 // 4 + 4, (y[i] + y[j]) // 2 + mid
        if anchor == "start":
            extent = max(extent, lx + 7 * len(text) + 10)
        parts.append(f'<g class="{cls}"><title>{_xml(title)}</title>'
                     f'<path d="{d}" marker-end="url(#arrow)"/>'
                     f'<text x="{lx}" y="{ly}" text-anchor="{anchor}">{_xml(text)}</text></g>')
    for s, top_y in zip(path.states, y):
        cls = "state current" if s == path.current else "state"
        parts.append(f'<g class="{cls}" data-state="{_xml(s)}"><title>{_xml(s)}</title>'
                     f'<rect x="{cx - box_w // 2}" y="{top_y}" width="{box_w}" height="{box_h}"'
                     f' rx="8"/><text x="{cx}" y="{top_y + 19}" text-anchor="middle">'
                     f'{_xml(path.short(s))}</text></g>')
    width = extent
    height = top + max(len(path.states), 1) * row
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="dsm-graph" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}">'
            f'<style>{_STYLE}</style><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" '
            f'refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="#3d6fb4"/></marker></defs>'
            + "".join(parts) + "</svg>")


def _dot_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot_source(path: StatePath) -> str:
    """Graphviz DOT for ``path``, with the same classes as `svg` (Graphviz copies ``class``
    into its SVG output)."""
    lines = [f"digraph {_dot_str(path.diagram or 'dsm')} {{",
             '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", '
             'color="#5b7db1", fontname="sans-serif", fontsize=11];',
             '  edge [color="#3d6fb4", fontname="sans-serif", fontsize=10];']
    for i, s in enumerate(path.states):
        extra = (', fillcolor="#ffcf66", color="#c47f00", penwidth=3, class="state current"'
                 if s == path.current else ', class="state"')
        lines.append(f"  n{i} [label={_dot_str(path.short(s))}, tooltip={_dot_str(s)}{extra}];")
    index = {s: i for i, s in enumerate(path.states)}
    for e in path.edges:
        text = e.label + (f" \u00d7{e.count}" if e.count > 1 else "")
        style = "" if e.label else ', style=dashed, color="#888888"'
        lines.append(f"  n{index[e.source]} -> n{index[e.target]} [label={_dot_str(text)}, "
                     f'class="edge visited"{style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def have_dot() -> bool:
    return shutil.which("dot") is not None


def render_dot(source: str, timeout: float = 10.0) -> str:
    """Run Graphviz ``dot -Tsvg`` (blocking: call it in a thread); returns the ``<svg>``
    element without the XML prolog.  Raises OSError / subprocess errors on failure."""
    out = subprocess.run(["dot", "-Tsvg"], input=source.encode("utf-8"), capture_output=True,
                         timeout=timeout, check=True).stdout.decode("utf-8", "replace")
    start = out.find("<svg")
    if start < 0:
        raise ValueError("dot produced no <svg> element")
    return out[start:]

