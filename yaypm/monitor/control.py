"""What the monitoring server needs from a DSM engine: the `ControlTarget` protocol.

The XML-RPC layer (:mod:`yaypm.monitor.rpc`) turns SEMS's DSM control calls (dsm-language.md
§3.4) into calls on a `ControlTarget` and shapes the results as SEMS does (``[200, "OK"]``,
``[500, reason]``...).  An engine implements the four core methods; the rest are optional and
answered ``[500, "not supported ..."]`` when absent.

Contract for every method: return a value or a Deferred firing with it; signal failure by
raising (or errbacking with) `ControlError(code, reason)` — any other exception is answered
``[500, str(exception)]`` and logged.  A Deferred that does not fire within the server's
``control_timeout`` is cancelled and answered as a fault, so a stuck engine cannot hang a client.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Protocol, runtime_checkable

__all__ = ["ControlTarget", "ControlError", "NullControl", "OPTIONAL_METHODS"]


class ControlError(Exception):
    """A control call failed with a SEMS status ``code`` and ``reason`` (e.g. 404, "...")."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


@runtime_checkable
class ControlTarget(Protocol):
    """The control surface of a DSM engine (dsm-language.md §3.4).

    Required: `load_config`, `reload`, `post_event`, `graph_svg`.  Optional (looked up with
    ``getattr``): `load_dsm`, `load_dsm_with_paths`, `preload_modules`, `preload_module`,
    `has_dsm`, `list_dsms`, `register_application`, `create_system_dsm`.
    """

    def load_config(self, conf_file: str, app_name: str) -> Any:
        """(Re)load the bundle ``conf_file`` as ``app_name`` (``.conf`` already stripped) and
        re-register its apps, for new calls only."""

    def reload(self) -> Any:
        """Re-read the main ``load_diags`` (``reloadDSMs``)."""

    def post_event(self, call_id: str, params: Dict[str, str]) -> Any:
        """Queue an ``event`` with ``params`` for session ``call_id``; True if it exists."""

    def graph_svg(self, call_id: str) -> Any:
        """The SVG (text) of the session's diagram with its current state and visited path
        marked, or None to let the monitor draw the ``dsm_stategraph`` attribute instead."""


# Optional methods: SEMS method name -> Python method name.
OPTIONAL_METHODS = {
    "loadDSM": "load_dsm",
    "loadDSMWithPaths": "load_dsm_with_paths",
    "preloadModules": "preload_modules",
    "preloadModule": "preload_module",
    "hasDSM": "has_dsm",
    "listDSMs": "list_dsms",
    "registerApplication": "register_application",
    "createSystemDSM": "create_system_dsm",
}


class NullControl:
    """The target used when no DSM engine is running: every control call fails with 500."""

    reason = "no DSM engine in this process"

    def load_config(self, conf_file: str, app_name: str) -> None:
        raise ControlError(500, self.reason)

    def reload(self) -> None:
        raise ControlError(500, self.reason)

    def post_event(self, call_id: str, params: Dict[str, str]) -> bool:
        return False

    def graph_svg(self, call_id: str) -> Optional[str]:
        return None

    def list_dsms(self, app: Optional[str] = None) -> List[str]:
        return []

    def has_dsm(self, name: str, app: Optional[str] = None) -> bool:
        return False
