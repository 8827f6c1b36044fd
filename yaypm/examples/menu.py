"""A menu: press 1, 2 or 3; invalid input and silence are retried, then goodbye.

1 and 2 transfer the caller (sales, support: ``sip/...`` targets you configure), 3 leaves a
voicemail (:mod:`yaypm.examples.voicemail`).  Three failed tries hang up politely.

::

    yaypm run yaypm.examples.menu --connect tcp:127.0.0.1:5039     # calls to "menu"
"""

from __future__ import annotations

from typing import Dict

from yaypm.ivr import DigitTimeoutError, Leg, route
from yaypm.prompts import prompt

from yaypm.examples.voicemail import voicemail

NUMBER = "menu"
TARGETS: Dict[str, str] = {"1": "sip/sip:sales@127.0.0.1:5080",
                           "2": "sip/sip:support@127.0.0.1:5080"}
TRIES = 3


async def menu(leg: Leg, targets: Dict[str, str] = TARGETS, tries: int = TRIES) -> None:
    await leg.answer()
    await leg.play(prompt("welcome"))
    for _ in range(tries):
        try:
            choice = await leg.digits(count=1, prompt=prompt("menu"), timeout=5)
        except DigitTimeoutError:
            await leg.play(prompt("noinput"))
            continue
        if choice in targets:
            await leg.play(prompt("transfer"))
            await leg.transfer(targets[choice])
            return
        if choice == "3":
            await voicemail(leg)
            return
        await leg.play(prompt("invalid"))
    await leg.play(prompt("goodbye"))


def start(dispatcher, number: str = NUMBER) -> None:
    route(dispatcher, number, menu)
