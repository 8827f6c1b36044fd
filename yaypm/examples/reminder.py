"""An outbound call that plays a message when answered (a reminder, an alert).

::

    yaypm run yaypm.examples.reminder --connect tcp:127.0.0.1:5039   # calls TARGET once
"""

from __future__ import annotations

from twisted.logger import Logger

from yaypm.ivr import BusyError, CallEnded, DialError, NoAnswerError, dial
from yaypm.prompts import prompt

log = Logger(namespace="yaypm.examples.reminder")

TARGET = "sip/sip:bob@127.0.0.1:5080"


async def remind(dispatcher, target: str = TARGET, caller: str = "reminder",
                 ring_seconds: float = 30) -> str:
    """Call ``target``; when answered, play the reminder twice and hang up.

    Fires with the outcome: ``delivered``, ``hungup`` (before the end), ``busy``,
    ``noanswer`` or ``failed``.
    """
    try:
        leg = await dial(dispatcher, target, caller=caller, timeout=ring_seconds)
    except BusyError:
        return "busy"
    except NoAnswerError:
        return "noanswer"
    except DialError as e:
        log.warn("Reminder to {target} failed: {error}", target=target, error=e)
        return "failed"
    try:
        await leg.sleep(0.5)                  # let the callee put the phone to the ear
        await leg.play([prompt("reminder"), prompt("reminder"), prompt("goodbye")])
    except CallEnded:
        return "hungup"
    await leg.hangup()
    return "delivered"


def start(dispatcher, target: str = TARGET) -> None:
    from twisted.internet import defer
    defer.ensureDeferred(remind(dispatcher, target)).addCallback(
        lambda outcome: log.info("Reminder to {target}: {outcome}", target=target,
                                 outcome=outcome))
