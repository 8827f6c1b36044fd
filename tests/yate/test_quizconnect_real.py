"""quizconnect against a real Yate with sipp callers and callees, for both versions.

The winner-among-three and caller-cancels scenarios of tests/quizconnect, end to end: sipp
calls the quizconnect number, sipp callees answer busy, answer and type DTMF (SIP INFO) or
ring; quizconnect (the async version, or the DSM version on yaypm.dsm.yate) runs on the real
reactor over the extmodule TCP listener.  The scenarios and their assertions live in
``quiz_real_helpers`` (the embedded tests, tests/embedded/test_embedded_apps.py, run the same
ones with quizconnect inside Yate).
"""

from __future__ import annotations

from typing import Any, List, Tuple

import pytest
import pytest_twisted
from twisted.internet import defer, threads

from yaypm.apps.quizconnect.config import QuizConfig
from yaypm.connectors import TCPDispatcherFactory
from yaypm.registry import CallRegistry

from quiz_real_helpers import CallerCancels, QuizScenario, WinnerAmongThree

pytestmark = pytest.mark.yate

EVENT = 10.0
VERSIONS = ["python", "dsm"]


# -- quizconnect on the real reactor --------------------------------------------------------

async def run_quizconnect(yate: Any, version: str, config: QuizConfig) -> Tuple[Any, Any]:
    """Connect the version under test to ``yate``; returns (connector, app or runner)."""
    from twisted.internet import reactor
    holder: List[Any] = []
    if version == "python":
        from yaypm.apps.quizconnect.app import QuizConnect
        app: Any = QuizConnect(config, registry=CallRegistry())
        start = app.start
    else:
        from yaypm.apps.quizconnect import dsm_runner
        if not dsm_runner.adapter_available():
            pytest.skip("the DSM engine's Yate adapter is not installed")
        app = dsm_runner.make_runner(config)
        start = app.attach
    ready: defer.Deferred = defer.Deferred()

    def started(dispatcher: Any) -> None:
        holder.append(start(dispatcher))
        ready.callback(dispatcher)
    connector = reactor.connectTCP("127.0.0.1", yate.global_port, TCPDispatcherFactory(started))
    dispatcher = await ready.addTimeout(EVENT, reactor)
    for _ in range(200):                # Yate confirmed every install/watch: calls may come
        if dispatcher.pending_count() == 0:
            break
        await _sleep(0.05)
    assert dispatcher.pending_count() == 0, "installs not confirmed"
    return connector, app


async def _sleep(seconds: float) -> None:
    from twisted.internet import reactor, task
    await task.deferLater(reactor, seconds, lambda: None)


async def run_scenario(scenario: QuizScenario, yate: Any, version: str, sip_call: Any,
                       sip_callee: Any) -> None:
    """The callees, quizconnect over TCP, the call; the assertions run in a thread (they wait
    for sipp) while quizconnect runs on this reactor."""
    scenario.start_callees(sip_callee)
    connector, _ = await run_quizconnect(yate, version, scenario.config)
    try:
        scenario.place_call(sip_call)
        await threads.deferToThread(scenario.check)
    finally:
        connector.disconnect()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("version", VERSIONS)
async def test_winner_among_three_real(yate, sip_call, sip_callee, tmp_path, version):
    await run_scenario(WinnerAmongThree(tmp_path), yate, version, sip_call, sip_callee)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("version", VERSIONS)
async def test_caller_cancels_while_callees_ring_real(yate, sip_call, sip_callee, tmp_path,
                                                      version):
    await run_scenario(CallerCancels(tmp_path), yate, version, sip_call, sip_callee)
