"""The DSM checker: every problem of a script at once, with positions (spec §1.5).

Errors: unknown actions/conditions/modules (naming the missing import), wrong arity, bad
arguments (e.g. `test(a = b)`), transitions from states not defined above them, duplicate
states, a second `initial`, no initial state. Warnings (errors under `strict`): transitions
to states never defined, states without a `hangup` transition, 2P arguments missing a part.
"""
from __future__ import annotations

from .diagram import ModuleSet, Problem, compile_script
from .errors import DSMSyntaxError
from .model import Script
from .parser import parse_file

__all__ = ["check_script", "check_file", "Problem"]


def check_script(script: Script, modules: ModuleSet | None = None, strict: bool = False,
                 system: bool = False) -> list[Problem]:
    """All problems of a parsed script, sorted by position. `system`: a call-less diagram
    (no hangup warnings)."""
    modules = modules or ModuleSet()
    diagram, problems = compile_script(script, modules)
    warn = "error" if strict else "warning"
    states = {s.name for s in script.states}
    if script.initial_state is None:
        pos = script.states[0].pos if script.states else _file_pos(script)
        problems.append(Problem(pos, "error", f"diagram '{script.name}' has no initial state"))
    for t in script.transitions:
        if t.target not in states:
            problems.append(Problem(t.target_pos or t.pos, warn,
                                    f"transition '{t.name}' targets state '{t.target}', which "
                                    "is never defined (at run time the state stays unchanged)"))
    if not system:
        hangup_sources = {src for t in script.transitions
                          if any(c.name == "hangup" and not c.negated for c in t.conditions)
                          for src in t.sources}
        has_any_hangup = bool(hangup_sources)
        for s in script.states:
            if has_any_hangup and s.name not in hangup_sources and _reachable_leaf(script, s.name):
                problems.append(Problem(s.pos, "warning",
                                        f"state '{s.name}' has no hangup transition"))
    for p in script.warnings:
        problems.append(Problem(p[0], "warning", p[1]))
    problems.sort(key=lambda p: (p.pos.file, p.pos.line, p.pos.column))
    if strict:
        problems = [Problem(p.pos, "error", p.message) if p.severity == "warning" else p
                    for p in problems]
    return problems


def _reachable_leaf(script: Script, name: str) -> bool:
    """A state worth a hangup warning: one that waits (has outgoing transitions that are not
    all condition-less or test()-only, i.e. not a transient repost state)."""
    outgoing = [t for t in script.transitions if name in t.sources]
    if not outgoing:
        return False
    state = next(s for s in script.states if s.name == name)
    transient = any(a.name == "repost" for a in state.enter if hasattr(a, "name"))
    return not transient


def _file_pos(script: Script):
    from .model import Pos
    return Pos(script.file, 1, 1)


def check_file(path: str, modules: ModuleSet | None = None, strict: bool = False,
               load_path: str | None = None) -> list[Problem]:
    """Parse and check a file; a syntax error is returned as one problem."""
    try:
        script = parse_file(path, load_path)
    except DSMSyntaxError as e:
        return [Problem(e.pos, "error", e.render().split(": error: ", 1)[-1])]
    except OSError as e:
        from .model import Pos
        return [Problem(Pos(path, 0, 0), "error", str(e))]
    return check_script(script, modules, strict)
