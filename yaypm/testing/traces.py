"""Read the transcripts recorded from a real Yate (``traces/*.txt``) into entries.

A transcript line is one of::

    >> LINE          written by the script on connection 1      (">>2 LINE": connection 2)
    << LINE          written by Yate on connection 1            ("<<2 LINE": connection 2)
    # comment        the scenario, SIP events, pauses, "connected to ..."
    anything else    free text (benchmark tables); kept as a comment

and in ``X.timed.txt`` every line is preceded by ``+seconds `` (time since the start). Lines are
byte-exact: they are decoded with ``surrogateescape`` so invalid UTF-8 (Yate passes bytes through)
survives, and a trailing CR sent by the script is kept.

    >>> trace = load_trace("traces/A2_install_watch.timed.txt")
    >>> [e.line for e in trace.lines(direction="<<")][:1]
    ['%%<install:50:test.a:true']

``Trace.sessions()`` splits a transcript at ``# connected to`` comments: in the protocol traces
each of those is a new TCP connection (and so a fresh dispatcher). :func:`find_traces` finds the
folder of the recorded transcripts (``shared/traces`` next to the checkout).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Union

__all__ = ["TraceEntry", "Trace", "load_trace", "parse_trace", "find_traces", "SCRIPT",
           "ENGINE"]

SCRIPT = ">>"      #: a line the script wrote to Yate
ENGINE = "<<"      #: a line Yate wrote to the script

_ENTRY = re.compile(r"(?:\+(?P<time>\d+\.\d+) )?(?:(?P<dir>>>|<<)(?P<conn>\d*)(?: (?P<line>.*)|$)"
                    r"|# ?(?P<comment>.*)|(?P<blank>))\Z", re.S)
_CONNECTED = re.compile(r"connected to \S+(?: as connection (\d+))?")


@dataclass(frozen=True)
class TraceEntry:
    """One transcript line: a protocol line (``direction`` set) or a comment."""
    lineno: int
    direction: Optional[str]          # ">>" (script → Yate), "<<" (Yate → script), None
    connection: int                   # 1 unless the transcript says ">>2" / "<<2"
    line: Optional[str]               # the protocol line, without its LF (CR kept if sent)
    comment: Optional[str]            # the comment text, without "# "
    time: Optional[float] = None      # seconds since the start (``.timed.txt`` only)

    @property
    def is_line(self) -> bool:
        return self.direction is not None

    def raw(self) -> bytes:
        """The protocol line as bytes, exactly as it went over the wire (without LF)."""
        assert self.line is not None
        return self.line.encode("utf-8", "surrogateescape")


@dataclass
class Trace:
    """A parsed transcript: its name and entries, in file order."""
    name: str
    entries: List[TraceEntry] = field(default_factory=list)

    @property
    def timed(self) -> bool:
        return any(e.time is not None for e in self.entries)

    def lines(self, direction: Optional[str] = None,
              connection: Optional[int] = None) -> Iterator[TraceEntry]:
        """Protocol lines, optionally of one direction and/or one connection."""
        for e in self.entries:
            if e.direction is None:
                continue
            if direction is not None and e.direction != direction:
                continue
            if connection is not None and e.connection != connection:
                continue
            yield e

    def comments(self) -> Iterator[TraceEntry]:
        return (e for e in self.entries if e.comment is not None)

    def sessions(self) -> List[List[TraceEntry]]:
        """Entries grouped by connection: a new group at every ``# connected to`` comment.

        Entries before the first such comment go to the first group.
        """
        groups: List[List[TraceEntry]] = [[]]
        for e in self.entries:
            if e.comment is not None and _CONNECTED.match(e.comment) and groups[-1] and \
                    any(x.is_line for x in groups[-1]) and "as connection" not in e.comment:
                groups.append([])
            groups[-1].append(e)
        return [g for g in groups if any(x.is_line for x in g)]


def parse_trace(data: Union[bytes, str], name: str = "") -> Trace:
    """Parse a transcript's contents (bytes are decoded with ``surrogateescape``)."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "surrogateescape")
    trace = Trace(name)
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for n, text in enumerate(lines, 1):
        m = _ENTRY.match(text)
        if m is None:       # free text (the result table of E_throughput): kept as a comment
            trace.entries.append(TraceEntry(n, None, 1, None, text, None))
            continue
        t = float(m.group("time")) if m.group("time") is not None else None
        if m.group("dir"):
            conn = int(m.group("conn") or 1)
            trace.entries.append(TraceEntry(n, m.group("dir"), conn, m.group("line") or "",
                                            None, t))
        elif m.group("comment") is not None:
            trace.entries.append(TraceEntry(n, None, 1, None, m.group("comment"), t))
    return trace


def load_trace(path: Union[str, "os.PathLike[str]"]) -> Trace:
    """Read and parse one transcript file; ``name`` is the file name without ``.txt``."""
    with open(path, "rb") as f:
        data = f.read()
    name = os.path.basename(os.fspath(path))
    for suffix in (".timed.txt", ".txt"):
        if name.endswith(suffix):
            name = name[:-len(suffix)]
            break
    return parse_trace(data, name)


def find_traces(near: Union[str, "os.PathLike[str]", None] = None,
                marker: str = "A0_connect.txt") -> Optional[Path]:
    """The folder of recorded transcripts, or None: the first ``traces/`` or ``shared/traces/``
    holding ``marker``, in ``$YAYPM_SHARED``, then in ``near`` (a file or folder; default the
    current directory) and each folder above it."""
    start = Path(near if near is not None else os.getcwd()).resolve()
    bases = [start, *start.parents]
    env = os.environ.get("YAYPM_SHARED")
    if env:
        bases.insert(0, Path(env))
    for base in bases:
        for cand in (base / "traces", base / "shared" / "traces"):
            if (cand / marker).is_file():
                return cand
    return None
