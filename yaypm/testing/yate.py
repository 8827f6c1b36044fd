"""A real Yate engine and real SIP peers (sipp) for tests.

The simulator and the codec are checked against recorded traces; this module lets the
same scenarios run against the engine itself, so that a difference between the two shows
up as a failing test instead of a surprise in production.

What is here, all synchronous (no reactor needed, so it works beside any test style):

- :func:`find_yate` finds a Yate build (``YAYPM_YATE_PREFIX``, else the cache folder
  ``scripts/install-yate`` builds the vendored tarball into).
- :class:`YateEngine` starts ``PREFIX/bin/yate`` with a per-run configuration rendered from
  the templates in ``yate-conf/`` (free loopback ports picked per run), waits until its
  extmodule listeners accept and its SIP listener answers, and stops it by PID.
- :class:`ExtModuleConnection` is a raw extmodule line socket (``send_line``,
  ``read_line``, ``expect``) with small helpers that write the documented line formats,
  independent of ``yaypm.protocol`` so that engine tests do not share the codec's bugs.
- :class:`SippCall` / :class:`SippCallee` run sipp scenarios (``tests/sipp/``) as caller
  or callee and report the SIP outcome parsed from sipp's message log.

The templates and scenarios ship with yaypm (:func:`yaypm.resources.resource_path`), so an
installed copy finds them too.
- pytest glue: the ``--yate-required`` option, skipping of ``yate``-marked tests when no
  engine is found, the fixtures ``yate``, ``sip_call`` and ``sip_callee``, and a report
  hook that attaches the Yate log and sipp message logs to failing tests.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import re
import select
import shutil
import signal
import socket
import string
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generator, Iterator, Mapping, Optional, Sequence, TypeVar, Union

import pytest
from twisted.logger import Logger

from yaypm.resources import resource_path

__all__ = [
    # discovery and engine
    "find_yate",
    "yate_missing_reason",
    "YateEngine",
    "YateStartError",
    # raw extmodule socket
    "ExtModuleConnection",
    "Line",
    "ConnectionClosedError",
    "message_is",
    # sipp
    "find_sipp",
    "SippAgent",
    "SippCall",
    "SippCallee",
    "SipMessage",
    "SipOutcome",
    "parse_sipp_message_log",
    # pytest glue
    "pytest_addoption",
    "pytest_configure",
    "pytest_collection_modifyitems",
    "pytest_runtest_setup",
    "pytest_runtest_makereport",
    "yate_options",
    "yate",
    "yate_connect",
    "sip_call",
    "sip_callee",
]

log = Logger()

_REPO_ROOT = Path(__file__).resolve().parents[2]
_LOOPBACK = "127.0.0.1"
_STAMP = ".yaypm-built"
# Log lines that mean a listener could not get its port (another process took the port
# between our pick and Yate's bind): the engine is restarted with fresh ports.
_BIND_FAILURE = re.compile(r"(unable|could not|failed|can't|cannot) (to )?bind|address already in use",
                           re.IGNORECASE)
_OUR_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")

# Every process this module started and has not reaped yet, by PID, so that an
# interpreter exit (even after a crash in a test) does not leave engines or sipp behind.
_live_pids: dict[int, str] = {}


def _kill_leftovers() -> None:
    for pid in list(_live_pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        _live_pids.pop(pid, None)


atexit.register(_kill_leftovers)


# ---------------------------------------------------------------------------------------
# Finding Yate and sipp
# ---------------------------------------------------------------------------------------

def _cache_base() -> Path:
    """The cache folder shared with scripts/install-yate (same rule, same env override)."""
    return Path(os.environ.get("YAYPM_CACHE") or Path.home() / ".cache" / "yaypm")


def _vendor_tarballs() -> list[Path]:
    return sorted((_REPO_ROOT.parent / "shared" / "vendor").glob("yate-*.tar.gz"))


def _is_yate_prefix(prefix: Path) -> bool:
    binary = prefix / "bin" / "yate"
    return binary.is_file() and os.access(binary, os.X_OK)


def find_yate() -> Optional[Path]:
    """The prefix of a usable Yate build, or None.

    ``YAYPM_YATE_PREFIX`` wins when set (and is the only place looked at then). Otherwise
    the folder ``scripts/install-yate`` builds the vendored tarball into,
    ``${YAYPM_CACHE:-~/.cache/yaypm}/yate-<sha256[:16]>``, if its build finished; without
    a vendored tarball next to the repository, the newest finished build in the cache.
    """
    env = os.environ.get("YAYPM_YATE_PREFIX")
    if env:
        prefix = Path(env).expanduser()
        return prefix if _is_yate_prefix(prefix) else None
    tarballs = _vendor_tarballs()
    if tarballs:
        digest = _sha256_16(tarballs[0])
        prefix = _cache_base() / f"yate-{digest}"
        return prefix if (prefix / _STAMP).is_file() and _is_yate_prefix(prefix) else None
    built = [p.parent for p in _cache_base().glob(f"yate-*/{_STAMP}") if _is_yate_prefix(p.parent)]
    return max(built, key=lambda p: (p / _STAMP).stat().st_mtime) if built else None


@functools.lru_cache(maxsize=None)
def _sha256_16(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def find_sipp() -> Optional[str]:
    """Path of the sipp binary (``YAYPM_SIPP`` or ``sipp`` on PATH), or None."""
    env = os.environ.get("YAYPM_SIPP")
    if env:
        return env if os.access(env, os.X_OK) else None
    return shutil.which("sipp")


def yate_missing_reason() -> Optional[str]:
    """Why real-engine tests cannot run here (one sentence), or None when they can."""
    env = os.environ.get("YAYPM_YATE_PREFIX")
    if find_yate() is None:
        if env:
            return (f"YAYPM_YATE_PREFIX={env} has no executable bin/yate (unset it to use the "
                    "build of scripts/install-yate)")
        return ("no Yate build found: run scripts/install-yate (builds the vendored Yate into "
                f"{_cache_base()}) or set YAYPM_YATE_PREFIX")
    if find_sipp() is None:
        return "sipp not found: install the Debian package sip-tester (or set YAYPM_SIPP)"
    return None


# ---------------------------------------------------------------------------------------
# Free ports
# ---------------------------------------------------------------------------------------

_issued_ports: set[int] = set()


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port the kernel just handed out for bind(0), never the same twice here.

    Parallel test runs get distinct ports because the kernel picks them; the short window
    between closing our socket and the engine binding is covered by retrying the start.
    """
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((_LOOPBACK, 0))
            port = s.getsockname()[1]
        if port not in _issued_ports:
            _issued_ports.add(port)
            return port


