"""``yaypm status`` and ``yaypm reload``: talk to a running monitoring server.

The main CLI (``yaypm.cli``) calls `add_subparsers(subparsers)`; each sub-command sets
``func(args) -> int`` (exit status) with `argparse`'s ``set_defaults``.  The server-side flags
(``--monitor``, ``--monitor-allow-remote``, ``--monitor-auth``) are added to the command that
runs apps with `add_server_arguments(parser)`, read with ``MonitorConfig.with_args`` and
started with `serve_monitor`.  Also runnable alone: ``python -m yaypm.monitor.cli status``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request
import xmlrpc.client
from typing import Any, Dict, List, Optional, Sequence, TextIO
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["add_subparsers", "add_server_arguments", "serve_monitor", "status", "reload", "main",
           "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8090"
TIMEOUT = 10.0


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that turn the monitoring server on (they override the ``[monitor]`` section)."""
    g = parser.add_argument_group("monitoring")
    g.add_argument("--monitor", metavar="ENDPOINT",
                   help="serve XML-RPC, the status page and /metrics on this endpoint, e.g. "
                        "tcp:8090:interface=127.0.0.1 (loopback unless --monitor-allow-remote)")
    g.add_argument("--monitor-allow-remote", action="store_true",
                   help="allow a non-loopback interface (requires --monitor-auth)")
    g.add_argument("--monitor-auth", metavar="FILE",
                   help="HTTP basic auth: a file of user:password lines")


async def serve_monitor(config: Any, registry: Any, control: Any = None, *, reactor: Any,
                        services: Sequence[Any] = ()) -> None:
    """Start the monitoring server a command's ``--monitor`` flags ask for (nothing when
    ``config.listen`` is unset); one that cannot listen ends the program: a line on stderr,
    exit status 1."""
    from yaypm.monitor.server import start_monitor
    started = start_monitor(config, registry, control, reactor=reactor, services=services)
    if started is None:
        return
    try:
        await started
    except Exception as e:
        sys.stderr.write(f"yaypm: error: --monitor {config.listen}: {e}\n")
        raise SystemExit(1) from None


def add_subparsers(subparsers: Any) -> None:
    """Register ``status`` and ``reload`` on an ``argparse`` sub-parsers object."""
    p = subparsers.add_parser("status", help="list active calls of a running yaypm",
                              description="Print the active calls of a yaypm (or SEMS) "
                                          "monitoring server as a table.")
    p.add_argument("--url", default=DEFAULT_URL,
                   help=f"monitoring server, http://[user:password@]host:port "
                        f"(default {DEFAULT_URL})")
    p.set_defaults(func=status)
    p = subparsers.add_parser("reload", help="reload DSM diagrams or one app bundle",
                              description="Without --conf: reloadDSMs (the main load_diags). "
                                          "With --conf: loadConfig(FILE, NAME) — new calls "
                                          "only.")
    p.add_argument("--url", default=DEFAULT_URL, help=f"monitoring server (default {DEFAULT_URL})")
    p.add_argument("--conf", metavar="FILE", help="bundle configuration file to (re)load")
    p.add_argument("--app", metavar="NAME",
                   help="bundle name for --conf (default: the file name without .conf)")
    p.set_defaults(func=reload)


# -- HTTP helpers --------------------------------------------------------------------------
class _TimeoutTransport(xmlrpc.client.Transport):
    def make_connection(self, host: Any) -> Any:
        conn = super().make_connection(host)
        conn.timeout = TIMEOUT
        return conn


class _SafeTimeoutTransport(xmlrpc.client.SafeTransport):
    def make_connection(self, host: Any) -> Any:
        conn = super().make_connection(host)
        conn.timeout = TIMEOUT
        return conn


def _proxy(url: str) -> xmlrpc.client.ServerProxy:
    transport = _SafeTimeoutTransport() if url.startswith("https:") else _TimeoutTransport()
    return xmlrpc.client.ServerProxy(url, transport=transport)


def _get_json(url: str, path: str) -> Any:
    """GET ``path`` on the server, with basic auth taken from the URL's user:password."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    req = urllib.request.Request(urlunsplit((parts.scheme, netloc, path, "", "")))
    if parts.username is not None:
        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode("utf-8")
        req.add_header("Authorization", "Basic " + base64.b64encode(cred).decode("ascii"))
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        return json.load(resp)


def _age(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return ""
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def _active_calls(url: str) -> List[Dict[str, Any]]:
    """From ``/calls.json``; from XML-RPC when the server has none (SEMS)."""
    try:
        return list(_get_json(url, "/calls.json")["active"])
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise
    except (ValueError, KeyError, TypeError):
        pass                                  # not our JSON: an XML-RPC-only server
    s = _proxy(url)
    rows = []
    for call_id in s.listActive():
        got = s.get(call_id)
        a = got[0] if got else {}
        rows.append({"id": call_id, "app": a.get("app", ""),
                     "state": a.get("dsm_state", ""), "dir": a.get("dir", ""),
                     "from": a.get("from", ""), "to": a.get("to", ""), "age": None})
    return rows


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """Active calls as aligned text columns."""
    cols = [("call id", "id"), ("app", "app"), ("state", "state"), ("dir", "dir"),
            ("age", "age"), ("from", "from"), ("to", "to")]
    cells = [[h for h, _ in cols]]
    for r in rows:
        cells.append([_age(r.get(k)) if k == "age" else str(r.get(k, "") or "")
                      for _, k in cols])
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(cols))).rstrip()
             for c in cells]
    return "\n".join(lines)


def _fail(err: TextIO, url: str, e: BaseException) -> int:
    if isinstance(e, xmlrpc.client.Fault):
        print(f"yaypm: {url}: fault {e.faultCode}: {e.faultString}", file=err)
    elif isinstance(e, urllib.error.HTTPError):
        print(f"yaypm: {url}: HTTP {e.code} {e.reason}", file=err)
    else:
        print(f"yaypm: cannot reach {url}: {e}", file=err)
    return 1


# -- sub-commands --------------------------------------------------------------------------
def status(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Print active calls; 0, or 1 when the server cannot be reached."""
    try:
        rows = _active_calls(args.url)
    except (OSError, xmlrpc.client.Error, ValueError, KeyError) as e:
        return _fail(err, args.url, e)
    print(f"active calls: {len(rows)}", file=out)
    if rows:
        print(format_table(rows), file=out)
    return 0


def reload(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """``reloadDSMs`` or ``loadConfig``; 0 when the server answers 200."""
    s = _proxy(args.url)
    try:
        if args.conf:
            app = args.app or os.path.basename(args.conf)
            result = s.loadConfig(args.conf, app)
        else:
            if args.app:
                print("yaypm: --app needs --conf", file=err)
                return 2
            result = s.reloadDSMs()
    except (OSError, xmlrpc.client.Error) as e:
        return _fail(err, args.url, e)
    code, text = (result + ["", ""])[:2] if isinstance(result, list) else (None, result)
    print(f"{code} {text}", file=out if code == 200 else err)
    return 0 if code == 200 else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="yaypm")
    add_subparsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
