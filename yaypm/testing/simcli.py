"""``yaypm simulate``: the simulated Yate as a real extmodule TCP listener, driven from stdin.

    yaypm simulate --listen tcp:127.0.0.1:5039 [--role global|none] [--media-dir DIR]
                   [--duration FILE=SECONDS ...] [--timeout MS] [-v]

An app connects as it would to Yate (``yaypm run app --connect tcp:127.0.0.1:5039``); you play
the callers and callees by typing commands (or piping a file of them) — one per line:

    call 100 [from alice] [name "Alice Smith"] [dtmf info|rfc2833]   place an incoming SIP call
    dtmf sip/1 123#  [info|rfc2833] [interval 0.2]                   the caller sends DTMF
    hangup sip/1                                                     the caller hangs up
    endpoint bob answer [after 2] | busy | reject 603 | noanswer | unreachable
                                                                     script a callee
    drop CHANNEL [reason]                                            call.drop from the engine
    wait 1.5                                                         pause the command stream
    status                                                           connections, channels, calls
    lines [N]                                                        the last N protocol lines
    help | quit

``last`` stands for the most recent call.  Events (answered, ended with the SIP status, DTMF
sent to a caller) are printed as they happen.  Time is real time here; tests use a
``task.Clock`` and :class:`~yaypm.testing.simulator.Simulator` directly.
"""

from __future__ import annotations

import argparse
import collections
import shlex
import sys
from typing import Any, Callable, List, Optional

__all__ = ["add_subparsers", "CommandInterpreter", "HELP"]

HELP = __doc__.split("one per line:\n", 1)[1].split("``last``", 1)[0].rstrip()


