"""The HTTP side: status pages, ``/calls.json``, per-call JSON and SVG, ``/metrics``, XML-RPC.

Layout (all under one `twisted.web` site)::

    /                   status page (polls /calls.json every second); POST: XML-RPC
    /RPC2               XML-RPC (xmlrpc.client's default path)
    /calls.json         active calls and recently finished ones
    /call/<id>          one call: attributes and its DSM state graph, live
    /call/<id>/json     that call's record
    /call/<id>/graph.svg, /call/<id>/graph.dot
    /metrics            Prometheus text format
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Dict, List, Optional
from urllib.parse import quote

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import Resource

from yaypm.monitor import assets
from yaypm.monitor.graph import StatePath, dot_source, have_dot, render_dot, svg
from yaypm.monitor.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from yaypm.registry import CallRecord

if TYPE_CHECKING:
    from yaypm.monitor.server import Monitor

__all__ = ["MonitorRoot", "GraphCache", "call_summary", "draw_record", "graph_key"]

_log = Logger()

FINISHED_SHOWN = 20
_XML_TYPES = (b"text/xml", b"application/xml")


def _state(attrs: Dict[str, Any]) -> str:
    return str(attrs.get("dsm_state", attrs.get("state", "")) or "")


def graph_key(rec: CallRecord) -> str:
    """Changes whenever the call's graph picture would: state, path length, ended."""
    g = rec.attrs.get("dsm_stategraph")
    n = len(g) if isinstance(g, (list, tuple)) else 0
    return f"{rec.attrs.get('dsm_diag', '')}/{_state(rec.attrs)}|{n}|{int(rec.ended is not None)}"


def _text(v: Any) -> str:
    return "" if v is None else str(v)


def call_summary(rec: CallRecord, now: float) -> Dict[str, Any]:
    """One row of the status page."""
    a = rec.attrs
    out = {"id": rec.id, "app": _text(a.get("app")), "state": _state(a),
           "diag": _text(a.get("dsm_diag")), "dir": _text(a.get("dir")),
           "from": _text(a.get("from")), "to": _text(a.get("to")),
           "start": rec.started, "age": round((rec.ended or now) - rec.started, 3)}
    if rec.ended is not None:
        out["outcome"] = rec.outcome or ""
    return out


def _json(request: server.Request, value: Any, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value, default=str).encode("utf-8")


def _fixed(content_type: bytes, body: str) -> Resource:
    class _Fixed(Resource):
        isLeaf = True
        data = body.encode("utf-8")

        def render_GET(self, request: server.Request) -> bytes:
            request.setHeader(b"content-type", content_type)
            return self.data
    return _Fixed()


class _StatusPage(Resource):
    """``/``: the page on GET; XML-RPC on POST (SEMS clients post to any path)."""

    isLeaf = True

    def __init__(self, rpc: Resource) -> None:
        super().__init__()
        self._rpc = rpc

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return assets.STATUS_HTML.encode("utf-8")

    def render_POST(self, request: server.Request) -> Any:
        return self._rpc.render(request)


class _CallsJSON(Resource):
    isLeaf = True

    def __init__(self, monitor: "Monitor") -> None:
        super().__init__()
        self._m = monitor

    def render_GET(self, request: server.Request) -> bytes:
        reg = self._m.registry
        now = self._m.now()
        finished_ids = reg.list_finished()[-FINISHED_SHOWN:]
        return _json(request, {
            "now": now,
            "active": [call_summary(r, now) for r in list(reg.active.values())],
            "finished": [call_summary(reg.finished[i], now) for i in reversed(finished_ids)],
            "started_total": reg.started_total, "ended_total": reg.ended_total})


class _Metrics(Resource):
    isLeaf = True

    def __init__(self, monitor: "Monitor") -> None:
        super().__init__()
        self._m = monitor

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", METRICS_CONTENT_TYPE.encode("ascii"))
        return self._m.metrics.render()


class _Calls(Resource):
    """``/call/<id>[/json|/graph.svg|/graph.dot]``."""

    def __init__(self, monitor: "Monitor") -> None:
        super().__init__()
        self._m = monitor

    def getChild(self, path: bytes, request: server.Request) -> Resource:
        call_id = path.decode("utf-8", "surrogateescape")
        return _Call(self._m, call_id)

    def render_GET(self, request: server.Request) -> bytes:
        request.redirect(b"/")
        return b""


class _Call(Resource):
    def __init__(self, monitor: "Monitor", call_id: str) -> None:
        super().__init__()
        self._m = monitor
        self._id = call_id

    def _record(self) -> Optional[CallRecord]:
        return self._m.registry.get(self._id)

    def _url(self) -> str:
        return "/call/" + quote(self._id, safe="", errors="surrogateescape")

    def getChild(self, path: bytes, request: server.Request) -> Resource:
        if path == b"":
            return self
        if path in (b"json", b"graph.svg", b"graph.dot") and not request.postpath:
            return _CallPart(self, path.decode("ascii"))
        return _not_found("no such page")

    def render_GET(self, request: server.Request) -> bytes:
        if self._record() is None:
            request.setResponseCode(http.NOT_FOUND)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"no such call\n"
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        url = self._url().replace("&", "&amp;").replace('"', "&quot;")
        return assets.CALL_HTML.replace("{call_url}", url).encode("utf-8")


