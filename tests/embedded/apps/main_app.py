"""Embedded test app (run by Yate's yaypmhost module): one handler per behaviour under test.

Written like a YAYPM app: the same file would run over TCP with ``python main_app.py``.
"""

import gc
import sys

from twisted.internet import defer, reactor

import yaypm
from yaypm.embedded import MessageReleasedError, host_stats

state = {"released_ok": 0, "read_after_ret": 0, "read_after_timeout": "", "late_ret": "", "watched": 0, "onwatch": "", "raised": 0}
dispatchers = []


def start(yate):
    dispatchers.append(yate)
    wait_route(yate)

    def raising(m):
        state["raised"] += 1
        raise ValueError("boom from a handler")
    yate.handler("test.raise", raising)

    async def roundtrip(m):
        echo = yate.msg("test.echo", {"x": m["x"]})
        processed = await echo.dispatch()
        m["echoed"] = echo.get("echo", "?")
        m["processed"] = processed
        m.ret(True, "roundtrip-ok")
    yate.handler("test.roundtrip", lambda m: defer.ensureDeferred(roundtrip(m)))

    def count(m):
        m["seen"] = m.get("n", "")
        return True
    yate.handler("test.count", count)

    def enqueue(m):
        yate.msg("test.enqueued", {"from": "embedded", "x": m.get("x", "")}).enqueue()
        return True
    yate.handler("test.enqueue", enqueue)

    yate.handler("test.self", lambda m: True)
    yate.handler("test.hang", lambda m: None)          # answers never (shutdown test)

    async def selfcheck(m):
        probe = yate.msg("test.self")
        m["self_processed"] = await probe.dispatch()
        m.ret(True)
    yate.handler("test.selfcheck", lambda m: defer.ensureDeferred(selfcheck(m)))

    def seen(m):
        state["watched"] += 1
    yate.watcher("test.watched", seen)
    d = yate.onwatch("test.watched", lambda m: m.get("k") == "first")
    d.addCallback(lambda m: state.update(onwatch=f"{m.name}:{m['k']}:{m.processed}"))

    def report(m):
        if m.get("gc") == "1":
            gc.collect()
        stats = host_stats()
        for k, v in state.items():
            m[k] = v
        m["objects"] = len(gc.get_objects())
        m["blocks"] = sys.getallocatedblocks()
        # outstanding dispatches + unanswered messages (this one included), waits excluded
        m["pending"] = sum(x.pending_count() - x.waiting_count() for x in dispatchers)
        m["host_pending"] = stats["pending"]
        return True
    yate.handler("test.state", report)

    async def engine_info(m):
        m["version"] = await yate.engine_version()
        m["nodename"] = await yate.engine_param("nodename")
        m["modload"] = await yate.config("general", "modload")
        m["host_timeout"] = yate.host_config("general", "timeout")
        m["scripts"] = ",".join(k for k, _ in yate.host_config("scripts"))
        m.ret(True)
    yate.handler("test.engine", lambda m: defer.ensureDeferred(engine_info(m)))


def wait_route(yate):
    d = yate.onmsg("call.route", lambda m: m["called"] == "embedded-ivr", priority=50)

    def route(m):
        m.ret(True, "dumb/")
        # reading after ret() sees the answered message, as over TCP ...
        if m["called"] == "embedded-ivr" and m.retvalue == "dumb/":
            state["read_after_ret"] += 1
        # ... changing it is an error: the answer is gone
        try:
            m["late"] = "change"
        except MessageReleasedError:
            state["released_ok"] += 1
        wait_route(yate)
    d.addCallback(route)


def slow_start(yate):
    """A second dispatcher with a short answer timeout and a handler that answers late."""
    dispatchers.append(yate)
    yate.setlocal("timeout", 300)

    def slow(m):
        def late():
            try:
                m["anything"]
            except MessageReleasedError as e:
                state["read_after_timeout"] = "MessageReleasedError: " + str(e)
            try:
                m.ret(True)
                state["late_ret"] = "accepted"
            except MessageReleasedError as e:
                state["late_ret"] = "MessageReleasedError: " + str(e)
        reactor.callLater(0.6, late)
    yate.handler("test.slow", slow)


if __name__ == "__main__":
    reactor.connectTCP("localhost", 5039, yaypm.TCPDispatcherFactory(start))
    installSignalHandlers = 1
elif __name__ == "__embedded_yaypm_module__":
    yaypm.embedded.embededStart(start)
    yaypm.embedded.embeddedStart(slow_start)
    installSignalHandlers = 0

reactor.run(installSignalHandlers)
