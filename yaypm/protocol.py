"""Yate extmodule line protocol: a sans-IO codec.

No sockets, no reactor, no Twisted import: every function takes and returns plain values, so the
codec is testable in a Python shell and reusable by the dispatcher, the simulator and tools.

One immutable record per line kind (see ``yate-extmodule.md`` §4).  ``parse_line(text)`` turns a
line (without its newline) into a record; ``record.encode()`` turns a record back into the exact
line.  Text is ``str``; bytes that are not valid UTF-8 are carried as surrogate escapes
(``bytes.decode("utf-8", "surrogateescape")``), so they survive a round trip byte for byte.

Escaping follows Yate's ``String::msgEscape``/``msgUnescape`` (``engine/String.cpp``): ``%`` is
doubled, ``:`` becomes ``%z``, control characters become ``%`` + (byte + 64), and in parameter
names ``=`` becomes ``%}``.  Decoding is as strict as Yate's own reader: anything Yate would reject
raises :class:`ProtocolError` naming the line.  Encoding makes injection impossible: a value can
never produce an extra field or an extra line, and fields Yate takes raw (install names, setlocal,
output) refuse characters that would break the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Tuple, Union

__all__ = [
    "ProtocolError", "escape", "unescape", "escape_key", "Params",
    "Message", "MessageAnswer", "Install", "InstallReply", "Uninstall", "UninstallReply",
    "Watch", "WatchReply", "Unwatch", "UnwatchReply", "SetLocal", "SetLocalReply", "Output",
    "Debug", "Connect", "Quit", "QuitReply", "ErrorIn", "Record", "parse_line", "parse_bool",
    "TRUE_WORDS", "FALSE_WORDS",
]

#: Parameters: an ordered tuple of ``(key, value)`` pairs.  Repeated keys are kept, in order.  A
#: value of ``None`` is a bare ``key`` segment: in an answer (or a script's message) it asks Yate
#: to delete every parameter of that name.
Params = Tuple[Tuple[str, Optional[str]], ...]

TRUE_WORDS = frozenset(("true", "yes", "on", "enable", "t"))
FALSE_WORDS = frozenset(("false", "no", "off", "disable", "f"))


class ProtocolError(ValueError):
    """A line that Yate (or a correct peer) would not accept; carries the offending line."""

    def __init__(self, line: str, reason: str) -> None:
        super().__init__(line, reason)
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.reason} in line {self.line!r}"


# --------------------------------------------------------------------------------------------
# Escaping
# --------------------------------------------------------------------------------------------

_NEEDS_ESCAPE = re.compile(r"[\x00-\x1f%:]")
_NEEDS_ESCAPE_KEY = re.compile(r"[\x00-\x1f%:=]")
_ESCAPES = {c: "%" + chr(c + 64) for c in range(1, 32)}
_ESCAPES[ord("%")] = "%%"
_ESCAPES[ord(":")] = "%z"
_ESCAPES_KEY = dict(_ESCAPES)
_ESCAPES_KEY[ord("=")] = "%}"
_RAW_CONTROL = re.compile(r"[\x00-\x1f]")

# Fast paths.  Most lines carry a few escapes (``%z`` in addresses and ``handlers=``), so the
# codec works on whole runs of fields with C-level str methods instead of field by field.
# Encoding joins the fields with NUL (which no field may contain) and escapes the run at once.
# Decoding replaces ``%%`` and ``%z`` by two placeholders, U+D800 and U+D801 (lone high
# surrogates: ``surrogateescape`` decoding only yields U+DC80..U+DCFF, and lines holding them
# take the slow path), splits on the raw ':' and restores the placeholders in one pass.
_CONTROL_NOT_NUL = re.compile(r"[\x01-\x1f]")
_ESCAPES_NUL = dict(_ESCAPES)
_ESCAPES_NUL[0] = ":"
_SLOW_LINE = re.compile("[\x00-\x1f\ud800\ud801]")
_CONTROL_ESCAPE = re.compile(r"%([A-Z\[\\\]^_])")


def _control_unescape(m: "re.Match[str]") -> str:
    return chr(ord(m.group(1)) - 64)


def _escape_join(fields: Sequence[str]) -> Optional[str]:
    """escape() each field and join them with ':'; None when a field holds NUL."""
    run = "\x00".join(fields)
    if run.count("\x00") != len(fields) - 1:
        return None
    if _CONTROL_NOT_NUL.search(run) is None:
        return run.replace("%", "%%").replace(":", "%z").replace("\x00", ":")
    return run.translate(_ESCAPES_NUL)


def _split_unescape(run: str) -> Optional[list]:
    """Split ``run`` on raw ':' and unescape every field; None when the slow path must decide
    (raw control characters, '%}', an invalid escape, a lone '%', a placeholder character)."""
    # isprintable() is a quick C test: False for control characters and for surrogates (so
    # for the placeholders), also for some harmless characters, which the regex then clears.
    printable = run.isprintable()
    if "%" not in run:
        if not printable and _RAW_CONTROL.search(run) is not None:
            return None
        return run.split(":")
    if not printable and _SLOW_LINE.search(run) is not None:
        return None
    r = run.replace("%%", "\ud800")
    if "%" in r:
        r = r.replace("%z", "\ud801")
        if "%" in r:
            r = _CONTROL_ESCAPE.sub(_control_unescape, r)
            if "%" in r:
                return None
    return "\x00".join(r.split(":")).replace("\ud800", "%").replace("\ud801", ":") \
        .split("\x00")


def escape(text: str, extra: str = "") -> str:
    """Yate's msgEscape: '%' doubles; ':' and control characters become '%' + chr(c+64).

    ``extra`` lists more characters to escape the same way (``"="`` for parameter names).  NUL
    cannot be represented (Yate would cut the line there), so it raises ``ValueError``.
    """
    if extra:
        if extra == "=":
            if not _NEEDS_ESCAPE_KEY.search(text):
                return text
            if "\x00" in text:
                raise ValueError("NUL cannot be sent to Yate")
            return text.translate(_ESCAPES_KEY)
        table = dict(_ESCAPES)
        for ch in extra:
            table[ord(ch)] = "%" + chr(ord(ch) + 64)
        if "\x00" in text:
            raise ValueError("NUL cannot be sent to Yate")
        return text.translate(table)
    if not _NEEDS_ESCAPE.search(text):
        return text
    if "\x00" in text:
        raise ValueError("NUL cannot be sent to Yate")
    return text.translate(_ESCAPES)


def escape_key(key: str) -> str:
    """Escape a parameter name as Yate does when it encodes one ('=' becomes '%}')."""
    return escape(key, "=")


def unescape(field: str, key: bool = False) -> str:
    """Decode one field with Yate's acceptance rules; raise ValueError where Yate would reject it.

    ``key=True`` also accepts ``%}`` for '=': Yate emits it in parameter names but refuses it
    inbound.  A lone '%' at the end of a field is refused (Yate misreads memory there).
    """
    if "%" not in field:
        if _RAW_CONTROL.search(field):
            raise ValueError("raw control character")
        return field
    out = []
    i = 0
    n = len(field)
    while i < n:
        j = field.find("%", i)
        if j < 0:
            chunk = field[i:]
            i = n
        else:
            chunk = field[i:j]
        if chunk:
            if _RAW_CONTROL.search(chunk):
                raise ValueError("raw control character")
            out.append(chunk)
        if j < 0:
            break
        if j + 1 >= n:
            raise ValueError("lone '%' at end of field")
        nxt = field[j + 1]
        if nxt == "%":
            out.append("%")
        elif "A" <= nxt <= "_":
            out.append(chr(ord(nxt) - 64))
        elif nxt == "z":
            out.append(":")
        elif key and nxt == "}":
            out.append("=")
        else:
            raise ValueError(f"invalid escape %{nxt}")
        i = j + 2
    return "".join(out)


def parse_bool(word: str) -> Optional[bool]:
    """Yate's boolean words (lower case only); None when the word is not one of them."""
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def _check_raw(value: str, what: str, allow_colon: bool = True) -> str:
    """Fields Yate takes raw (not unescaped) must not carry a line break or a field separator."""
    if _RAW_CONTROL.search(value):
        raise ProtocolError(value, f"{what} contains a control character")
    if not allow_colon and ":" in value:
        raise ProtocolError(value, f"{what} contains ':'")
    return value


