"""yaypm.examples.route_ivr run inside Yate, plus a stand-in for the IVR's media side.

route_ivr routes "ivr" to a dumb channel and, once the call is answered, attaches a prompt
and asks Yate for the dumb channels' status.  Nothing answers a dumb channel by itself, so a
second dispatcher answers it as soon as call.execute created it (as a prompt player would).
"""

from twisted.internet import reactor

import yaypm.embedded
from yaypm.examples import route_ivr


def answer_dumb(yate):
    def executed(m):
        if m.get("callto") == "dumb/" and m.get("peerid"):
            yate.msg("chan.masquerade", {"message": "call.answered",
                                         "id": m["peerid"]}).enqueue()
    yate.watcher("call.execute", executed)


if __name__ == "__embedded_yaypm_module__":
    yaypm.embedded.embededStart(route_ivr.start)
    yaypm.embedded.embededStart(answer_dumb)
    installSignalHandlers = 0
else:
    installSignalHandlers = 1

reactor.run(installSignalHandlers)
