"""The yaypm command line: help, one-line errors, example, run over stdio and TCP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from yaypm import cli

APP = textwrap.dedent('''
    def start(yate):
        d = yate.onmsg("call.route", lambda m: m["called"] == "ivr")
        d.addCallback(lambda route: route.ret(True, "dumb/"))

    def other(yate):
        yate.setlocal("trackparam", "other")
''')


def run_main(capsys, *argv):
    try:
        status = cli.main(list(argv))
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["example", "--help"]])
def test_help_on_every_command(capsys, argv):
    status, out, err = run_main(capsys, *argv)
    assert status == 0
    assert out.startswith("usage: yaypm")


def test_help_of_registered_subcommands(capsys):
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"run", "example"} <= set(commands)
    for name in commands:
        status, out, _ = run_main(capsys, name, "--help")
        assert status == 0 and "usage:" in out


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: COMMAND"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["run", "x"], "one of the arguments --connect --stdio is required"),
    (["run", "x", "--stdio", "--connect", "tcp:1:2"], "not allowed with argument"),
    (["run", "x", "--stdio", "--role", "play"], "invalid choice: 'play'"),
    (["run", "nosuchmodule_xyz", "--stdio"], "cannot import module 'nosuchmodule_xyz'"),
    (["run", "os:nosuchcallable", "--stdio"], "has no 'nosuchcallable'"),
    (["run", "os:sep", "--stdio"], "is not callable"),
    (["run", "./nosuchfile.py", "--stdio"], "no such file"),
])
def test_bad_arguments_give_one_line_and_status_2(capsys, argv, message):
    status, out, err = run_main(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.startswith("yaypm: error: ") and err.count("\n") == 1
    assert message in err
    assert "Traceback" not in err


def test_verbose_shows_the_traceback(capsys):
    with pytest.raises(cli.UsageError):
        cli.main(["-v", "run", "nosuchmodule_xyz", "--stdio"])


def test_missing_subcommand_modules_are_skipped(monkeypatch):
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ["yaypm.nosuch.cli", "yaypm.examples"])
    parser = cli.build_parser()              # yaypm.examples has no add_subparsers: fine
    assert set(parser._subparsers._group_actions[0].choices) == {"run", "example"}


def test_subcommand_modules_can_register_commands(monkeypatch, tmp_path):
    (tmp_path / "my_cli_ext.py").write_text(textwrap.dedent('''
        def add_subparsers(subparsers):
            p = subparsers.add_parser("hello", help="say hello")
            p.set_defaults(func=lambda args: 7)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ["my_cli_ext"])
    assert cli.main(["hello"]) == 7


def test_example_prints_the_exchange(capsys):
    status, out, err = run_main(capsys, "example")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "-> %%>install:100:call.route"
    assert "-> %%<message:0x7f4d.1:true:call.route:dumb/" in lines
    assert any(x.startswith("<- %%>message:") for x in lines)
    assert lines[-1].startswith("example finished")


def test_load_start_from_module_and_file(tmp_path, monkeypatch):
    (tmp_path / "cliapp_mod.py").write_text(APP)
    monkeypatch.chdir(tmp_path)
    assert cli.load_start("cliapp_mod").__name__ == "start"
    assert cli.load_start("cliapp_mod:other").__name__ == "other"
    assert cli.load_start(str(tmp_path / "cliapp_mod.py") + ":other").__name__ == "other"


def _env():
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_run_stdio_answers_on_stdout_and_exits_on_eof(tmp_path):
    app = tmp_path / "stdioapp.py"
    app.write_text(APP)
    proc = subprocess.run(
        [sys.executable, "-m", "yaypm.cli", "run", str(app), "--stdio", "-v"],
        input=b"%%<install:100:call.route:true\n"
              b"%%>message:0x1.2:1795366856:call.route::id=sip/1:called=ivr\n"
              b"%%>message:0x1.3:1795366856:call.route::id=sip/2:called=100\n",
        capture_output=True, timeout=60, env=_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == (b"%%>install:100:call.route\n"
                           b"%%<message:0x1.2:true:call.route:dumb/\n"
                           b"%%<message:0x1.3:false:\n")
    assert b"-> %%>install:100:call.route" in proc.stderr       # -v: wire log on stderr


def test_run_connect_talks_to_a_listener(tmp_path):
    app = tmp_path / "tcpapp.py"
    app.write_text(APP)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(30)
    port = listener.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "yaypm.cli", "run", f"{app}:start",
         "--connect", f"tcp:127.0.0.1:{port}", "--role", "global"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=tmp_path)
    try:
        conn, _ = listener.accept()
        conn.settimeout(30)
        f = conn.makefile("rwb")
        assert f.readline() == b"%%>connect:global\n"
        assert f.readline() == b"%%>install:100:call.route\n"
        f.write(b"%%<install:100:call.route:true\n"
                b"%%>message:0x1.2:1795366856:call.route::id=sip/1:called=ivr\n")
        f.flush()
        assert f.readline() == b"%%<message:0x1.2:true:call.route:dumb/\n"
        f.close()
        conn.close()
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        listener.close()
    assert out == b""                          # logs go to stderr
    assert b"Connecting to Yate at tcp:127.0.0.1:" in err


def test_run_monitor_needs_connect():
    r = subprocess.run([sys.executable, "-m", "yaypm.cli", "run", "yaypm.examples.menu",
                        "--stdio", "--monitor", "tcp:0:interface=127.0.0.1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "yaypm: error: --monitor needs --connect (in --stdio mode Yate owns the script)"]


def test_run_with_monitor_shows_the_app_calls(tmp_path):
    """`yaypm run --monitor` against `yaypm simulate`: the call shows up in /calls.json."""
    import json
    import socket
    import time
    import urllib.request

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    yate_port, mon_port = free_port(), free_port()
    sim = subprocess.Popen([sys.executable, "-m", "yaypm.cli", "simulate", "--listen",
                            f"tcp:{yate_port}:interface=127.0.0.1"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    app = None
    try:
        assert "listening" in sim.stdout.readline()
        app = subprocess.Popen([sys.executable, "-m", "yaypm.cli", "run", "yaypm.examples.menu",
                                "--connect", f"tcp:127.0.0.1:{yate_port}",
                                "--monitor", f"tcp:{mon_port}:interface=127.0.0.1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{mon_port}/calls.json"
        deadline = time.monotonic() + 30
        calls = None
        while time.monotonic() < deadline:
            try:
                calls = json.load(urllib.request.urlopen(url, timeout=2))
                break
            except OSError:
                time.sleep(0.2)
        assert calls is not None, "monitor never answered"
        time.sleep(0.5)                      # let the app install its handlers
        sim.stdin.write("call menu from alice\n")
        sim.stdin.flush()
        found = []
        while time.monotonic() < deadline and not found:
            body = json.load(urllib.request.urlopen(url, timeout=2))
            found = [c for c in body.get("active", body if isinstance(body, list) else [])
                     if isinstance(c, dict) and c.get("from") == "alice"]
            time.sleep(0.2)
        assert found and found[0]["app"] == "menu" and found[0]["to"] == "menu"
    finally:
        for p in (app, sim):
            if p is not None:
                p.kill()
                p.wait(10)


def test_single_argument_from_yate_scripts_section_is_split():
    """Yate passes a [scripts] entry's argument as one argv element ("run app:start --stdio")."""
    r = subprocess.run([sys.executable, "-m", "yaypm.cli", "run yaypm.examples.nosuch --stdio"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "cannot import module 'yaypm.examples.nosuch'" in r.stderr
