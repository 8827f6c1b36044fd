"""The monitoring server: one `Monitor` per process, listening on an endpoint string.

Off unless configured.  Bound to loopback unless ``allow_remote`` is set, and binding anywhere
else then also requires HTTP basic auth (a ``user:password`` file, `twisted.cred`): the control
calls load files and post events into calls.  Without auth, requests must name the server by
IP address or ``localhost`` in their Host header (defeats DNS rebinding), and XML-RPC takes only
``text/xml`` POSTs (defeats cross-site form posts).  Request bodies are limited to 1 MiB.
"""

from __future__ import annotations

import ipaddress
from configparser import ConfigParser
from dataclasses import dataclass, replace
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from twisted.application.service import Service
from twisted.cred.checkers import FilePasswordDB, ICredentialsChecker
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import guard, http, server
from twisted.web.resource import IResource, Resource
from zope.interface import implementer

from yaypm.monitor.control import ControlTarget, NullControl
from yaypm.monitor.metrics import Metrics
from yaypm.monitor.rpc import MonitorRPC
from yaypm.monitor.web import GraphCache, MonitorRoot, draw_record, graph_key
from yaypm.registry import CallRecord, CallRegistry, default_registry

__all__ = ["Monitor", "MonitorConfig", "MonitorConfigError", "MonitorService", "MonitorSite",
           "DEFAULT_ENDPOINT", "check_endpoint", "start_monitor"]

DEFAULT_ENDPOINT = "tcp:8090:interface=127.0.0.1"
MAX_BODY = 1 << 20

_log = Logger()