class CommandInterpreter:
    """The command language, sans-IO: ``execute(line)`` acts on a simulator, ``out`` prints.

    Returns seconds to pause for ``wait``, else None.  Errors are printed, never raised.
    """

    def __init__(self, sim: Any, out: Callable[[str], None],
                 quit: Optional[Callable[[], None]] = None) -> None:
        self.sim = sim
        self.out = out
        self._quit = quit
        self.last: Any = None

    # -- helpers ---------------------------------------------------------------------------
    def _leg(self, ident: str) -> Any:
        if ident == "last":
            if self.last is None:
                raise ValueError("no call yet")
            return self.last
        for c in self.sim.calls:
            if c.chan is not None and c.id == ident:
                return c
        for ep in self.sim.endpoints.values():
            for leg in ep.legs:
                if leg.id == ident:
                    return leg
        raise ValueError(f"no call {ident}")

    def _watch(self, leg: Any) -> None:
        def answered(ok: bool) -> None:
            if ok:
                self.out(f"{leg.id}: answered")

        def ended(status: Any) -> None:
            heard = ", ".join(leg.heard()) or "nothing"
            dtmf = leg.dtmf_received()
            self.out(f"{leg.id}: ended, SIP {status} {leg.sip_reason}".rstrip()
                     + f"; heard {heard}" + (f"; DTMF received {dtmf}" if dtmf else ""))
        leg.answered().addCallback(answered)
        leg.when_ended().addCallback(ended)

    # -- commands ----------------------------------------------------------------------------
    def execute(self, line: str) -> Optional[float]:
        line = line.strip()
        if not line or line.startswith("#"):
            return None
        try:
            words = shlex.split(line)
        except ValueError as e:
            self.out(f"error: {e}")
            return None
        cmd, args = words[0].lower(), words[1:]
        handler = getattr(self, "cmd_" + cmd, None)
        if handler is None:
            self.out(f"error: unknown command {cmd!r} (try 'help')")
            return None
        try:
            return handler(args)
        except (ValueError, IndexError, KeyError, RuntimeError, TypeError) as e:
            self.out(f"error: {e}")
            return None

    def cmd_help(self, args: List[str]) -> None:
        self.out(HELP)

    def cmd_call(self, args: List[str]) -> None:
        if not args:
            raise ValueError("call NUMBER [from CALLER] [name NAME] [dtmf info|rfc2833]")
        called = args[0]
        opts = {"from": "alice", "name": None, "dtmf": "info"}
        i = 1
        while i < len(args):
            key = args[i].lower()
            if key not in opts or i + 1 >= len(args):
                raise ValueError(f"unexpected {args[i]!r}")
            opts[key] = args[i + 1]
            i += 2
        call = self.sim.place_call(called, caller=opts["from"], callername=opts["name"],
                                   dtmf_method=opts["dtmf"])
        self.last = call
        self.out(f"{call.id}: calling {called} from {opts['from']}")
        self._watch(call)

    def cmd_dtmf(self, args: List[str]) -> None:
        leg = self._leg(args[0])
        digits = args[1]
        method = None
        interval = 0.1
        rest = args[2:]
        while rest:
            w = rest.pop(0)
            if w in ("info", "rfc2833"):
                method = w
            elif w == "interval":
                interval = float(rest.pop(0))
            else:
                raise ValueError(f"unexpected {w!r}")
        self.out(f"{leg.id}: sending DTMF {digits}")
        leg.send_dtmf(digits, interval=interval, method=method)

    def cmd_hangup(self, args: List[str]) -> None:
        leg = self._leg(args[0] if args else "last")
        self.out(f"{leg.id}: hanging up")
        leg.hangup()

    def cmd_endpoint(self, args: List[str]) -> None:
        from yaypm.testing.simulator import answer, busy, noanswer, reject, unreachable
        target, kind, rest = args[0], (args[1] if len(args) > 1 else "answer"), args[2:]
        if kind == "answer":
            after = float(rest[1]) if len(rest) >= 2 and rest[0] == "after" else 0.0
            b = answer(after=after)
        elif kind == "busy":
            b = busy()
        elif kind == "reject":
            b = reject(int(rest[0]) if rest else 603)
        elif kind == "noanswer":
            b = noanswer()
        elif kind == "unreachable":
            b = unreachable()
        else:
            raise ValueError(f"unknown behaviour {kind!r}")
        ep = self.sim.endpoint(target, b)
        self.out(f"endpoint {ep.uri}: {b.name}")

    def cmd_drop(self, args: List[str]) -> None:
        chan = self.sim.channels.get(args[0])
        if chan is None:
            raise ValueError(f"no channel {args[0]}")
        self.out(f"{args[0]}: dropping")
        self.sim.engine.run(chan.msg_drop, None, args[1] if len(args) > 1 else None)

    def cmd_wait(self, args: List[str]) -> float:
        return float(args[0]) if args else 1.0

    cmd_advance = cmd_wait

    def cmd_status(self, args: List[str]) -> None:
        sim = self.sim
        self.out(f"connections: {len([c for c in sim.connections if not c.closed])}")
        for c in sim.connections:
            if c.closed:
                continue
            h = ", ".join(f"{n}@{p}" for n, p in sorted(c.ext.installed().items())) or "-"
            w = ", ".join(n or "*" for n in c.ext.watched) or "-"
            self.out(f"  {c.name} role={c.ext.role} handlers: {h}; watches: {w}; "
                     f"pending {c.ext.pending}")
        chans = sim.channels
        self.out(f"channels: {len(chans)}")
        for cid, ch in sorted(chans.items()):
            self.out(f"  {cid} {ch.status} peer={ch.peer_id or '-'}")
        self.out(f"calls: {len(sim.calls)}")
        for c in sim.calls[-20:]:
            self.out(f"  {c.id} to {c.called} {c.state} SIP {c.sip_status}")

    def cmd_lines(self, args: List[str]) -> None:
        n = int(args[0]) if args else 20
        for w in self.sim.wire[-n:]:
            self.out(str(w))

    def cmd_quit(self, args: List[str]) -> None:
        self.out("bye")
        if self._quit is not None:
            self._quit()

    cmd_exit = cmd_quit


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------