def _bool_word(value: bool) -> str:
    return "true" if value else "false"


def _param_segments(params: Params) -> Optional[list]:
    """``key=value`` texts for the fast path; None if a key is empty or holds '=', or a value
    is None (a bare key): those take the full path, which refuses or escapes them."""
    try:
        segs = [k + "=" + v for k, v in params]
    except TypeError:
        return None
    run = "\x00".join(segs)
    if run[0] == "=" or "\x00=" in run:             # an empty key
        return None
    if run.count("=") != len(segs):                 # '=' in a value (fine) or in a key
        for k, _ in params:
            if "=" in k:
                return None
    return segs


def _encode_params(params: Params, engine_side: bool) -> str:
    if not params:
        return ""
    segs = _param_segments(params)
    if segs is not None:
        body = _escape_join(segs)
        if body is not None:
            return ":" + body
    parts = []
    for key, value in params:
        if "=" in key and not engine_side:
            # Yate refuses '%}' from scripts and splits at the first '=': such a key can only
            # be mangled, so it is refused here rather than sent.
            raise ProtocolError(key, "parameter name contains '=' (Yate cannot receive it)")
        ekey = escape_key(key)
        if not ekey:
            # An empty key would be an empty segment (skipped) or '=value' (refused by Yate).
            raise ProtocolError(key, "empty parameter name")
        if value is None:
            parts.append(":" + ekey)
        else:
            parts.append(":" + ekey + "=" + escape(value))
    return "".join(parts)


