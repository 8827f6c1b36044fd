"""`yaypm dsm …` sub-commands: `dsm check FILE...`, `dsm graph FILE` and `dsm run DSM.CONF`.

`yaypm/cli.py` calls `add_subparsers(subparsers)`; each command is a function taking the
argparse namespace and returning the exit status.

    yaypm dsm run dsm.conf --connect tcp:127.0.0.1:5039 [--role global]
                           [--monitor tcp:8090:interface=127.0.0.1]

runs the applications of `dsm.conf` on Yate (`yaypm.dsm.yate.DSMRunner`): the numbers of the
`route.<app>=` keys are claimed in `call.route`, one DSM session per call. `SIGHUP` and the
monitor's `reloadDSMs`/`loadConfig` reload diagrams and routes for new calls.
"""
from __future__ import annotations

import argparse
import sys
from typing import TextIO

from .checker import check_file
from .errors import DSMSyntaxError
from .parser import parse_file

__all__ = ["add_subparsers", "add_run", "cmd_check", "cmd_graph", "cmd_run"]


def add_subparsers(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `dsm` with its `check` and `graph` sub-commands; returns the `dsm` parser
    (so `dsm run` can be added to its subparsers later via `parser._dsm_subparsers`)."""
    dsm = subparsers.add_parser("dsm", help="DSM (SEMS DonkeySM) scripts")
    sub = dsm.add_subparsers(dest="dsm_command", required=True)
    dsm._dsm_subparsers = sub  # type: ignore[attr-defined]
    chk = sub.add_parser("check", help="parse and check DSM scripts (exit 1 on problems)")
    chk.add_argument("files", nargs="+", metavar="FILE")
    chk.add_argument("--strict", action="store_true", help="treat warnings as errors")
    chk.add_argument("--load-path", default=None, help="directory for #include (default: "
                     "the file's directory)")
    chk.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    chk.set_defaults(func=cmd_check)
    gr = sub.add_parser("graph", help="draw the state graph of a DSM script")
    gr.add_argument("file", metavar="FILE")
    gr.add_argument("-o", "--output", default=None, help="output file (default: stdout)")
    gr.add_argument("--dot", action="store_true", help="write DOT text instead of SVG")
    gr.add_argument("--current", default=None, help="state to highlight")
    gr.set_defaults(func=cmd_graph)
    add_run(sub)
    return dsm


def add_run(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `dsm run` on the `dsm` sub-parsers."""
    from yaypm.monitor.cli import add_server_arguments
    run = sub.add_parser(
        "run", help="run the DSM applications of a dsm.conf on Yate",
        description="Load DSM.CONF (diagrams, app bundles of conf_dir), connect to Yate's "
                    "extmodule listener (reconnecting) and run one DSM session per call to "
                    "the numbers the configuration routes: route.<app>=NUMBER[,NUMBER...] "
                    "(exact, ^regex or prefix*) in dsm.conf or a bundle conf, or number=... "
                    "in a bundle conf (its first register_apps app). SIGHUP reloads diagrams "
                    "and routes for new calls; so do the monitor's reloadDSMs and loadConfig.")
    run.add_argument("conf", metavar="DSM.CONF", help="the main DSM configuration file")
    run.add_argument("--connect", metavar="ENDPOINT", required=True,
                     help="Twisted client endpoint of Yate's extmodule listener, e.g. "
                          "tcp:127.0.0.1:5039 (reconnects with backoff)")
    run.add_argument("--role", choices=["global", "channel"], default=None,
                     help="send %%%%>connect:ROLE first (listeners without a preset role)")
    run.add_argument("--media-root", metavar="DIR", default=None,
                     help="folder prepended to relative prompt and recording names")
    run.add_argument("--no-file-check", action="store_true",
                     help="do not check prompt files locally (Yate runs on another host)")
    run.add_argument("--priority", type=int, default=50,
                     help="priority of the call.route handler (default 50)")
    run.add_argument("--dialout-timeout", type=float, default=120.0, metavar="SECONDS",
                     help="how long a dlg.dialout / B2B leg may ring (default 120)")
    run.add_argument("--strict", action="store_true", help="treat checker warnings as errors")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="log protocol lines; show tracebacks")
    add_server_arguments(run)
    run.set_defaults(func=cmd_run)
    return run


