"""``yaypm example``: run :mod:`yaypm.examples.route_ivr` against a scripted fake engine.

Everything stays in memory (no Yate, no socket, a ``task.Clock``): the fake engine acks what the
app installs and watches, offers one call for "ivr", reports it executed and answered, answers
the app's own messages, and hangs up.  Each line is printed as ``-> line`` (app to Yate) or
``<- line`` (Yate to app).
"""

from __future__ import annotations

from collections import deque
from typing import Deque, List, TextIO

from twisted.internet.task import Clock

from yaypm import protocol as P
from yaypm.dispatcher import Dispatcher
from yaypm.examples import route_ivr

T = 1795366856


class ScriptedEngine:
    """Yate's side for the demo: reacts to the app's lines with a fixed call story."""

    def __init__(self) -> None:
        self.outbox: Deque[str] = deque()
        self.step = 0

    def received(self, line: str) -> None:
        rec = P.parse_line(line, script_side=True)
        send = self.outbox.append
        if isinstance(rec, P.Install):
            send(P.InstallReply(rec.priority or 100, rec.name, True).encode())
            if rec.name == "call.route" and self.step == 0:
                self.step = 1
                send(f"%%>message:0x7f4d.1:{T}:call.route::id=sip/1:module=sip"
                     ":caller=alice:called=ivr:sip_uri=sip%zivr@127.0.0.1%z5070")
        elif isinstance(rec, P.Watch):
            send(P.WatchReply(rec.name, True).encode())
            if rec.name == "call.execute":
                send("%%<message::true:call.execute::id=sip/1:callto=dumb/"
                     ":peerid=dumb/1:targetid=dumb/1")
                send(f"%%>message:0x7f4d.2:{T + 1}:call.answered::id=dumb/1:targetid=sip/1")
        elif isinstance(rec, P.Message) and rec.id:
            send(P.MessageAnswer(rec.id, True, rec.name, "name=dumb,type=misc;chans=1\r\n",
                                 rec.params).encode(engine_side=True))
            send(f"%%>message:0x7f4d.3:{T + 5}:chan.hangup::id=sip/1:reason=normal")


def run_demo(out: TextIO) -> int:
    """Run the demo, print the exchanged lines to ``out``; 0 when the story completed."""
    clock = Clock()
    engine = ScriptedEngine()
    sent: List[str] = []

    def write(line: str) -> None:
        out.write(f"-> {line}\n")
        sent.append(line)
        engine.received(line)

    dispatcher = Dispatcher(clock)
    dispatcher.attach(write)
    route_ivr.start(dispatcher)
    while engine.outbox:
        line = engine.outbox.popleft()
        out.write(f"<- {line}\n")
        dispatcher.line_received(line)
    ok = ("%%<message:0x7f4d.1:true:call.route:dumb/" in sent
          and "%%<message:0x7f4d.3:true:chan.hangup:" in sent
          and dispatcher.waiting_count() == 1)          # re-armed for the next call
    out.write("example finished: call routed to dumb/, prompt played, hung up\n" if ok
              else "example did not complete\n")
    return 0 if ok else 1
