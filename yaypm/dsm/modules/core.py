"""The DSM core module: every action and condition of spec §2.6 and §2.8.

Names, argument conventions and `$errno` behaviour follow SEMS's DSMCoreModule; media goes
through the session's backend (`yaypm.dsm.backend.DSMCallBackend`).
"""
from __future__ import annotations

import json
from typing import Any

from twisted.logger import Logger, LogLevel

from ..backend import MediaError
from ..runtime import BREAK, Call, DSMException, Jump, Return
from ..values import (evaluate, parse_test, resolve, split_2p, split_list, truthy, var_name)
from . import DSMModule, PrepareWarning, action, condition

log = Logger(namespace="yaypm.dsm.script")

_LEVELS = {0: LogLevel.error, 1: LogLevel.warn, 2: LogLevel.info, 3: LogLevel.debug}
_DTMF = {"*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}
SELECT_NAMES = ("local_tag", "user", "domain", "remote_tag", "callid", "local_uri",
                "local_party", "remote_uri", "remote_party")


def test_args(arg: str) -> tuple:
    """Load-time preparation of a test() expression; a missing operator is an error."""
    parsed = parse_test(arg)
    if parsed is None:
        raise PrepareWarning(f"no operator in '{arg}': never true (use ==, !=, < or >)",
                             (("", "never", ""),))
    return (parsed,)


def media_call(s: Any, fn: Any, *args: Any) -> Any:
    """Call a backend media method, turning MediaError into the DSM exception it names."""
    try:
        return fn(*args)
    except MediaError as e:
        raise DSMException(e.kind, e.params) from None


def _script_log(s: Any, level: int, text: str) -> None:
    lvl = _LEVELS.get(level)
    if lvl is None:
        return
    pos = getattr(s, "_log_pos", None)
    log.emit(lvl, "{session} {diagram}: {text}", session=s.id, diagram=s.diagram.name, text=text)


def _level(s: Any, arg: str) -> int | None:
    try:
        return int(resolve(s, arg.strip() or "0"))
    except ValueError:
        return None


def _event_condition(name: str, events: tuple[str, ...]) -> Any:
    @condition(name, split=test_args, events=events)
    def cond(self: Any, s: Any, test: tuple) -> bool:
        return _eval(s, test)
    cond.__name__ = "cond_" + name.replace(".", "_")
    return cond


def _eval(s: Any, test: tuple) -> bool:
    from ..values import eval_test
    return eval_test(s, test)


class CoreModule(DSMModule):
    """DSM's built-in actions and conditions (always available, searched after imports)."""

    name = "core"

    # -- conditions -------------------------------------------------------------------------
    @condition("test", split=test_args)
    def cond_test(self, s: Any, test: tuple) -> bool:
        """Matches any event type; true if the expression holds."""
        return _eval(s, test)

    c_start = _event_condition("start", ("start",))
    c_invite = _event_condition("invite", ("invite",))
    c_session_start = _event_condition("sessionStart", ("sessionStart",))
    c_early = _event_condition("early", ("earlySession",))
    c_early_session = _event_condition("earlySession", ("earlySession",))
    c_ringing = _event_condition("ringing", ("ringing",))
    c_failed = _event_condition("failed", ("failed",))
    c_hangup = _event_condition("hangup", ("hangup",))
    c_key = _event_condition("key", ("key",))
    c_key_test = _event_condition("keyTest", ("key",))
    c_timer = _event_condition("timer", ("timer",))
    c_timer_test = _event_condition("timerTest", ("timer",))
    c_no_audio = _event_condition("noAudio", ("noAudio",))
    c_no_audio_test = _event_condition("noAudioTest", ("noAudio",))
    c_separator = _event_condition("separator", ("separator",))
    c_separator_test = _event_condition("separatorTest", ("separator",))
    c_event = _event_condition("event", ("event",))
    c_event_test = _event_condition("eventTest", ("event",))
    c_b2b_event = _event_condition("B2Bevent", ("B2Bevent",))
    c_b2b_other_reply = _event_condition("B2B.otherReply", ("B2B.otherReply",))
    c_b2b_other_bye = _event_condition("B2B.otherBye", ("B2B.otherBye",))
    c_sip_request = _event_condition("sipRequest", ("sipRequest",))
    c_sip_reply = _event_condition("sipReply", ("sipReply",))
    c_remote_disappeared = _event_condition("remoteDisappeared", ("remoteDisappeared",))
    c_session_timeout = _event_condition("sessionTimeout", ("sessionTimeout",))
    c_rtp_timeout = _event_condition("rtpTimeout", ("rtpTimeout",))
    c_before_destroy = _event_condition("beforeDestroy", ("beforeDestroy",))
    c_system = _event_condition("system", ("system",))
    c_startup = _event_condition("startup", ("startup",))
    c_reload = _event_condition("reload", ("reload",))

    @condition("keyPress", split="1", arity=(1, 1), events=("key",))
    def cond_key_press(self, s: Any, key: str = "") -> bool:
        """A DTMF event whose #key is exactly `key`."""
        return s.params is not None and s.params.get("key") == key

    # -- flow control -----------------------------------------------------------------------
    @action("repost", split="none", arity=(0, 0))
    def repost(self, s: Any) -> None:
        """Process the current event again in the state current after this event's actions."""
        s.request_repost()

    @action("jumpFSM", arity=(1, 1))
    def jump_fsm(self, s: Any, name: str = "") -> Jump:
        return Jump(resolve(s, name))

    @action("callFSM", arity=(1, 1))
    def call_fsm(self, s: Any, name: str = "") -> Call:
        return Call(resolve(s, name))

    @action("returnFSM", split="none", arity=(0, 0))
    def return_fsm(self, s: Any) -> Return:
        return Return()

    @action("break", split="none", arity=(0, 0))
    def break_(self, s: Any) -> Any:
        """Ends a for loop; elsewhere ends the list like jumpFSM (cancels the state change)."""
        return BREAK

    @action("stop", arity=(0, 1))
    def stop(self, s: Any, bye: str = "") -> None:
        """End the session after this event; `stop(true)` hangs up first."""
        s.request_stop(truthy(resolve(s, bye)) if bye else False)

    @action("throw", split=",", arity=(1, 2))
    def throw(self, s: Any, kind: str = "", pairs: str = "") -> None:
        params: dict[str, str] = {}
        for pair in pairs.split(";") if pairs else ():
            k, sep, v = pair.partition("=")
            if sep and k.strip():
                params[k.strip()] = resolve(s, v.strip())
        raise DSMException(resolve(s, kind), params)

    @action("throwOnError", split="none", arity=(0, 0))
    def throw_on_error(self, s: Any) -> None:
        errno = s.var.get("errno", "")
        if errno:
            raise DSMException(errno, {"text": s.var.get("strerror", "")})

    # -- variables --------------------------------------------------------------------------
    def _assign(self, s: Any, name: str, value: str) -> None:
        if name.startswith("#"):
            if s.params is not None:
                s.params[name[1:]] = value
        else:
            s.var[var_name(name)] = value

    @action("set", split="=", arity=(2, 2))
    def set_(self, s: Any, name: str = "", value: str = "") -> None:
        self._assign(s, name, resolve(s, value))

    @action("sets", split="=", arity=(2, 2))
    def sets(self, s: Any, name: str = "", value: str = "") -> None:
        self._assign(s, name, s.interpolate(value))

    @action("eval", split="=", arity=(2, 2))
    def eval_(self, s: Any, name: str = "", expr: str = "") -> None:
        s.var[var_name(name)] = evaluate(s, expr)

    @action("var", split="=", arity=(2, 2))
    def var(self, s: Any, dst: str = "", src: str = "") -> None:
        s.var[var_name(dst)] = s.var.get(resolve(s, src), "")

    @action("setVar", split="=", arity=(2, 2))
    def set_var(self, s: Any, name: str = "", value: str = "") -> None:
        s.var[resolve(s, name)] = resolve(s, value)

    @action("param", split="=", arity=(2, 2))
    def param(self, s: Any, dst: str = "", name: str = "") -> None:
        p = s.params or {}
        s.var[var_name(dst)] = p.get(resolve(s, name), "")

    @action("append", split=",", arity=(2, 2))
    def append(self, s: Any, name: str = "", value: str = "") -> None:
        n = var_name(name)
        s.var[n] = s.var.get(n, "") + resolve(s, value)

    @action("substr", split=",", arity=(2, 3))
    def substr(self, s: Any, name: str = "", rest: str = "") -> None:
        n = var_name(name)
        args = [resolve(s, a.strip()) for a in rest.split(",")]
        val = s.var.get(n, "")
        try:
            pos = int(args[0])
            length = int(args[1]) if len(args) > 1 else None
            if pos < 0 or pos > len(val) or (length is not None and length < 0):
                raise ValueError(pos)
        except (ValueError, IndexError):
            log.error("substr: bad position/length {args} for ${name}", args=rest, name=n)
            return
        s.var[n] = val[pos:] if length is None else val[pos:pos + length]

    @action("inc", arity=(1, 1))
    def inc(self, s: Any, name: str = "") -> None:
        n = var_name(name)
        v = s.var.get(n, "")
        s.var[n] = str(int(v) + 1) if v.isdigit() else "1"

    @action("clear", arity=(1, 1))
    def clear(self, s: Any, name: str = "") -> None:
        s.var.pop(var_name(name), None)

    @action("clearStruct", arity=(1, 1))
    def clear_struct(self, s: Any, name: str = "") -> None:
        prefix = var_name(name) + "."
        for k in [k for k in s.var if k.startswith(prefix)]:
            del s.var[k]

    @action("clearArray", arity=(1, 1))
    def clear_array(self, s: Any, name: str = "") -> None:
        prefix = var_name(name) + "["
        for k in [k for k in s.var if k.startswith(prefix)]:
            del s.var[k]

    @action("size", split=",", arity=(2, 2))
    def size(self, s: Any, array: str = "", dst: str = "") -> None:
        a = var_name(array)
        i = 0
        while f"{a}[{i}]" in s.var:
            i += 1
        s.var[var_name(dst)] = str(i)

    @action("arrayIndex", split=",", arity=(2, 2))
    def array_index(self, s: Any, array: str = "", value: str = "") -> None:
        a = var_name(array)
        want = resolve(s, value)
        result = "nil"
        i = 0
        while f"{a}[{i}]" in s.var:
            if s.var[f"{a}[{i}]"] == want:
                result = str(i)
                break
            i += 1
        dst = var_name(value) + ".index" if value.strip().startswith("$") else "index"
        s.var[dst] = result

    # -- logging ----------------------------------------------------------------------------
    @action("log", split=",", arity=(2, 2))
    def log_(self, s: Any, level: str = "", value: str = "") -> None:
        lvl = _level(s, level)
        if lvl is not None:
            _script_log(s, lvl, resolve(s, value))

    @action("logs", split=",", arity=(2, 2))
    def logs(self, s: Any, level: str = "", text: str = "") -> None:
        lvl = _level(s, level)
        if lvl is not None:
            _script_log(s, lvl, s.interpolate(text))

    @action("dbg", split="raw", arity=(0, 1))
    def dbg(self, s: Any, text: str = "") -> None:
        _script_log(s, 3, s.interpolate(text.strip()))

    @action("info", split="raw", arity=(0, 1))
    def info(self, s: Any, text: str = "") -> None:
        _script_log(s, 2, s.interpolate(text.strip()))

    @action("warn", split="raw", arity=(0, 1))
    def warn(self, s: Any, text: str = "") -> None:
        _script_log(s, 1, s.interpolate(text.strip()))

    @action("error", split="raw", arity=(0, 1))
    def error(self, s: Any, text: str = "") -> None:
        _script_log(s, 0, s.interpolate(text.strip()))

    def _dump(self, s: Any, level: str, what: str) -> None:
        lvl = _level(s, level)
        if lvl is None:
            return
        if what == "vars":
            _script_log(s, lvl, "variables: " + json.dumps(s.var, sort_keys=True))
        elif what == "params":
            text = "no event params" if s.params is None else json.dumps(s.params, sort_keys=True)
            _script_log(s, lvl, "params: " + text)
        else:
            _script_log(s, lvl, "selects: " + json.dumps(
                {n: s.select(n) for n in SELECT_NAMES}, sort_keys=True))

    @action("logVars", arity=(0, 1))
    def log_vars(self, s: Any, level: str = "") -> None:
        self._dump(s, level, "vars")

    @action("logParams", arity=(0, 1))
    def log_params(self, s: Any, level: str = "") -> None:
        self._dump(s, level, "params")

    @action("logSelects", arity=(0, 1))
    def log_selects(self, s: Any, level: str = "") -> None:
        self._dump(s, level, "selects")

    @action("logAll", arity=(0, 1))
    def log_all(self, s: Any, level: str = "") -> None:
        for what in ("vars", "params", "selects"):
            self._dump(s, level, what)

    # -- timers -----------------------------------------------------------------------------
    @action("setTimer", split=",", arity=(2, 2))
    def set_timer(self, s: Any, timer_id: str = "", seconds: str = "") -> None:
        tid, secs = resolve(s, timer_id), resolve(s, seconds)
        if not tid.isdigit() or not secs.isdigit():
            s.set_errno("arg", f"setTimer: bad timer id or seconds ({tid!r}, {secs!r})")
            return
        s.set_timer(str(int(tid)), int(secs))
        s.set_errno("")

    @action("removeTimer", arity=(1, 1))
    def remove_timer(self, s: Any, timer_id: str = "") -> None:
        tid = resolve(s, timer_id)
        if not tid.isdigit():
            s.set_errno("arg", f"removeTimer: bad timer id {tid!r}")
            return
        s.remove_timer(str(int(tid)))
        s.set_errno("")

    @action("removeTimers", split="none", arity=(0, 0))
    def remove_timers(self, s: Any) -> None:
        s.remove_timers()
        s.set_errno("")

    # -- events -----------------------------------------------------------------------------
    @action("postEvent", split=",", arity=(1, 2))
    def post_event(self, s: Any, target: str = "", names: str = "") -> Any:
        """Queue an `event` for session/queue `target` with the listed variables (no `$`).

        A target not in this process goes to the registry's `remote` forwarder (⚑D9): the
        session waits for the answer only (⚑D11), to set `$errno` as for a local target."""
        to = resolve(s, target)
        params: dict[str, str] = {}
        for n in (x.strip() for x in names.split(";")) if names else ():
            if not n:
                continue
            if n == "var":
                params.update(s.var)
            elif n.endswith("."):
                params.update({k: v for k, v in s.var.items() if k.startswith(n)})
            elif n in s.var:
                params[n] = s.var[n]
        if s.registry.post_event(to, params):
            s.set_errno("")
            return None
        remote = s.registry.remote
        if remote is None:
            s.set_errno("arg", f"postEvent: no session or queue '{to}'")
            return None

        def answered(taken: bool) -> None:
            if taken:
                s.set_errno("")
            else:
                s.set_errno("arg", f"postEvent: no session or queue '{to}'")
        return remote(to, params, s.id).addCallback(answered)

    @action("registerEventQueue", arity=(1, 1))
    def register_event_queue(self, s: Any, name: str = "") -> None:
        s.registry.queues[resolve(s, name)] = s

    @action("unregisterEventQueue", arity=(1, 1))
    def unregister_event_queue(self, s: Any, name: str = "") -> None:
        q = resolve(s, name)
        if s.registry.queues.get(q) is s:
            del s.registry.queues[q]

    @action("createSystemDSM", split=",", arity=(2, 2))
    def create_system_dsm(self, s: Any, bundle: str = "", diagram: str = "") -> None:
        engine = s.app.engine
        b, d = resolve(s, bundle), resolve(s, diagram)
        try:
            if engine is None:
                raise KeyError("no engine")
            engine.create_system_session(b, d)
        except Exception as e:
            raise DSMException("core", {"text": f"createSystemDSM({b}, {d}) failed: {e}"}) from None

    # -- prompts and playlist ---------------------------------------------------------------
    def _prompt_file(self, s: Any, name: str) -> str:
        prompts = getattr(s.app, "prompts", None) or {}
        cur = s.module_state("core.prompts", lambda: {"set": ""})["set"]
        table = prompts.get(cur, {})
        f = table.get(name)
        if f is None and (cur == "" or s.var.get("prompts.default_fallback") == "yes"):
            f = prompts.get("", {}).get(name)
        if f is None:
            raise DSMException("prompt", {"name": name})
        return f

    @action("playPrompt", arity=(1, 1))
    def play_prompt(self, s: Any, name: str = "") -> Any:
        return media_call(s, s.backend.play, self._prompt_file(s, resolve(s, name)), False, False)

    @action("playPromptFront", arity=(1, 1))
    def play_prompt_front(self, s: Any, name: str = "") -> Any:
        return media_call(s, s.backend.play, self._prompt_file(s, resolve(s, name)), False, True)

    @action("playPromptLooped", arity=(1, 1))
    def play_prompt_looped(self, s: Any, name: str = "") -> Any:
        return media_call(s, s.backend.play, self._prompt_file(s, resolve(s, name)), True, False)

    @action("setPrompts", arity=(1, 1))
    @action("setPromptSet", arity=(1, 1))
    def set_prompts(self, s: Any, name: str = "") -> None:
        """Choose the prompt set (SEMS's docs say setPromptSet, which SEMS rejects: ⚑D8)."""
        n = resolve(s, name)
        prompts = getattr(s.app, "prompts", None) or {}
        if n not in prompts:
            raise DSMException("prompt", {"name": n})
        s.module_state("core.prompts", lambda: {"set": ""})["set"] = n

    @action("playFile", split=",", arity=(1, 2))
    def play_file(self, s: Any, file: str = "", loop: str = "") -> Any:
        return media_call(s, s.backend.play, resolve(s, file), truthy(resolve(s, loop)), False)

    @action("playFileFront", split=",", arity=(1, 2))
    def play_file_front(self, s: Any, file: str = "", loop: str = "") -> Any:
        return media_call(s, s.backend.play, resolve(s, file), truthy(resolve(s, loop)), True)

    def _silence(self, s: Any, ms: str, front: bool) -> None:
        v = resolve(s, ms)
        if not v.isdigit():
            raise DSMException("core", {"text": f"playSilence: bad length {v!r}"})
        media_call(s, s.backend.play_silence, int(v), front)

    @action("playSilence", arity=(1, 1))
    def play_silence(self, s: Any, ms: str = "") -> None:
        self._silence(s, ms, False)

    @action("playSilenceFront", arity=(1, 1))
    def play_silence_front(self, s: Any, ms: str = "") -> None:
        self._silence(s, ms, True)

    @action("playRingtone", split=",", arity=(1, 2))
    def play_ringtone(self, s: Any, name: str = "", front: str = "") -> None:
        r = var_name(name)
        vals = []
        for field_, default in (("length", "0"), ("on", "1000"), ("off", "4000"),
                                ("f", "440"), ("f2", "0")):
            v = s.var.get(f"{r}.{field_}", default) or default
            if not v.lstrip("-").isdigit():
                raise DSMException("core", {"text": f"playRingtone: bad ${r}.{field_}"})
            vals.append(int(v))
        media_call(s, s.backend.play_ringtone, *vals, truthy(resolve(s, front)))

    @action("recordFile", arity=(1, 1))
    def record_file(self, s: Any, file: str = "") -> Any:
        return media_call(s, s.backend.record, resolve(s, file), None)

    @action("stopRecord", split="none", arity=(0, 0))
    def stop_record(self, s: Any) -> None:
        if media_call(s, s.backend.stop_record):
            s.set_errno("")
        else:
            s.set_errno("script", "stopRecord: no recording running")

    @action("getRecordLength", arity=(0, 1))
    def get_record_length(self, s: Any, name: str = "") -> None:
        s.var[var_name(name) if name else "record_length"] = str(s.backend.record_length())

    @action("getRecordDataSize", arity=(0, 1))
    def get_record_data_size(self, s: Any, name: str = "") -> None:
        s.var[var_name(name) if name else "record_data_size"] = str(s.backend.record_data_size())

    @action("flushPlaylist", split="none", arity=(0, 0))
    @action("closePlaylist", split="none", arity=(0, 0))
    def flush_playlist(self, s: Any) -> None:
        """Drop queued items and stop playback; no noAudio event."""
        s.backend.flush_playlist()

    @action("addSeparator", split=",", arity=(1, 2))
    def add_separator(self, s: Any, sep_id: str = "", front: str = "") -> None:
        s.backend.add_separator(resolve(s, sep_id), truthy(resolve(s, front)))

    def _plumbing(self, s: Any, op: str, arg: str = "") -> None:
        s.backend.media(op, resolve(s, arg) if arg else "")

    for _op in ("setInOutPlaylist", "setInputPlaylist", "setOutputPlaylist", "connectMedia",
                "disconnectMedia", "mute", "unmute", "enableReceiving", "disableReceiving",
                "enableForceDTMFReceiving", "disableForceDTMFReceiving", "monitorRTPTimeout",
                "enableDTMFDetection", "disableDTMFDetection"):
        def _mk(op: str) -> Any:
            @action(op, arity=(0, 1))
            def plumbing(self: Any, s: Any, arg: str = "") -> None:
                self._plumbing(s, op, arg)
            plumbing.__name__ = "media_" + op
            return plumbing
        locals()["media_" + _op] = _mk(_op)
    del _op, _mk

    @staticmethod
    def _dtmf_code(k: str) -> int | None:
        if k.isdigit() and 0 <= int(k) <= 15:
            return int(k)
        return _DTMF.get(k.upper()) if len(k) == 1 else None

    @action("sendDTMF", split=",", arity=(1, 2))
    def send_dtmf(self, s: Any, key: str = "", ms: str = "") -> None:
        k = resolve(s, key)
        code = self._dtmf_code(k)
        dur = resolve(s, ms) if ms else "500"
        if code is None or not dur.isdigit():
            raise DSMException("core", {"text": f"sendDTMF: bad key {k!r} or duration"})
        s.backend.send_dtmf(code, int(dur))

    @action("sendDTMFSequence", split=",", arity=(1, 2))
    def send_dtmf_sequence(self, s: Any, seq: str = "", ms: str = "") -> None:
        dur = resolve(s, ms) if ms else "500"
        if not dur.isdigit():
            raise DSMException("core", {"text": "sendDTMFSequence: bad duration"})
        for ch in resolve(s, seq):
            code = self._dtmf_code(ch)
            if code is None:
                raise DSMException("core", {"text": f"sendDTMFSequence: bad key {ch!r}"})
            s.backend.send_dtmf(code, int(dur))

    # -- DI (⚑D8: a registry of Python callables on the engine) -----------------------------
    def _di_args(self, s: Any, raw: list[str]) -> list[Any]:
        out: list[Any] = []
        for a in raw:
            if a.startswith('"') and a.endswith('"') and len(a) >= 2:
                out.append(a[1:-1])
            elif a.startswith("(int)"):
                out.append(int(resolve(s, a[5:]) or 0))
            elif a.startswith("(array)"):
                n = var_name(a[7:])
                arr, i = [], 0
                while f"{n}[{i}]" in s.var:
                    arr.append(s.var[f"{n}[{i}]"])
                    i += 1
                out.append(arr)
            elif a.startswith("(struct)"):
                n = var_name(a[8:]) + "."
                out.append({k[len(n):]: v for k, v in s.var.items() if k.startswith(n)})
            elif a.startswith("(json)"):
                out.append(json.loads(resolve(s, a[6:])))
            else:
                out.append(resolve(s, a))
        return out

    def _di(self, s: Any, args: tuple, mode: str) -> None:
        if len(args) < 2:
            s.set_errno("arg", "DI needs an interface and a function")
            return
        iface, fn = resolve(s, args[0]), resolve(s, args[1])
        registry = getattr(s.app.engine, "di_functions", {}) if s.app.engine else {}
        f = registry.get((iface, fn))
        if f is None:
            raise DSMException("di", {"text": f"DI interface {iface}.{fn} not found"})
        res = f(*self._di_args(s, list(args[2:])))
        if mode == "none":
            return
        for k in [k for k in s.var if k.startswith("DI_res")]:
            del s.var[k]
        values = res if isinstance(res, (list, tuple)) else [res]
        if mode == "array":
            for i, v in enumerate(values):
                s.var[f"DI_res[{i}]"] = str(v)
            s.var["DI_res_size"] = str(len(values))
        elif isinstance(res, (list, tuple)):
            for i, v in enumerate(values):
                s.var[f"DI_res{i}"] = str(v)
        else:
            s.var["DI_res"] = str(res)

    @action("DI", split="list", arity=(2, 99))
    def di(self, s: Any, *args: str) -> None:
        self._di(s, args, "none")

    @action("DIgetResult", split="list", arity=(2, 99))
    def di_get_result(self, s: Any, *args: str) -> None:
        self._di(s, args, "plain")

    @action("DIgetResultArray", split="list", arity=(2, 99))
    def di_get_result_array(self, s: Any, *args: str) -> None:
        self._di(s, args, "array")

    # -- B2B --------------------------------------------------------------------------------
    def _b2b(self, s: Any) -> dict:
        return s.module_state("core.b2b", lambda: {"headers": []})

    @action("B2B.connectCallee", split=",", arity=(2, 2))
    def b2b_connect_callee(self, s: Any, party: str = "", uri: str = "") -> Any:
        relayed = truthy(s.var.get("b2b_relayed_invite", ""))
        return media_call(s, s.backend.b2b_connect, resolve(s, party), resolve(s, uri), relayed)

    @action("B2B.terminateOtherLeg", split="none", arity=(0, 0))
    def b2b_terminate_other_leg(self, s: Any) -> None:
        s.backend.b2b_terminate_other()

    @action("B2B.sendReinvite", arity=(0, 1))
    @action("B2B.enableEarlyMediaRelay", arity=(0, 1))
    @action("B2B.setRelayOnly", arity=(0, 1))
    def b2b_plumbing(self, s: Any, arg: str = "") -> None:
        s.backend.media("B2B", resolve(s, arg) if arg else "")

    @action("B2B.addHeader", arity=(1, 1))
    def b2b_add_header(self, s: Any, hdr: str = "") -> None:
        self._b2b(s)["headers"].append(s.interpolate(hdr))

    @action("B2B.removeHeader", arity=(1, 1))
    def b2b_remove_header(self, s: Any, name: str = "") -> None:
        n = resolve(s, name).lower() + ":"
        st = self._b2b(s)
        st["headers"] = [h for h in st["headers"] if not h.lower().startswith(n)]

    @action("B2B.clearHeaders", split="none", arity=(0, 0))
    def b2b_clear_headers(self, s: Any) -> None:
        self._b2b(s)["headers"] = []

    @action("B2B.setHeaders", split=",", arity=(1, 2))
    def b2b_set_headers(self, s: Any, hdrs: str = "", replace_crlf: str = "") -> None:
        text = resolve(s, hdrs)
        if truthy(resolve(s, replace_crlf)):
            text = text.replace("\\r\\n", "\r\n")
        self._b2b(s)["headers"] = [h for h in text.split("\r\n") if h]

    @action("B2B.relayEvent", arity=(0, 1))
    def b2b_relay_event(self, s: Any, names: str = "") -> None:
        peer = self._b2b(s).get("peer")
        if not peer:
            raise DSMException("script", {"text": "B2B.relayEvent: no other leg"})
        params = {n: s.var.get(n, "") for n in (x.strip() for x in names.split(";")) if n}
        s.registry.post_event(peer, params, kind="B2Bevent")

    # -- objects ----------------------------------------------------------------------------
    @action("trackObject", arity=(0, 1))
    @action("releaseObject", arity=(0, 1))
    @action("freeObject", arity=(0, 1))
    def objects(self, s: Any, name: str = "") -> None:
        """Object lifetime management: nothing to do in Python."""
