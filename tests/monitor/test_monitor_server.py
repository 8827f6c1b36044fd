"""The server over real loopback HTTP: seed 002's monitoring scripts as child processes,
faults and refusals for bad requests, auth, Host checks, pages and JSON, endpoint rules."""

from __future__ import annotations

import base64
import json
import os
import socket
import xmlrpc.client
from configparser import ConfigParser

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads

from yaypm.monitor import Monitor, MonitorConfig, MonitorConfigError, check_endpoint
from yaypm.monitor.server import start_monitor

from monitor_helpers import (ANNA, CALLER, HERE, JOHN, http, quiz_registry, rpc, run_python,
                             serving)

SEED_URL = "http://127.0.0.1:8090"


def script_copy(tmp_path, name: str, url: str) -> str:
    """The seed script as committed, with only its hard-coded server address pointed at this
    test's server (port 8090 may be busy; tests run in parallel)."""
    with open(os.path.join(HERE, name)) as f:
        text = f.read()
    assert text.count(SEED_URL) == 1
    path = tmp_path / name
    path.write_text(text.replace(SEED_URL, url))
    return str(path)


@pytest_twisted.ensureDeferred
async def test_seed_scripts_print_call_states(tmp_path) -> None:
    mon = Monitor(quiz_registry(reactor))
    async with serving(mon) as url:
        out, err, code = await run_python(script_copy(tmp_path, "sems_sessions_states.py", url))
        assert (code, err) == (0, b"")
        assert out.decode().splitlines() == [
            "calls: 3",
            "call id                                 state",
            f"{CALLER}     WAIT_CALLEE",
            f"{JOHN}     ENTER_PIN",
            f"{ANNA}     ENTER_PIN"]

        get_session = script_copy(tmp_path, "sems_get_session.py", url)
        out, err, code = await run_python(get_session, CALLER)
        assert (code, err) == (0, b"")
        lines = out.decode().splitlines()
        assert lines[:2] == ["calls: 3", "attrib                                 val"]
        assert "dsm_state           WAIT_CALLEE" in lines
        assert "app                 quizconnect_caller" in lines
        assert "ruri                sip:35@192.168.5.106" in lines
        assert "dir                 in" in lines
        graph = [ln for ln in lines if ln.startswith("dsm_stategraph")][0]
        assert "'> we have results >', 'quizconnect_caller/CREATE_CALLEE_LEGS'" in graph

        out, _, code = await run_python(get_session, "no-such-call")
        assert code == 1 and out.decode().splitlines() == ["calls: 3", "call not found"]

        mon.registry.end(JOHN, "cancelled")
        mon.registry.set(CALLER, dsm_state="CONNECTED")
        out, _, code = await run_python(script_copy(tmp_path, "sems_sessions_states.py", url))
        assert out.decode().splitlines()[0] == "calls: 2"
        assert f"{CALLER}     CONNECTED" in out.decode().splitlines()


@pytest_twisted.ensureDeferred
async def test_loadconfig_as_in_the_tutorial() -> None:
    seen = []

    class Engine:
        def load_config(self, conf_file, app_name):
            seen.append((conf_file, app_name))

        def reload(self):
            return "DSMs reloaded"

        def post_event(self, call_id, params):
            return call_id == CALLER

        def graph_svg(self, call_id):
            return None

    async with serving(Monitor(quiz_registry(reactor), Engine())) as url:
        assert await rpc(url, "calls") == 3
        assert await rpc(url, "loadConfig", "/usr/local/etc/sems/dsm/quizconnect.conf",
                         "quizconnect") == [200, "OK"]
        assert seen == [("/usr/local/etc/sems/dsm/quizconnect.conf", "quizconnect")]
        assert await rpc(url, "reloadDSMs") == [200, "DSMs reloaded"]
        assert await rpc(url, "postDSMEvent", CALLER, [["b_status", "MATCHED"]]) == [200, "OK"]
        assert await rpc(url, "postDSMEvent", "x", []) == [404, "Session not found"]
        assert await rpc(url, "di", "dsm", "reloadDSMs") == [200, "DSMs reloaded"]


