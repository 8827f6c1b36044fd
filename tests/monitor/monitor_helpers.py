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


def read_png(path: str) -> Tuple[int, int, List[bytes]]:
    """(width, height, rows of RGB bytes) of an 8-bit, non-interlaced RGB or RGBA PNG (what
    Chromium's screenshots are); enough to look for colours without an imaging library."""
    import struct
    import zlib
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    width = height = ctype = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows: List[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        prev = line
        if bpp == 4:
            line = bytearray(b for i, b in enumerate(line) if i % 4 != 3)
        rows.append(bytes(line))
    return width, height, rows


def count_colour(rows: List[bytes], rgb: Tuple[int, int, int]) -> int:
    """Pixels of exactly ``rgb``."""
    needle = bytes(rgb)
    n = 0
    for row in rows:
        for x in range(0, len(row), 3):
            if row[x:x + 3] == needle:
                n += 1
    return n
