"""Shared pieces of the monitoring tests: quizconnect-shaped registry records, a live server
on a free loopback port, and blocking clients run in threads (the reactor keeps serving)."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
import xmlrpc.client
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple

from twisted.internet import defer, reactor, threads, utils

from yaypm.monitor import Monitor
from yaypm.registry import CallRegistry

HERE = os.path.dirname(os.path.abspath(__file__))

CALLER = "6ABC60BB-4C72F4BF0005C7FD-B6A45B70"
JOHN = "19D97994-4C72F4BF0006A862-B65D5B70"
ANNA = "3EC2A856-4C72F4BF00062B82-B65D5B70"

CALLER_GRAPH = [
    "quizconnect_caller/START", "> got INVITE in caller leg >", "quizconnect_caller/RUN_INVITE",
    "> we have results >", "quizconnect_caller/CREATE_CALLEE_LEGS",
    "> create one more callee legs >", "quizconnect_caller/CREATE_CALLEE_LEGS",
    "> create one more callee legs >", "quizconnect_caller/CREATE_CALLEE_LEGS",
    "> done creating callee legs >", "quizconnect_caller/WAIT_CALLEE"]


def callee_graph() -> List[str]:
    return ["quizconnect_callee/START", "> session starts in callee leg >",
            "quizconnect_callee/ENTER_PIN"]


def quiz_registry(clock: Any) -> CallRegistry:
    """Three legs as yaypm.dsm records them for quizconnect (spec §3.5, §4; modern model,
    `app` present, no leading 0): the caller waiting, two callees entering their PIN."""
    reg = CallRegistry(clock)
    reg.start(CALLER, **{"from": '"bee" <sip:5@192.168.5.106>', "to": "<sip:35@192.168.5.106>",
                         "ruri": "sip:35@192.168.5.106", "app": "quizconnect_caller",
                         "dir": "in", "dsm_diag": "quizconnect_caller",
                         "dsm_state": "WAIT_CALLEE", "dsm_stategraph": list(CALLER_GRAPH)})
    for ltag, name in ((JOHN, "john"), (ANNA, "anna")):
        reg.start(ltag, **{"from": "<sip:quizconnect@192.168.5.106:5080>",
                           "to": f"<sip:{name}@192.168.5.106:5080>",
                           "ruri": f"sip:{name}@192.168.5.106:5080",
                           "app": "quizconnect_callee", "dir": "out",
                           "dsm_diag": "quizconnect_callee", "dsm_state": "ENTER_PIN",
                           "dsm_stategraph": callee_graph()})
    return reg


@asynccontextmanager
async def serving(monitor: Monitor, **listen: Any) -> AsyncIterator[str]:
    """Run ``monitor`` on a free loopback port; yields its base URL."""
    port = await monitor.listen("tcp:0:interface=127.0.0.1", reactor=reactor, **listen)
    try:
        yield f"http://127.0.0.1:{port.getHost().port}"
    finally:
        await defer.maybeDeferred(port.stopListening)


def _rpc(url: str, method: str, args: Tuple[Any, ...]) -> Any:
    with xmlrpc.client.ServerProxy(url) as s:
        return getattr(s, method)(*args)


async def rpc(url: str, method: str, *args: Any) -> Any:
    """One XML-RPC call with Python's own client, in a thread."""
    return await threads.deferToThread(_rpc, url, method, args)


def _http(url: str, data: Optional[bytes], headers: Dict[str, str],
          method: Optional[str]) -> Tuple[int, Dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


async def http(url: str, data: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None,
               method: Optional[str] = None) -> Tuple[int, Dict[str, str], bytes]:
    """(status, headers, body) of one HTTP request, in a thread."""
    return await threads.deferToThread(_http, url, data, headers or {}, method)


async def run_python(*args: str, env: Optional[Dict[str, str]] = None) -> Tuple[bytes, bytes, int]:
    """(stdout, stderr, exit code) of ``python3 args...`` as a child process."""
    e = dict(os.environ)
    e.update(env or {})
    return await utils.getProcessOutputAndValue(sys.executable, args, env=e)
