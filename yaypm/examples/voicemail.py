"""Voicemail: record a message after the beep (``#`` ends it), play it back, save it.

Recordings go to ``RECORDINGS`` (a path on the Yate machine), one ``.au`` file per call.

::

    yaypm run yaypm.examples.voicemail --connect tcp:127.0.0.1:5039     # calls to "vm"
"""

from __future__ import annotations

import os

from yaypm.ivr import Leg, route
from yaypm.prompts import prompt

NUMBER = "vm"
RECORDINGS = "/tmp/yaypm-voicemail"
MAX_SECONDS = 60
MIN_SECONDS = 1.0


async def voicemail(leg: Leg, folder: str = RECORDINGS, max_seconds: float = MAX_SECONDS
                    ) -> str:
    """Fires with the file recorded (empty when the caller said nothing)."""
    await leg.answer()
    await leg.play([prompt("vm-greeting"), prompt("beep")])
    path = os.path.join(folder, f"{leg.billid or leg.id.replace('/', '-')}.au")
    result = await leg.record(path, max_seconds=max_seconds, terminators="#")
    if result.duration < MIN_SECONDS:
        await leg.play([prompt("vm-nomsg"), prompt("goodbye")])
        return ""
    await leg.play([prompt("vm-yourmsg"), path, prompt("vm-saved"), prompt("goodbye")])
    return path


def start(dispatcher, number: str = NUMBER) -> None:
    route(dispatcher, number, voicemail)
