"""yaypm.examples.keyecho run inside Yate (calls to "echo"); over TCP the same app runs as
``yaypm run yaypm.examples.keyecho --connect tcp:127.0.0.1:5039``."""

from twisted.internet import reactor

import yaypm
from yaypm.examples import keyecho

if __name__ == "__embedded_yaypm_module__":
    yaypm.embeddedStart(keyecho.start)
    installSignalHandlers = 0
else:
    installSignalHandlers = 1

reactor.run(installSignalHandlers)