def add_subparsers(subparsers: Any) -> None:
    """Register ``yaypm simulate`` (called by :mod:`yaypm.cli`)."""
    p = subparsers.add_parser(
        "simulate", help="a simulated Yate listening for extmodule connections",
        description=__doc__.split("\n\n", 1)[0] + "\n\n" + "Commands on stdin:\n" + HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="tcp:5039:interface=127.0.0.1", metavar="ENDPOINT",
                   help="where to listen (tcp:127.0.0.1:5039, tcp:PORT:interface=ADDR, "
                        "unix:PATH; default tcp:5039:interface=127.0.0.1)")
    p.add_argument("--role", choices=("global", "none"), default="global",
                   help="listener role: global (preset) or none (%%%%>connect required)")
    p.add_argument("--media-dir", default=None, help="where relative prompt paths are found")
    p.add_argument("--duration", action="append", default=[], metavar="FILE=SECONDS",
                   help="declare a prompt's length (repeatable)")
    p.add_argument("--timeout", type=int, default=10000, help="answer timeout in ms")
    p.add_argument("-v", "--verbose", action="store_true", help="log every protocol line")
    p.set_defaults(func=_cmd_simulate)


def _endpoint_string(listen: str) -> str:
    """Accept ``tcp:HOST:PORT`` (the client form) as well as server endpoint strings."""
    parts = listen.split(":")
    if len(parts) == 3 and parts[0] == "tcp" and parts[2].isdigit() and not parts[1].isdigit():
        return f"tcp:{parts[2]}:interface={parts[1]}"
    return listen


def _cmd_simulate(args: argparse.Namespace) -> int:
    from twisted.internet import defer, stdio, task
    from twisted.internet.interfaces import IHalfCloseableProtocol
    from twisted.protocols.basic import LineReceiver
    from zope.interface import implementer

    from yaypm.testing.simulator import Simulator

    durations = {}
    for spec in args.duration:
        path, sep, secs = spec.rpartition("=")
        if not sep:
            raise SystemExit(f"yaypm: error: --duration wants FILE=SECONDS, not {spec!r}")
        durations[path] = float(secs)
    _start_logging(args.verbose)

    async def run(reactor: Any) -> None:
        done: defer.Deferred = defer.Deferred()
        sim = Simulator(reactor, media_dir=args.media_dir, durations=durations,
                        timeout=args.timeout)
        sim.log_wire = bool(args.verbose)
        sim.wire = collections.deque(maxlen=10000)    # type: ignore[assignment]  # bounded
        role = None if args.role == "none" else "global"
        port = await sim.listen(_endpoint_string(args.listen), role, reactor)
        addr = port.getHost()
        sys.stdout.write(f"simulated Yate 6.4.1 listening on {addr.host}:{addr.port} "
                         f"(role {args.role}); type 'help'\n")
        sys.stdout.flush()

        @implementer(IHalfCloseableProtocol)
        class Commands(LineReceiver):
            """stdin commands; half-closeable, so output goes on after stdin's EOF."""
            delimiter = b"\n"

            def connectionMade(self) -> None:
                self.queue: List[str] = []
                self.paused_until = False
                self.interp = CommandInterpreter(sim, self.say, self.stop)

            def say(self, text: str) -> None:
                self.transport.write(text.encode("utf-8", "replace") + b"\n")

            def stop(self) -> None:
                # Let stdout drain first: the write side closes once its buffer is flushed.
                self.transport.loseWriteConnection()
                reactor.callLater(2.0, self.finish)

            def finish(self) -> None:
                if not done.called:
                    done.callback(None)

            def lineReceived(self, line: bytes) -> None:
                self.queue.append(line.decode("utf-8", "replace"))
                self.drain()

            def drain(self) -> None:
                while self.queue and not self.paused_until:
                    delay = self.interp.execute(self.queue.pop(0))
                    if delay:
                        self.paused_until = True
                        reactor.callLater(delay, self.resume)

            def resume(self) -> None:
                self.paused_until = False
                self.drain()

            def readConnectionLost(self) -> None:
                pass          # stdin closed: keep serving until 'quit' or interrupted

            def writeConnectionLost(self) -> None:
                self.finish()

        stdio.StandardIO(Commands())
        await done
        sim.close()
        await port.stopListening()

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    return 0


def _start_logging(verbose: bool) -> None:
    from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate,
                                globalLogBeginner, textFileLogObserver)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.debug if verbose
                                        else LogLevel.warn)
    if verbose:
        predicate.setLogLevelForNamespace("yaypm.testing.simulator", LogLevel.debug)
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
