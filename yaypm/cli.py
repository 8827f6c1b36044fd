"""The ``yaypm`` command: run an app against Yate, and the sub-commands other subsystems add.

    yaypm run MODULE[:CALLABLE] --connect tcp:127.0.0.1:5039 [--role global] [-v]
    yaypm run MODULE[:CALLABLE] --stdio [-v]          (a script Yate starts: stdout is protocol)
    yaypm example                                      (a demo against a scripted fake engine)

Sub-commands are registered by modules listed in :data:`SUBCOMMAND_MODULES`: each one that can
be imported has its ``add_subparsers(subparsers)`` called; a sub-command sets ``func`` (via
``set_defaults``) to a callable taking the parsed namespace and returning the exit status.
Missing modules are skipped silently (the subsystem is not installed or not written yet).

Bad arguments give one line, ``yaypm: error: ...``, and exit status 2; tracebacks only with
``-v``.  Logs go through twisted.logger to stderr (in ``--stdio`` mode stdout is the protocol).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shlex
import sys
from typing import Any, Callable, List, NoReturn, Optional, Sequence

__all__ = ["main", "build_parser", "SUBCOMMAND_MODULES", "load_start", "UsageError"]

#: Modules that may add sub-commands (``add_subparsers(subparsers)``), imported if present.
SUBCOMMAND_MODULES: List[str] = [
    "yaypm.dsm.cli",
    "yaypm.testing.simcli",
    "yaypm.apps.quizconnect.cli",
    "yaypm.monitor.cli",
    "yaypm.embedded_cli",
]


class UsageError(Exception):
    """A command line that names something unusable (a module that cannot be imported...)."""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: ``yaypm: error: <message>``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"yaypm: error: {message} (see '{self.prog} --help')\n")


# --------------------------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------------------------

def _start_logging(verbose: bool, stream: Any = None) -> None:
    """Send twisted.logger events to stderr; debug (protocol lines) with ``-v``."""
    from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate,
                                globalLogBeginner, textFileLogObserver)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.debug if verbose
                                        else LogLevel.info)
    observer = FilteringLogObserver(textFileLogObserver(stream or sys.stderr), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


# --------------------------------------------------------------------------------------------
# yaypm run
# --------------------------------------------------------------------------------------------

def load_start(spec: str) -> Callable[..., Any]:
    """``module[:callable]`` (or ``path/to/file.py[:callable]``) -> the callable (default
    ``start``).  Raises UsageError with a one-line reason."""
    target, _, attr = spec.partition(":")
    attr = attr or "start"
    if not target:
        raise UsageError(f"no module in {spec!r}")
    if target.endswith(".py") or os.sep in target:
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise UsageError(f"no such file: {target}")
        name = os.path.splitext(os.path.basename(path))[0]
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise UsageError(f"cannot load {target}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules.setdefault(name, module)
        sys.path.insert(0, os.path.dirname(path))
        module_spec.loader.exec_module(module)
    else:
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())          # like `python -m`: the current directory
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            if getattr(e, "name", None) and target.startswith(e.name or "\0"):
                raise UsageError(f"cannot import module {target!r}: {e}") from e
            raise
    start = getattr(module, attr, None)
    if start is None:
        raise UsageError(f"module {target!r} has no {attr!r}")
    if not callable(start):
        raise UsageError(f"{target}:{attr} is not callable")
    return start


def _cmd_run(args: argparse.Namespace) -> int:
    start = load_start(args.module)
    mon_config = None
    if getattr(args, "monitor", None):
        if args.stdio:
            raise UsageError("--monitor needs --connect (in --stdio mode Yate owns the script)")
        from yaypm.monitor.server import MonitorConfig, MonitorConfigError, check_endpoint
        mon_config = MonitorConfig().with_args(args)
        try:
            check_endpoint(mon_config.listen, mon_config.allow_remote)
        except MonitorConfigError as e:
            raise UsageError(f"--monitor: {e}") from None
    _start_logging(args.verbose)
    from yaypm.dispatcher import Dispatcher
    Dispatcher.log_wire = bool(args.verbose)      # debug lines are dropped anyway without -v
    from twisted.internet import defer, task
    from twisted.logger import Logger
    log = Logger(namespace="yaypm.cli")

    async def run(reactor: Any) -> None:
        done: defer.Deferred = defer.Deferred()
        if args.stdio:
            from twisted.internet import stdio

            from yaypm.connectors import TCPDispatcher

            class _StdioDispatcher(TCPDispatcher):
                def connectionLost(self, reason: Any = None) -> None:
                    super().connectionLost(reason)
                    if not done.called:           # Yate closed our stdin: the script ends
                        done.callback(None)

            stdio.StandardIO(_StdioDispatcher(start, role=args.role))
        else:
            from yaypm.connectors import connect_service
            app_start = start
            if mon_config is not None:
                from yaypm.registry import default_registry

                def app_start(dispatcher: Any, *a: Any, **kw: Any) -> Any:
                    dispatcher.call_registry = default_registry()    # IVR legs get recorded
                    return start(dispatcher, *a, **kw)
            service = connect_service(reactor, args.connect, app_start, role=args.role)
            log.info("Connecting to Yate at {endpoint}", endpoint=args.connect)
            reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
            if mon_config is not None:
                from yaypm.monitor.cli import serve_monitor
                await serve_monitor(mon_config, default_registry(), reactor=reactor,
                                    services=[service])
        await done

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    return 0          # not reached: react exits


def _add_run(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run", help="run an app: calls MODULE's start(dispatcher) on each connection",
        description="Import MODULE (a module name or a .py file) and call CALLABLE "
                    "(default: start) with a dispatcher, either over a reconnecting TCP "
                    "connection to Yate's extmodule listener or over stdin/stdout when Yate "
                    "starts the script itself.")
    run.add_argument("module", metavar="MODULE[:CALLABLE]",
                     help="e.g. myapp, myapp:route, ./ivr.py")
    where = run.add_mutually_exclusive_group(required=True)
    where.add_argument("--connect", metavar="ENDPOINT",
                       help="Twisted client endpoint of Yate's listener, e.g. "
                            "tcp:127.0.0.1:5039 (reconnects with backoff)")
    where.add_argument("--stdio", action="store_true",
                       help="speak the protocol on stdin/stdout (scripts Yate starts)")
    run.add_argument("--role", choices=["global", "channel"], default=None,
                     help="send %%%%>connect:ROLE first (listeners without a preset role)")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="log protocol lines; show tracebacks")
    try:
        from yaypm.monitor.cli import add_server_arguments
    except ImportError:                              # monitoring not installed
        pass
    else:
        add_server_arguments(run)
    run.set_defaults(func=_cmd_run)


# --------------------------------------------------------------------------------------------
# yaypm example
# --------------------------------------------------------------------------------------------

def _cmd_example(args: argparse.Namespace) -> int:
    from yaypm.examples.demo import run_demo
    return run_demo(sys.stdout)


def _add_example(subparsers: Any) -> None:
    ex = subparsers.add_parser(
        "example", help="run the route_ivr example against a scripted fake engine",
        description="Runs yaypm/examples/route_ivr.py in memory against a scripted fake "
                    "Yate and prints the lines exchanged ('->' to Yate, '<-' from Yate).")
    ex.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
    ex.set_defaults(func=_cmd_example)


# --------------------------------------------------------------------------------------------
# The parser and main
# --------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The full parser: built-in commands plus those of the importable SUBCOMMAND_MODULES."""
    parser = _Parser(prog="yaypm",
                     description="Yate external modules in Python, on Twisted.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=_Parser)
    _add_run(subparsers)
    _add_example(subparsers)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            if e.name is not None and name.startswith(e.name):
                continue                  # the subsystem is not there: skip silently
            raise
        add = getattr(module, "add_subparsers", None)
        if add is not None:
            add(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry point (``yaypm = yaypm.cli:main``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and " " in argv[0].strip():
        # Yate starts [scripts] entries with their whole argument as ONE argv element
        # (yate-extmodule.md §1.1): "yaypm=run myapp:start --stdio" arrives as a single
        # string.  No yaypm command contains a blank, so split it as a shell would.
        argv = shlex.split(argv[0])
    verbose = "-v" in argv or "--verbose" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        verbose = verbose or getattr(args, "verbose", False)
        args.verbose = verbose            # "-v" before or after the sub-command
        func = getattr(args, "func", None)
        if func is None:
            parser.error(f"{args.command}: no action")
        status = func(args)
        return int(status or 0)
    except UsageError as e:
        if verbose:
            raise
        sys.stderr.write(f"yaypm: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except Exception as e:          # a one-line error unless -v
        if verbose:
            raise
        sys.stderr.write(f"yaypm: error: {type(e).__name__}: {e} (run with -v for details)\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