def _decode_params(fields: Sequence[str], line: str, script_side: bool) -> Params:
    out = []
    for seg in fields:
        if not seg:
            continue                     # '::' empty segments are skipped (vector 8)
        key, sep, value = seg.partition("=")
        try:
            k = unescape(key, key=not script_side)
            v = unescape(value) if sep else None
        except ValueError as e:
            raise ProtocolError(line, f"bad parameter {seg!r}: {e}") from None
        if not k:
            raise ProtocolError(line, f"empty parameter name in {seg!r}")
        out.append((k, v))
    return tuple(out)


def _params_from(params: Union[Params, Iterable, dict, None]) -> Params:
    if params is None:
        return ()
    if isinstance(params, dict):
        return tuple((str(k), None if v is None else str(v)) for k, v in params.items())
    return tuple((str(k), None if v is None else str(v)) for k, v in params)


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Message:
    """``%%>message``: a handler call (engine → script) or a dispatch request (script → engine).

    ``time`` is whole seconds since the epoch; ``None`` encodes as an empty field ("now").  An
    empty ``id`` from a script means fire and forget.
    """
    id: str
    time: Optional[int]
    name: str
    retvalue: str = ""
    params: Params = ()

    def encode(self, engine_side: bool = False) -> str:
        time = "" if self.time is None else str(self.time)
        segs = _param_segments(self.params) if self.params else []
        if segs is not None:
            line = _escape_join([self.id, time, self.name, self.retvalue] + segs)
            if line is not None:
                return "%%>message:" + line
        return ("%%>message:" + escape(self.id) + ":" + time + ":" + escape(self.name) + ":"
                + escape(self.retvalue) + _encode_params(self.params, engine_side))


@dataclass(frozen=True, slots=True)
class MessageAnswer:
    """``%%<message``: an answer to a message, or (empty ``id``) a watch notification.

    From a script, ``name=None`` is the minimal answer ``%%<message:<id>:<processed>:`` that
    changes nothing; an empty ``name`` keeps the name; ``retvalue`` always replaces the engine's.
    """
    id: str
    processed: bool
    name: Optional[str] = None
    retvalue: str = ""
    params: Params = ()

    @property
    def is_notification(self) -> bool:
        """True for a watch notification (Yate sends those with an empty id)."""
        return self.id == ""

    def encode(self, engine_side: bool = False) -> str:
        head = "%%<message:" + escape(self.id) + ":" + _bool_word(self.processed) + ":"
        if self.name is None:
            if self.params or self.retvalue:
                raise ProtocolError(self.id, "an answer with parameters needs a name field")
            return head
        segs = _param_segments(self.params) if self.params else []
        if segs is not None:
            tail = _escape_join([self.name, self.retvalue] + segs)
            if tail is not None:
                return head + tail
        return (head + escape(self.name) + ":" + escape(self.retvalue)
                + _encode_params(self.params, engine_side))


