"""Prompts shipped with yaypm: 8 kHz mono mu-law ``.au`` files (regenerate: scripts/make-prompts).

``prompt("menu")`` is the absolute path of ``menu.au``; pass it to ``leg.play()``.  Yate reads
files itself, so the path must be valid on the machine running Yate.
"""

import os

__all__ = ["PROMPTS_DIR", "prompt", "digit_prompt"]

PROMPTS_DIR = os.path.dirname(os.path.abspath(__file__))

_DIGIT_NAMES = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five",
                "6": "six", "7": "seven", "8": "eight", "9": "nine", "*": "star",
                "#": "pound"}


def prompt(name: str) -> str:
    """The path of a shipped prompt (``.au`` added when ``name`` has no extension)."""
    if not os.path.splitext(name)[1]:
        name += ".au"
    return os.path.join(PROMPTS_DIR, name)


def digit_prompt(key: str) -> str:
    """The prompt saying a DTMF key (``5`` -> five.au, ``#`` -> pound.au)."""
    return prompt(_DIGIT_NAMES[key])
