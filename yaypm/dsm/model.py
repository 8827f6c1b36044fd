"""The parsed form of a DSM script: frozen dataclasses with source positions.

The parser builds these from text; the checker and the diagram compiler read them. Nothing here
knows about modules or sessions, so a script can be parsed, printed and checked without a call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True, slots=True)
class Pos:
    """Where a construct starts: file name, 1-based line and column, plus the include chain.

    `chain` lists the (file, line) of each `#include` that led here, outermost first, so an error
    deep in an included file can say how it was reached.
    """

    file: str
    line: int
    column: int
    chain: tuple[tuple[str, int], ...] = ()

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def describe(self) -> str:
        """`file:line:col` followed by the include chain, if any."""
        text = str(self)
        for inc_file, inc_line in reversed(self.chain):
            text += f" (included from {inc_file}:{inc_line})"
        return text


@dataclass(frozen=True, slots=True)
class Action:
    """One statement call `name(arg)`; `arg` is the raw text between the outer parentheses."""

    name: str
    arg: str
    pos: Pos
    has_parens: bool = True


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition call; `negated` counts the `not`s before it (odd = inverted)."""

    name: str
    arg: str
    negated: bool
    pos: Pos


@dataclass(frozen=True, slots=True)
class If:
    """`if conds { then } [else { otherwise }]`; `exception` is kept for fidelity (SEMS ignores it)."""

    conditions: tuple[Condition, ...]
    then: tuple["Statement", ...]
    otherwise: tuple["Statement", ...] | None
    pos: Pos
    exception: bool = False


@dataclass(frozen=True, slots=True)
class For:
    """A `for` loop. `kind` is "array", "range" or "struct" (spec §1.3).

    array: `var` iterates `$array[0]`, `$array[1]`…; range: `var` from `start` to `stop`
    (exclusive, values resolved at run time); struct: `key`/`var` over every `$array.*`.
    """

    kind: str
    var: str
    key: str
    array: str
    start: str
    stop: str
    body: tuple["Statement", ...]
    pos: Pos


Statement = Union[Action, If, For]


@dataclass(frozen=True, slots=True)
class Function:
    """`function name() { body };` — expanded inline where it is called (after its definition)."""

    name: str
    body: tuple[Statement, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class State:
    """A state; `enter`/`exit` are the statements run on entering/leaving it."""

    name: str
    initial: bool
    enter: tuple[Statement, ...]
    exit: tuple[Statement, ...]
    pos: Pos
    initial_pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """`transition name sources - conditions / actions -> target;`."""

    name: str
    sources: tuple[str, ...]
    conditions: tuple[Condition, ...]
    actions: tuple[Statement, ...]
    target: str
    exception: bool
    pos: Pos
    target_pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Import:
    """`import(mod_x)`: makes module `mod_x`'s actions and conditions visible in this file."""

    module: str
    pos: Pos


Item = Union[Import, State, Transition, Function]


@dataclass(frozen=True, slots=True)
class Script:
    """One diagram file (with its includes expanded): the items in file order."""

    name: str
    file: str
    items: tuple[Item, ...]
    warnings: tuple[tuple[Pos, str], ...] = field(default=())

    @property
    def imports(self) -> tuple[Import, ...]:
        return tuple(i for i in self.items if isinstance(i, Import))

    @property
    def states(self) -> tuple[State, ...]:
        return tuple(i for i in self.items if isinstance(i, State))

    @property
    def transitions(self) -> tuple[Transition, ...]:
        return tuple(i for i in self.items if isinstance(i, Transition))

    @property
    def functions(self) -> tuple[Function, ...]:
        return tuple(i for i in self.items if isinstance(i, Function))

    @property
    def initial_state(self) -> State | None:
        for s in self.states:
            if s.initial:
                return s
        return None


def walk_statements(stmts: tuple[Statement, ...]):
    """Yield every Action/If/For in `stmts`, depth first, including nested blocks."""
    for st in stmts:
        yield st
        if isinstance(st, If):
            yield from walk_statements(st.then)
            if st.otherwise is not None:
                yield from walk_statements(st.otherwise)
        elif isinstance(st, For):
            yield from walk_statements(st.body)
