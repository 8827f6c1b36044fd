"""The DSM module system: actions and conditions are methods registered with decorators.

A module is a `DSMModule` subclass with a class attribute `name` (its import name, e.g.
`mod_dlg`) and methods decorated with `@action("dlg.reply", split=",", arity=(2, 2))` or
`@condition("test", split=test_args)`. The runtime knows no action by name: the diagram
compiler looks names up in the modules a script imports (in import order), then in core.

A handler is called as ``method(session, *parts)`` where `parts` is what the declared `split`
made of the raw argument text at load time:

- ``"1"``: one parameter (1P, spec §1.4); parts = () if empty else (text,)
- ``","`` / ``"="``: two parameters (2P); parts = (a,) or (a, b)
- ``"list"``: every comma; ``"raw"``: (arg,) untouched; ``"none"``: ()
- a callable ``prepare(arg) -> tuple``: custom load-time preparation (SQL, py code, test());
  it raises ValueError with a message for a load-time error.

An action returns None, a Deferred (the session waits for it, its queue blocked, ⚑D11) or a
control marker from the runtime. A condition returns a bool.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar

from ..values import param_1p, split_2p, split_list

__all__ = ["PrepareWarning", "DSMModule", "Spec", "action", "condition", "register_module", "module_class",
           "MODULES", "prepare_args", "StubModule"]

Prepare = Callable[[str], tuple]


class PrepareWarning(Exception):
    """Raised by a prepare function for a dubious argument that still loads: the compiler
    reports `message` as a warning (an error under --strict) and uses `parts`."""

    def __init__(self, message: str, parts: tuple) -> None:
        self.message = message
        self.parts = parts
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Spec:
    """Declaration of one action or condition."""

    name: str
    kind: str                      # "action" or "condition"
    split: str | Prepare
    arity: tuple[int, int]
    method: str
    events: tuple[str, ...] | None = None   # conditions: event types it gates on (None = any)
    doc: str = ""


def action(name: str, split: str | Prepare = "1", arity: tuple[int, int] = (0, 1),
           doc: str = "") -> Callable:
    """Register the decorated method as DSM action `name` (see module docstring)."""
    def deco(fn: Callable) -> Callable:
        specs = list(getattr(fn, "_dsm_specs", ()))
        specs.append(Spec(name, "action", split, arity, fn.__name__, None, doc or (fn.__doc__ or "")))
        fn._dsm_specs = specs  # type: ignore[attr-defined]
        return fn
    return deco


def condition(name: str, split: str | Prepare = "raw", arity: tuple[int, int] = (0, 1),
              events: tuple[str, ...] | None = None, doc: str = "") -> Callable:
    """Register the decorated method as DSM condition `name`; `events` gates on event types."""
    def deco(fn: Callable) -> Callable:
        specs = list(getattr(fn, "_dsm_specs", ()))
        specs.append(Spec(name, "condition", split, arity, fn.__name__, events,
                          doc or (fn.__doc__ or "")))
        fn._dsm_specs = specs  # type: ignore[attr-defined]
        return fn
    return deco


def prepare_args(spec: Spec, arg: str) -> tuple[tuple, list[str]]:
    """Split `arg` per `spec`; returns (parts, warnings). Raises ValueError on load errors."""
    warnings: list[str] = []
    split = spec.split
    if callable(split):
        try:
            parts = split(arg)
        except PrepareWarning as w:
            warnings.append(f"{spec.name}: {w.message}")
            parts = w.parts
    elif split == "1":
        p = param_1p(arg)
        parts = (p,) if p else ()
    elif split in (",", "="):
        a, b, found = split_2p(arg, split)
        if not found:
            parts = (a,) if a else ()
            if spec.arity[0] >= 2:
                warnings.append(f"{spec.name}: expected two parameters separated by '{split}'")
        else:
            parts = (a, b)
            if spec.arity[0] >= 2 and (not a or not b):
                warnings.append(f"{spec.name}: expected two parameters (one is empty)")
    elif split == "list":
        parts = tuple(split_list(arg))
    elif split == "raw":
        parts = (arg,)
    elif split == "none":
        parts = ()
        if arg.strip():
            warnings.append(f"{spec.name} takes no parameters: '{arg.strip()}' is ignored")
    else:
        raise ValueError(f"bad split {split!r} for {spec.name}")
    return tuple(parts), warnings


def count_args(spec: Spec, arg: str) -> int | None:
    """How many parameters `arg` has under the spec's convention (None: not countable)."""
    split = spec.split
    if split == "1":
        return 1 if param_1p(arg) else 0
    if split in (",", "="):
        a, b, found = split_2p(arg, split)
        return 2 if found else (1 if a else 0)
    if split == "list":
        return len(split_list(arg))
    return None


