"""mod_py: `py(...)` actions and conditions in Python 3 (seed 000, spec §2.9, ⚑D7).

The code is compiled once when the diagram loads (never from run-time strings). Globals are
shared by all sessions of the engine (SEMS uses `__main__`); locals persist per session and
hold `dsm`, `session`, and during each call `type` and `params`. Python 2 forms (`print x`,
`except E, e:`) are load errors naming the line.
"""
from __future__ import annotations

import textwrap
from typing import Any

from twisted.logger import Logger

from ..backend import MediaError
from . import DSMModule, action, condition, register_module

log = Logger(namespace="yaypm.dsm.py")

EVENT_TYPES = {"invite": 1, "sessionStart": 2, "key": 3, "timer": 4, "noAudio": 5, "hangup": 6,
               "event": 10, "separator": 11, "B2B.otherReply": 12, "B2B.otherBye": 13}


class DSMRuntimeError(RuntimeError):
    """Raised to py() code by failing session media calls; `.message` as in Python 2."""

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class _DSM:
    """The `dsm` object visible to py() code."""

    Any, Invite, SessionStart, Key, Timer, NoAudio, Hangup = 0, 1, 2, 3, 4, 5, 6
    Hold, UnHold, XmlrpcResponse, DSMEvent, PlaylistSeparator = 7, 8, 9, 10, 11
    B2BOtherReply, B2BOtherBye = 12, 13

    def log(self, level: int, msg: str) -> None:
        {0: log.error, 1: log.warn, 2: log.info}.get(int(level), log.debug)("{msg}", msg=msg)

    def DBG(self, msg: str) -> None:  # noqa: N802 (SEMS names)
        log.debug("{msg}", msg=msg)

    def INFO(self, msg: str) -> None:  # noqa: N802
        log.info("{msg}", msg=msg)

    def WARN(self, msg: str) -> None:  # noqa: N802
        log.warn("{msg}", msg=msg)

    def ERROR(self, msg: str) -> None:  # noqa: N802
        log.error("{msg}", msg=msg)


_DSM_OBJ = _DSM()


class _PySession:
    """The `session` object visible to py() code (names from SEMS's mod_py)."""

    __slots__ = ("_s",)

    def __init__(self, s: Any) -> None:
        self._s = s

    def var(self, name: str) -> str:
        return self._s.var.get(name, "")

    def setvar(self, name: str, value: Any) -> None:
        self._s.var[name] = str(value)

    def select(self, name: str) -> str:
        return self._s.select(name)

    def setError(self, errno: Any) -> None:  # noqa: N802
        self._s.set_errno(str(errno))

    def _media(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except MediaError as e:
            raise DSMRuntimeError(e.kind) from None

    def playFile(self, name: str, loop: bool = False, front: bool = False) -> None:  # noqa: N802
        self._media(self._s.backend.play, name, bool(loop), bool(front))

    def playPrompt(self, name: str, loop: bool = False) -> None:  # noqa: N802
        from .core import CoreModule
        from ..runtime import DSMException
        try:
            f = CoreModule._prompt_file(CoreModule, self._s, name)  # type: ignore[arg-type]
        except DSMException as e:
            raise DSMRuntimeError(e.type) from None
        self._media(self._s.backend.play, f, bool(loop), False)

    def recordFile(self, name: str) -> None:  # noqa: N802
        self._media(self._s.backend.record, name, None)

    def stopRecord(self) -> None:  # noqa: N802
        self._s.backend.stop_record()

    def getRecordLength(self) -> int:  # noqa: N802
        return self._s.backend.record_length()

    def getRecordDataSize(self) -> int:  # noqa: N802
        return self._s.backend.record_data_size()

    def flushPlaylist(self) -> None:  # noqa: N802
        self._s.backend.flush_playlist()

    def setPromptSet(self, name: str) -> None:  # noqa: N802
        prompts = getattr(self._s.app, "prompts", None) or {}
        if name not in prompts:
            raise DSMRuntimeError("prompt")
        self._s.module_state("core.prompts", lambda: {"set": ""})["set"] = name

    def addSeparator(self, name: str, front: bool = False) -> None:  # noqa: N802
        self._s.backend.add_separator(name, bool(front))

    def connectMedia(self) -> None:  # noqa: N802
        self._s.backend.media("connectMedia")

    def disconnectMedia(self) -> None:  # noqa: N802
        self._s.backend.media("disconnectMedia")

    def mute(self) -> None:
        self._s.backend.media("mute")

    def unmute(self) -> None:
        self._s.backend.media("unmute")

    def B2BconnectCallee(self, remote_party: str, remote_uri: str, relayed: bool = False) -> None:  # noqa: N802
        self._media(self._s.backend.b2b_connect, remote_party, remote_uri, bool(relayed))

    def B2BterminateOtherLeg(self) -> None:  # noqa: N802
        self._s.backend.b2b_terminate_other()


def _code_text(arg: str) -> str:
    code = arg
    if code.startswith("#"):
        # `py(#` + newline: the first line is a comment, the code starts on the next line
        code = code.split("\n", 1)[1] if "\n" in code else ""
    return textwrap.dedent(code).strip("\n")


def _py2_hint(code: str, err: SyntaxError) -> str:
    line = (code.splitlines()[err.lineno - 1] if err.lineno and err.lineno <= len(code.splitlines())
            else "").strip()
    hint = ""
    if line.startswith("print ") or line == "print":
        hint = " (Python 2 print statement: use print(...))"
    elif line.startswith("except") and "," in line:
        hint = " (Python 2 'except E, e': use 'except E as e')"
    return f"py code line {err.lineno}: {err.msg}{hint}: {line!r}"


def _compile_exec(arg: str) -> tuple:
    code = _code_text(arg)
    try:
        return (compile(code, "<dsm py()>", "exec"),)
    except SyntaxError as e:
        raise ValueError(_py2_hint(code, e)) from None


def _compile_eval(arg: str) -> tuple:
    code = _code_text(arg).strip()
    try:
        return (compile(code, "<dsm py()>", "eval"),)
    except SyntaxError as e:
        raise ValueError(_py2_hint(code, e)) from None


@register_module
class PyModule(DSMModule):
    """`import(mod_py)`: `py(statements)` action, `py(expression)` condition."""

    name = "mod_py"

    def __init__(self, engine: Any = None) -> None:
        super().__init__(engine)
        self.globals: dict[str, Any] = {"__name__": "__dsm_py__"}

    def _locals(self, s: Any) -> dict[str, Any]:
        loc = s.module_state(self.name, dict)
        if "session" not in loc:
            loc["dsm"] = _DSM_OBJ
            loc["session"] = _PySession(s)
        loc["type"] = EVENT_TYPES.get(s.event_kind, 0)
        loc["params"] = dict(s.params) if s.params is not None else {}
        return loc

    @action("py", split=_compile_exec, arity=(1, 1))
    def py_action(self, s: Any, code: Any) -> None:
        """Run statements; a Python error is logged and the action list continues."""
        try:
            exec(code, self.globals, self._locals(s))
        except Exception:
            log.failure("py() action failed in session {session}", session=s.id)

    @condition("py", split=_compile_eval, arity=(1, 1))
    def py_condition(self, s: Any, code: Any) -> bool:
        """True only for a real True (an int counts as false, as in SEMS)."""
        try:
            return eval(code, self.globals, self._locals(s)) is True
        except Exception:
            log.failure("py() condition failed in session {session}", session=s.id)
            return False
