"""yaypm's own stack (TCPDispatcherFactory + Dispatcher) against the real engine.

The raw-socket tests beside this file pin Yate's behaviour; these check that the
dispatcher, driven by the real reactor, gets the same results from it end to end.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, threads

from yaypm.connectors import TCPDispatcherFactory

pytestmark = pytest.mark.yate

EVENT = 10.0


def within(d: defer.Deferred, seconds: float = EVENT) -> defer.Deferred:
    from twisted.internet import reactor
    return d.addTimeout(seconds, reactor)


async def connect(yate, role: str | None = None) -> tuple[Any, Any]:
    """A Dispatcher connected to ``yate`` (global listener, or role-less with ``role``)."""
    from twisted.internet import reactor
    ready: defer.Deferred = defer.Deferred()
    factory = TCPDispatcherFactory(ready.callback, role=role)
    port = yate.global_port if role is None else yate.connect_port
    connector = reactor.connectTCP("127.0.0.1", port, factory)
    return await within(ready), connector


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("role", [None, "global"])
async def test_dispatcher_reads_engine_version_on_both_listeners(yate, role):
    dispatcher, connector = await connect(yate, role)
    try:
        assert re.fullmatch(r"\d+\.\d+\.\d+", await within(dispatcher.engine_version()))
        assert await within(dispatcher.config("general", "modload")) == "disable"
    finally:
        connector.disconnect()


@pytest_twisted.ensureDeferred
async def test_dispatcher_routes_answers_and_drops_a_real_call(yate, sip_call):
    dispatcher, connector = await connect(yate)
    try:
        assert await within(dispatcher.install("call.route", 50, ("called", "7500"))) == 50
        assert await within(dispatcher.watch("call.execute")) is True
        assert await within(dispatcher.watch("chan.hangup")) is True

        routed = dispatcher.onmsg("call.route", lambda m: m.get("called") == "7500")
        call = sip_call("7500")
        route = await within(routed)
        caller = route["id"]
        executed = dispatcher.onwatch("call.execute", lambda m: m.get("id") == caller)
        route.ret(True, "dumb/")
        dumb = (await within(executed))["peerid"]
        assert dumb.startswith("dumb/")

        answer = dispatcher.msg("chan.masquerade", {"message": "call.answered", "id": dumb})
        assert await within(answer.dispatch()) is True
        assert (answer.name, answer["status"], answer["targetid"]) == ("call.answered", "answered", caller)

        hung_up = dispatcher.onwatch("chan.hangup", lambda m: m.get("id") == caller)
        drop = dispatcher.msg("call.drop", {"id": caller, "reason": "done"})
        assert await within(drop.dispatch()) is True
        assert (await within(hung_up))["status"] == "done"

        out = await threads.deferToThread(call.wait, EVENT)
        assert (out.outcome, out.bye_received, out.exit_code) == ("answered", True, 0)
        assert dispatcher.pending_count() == 0
    finally:
        connector.disconnect()