class MonitorConfigError(ValueError):
    """A monitoring option that cannot be honoured: ``option`` and why."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option}: {reason}")
        self.option = option
        self.reason = reason


# -- endpoint strings --------------------------------------------------------------------------
def _split(desc: str) -> List[str]:
    """Twisted endpoint syntax: ':' separates, backslash escapes."""
    parts, cur, i = [], [], 0
    while i < len(desc):
        ch = desc[i]
        if ch == "\\" and i + 1 < len(desc):
            cur.append(desc[i + 1])
            i += 2
            continue
        if ch == ":":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint(desc: str, allow_remote: bool = False) -> str:
    """The endpoint string to listen on: ``tcp``/``tcp6``/``ssl`` without an ``interface=``
    get loopback added; a non-loopback interface, or a kind we cannot check, needs
    ``allow_remote``.  Raises `MonitorConfigError`."""
    parts = _split(desc)
    kind = parts[0].lower()
    if kind == "unix":
        return desc
    if kind not in ("tcp", "tcp6", "ssl"):
        if not allow_remote:
            raise MonitorConfigError("listen", f"cannot check where {kind!r} endpoints listen; "
                                     "use tcp:PORT or set allow_remote")
        return desc
    interfaces = [p.split("=", 1)[1] for p in parts[1:] if p.startswith("interface=")]
    if not interfaces:
        return desc + (":interface=\\:\\:1" if kind == "tcp6" else ":interface=127.0.0.1")
    if not _is_loopback(interfaces[-1]) and not allow_remote:
        raise MonitorConfigError("listen", f"interface {interfaces[-1]} is not loopback; "
                                 "binding elsewhere needs --monitor-allow-remote (and auth)")
    return desc


# -- HTTP plumbing -----------------------------------------------------------------------------
class _BoundedRequest(server.Request):
    """Drops the connection of a request whose body passes `MAX_BODY`."""

    _seen = 0
    _refused = False

    def gotLength(self, length: Optional[int]) -> None:
        super().gotLength(length)
        if length is not None and length > MAX_BODY:
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._seen += len(data)
        if self._seen > MAX_BODY:
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self) -> None:
        if not self._refused:
            self._refused = True
            _log.warn("Request body over {limit} bytes from {peer}: connection closed",
                                 limit=MAX_BODY, peer=str(self.getClientAddress()))
            self.channel.transport.loseConnection()


class _Forbidden(Resource):
    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        request.setResponseCode(http.FORBIDDEN)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"unexpected Host header: use the server's IP address or localhost\n"


def _host_ok(header: Optional[bytes], allowed: Sequence[str]) -> bool:
    if not header:
        return True                         # HTTP/1.0 clients; a browser always sends one
    host = header.decode("latin-1").strip().lower()
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost" or host in allowed:
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class MonitorSite(server.Site):
    """A `Site` with bounded request bodies, an idle timeout, and (``allowed_hosts`` not
    None) a Host header check."""

    requestFactory = _BoundedRequest
    noisy = False

    def __init__(self, resource: Any, allowed_hosts: Optional[Sequence[str]] = None,
                 timeout: float = 60.0) -> None:
        super().__init__(resource, timeout=timeout)
        self.allowed_hosts = None if allowed_hosts is None else [h.lower() for h in allowed_hosts]

    def getResourceFor(self, request: server.Request) -> Any:
        if self.allowed_hosts is not None and \
                not _host_ok(request.getHeader(b"host"), self.allowed_hosts):
            return _Forbidden()
        return super().getResourceFor(request)


@implementer(IRealm)
class _Realm:
    def __init__(self, resource: Any) -> None:
        self._resource = resource

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Tuple:
        if IResource in interfaces:
            return IResource, self._resource, lambda: None
        raise NotImplementedError()


def password_checker(path: str) -> ICredentialsChecker:
    """Users from a file of ``user:password`` lines (re-read on each login; a password
    cannot contain ``:``)."""
    return FilePasswordDB(path, cache=False)


# -- the monitor -------------------------------------------------------------------------------
class Monitor:
    """Call registry + control target + metrics, served over HTTP.

    ``registry`` defaults to the process-wide `default_registry()`; ``control`` to a target
    that answers every DSM control call with 500.  ``graph`` is ``"auto"`` (Graphviz when
    installed, else the built-in drawing) or ``"builtin"``.  ``latency_sample_every``: one
    received message in this many is timed for the latency histogram (1 = all).
    """

    log = Logger()

    def __init__(self, registry: Optional[CallRegistry] = None,
                 control: Optional[ControlTarget] = None, *, clock: Any = None,
                 control_timeout: float = 30.0, graph: str = "auto",
                 latency_sample_every: int = 8) -> None:
        self.registry = registry if registry is not None else default_registry()
        self.control = control if control is not None else NullControl()
        self._clock = clock
        self.control_timeout = control_timeout
        self.use_dot = graph == "auto"
        self.metrics = Metrics(self.registry, latency_sample_every)
        self.rpc = MonitorRPC(self.registry, self.control, clock=clock,
                              control_timeout=control_timeout)
        self._graphs = GraphCache()

    def clock(self) -> Any:
        if self._clock is None:
            from twisted.internet import reactor
            self._clock = reactor
        return self._clock

    def now(self) -> float:
        return self.clock().seconds()

    def watch_dispatcher(self, dispatcher: Any) -> None:
        """Count a dispatcher's messages and time its handlers (see `Metrics`)."""
        self.metrics.watch_dispatcher(dispatcher)

    def watch_service(self, service: Any) -> None:
        """Count a `DispatcherService`'s connections, reconnects and messages."""
        self.metrics.watch_service(service)

    def resource(self) -> Resource:
        return MonitorRoot(self)

    def site(self, checkers: Iterable[ICredentialsChecker] = (),
             allowed_hosts: Optional[Sequence[str]] = ()) -> MonitorSite:
        """The HTTP site; with ``checkers``, every page needs HTTP basic auth (and the Host
        check is off, as auth already stops a rebinding page)."""
        root: Any = self.resource()
        checkers = list(checkers)
        if checkers:
            root = guard.HTTPAuthSessionWrapper(Portal(_Realm(root), checkers),
                                                [guard.BasicCredentialFactory("yaypm")])
            allowed_hosts = None
        return MonitorSite(root, allowed_hosts)

    def listen(self, endpoint: str = DEFAULT_ENDPOINT, *, reactor: Any = None,
               allow_remote: bool = False, checkers: Iterable[ICredentialsChecker] = (),
               allowed_hosts: Sequence[str] = ()) -> Deferred:
        """Listen on ``endpoint``; fires with the `IListeningPort`.  Errbacks with
        `MonitorConfigError` for a non-loopback address without ``allow_remote``, or for
        remote binding without ``checkers``."""
        from twisted.internet.endpoints import serverFromString
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        checkers = list(checkers)
        try:
            desc = check_endpoint(endpoint, allow_remote)
            if allow_remote and not checkers:
                raise MonitorConfigError("allow_remote", "remote access needs auth "
                                         "(--monitor-auth FILE of user:password lines)")
        except MonitorConfigError:
            return defer.fail()
        site = self.site(checkers, allowed_hosts)
        d = serverFromString(reactor, desc).listen(site)
        d.addCallback(self._listening, allow_remote)
        return d

    def _listening(self, port: IListeningPort, allow_remote: bool) -> IListeningPort:
        host = getattr(port.getHost(), "host", None)
        if host is not None and not _is_loopback(host) and not allow_remote:
            port.stopListening()
            raise MonitorConfigError("listen", f"bound to {host}, not loopback")
        self.log.info("Monitoring on {address}", address=str(port.getHost()))
        return port

    def graph_svg(self, rec: CallRecord) -> Deferred:
        """The call's state graph as SVG text: the control target's drawing of the whole
        diagram if it gives one, else a drawing of the record's ``dsm_stategraph``."""
        key = (rec.id, graph_key(rec))
        cached = self._graphs.get(key)
        if cached is not None:
            return defer.succeed(cached)
        d = defer.maybeDeferred(self.control.graph_svg, rec.id)
        d.addTimeout(self.control_timeout, self.clock())

        def engine_failed(f: Failure) -> None:
            self.log.failure("graph_svg({call}) failed; drawing the monitoring record", f,
                             call=rec.id)
        d.addErrback(engine_failed)

        def pick(result: Any) -> Any:
            if isinstance(result, str) and result:
                return result
            return draw_record(rec, self.use_dot)
        d.addCallback(pick)

        def keep(text: str) -> str:
            self._graphs.put(key, text)
            return text
        d.addCallback(keep)
        return d


