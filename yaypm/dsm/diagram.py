"""Compiling a parsed Script into a Diagram: states with transitions whose actions and
conditions are bound to module handlers and whose arguments are split once.

A Diagram is shared by every session running it (sessions hold only a reference), so nothing
here is per-call. `compile_script` also returns every problem found (unknown names, arity,
bad arguments): the checker reuses it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .model import Action, Condition, For, If, Pos, Script, State, Statement, Transition
from .modules import DSMModule, Spec, count_args, module_class, prepare_args

__all__ = ["Diagram", "CState", "CTransition", "CAction", "CCondition", "CIf", "CFor",
           "Problem", "ModuleSet", "compile_script"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of the checker/compiler: `severity` is "error" or "warning"."""

    pos: Pos
    severity: str
    message: str

    def __str__(self) -> str:
        return f"{self.pos.describe()}: {self.severity}: {self.message}"


class CAction:
    __slots__ = ("fn", "parts", "pos", "name")

    def __init__(self, fn: Callable, parts: tuple, pos: Pos, name: str) -> None:
        self.fn, self.parts, self.pos, self.name = fn, parts, pos, name


class CCondition:
    __slots__ = ("fn", "parts", "negated", "events", "pos", "name", "arg")

    def __init__(self, fn: Callable, parts: tuple, negated: bool, events: tuple | None,
                 pos: Pos, name: str, arg: str) -> None:
        self.fn, self.parts, self.negated, self.events = fn, parts, negated, events
        self.pos, self.name, self.arg = pos, name, arg

    def label(self) -> str:
        text = f"{self.name}({self.arg})" if self.arg else self.name
        return ("not " if self.negated else "") + text


class CIf:
    __slots__ = ("conditions", "then", "otherwise", "pos")

    def __init__(self, conditions: tuple, then: tuple, otherwise: tuple | None, pos: Pos) -> None:
        self.conditions, self.then, self.otherwise, self.pos = conditions, then, otherwise, pos


class CFor:
    __slots__ = ("kind", "var", "key", "array", "start", "stop", "body", "pos")

    def __init__(self, f: For, body: tuple) -> None:
        self.kind, self.var, self.key, self.array = f.kind, f.var, f.key, f.array
        self.start, self.stop, self.body, self.pos = f.start, f.stop, body, f.pos


class CTransition:
    __slots__ = ("name", "sources", "conditions", "actions", "target", "exception", "pos")

    def __init__(self, t: Transition, conditions: tuple, actions: tuple) -> None:
        self.name, self.sources, self.target = t.name, t.sources, t.target
        self.conditions, self.actions, self.exception, self.pos = conditions, actions, t.exception, t.pos


class CState:
    __slots__ = ("name", "enter", "exit", "transitions", "pos", "diagram")

    def __init__(self, name: str, enter: tuple, exit_: tuple, pos: Pos) -> None:
        self.name, self.enter, self.exit, self.pos = name, enter, exit_, pos
        self.transitions: list[CTransition] = []
        self.diagram: Diagram | None = None

    def __repr__(self) -> str:
        return f"<CState {self.name}>"


class Diagram:
    """A compiled diagram: `states` by name, `initial`, all `transitions` in file order."""

    __slots__ = ("name", "file", "states", "initial", "transitions", "script", "modules")

    def __init__(self, name: str, file: str, script: Script) -> None:
        self.name, self.file, self.script = name, file, script
        self.states: dict[str, CState] = {}
        self.initial: CState | None = None
        self.transitions: list[CTransition] = []
        self.modules: list[DSMModule] = []

    def __repr__(self) -> str:
        return f"<Diagram {self.name} ({len(self.states)} states)>"


class ModuleSet:
    """Module instances of one engine/bundle, created on first import, plus core."""

    def __init__(self, engine: Any = None, extra: dict[str, type[DSMModule]] | None = None) -> None:
        from .modules.core import CoreModule
        self.engine = engine
        self.extra = dict(extra or {})
        self._instances: dict[str, DSMModule] = {}
        self.core: DSMModule = CoreModule(engine)

    def get(self, name: str) -> DSMModule:
        """Instance for import name `name`; KeyError (with a message) if unknown."""
        inst = self._instances.get(name)
        if inst is None:
            cls = self.extra.get(name) or module_class(name)
            inst = cls(self.engine)
            self._instances[name] = inst
        return inst

    def instances(self) -> Iterable[DSMModule]:
        yield self.core
        yield from self._instances.values()


