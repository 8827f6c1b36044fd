"""Files yaypm uses besides its modules: the Yate configuration templates of the real-engine
test harness, its sipp scenarios, and the C++ source of the embedded module.

A source checkout keeps them where people look for them: ``yate-conf/``, ``tests/sipp/`` and
``embedded/`` at the top of the tree.  A wheel can only carry files inside the package, so
``setup.py`` maps those folders to ``yaypm/_data/<name>/``; :func:`resource_path` finds the
one or the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

__all__ = ["RESOURCES", "resource_path", "is_packaged"]

_PACKAGE = Path(__file__).resolve().parent
_PACKAGED = _PACKAGE / "_data"

#: Resource name -> its folder in a source checkout (relative to the top of the tree).
#: setup.py's table lists the same folders, with the files of each that a wheel ships.
RESOURCES: Dict[str, str] = {
    "yate_conf": "yate-conf",       # *.conf templates rendered by yaypm.testing.yate
    "sipp": "tests/sipp",           # sipp scenarios of SippCall/SippCallee
    "embedded": "embedded",         # yaypmhost.cpp, built by `yaypm build-module`
}


def resource_path(name: str) -> Path:
    """The folder of resource ``name`` (a key of :data:`RESOURCES`): the copy inside an
    installed package, else the source checkout's.  KeyError for an unknown name."""
    checkout = RESOURCES[name]
    packaged = _PACKAGED / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / checkout


def is_packaged(path: Path) -> bool:
    """Whether ``path`` lies in the installed package's resources (not to be written to)."""
    try:
        Path(path).resolve().relative_to(_PACKAGED)
    except ValueError:
        return False
    return True