@pytest_twisted.ensureDeferred
async def test_bad_requests_get_faults_or_refusals_and_the_server_lives_on() -> None:
    async with serving(Monitor(quiz_registry(reactor))) as url:
        with pytest.raises(xmlrpc.client.Fault) as e:
            await rpc(url, "nosuchmethod")
        assert e.value.faultCode == 8001
        with pytest.raises(xmlrpc.client.Fault) as e:
            await rpc(url, "get")
        assert e.value.faultCode == 400
        with pytest.raises(xmlrpc.client.Fault) as e:
            await rpc(url, "set", "nope", "a", "b")
        assert e.value.faultCode == 404

        status, _, body = await http(url + "/RPC2", b"<methodCall><oops", {"Content-Type": "text/xml"})
        assert status == 200
        with pytest.raises(xmlrpc.client.Fault) as e:
            xmlrpc.client.loads(body)
        assert "deserialize" in e.value.faultString
        # SEMS clients post to "/" too
        status, _, body = await http(url + "/", xmlrpc.client.dumps((), "calls").encode(),
                                     {"Content-Type": "text/xml"})
        assert status == 200 and xmlrpc.client.loads(body)[0] == (3,)
        # cross-site "simple requests" cannot reach the methods
        status, _, _ = await http(url + "/RPC2", xmlrpc.client.dumps((), "calls").encode(),
                                  {"Content-Type": "text/plain"})
        assert status == 415
        status, _, _ = await http(url + "/RPC2")
        assert status == 405
        # a body over 1 MiB: connection dropped, nothing buffered
        with pytest.raises((xmlrpc.client.ProtocolError, ConnectionError, OSError)):
            await rpc(url, "get", "x" * (2 << 20))
        assert await rpc(url, "calls") == 3


def _raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


@pytest_twisted.ensureDeferred
async def test_host_header_must_be_an_address_or_localhost() -> None:
    async with serving(Monitor(quiz_registry(reactor)), allowed_hosts=["yaypm.lan"]) as url:
        port = int(url.rsplit(":", 1)[1])

        def get(host: bytes) -> bytes:
            return _raw_request(port, b"GET /calls.json HTTP/1.1\r\nHost: " + host +
                                b"\r\nConnection: close\r\n\r\n")
        for ok in (b"127.0.0.1:%d" % port, b"localhost:%d" % port, b"[::1]:%d" % port,
                   b"yaypm.lan"):
            assert (await threads.deferToThread(get, ok)).startswith(b"HTTP/1.1 200"), ok
        bad = await threads.deferToThread(get, b"rebind.attacker.example:%d" % port)
        assert bad.startswith(b"HTTP/1.1 403")


@pytest_twisted.ensureDeferred
async def test_basic_auth(tmp_path) -> None:
    users = tmp_path / "users"
    users.write_text("ops:s3cret\n")
    from yaypm.monitor.server import password_checker
    mon = Monitor(quiz_registry(reactor))
    async with serving(mon, checkers=[password_checker(str(users))]) as url:
        status, headers, _ = await http(url + "/calls.json")
        assert status == 401 and "basic" in headers.get("WWW-Authenticate", "").lower()
        with pytest.raises(xmlrpc.client.ProtocolError) as e:
            await rpc(url, "calls")
        assert e.value.errcode == 401
        authed = url.replace("http://", "http://ops:s3cret@")
        assert await rpc(authed, "calls") == 3
        wrong = url.replace("http://", "http://ops:nope@")
        with pytest.raises(xmlrpc.client.ProtocolError):
            await rpc(wrong, "calls")
        token = base64.b64encode(b"ops:s3cret").decode()
        status, _, body = await http(url + "/metrics", headers={"Authorization": "Basic " + token})
        assert status == 200 and b"yaypm_calls_active" in body


