"""Route calls for "ivr" to a dumb channel and play a prompt once answered.

Written from the YAYPM documentation snippets (onmsg with a guard, ``route.ret(True,
"dumb/")``, ``until=``, ``onwatch``, ``msg(...).enqueue()``, ``msg(...).dispatch()``)::

    yaypm run yaypm.examples.route_ivr --connect tcp:127.0.0.1:5039
    python -m yaypm.examples.route_ivr          # the YAYPM way: connectTCP + reactor.run()
"""

from __future__ import annotations

from twisted.logger import Logger

from yaypm import AbandonedException

log = Logger(namespace="yaypm.examples.route_ivr")

PROMPT = "wave/play/prompts/hello.slin"


def start(yate) -> None:
    """Called once per connection with the dispatcher ("yate" in the YAYPM docs)."""
    wait_for_call(yate)


def wait_for_call(yate) -> None:
    d = yate.onmsg("call.route", lambda m: m["called"] == "ivr")
    d.addCallback(route_call, yate)


def route_call(route, yate) -> None:
    callid = route["id"]
    route.ret(True, "dumb/")
    wait_for_call(yate)                       # one-shot: re-arm for the next call

    end = yate.onmsg("chan.hangup", lambda m: m["id"] == callid, autoreturn=True)
    executed = yate.onwatch("call.execute", lambda m: m["id"] == callid, until=end)
    executed.addCallback(lambda m: log.info("{chan} connected to {peer}", chan=callid,
                                            peer=m.get("peerid")))
    executed.addErrback(lambda f: f.trap(AbandonedException))

    d = yate.onmsg("call.answered", lambda m: m["targetid"] == callid, until=end)
    d.addCallback(answered, yate, callid)
    d.addErrback(lambda f: f.trap(AbandonedException))
    end.addCallback(lambda m: log.info("{chan} hung up", chan=callid))


def answered(m, yate, callid: str) -> None:
    m.ret(False)                              # a notification for us, not ours to stop
    peer = m["id"]
    play = yate.msg("chan.masquerade", {"message": "chan.attach", "id": peer,
                                        "source": PROMPT, "notify": callid})
    play.enqueue()
    status = yate.msg("engine.status", {"module": "dumb"})
    d = status.dispatch()
    d.addCallback(lambda processed: log.info("dumb status: {status}",
                                             status=status.getRetValue().strip()))


if __name__ == "__main__":
    from twisted.internet import reactor

    from yaypm import TCPDispatcherFactory

    f = TCPDispatcherFactory(start)
    reactor.connectTCP("localhost", 5039, f)
    reactor.run()
