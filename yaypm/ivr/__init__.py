"""IVR and call control on Yate dumb channels: one :class:`Leg` object per call leg.

::

    from yaypm.ivr import route, CallEnded

    async def menu(leg):
        await leg.answer()
        choice = await leg.digits(count=1, prompt="prompts/menu.slin", timeout=5)
        ...

    route(dispatcher, "100", menu)

See :mod:`yaypm.ivr.leg` (the operations), :mod:`yaypm.ivr.routing` (incoming calls),
:func:`dial` (outgoing calls), :mod:`yaypm.ivr.dialog` (SEMS-style dialog classes).
"""

from yaypm.ivr.dialog import Dialog, IvrDialogBase
from yaypm.ivr.errors import (BridgeError, BusyError, CallEnded, DialError, DigitTimeoutError,
                              IVRError, MediaError, NoAnswerError, RejectedError)
from yaypm.ivr.leg import Call, Joined, Leg, dial
from yaypm.ivr.media import RecordResult
from yaypm.ivr.playlist import Playlist
from yaypm.ivr.routing import Route, route, run_app
from yaypm.ivr.switchboard import Switchboard, switchboard

__all__ = [
    "Leg", "Call", "Joined", "dial", "Playlist", "route", "Route", "run_app", "Switchboard", "switchboard",
    "RecordResult", "IVRError", "CallEnded", "MediaError", "DialError", "BusyError",
    "NoAnswerError", "RejectedError", "BridgeError", "DigitTimeoutError", "Dialog",
    "IvrDialogBase",
]
