"""quizconnect (the async version) run inside Yate, configured by ``quizconnect.conf`` beside
this script (the tests copy both into the test's folder)."""

import os

from twisted.internet import reactor

import yaypm
from yaypm.apps.quizconnect.app import QuizConnect
from yaypm.apps.quizconnect.config import load_config

CONF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quizconnect.conf")


def start(yate):
    QuizConnect(load_config(CONF)).start(yate)


if __name__ == "__embedded_yaypm_module__":
    yaypm.embeddedStart(start)
    installSignalHandlers = 0
else:
    installSignalHandlers = 1

reactor.run(installSignalHandlers)