def _free_media_port() -> int:
    """An even UDP port with the next three also free (sipp uses port..port+3 for RTP)."""
    for _ in range(200):
        base = _free_port(socket.SOCK_DGRAM)
        if base % 2 or base > 65530:
            continue
        held = []
        try:
            for p in range(base + 1, base + 4):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind((_LOOPBACK, p))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        _issued_ports.update(range(base, base + 4))
        return base
    raise RuntimeError("no free block of 4 UDP ports found for sipp media")


def _udp_port_bound(port: int) -> bool:
    """Whether some socket is bound to UDP ``port`` (read from /proc, no bind race)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)  # header
                for row in f:
                    local = row.split()[1]  # "0100007F:13C4"
                    if int(local.rsplit(":", 1)[1], 16) == port:
                        return True
        except (OSError, IndexError, ValueError):
            continue
    return False


# ---------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------

class YateStartError(RuntimeError):
    """Yate did not come up; the message carries the end of its log."""


class YateEngine:
    """One Yate process with a private configuration, log and ports.

    Construct, then :meth:`start` (or use as a context manager). The configuration is
    rendered from the ``*.conf`` templates (default: ``yate-conf/``, shipped with yaypm,
    see :mod:`yaypm.resources`; override with ``YAYPM_YATE_CONF`` or ``templates=``): upper-case ``${NAME}``
    placeholders are replaced by the run's values (``EXT_GLOBAL_PORT``,
    ``EXT_CONNECT_PORT``, ``SIP_PORT``, ``RUN_DIR``, ``CONF_DIR``, ``YATE_PREFIX`` and
    any ``variables=``), Yate's own lower-case ``${...}`` are left alone.
    ``conf_overrides`` maps a file name to template text that replaces (or adds) that
    file, e.g. a test-specific ``regexroute.conf``.
    """

    def __init__(
        self,
        prefix: Union[str, Path],
        run_dir: Union[str, Path],
        *,
        templates: Union[str, Path, None] = None,
        conf_overrides: Optional[Mapping[str, str]] = None,
        variables: Optional[Mapping[str, str]] = None,
        verbosity: int = 2,
        startup_timeout: float = 15.0,
    ) -> None:
        self.prefix = Path(prefix)
        self.run_dir = Path(run_dir)
        self.templates = Path(templates or os.environ.get("YAYPM_YATE_CONF")
                              or resource_path("yate_conf"))
        self.conf_overrides = dict(conf_overrides or {})
        self.variables = dict(variables or {})
        self.verbosity = verbosity
        self.startup_timeout = startup_timeout
        self.conf_dir = self.run_dir / "conf"
        self.log_path = self.run_dir / "yate.log"
        self.stderr_path = self.run_dir / "yate.stderr"
        self.global_port = 0
        self.connect_port = 0
        self.sip_port = 0
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.returncode: Optional[int] = None
        self._connections: list[ExtModuleConnection] = []

    # -- lifecycle --------------------------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, attempts: int = 3) -> "YateEngine":
        """Start the engine and return once it accepts extmodule and SIP traffic.

        Raises YateStartError (with the log's tail) if it exits or is not ready within
        ``startup_timeout``; a lost race for a port is retried with fresh ports.
        """
        for attempt in range(1, attempts + 1):
            self.global_port = _free_port()
            self.connect_port = _free_port()
            self.sip_port = _free_port(socket.SOCK_DGRAM)
            self.render_config()
            self._launch()
            try:
                self._wait_ready()
                log.info("Yate {pid} ready: extmodule global={g} connect={c}, sip={s}",
                         pid=self.pid, g=self.global_port, c=self.connect_port, s=self.sip_port)
                return self
            except YateStartError:
                self.stop()
                if attempt < attempts and _BIND_FAILURE.search(self.log_text()):
                    self._rotate_log(attempt)
                    continue
                raise
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """Stop the engine by its PID (SIGTERM, then SIGKILL after ``timeout``).

        Safe to call more than once and when the process already ended. Returns its exit
        status (negative: killed by that signal).
        """
        for conn in self._connections:
            conn.close()
        self._connections.clear()
        proc = self.process
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                proc.wait()
        _live_pids.pop(proc.pid, None)
        self.returncode = proc.returncode
        return self.returncode

    def __enter__(self) -> "YateEngine":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- configuration and process ------------------------------------------------------

    def template_values(self) -> dict[str, str]:
        values = {
            "EXT_GLOBAL_PORT": str(self.global_port),
            "EXT_CONNECT_PORT": str(self.connect_port),
            "SIP_PORT": str(self.sip_port),
            "RUN_DIR": str(self.run_dir),
            "CONF_DIR": str(self.conf_dir),
            "YATE_PREFIX": str(self.prefix),
        }
        values.update(self.variables)
        return values

    def render_config(self) -> None:
        """Write the run's configuration into :attr:`conf_dir` (done by :meth:`start`)."""
        if not self.templates.is_dir():
            raise YateStartError(f"no Yate configuration templates in {self.templates}")
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        for old in self.conf_dir.glob("*.conf"):
            old.unlink()
        sources = {p.name: p.read_text(encoding="utf-8") for p in sorted(self.templates.glob("*.conf"))}
        sources.update(self.conf_overrides)
        values = self.template_values()
        for name, text in sources.items():
            rendered = string.Template(text).safe_substitute(values)
            unknown = sorted(set(_OUR_PLACEHOLDER.findall(rendered)))
            if unknown:
                raise YateStartError(f"{name}: unknown placeholders {unknown}; known: {sorted(values)}")
            (self.conf_dir / name).write_text(rendered, encoding="utf-8")

    def command(self) -> list[str]:
        """The command line (``-c`` config, ``-m`` modules, ``-e`` shared files, ``-u`` a
        private user folder so nothing is read from ~/.yate, ``-l`` log, GMT timestamps)."""
        return [
            str(self.prefix / "bin" / "yate"),
            "-c", str(self.conf_dir),
            "-m", str(self.prefix / "lib" / "yate"),
            "-e", str(self.prefix / "share" / "yate"),
            "-u", str(self.run_dir / "user"),
            "-l", str(self.log_path),
            "-Df",
        ] + (["-" + "v" * self.verbosity] if self.verbosity > 0 else [])

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        lib = str(self.prefix / "lib")
        env["LD_LIBRARY_PATH"] = lib + (os.pathsep + env["LD_LIBRARY_PATH"]
                                        if env.get("LD_LIBRARY_PATH") else "")
        return env

    def _launch(self) -> None:
        (self.run_dir / "user").mkdir(parents=True, exist_ok=True)
        with open(self.stderr_path, "ab") as err:
            self.process = subprocess.Popen(
                self.command(), cwd=self.run_dir, env=self.environment(),
                stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                start_new_session=True,  # a Ctrl-C in the terminal is for pytest, not Yate
            )
        _live_pids[self.process.pid] = "yate"

    def _rotate_log(self, attempt: int) -> None:
        if self.log_path.exists():
            self.log_path.rename(self.log_path.with_name(f"yate.attempt{attempt}.log"))

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        pending = {"extmodule global": self._tcp_ready(self.global_port),
                   "extmodule connect": self._tcp_ready(self.connect_port),
                   "sip": self._sip_ready}
        while pending:
            assert self.process is not None
            if self.process.poll() is not None:
                raise YateStartError(self._failure("exited with status "
                                                   f"{self.process.returncode} during startup"))
            if _BIND_FAILURE.search(self.log_text()):
                raise YateStartError(self._failure("could not bind a port"))
            for what, probe in list(pending.items()):
                if probe():
                    del pending[what]
            if pending and time.monotonic() > deadline:
                raise YateStartError(self._failure(f"not ready after {self.startup_timeout}s "
                                                   f"(waiting for {', '.join(pending)})"))
            if pending:
                time.sleep(0.02)

    @staticmethod
    def _tcp_ready(port: int) -> Callable[[], bool]:
        def probe() -> bool:
            try:
                socket.create_connection((_LOOPBACK, port), timeout=0.5).close()
                return True
            except OSError:
                return False
        return probe

    def _sip_ready(self) -> bool:
        """Send one OPTIONS; any SIP answer (Yate sends 100 then 200) means the listener is up."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((_LOOPBACK, 0))
            port = s.getsockname()[1]
            tag = f"{os.getpid()}-{port}"
            request = (
                f"OPTIONS sip:probe@{_LOOPBACK}:{self.sip_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {_LOOPBACK}:{port};branch=z9hG4bK-yaypm-{tag}\r\n"
                f"From: <sip:probe@{_LOOPBACK}:{port}>;tag={tag}\r\n"
                f"To: <sip:probe@{_LOOPBACK}:{self.sip_port}>\r\n"
                f"Call-ID: yaypm-probe-{tag}@{_LOOPBACK}\r\n"
                "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            try:
                s.sendto(request.encode(), (_LOOPBACK, self.sip_port))
                s.settimeout(0.3)
                return s.recv(4096).startswith(b"SIP/2.0 ")
            except OSError:
                return False

    def _failure(self, what: str) -> str:
        tail = "\n".join(self.log_text().splitlines()[-60:])
        err = self.stderr_path.read_text(errors="replace")[-4000:] if self.stderr_path.exists() else ""
        return (f"Yate ({' '.join(self.command())}) {what}.\n--- log {self.log_path} (tail) ---\n"
                f"{tail}\n--- stderr ---\n{err}")

    # -- log ------------------------------------------------------------------------

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_text(self, start: int = 0) -> str:
        """The engine's log from byte offset ``start`` (see :meth:`log_size`)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- connections ------------------------------------------------------------------

    def open(self, port: int, timeout: float = 5.0) -> "ExtModuleConnection":
        """A raw TCP connection to ``port`` that sends nothing by itself."""
        conn = ExtModuleConnection(socket.create_connection((_LOOPBACK, port), timeout=timeout),
                                   name=f"extmodule:{port}")
        self._connections.append(conn)
        return conn

    def connect(self, role: Optional[str] = None, timeout: float = 5.0) -> "ExtModuleConnection":
        """An extmodule connection ready for use.

        ``role=None``: the listener with ``role=global`` (nothing is sent; a
        ``%%>connect`` there would get ``Error in:``). ``role="global"``/``"channel"``
        (or anything else, to test refusals): the role-less listener, after sending
        ``%%>connect:<role>`` as its first line.
        """
        if role is None:
            return self.open(self.global_port, timeout)
        conn = self.open(self.connect_port, timeout)
        conn.send_line(f"%%>connect:{role}")
        return conn

    def sip_uri(self, user: str) -> str:
        """``sip:user@127.0.0.1:<sip_port>``: this engine as seen by a SIP peer."""
        return f"sip:{user}@{_LOOPBACK}:{self.sip_port}"


# ---------------------------------------------------------------------------------------
# Raw extmodule lines
# ---------------------------------------------------------------------------------------

def _escape(text: str, extra: str = "") -> str:
    """Yate's msgEscape (yate-extmodule.md 3.1): '%' doubles, ':' and controls as '%'+chr(c+64)."""
    out = []
    for ch in text:
        if ch == "%":
            out.append("%%")
        elif ch < " " or ch == ":" or ch in extra:
            out.append("%" + chr(ord(ch) + 64))
        else:
            out.append(ch)
    return "".join(out)


def _unescape(field: str) -> str:
    """Lenient inverse of :func:`_escape` (also takes the ``%}`` Yate writes for '=' in keys)."""
    out, i = [], 0
    while i < len(field):
        ch = field[i]
        if ch == "%" and i + 1 < len(field):
            nxt = field[i + 1]
            out.append("%" if nxt == "%" else chr(ord(nxt) - 64))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


_Params = Union[Mapping[str, object], Sequence[tuple[str, object]], None]


def _encode_params(params: _Params) -> str:
    items = params.items() if isinstance(params, Mapping) else (params or [])
    return "".join(f":{_escape(str(k), '=')}={_escape(str(v))}" for k, v in items)


class Line(str):
    """One line received from Yate, as text, with its fields decoded on demand.

    It *is* the raw line (``line == "%%<install:50:test.a:true"`` works); for message
    lines ``kind``, ``id``, ``name``, ``retvalue``, ``processed`` and ``params`` read the
    documented fields (yate-extmodule.md section 5).
    """

    @property
    def keyword(self) -> str:
        """``%%>message``, ``%%<install``, ``Error in``... (the text before the first ':')."""
        return self.split(":", 1)[0]

    @property
    def kind(self) -> str:
        """``handle`` (%%>message: Yate asks us), ``answer`` (%%<message to our message),
        ``notification`` (%%<message with empty id: a watch), or the keyword."""
        kw = self.keyword
        if kw == "%%>message":
            return "handle"
        if kw == "%%<message":
            return "notification" if self._fields[1] == "" else "answer"
        return kw

    @property
    def _fields(self) -> list[str]:
        return self.split(":")

    @property
    def id(self) -> str:
        return _unescape(self._fields[1]) if len(self._fields) > 1 else ""

    @property
    def name(self) -> str:
        return _unescape(self._fields[3]) if len(self._fields) > 3 else ""

    @property
    def retvalue(self) -> str:
        return _unescape(self._fields[4]) if len(self._fields) > 4 else ""

    @property
    def processed(self) -> Optional[bool]:
        """The answer's processed flag (``%%<message`` only)."""
        if self.keyword != "%%<message":
            return None
        return self._fields[2] == "true"

    @property
    def param_list(self) -> list[tuple[str, str]]:
        """Parameters in order, duplicates kept."""
        out = []
        for seg in self._fields[5:]:
            if seg:
                key, _, value = seg.partition("=")
                out.append((_unescape(key), _unescape(value)))
        return out

    @property
    def params(self) -> dict[str, str]:
        """Parameters by name (the first of duplicates)."""
        out: dict[str, str] = {}
        for key, value in self.param_list:
            out.setdefault(key, value)
        return out


def message_is(msg_name: str, msg_kind: Optional[str] = None, /, **params: str) -> Callable[[Line], bool]:
    """A predicate for :meth:`ExtModuleConnection.expect`: a message line called
    ``msg_name`` (of ``msg_kind``: ``handle``/``answer``/``notification``, any if None)
    whose parameters include ``params``."""
    def predicate(line: Line) -> bool:
        if line.keyword not in ("%%>message", "%%<message") or line.name != msg_name:
            return False
        if msg_kind is not None and line.kind != msg_kind:
            return False
        have = line.params
        return all(have.get(k) == v for k, v in params.items())
    predicate.__name__ = predicate.__qualname__ = (
        f"message_is({msg_name!r}, {msg_kind!r}, {', '.join(f'{k}={v!r}' for k, v in params.items())})")
    return predicate


class ConnectionClosedError(EOFError):
    """Yate closed the extmodule connection."""


class ExtModuleConnection:
    """A blocking extmodule line socket for tests.

    Lines that arrive while a test waits for another one are kept (``backlog``) and
    searched first by the next :meth:`expect`, so the order in which concurrent Yate
    threads write does not make tests flaky. ``received`` and ``sent`` keep every line.
    """

    def __init__(self, sock: socket.socket, name: str = "extmodule") -> None:
        self.sock = sock
        self.name = name
        self.sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # each line is one request: do not let Nagle hold it back (yate-extmodule.md, E_throughput)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""
        self._eof = False
        self._ids = iter(range(1, 1 << 62))
        self.backlog: list[Line] = []
        self.received: list[Line] = []
        self.sent: list[str] = []

    # -- lines --------------------------------------------------------------------

    def send_line(self, line: str) -> None:
        """Write ``line`` plus LF, byte for byte (UTF-8; surrogateescape keeps raw bytes)."""
        self.sent.append(line)
        data = line.encode("utf-8", "surrogateescape") + b"\n"
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)

    def _fill(self, deadline: float) -> bool:
        """Read more bytes; False on timeout. Raises ConnectionClosedError at EOF."""
        if self._eof:
            raise ConnectionClosedError(f"{self.name}: connection closed by Yate")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        ready, _, _ = select.select([self.sock], [], [], remaining)
        if not ready:
            return False
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        except BlockingIOError:
            return True
        if not data:
            self._eof = True
            raise ConnectionClosedError(f"{self.name}: connection closed by Yate")
        self._buffer += data
        return True

    def _next_from_socket(self, deadline: float) -> Optional[Line]:
        while b"\n" not in self._buffer:
            if not self._fill(deadline):
                return None
        raw, self._buffer = self._buffer.split(b"\n", 1)
        line = Line(raw.decode("utf-8", "surrogateescape"))
        self.received.append(line)
        return line

    def read_line(self, timeout: float = 5.0) -> Line:
        """The next unconsumed line (backlog first). TimeoutError / ConnectionClosedError."""
        if self.backlog:
            return self.backlog.pop(0)
        line = self._next_from_socket(time.monotonic() + timeout)
        if line is None:
            raise TimeoutError(f"{self.name}: no line from Yate within {timeout}s")
        return line

    def expect(self, predicate: Union[str, Callable[[Line], bool]], timeout: float = 5.0) -> Line:
        """The first unconsumed line matching ``predicate`` (a callable, or a string the
        line must start with); other lines stay in the backlog for later ``expect``s.

        TimeoutError names what was awaited and what arrived instead.
        """
        match = (lambda line: line.startswith(predicate)) if isinstance(predicate, str) else predicate
        for i, line in enumerate(self.backlog):
            if match(line):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            try:
                received = self._next_from_socket(deadline)
            except ConnectionClosedError as e:
                raise ConnectionClosedError(f"{e} while waiting for {_describe(predicate)}; "
                                            f"unconsumed: {self.backlog!r}") from None
            if received is None:
                raise TimeoutError(f"{self.name}: nothing matching {_describe(predicate)} "
                                   f"within {timeout}s; unconsumed lines: {self.backlog!r}")
            if match(received):
                return received
            self.backlog.append(received)

    def expect_closed(self, timeout: float = 5.0) -> list[Line]:
        """Wait until Yate closes the connection; returns (and consumes) the lines not
        consumed before, backlog included."""
        deadline = time.monotonic() + timeout
        lines, self.backlog = self.backlog, []
        while True:
            try:
                line = self._next_from_socket(deadline)
            except ConnectionClosedError:
                return lines
            if line is None:
                self.backlog = lines
                raise TimeoutError(f"{self.name}: still open after {timeout}s")
            lines.append(line)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "ExtModuleConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the documented line formats --------------------------------------------------

    def new_id(self) -> str:
        """A message id that cannot collide with Yate's ``0x...`` ids."""
        return f"t{next(self._ids)}"

    def message(self, name: str, params: _Params = None, *, retvalue: str = "",
                msg_id: Optional[str] = None, msg_time: int = 0) -> str:
        """Send ``%%>message:<id>:<time>:<name>:<retvalue>[:k=v...]``; returns the id.
        ``msg_id=""`` sends a fire-and-forget message (Yate answers nothing)."""
        mid = self.new_id() if msg_id is None else msg_id
        self.send_line(f"%%>message:{_escape(mid)}:{msg_time}:{_escape(name)}:"
                       f"{_escape(retvalue)}{_encode_params(params)}")
        return mid

    def dispatch(self, name: str, params: _Params = None, *, retvalue: str = "",
                 timeout: float = 5.0) -> Line:
        """Send a message and return Yate's ``%%<message:<id>:...`` answer to it."""
        mid = self.message(name, params, retvalue=retvalue)
        return self.expect(f"%%<message:{_escape(mid)}:", timeout)

    def answer(self, line: Line, processed: bool, retvalue: Optional[str] = None, params: _Params = None,
               *, name: str = "") -> None:
        """Answer an engine ``%%>message``. ``retvalue=None`` with no params sends the
        minimal ``%%<message:<id>:<processed>:`` (changes nothing else)."""
        head = f"%%<message:{line.split(':')[1]}:{'true' if processed else 'false'}:"
        if retvalue is None and not params and not name:
            self.send_line(head)
        else:
            self.send_line(f"{head}{_escape(name)}:{_escape(retvalue or '')}{_encode_params(params)}")

    def install(self, name: str, priority: Optional[int] = None, filter_name: Optional[str] = None,
                filter_value: Optional[str] = None, timeout: float = 5.0) -> Line:
        """``%%>install:[prio]:name[:fname[:fvalue]]``; returns the ``%%<install`` reply."""
        line = f"%%>install:{'' if priority is None else priority}:{_escape(name)}"
        if filter_name is not None:
            line += f":{_escape(filter_name)}"
            if filter_value is not None:
                line += f":{_escape(filter_value)}"
        self.send_line(line)
        return self.expect(lambda ln: ln.startswith("%%<install:") and ln.split(":")[2] == _escape(name),
                           timeout)

    def uninstall(self, name: str, timeout: float = 5.0) -> Line:
        self.send_line(f"%%>uninstall:{_escape(name)}")
        return self.expect(lambda ln: ln.startswith("%%<uninstall:") and ln.split(":")[2] == _escape(name),
                           timeout)

    def watch(self, name: str, timeout: float = 5.0) -> Line:
        self.send_line(f"%%>watch:{_escape(name)}")
        return self.expect(f"%%<watch:{_escape(name)}:", timeout)

    def unwatch(self, name: str, timeout: float = 5.0) -> Line:
        self.send_line(f"%%>unwatch:{_escape(name)}")
        return self.expect(f"%%<unwatch:{_escape(name)}:", timeout)

    def setlocal(self, name: str, value: str = "", timeout: float = 5.0) -> Line:
        """``%%>setlocal:name:value`` (not escaped: Yate does not unescape setlocal)."""
        self.send_line(f"%%>setlocal:{name}:{value}")
        return self.expect(f"%%<setlocal:{name}:", timeout)