class _Compiler:
    def __init__(self, script: Script, modules: ModuleSet) -> None:
        self.script = script
        self.modset = modules
        self.problems: list[Problem] = []
        self.imported: list[DSMModule] = []
        self.later_functions = {f.name: f for f in script.functions}

    def err(self, pos: Pos, msg: str) -> None:
        self.problems.append(Problem(pos, "error", msg))

    def warn(self, pos: Pos, msg: str) -> None:
        self.problems.append(Problem(pos, "warning", msg))

    def _lookup(self, name: str, kind: str) -> tuple[DSMModule, Spec] | None:
        for mod in [*self.imported, self.modset.core]:
            spec = mod.find_action(name) if kind == "action" else mod.find_condition(name)
            if spec is not None:
                return mod, spec
        return None

    def _missing(self, name: str, kind: str, pos: Pos) -> None:
        hint = ""
        prefix = name.split(".", 1)[0] if "." in name else ""
        if prefix:
            hint = f" (missing import(mod_{prefix})?)"
        else:
            hint = " (missing import?)"
        if kind == "action" and name in self.later_functions:
            f = self.later_functions[name]
            hint = (f" (function '{name}' is defined later, at {f.pos}: functions must be "
                    "defined before use)")
        if name.startswith(("--", "#", "/*", "//")):
            hint = " (comments must stand on their own line)"
        self.err(pos, f"could not find {kind} for '{name}'{hint}")

    def _prepare(self, spec: Spec, arg: str, pos: Pos) -> tuple | None:
        try:
            parts, warnings = prepare_args(spec, arg)
        except ValueError as e:
            self.err(pos, f"{spec.name}: {e}")
            return None
        for w in warnings:
            self.warn(pos, w)
        n = count_args(spec, arg)
        lo, hi = spec.arity
        if n is not None and not (lo <= n <= hi) and not (spec.split in (",", "=") and n >= 1):
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            self.err(pos, f"{spec.name} takes {want} parameter(s), got {n}")
        return parts

    def _bind(self, kind: str, name: str, arg: str, pos: Pos) -> tuple[Any, Spec, tuple] | None:
        """The handler, spec and prepared arguments of action/condition `name`; None (the
        problem recorded) when it is unknown or its arguments do not fit."""
        found = self._lookup(name, kind)
        if found is None:
            self._missing(name, kind, pos)
            return None
        mod, spec = found
        parts = self._prepare(spec, arg, pos)
        if parts is None:
            return None
        return mod.handler(spec), spec, parts

    def action(self, a: Action) -> CAction | None:
        bound = self._bind("action", a.name, a.arg, a.pos)
        if bound is None:
            return None
        handler, _, parts = bound
        return CAction(handler, parts, a.pos, a.name)

    def condition(self, c: Condition) -> CCondition | None:
        bound = self._bind("condition", c.name, c.arg, c.pos)
        if bound is None:
            return None
        handler, spec, parts = bound
        return CCondition(handler, parts, c.negated, spec.events, c.pos, c.name, c.arg)

    def stmts(self, stmts: tuple[Statement, ...]) -> tuple:
        out: list = []
        for st in stmts:
            if isinstance(st, Action):
                ca = self.action(st)
                if ca is not None:
                    out.append(ca)
            elif isinstance(st, If):
                conds = tuple(c for c in (self.condition(x) for x in st.conditions) if c)
                out.append(CIf(conds, self.stmts(st.then),
                               None if st.otherwise is None else self.stmts(st.otherwise), st.pos))
            elif isinstance(st, For):
                out.append(CFor(st, self.stmts(st.body)))
        return tuple(out)

    def run(self) -> Diagram:
        script = self.script
        d = Diagram(script.name, script.file, script)
        for item in script.items:
            from .model import Import
            if isinstance(item, Import):
                try:
                    mod = self.modset.get(item.module)
                except KeyError as e:
                    self.err(item.pos, str(e.args[0]) if e.args else f"unknown module {item.module}")
                    continue
                if mod not in self.imported:
                    self.imported.append(mod)
            elif isinstance(item, State):
                if item.name in d.states:
                    self.err(item.pos, f"duplicate state '{item.name}' (first defined at "
                                       f"{d.states[item.name].pos})")
                    continue
                cs = CState(item.name, self.stmts(item.enter), self.stmts(item.exit), item.pos)
                cs.diagram = d
                d.states[item.name] = cs
                if item.initial:
                    if d.initial is not None:
                        self.err(item.initial_pos or item.pos,
                                 f"second initial state '{item.name}' (initial state is "
                                 f"'{d.initial.name}')")
                    else:
                        d.initial = cs
            elif isinstance(item, Transition):
                ct = CTransition(item, tuple(c for c in (self.condition(x) for x in item.conditions) if c),
                                 self.stmts(item.actions))
                d.transitions.append(ct)
                for src in item.sources:
                    st = d.states.get(src)
                    if st is None:
                        self.err(item.pos, f"state '{src}' for transition '{item.name}' not found"
                                           " (source states must be defined above the transition)")
                    else:
                        st.transitions.append(ct)
        d.modules = list(self.imported)
        return d


def compile_script(script: Script, modules: ModuleSet) -> tuple[Diagram, list[Problem]]:
    """Bind a Script to module handlers; returns the Diagram and all problems found."""
    c = _Compiler(script, modules)
    d = c.run()
    return d, c.problems
