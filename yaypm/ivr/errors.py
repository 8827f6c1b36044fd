"""Exceptions of the IVR layer, and the SIP code <-> Yate reason tables they rely on."""

from __future__ import annotations

from typing import Dict, Optional, Union

from twisted.internet import defer

__all__ = [
    "IVRError", "CallEnded", "MediaError", "DialError", "BusyError", "NoAnswerError",
    "RejectedError", "BridgeError", "DigitTimeoutError", "reason_for_code", "code_for_reason",
    "dial_error",
]


class IVRError(Exception):
    """Base class of the IVR layer's errors."""


class CallEnded(IVRError):
    """The leg is gone (hung up, dropped, rejected, transferred away) before the operation ended.

    ``leg_id`` is the party channel (``sip/7``), ``reason`` why it ended (``hangup`` when the far
    end hung up normally, ``busy``, ``noanswer``, our own hang-up reason...).
    """

    def __init__(self, leg_id: Optional[str], reason: str) -> None:
        super().__init__(f"call {leg_id} ended: {reason}")
        self.leg_id = leg_id
        self.reason = reason


class MediaError(IVRError):
    """Yate could not play or record a resource (e.g. a prompt file that does not open)."""

    def __init__(self, resource: str, reason: str = "failed") -> None:
        super().__init__(f"{resource}: {reason}")
        self.resource = resource
        self.reason = reason


class BridgeError(IVRError):
    """``chan.connect`` (bridge) or a conference/transfer ``call.execute`` was refused."""

    def __init__(self, what: str, reason: str = "") -> None:
        super().__init__(f"{what} refused{': ' + reason if reason else ''}")
        self.what = what
        self.reason = reason


class DialError(IVRError):
    """An outbound call did not get answered.  ``code`` is the SIP code when known."""

    def __init__(self, target: str, reason: str, code: Optional[int] = None) -> None:
        super().__init__(f"call to {target} failed: {reason}"
                         + (f" ({code})" if code else ""))
        self.target = target
        self.reason = reason
        self.code = code


class BusyError(DialError):
    """The callee is busy (SIP 486/600, reason ``busy``)."""


class NoAnswerError(DialError):
    """Nobody answered before the timeout (``maxcall``), reason ``noanswer``, or SIP 408."""


class RejectedError(DialError):
    """The call was refused otherwise (no route, offline, forbidden, 404, 480, 503...)."""


class DigitTimeoutError(defer.TimeoutError):
    """No (more) digits in time; ``digits`` holds what was collected before the timeout."""

    def __init__(self, digits: str = "") -> None:
        super().__init__(f"digit timeout after {digits!r}")
        self.digits = digits


# Yate's ysipchan ``dict_errors``: reason -> SIP code (first entry of a reason wins).
_REASON_CODES: Dict[str, int] = {
    "incomplete": 484, "noroute": 404, "noconn": 503, "noauth": 401, "nomedia": 415,
    "nocall": 481, "busy": 486, "noanswer": 480, "rejected": 406, "forbidden": 403,
    "offline": 404, "congestion": 480, "unallocated": 410, "moved": 410, "failure": 500,
    "pending": 491, "looping": 483, "timeout": 408, "postdialdelay": 504,
    "service-not-implemented": 501, "unimplemented": 501, "service-unavailable": 503,
    "unacceptable": 488, "noresource": 503, "interworking": 500, "invalid-message": 400,
    "protocol-error": 400,
}

# SIP code -> the reason to give Yate so that it sends that code.  A reason Yate does not know
# makes an unanswered SIP channel answer 487 Request Terminated (YateSIPConnection::disconnected),
# which is how 487 is produced ("cancelled").
_CODE_REASONS: Dict[int, str] = {
    404: "noroute", 486: "busy", 600: "busy", 480: "noanswer", 487: "cancelled",
    500: "failure", 403: "forbidden", 603: "forbidden", 503: "noconn", 484: "incomplete",
    483: "looping", 406: "rejected", 606: "rejected", 410: "unallocated", 408: "timeout",
    488: "unacceptable", 491: "pending", 501: "unimplemented", 415: "nomedia", 481: "nocall",
    504: "postdialdelay", 400: "invalid-message", 401: "noauth",
}


def reason_for_code(code: Union[int, str]) -> str:
    """The Yate reason that makes Yate answer SIP ``code`` (``486`` -> ``busy``).

    A string that is not a number is taken as a reason already and returned as is.
    """
    if isinstance(code, str) and not code.isdigit():
        return code
    n = int(code)
    if n not in _CODE_REASONS:
        raise ValueError(f"no Yate reason produces SIP {n}; known: {sorted(_CODE_REASONS)}")
    return _CODE_REASONS[n]


def code_for_reason(reason: str) -> Optional[int]:
    """The SIP code Yate sends for ``reason`` (``busy`` -> 486), None when Yate has none."""
    return _REASON_CODES.get(reason)


def dial_error(target: str, reason: str, sip_code: Optional[int] = None,
               status: str = "") -> DialError:
    """The exception for an outbound call that ended unanswered.

    ``sip_code`` is the final response the callee sent (``cause_sip``), when there was one:
    a callee answering 480 is a rejection, a ``maxcall`` expiry (reason/status ``noanswer``, no
    SIP code) is no answer.
    """
    if reason == "busy" or sip_code in (486, 600):
        return BusyError(target, "busy", sip_code or 486)
    if sip_code == 408 or (sip_code is None and (reason in ("noanswer", "timeout")
                                                 or status == "noanswer")):
        return NoAnswerError(target, "noanswer", sip_code)
    return RejectedError(target, reason or "rejected", sip_code or code_for_reason(reason))
