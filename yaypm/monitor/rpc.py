"""SEMS-compatible XML-RPC: monitoring (dsm-language.md §3.5) and DSM control (§3.4).

Methods are served at the top level, as SEMS does with ``direct_export=dsm;monitoring``
(``s.calls()``, ``s.getAttributeActive("dsm_state")``, ``s.loadConfig(file, app)``), and through
``di(interface, method, args...)``.  Result shapes follow SEMS, including its answers for unknown
sessions where the spec gives one (``get`` -> ``[]``, ``postDSMEvent`` -> ``[404, ...]``); every
other mistake — unknown method, wrong argument count or type, unknown id for a call that has no
"not found" answer, a control call that takes too long — is an XML-RPC fault.  Nothing a client
sends can raise out of a method or leave its request unanswered.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable, Dict, List, Optional, Sequence

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.xmlrpc import XMLRPC, Fault, NoSuchFunction

from yaypm.monitor.control import ControlError, ControlTarget, NullControl
from yaypm.registry import CallRecord, CallRegistry

__all__ = ["MonitorRPC", "to_xmlrpc", "BAD_ARGUMENTS", "UNKNOWN_ID", "TIMED_OUT"]

# Fault codes: SEMS-like numbers for our own faults; Twisted's 8001/8002 for unknown method and
# undecodable request.
BAD_ARGUMENTS = 400
UNKNOWN_ID = 404
TIMED_OUT = 504

# Characters XML 1.0 cannot carry, plus lone surrogates (surrogateescape'd bytes from Yate).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_MAX_DEPTH = 16


def _text(s: str) -> str:
    return _NOT_XML.sub("\ufffd", s)


def to_xmlrpc(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` that XML-RPC can marshal: None -> "", big ints and objects -> str,
    text cleaned of what XML cannot hold (replaced by U+FFFD)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -2**31 <= value < 2**31 else str(value)
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bytes):
        return _text(value.decode("utf-8", "replace"))
    if _depth < _MAX_DEPTH:
        if isinstance(value, (list, tuple)):
            return [to_xmlrpc(v, _depth + 1) for v in value]
        if isinstance(value, dict):
            return {_text(str(k)): to_xmlrpc(v, _depth + 1) for k, v in value.items()}
    return _text(str(value))


def _str_arg(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise Fault(BAD_ARGUMENTS, f"{name} must be a string, not {type(value).__name__}")


def _app_name(name: str) -> str:
    # SEMS cuts 5 characters off (it expects "x.conf"); we strip ".conf" only when present.
    return name[:-5] if name.endswith(".conf") else name


class MonitorRPC(XMLRPC):
    """The XML-RPC resource: a method table over a `CallRegistry` and a `ControlTarget`.

    ``control_timeout`` (seconds) bounds how long a control call may take; ``clock`` times it.
    """

    log = Logger()

    def __init__(self, registry: CallRegistry, control: Optional[ControlTarget] = None,
                 clock: Any = None, control_timeout: float = 30.0) -> None:
        super().__init__(allowNone=False)
        self.registry = registry
        self.control = control if control is not None else NullControl()
        self.control_timeout = control_timeout
        self._clock = clock
        self._procs: Dict[str, Callable[..., Any]] = {
            # monitoring (§3.5)
            "calls": self.calls,
            "list": self.list_all, "listActive": self.list_active,
            "listFinished": self.list_finished,
            "get": self.get, "getSingle": self.get_single,
            "getAttribute": self.get_attribute,
            "getAttributeActive": self.get_attribute_active,
            "getAttributeFinished": self.get_attribute_finished,
            "listByFilter": self.list_by_filter,
            "set": self.set, "log": self.set, "add": self.add, "logAdd": self.add,
            "inc": self.inc, "dec": self.dec, "markFinished": self.mark_finished,
            "erase": self.erase, "clear": self.erase, "clearFinished": self.clear_finished,
            # DSM control (§3.4)
            "loadConfig": self.load_config, "reloadDSMs": self.reload_dsms,
            "postDSMEvent": self.post_dsm_event,
            "loadDSM": self.load_dsm, "loadDSMWithPaths": self.load_dsm_with_paths,
            "loadDSMWithPath": self.load_dsm_with_paths,
            "preloadModules": self.preload_modules, "preloadModule": self.preload_module,
            "hasDSM": self.has_dsm, "listDSMs": self.list_dsms,
            "registerApplication": self.register_application,
            "createSystemDSM": self.create_system_dsm,
            "di": self.di,
        }
        self._monitoring = {n for n in ("calls", "list", "listActive", "listFinished", "get",
                                        "getSingle", "getAttribute", "getAttributeActive",
                                        "getAttributeFinished", "listByFilter", "set", "log",
                                        "add", "logAdd", "inc", "dec", "markFinished", "erase",
                                        "clear", "clearFinished")}

    # -- Twisted's lookup, through our table --------------------------------------------------
    def lookupProcedure(self, procedurePath: str) -> Callable[..., Any]:
        proc = self._procs.get(procedurePath)
        if proc is None:
            raise NoSuchFunction(self.NOT_FOUND, f"procedure {procedurePath} not found")
        return lambda *args: self._call(procedurePath, proc, args)

    def listProcedures(self) -> List[str]:
        return sorted(self._procs)

    def _call(self, name: str, proc: Callable[..., Any], args: Sequence[Any]) -> Any:
        try:
            inspect.signature(proc).bind(*args)
        except TypeError as e:
            raise Fault(BAD_ARGUMENTS, f"{name}: {e}") from None
        result = proc(*args)
        if isinstance(result, Deferred):
            return result
        return to_xmlrpc(result)

    # -- monitoring ---------------------------------------------------------------------------
    def calls(self) -> int:
        return len(self.registry.active)

    def list_all(self) -> List[str]:
        return self.registry.list_all()

    def list_active(self) -> List[str]:
        return self.registry.list_active()

    def list_finished(self) -> List[str]:
        return self.registry.list_finished()

    def get(self, call_id: Any) -> List[Dict[str, Any]]:
        rec = self._find(call_id)
        return [] if rec is None else [rec.attrs]

    def get_single(self, call_id: Any, attr: Any) -> List[Any]:
        rec = self._find(call_id)
        attr = _str_arg("attribute", attr)
        if rec is None or attr not in rec.attrs:
            return []
        return [rec.attrs[attr]]

    def _attribute(self, attr: Any, records: Sequence[CallRecord]) -> List[List[Any]]:
        # Every session appears, "" when it lacks the attribute (§3.5: never nil).
        attr = _str_arg("attribute", attr)
        return [[r.id, r.attrs.get(attr, "")] for r in records]

    def get_attribute(self, attr: Any) -> List[List[Any]]:
        reg = self.registry
        reg.list_finished()             # prunes expired history
        return self._attribute(attr, [*reg.active.values(), *reg.finished.values()])

    def get_attribute_active(self, attr: Any) -> List[List[Any]]:
        return self._attribute(attr, list(self.registry.active.values()))

    def get_attribute_finished(self, attr: Any) -> List[List[Any]]:
        self.registry.list_finished()
        return self._attribute(attr, list(self.registry.finished.values()))

    def list_by_filter(self, *pairs: Any) -> List[str]:
        wanted = []
        for p in pairs:
            if not isinstance(p, list) or len(p) != 2:
                raise Fault(BAD_ARGUMENTS, "listByFilter takes [attribute, value] pairs")
            wanted.append((_str_arg("attribute", p[0]), _str_arg("value", p[1])))
        reg = self.registry
        reg.list_finished()
        return [r.id for r in [*reg.active.values(), *reg.finished.values()]
                if all(k in r.attrs and str(r.attrs[k]) == v for k, v in wanted)]

    def _find(self, call_id: Any) -> Optional[CallRecord]:
        if not isinstance(call_id, str):
            raise Fault(BAD_ARGUMENTS, f"call id must be a string, not {type(call_id).__name__}")
        return self.registry.get(call_id)

    def _must_find(self, call_id: Any) -> CallRecord:
        rec = self._find(call_id)
        if rec is None:
            raise Fault(UNKNOWN_ID, f"unknown call id {call_id!r}")
        return rec

    def set(self, call_id: Any, *pairs: Any) -> List[Any]:
        rec = self._must_find(call_id)
        if not pairs or len(pairs) % 2:
            raise Fault(BAD_ARGUMENTS, "set takes a call id and attribute, value pairs")
        attrs = {_str_arg("attribute", k): v for k, v in zip(pairs[::2], pairs[1::2])}
        self.registry.set(rec.id, **attrs)
        return [0, "OK"]

    def add(self, call_id: Any, attr: Any, value: Any) -> List[Any]:
        rec = self._must_find(call_id)
        attr = _str_arg("attribute", attr)
        cur = rec.attrs.get(attr)
        cur = list(cur) if isinstance(cur, list) else ([] if cur is None else [cur])
        self.registry.set(rec.id, **{attr: cur + [value]})
        return [0, "OK"]

    def _step(self, call_id: Any, attr: Any, delta: int) -> List[Any]:
        rec = self._must_find(call_id)
        attr = _str_arg("attribute", attr)
        try:
            value = int(rec.attrs.get(attr, 0) or 0) + delta
        except (TypeError, ValueError):
            value = delta
        self.registry.set(rec.id, **{attr: value})
        return [0, "OK"]

    def inc(self, call_id: Any, attr: Any) -> List[Any]:
        return self._step(call_id, attr, 1)

    def dec(self, call_id: Any, attr: Any) -> List[Any]:
        return self._step(call_id, attr, -1)

    def mark_finished(self, call_id: Any) -> List[Any]:
        rec = self._must_find(call_id)
        self.registry.end(rec.id)
        return [0, "OK"]

    def erase(self, call_id: Any) -> List[Any]:
        rec = self._must_find(call_id)
        self.registry.active.pop(rec.id, None)
        self.registry.finished.pop(rec.id, None)
        return [0, "OK"]

    def clear_finished(self) -> List[Any]:
        self.registry.finished.clear()
        return [0, "OK"]

    # -- DSM control --------------------------------------------------------------------------
    def _control_call(self, method: str, args: Sequence[Any], ok: Callable[[Any], Any],
                      failed: str) -> Deferred:
        """Call ``control.<method>(*args)``; ``ok(result)`` shapes success, ``[code, reason]``
        a `ControlError`, ``[500, failed or str(e)]`` anything else; a timeout is a fault."""
        fn = getattr(self.control, method, None)
        if fn is None:
            return defer.succeed([500, f"{method} not supported by this DSM engine"])
        d = defer.maybeDeferred(fn, *args)
        if self.control_timeout is not None:
            d.addTimeout(self.control_timeout, self._reactor())
        d.addCallback(lambda r: to_xmlrpc(ok(r)))
        d.addErrback(self._control_failed, method, failed)
        return d

    def _control_failed(self, f: Failure, method: str, failed: str) -> List[Any]:
        if f.check(ControlError):
            return [f.value.code, _text(f.value.reason)]
        if f.check(defer.TimeoutError):
            self.log.warn("Control call {method} timed out", method=method)
            raise Fault(TIMED_OUT, f"{method} did not finish in {self.control_timeout} s")
        self.log.failure("Control call {method} failed", f, method=method)
        return [500, failed or _text(str(f.value))]

    def _reactor(self) -> Any:
        if self._clock is None:
            from twisted.internet import reactor
            self._clock = reactor
        return self._clock

    @staticmethod
    def _message(default: str) -> Callable[[Any], List[Any]]:
        return lambda r: [200, r if isinstance(r, str) and r else default]

    def load_config(self, conf_file: Any, app_name: Any) -> Deferred:
        args = (_str_arg("conf_file", conf_file), _app_name(_str_arg("app_name", app_name)))
        return self._control_call("load_config", args, lambda r: [200, "OK"],
                                  "reload config failed")

    def reload_dsms(self) -> Deferred:
        return self._control_call("reload", (), self._message("DSMs reloaded"), "")

    def post_dsm_event(self, call_id: Any, params: Any) -> Deferred:
        call_id = _str_arg("call id", call_id)
        if not isinstance(params, list):
            raise Fault(BAD_ARGUMENTS, "postDSMEvent takes a call id and [[name, value], ...]")
        event: Dict[str, str] = {}
        for p in params:
            if not isinstance(p, list) or len(p) != 2:
                raise Fault(BAD_ARGUMENTS, "event parameters must be [name, value] pairs")
            event[_str_arg("parameter name", p[0])] = _str_arg("parameter value", p[1])
        return self._control_call(
            "post_event", (call_id, event),
            lambda found: [200, "OK"] if found else [404, "Session not found"], "")

    def load_dsm(self, name: Any) -> Deferred:
        return self._control_call("load_dsm", (_str_arg("name", name),),
                                  self._message("DSM loaded"), "")

    def load_dsm_with_paths(self, name: Any, diag_path: Any, mod_path: Any) -> Deferred:
        args = (_str_arg("name", name), _str_arg("diag_path", diag_path),
                _str_arg("mod_path", mod_path))
        return self._control_call("load_dsm_with_paths", args, self._message("DSM loaded"), "")

    def preload_modules(self) -> Deferred:
        return self._control_call("preload_modules", (), self._message("modules preloaded"), "")

    def preload_module(self, name: Any, path: Any) -> Deferred:
        args = (_str_arg("name", name), _str_arg("path", path))
        return self._control_call("preload_module", args, self._message("module preloaded"), "")

    def has_dsm(self, name: Any, app: Any = None) -> Deferred:
        args = (_str_arg("name", name),) + (() if app is None else (_str_arg("app", app),))
        return self._control_call("has_dsm", args, lambda r: ["1" if r else "0"], "")

    def list_dsms(self, app: Any = None) -> Deferred:
        args = () if app is None else (_str_arg("app", app),)
        return self._control_call("list_dsms", args, lambda r: [str(n) for n in r or ()], "")

    def register_application(self, name: Any, app: Any = None) -> Deferred:
        args = (_str_arg("name", name),) + (() if app is None else (_str_arg("app", app),))
        return self._control_call("register_application", args,
                                  self._message("registered"), "")

    def create_system_dsm(self, bundle: Any, diagram: Any) -> Deferred:
        args = (_str_arg("bundle", bundle), _str_arg("diagram", diagram))
        return self._control_call("create_system_dsm", args, lambda r: [200, "OK"], "")

    # -- xmlrpc2di's generic entry --------------------------------------------------------------
    def di(self, interface: Any, method: Any, *args: Any) -> Any:
        """``di("dsm"|"monitoring", method, args...)``: the same methods as the top level."""
        interface = _str_arg("interface", interface)
        method = _str_arg("method", method)
        is_monitoring = method in self._monitoring
        if interface not in ("dsm", "monitoring") or method == "di" or \
                method not in self._procs or (interface == "monitoring") != is_monitoring:
            raise Fault(self.NOT_FOUND, f"no method {method} in DI interface {interface}")
        return self._call(method, self._procs[method], args)