@dataclass(frozen=True, slots=True)
class Install:
    """``%%>install:[priority]:name[:filter-name[:filter-value]]``; name is taken raw by Yate."""
    priority: Optional[int]
    name: str
    filter_name: Optional[str] = None
    filter_value: Optional[str] = None

    def encode(self, engine_side: bool = False) -> str:
        prio = "" if self.priority is None else str(self.priority)
        line = "%%>install:" + prio + ":" + _check_raw(self.name, "handler name", False)
        if self.filter_name is not None:
            line += ":" + escape(self.filter_name)
            if self.filter_value is not None:
                line += ":" + escape(self.filter_value)
        return line


@dataclass(frozen=True, slots=True)
class InstallReply:
    """``%%<install:priority:name:success``."""
    priority: int
    name: str
    success: bool

    def encode(self, engine_side: bool = True) -> str:
        return f"%%<install:{self.priority}:{self.name}:{_bool_word(self.success)}"


@dataclass(frozen=True, slots=True)
class Uninstall:
    """``%%>uninstall:name``."""
    name: str

    def encode(self, engine_side: bool = False) -> str:
        return "%%>uninstall:" + _check_raw(self.name, "handler name", False)


@dataclass(frozen=True, slots=True)
class UninstallReply:
    """``%%<uninstall:priority:name:success`` (priority 0 when nothing was installed)."""
    priority: int
    name: str
    success: bool

    def encode(self, engine_side: bool = True) -> str:
        return f"%%<uninstall:{self.priority}:{self.name}:{_bool_word(self.success)}"


@dataclass(frozen=True, slots=True)
class Watch:
    """``%%>watch:name``; an empty name watches every message."""
    name: str

    def encode(self, engine_side: bool = False) -> str:
        return "%%>watch:" + _check_raw(self.name, "watched name", False)


@dataclass(frozen=True, slots=True)
class WatchReply:
    """``%%<watch:name:success``."""
    name: str
    success: bool

    def encode(self, engine_side: bool = True) -> str:
        return f"%%<watch:{self.name}:{_bool_word(self.success)}"


@dataclass(frozen=True, slots=True)
class Unwatch:
    """``%%>unwatch:name``."""
    name: str

    def encode(self, engine_side: bool = False) -> str:
        return "%%>unwatch:" + _check_raw(self.name, "watched name", False)


@dataclass(frozen=True, slots=True)
class UnwatchReply:
    """``%%<unwatch:name:success``."""
    name: str
    success: bool

    def encode(self, engine_side: bool = True) -> str:
        return f"%%<unwatch:{self.name}:{_bool_word(self.success)}"


@dataclass(frozen=True, slots=True)
class SetLocal:
    """``%%>setlocal:name:value``; neither field is unescaped by Yate, an empty value queries."""
    name: str
    value: str = ""

    def encode(self, engine_side: bool = False) -> str:
        if not self.name:
            raise ProtocolError(self.name, "setlocal needs a name")
        return ("%%>setlocal:" + _check_raw(self.name, "setlocal name", False) + ":"
                + _check_raw(self.value, "setlocal value"))


@dataclass(frozen=True, slots=True)
class SetLocalReply:
    """``%%<setlocal:name:value:success``; the value is raw and may itself contain ':'."""
    name: str
    value: str
    success: bool

    def encode(self, engine_side: bool = True) -> str:
        return f"%%<setlocal:{self.name}:{self.value}:{_bool_word(self.success)}"


@dataclass(frozen=True, slots=True)
class Output:
    """``%%>output:text``: a line for Yate's log; not unescaped, so no control characters."""
    text: str

    def encode(self, engine_side: bool = False) -> str:
        return "%%>output:" + _check_raw(self.text, "output text")