def _load_runner(args: argparse.Namespace, registry: object) -> object:
    """Engine + DSMRunner from the command line; UsageError (one line) when unusable."""
    import os

    from yaypm.cli import UsageError

    from .config import Engine
    from .errors import DSMConfigError, DSMLoadError
    from .yate import DSMRunner

    if not os.path.isfile(args.conf):
        raise UsageError(f"no such file: {args.conf}")
    if args.media_root is not None and not os.path.isdir(args.media_root):
        raise UsageError(f"--media-root: no such directory: {args.media_root}")
    from yaypm.monitor.dsm_bridge import RegistryMonitoringStore
    try:
        engine = Engine(args.conf, strict=args.strict,
                        monitoring=RegistryMonitoringStore(registry))  # type: ignore[arg-type]
        engine.load()
    except (DSMConfigError, DSMLoadError) as e:
        lines = str(e).strip().splitlines() or [type(e).__name__]
        more = f" (and {len(lines) - 1} more lines; see 'yaypm dsm check')" if len(lines) > 1 \
            else ""
        raise UsageError(f"cannot load {args.conf}: {lines[0]}{more}") from None
    runner = DSMRunner(engine, registry=registry, priority=args.priority,  # type: ignore[arg-type]
                       media_root=args.media_root, check_files=not args.no_file_check,
                       dialout_timeout=args.dialout_timeout)
    table = runner.routes()
    if table.errors:
        raise UsageError(f"{args.conf}: {table.errors[0]}")
    if not len(table):
        raise UsageError(f"{args.conf}: no routes: add route.<app>=NUMBER (an app of "
                         "register_apps) to dsm.conf or a bundle conf")
    return runner


def cmd_run(args: argparse.Namespace) -> int:
    """`yaypm dsm run`: runs until stopped (SIGINT/SIGTERM); SIGHUP reloads."""
    import signal

    from twisted.internet.endpoints import clientFromString

    from yaypm.cli import UsageError, _start_logging
    from yaypm.monitor.server import MonitorConfig, MonitorConfigError, check_endpoint
    from yaypm.registry import default_registry

    registry = default_registry()
    runner = _load_runner(args, registry)
    mon_config = MonitorConfig().with_args(args)
    if mon_config.listen:
        try:
            check_endpoint(mon_config.listen, mon_config.allow_remote)
        except MonitorConfigError as e:
            raise UsageError(f"--monitor: {e}") from None
    from twisted.internet import reactor as _reactor
    try:
        clientFromString(_reactor, args.connect)
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--connect {args.connect!r}: {e}") from None
    _start_logging(args.verbose)
    from yaypm.dispatcher import Dispatcher
    Dispatcher.log_wire = bool(args.verbose)

    from twisted.internet import defer, task
    from twisted.logger import Logger
    log = Logger(namespace="yaypm.dsm.run")

    async def main(reactor: object) -> None:
        from yaypm.monitor.cli import serve_monitor
        from yaypm.monitor.dsm_bridge import EngineControl

        class _Control(EngineControl):
            """The monitor's DSM control, reloading through the runner (routes, logs)."""

            def reload(self) -> str:
                from yaypm.monitor.control import ControlError
                ok, msg = runner.reload()  # type: ignore[attr-defined]
                if not ok:
                    raise ControlError(500, msg)
                return msg

            def load_config(self, conf_file: str, app_name: str) -> str:
                from yaypm.monitor.control import ControlError
                code, msg = runner.load_config(conf_file, app_name)  # type: ignore
                if code != 200:
                    raise ControlError(code, msg)
                return msg

        from .yate import DSMService
        dsm_service = DSMService(runner, args.connect, role=args.role,  # type: ignore
                                 reactor=reactor)
        dsm_service.startService()
        reactor.addSystemEventTrigger("before", "shutdown",  # type: ignore[attr-defined]
                                      dsm_service.stopService)
        service = dsm_service.connection
        log.info("DSM: running {apps} on {endpoint}",
                 apps=", ".join(sorted(runner.engine.app_set.apps)),  # type: ignore
                 endpoint=args.connect)
        await serve_monitor(mon_config, registry, _Control(runner.engine),  # type: ignore
                            reactor=reactor, services=[service])

        def hup(signum: int, frame: object) -> None:
            reactor.callFromThread(runner.reload)  # type: ignore
        signal.signal(signal.SIGHUP, hup)
        await defer.Deferred()          # until the reactor stops (SIGINT/SIGTERM)

    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
    return 0          # not reached: react exits


def cmd_check(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print every problem as `file:line:col: severity: message`; 1 if any error (or any
    warning under --strict), else 0."""
    out = out or sys.stdout
    status = 0
    for f in args.files:
        problems = check_file(f, strict=getattr(args, "strict", False),
                              load_path=getattr(args, "load_path", None))
        for p in problems:
            if p.severity == "error" or not getattr(args, "quiet", False):
                print(p, file=out)
            if p.severity == "error":
                status = 1
    return status


def cmd_graph(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Write the state graph as SVG (default) or DOT (`--dot`)."""
    from .graph import GraphvizMissingError, to_dot, to_svg
    out = out or sys.stdout
    try:
        script = parse_file(args.file)
    except DSMSyntaxError as e:
        print(e, file=sys.stderr)
        return 1
    try:
        text = to_dot(script, args.current) if args.dot else to_svg(script, args.current)
    except GraphvizMissingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        out.write(text)
    return 0
