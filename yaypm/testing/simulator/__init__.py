"""A simulated Yate engine for tests: extmodule protocol, message dispatch, SIP/dumb/conf calls.

Start here::

    from yaypm.testing.simulator import Simulator, answer, busy

    sim = Simulator()                       # task.Clock inside (sim.clock); nothing is real
    dispatcher = sim.connect(start)         # your app on a real Dispatcher, in memory
    call = sim.place_call("100", caller="alice", dtmf_method="rfc2833")
    sim.advance(1)
    call.send_dtmf("1234#", interval=0.1)
    sim.advance(2)
    assert call.sip_status == 200 and call.heard() == ["wave/play/prompts/menu.slin"]

Public API (details in each docstring):

* :class:`Simulator` — ``connect(start=None, role=None) -> Dispatcher``, ``connect_raw()``,
  ``listen(endpoint, role)`` (real TCP), ``place_call(called, caller=..., dtmf_method=...)
  -> SimCall``, ``endpoint(target, behaviour, delay=...) -> SimEndpoint``, ``advance(s)``,
  ``dispatch(name, params)``, ``declare_media(path, seconds)``, ``wire`` (every line:
  time, connection, direction, text), ``expect_line(pattern)``, ``expect_no_more_lines()``,
  ``channels``, ``handlers()``, ``watches()``, ``pending()``, ``leaks()``, ``close()``.
* :class:`SimCall` / :class:`OutboundLeg` — ``send_dtmf(digits, interval)``, ``hangup()``,
  ``answered()`` (Deferred) / ``is_answered``, ``sip_status``, ``provisional``, ``heard()``,
  ``dtmf_received()``, ``state``, ``ended``, ``when_ended()``.
* Endpoint behaviours: :func:`answer`, :func:`answer_after`, :func:`busy`, :func:`reject`,
  :func:`noanswer`, :func:`unreachable`, or ``[(action, seconds), ...]`` steps.

* Fixtures (``yaypm.testing.simulator.fixtures``, loaded by the ``yaypm`` pytest plugin):
  ``sim`` (a Simulator on a fresh ``task.Clock``) and ``sim_factory(**kwargs)``.
* Trace replay (:mod:`.replay`): ``scenario_from_trace(trace, ...)``, ``replay(target,
  scenario)`` with a :class:`~.replay.Target` (``SimTarget(sim)``; a real engine with sipp can
  implement the same methods).

Layout: :mod:`.engine` (messages, handler list, dispatch, job queue, timers),
:mod:`.extmodule` (one connection, engine side), :mod:`.channels` (Channel, dumb, conf, tone,
wave, the router), :mod:`.sip` (SIP legs, callfork), :mod:`.media` (prompts, recorders),
:mod:`.modules` (the handler table at the traces' priorities, pbx, status, engine.timer),
:mod:`.api` (this facade), :mod:`.tcp` (the thin Twisted listener).  All but the last are
sans-IO and driven by the injected clock.  Behaviours are backed by the transcripts in
``traces/`` and checked line by line in ``tests/simulator/test_conformance.py``.

Not simulated: audio (prompts end after their duration, recorders write files of the right
size), SIP transactions and retransmissions, channel scripts started by Yate
(``external/...``), ``chan.record``, inband DTMF detection.
"""

from yaypm.testing.simulator.api import (ENGINE, SCRIPT, Behaviour, OutboundLeg, RawConnection,
                                         SimCall, SimConnection, SimEndpoint, SimLeg,
                                         Simulator, WireLine, answer, answer_after, busy,
                                         noanswer, reject, unreachable)
from yaypm.testing.simulator.engine import Engine, SimMessage

__all__ = ["Simulator", "SimCall", "SimLeg", "OutboundLeg", "SimEndpoint", "Behaviour",
           "WireLine", "RawConnection", "SimConnection", "Engine", "SimMessage", "answer",
           "answer_after", "busy", "reject", "noanswer", "unreachable", "SCRIPT", "ENGINE"]
