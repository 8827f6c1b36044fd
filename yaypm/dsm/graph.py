"""Pictures of DSM diagrams: DOT text of the state graph and SVG through Graphviz.

States are nodes (initial state double-bordered, `current` highlighted for status pages);
transitions are edges labelled with their name and conditions; exception transitions are
dashed and red.
"""
from __future__ import annotations

import shutil
import subprocess

from .model import Script, Transition

__all__ = ["to_dot", "to_svg", "GraphvizMissingError"]


class GraphvizMissingError(RuntimeError):
    """Neither the `dot` binary nor the `graphviz` Python package is available."""


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label(t: Transition) -> str:
    conds = []
    for c in t.conditions:
        text = f"{c.name}({c.arg})" if c.arg else c.name
        conds.append(("not " if c.negated else "") + text)
    if t.exception:
        conds.insert(0, "exception")
    label = t.name
    if conds:
        label += "\n" + "; ".join(conds)
    return label


def to_dot(script: Script, current: str | None = None) -> str:
    """DOT text for `script`; `current` names a state to highlight."""
    lines = [f"digraph {_q(script.name)} {{", "  rankdir=LR;",
             '  node [shape=box, style="rounded"];']
    defined = {s.name for s in script.states}
    for s in script.states:
        attrs = []
        if s.initial:
            attrs.append("peripheries=2")
        if s.name == current:
            attrs.append('style="rounded,filled", fillcolor="gold"')
        lines.append(f"  {_q(s.name)}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    for t in script.transitions:
        if t.target not in defined:
            lines.append(f'  {_q(t.target)} [style="dashed", color="grey"];')
            defined.add(t.target)
        for src in t.sources:
            attrs = [f"label={_q(_label(t))}"]
            if t.exception:
                attrs.append('style="dashed", color="red", fontcolor="red"')
            lines.append(f"  {_q(src)} -> {_q(t.target)} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_svg(script: Script, current: str | None = None) -> str:
    """SVG of the graph, via the `dot` binary or the `graphviz` package."""
    dot_text = to_dot(script, current)
    exe = shutil.which("dot")
    if exe:
        p = subprocess.run([exe, "-Tsvg"], input=dot_text.encode(), capture_output=True,
                           timeout=60, check=True)
        return p.stdout.decode()
    try:
        import graphviz  # type: ignore[import-not-found]
        return graphviz.Source(dot_text).pipe(format="svg").decode()
    except ImportError:
        raise GraphvizMissingError("install Graphviz (apt-get install graphviz) to draw SVG") from None
