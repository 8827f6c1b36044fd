"""Key echo: answer, then say back every key the caller presses (YAYPM's classic example).

::

    yaypm run yaypm.examples.keyecho --connect tcp:127.0.0.1:5039     # calls to "echo"
"""

from __future__ import annotations

from yaypm.ivr import Leg, route
from yaypm.prompts import digit_prompt, prompt

NUMBER = "echo"


async def keyecho(leg: Leg) -> None:
    """Keys pressed while a digit is being said are queued and said in turn."""
    await leg.answer()
    await leg.play(prompt("welcome"))
    async for key in leg.dtmf():          # ends (CallEnded) when the caller hangs up
        await leg.play(digit_prompt(key))


def start(dispatcher, number: str = NUMBER) -> None:
    route(dispatcher, number, keyecho)
