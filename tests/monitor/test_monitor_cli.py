"""``yaypm status`` / ``yaypm reload`` against a live server, parsed by the main ``yaypm``
command (which imports yaypm.monitor.cli): once as a child process, otherwise in a thread (a
child process costs a second of imports); and against an XML-RPC-only server."""

from __future__ import annotations

import io
import socket
from typing import Tuple

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads
from twisted.web.server import Site

from yaypm.monitor import ControlError, Monitor, MonitorRPC
from yaypm.monitor.cli import format_table, serve_monitor
from yaypm.monitor.server import MonitorConfig
from yaypm.registry import CallRegistry

from monitor_helpers import ANNA, CALLER, JOHN, quiz_registry, run_python, serving


async def yaypm_process(*args: str) -> Tuple[bytes, bytes, int]:
    return await run_python("-c", "import sys; from yaypm.cli import main; sys.exit(main())",
                            *args)


def _in_thread(argv: Tuple[str, ...]) -> Tuple[bytes, bytes, int]:
    from yaypm.cli import build_parser
    args = build_parser().parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    code = args.func(args, out=out, err=err)
    return out.getvalue().encode(), err.getvalue().encode(), code


async def yaypm(*args: str) -> Tuple[bytes, bytes, int]:
    """The sub-command as the main parser sets it up, run in a thread (the reactor serves)."""
    return await threads.deferToThread(_in_thread, args)


class Engine:
    def __init__(self) -> None:
        self.loaded = []

    def load_config(self, conf_file, app_name):
        if conf_file.endswith("broken.conf"):
            raise ControlError(500, "reload config failed: broken.dsm:3: syntax error")
        self.loaded.append((conf_file, app_name))

    def reload(self):
        return "DSMs reloaded"

    def post_event(self, call_id, params):
        return False

    def graph_svg(self, call_id):
        return None


@pytest_twisted.ensureDeferred
async def test_status_prints_active_calls() -> None:
    async with serving(Monitor(quiz_registry(reactor))) as url:
        out, err, code = await yaypm_process("status", "--url", url)
    assert (code, err) == (0, b"")
    lines = out.decode().splitlines()
    assert lines[0] == "active calls: 3"
    assert lines[1].split() == ["call", "id", "app", "state", "dir", "age", "from", "to"]
    rows = {ln.split()[0]: ln.split() for ln in lines[2:]}
    assert rows[CALLER][1:4] == ["quizconnect_caller", "WAIT_CALLEE", "in"]
    assert rows[JOHN][2] == rows[ANNA][2] == "ENTER_PIN"
    assert rows[ANNA][-1] == "<sip:anna@192.168.5.106:5080>"


@pytest_twisted.ensureDeferred
async def test_reload_and_load_config() -> None:
    engine = Engine()
    async with serving(Monitor(quiz_registry(reactor), engine)) as url:
        out, _, code = await yaypm("reload", "--url", url)
        assert (code, out) == (0, b"200 DSMs reloaded\n")
        out, _, code = await yaypm("reload", "--url", url, "--conf", "/etc/dsm/quizconnect.conf")
        assert (code, out) == (0, b"200 OK\n")
        out, _, code = await yaypm("reload", "--url", url, "--conf", "/etc/q.conf", "--app", "qc")
        assert code == 0
        assert engine.loaded == [("/etc/dsm/quizconnect.conf", "quizconnect"),
                                 ("/etc/q.conf", "qc")]
        out, err, code = await yaypm("reload", "--url", url, "--conf", "/x/broken.conf")
        assert code == 1 and err == b"500 reload config failed: broken.dsm:3: syntax error\n"
        _, err, code = await yaypm("reload", "--url", url, "--app", "qc")
        assert code == 2 and b"--app needs --conf" in err


@pytest_twisted.ensureDeferred
async def test_unreachable_server_is_one_line_and_status_1() -> None:
    port = reactor.listenTCP(0, Site(MonitorRPC(quiz_registry(reactor))), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}"
    await defer.maybeDeferred(port.stopListening)        # now nothing listens there
    out, err, code = await yaypm("status", "--url", url)
    assert code == 1 and out == b"" and err.decode().startswith(f"yaypm: cannot reach {url}")
    _, err, code = await yaypm("reload", "--url", url)
    assert code == 1 and len(err.decode().splitlines()) == 1


@pytest_twisted.ensureDeferred
async def test_status_against_an_xmlrpc_only_server_like_sems() -> None:
    port = reactor.listenTCP(0, Site(MonitorRPC(quiz_registry(reactor))), interface="127.0.0.1")
    try:
        out, err, code = await run_python("-m", "yaypm.monitor.cli", "status", "--url",
                                          f"http://127.0.0.1:{port.getHost().port}")
    finally:
        await defer.maybeDeferred(port.stopListening)
    assert (code, err) == (0, b"")
    lines = out.decode().splitlines()
    assert lines[0] == "active calls: 3" and lines[2].split()[:3] == \
        [CALLER, "quizconnect_caller", "WAIT_CALLEE"]


@pytest_twisted.ensureDeferred
async def test_status_with_basic_auth_in_the_url(tmp_path) -> None:
    from yaypm.monitor.server import password_checker
    users = tmp_path / "users"
    users.write_text("ops:p@ss\n")
    async with serving(Monitor(quiz_registry(reactor)),
                       checkers=[password_checker(str(users))]) as url:
        _, err, code = await yaypm("status", "--url", url)
        assert code == 1 and b"HTTP 401" in err
        out, _, code = await yaypm("status", "--url", url.replace("//", "//ops:p%40ss@"))
        assert code == 0 and out.startswith(b"active calls: 3")


def test_format_table() -> None:
    text = format_table([{"id": "a", "app": "x", "state": "S", "dir": "in", "age": 75.2,
                          "from": "f", "to": "t"}, {"id": "bbbb", "age": 3}])
    assert text.splitlines() == [
        "call id  app  state  dir  age    from  to",
        "a        x    S      in   1m15s  f     t",
        "bbbb                      3.0s"]


@pytest_twisted.ensureDeferred
async def test_serve_monitor_on_a_taken_port_exits_with_one_line(capsys) -> None:
    await serve_monitor(MonitorConfig(), CallRegistry(reactor), reactor=reactor)  # off: no-op
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = MonitorConfig(listen=f"tcp:{port}:interface=127.0.0.1")
        with pytest.raises(SystemExit) as e:
            await serve_monitor(config, CallRegistry(reactor), reactor=reactor)
    assert e.value.code == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"yaypm: error: --monitor tcp:{port}:interface=127.0.0.1: ")