class _CallPart(Resource):
    isLeaf = True

    def __init__(self, call: _Call, part: str) -> None:
        super().__init__()
        self._call = call
        self._part = part

    def render_GET(self, request: server.Request) -> Any:
        call = self._call
        rec = call._record()
        if rec is None:
            return _json(request, {"error": "no such call", "id": call._id}, http.NOT_FOUND)
        if self._part == "json":
            now = call._m.now()
            out = call_summary(rec, now)
            out.update(attrs=rec.attrs, ended=rec.ended is not None,
                       graph_key=graph_key(rec))
            return _json(request, out)
        if self._part == "graph.dot":
            request.setHeader(b"content-type", b"text/vnd.graphviz; charset=utf-8")
            return dot_source(StatePath.from_record(rec.attrs)).encode("utf-8")
        gone: List[Failure] = []
        request.notifyFinish().addErrback(gone.append)
        d = call._m.graph_svg(rec)
        d.addCallback(self._write_svg, request, gone)
        d.addErrback(self._svg_failed, request, gone)
        return server.NOT_DONE_YET

    @staticmethod
    def _write_svg(text: str, request: server.Request, gone: List[Failure]) -> None:
        if gone:
            return
        request.setHeader(b"content-type", b"image/svg+xml; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.write(text.encode("utf-8"))
        request.finish()

    @staticmethod
    def _svg_failed(f: Failure, request: server.Request, gone: List[Failure]) -> None:
        _log.failure("Drawing a call graph failed", f)
        if gone:
            return
        request.setResponseCode(http.INTERNAL_SERVER_ERROR)
        request.write(b"cannot draw the graph\n")
        request.finish()


def _not_found(text: str) -> Resource:
    class _NotFound(Resource):
        isLeaf = True

        def render(self, request: server.Request) -> bytes:
            request.setResponseCode(http.NOT_FOUND)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return text.encode("utf-8") + b"\n"
    return _NotFound()


class _XMLRPCGate(Resource):
    """Accepts only ``text/xml`` POSTs, so a web page cannot send a CORS "simple request"
    (text/plain, forms) to the XML-RPC methods of a server on the user's machine."""

    isLeaf = True

    def __init__(self, rpc: Resource) -> None:
        super().__init__()
        self._rpc = rpc

    def render(self, request: server.Request) -> Any:
        if request.method != b"POST":
            request.setResponseCode(http.NOT_ALLOWED)
            request.setHeader(b"allow", b"POST")
            return b"XML-RPC: POST text/xml\n"
        ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if ctype not in _XML_TYPES:
            request.setResponseCode(http.UNSUPPORTED_MEDIA_TYPE)
            return b"XML-RPC requests must be sent as text/xml\n"
        return self._rpc.render(request)


class MonitorRoot(Resource):
    """The site's root resource for a `Monitor`."""

    def __init__(self, monitor: "Monitor") -> None:
        super().__init__()
        gate = _XMLRPCGate(monitor.rpc)
        self.putChild(b"", _StatusPage(gate))
        self.putChild(b"RPC2", gate)
        self.putChild(b"calls.json", _CallsJSON(monitor))
        self.putChild(b"call", _Calls(monitor))
        self.putChild(b"metrics", _Metrics(monitor))
        self.putChild(b"app.js", _fixed(b"text/javascript; charset=utf-8", assets.JS))
        self.putChild(b"app.css", _fixed(b"text/css; charset=utf-8", assets.CSS))

    def getChild(self, path: bytes, request: server.Request) -> Resource:
        return _not_found("no such page")


class GraphCache:
    """Recently drawn SVGs by (call id, graph key): status pages poll, dot runs once."""

    def __init__(self, size: int = 128) -> None:
        self._size = size
        self._items: "OrderedDict[tuple, str]" = OrderedDict()

    def get(self, key: tuple) -> Optional[str]:
        v = self._items.get(key)
        if v is not None:
            self._items.move_to_end(key)
        return v

    def put(self, key: tuple, value: str) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


def draw_record(rec: CallRecord, use_dot: bool) -> defer.Deferred:
    """SVG for a record's ``dsm_stategraph``: Graphviz in a thread if wanted and installed,
    else (or if dot fails) the built-in drawing."""
    path = StatePath.from_record(rec.attrs)
    if not (use_dot and have_dot()):
        return defer.succeed(svg(path))
    d = threads.deferToThread(render_dot, dot_source(path))

    def fallback(f: Failure) -> str:
        _log.warn("dot failed ({error}); using the built-in drawing", error=str(f.value))
        return svg(path)
    d.addErrback(fallback)
    return d