@dataclass(frozen=True, slots=True)
class Debug:
    """``%%>debug:level:text``: logged at a Yate debug level; the text is escaped."""
    level: int
    text: str

    def encode(self, engine_side: bool = False) -> str:
        return f"%%>debug:{int(self.level)}:" + escape(self.text)


@dataclass(frozen=True, slots=True)
class Connect:
    """``%%>connect:role[:id[:type]]``: first line on a listener without a preset role."""
    role: str
    id: Optional[str] = None
    type: Optional[str] = None

    def encode(self, engine_side: bool = False) -> str:
        line = "%%>connect:" + _check_raw(self.role, "role", False)
        if self.id is not None:
            line += ":" + escape(self.id)
            if self.type is not None:
                line += ":" + escape(self.type)
        return line


@dataclass(frozen=True, slots=True)
class Quit:
    """``%%>quit``: ask Yate to close the connection."""

    def encode(self, engine_side: bool = False) -> str:
        return "%%>quit"


@dataclass(frozen=True, slots=True)
class QuitReply:
    """``%%<quit``: Yate's answer to ``%%>quit`` before it closes."""

    def encode(self, engine_side: bool = True) -> str:
        return "%%<quit"


@dataclass(frozen=True, slots=True)
class ErrorIn:
    """``Error in: <line>``: Yate refused a line; never answered."""
    line: str

    def encode(self, engine_side: bool = True) -> str:
        return "Error in: " + self.line


Record = Union[Message, MessageAnswer, Install, InstallReply, Uninstall, UninstallReply, Watch,
               WatchReply, Unwatch, UnwatchReply, SetLocal, SetLocalReply, Output, Debug, Connect,
               Quit, QuitReply, ErrorIn]


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

_DIGITS_DEC = re.compile(r"[0-9]+\Z")


def _strtoul(text: str) -> Optional[int]:
    """C strtoul with base 0, whole field: '0x10' is 16, '010' is 8; None when not a number."""
    if _DIGITS_DEC.match(text):
        if len(text) > 1 and text[0] == "0":
            try:
                return int(text, 8)
            except ValueError:
                return None
        return int(text)
    low = text.lower()
    if low.startswith("0x") and len(low) > 2:
        try:
            return int(low, 16)
        except ValueError:
            return None
    return None


