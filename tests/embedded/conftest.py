"""Fixtures for embedded-mode tests: a real Yate running yaypm scripts in-process.

``yaypmhost_module`` builds ``yaypmhost.yate`` once (cached by source, prefix and interpreter,
see :func:`yaypm.embedded_cli.build_module`); ``embedded_yate(scripts, ...)`` starts a
:class:`yaypm.testing.yate.YateEngine` (the shared ``yate-conf/`` templates) that also loads the
module, with a ``yaypmhost.conf`` naming the given scripts, and stops it at teardown.  Tests
are skipped, with the reason, when no Yate build exists or the module cannot be built here.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest

from yaypm.embedded_cli import BuildError, build_module
from yaypm.testing.yate import ExtModuleConnection, YateEngine, find_yate, yate_missing_reason

REPO = Path(__file__).resolve().parents[2]
from embedded_helpers import APPS
TEMPLATES = REPO / "yate-conf"


def _cache_dir() -> Path:
    base = Path(os.environ.get("YAYPM_CACHE") or Path.home() / ".cache" / "yaypm")
    return base / "yaypmhost"


@pytest.fixture(scope="session")
def yaypmhost_module() -> Path:
    prefix = find_yate()
    if prefix is None:
        pytest.skip(yate_missing_reason() or "no Yate build found: run scripts/install-yate")
    try:
        return build_module(prefix, _cache_dir() / prefix.name)
    except BuildError as e:
        pytest.skip(f"yaypmhost.yate cannot be built here: {e}")


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _add_lines(conf: str, section: str, lines: List[str]) -> str:
    """Insert ``lines`` right after the ``[section]`` header of an ini text (added if absent)."""
    header = f"[{section}]"
    block = "\n".join(lines)
    if re.search(rf"^\[{re.escape(section)}\]\s*$", conf, re.M):
        return re.sub(rf"^\[{re.escape(section)}\]\s*$", lambda m: f"{header}\n{block}", conf,
                      count=1, flags=re.M)
    return conf + f"\n{header}\n{block}\n"


class EmbeddedYate(YateEngine):
    """A YateEngine that also loads yaypmhost.yate (+ rmanager on a free port)."""

    def __init__(self, prefix: Path, run_dir: Path, module: Path, scripts: Dict[str, Path],
                 general: Optional[Dict[str, str]] = None, yate_general: Optional[List[str]] = None,
                 verbosity: int = 2, conf_overrides: Optional[Dict[str, str]] = None) -> None:
        self.rmanager_port = _free_tcp_port()
        yate_conf = (TEMPLATES / "yate.conf").read_text()
        yate_conf = _add_lines(yate_conf, "general",
                               [f"extrapath={module.parent}", *(yate_general or [])])
        yate_conf = _add_lines(yate_conf, "modules", ["yaypmhost.yate=yes", "rmanager.yate=yes"])
        host = ["[general]", f"python_path={REPO}"]
        host += [f"{k}={v}" for k, v in (general or {}).items()]
        host += ["", "[scripts]"] + [f"{name}={path}" for name, path in scripts.items()]
        overrides = {
            "yate.conf": yate_conf,
            "yaypmhost.conf": "\n".join(host) + "\n",
            "rmanager.conf": ("[general]\naddr=127.0.0.1\nport=${RMANAGER_PORT}\n"
                              "telnet=no\ntimeout=0\n"),
            **(conf_overrides or {}),
        }
        super().__init__(prefix, run_dir, templates=TEMPLATES, conf_overrides=overrides,
                         variables={"RMANAGER_PORT": str(self.rmanager_port)},
                         verbosity=verbosity)

    def rmanager(self, command: str, wait: float = 0.5) -> str:
        """Send one rmanager command; returns what came back within ``wait`` seconds."""
        with socket.create_connection(("127.0.0.1", self.rmanager_port), timeout=5) as s:
            s.recv(4096)                                    # banner
            s.sendall(command.encode() + b"\r\n")
            out = b""
            end = time.monotonic() + wait
            s.settimeout(0.1)
            while time.monotonic() < end:
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                out += data
            return out.decode(errors="replace")

    def host_status(self, conn: ExtModuleConnection) -> Dict[str, str]:
        """yaypmhost's status fields (python, handlers, watches, pending, answered, timeouts)."""
        line = conn.dispatch("engine.status", {"module": "yaypmhost"})
        text = line.retvalue
        fields = text.split(";", 1)[-1].strip()
        return dict(kv.split("=", 1) for kv in fields.split(",") if "=" in kv)

    def wait_handlers(self, conn: ExtModuleConnection, count: int, timeout: float = 10.0) -> None:
        """Wait until the scripts have installed ``count`` handlers + watches in Yate."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.host_status(conn)
            have = int(st.get("handlers", 0)) + int(st.get("watches", 0))
            if have >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"scripts installed {have} of {count} handlers: {st}\n"
                                   + self.log_text()[-3000:])
            time.sleep(0.05)


@pytest.fixture
def embedded_yate(yaypmhost_module: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Callable[..., EmbeddedYate]]:
    """``embedded_yate({"name": path, ...}, general={...})`` -> a started EmbeddedYate."""
    engines: List[EmbeddedYate] = []
    prefix = find_yate()
    assert prefix is not None

    def start(scripts: Dict[str, Path], **kw) -> EmbeddedYate:
        run_dir = tmp_path_factory.mktemp("yate-embedded")
        engine = EmbeddedYate(prefix, run_dir, yaypmhost_module, scripts, **kw)
        engines.append(engine)
        engine.start()
        return engine

    try:
        yield start
    finally:
        for engine in engines:
            engine.stop()


@pytest.fixture(scope="module")
def main_yate(yaypmhost_module: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[EmbeddedYate]:
    """One engine per test module running apps/main_app.py (shared by the fast tests)."""
    prefix = find_yate()
    assert prefix is not None
    engine = EmbeddedYate(prefix, tmp_path_factory.mktemp("yate-main"), yaypmhost_module,
                          {"main": APPS / "main_app.py"}, general={"timeout": "10000"})
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()