# -- configuration -----------------------------------------------------------------------------
def _bool(value: str, option: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "yes", "true", "on"):
        return True
    if v in ("0", "no", "false", "off", ""):
        return False
    raise MonitorConfigError(option, f"expected yes or no, not {value!r}")


@dataclass(frozen=True)
class MonitorConfig:
    """Monitoring options: INI section ``[monitor]``, overridden by command-line flags.

    ``listen`` None means off.  INI keys: ``enabled`` (yes = listen on `DEFAULT_ENDPOINT`),
    ``listen``, ``allow_remote``, ``auth_file``, ``allowed_hosts`` (comma separated),
    ``control_timeout``, ``graph`` (auto|builtin), ``latency_sample_every``.
    """

    listen: Optional[str] = None
    allow_remote: bool = False
    auth_file: Optional[str] = None
    allowed_hosts: Tuple[str, ...] = ()
    control_timeout: float = 30.0
    graph: str = "auto"
    latency_sample_every: int = 8

    @classmethod
    def from_ini(cls, parser: ConfigParser, section: str = "monitor") -> "MonitorConfig":
        if not parser.has_section(section):
            return cls()
        s = parser[section]
        listen = s.get("listen", "").strip() or None
        if listen is None and _bool(s.get("enabled", "no"), "enabled"):
            listen = DEFAULT_ENDPOINT
        if listen is not None and not _bool(s.get("enabled", "yes"), "enabled"):
            listen = None
        try:
            timeout = float(s.get("control_timeout", "30"))
        except ValueError:
            raise MonitorConfigError("control_timeout", "expected seconds") from None
        try:
            every = int(s.get("latency_sample_every", "8"))
            if every < 1:
                raise ValueError(every)
        except ValueError:
            raise MonitorConfigError("latency_sample_every", "expected a number >= 1") from None
        graph = s.get("graph", "auto").strip()
        if graph not in ("auto", "builtin"):
            raise MonitorConfigError("graph", "expected auto or builtin")
        return cls(listen=listen, allow_remote=_bool(s.get("allow_remote", "no"), "allow_remote"),
                   auth_file=s.get("auth_file", "").strip() or None,
                   allowed_hosts=tuple(h.strip() for h in s.get("allowed_hosts", "").split(",")
                                       if h.strip()),
                   control_timeout=timeout, graph=graph, latency_sample_every=every)

    def with_args(self, args: Any) -> "MonitorConfig":
        """Apply the flags of `yaypm.monitor.cli.add_server_arguments` (None = not given)."""
        changes: dict = {}
        if getattr(args, "monitor", None):
            changes["listen"] = args.monitor
        if getattr(args, "monitor_allow_remote", False):
            changes["allow_remote"] = True
        if getattr(args, "monitor_auth", None):
            changes["auth_file"] = args.monitor_auth
        return replace(self, **changes)


def start_monitor(config: MonitorConfig, registry: Optional[CallRegistry] = None,
                  control: Optional[ControlTarget] = None, *, reactor: Any = None,
                  services: Sequence[Any] = (), dispatchers: Sequence[Any] = ()
                  ) -> Optional[Deferred]:
    """Start monitoring as configured: None when off, else a Deferred firing with
    ``(monitor, port)``."""
    if not config.listen:
        return None
    mon = Monitor(registry, control, clock=reactor, control_timeout=config.control_timeout,
                  graph=config.graph, latency_sample_every=config.latency_sample_every)
    for svc in services:
        mon.watch_service(svc)
    for disp in dispatchers:
        mon.watch_dispatcher(disp)
    checkers = [password_checker(config.auth_file)] if config.auth_file else []
    d = mon.listen(config.listen, reactor=reactor, allow_remote=config.allow_remote,
                   checkers=checkers, allowed_hosts=config.allowed_hosts)
    d.addCallback(lambda port: (mon, port))
    return d


class MonitorService(Service):
    """`start_monitor` as a Twisted application service (stops listening on stop)."""

    def __init__(self, monitor: Monitor, config: MonitorConfig, reactor: Any = None) -> None:
        self.monitor = monitor
        self.config = config
        self._reactor = reactor
        self.port: Optional[IListeningPort] = None
        self.listening: Optional[Deferred] = None

    def startService(self) -> None:
        super().startService()
        c = self.config
        checkers = [password_checker(c.auth_file)] if c.auth_file else []
        self.listening = self.monitor.listen(c.listen or DEFAULT_ENDPOINT, reactor=self._reactor,
                                             allow_remote=c.allow_remote, checkers=checkers,
                                             allowed_hosts=c.allowed_hosts)

        def got(port: IListeningPort) -> IListeningPort:
            self.port = port
            return port
        self.listening.addCallback(got)

    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None
