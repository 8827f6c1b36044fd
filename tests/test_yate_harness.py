"""yaypm.testing.yate without an engine: config rendering, line helpers, sipp log
parsing, discovery and the skip/fail rule for ``yate``-marked tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from yaypm.testing.yate import (
    ConnectionClosedError,
    ExtModuleConnection,
    Line,
    SipOutcome,
    YateEngine,
    YateStartError,
    find_yate,
    message_is,
    parse_sipp_message_log,
    yate_missing_reason,
)

REPO = Path(__file__).resolve().parents[1]


# --- configuration templates -------------------------------------------------------------

def engine_with_ports(tmp_path: Path, **kwargs) -> YateEngine:
    engine = YateEngine("/nonexistent", tmp_path / "run", **kwargs)
    engine.global_port, engine.connect_port, engine.sip_port = 5039, 5040, 5070
    return engine


def test_repository_templates_render_with_run_ports(tmp_path):
    engine = engine_with_ports(tmp_path)
    engine.render_config()
    names = sorted(p.name for p in engine.conf_dir.iterdir())
    assert names == ["extmodule.conf", "regexroute.conf", "yate.conf", "ysipchan.conf"]
    ext = (engine.conf_dir / "extmodule.conf").read_text()
    assert "port=5039\nrole=global" in ext and "port=5040\n" in ext
    assert "port=5070\n" in (engine.conf_dir / "ysipchan.conf").read_text()
    assert "modload=disable" in (engine.conf_dir / "yate.conf").read_text()


def test_yate_placeholders_are_kept_and_unknown_ones_refused(tmp_path):
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "a.conf").write_text("p=${SIP_PORT}\nq=${sharedpath}\nr=${WHO}\n")
    engine = engine_with_ports(tmp_path, templates=templates, variables={"WHO": "me"})
    engine.render_config()
    assert (engine.conf_dir / "a.conf").read_text() == "p=5070\nq=${sharedpath}\nr=me\n"

    engine = engine_with_ports(tmp_path, templates=templates)
    with pytest.raises(YateStartError, match=r"a\.conf: unknown placeholders \['WHO'\]"):
        engine.render_config()


def test_conf_overrides_replace_and_add_files(tmp_path):
    engine = engine_with_ports(tmp_path, conf_overrides={
        "regexroute.conf": "[default]\n.*=dumb/\n", "tonegen.conf": "[general]\nport=${SIP_PORT}\n"})
    engine.render_config()
    assert (engine.conf_dir / "regexroute.conf").read_text() == "[default]\n.*=dumb/\n"
    assert (engine.conf_dir / "tonegen.conf").read_text() == "[general]\nport=5070\n"


def test_command_uses_private_folders(tmp_path):
    engine = YateEngine("/opt/y", tmp_path)
    assert engine.command() == [
        "/opt/y/bin/yate", "-c", f"{tmp_path}/conf", "-m", "/opt/y/lib/yate", "-e", "/opt/y/share/yate",
        "-u", f"{tmp_path}/user", "-l", f"{tmp_path}/yate.log", "-Df", "-vv"]
    assert engine.environment()["LD_LIBRARY_PATH"].split(os.pathsep)[0] == "/opt/y/lib"


# --- discovery ---------------------------------------------------------------------------

def test_find_yate_honours_the_prefix_variable(tmp_path, monkeypatch):
    binary = tmp_path / "bin" / "yate"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("YAYPM_YATE_PREFIX", str(tmp_path))
    assert find_yate() == tmp_path
    monkeypatch.setenv("YAYPM_YATE_PREFIX", str(tmp_path / "nothing"))
    assert find_yate() is None
    assert "scripts/install-yate" in yate_missing_reason()


def test_find_yate_looks_in_the_cache_named_after_the_tarball(tmp_path, monkeypatch):
    monkeypatch.delenv("YAYPM_YATE_PREFIX", raising=False)
    monkeypatch.setenv("YAYPM_CACHE", str(tmp_path))
    assert find_yate() is None
    assert "run scripts/install-yate" in yate_missing_reason()


# --- raw lines -------------------------------------------------------------------------------

def test_line_fields():
    line = Line("%%>message:0x1.2:1795369170:call.route:rv%z1:id=sip/1:sip_uri=sip%zx@h:a%}b=c:e=")
    assert (line.kind, line.id, line.name, line.retvalue) == ("handle", "0x1.2", "call.route", "rv:1")
    assert line.params == {"id": "sip/1", "sip_uri": "sip:x@h", "a=b": "c", "e": ""}
    assert Line("%%<message::false:chan.hangup::id=sip/1").kind == "notification"
    answer = Line("%%<message:t1:true:x.y:ok")
    assert (answer.kind, answer.processed, answer.retvalue, answer.params) == ("answer", True, "ok", {})
    assert Line("Error in: %%>quit:").keyword == "Error in"


def test_message_is_matches_name_kind_and_params():
    notification = Line("%%<message::true:call.execute::id=sip/1:peerid=dumb/2")
    assert message_is("call.execute")(notification)
    assert message_is("call.execute", "notification", id="sip/1")(notification)
    assert not message_is("call.execute", "handle")(notification)
    assert not message_is("call.execute", None, id="sip/2")(notification)
    assert not message_is("call.execute")(Line("%%<watch:call.execute:true"))


@pytest.fixture
def wire():
    ours, theirs = socket.socketpair()
    conn = ExtModuleConnection(ours, name="test")
    yield conn, theirs
    conn.close()
    theirs.close()


def test_expect_keeps_other_lines_for_later(wire):
    conn, engine = wire
    engine.sendall(b"%%<message::false:a.b:\n%%<install:50:x:true\n%%>message:0x1:1:c.d:\n")
    assert conn.expect("%%<install") == "%%<install:50:x:true"
    assert conn.expect(message_is("c.d", "handle")) == "%%>message:0x1:1:c.d:"
    assert conn.read_line() == "%%<message::false:a.b:"
    with pytest.raises(TimeoutError, match="nothing matching 'nope'"):
        conn.expect("nope", timeout=0.05)


def test_writes_are_the_documented_formats(wire):
    conn, engine = wire
    conn.message("x.y", {"a": "1:2", "k=": "50%"}, retvalue="r")
    conn.answer(Line("%%>message:0x9.1:1:x.y:"), True)
    conn.answer(Line("%%>message:0x9.2:1:x.y:"), False, "", {"gone": None, "n": "v"})
    conn.send_line("é")
    engine.settimeout(1)
    data = b""
    while data.count(b"\n") < 4:
        data += engine.recv(4096)
    assert data.decode().splitlines() == [
        "%%>message:t1:0:x.y:r:a=1%z2:k%}=50%%",
        "%%<message:0x9.1:true:",
        "%%<message:0x9.2:false:::gone=None:n=v",
        "é",
    ]


def test_closed_connection_is_reported(wire):
    conn, engine = wire
    engine.sendall(b"%%<quit\n")
    engine.close()
    assert conn.expect_closed() == ["%%<quit"]
    with pytest.raises(ConnectionClosedError):
        conn.read_line(timeout=0.1)


# --- sipp message logs -------------------------------------------------------------------

SIPP_LOG = textwrap.dedent("""\
    ----------------------------------------------- 2026-11-27 15:41:55.233112
    UDP message sent (100 bytes):

    INVITE sip:999@127.0.0.1:15070 SIP/2.0
    Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1
    CSeq: 1 INVITE
    Content-Length: 0


    ----------------------------------------------- 2026-11-27 15:41:55.243203
    UDP message received [294] bytes :

    SIP/2.0 100 Trying
    CSeq: 1 INVITE
    Content-Length: 0


    ----------------------------------------------- 2026-11-27 15:41:55.248367
    UDP message received [412] bytes :

    SIP/2.0 404 Not Found
    CSeq: 1 INVITE
    Content-Length: 0


    -----------------------------------------------
    Unexpected UDP message received:

    SIP/2.0 404 Not Found
    CSeq: 1 INVITE
    Content-Length: 0


    ----------------------------------------------- 2026-11-27 15:41:55.248673
    UDP message sent (391 bytes):

    INFO sip:999@127.0.0.1:15070 SIP/2.0
    cseq: 2 INFO
    Content-Type: application/dtmf-relay
    Content-Length: 24

    Signal=5
    Duration=160
    """)


def test_sipp_message_log_parsing():
    messages = parse_sipp_message_log(SIPP_LOG)
    assert [(m.direction, m.first_line) for m in messages] == [
        ("sent", "INVITE sip:999@127.0.0.1:15070 SIP/2.0"),
        ("received", "SIP/2.0 100 Trying"),
        ("received", "SIP/2.0 404 Not Found"),
        ("sent", "INFO sip:999@127.0.0.1:15070 SIP/2.0"),
    ]
    assert [m.method for m in messages] == ["INVITE", "INVITE", "INVITE", "INFO"]
    assert messages[2].status == 404 and messages[3].status is None
    assert messages[3].header("CSeq") == "2 INFO"
    assert messages[3].body == "Signal=5\nDuration=160"


def test_sip_outcome_reads_the_invite_final_response():
    messages = parse_sipp_message_log(SIPP_LOG)
    caller = SipOutcome(exit_code=1, messages=messages, role="caller")
    assert (caller.status, caller.outcome, caller.answered, caller.bye_received) == (404, "404", False, False)
    callee = SipOutcome(exit_code=0, messages=messages, role="callee")
    assert callee.outcome == "no final response"
    assert "caller 404 (sipp exit 1): -> INVITE" in str(caller)


# --- the pytest option -------------------------------------------------------------------

def run_pytest(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_marked.py").write_text(
        "import pytest\n\n@pytest.mark.yate\ndef test_needs_yate():\n    pass\n\n"
        "def test_plain():\n    pass\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
         "-rs", "-q", str(tmp_path / "test_marked.py"), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "YAYPM_YATE_PREFIX": str(tmp_path / "none"), **env})


def test_missing_yate_skips_marked_tests_with_one_reason(tmp_path):
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 1 skipped" in result.stdout
    assert "scripts/install-yate" in result.stdout


def test_missing_yate_fails_marked_tests_when_required(tmp_path):
    result = run_pytest(tmp_path, "--yate-required")
    assert result.returncode == 1, result.stdout
    assert "1 passed, 1 error" in result.stdout and "(--yate-required)" in result.stdout