@pytest_twisted.ensureDeferred
async def test_pages_and_json() -> None:
    mon = Monitor(quiz_registry(reactor), graph="builtin")
    async with serving(mon) as url:
        status, headers, body = await http(url + "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b"/app.js" in body
        status, headers, body = await http(url + "/app.js")
        assert status == 200 and b"calls.json" in body
        status, headers, body = await http(url + "/calls.json")
        data = json.loads(body)
        assert [c["id"] for c in data["active"]] == [CALLER, JOHN, ANNA]
        row = data["active"][0]
        assert (row["app"], row["state"], row["dir"]) == ("quizconnect_caller", "WAIT_CALLEE", "in")
        assert row["age"] >= 0 and data["started_total"] == 3 and data["finished"] == []

        status, _, body = await http(url + "/call/" + CALLER)
        assert status == 200 and b"data-call-url=\"/call/" + CALLER.encode() in body
        status, _, body = await http(url + f"/call/{CALLER}/json")
        rec = json.loads(body)
        assert rec["attrs"]["dsm_state"] == "WAIT_CALLEE" and rec["ended"] is False
        status, headers, body = await http(url + f"/call/{CALLER}/graph.svg")
        assert status == 200 and headers["Content-Type"].startswith("image/svg+xml")
        assert b'class="state current" data-state="quizconnect_caller/WAIT_CALLEE"' in body
        status, _, body = await http(url + f"/call/{CALLER}/graph.dot")
        assert b'class="state current"' in body and b"create one more callee legs" in body

        for missing in ("/call/nope", "/call/nope/json", "/call/nope/graph.svg",
                        f"/call/{CALLER}/other", "/nothing"):
            status, _, _ = await http(url + missing)
            assert status == 404, missing

        mon.registry.end(ANNA, "cancelled")
        data = json.loads((await http(url + "/calls.json"))[2])
        assert [c["id"] for c in data["finished"]] == [ANNA]
        assert data["finished"][0]["outcome"] == "cancelled"
        assert data["ended_total"] == {"cancelled": 1}


@pytest_twisted.ensureDeferred
async def test_call_ids_with_odd_characters() -> None:
    mon = Monitor(quiz_registry(reactor), graph="builtin")
    odd = "a/b c?<x>&%"
    mon.registry.start(odd, app="t", dsm_state="S<1>")
    from urllib.parse import quote
    async with serving(mon) as url:
        status, _, body = await http(url + "/call/" + quote(odd, safe="") + "/json")
        assert status == 200 and json.loads(body)["id"] == odd
        status, _, body = await http(url + "/call/" + quote(odd, safe=""))
        assert status == 200 and b"<x>" not in body
        status, _, body = await http(url + "/call/" + quote(odd, safe="") + "/graph.svg")
        assert status == 200 and b"S&lt;1&gt;" in body and b"S<1>" not in body


@pytest_twisted.ensureDeferred
async def test_graph_from_the_engine_when_it_draws_one() -> None:
    class Engine:
        def graph_svg(self, call_id):
            return threads.deferToThread(lambda: f'<svg id="engine">{call_id}</svg>')

    mon = Monitor(quiz_registry(reactor), Engine())   # type: ignore[arg-type]
    async with serving(mon) as url:
        _, _, body = await http(url + f"/call/{JOHN}/graph.svg")
        assert body == f'<svg id="engine">{JOHN}</svg>'.encode()


@pytest_twisted.ensureDeferred
async def test_graphviz_drawing_when_installed() -> None:
    from yaypm.monitor.graph import have_dot
    if not have_dot():
        pytest.skip("graphviz dot not installed")
    mon = Monitor(quiz_registry(reactor))
    async with serving(mon) as url:
        _, _, body = await http(url + f"/call/{CALLER}/graph.svg")
        assert body.startswith(b"<svg") and b"state current" in body
        assert b"WAIT_CALLEE" in body and b"create one more callee legs" in body


def test_endpoint_rules() -> None:
    assert check_endpoint("tcp:8090") == "tcp:8090:interface=127.0.0.1"
    assert check_endpoint("tcp6:8090") == "tcp6:8090:interface=\\:\\:1"
    assert check_endpoint("tcp:8090:interface=127.0.0.1") == "tcp:8090:interface=127.0.0.1"
    assert check_endpoint("tcp6:8090:interface=\\:\\:1") == "tcp6:8090:interface=\\:\\:1"
    assert check_endpoint("unix:/run/yaypm.sock") == "unix:/run/yaypm.sock"
    for remote in ("tcp:8090:interface=0.0.0.0", "tcp:8090:interface=192.0.2.7",
                   "tcp6:8090:interface=\\:\\:", "systemd:domain=INET:index=0"):
        with pytest.raises(MonitorConfigError):
            check_endpoint(remote)
        assert check_endpoint(remote, allow_remote=True) == remote


@pytest_twisted.ensureDeferred
async def test_remote_binding_needs_the_option_and_auth(tmp_path) -> None:
    mon = Monitor(quiz_registry(reactor))
    with pytest.raises(MonitorConfigError, match="not loopback"):
        await mon.listen("tcp:0:interface=0.0.0.0", reactor=reactor)
    with pytest.raises(MonitorConfigError, match="auth"):
        await mon.listen("tcp:0:interface=0.0.0.0", reactor=reactor, allow_remote=True)
    users = tmp_path / "users"
    users.write_text("ops:pw\n")
    cfg = MonitorConfig(listen="tcp:0:interface=0.0.0.0", allow_remote=True,
                        auth_file=str(users))
    mon, port = await start_monitor(cfg, quiz_registry(reactor), reactor=reactor)
    try:
        assert port.getHost().host == "0.0.0.0"
        url = f"http://ops:pw@127.0.0.1:{port.getHost().port}"
        assert await rpc(url, "calls") == 3
    finally:
        await defer.maybeDeferred(port.stopListening)


def test_config_from_ini_and_flags() -> None:
    import argparse

    from yaypm.monitor.cli import add_server_arguments
    p = ConfigParser()
    assert MonitorConfig.from_ini(p).listen is None                  # off by default
    p.read_string("[monitor]\nenabled = yes\n")
    assert MonitorConfig.from_ini(p).listen == "tcp:8090:interface=127.0.0.1"
    p.read_string("[monitor]\nlisten = tcp:9000\nallow_remote = no\nauth_file = /etc/u\n"
                  "allowed_hosts = a.lan, b.lan\ncontrol_timeout = 5\ngraph = builtin\n"
                  "latency_sample_every = 1\n")
    cfg = MonitorConfig.from_ini(p)
    assert (cfg.listen, cfg.allow_remote, cfg.auth_file, cfg.allowed_hosts,
            cfg.control_timeout, cfg.graph, cfg.latency_sample_every) == \
        ("tcp:9000", False, "/etc/u", ("a.lan", "b.lan"), 5.0, "builtin", 1)
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    args = parser.parse_args(["--monitor", "tcp:8091:interface=0.0.0.0",
                              "--monitor-allow-remote", "--monitor-auth", "/etc/x"])
    cfg2 = cfg.with_args(args)
    assert (cfg2.listen, cfg2.allow_remote, cfg2.auth_file) == \
        ("tcp:8091:interface=0.0.0.0", True, "/etc/x")
    assert cfg.with_args(parser.parse_args([])) == cfg
    p.read_string("[monitor]\nallow_remote = maybe\n")
    with pytest.raises(MonitorConfigError, match="allow_remote"):
        MonitorConfig.from_ini(p)
    assert start_monitor(MonitorConfig()) is None


@pytest_twisted.ensureDeferred
async def test_monitor_service_starts_and_stops() -> None:
    from yaypm.monitor import MonitorService
    svc = MonitorService(Monitor(quiz_registry(reactor)),
                         MonitorConfig(listen="tcp:0:interface=127.0.0.1"), reactor=reactor)
    svc.startService()
    port = await svc.listening
    url = f"http://127.0.0.1:{port.getHost().port}"
    assert await rpc(url, "calls") == 3
    await defer.maybeDeferred(svc.stopService)
    assert svc.port is None and not svc.running
