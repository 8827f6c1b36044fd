"""Command line: ``yaypm demo`` and ``yaypm quizconnect init-db|add-callee|remove-callee|list|run``.

Registered through :data:`yaypm.cli.SUBCOMMAND_MODULES` (``add_subparsers(subparsers)`` gets
the top-level sub-parsers, so ``demo`` is a top-level command).  Every command takes
``--conf quizconnect.conf`` (see :mod:`yaypm.apps.quizconnect.config`); ``--db-url`` overrides
the file's ``db_url``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from yaypm.apps.quizconnect.config import ConfigError, QuizConfig, load_config

__all__ = ["add_subparsers"]


def add_subparsers(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo", help="one quizconnect call on the in-process Yate simulator, as a timeline",
        description="Seeds an SQLite callee table in a temporary folder, runs quizconnect "
                    "against the Yate simulator (simulated time: finishes in about a second) "
                    "and prints who rang, who typed what, who won and who was cancelled.")
    demo.add_argument("--dsm", action="store_true",
                      help="run the DSM version (needs the DSM engine's Yate adapter)")
    demo.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
    demo.set_defaults(func=_cmd_demo)

    qc = subparsers.add_parser(
        "quizconnect", help="quizconnect: the first callee to type its PIN gets the call",
        description="Manage the callee table and run quizconnect against Yate.")
    sub = qc.add_subparsers(dest="qc_command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--conf", metavar="FILE", default=None,
                       help="quizconnect.conf (INI [quizconnect] or SEMS key=value)")
        p.add_argument("--db-url", default=None,
                       help="database URL, overriding the configuration's db_url")
        p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
        return p

    init = common(sub.add_parser("init-db", help="create the callees table (if missing)"))
    init.set_defaults(func=_cmd_init_db)

    add = common(sub.add_parser("add-callee", help="register a callee for a dialled number"))
    add.add_argument("number", help="the dialled number (the table's 'caller' column)")
    add.add_argument("callee", help="the callee's user part, e.g. john")
    add.add_argument("pin", help="the PIN the callee must type (digits)")
    add.set_defaults(func=_cmd_add)

    rm = common(sub.add_parser("remove-callee", help="forget a callee of a dialled number"))
    rm.add_argument("number")
    rm.add_argument("callee")
    rm.set_defaults(func=_cmd_remove)

    ls = common(sub.add_parser("list", help="list every callee (PINs shown with --pins)"))
    ls.add_argument("--pins", action="store_true", help="show the PINs too")
    ls.set_defaults(func=_cmd_list)

    run = common(sub.add_parser(
        "run", help="run quizconnect against Yate's extmodule listener",
        description="Connect to Yate (reconnecting) and serve quizconnect's numbers; the "
                    "SQLite callee table is created on first run."))
    run.add_argument("--connect", metavar="ENDPOINT", required=True,
                     help="Twisted client endpoint of Yate's listener, e.g. tcp:127.0.0.1:5039")
    run.add_argument("--role", choices=["global"], default=None,
                     help="send %%%%>connect:global first (listeners without a preset role)")
    run.add_argument("--dsm", action="store_true",
                     help="run the DSM version (yaypm/apps/quizconnect/dsm) instead")
    try:
        from yaypm.monitor.cli import add_server_arguments
    except ImportError:                   # monitoring not installed: no --monitor flags
        pass
    else:
        add_server_arguments(run)
    run.set_defaults(func=_cmd_run)


# -- helpers -------------------------------------------------------------------------------------

def _config(args: argparse.Namespace) -> QuizConfig:
    try:
        return load_config(args.conf, db_url=getattr(args, "db_url", None))
    except ConfigError as e:
        from yaypm.cli import UsageError
        raise UsageError(str(e)) from None


def _sync(d: Any) -> Any:
    """The result of a Deferred that has fired (inline SQL), raising its error."""
    out: list = []
    d.addBoth(out.append)
    if not out:
        raise RuntimeError("the database did not answer inline")
    from twisted.python.failure import Failure
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def _store(config: QuizConfig) -> Any:
    from yaypm.apps.quizconnect.store import CalleeStore
    from yaypm.sql import Database
    return CalleeStore(Database(config.db_url, threaded=False))


def _fail(e: Exception, verbose: bool) -> int:
    if verbose:
        raise e
    sys.stderr.write(f"yaypm: error: {e}\n")
    return 1


# -- commands ------------------------------------------------------------------------------------

def _cmd_demo(args: argparse.Namespace) -> int:
    from yaypm.apps.quizconnect.demo import run_demo
    return run_demo(sys.stdout, "dsm" if args.dsm else "python")


def _cmd_init_db(args: argparse.Namespace) -> int:
    config = _config(args)
    store = _store(config)
    try:
        _sync(store.init())
    except Exception as e:
        return _fail(e, args.verbose)
    finally:
        store.db.close()
    from yaypm.sql import redact
    print(f"callees table ready in {redact(config.db_url)}")
    return 0


def _cmd_add(args: argparse.Namespace) -> int:
    config = _config(args)
    store = _store(config)
    try:
        _sync(store.init())
        _sync(store.add(args.number, args.callee, args.pin))
    except ValueError as e:
        from yaypm.cli import UsageError
        raise UsageError(str(e)) from None
    except Exception as e:
        return _fail(e, args.verbose)
    finally:
        store.db.close()
    print(f"{args.number}: {args.callee} added")
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    store = _store(_config(args))
    try:
        n = _sync(store.remove(args.number, args.callee))
    except Exception as e:
        return _fail(e, args.verbose)
    finally:
        store.db.close()
    print(f"{args.number}: {args.callee} removed" if n else
          f"{args.number}: no callee {args.callee}")
    return 0 if n else 1


def _cmd_list(args: argparse.Namespace) -> int:
    store = _store(_config(args))
    try:
        rows = _sync(store.all())
    except Exception as e:
        return _fail(e, args.verbose)
    finally:
        store.db.close()
    if not rows:
        print("no callees")
        return 0
    width = max(len(r.caller) for r in rows)
    for r in rows:
        pin = f"  PIN {r.pin}" if args.pins else ""
        print(f"{r.caller:<{width}}  {r.callee}{pin}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    config = _config(args)
    from yaypm.cli import _start_logging
    _start_logging(args.verbose)
    from twisted.internet import defer, task
    from twisted.logger import Logger

    from yaypm.connectors import connect_service
    log = Logger(namespace="yaypm.apps.quizconnect")

    if config.db_url.startswith("sqlite") or "://" not in config.db_url:
        store = _store(config)              # created on first run
        try:
            _sync(store.init())
        except Exception as e:
            return _fail(e, args.verbose)
        finally:
            store.db.close()

    from yaypm.registry import default_registry
    registry = default_registry()          # what monitoring shows
    control: Any = None
    if args.dsm:
        from yaypm.apps.quizconnect import dsm_runner
        runner = dsm_runner.make_runner(config, registry=registry)
        start = runner.attach              # one runner for every (re)connection
        try:
            from yaypm.monitor.dsm_bridge import EngineControl
            control = EngineControl(runner.engine)
        except ImportError:
            pass
    else:
        from yaypm.apps.quizconnect.app import QuizConnect
        app = QuizConnect(config, registry=registry)
        start = app.start

    async def main(reactor: Any) -> None:
        service = connect_service(reactor, args.connect, start, role=args.role)
        log.info("quizconnect ({version}) serving numbers {number!r}, connecting to "
                 "{endpoint}", version="dsm" if args.dsm else "async", number=config.number,
                 endpoint=args.connect)
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
        if getattr(args, "monitor", None):
            from yaypm.monitor.cli import serve_monitor
            from yaypm.monitor.server import MonitorConfig
            await serve_monitor(MonitorConfig().with_args(args), registry, control,
                                reactor=reactor, services=[service])
        await defer.Deferred()          # until interrupted

    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
    return 0