def _strtol_prefix(text: str, default: int) -> int:
    """C strtol with base 0 on a prefix: Yate reads what parses and ignores the rest."""
    m = re.match(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if not m:
        return default
    sign, digits = m.groups()
    if digits.lower().startswith("0x"):
        value = int(digits, 16)
    elif digits.startswith("0") and len(digits) > 1:
        value = int(digits, 8)
    else:
        value = int(digits)
    return -value if sign == "-" else value


def _field(value: str, line: str, what: str, key: bool = False) -> str:
    try:
        return unescape(value, key)
    except ValueError as e:
        raise ProtocolError(line, f"bad {what}: {e}") from None


def _params_fast(fields: Sequence[str], line: str) -> Params:
    """Parameters from already unescaped fields (no '%}' was in the line)."""
    pairs = [f.partition("=") for f in fields if f]
    for key, _, _ in pairs:
        if not key:
            raise ProtocolError(line, "empty parameter name")
    return tuple([(k, v) if sep else (k, None) for k, sep, v in pairs])


def _parse_message(line: str, script_side: bool) -> Message:
    fields = _split_unescape(line[11:])
    if fields is not None and len(fields) >= 4:
        raw_time = fields[1]
        if raw_time == "":
            time = None
        else:
            time = _strtoul(raw_time)
            if time is None:
                raise ProtocolError(line, f"bad time field {raw_time!r}")
        return Message(fields[0], time, fields[2], fields[3],
                       _params_fast(fields[4:], line) if len(fields) > 4 else ())
    fields = line[11:].split(":")        # after "%%>message:"
    if len(fields) < 4:
        raise ProtocolError(line, "message needs id, time, name and retvalue fields")
    raw_time = fields[1]
    if raw_time == "":
        time = None
    else:
        time = _strtoul(raw_time)
        if time is None:
            raise ProtocolError(line, f"bad time field {raw_time!r}")
    return Message(_field(fields[0], line, "id"), time, _field(fields[2], line, "name"),
                   _field(fields[3], line, "retvalue"),
                   _decode_params(fields[4:], line, script_side))


def _parse_answer(line: str, script_side: bool) -> MessageAnswer:
    fields = _split_unescape(line[11:])
    if fields is not None and len(fields) >= 4:
        processed = parse_bool(fields[1])
        if processed is not None:
            return MessageAnswer(fields[0], processed, fields[2], fields[3],
                                 _params_fast(fields[4:], line) if len(fields) > 4 else ())
    fields = line[11:].split(":")        # after "%%<message:"
    if len(fields) < 2:
        raise ProtocolError(line, "answer needs id and processed fields")
    word = fields[1].lstrip(" \t") if script_side else fields[1]
    processed = parse_bool(word)
    if processed is None:
        raise ProtocolError(line, f"bad processed flag {fields[1]!r}")
    ident = _field(fields[0], line, "id")
    if len(fields) == 2:
        if script_side:
            raise ProtocolError(line, "answer needs a ':' after the processed flag")
        return MessageAnswer(ident, processed, None)
    if len(fields) == 3:
        if fields[2] == "":
            return MessageAnswer(ident, processed, None)
        if script_side:
            raise ProtocolError(line, "answer needs a ':' after the name")
        # Yate itself never sends this shape; read it leniently as a name without retvalue.
        return MessageAnswer(ident, processed, _field(fields[2], line, "name"), "")
    return MessageAnswer(ident, processed, _field(fields[2], line, "name"),
                         _field(fields[3], line, "retvalue"),
                         _decode_params(fields[4:], line, script_side))


def _split_reply(line: str, skip: int, what: str) -> Tuple[str, str, str]:
    """Replies whose middle field is raw: first field, middle (may hold ':'), last field."""
    rest = line[skip:]
    first, sep, tail = rest.partition(":")
    middle, sep2, last = tail.rpartition(":")
    if not sep or not sep2:
        raise ProtocolError(line, f"malformed {what} reply")
    return first, middle, last


def _reply_bool(word: str, line: str) -> bool:
    value = parse_bool(word)
    if value is None:
        raise ProtocolError(line, f"bad success flag {word!r}")
    return value


def _int(text: str, line: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ProtocolError(line, f"bad {what} {text!r}") from None


_ENGINE_ONLY = ("%%<install:", "%%<uninstall:", "%%<watch:", "%%<unwatch:", "%%<setlocal:",
                "Error in: ")


def parse_line(line: str, *, script_side: bool = False) -> Record:
    """Parse one line (without its newline) into a record; raise ProtocolError if malformed.

    ``script_side=True`` reads the line as Yate reads a script's line: stricter escaping (no
    ``%}``), tolerant boolean words with leading blanks in answers, and the minimal-answer rules
    of yate-extmodule.md §5.2.  The default reads what the engine sends.
    """
    if line.endswith("\r"):
        line = line[:-1]
    if "\x00" in line:
        # Yate's reader ends a line at NUL (vector 22): this is two lines, not one.
        raise ProtocolError(line, "NUL inside a line")
    parser = _PARSERS.get(line[:line.find(":") + 1])        # the keyword, one dict lookup
    if parser is not None:
        return parser(line, script_side)
    return _parse_other(line, script_side)


def _parse_watch_reply(line: str, script_side: bool) -> Record:
    if script_side:
        raise ProtocolError(line, "a reply keyword cannot be sent by a script")
    skip = 9 if line[3] == "w" else 11
    name, sep, ok = line[skip:].rpartition(":")
    if not sep:
        raise ProtocolError(line, "malformed watch reply")
    return (WatchReply if skip == 9 else UnwatchReply)(name, _reply_bool(ok, line))


def _parse_setlocal_reply(line: str, script_side: bool) -> Record:
    if script_side:
        raise ProtocolError(line, "a reply keyword cannot be sent by a script")
    name, value, ok = _split_reply(line, 12, "setlocal")
    return SetLocalReply(name, value, _reply_bool(ok, line))


def _parse_setlocal(line: str, script_side: bool) -> Record:
    name, sep, value = line[12:].partition(":")
    if not sep or not name:
        raise ProtocolError(line, "setlocal needs a name and a ':'")
    return SetLocal(name, value)


_PARSERS = {
    "%%>message:": _parse_message,
    "%%<message:": _parse_answer,
    "%%<watch:": _parse_watch_reply,
    "%%<unwatch:": _parse_watch_reply,
    "%%<setlocal:": _parse_setlocal_reply,
    "%%>setlocal:": _parse_setlocal,
    "%%>watch:": lambda line, script_side: Watch(line[9:]),
    "%%>unwatch:": lambda line, script_side: Unwatch(line[11:]),
}


def _parse_other(line: str, script_side: bool) -> Record:
    """The remaining, rarer line kinds (and every malformed line)."""
    if line.startswith("%%>message:"):
        return _parse_message(line, script_side)
    if line.startswith("%%<message:"):
        return _parse_answer(line, script_side)
    if script_side and (line.startswith(_ENGINE_ONLY) or line == "%%<quit"):
        # Replies are Yate's to send: from a script they get "Error in" (trace A3).
        raise ProtocolError(line, "a reply keyword cannot be sent by a script")
    if line.startswith("%%<install:") or line.startswith("%%<uninstall:"):
        skip = 11 if line[3] == "i" else 13
        prio, name, ok = _split_reply(line, skip, line[3:skip - 1])
        cls = InstallReply if skip == 11 else UninstallReply
        return cls(_int(prio, line, "priority"), name, _reply_bool(ok, line))
    if line.startswith("%%<watch:") or line.startswith("%%<unwatch:"):
        skip = 9 if line[3] == "w" else 11
        name, _, ok = line[skip:].rpartition(":")
        if not _:
            raise ProtocolError(line, "malformed watch reply")
        cls = WatchReply if skip == 9 else UnwatchReply
        return cls(name, _reply_bool(ok, line))
    if line.startswith("%%<setlocal:"):
        name, value, ok = _split_reply(line, 12, "setlocal")
        return SetLocalReply(name, value, _reply_bool(ok, line))
    if line.startswith("%%>install:"):
        prio_text, sep, rest = line[11:].partition(":")
        if not sep:
            raise ProtocolError(line, "install needs a priority field and a name")
        name, _, filt = rest.partition(":")
        priority = None if prio_text == "" else _strtol_prefix(prio_text, 100)
        fname = fvalue = None
        if _:
            fn, sep3, fv = filt.partition(":")
            try:
                fname = unescape(fn)
                fvalue = unescape(fv) if sep3 else None
            except ValueError as e:
                raise ProtocolError(line, f"bad filter: {e}") from None
        return Install(priority, name, fname, fvalue)
    if line.startswith("%%>uninstall:"):
        return Uninstall(line[13:])
    if line.startswith("%%>watch:"):
        return Watch(line[9:])
    if line.startswith("%%>unwatch:"):
        return Unwatch(line[11:])
    if line.startswith("%%>setlocal:"):
        name, sep, value = line[12:].partition(":")
        if not sep or not name:
            raise ProtocolError(line, "setlocal needs a name and a ':'")
        return SetLocal(name, value)
    if line.startswith("%%>output:"):
        return Output(line[10:])
    if line.startswith("%%>debug:"):
        level, sep, text = line[9:].partition(":")
        if not sep or not level:
            raise ProtocolError(line, "debug needs a level and a ':'")
        lv = _strtol_prefix(level, 10)
        try:
            return Debug(lv, unescape(text))
        except ValueError as e:
            raise ProtocolError(line, f"bad debug text: {e}") from None
    if line.startswith("%%>connect:"):
        parts = line[11:].split(":")
        role = parts[0]
        ident = _field(parts[1], line, "id") if len(parts) > 1 else None
        typ = _field(parts[2], line, "type") if len(parts) > 2 else None
        return Connect(role, ident, typ)
    if line == "%%>quit":
        return Quit()
    if line == "%%<quit":
        return QuitReply()
    if line.startswith("Error in: "):
        return ErrorIn(line[10:])
    raise ProtocolError(line, "unknown line kind")