class DSMModule:
    """Base class of DSM modules. One instance per engine; per-session state lives in
    `session.mod_state[self.name]` so a diagram (and its bound handlers) is shared by calls."""

    name: ClassVar[str] = ""
    actions: ClassVar[dict[str, Spec]] = {}
    conditions: ClassVar[dict[str, Spec]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        actions: dict[str, Spec] = {}
        conditions: dict[str, Spec] = {}
        for base in reversed(cls.__mro__[1:]):
            actions.update(getattr(base, "actions", {}))
            conditions.update(getattr(base, "conditions", {}))
        for attr_name, attr in vars(cls).items():
            for spec in getattr(attr, "_dsm_specs", ()):
                spec = replace(spec, method=attr_name)
                (actions if spec.kind == "action" else conditions)[spec.name] = spec
        cls.actions = actions
        cls.conditions = conditions

    def __init__(self, engine: Any = None) -> None:
        self.engine = engine

    def find_action(self, name: str) -> Spec | None:
        return self.actions.get(name)

    def find_condition(self, name: str) -> Spec | None:
        return self.conditions.get(name)

    def handler(self, spec: Spec) -> Callable:
        return getattr(self, spec.method)

    def session_end(self, session: Any) -> None:
        """Called when a session ends (release per-session resources)."""


class StubModule(DSMModule):
    """A SEMS module yaypm does not implement (uri, xml, curl, subscription, sbc, …): any
    `<prefix>.<name>` parses; at run time the action logs and sets `$errno=script`, the
    condition is false. Lets SEMS's scripts load and be checked."""

    prefix: ClassVar[str] = ""
    names: ClassVar[tuple[str, ...]] = ()

    def _provides(self, name: str) -> bool:
        return name == self.prefix or name.startswith(self.prefix + ".") or name in self.names

    def find_action(self, name: str) -> Spec | None:
        if self._provides(name):
            return Spec(name, "action", "raw", (0, 99), "_stub_action")
        return None

    def find_condition(self, name: str) -> Spec | None:
        if self._provides(name):
            return Spec(name, "condition", "raw", (0, 99), "_stub_condition")
        return None

    def _stub_action(self, s: Any, arg: str = "") -> None:
        s.log.warn("{module} is a stub on yaypm: action ignored", module=self.name)
        s.set_errno("script", f"{self.name} is not supported")

    def _stub_condition(self, s: Any, arg: str = "") -> bool:
        return False


MODULES: dict[str, type[DSMModule]] = {}


def register_module(cls: type[DSMModule]) -> type[DSMModule]:
    """Class decorator: make `cls` importable from scripts as `import(<cls.name>)`."""
    MODULES[cls.name] = cls
    return cls


def _stub(mod_name: str, prefix: str, names: tuple[str, ...] = ()) -> type[DSMModule]:
    return type(f"Stub_{mod_name}", (StubModule,),
                {"name": mod_name, "prefix": prefix, "names": names})


_SBC_NAMES = ("legStateChange", "bLegRefused", "PutOnHold", "ResumeHeld", "CreateHoldRequest",
              "HandleHoldReply", "RelayInit", "RelayInitUAC", "RelayInitUAS", "RelayFinalize",
              "RelayOnSipRequest", "RelayOnSipReply", "RelayOnB2BRequest", "RelayOnB2BReply")


for _n, _p in [("mod_uri", "uri"), ("mod_xml", "xml"), ("mod_curl", "curl"),
               ("mod_subscription", "subscription"), ("mod_sbc", "sbc"), ("mod_regex", "regex"),
               ("mod_aws", "aws"), ("mod_redis", "redis"), ("mod_groups", "groups"),
               ("mod_session_timer", "sessiontimer")]:
    MODULES[_n] = _stub(_n, _p, _SBC_NAMES if _n == "mod_sbc" else ())


def module_class(name: str) -> type[DSMModule]:
    """Find the module class for an import name: a registered name (`mod_dlg`) or a dotted
    path to a DSMModule subclass (`package.module.Class` or `package.module:Class`).
    Raises KeyError with a message."""
    _load_builtins()
    if name in MODULES:
        return MODULES[name]
    if "." in name or ":" in name:
        modpath, _, clsname = name.replace(":", ".").rpartition(".")
        try:
            mod = importlib.import_module(modpath)
            cls = getattr(mod, clsname)
        except (ImportError, AttributeError) as e:
            raise KeyError(f"cannot import DSM module '{name}': {e}") from None
        if not (isinstance(cls, type) and issubclass(cls, DSMModule)):
            raise KeyError(f"'{name}' is not a DSMModule subclass")
        return cls
    raise KeyError(f"unknown DSM module '{name}'")


def _load_builtins() -> None:
    if "mod_dlg" in MODULES:
        return
    from . import conference, dlg, monitoring, mysql, py, sys, utils  # noqa: F401