def _describe(predicate: object) -> str:
    return repr(predicate) if isinstance(predicate, str) else getattr(predicate, "__name__", repr(predicate))


# ---------------------------------------------------------------------------------------
# sipp
# ---------------------------------------------------------------------------------------

def _scenario_dir() -> Path:
    return Path(os.environ.get("YAYPM_SIPP_SCENARIOS") or resource_path("sipp"))


def _scenario_path(scenario: Union[str, Path]) -> Path:
    path = Path(scenario)
    if path.suffix != ".xml":
        path = path.with_suffix(".xml")
    if not path.is_absolute() and not path.exists():
        path = _scenario_dir() / path
    if not path.is_file():
        raise FileNotFoundError(f"no sipp scenario {scenario!r} (looked in {_scenario_dir()})")
    return path


@dataclass
class SipMessage:
    """One SIP message sipp sent or received, from its ``-trace_msg`` log."""

    direction: str  # "sent" or "received"
    timestamp: str
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def is_response(self) -> bool:
        return self.first_line.startswith("SIP/2.0 ")

    @property
    def status(self) -> Optional[int]:
        """The response code (None for a request)."""
        return int(self.first_line.split()[1]) if self.is_response else None

    @property
    def method(self) -> str:
        """The request method, or for a response the method of its CSeq."""
        if not self.is_response:
            return self.first_line.split()[0]
        return (self.header("CSeq") or " ").split()[-1]

    def header(self, name: str) -> Optional[str]:
        """The first header ``name`` (case-insensitive; compact forms not mapped)."""
        lname = name.lower()
        for raw in self.text.split("\n")[1:]:
            raw = raw.rstrip("\r")
            if not raw:
                break
            key, sep, value = raw.partition(":")
            if sep and key.strip().lower() == lname:
                return value.strip()
        return None

    @property
    def body(self) -> str:
        parts = re.split(r"\r?\n\r?\n", self.text, maxsplit=1)
        return parts[1].strip() if len(parts) > 1 else ""


