"""DSM configuration and the Engine: `dsm.conf`, app bundles (`conf_dir`), loading diagrams,
hot reload, and creating sessions (spec §3).

An `Engine` holds the current `DSMApplicationSet` (an immutable snapshot of loaded bundles
and registered applications). New calls get the current set; running sessions keep the
`AppContext` they were created with, so a reload never changes a call in progress. A reload
that fails leaves the old set in place and reports why.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from twisted.logger import Logger

from .backend import DialRequest
from .checker import check_script
from .diagram import Diagram, ModuleSet, Problem, compile_script
from .errors import DSMConfigError, DSMLoadError, DSMSyntaxError
from .model import Pos
from .parser import parse_file, parse_text
from .runtime import AppContext, MonitoringStore, Session, SessionRegistry

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from .backend import DSMCallBackend

__all__ = ["read_conf", "conf_list", "conf_bool", "Bundle", "DSMApplicationSet", "Engine",
           "SystemBackend"]

log = Logger(namespace="yaypm.dsm.config")

#: dsm.conf keys that concern diagrams, modules and prompts (also valid in bundles).
DIAGRAM_KEYS = ("diag_path", "load_diags", "register_apps", "mod_path", "preload_mods",
                "load_prompts", "required_prompts", "prompts_sets_path", "load_prompts_sets",
                "run_invite_event", "set_param_variables", "run_system_dsms", "dsm_init_mode",
                "inbound_start_diag", "outbound_start_diag")


def read_conf(path: str, _seen: tuple[str, ...] = ()) -> dict[str, str]:
    """Read a SEMS-style `key=value` file (spec §3.1). Raises DSMConfigError(file, line)."""
    real = os.path.realpath(path)
    if real in _seen:
        raise DSMConfigError(f"@include cycle: {' -> '.join(_seen + (real,))}", path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise DSMConfigError(str(e), path) from None
    out: dict[str, str] = {}
    for no, raw in enumerate(lines, 1):
        line = raw.strip(" \t\r")
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            inc = line[1:].strip()
            if not os.path.isabs(inc):
                inc = os.path.join(os.path.dirname(path), inc)
            out.update(read_conf(inc, _seen + (real,)))
            continue
        key, sep, rest = line.partition("=")
        key = key.strip(" \t")
        if not sep or not key or any(c in key for c in " \t#"):
            raise DSMConfigError(f"not a key=value line: {raw!r}", path, no)
        value = _conf_value(rest.lstrip(" \t"))
        if key in out:
            log.warn("{file}:{line}: {key} set again, overriding", file=path, line=no, key=key)
        out[key] = value
    return out


def _conf_value(rest: str) -> str:
    if rest.startswith('"'):
        out = []
        i = 1
        while i < len(rest):
            c = rest[i]
            if c == "\\" and i + 1 < len(rest) and rest[i + 1] == '"':
                out.append('\\"')          # \" keeps both characters (SEMS)
                i += 2
                continue
            if c == '"':
                break
            out.append(c)
            i += 1
        return "".join(out)
    end = len(rest)
    for i, c in enumerate(rest):
        if c in " \t#":
            end = i
            break
    return rest[:end]


def conf_list(value: str) -> list[str]:
    """List values split at ',', empty items dropped, no trimming (spec §3.1)."""
    return [v for v in value.split(",") if v]


def conf_bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.lower() in ("yes", "true", "1", "on")


@dataclass(eq=False)
class Bundle:
    """One app bundle: its conf keys, its private diagrams and the apps it registers."""

    name: str
    conf: dict[str, str]
    diagrams: dict[str, Diagram] = field(default_factory=dict)
    apps: list[str] = field(default_factory=list)
    prompts: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    system_diags: list[str] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class DSMApplicationSet:
    """An immutable snapshot: bundles by name ("" = main dsm.conf) and apps by name."""

    bundles: dict[str, Bundle]
    apps: dict[str, AppContext]
    errors: tuple[str, ...] = ()

    def diagram(self, name: str, bundle: str = "") -> Diagram | None:
        b = self.bundles.get(bundle)
        return b.diagrams.get(name) if b else None


class SystemBackend:
    """Backend of call-less (system) DSMs: call and media actions throw `core`."""

    def attach(self, session: Any) -> None:
        self.session = session

    def release(self) -> None:
        pass

    def session_ended(self, session: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        from .backend import MediaError

        def fail(*args: Any, **kw: Any) -> Any:
            raise MediaError("core", f"{name}: not available in a system DSM")
        return fail


class Engine:
    """Loads DSM configuration and diagrams, creates sessions, reloads without touching
    running calls.

    `clock`: IReactorTime for timers (tests pass `task.Clock()`); `sql_connect(url)` returns
    an SQLExecutor for mod_mysql (default: yaypm.dsm.sql.connect_url); `strict` turns
    checker warnings into errors. `di_functions[(interface, function)]` are DSM DI targets.
    `monitoring`: where sessions keep their monitoring records (default: a `MonitoringStore`
    in memory; `yaypm.monitor.dsm_bridge.RegistryMonitoringStore` keeps them in a
    `CallRegistry`); the conf's `monitoring_full_stategraph`/`_transitions=yes` turn the
    store's options on.
    """

    def __init__(self, conf_path: str | None = None, *, conf: dict[str, str] | None = None,
                 clock: IReactorTime | None = None,
                 sql_connect: Callable[[str], Any] | None = None, strict: bool = False,
                 extra_modules: dict | None = None,
                 monitoring: MonitoringStore | None = None) -> None:
        self.conf_path = conf_path
        self.conf = dict(conf or {})
        if conf_path:
            self.conf = read_conf(conf_path)
        self.strict = strict
        self.sql_connect = sql_connect
        self.di_functions: dict[tuple[str, str], Callable[..., Any]] = {}
        if monitoring is None:
            monitoring = MonitoringStore()
        if conf_bool(self.conf.get("monitoring_full_stategraph")):
            monitoring.full_stategraph = True
        if conf_bool(self.conf.get("monitoring_full_transitions")):
            monitoring.full_transitions = True
        self.registry = SessionRegistry(clock, monitoring)
        self.modules = ModuleSet(self, extra_modules)
        self.app_set = DSMApplicationSet({}, {})
        self._bundle_sources: dict[str, tuple[str, dict[str, str]]] = {}

    @property
    def monitoring(self) -> MonitoringStore:
        """The sessions' monitoring store (the one `registry` writes to). Replacing it
        affects sessions created afterwards only; pass `monitoring=` instead where you can."""
        return self.registry.monitoring

    @monitoring.setter
    def monitoring(self, store: MonitoringStore) -> None:
        self.registry.monitoring = store

    # -- loading ----------------------------------------------------------------------------
    def load(self) -> DSMApplicationSet:
        """(Re)load everything from the configuration; raises DSMLoadError if the main
        configuration fails. Failing bundles are skipped and listed in `app_set.errors`."""
        bundles: dict[str, Bundle] = {}
        errors: list[str] = []
        main = self._load_bundle("", self.conf, os.path.dirname(self.conf_path or ""))
        bundles[""] = main
        conf_dir = self.conf.get("conf_dir", "")
        if conf_dir and os.path.isdir(conf_dir):
            for fn in sorted(os.listdir(conf_dir)):
                if not fn.endswith(".conf"):
                    continue
                path = os.path.join(conf_dir, fn)
                name = fn[:-5]
                try:
                    bconf = read_conf(path)
                    bundles[name] = self._load_bundle(name, bconf, conf_dir)
                    self._bundle_sources[name] = (path, bconf)
                except (DSMConfigError, DSMLoadError) as e:
                    old = self.app_set.bundles.get(name)
                    if old is not None:
                        bundles[name] = old        # a failing reload keeps the running version
                        errors.append(f"bundle {name} ({path}) not reloaded, old version kept: {e}")
                    else:
                        errors.append(f"bundle {name} ({path}) skipped: {e}")
                    log.error("DSM bundle {bundle}: {error}", bundle=name, error=str(e))
        self.app_set = self._make_set(bundles, tuple(errors))
        return self.app_set

    def _load_bundle(self, name: str, conf: dict[str, str], base: str) -> Bundle:
        b = Bundle(name, dict(conf))
        diag_path = conf.get("diag_path", "")
        if diag_path and not os.path.isabs(diag_path):
            diag_path = os.path.join(base, diag_path)
        for mod in conf_list(conf.get("preload_mods", "")):
            try:
                self.modules.get(mod.strip())
            except KeyError as e:
                raise DSMConfigError(f"preload_mods: {e.args[0]}", name or (self.conf_path or ""))
        problems: list[Problem] = []
        system = set(conf_list(conf.get("run_system_dsms", "")))
        for d in conf_list(conf.get("load_diags", "")):
            path = os.path.join(diag_path, d + ".dsm")
            try:
                script = parse_file(path, diag_path or None, d)
            except DSMSyntaxError as e:
                problems.append(Problem(e.pos, "error", e.render()))
                continue
            except OSError as e:
                problems.append(Problem(Pos(path, 0, 0), "error", f"cannot read diagram: {e}"))
                continue
            probs = check_script(script, self.modules, self.strict, system=d in system)
            if conf_bool(conf.get("dsm_consistency_check"), True) is False:
                probs = [p for p in probs if p.severity == "error"]
            problems.extend(probs)
            diagram, _ = compile_script(script, self.modules)
            b.diagrams[d] = diagram
        errs = [p for p in problems if p.severity == "error"]
        if errs:
            raise DSMLoadError(errs)
        b.warnings = [p for p in problems if p.severity != "error"]
        for w in b.warnings:
            log.warn("{problem}", problem=str(w))
        for app in conf_list(conf.get("register_apps", "")):
            if app not in b.diagrams:
                raise DSMLoadError([Problem(Pos(self.conf_path or name, 0, 0), "error",
                                            f"register_apps: diagram '{app}' is not loaded")])
            b.apps.append(app)
        b.system_diags = [d for d in system if d]
        b.prompts = self._load_prompts(conf, base)
        return b

    def _load_prompts(self, conf: dict[str, str], base: str) -> dict[str, dict[str, str]]:
        prompts: dict[str, dict[str, str]] = {}
        for f in conf_list(conf.get("load_prompts", "")):
            path = f if os.path.isabs(f) else os.path.join(base, f)
            prompts.setdefault("", {}).update(read_conf(path))
        sets_path = conf.get("prompts_sets_path", "")
        for s in conf_list(conf.get("load_prompts_sets", "")):
            path = os.path.join(sets_path, s + ".conf")
            prompts[s] = read_conf(path)
        for req in conf_list(conf.get("required_prompts", "")):
            if req not in prompts.get("", {}):
                raise DSMConfigError(f"required prompt '{req}' not loaded")
        return prompts

    def _make_set(self, bundles: dict[str, Bundle], errors: tuple[str, ...]) -> DSMApplicationSet:
        apps: dict[str, AppContext] = {}
        for bname, b in bundles.items():
            legacy = b.conf.get("dsm_init_mode", self.conf.get("dsm_init_mode", "")) == "legacy"
            for app in b.apps:
                ctx = AppContext(
                    name=app, diagram=b.diagrams[app], diagrams=b.diagrams,
                    config=dict(b.conf), legacy=legacy,
                    run_invite_event=conf_bool(b.conf.get("run_invite_event"), True),
                    set_param_variables=conf_bool(b.conf.get("set_param_variables")),
                    bundle=bname, engine=self)
                ctx.prompts = b.prompts  # type: ignore[attr-defined]
                apps[app] = ctx
        return DSMApplicationSet(bundles, apps, errors)

    def reload(self) -> tuple[bool, str]:
        """Re-read the configuration and all diagrams (DI `reloadDSMs`). New calls get the
        new set; on failure the old set (or, for a failing bundle, its old version) stays and
        the reason is returned."""
        old_conf, old_set = self.conf, self.app_set
        try:
            if self.conf_path:
                self.conf = read_conf(self.conf_path)
            new = self.load()
        except (DSMConfigError, DSMLoadError) as e:
            self.conf, self.app_set = old_conf, old_set
            log.error("DSM reload failed, keeping the running set: {error}", error=str(e))
            return False, str(e)
        if new.errors:
            return False, "; ".join(new.errors)
        return True, "DSMs reloaded"

    def load_config(self, file: str, name: str) -> tuple[int, str]:
        """(Re)load one bundle from `file` under `name` (DI `loadConfig`; `.conf` stripped)."""
        if name.endswith(".conf"):
            name = name[:-5]
        try:
            bconf = read_conf(file)
            bundle = self._load_bundle(name, bconf, os.path.dirname(file))
        except (DSMConfigError, DSMLoadError) as e:
            log.error("loadConfig {file} failed: {error}", file=file, error=str(e))
            return 500, f"reload config failed: {e}"
        bundles = dict(self.app_set.bundles)
        bundles[name] = bundle
        self._bundle_sources[name] = (file, bconf)
        self.app_set = self._make_set(bundles, self.app_set.errors)
        return 200, "OK"

    @classmethod
    def from_scripts(cls, scripts: dict[str, str], *, config: dict[str, str] | None = None,
                     clock: IReactorTime | None = None, legacy: bool = False,
                     sql_connect: Callable[[str], Any] | None = None,
                     strict: bool = False, conf: dict[str, str] | None = None,
                     monitoring: MonitoringStore | None = None) -> "Engine":
        """An engine whose one bundle holds `scripts` (name → DSM text), all registered as
        apps; `config` becomes `$config.*`. Raises DSMLoadError/DSMSyntaxError (tests, REPL)."""
        eng = cls(conf=conf, clock=clock, sql_connect=sql_connect, strict=strict,
                  monitoring=monitoring)
        b = Bundle("", dict(config or {}))
        problems: list[Problem] = []
        for name, text in scripts.items():
            script = parse_text(text, f"{name}.dsm")
            problems += [p for p in check_script(script, eng.modules, strict)
                         if p.severity == "error"]
            b.diagrams[name], _ = compile_script(script, eng.modules)
            b.apps.append(name)
        if problems:
            raise DSMLoadError(problems)
        if legacy:
            b.conf["dsm_init_mode"] = "legacy"
        eng.app_set = eng._make_set({"": b}, ())
        return eng

    # -- sessions ---------------------------------------------------------------------------
    def app(self, name: str) -> AppContext:
        """The AppContext new calls of application `name` get (KeyError if unknown). The
        generic app `dsm` runs `inbound_start_diag`."""
        apps = self.app_set.apps
        if name in apps:
            return apps[name]
        if name == "dsm":
            diag = self.conf.get("inbound_start_diag", "")
            if diag in apps:
                return apps[diag]
        raise KeyError(f"unknown DSM application '{name}'")

    def create_session(self, app: str | AppContext, backend: DSMCallBackend, *,
                       session_id: str | None = None, direction: str = "in",
                       selects: dict[str, str] | None = None,
                       variables: dict[str, str] | None = None,
                       app_params: str = "") -> Session:
        """Create a session for a call leg; call `.start()` (modern model) or feed
        `.invite()` next. `app_params` is the P-App-Param header (`k=v;k2=v2`), turned into
        variables if the app has `set_param_variables=yes`."""
        ctx = app if isinstance(app, AppContext) else self.app(app)
        vars_ = dict(variables or {})
        if app_params and ctx.set_param_variables:
            for pair in app_params.split(";"):
                k, sep, v = pair.partition("=")
                if sep and k.strip():
                    vars_[k.strip()] = v.strip()
        return Session(ctx, backend, self.registry, session_id, direction, selects, vars_)

    def dialout(self, parent: Session, request: DialRequest) -> Session:
        """`dlg.dialout`: ask the parent's backend for a new leg and start a session for it
        running `request.app` from the parent's bundle (so it gets the same `$config.*`)."""
        bundle = self.app_set.bundles.get(parent.app.bundle)
        ctx = None
        if bundle is not None and request.app in bundle.diagrams:
            ctx = self.app_set.apps.get(request.app)
            if ctx is None or ctx.bundle != parent.app.bundle:
                ctx = AppContext(request.app, bundle.diagrams[request.app], bundle.diagrams,
                                 dict(bundle.conf), parent.app.legacy, parent.app.run_invite_event,
                                 parent.app.set_param_variables, parent.app.bundle, self)
                ctx.prompts = bundle.prompts  # type: ignore[attr-defined]
        if ctx is None:
            ctx = self.app(request.app)
        backend = parent.backend.dial(request)
        selects = {"user": request.callee, "domain": request.domain,
                   "local_uri": request.target_uri,
                   "local_party": request.to or f"<sip:{request.callee}@{request.domain}>",
                   "remote_party": request.from_ or f"<sip:{request.caller}@{request.domain}>",
                   "remote_uri": request.from_uri or f"sip:{request.caller}@{request.domain}"}
        s = Session(ctx, backend, self.registry, request.ltag, "out", selects,
                    dict(request.variables))
        if ctx.legacy:
            s.invite()
        else:
            s.start()
        return s

    def create_system_session(self, bundle: str, diagram: str) -> Session:
        """Start a call-less DSM (`createSystemDSM`, `run_system_dsms`): it gets `startup`."""
        b = self.app_set.bundles.get(bundle)
        if b is None or diagram not in b.diagrams:
            raise KeyError(f"no diagram '{diagram}' in bundle '{bundle}'")
        ctx = AppContext(diagram, b.diagrams[diagram], b.diagrams, dict(b.conf), bundle=bundle,
                         engine=self)
        ctx.prompts = b.prompts  # type: ignore[attr-defined]
        s = Session(ctx, SystemBackend(), self.registry, direction="system")
        s._started = True
        s.post_event("__init__", None)
        s.post_event("startup", {})
        return s

    def start_system_dsms(self) -> list[Session]:
        """Start every `run_system_dsms` diagram of every bundle."""
        return [self.create_system_session(bname, d)
                for bname, b in self.app_set.bundles.items() for d in b.system_diags]
