"""quizconnect, the DSM version, run inside Yate, configured by ``quizconnect.conf`` beside
this script (the tests copy both into the test's folder)."""

import os

from twisted.internet import reactor

import yaypm
from yaypm.apps.quizconnect import dsm_runner
from yaypm.apps.quizconnect.config import load_config

CONF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quizconnect.conf")


def start(yate):
    dsm_runner.start(yate, load_config(CONF))


if __name__ == "__embedded_yaypm_module__":
    yaypm.embeddedStart(start)
    installSignalHandlers = 0
else:
    installSignalHandlers = 1

reactor.run(installSignalHandlers)