_BLOCK_HEAD = re.compile(r"^-{20,} (?P<ts>\S+ \S+)\n(?P<what>[^\n]*)\n\n", re.MULTILINE)


def parse_sipp_message_log(text: str) -> list[SipMessage]:
    """SIP messages of a sipp ``-trace_msg`` file, in order.

    Each is a block headed ``----- <date> <time>`` then ``UDP message sent (N bytes):``
    or ``UDP message received [N] bytes :``; sipp also repeats unexpected messages in
    blocks without a timestamp, which are skipped.
    """
    messages = []
    heads = list(_BLOCK_HEAD.finditer(text))
    for i, head in enumerate(heads):
        what = head.group("what")
        if " sent " in what:
            direction = "sent"
        elif " received " in what:
            direction = "received"
        else:
            continue
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        body = text[head.end():end]
        # cut a following timestamp-less block ("-----\nUnexpected ...")
        body = re.split(r"^-{20,}\s*$", body, maxsplit=1, flags=re.MULTILINE)[0]
        messages.append(SipMessage(direction, head.group("ts"), body.strip("\n") + "\n"))
    return messages


@dataclass
class SipOutcome:
    """How a sipp call went, from the SIP messages exchanged.

    ``status`` is the final response of the INVITE transaction (the one the caller
    received / the callee sent); ``outcome`` says it in one word: ``answered``, the code
    (``"404"``, ``"486"``, ``"487"``) or ``"no final response"``.
    """

    exit_code: int
    messages: list[SipMessage]
    role: str  # "caller" or "callee"
    errors: str = ""

    @property
    def status(self) -> Optional[int]:
        direction = "received" if self.role == "caller" else "sent"
        finals = [m.status for m in self.messages
                  if m.direction == direction and m.is_response and m.method == "INVITE"
                  and (m.status or 0) >= 200]
        return finals[0] if finals else None

    @property
    def answered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def outcome(self) -> str:
        if self.answered:
            return "answered"
        return str(self.status) if self.status is not None else "no final response"

    def requests(self, method: str, direction: Optional[str] = None) -> list[SipMessage]:
        return [m for m in self.messages if not m.is_response and m.method == method
                and (direction is None or m.direction == direction)]

    def responses(self, method: str, direction: Optional[str] = None) -> list[SipMessage]:
        return [m for m in self.messages if m.is_response and m.method == method
                and (direction is None or m.direction == direction)]

    @property
    def bye_received(self) -> bool:
        return bool(self.requests("BYE", "received"))

    @property
    def bye_sent(self) -> bool:
        return bool(self.requests("BYE", "sent"))

    @property
    def cancel_received(self) -> bool:
        return bool(self.requests("CANCEL", "received"))

    def __str__(self) -> str:
        flow = ", ".join(f"{'->' if m.direction == 'sent' else '<-'} {m.first_line}"
                         for m in self.messages)
        return f"{self.role} {self.outcome} (sipp exit {self.exit_code}): {flow}"


