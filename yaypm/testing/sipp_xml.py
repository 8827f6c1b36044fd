"""Pieces of sipp scenario XML, for tests that generate their SIP peers per call.

Each function returns the text of one scenario element (two-space indent, as in sipp's own
scenarios); a scenario is their concatenation between ``<scenario>`` and ``</scenario>``.
sipp fills in the ``[...]`` keywords: ``[len]`` is the body's length, ``[branch]`` a new Via
branch, ``[last_From:]`` the header of the last message received, and so on.
"""

from __future__ import annotations

from typing import Sequence, Union

__all__ = ["sipp_send", "sipp_request", "sipp_reply"]

_VIA = "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]"


def sipp_send(first_line: str, headers: Sequence[str], body: Sequence[str] = (), *,
              retrans: bool = False) -> str:
    """A ``<send>`` of one SIP message: ``first_line``, ``headers``, then ``Content-Length``
    (``[len]`` with a ``body``, 0 without) and the body lines.  ``retrans``: sipp resends it
    every 500 ms until answered (UDP requests)."""
    lines = [first_line, *headers]
    lines += ["Content-Length: [len]", "", *body] if body else ["Content-Length: 0", ""]
    cdata = "".join(f"      {line}\n" if line else "\n" for line in lines)
    attrs = ' retrans="500"' if retrans else ""
    return f"  <send{attrs}>\n    <![CDATA[\n{cdata}    ]]>\n  </send>\n"


def sipp_request(method: str, cseq: Union[int, str], user: str, *, uri: str = "[next_url]",
                 dialog: Sequence[str] = ("[last_From:]", "[last_To:]"),
                 headers: Sequence[str] = (), body: Sequence[str] = (),
                 retrans: bool = True) -> str:
    """A request inside the dialog sipp tracks (ACK, BYE, INFO...): a new Via branch, the
    ``dialog`` From/To lines, ``Contact: <sip:user@...>``, ``Max-Forwards: 70``, ``headers``."""
    return sipp_send(f"{method} {uri} SIP/2.0",
                     [_VIA, *dialog, "Call-ID: [call_id]", f"CSeq: {cseq} {method}",
                      f"Contact: <sip:{user}@[local_ip]:[local_port]>", "Max-Forwards: 70",
                      *headers], body, retrans=retrans)


def sipp_reply(status: str, user: str, *, to_tag: str = "", headers: Sequence[str] = (),
               body: Sequence[str] = ()) -> str:
    """A response (``status``: "200 OK") to the last request received, copying its Via, From,
    To (plus ``;tag=<to_tag>`` if given), Call-ID and CSeq."""
    to = "[last_To:]" + (f";tag={to_tag}" if to_tag else "")
    return sipp_send(f"SIP/2.0 {status}",
                     ["[last_Via:]", "[last_From:]", to, "[last_Call-ID:]", "[last_CSeq:]",
                      f"Contact: <sip:{user}@[local_ip]:[local_port]>", *headers], body)
