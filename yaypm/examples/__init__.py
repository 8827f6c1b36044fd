"""Small example apps written in the style of the YAYPM documentation.

Besides the Python modules: ``ivr.dsm``, the DSM PIN check of ``docs/dsm.md``
(:func:`example_path` finds it in an installed copy too).
"""

import os

__all__ = ["EXAMPLES_DIR", "example_path"]

EXAMPLES_DIR = os.path.dirname(os.path.abspath(__file__))


def example_path(name: str) -> str:
    """The path of a shipped example file, e.g. ``example_path("ivr.dsm")``."""
    return os.path.join(EXAMPLES_DIR, name)
