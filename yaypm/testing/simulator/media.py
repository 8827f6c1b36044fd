"""Prompts, recorders and tones without audio: durations, notifications and file sizes.

A prompt (``wave/play/FILE``) lasts as long as its file: ``.au`` from its header, ``.slin``
(and unknown extensions, ``.wav`` included — Yate does not parse it) at 16000 bytes/s,
``.alaw``/``.mulaw``/``.A``/``.u`` at 8000 bytes/s, ``.gsm`` at 1650 bytes/s; a test may declare
a duration per path instead (:meth:`MediaFiles.declare`).  It only progresses while audio flows
to a media-capable peer (yate-messages.md §2.11: a prompt on a dumb channel whose peer has no
media never ends) — for a SIP leg, once answered or with early media (``SipChannel.media_up``).  A recorder (``wave/record/FILE``) writes, when it stops, a file of the size
the elapsed time gives in its format (``maxlen`` bytes at most; ``.au`` adds Yate's 32-byte
header), and reports ``reason=maxlen`` through ``chan.notify`` when the limit is reached.
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Any, Dict, Optional

from twisted.logger import Logger

from yaypm.testing.simulator.engine import SimMessage

if TYPE_CHECKING:  # pragma: no cover
    from yaypm.testing.simulator.channels import Channel, Modules

__all__ = ["MediaFiles", "WaveSource", "Recorder", "ToneResource", "SilenceResource",
           "CONTINUOUS_TONES", "valid_tone", "byte_rate"]

log = Logger(namespace="yaypm.testing.simulator")

CONTINUOUS_TONES = frozenset((
    "dial", "dt", "busy", "bs", "ring", "rt", "specdial", "sd", "congestion", "cg",
    "outoforder", "oo", "info", "in", "milliwatt", "mw", "silence", "noise", "cn",
    "probe/0", "probe/1", "probe/2", "cotv", "cots"))

_AU_HEADER = 24 + 8           # AuHeader + "By YATE\0" (wavefile.cpp)


def valid_tone(name: str) -> bool:
    """Tones accepted as ``override``/``replace`` (DTMF, call waiting, frequency specs...)."""
    if name in CONTINUOUS_TONES or name in ("callwaiting", "cw"):
        return True
    if name.startswith("dtmf/") or name.startswith("dtmfstr/"):
        return True
    if len(name) == 1 and name in "0123456789*#ABCDabcd":
        return True
    return bool(name) and (name[0].isdigit() or name[0] == "!")


def byte_rate(path: str) -> int:
    """Bytes per second of a file format chosen by extension (recording side)."""
    p = path.lower()
    if p.endswith((".alaw", ".a", ".mulaw", ".u", ".au")):
        return 8000
    if p.endswith(".gsm"):
        return 1650
    if p.endswith((".2slin",)):
        return 32000
    if p.endswith((".2alaw", ".2mulaw")):
        return 16000
    if p.endswith(".g729"):
        return 1000
    if p.endswith(".g722"):
        return 8000
    if p.endswith((".ilbc20", ".ilbc30", ".lbc")):
        return 1900
    return 16000


class MediaFiles:
    """Where prompt durations come from: declared per path, or read from the file."""

    def __init__(self, base_dir: Optional[str] = None) -> None:
        self.base_dir = base_dir
        self.declared: Dict[str, Optional[float]] = {}

    def declare(self, path: str, seconds: Optional[float]) -> None:
        """``seconds=None`` declares the file missing."""
        self.declared[path] = seconds

    def resolve(self, path: str) -> str:
        if os.path.isabs(path) or self.base_dir is None:
            return path
        return os.path.join(self.base_dir, path)

    def duration(self, path: str) -> Optional[float]:
        """Seconds of audio in ``path``; None when the file cannot be opened."""
        if path in self.declared:
            return self.declared[path]
        real = self.resolve(path)
        try:
            size = os.path.getsize(real)
        except OSError:
            return None
        low = path.lower()
        if low.endswith(".au"):
            try:
                with open(real, "rb") as f:
                    head = f.read(24)
            except OSError:
                return None
            if len(head) == 24 and head[:4] == b".snd":
                offs, length, enc, rate, chans = struct.unpack(">IIIII", head[4:24])
                data = size - offs if length == 0xFFFFFFFF else min(length, size - offs)
                bps = {1: 1, 27: 1, 3: 2, 24: 0.5}.get(enc, 2) * rate * max(chans, 1)
                return max(data, 0) / float(bps) if bps else 0.0
            return size / 16000.0
        return size / float(byte_rate(path)) if not low.endswith(".au") else size / 16000.0


class _Resource:
    """Something attached to a channel (source, consumer, override)."""

    def stop(self, replaced: bool = False) -> None:
        pass

    def peer_changed(self) -> None:
        pass


class ToneResource(_Resource):
    def __init__(self, name: str) -> None:
        self.name = name


class SilenceResource(_Resource):
    name = "wave/play/-"


def _flowing(chan: "Channel") -> bool:
    """Does audio from this channel reach a media-capable leg whose media is up (answered, or
    early media), so that a prompt progresses?"""
    if chan.media_capable:
        return chan.media_up
    peer = chan.peer
    return peer is not None and peer.media_capable and peer.media_up


class WaveSource(_Resource):
    """A prompt: ``eof`` after its duration of flowing audio, ``replaced`` when displaced."""

    def __init__(self, modules: "Modules", chan: "Channel", path: str, tag: str,
                 repeat: bool = False) -> None:
        self.modules = modules
        self.chan = chan
        self.path = path
        self.tag = tag
        self.repeat = repeat
        self.remaining: Optional[float] = None
        self.started_at = 0.0
        self.call: Any = None
        self.finished = False

    def start(self) -> None:
        dur = self.modules.media_files.duration(self.path)
        if dur is None:
            # The file could not be opened: chan.notify with only targetid, at once (B3).
            self.finished = True
            self._detach()
            if self.tag:
                m = SimMessage("chan.notify", [("targetid", self.tag)],
                               time=self.modules.engine.now_sec())
                self.modules.engine.enqueue(m)
            return
        self.total = dur
        self.remaining = dur
        self.peer_changed()

    def peer_changed(self) -> None:
        if self.finished or self.remaining is None:
            return
        clock = self.modules.engine.clock
        if _flowing(self.chan) and self.chan.alive:
            if self.call is None:
                self.started_at = clock.seconds()
                self.call = self.modules.engine.call_later(self.remaining, self._eof)
        elif self.call is not None:
            if self.call.active():
                self.call.cancel()
            self.remaining -= clock.seconds() - self.started_at
            self.call = None

    def _eof(self) -> None:
        self.call = None
        if self.finished:
            return
        if self.repeat:
            self.remaining = self.total
            self.peer_changed()
            return
        self.finished = True
        self._detach()
        if self.tag:
            m = SimMessage("chan.notify", [("id", self.chan.id), ("targetid", self.tag),
                                           ("reason", "eof")],
                           time=self.modules.engine.now_sec())
            self.modules.engine.run(self.modules.engine.enqueue, m)

    def _detach(self) -> None:
        for kind, res in list(self.chan.media.items()):
            if res is self:
                del self.chan.media[kind]

    def stop(self, replaced: bool = False) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None
        if self.finished:
            return
        self.finished = True
        if replaced and self.tag:
            # No id: Yate reports a replaced source without it (B2, B4).
            m = SimMessage("chan.notify", [("targetid", self.tag), ("reason", "replaced")],
                           time=self.modules.engine.now_sec())
            self.modules.engine.enqueue(m)


class Recorder(_Resource):
    """A recorder: writes ``elapsed * rate`` bytes (at most ``maxlen``) when it stops."""

    def __init__(self, modules: "Modules", chan: "Channel", path: str, maxlen: int, tag: str,
                 fmt: Optional[str] = None, append: bool = False) -> None:
        self.modules = modules
        self.chan = chan
        self.path = path
        self.maxlen = max(maxlen, 0)
        self.tag = tag
        self.rate = byte_rate(path)
        self.append = append
        self.recorded = 0.0          # bytes recorded while audio flowed
        self.started_at: Optional[float] = None
        self.call: Any = None
        self.finished = False
        self.written = False

    def start(self) -> None:
        self.peer_changed()

    def _now(self) -> float:
        return self.modules.engine.clock.seconds()

    def peer_changed(self) -> None:
        if self.finished:
            return
        if _flowing(self.chan) and self.chan.alive:
            if self.started_at is None:
                self.started_at = self._now()
                if self.maxlen:
                    left = (self.maxlen - self.recorded) / float(self.rate)
                    self.call = self.modules.engine.call_later(max(left, 0.0), self._full)
        elif self.started_at is not None:
            self._accumulate()

    def _accumulate(self) -> None:
        if self.started_at is not None:
            self.recorded += (self._now() - self.started_at) * self.rate
            self.started_at = None
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None

    def _full(self) -> None:
        self.call = None
        self.recorded = float(self.maxlen)
        self.started_at = None
        self.finished = True
        self.write()
        for kind, res in list(self.chan.media.items()):
            if res is self:
                del self.chan.media[kind]
        eng = self.modules.engine
        if self.tag:
            m = SimMessage("chan.notify", [("id", self.chan.id), ("targetid", self.tag),
                                           ("reason", "maxlen")], time=eng.now_sec())
            eng.run(eng.enqueue, m)
        else:
            # maxlen without notify disconnects the channel: the call ends (pitfall 2).
            eng.run(self.chan.msg_drop, None, "maxlen")

    def stop(self, replaced: bool = False) -> None:
        if self.finished:
            return
        self.finished = True
        self._accumulate()
        self.write()

    def write(self) -> None:
        if self.written:
            return
        self.written = True
        nbytes = int(self.recorded)
        if self.maxlen:
            nbytes = min(nbytes, self.maxlen)
        self.modules.recordings.append((self.path, nbytes))
        real = self.modules.media_files.resolve(self.path)
        try:
            d = os.path.dirname(real)
            if d:
                os.makedirs(d, exist_ok=True)
            mode = "ab" if self.append and os.path.exists(real) else "wb"
            with open(real, mode) as f:
                low = self.path.lower()
                if low.endswith(".au") and mode == "wb":
                    f.write(struct.pack(">4sIIIII", b".snd", _AU_HEADER, nbytes, 27, 8000, 1))
                    f.write(b"By YATE\x00")
                fill = b"\xd5" if low.endswith((".alaw", ".a", ".au")) else \
                    b"\xff" if low.endswith((".mulaw", ".u")) else b"\x00"
                f.write(fill * nbytes)
        except OSError as e:
            log.warn("Cannot write simulated recording {path}: {error}", path=real,
                     error=str(e))
