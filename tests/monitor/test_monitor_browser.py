"""The status pages in a real headless Chromium: the page's JavaScript fetches, renders and
keeps updating the calls; the call page draws the state graph with the current state
highlighted.  Checked on the DOM Chromium built (``--dump-dom``) and on its screenshots.

Skipped when Chromium is not installed — except under CI (``CI`` set), where that is a failure:
CI needs the Debian package ``chromium`` (plus ``fonts-dejavu-core`` for readable text).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from html.parser import HTMLParser
from typing import Any, Dict, List, Optional, Tuple

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, utils
from twisted.web.resource import Resource

from yaypm.monitor import Monitor
from yaypm.monitor.server import MonitorSite

from monitor_helpers import ANNA, CALLER, JOHN, count_colour, quiz_registry, read_png

WINDOW = (1200, 800)
BUDGET_MS = 4000             # virtual time: the pages poll every 1000 ms


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (CI needs: apt-get install chromium)")
    pytest.skip("chromium not installed (apt-get install chromium); set CI=1 to make this fail")


async def chromium(url: str, *args: str) -> str:
    """Run headless Chromium on ``url`` with ``args`` (--dump-dom, --screenshot=...) as a child
    process (the reactor keeps serving); returns its stdout."""
    exe = _chromium()
    profile = tempfile.mkdtemp(prefix="yaypm-chromium-")
    try:
        out, err, code = await utils.getProcessOutputAndValue(
            "timeout", ["120", exe, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--virtual-time-budget={BUDGET_MS}",
                        f"--window-size={WINDOW[0]},{WINDOW[1]}", *args, url],
            env=dict(os.environ))
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert code == 0, f"chromium exited {code}: {err.decode(errors='replace')[-2000:]}"
    return out.decode("utf-8", "replace")


class _Rows(HTMLParser):
    """Rows of the status page's tables as Chromium left them: table id -> [(call id, state,
    texts)]; plus the body's data attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: Dict[str, List[Tuple[str, str, List[str]]]] = {}
        self.body: Dict[str, Optional[str]] = {}
        self._table: Optional[str] = None
        self._row: Optional[Tuple[str, str, List[str]]] = None
        self._cell: Optional[List[str]] = None

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        elif tag == "table":
            self._table = a.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table and "data-call-id" in a:
            self._row = (a["data-call-id"] or "", a.get("data-state") or "", [])
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row[2].append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


class _AfterFirst(Resource):
    """Serves ``inner``; after the first request runs ``change`` — so the DOM Chromium ends with
    can only show the change if the page kept polling."""

    isLeaf = True

    def __init__(self, inner: Resource, change: Any) -> None:
        super().__init__()
        self._inner = inner
        self._change = change
        self.requests = 0

    def render(self, request: Any) -> Any:
        body = self._inner.render(request)
        self.requests += 1
        if self.requests == 1:
            self._change()
        return body


async def _serve(mon: Monitor, change: Any) -> Tuple[Any, _AfterFirst]:
    root = mon.resource()
    calls_json = _AfterFirst(root.children[b"calls.json"], change)
    root.putChild(b"calls.json", calls_json)
    port = reactor.listenTCP(0, MonitorSite(root, allowed_hosts=()), interface="127.0.0.1")
    return port, calls_json


@pytest.fixture
def chromium_exe() -> str:
    return _chromium()


@pytest_twisted.ensureDeferred
async def test_status_page_lists_and_updates_calls(chromium_exe: str, tmp_path) -> None:
    reg = quiz_registry(reactor)
    mon = Monitor(reg, graph="builtin")

    def change() -> None:            # what happens while the page is open
        reg.set(CALLER, dsm_state="CONNECTED")
        reg.end(ANNA, "cancelled")
        reg.start("7F00AA11-NEW", app="voicemail", dir="in", dsm_state="RECORD",
                  **{"from": '"<b>x</b>" <sip:6@192.0.2.9>'})

    port, calls_json = await _serve(mon, change)
    url = f"http://127.0.0.1:{port.getHost().port}/"
    try:
        dom = await chromium(url, "--dump-dom")
        shot = tmp_path / "status.png"
        await chromium(url, f"--screenshot={shot}")
    finally:
        await defer.maybeDeferred(port.stopListening)

    page = _Rows()
    page.feed(dom)
    assert calls_json.requests >= 3                       # polled, more than once per run
    assert int(page.body["data-polls"] or 0) >= 2
    active = {cid: (state, cells) for cid, state, cells in page.tables["calls"]}
    assert list(active) == [CALLER, JOHN, "7F00AA11-NEW"]
    assert active[CALLER][0] == "CONNECTED" and active[JOHN][0] == "ENTER_PIN"
    assert active[CALLER][1][1:4] == ["quizconnect_caller", "CONNECTED", "in"]
    assert re.fullmatch(r"\d+\.\d s", active[JOHN][1][6])            # the age column
    assert active["7F00AA11-NEW"][1][4] == '"<b>x</b>" <sip:6@192.0.2.9>'   # shown, not run
    assert [(cid, cells[3]) for cid, _, cells in page.tables["finished"]] == \
        [(ANNA, "cancelled")]
    assert re.search(r'<span id="count">3</span>', dom)
    assert 'id="status" class="">live' in dom

    width, height, rows = read_png(str(shot))
    assert (width, height) == WINDOW and shot.stat().st_size > 10_000
    assert count_colour(rows, (0xEE, 0xF3, 0xFB)) > 5_000     # the tables' header background


@pytest_twisted.ensureDeferred
async def test_call_page_draws_the_state_graph(chromium_exe: str, tmp_path) -> None:
    reg = quiz_registry(reactor)
    mon = Monitor(reg, graph="builtin")
    port, _ = await _serve(mon, lambda: None)
    url = f"http://127.0.0.1:{port.getHost().port}/call/{CALLER}"
    try:
        dom = await chromium(url, "--dump-dom")
        shot = tmp_path / "call.png"
        await chromium(url, f"--screenshot={shot}")
    finally:
        await defer.maybeDeferred(port.stopListening)

    assert f'<span id="call-id">{CALLER}</span>' in dom
    assert '<span id="call-state" class="state">WAIT_CALLEE</span>' in dom
    graph = dom[dom.index('<div id="graph">'):]
    assert "<svg" in graph
    current = re.findall(r'<g class="state current" data-state="([^"]+)"', graph)
    assert current == ["quizconnect_caller/WAIT_CALLEE"]
    assert len(re.findall(r'<g class="state" data-state=', graph)) == 3
    assert graph.count('class="edge visited"') == 4
    assert "create one more callee legs ×2" in graph

    width, height, rows = read_png(str(shot))
    assert (width, height) == WINDOW
    assert count_colour(rows, (0xFF, 0xCF, 0x66)) > 1_000     # the highlighted current state
    assert count_colour(rows, (0xEE, 0xF3, 0xFB)) > 3_000     # the other states' fill