class SippAgent:
    """One sipp process running one call of a scenario; base of SippCall and SippCallee.

    The process is started by the constructor's owner with :meth:`start` and always ends
    by PID: on its own (:meth:`wait`) or by :meth:`kill`.
    """

    role = "agent"

    def __init__(self, scenario: Union[str, Path], run_dir: Union[str, Path], *,
                 keys: Optional[Mapping[str, object]] = None, timeout: float = 30.0,
                 label: str = "sipp", args: Sequence[str] = ()) -> None:
        self.scenario = _scenario_path(scenario)
        self.args = list(args)      # extra sipp options, e.g. ["-rtp_echo"]
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.keys = {k: str(v) for k, v in (keys or {}).items()}
        self.timeout = timeout
        self.label = label
        self.port = _free_port(socket.SOCK_DGRAM)
        self.media_port = _free_media_port()
        self.control_port = _free_port(socket.SOCK_DGRAM)
        self.message_log = self.run_dir / f"{label}.messages.log"
        self.error_log = self.run_dir / f"{label}.errors.log"
        self.screen_log = self.run_dir / f"{label}.screen.log"
        self.process: Optional[subprocess.Popen[bytes]] = None
        self._outcome: Optional[SipOutcome] = None

    def command(self) -> list[str]:
        sipp = find_sipp()
        if sipp is None:
            raise FileNotFoundError("sipp not found (Debian package sip-tester)")
        cmd = [
            sipp, "-sf", str(self.scenario),
            "-i", _LOOPBACK, "-p", str(self.port),
            "-mi", _LOOPBACK, "-mp", str(self.media_port),
            "-cp", str(self.control_port),
            "-m", "1", "-nostdin",
            "-timeout", f"{int(self.timeout)}s", "-timeout_error",
            "-trace_msg", "-message_file", str(self.message_log),
            "-trace_err", "-error_file", str(self.error_log),
        ]
        for key, value in self.keys.items():
            cmd += ["-key", key, value]
        return cmd + self.args

    def start(self) -> "SippAgent":
        with open(self.screen_log, "wb") as out:
            self.process = subprocess.Popen(self.command(), cwd=self.run_dir, stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        _live_pids[self.process.pid] = "sipp"
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout: Optional[float] = None) -> SipOutcome:
        """Wait for sipp to finish its scenario and return the outcome.

        TimeoutError (after killing sipp) if it is still running after ``timeout``
        seconds (default: sipp's own global timeout plus a margin).
        """
        if self._outcome is not None:
            return self._outcome
        assert self.process is not None, "start() first"
        limit = self.timeout + 5 if timeout is None else timeout
        try:
            self.process.wait(limit)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(f"{self.label}: sipp still running after {limit}s; "
                               f"so far: {self._make_outcome()}") from None
        _live_pids.pop(self.process.pid, None)
        self._outcome = self._make_outcome()
        return self._outcome

    def kill(self) -> None:
        """Kill sipp by PID if it still runs (teardown path; idempotent)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
        _live_pids.pop(self.process.pid, None)

    def messages(self) -> list[SipMessage]:
        """SIP messages exchanged so far."""
        return parse_sipp_message_log(self.message_log_text())

    def message_log_text(self) -> str:
        try:
            return self.message_log.read_text(errors="replace")
        except OSError:
            return ""

    def _make_outcome(self) -> SipOutcome:
        code = self.process.returncode if self.process and self.process.returncode is not None else -1
        errors = self.error_log.read_text(errors="replace") if self.error_log.exists() else ""
        return SipOutcome(exit_code=code, messages=self.messages(), role=self.role, errors=errors)

    def wait_listening(self, timeout: float = 5.0) -> None:
        """Return once sipp has bound its SIP port (a callee must before Yate calls it)."""
        deadline = time.monotonic() + timeout
        while not _udp_port_bound(self.port):
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label}: sipp exited ({self.process.returncode}) before "
                                   f"listening: {self.screen_log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.label}: sipp not listening on UDP {self.port} after {timeout}s")
            time.sleep(0.01)


class SippCall(SippAgent):
    """A SIP caller: sipp sends INVITE ``number@127.0.0.1:<sip_port>`` (``[service]``)."""

    role = "caller"

    def __init__(self, sip_port: int, number: str, run_dir: Union[str, Path], *,
                 scenario: Union[str, Path] = "uac_wait_bye",
                 keys: Optional[Mapping[str, object]] = None, timeout: float = 30.0,
                 label: str = "caller", args: Sequence[str] = ()) -> None:
        super().__init__(scenario, run_dir, keys=keys, timeout=timeout, label=label, args=args)
        self.sip_port = sip_port
        self.number = number

    def command(self) -> list[str]:
        return super().command() + ["-s", self.number, f"{_LOOPBACK}:{self.sip_port}"]


class SippCallee(SippAgent):
    """A SIP callee listening on its own loopback port; Yate reaches it at :attr:`callto`."""

    role = "callee"
    behaviours = {"answer": "uas_answer", "busy": "uas_busy", "noanswer": "uas_noanswer"}

    def __init__(self, behaviour: str, run_dir: Union[str, Path], *,
                 keys: Optional[Mapping[str, object]] = None, timeout: float = 30.0,
                 label: str = "callee", args: Sequence[str] = ()) -> None:
        super().__init__(self.behaviours.get(behaviour, behaviour), run_dir,
                         keys=keys, timeout=timeout, label=label, args=args)
        self.behaviour = behaviour

    @property
    def uri(self) -> str:
        return f"sip:callee@{_LOOPBACK}:{self.port}"

    @property
    def callto(self) -> str:
        """The Yate call target: ``sip/sip:callee@127.0.0.1:<port>``."""
        return f"sip/{self.uri}"

    def start(self) -> "SippCallee":
        super().start()
        self.wait_listening()
        return self


# ---------------------------------------------------------------------------------------
# pytest glue
# ---------------------------------------------------------------------------------------

_log_offsets_key = pytest.StashKey[dict]()
_agents_key = pytest.StashKey[list]()
_REPORT_LINES = 1500


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("yaypm", "yaypm real-engine tests")
    group.addoption(
        "--yate-required", action="store_true", default=False,
        help="fail, instead of skipping, tests marked 'yate' when no Yate build "
             "(scripts/install-yate) or sipp is found",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "yate: needs a real Yate engine (built by scripts/install-yate) and sipp")


def _yate_required(config: pytest.Config) -> bool:
    return bool(config.getoption("yate_required", default=False))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _yate_required(config):
        return
    marked = [item for item in items if item.get_closest_marker("yate")]
    if not marked:
        return
    reason = yate_missing_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in marked:
        item.add_marker(skip)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("yate") and _yate_required(item.config):
        reason = yate_missing_reason()
        if reason is not None:
            pytest.fail(f"{reason} (--yate-required)", pytrace=False)


def _tail(text: str, lines: int = _REPORT_LINES) -> str:
    split = text.splitlines()
    if len(split) <= lines:
        return text
    return f"[... {len(split) - lines} earlier lines cut ...]\n" + "\n".join(split[-lines:])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the Yate log written during a failing test, and its sipp message logs."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    engines = [v for v in funcargs.values() if isinstance(v, YateEngine)]
    if report.when == "setup" and report.passed:
        item.stash[_log_offsets_key] = {id(e): e.log_size() for e in engines}
        return report
    if not report.failed:
        return report
    offsets = item.stash.get(_log_offsets_key, {})
    for engine in engines:
        text = engine.log_text(offsets.get(id(engine), 0))
        report.sections.append((f"yate log ({engine.log_path}, this test)", _tail(text)))
    for agent in item.stash.get(_agents_key, []):
        report.sections.append((f"sipp {agent.label} messages ({agent.message_log})",
                                _tail(agent.message_log_text(), 400)))
    return report


def _require_tools(config: pytest.Config, need_sipp: bool = False) -> Path:
    prefix = find_yate()
    reason = yate_missing_reason() if prefix is None or need_sipp else None
    if prefix is None and reason is None:
        reason = "no Yate build found: run scripts/install-yate"
    if reason is not None:
        if _yate_required(config):
            pytest.fail(f"{reason} (--yate-required)", pytrace=False)
        pytest.skip(reason)
    assert prefix is not None
    return prefix


@pytest.fixture(scope="module")
def yate_options() -> dict:
    """Keyword arguments for the module's :class:`YateEngine` (``conf_overrides``,
    ``variables``, ``verbosity``...): none by default. A test module overrides this fixture
    (module scope) to run its ``yate`` with, e.g., a ``[scripts]`` section in extmodule.conf."""
    return {}


@pytest.fixture(scope="module")
def yate(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         yate_options: dict) -> Iterator[YateEngine]:
    """A running Yate (one per test module) with its own config, log and free ports.

    Stopped by PID when the module's tests are done, whatever happened. Connect with
    ``yate.connect()`` (global listener) or ``yate.connect(role="global")`` (role-less
    listener + ``%%>connect``); SIP peers reach it at ``127.0.0.1:yate.sip_port``.
    Configured by the ``yate_options`` fixture.
    """
    prefix = _require_tools(request.config)
    name = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[-40:] or "yate"
    engine = YateEngine(prefix, tmp_path_factory.mktemp(f"yate-{name}"), **yate_options)
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()


@pytest.fixture
def yate_connect(yate: YateEngine) -> Iterator[Callable[..., ExtModuleConnection]]:
    """``yate_connect(role=None)``: :meth:`YateEngine.connect` for one test.

    The connections are closed when the test ends, so the handlers and watches a test
    installed never answer (or delay) the next test's messages on the shared engine.
    """
    opened: list[ExtModuleConnection] = []

    def connect(role: Optional[str] = None, timeout: float = 5.0) -> ExtModuleConnection:
        conn = yate.connect(role, timeout)
        opened.append(conn)
        return conn

    try:
        yield connect
    finally:
        for conn in opened:
            conn.close()


def _agents(request: pytest.FixtureRequest) -> list[SippAgent]:
    node = request.node
    if _agents_key not in node.stash:
        node.stash[_agents_key] = []
    return node.stash[_agents_key]


_Agent = TypeVar("_Agent", bound=SippAgent)


def _sipp_agents(request: pytest.FixtureRequest,
                 make: Callable[..., _Agent]) -> Iterator[Callable[..., _Agent]]:
    """The body of ``sip_call``/``sip_callee``: yields ``start(*args, **kw)``, which builds
    the n-th agent with ``make(n, *args, **kw)`` and starts it; every agent of the test is
    killed by PID at teardown."""
    _require_tools(request.config, need_sipp=True)
    agents = _agents(request)
    count = 0

    def start(*args: object, **kw: object) -> _Agent:
        nonlocal count
        count += 1
        agent = make(count, *args, **kw)
        agents.append(agent)
        agent.start()
        return agent

    try:
        yield start
    finally:
        for agent in agents:
            agent.kill()


@pytest.fixture
def sip_call(request: pytest.FixtureRequest, yate: YateEngine,
             tmp_path: Path) -> Iterator[Callable[..., SippCall]]:
    """``sip_call(number, scenario="uac_wait_bye", timeout=30, sipp_args=(), **keys)`` starts
    a sipp caller towards ``yate`` and returns the running :class:`SippCall`.

    ``keys`` become ``-key name value`` (``[name]`` in the scenario); ``sipp_args`` are
    extra sipp options (``["-rtp_echo"]``). Every sipp this
    fixture started is killed by PID at teardown.
    """
    def make(n: int, number: str, scenario: Union[str, Path] = "uac_wait_bye", *,
             timeout: float = 30.0, sipp_args: Sequence[str] = (), **keys: object) -> SippCall:
        return SippCall(yate.sip_port, number, tmp_path / "sipp", scenario=scenario, keys=keys,
                        timeout=timeout, label=f"caller{n}", args=sipp_args)

    yield from _sipp_agents(request, make)


@pytest.fixture
def sip_callee(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., SippCallee]]:
    """``sip_callee("answer" | "busy" | "noanswer" | scenario, timeout=30, sipp_args=(),
    **keys)`` starts a sipp callee on a free loopback port and returns it once it listens;
    call it from Yate with ``callee.callto``. Killed by PID at teardown."""
    def make(n: int, behaviour: str = "answer", *, timeout: float = 30.0,
             sipp_args: Sequence[str] = (), **keys: object) -> SippCallee:
        return SippCallee(behaviour, tmp_path / "sipp", keys=keys, timeout=timeout,
                          label=f"callee{n}", args=sipp_args)

    yield from _sipp_agents(request, make)
