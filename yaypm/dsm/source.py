"""Reading DSM source text: the line filter, `#include`, and DSM's tokenizer (spec §1.1, §1.2).

DSM's tokenizer cannot be expressed as lark terminals: a token runs to whitespace or one of
``; { } [ ]`` except that quoted runs and balanced ``( … )`` runs swallow blanks, newlines and
delimiters, and a token that *starts* with a quote loses its first and last character. So it is
written by hand here and handed to lark as a custom lexer (see parser.py); the grammar only sees
classified tokens.
"""
from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field

from lark import Token

from .errors import DSMSyntaxError
from .model import Pos

_WSP = " \t\r\n"
_SNT = ";{}[]"

#: Unquoted words that always get their own token type (spec §1.3: keywords in every context,
#: plus the punctuation words of transitions and blocks).
KEYWORDS = {
    "function": "FUNCTION",
    "initial": "INITIAL",
    "state": "STATE",
    "transition": "TRANSITION",
    "enter": "ENTER",
    "exit": "EXIT",
    "-": "DASH",
    "/": "SLASH",
    "-/": "DASHSLASH",
    "->": "ARROW",
    "-->": "ARROW",
    "not": "NOT",
    "exception": "EXCEPTION",
    "if": "IF",
    "else": "ELSE",
}
_SINGLE = {";": "SEMI", "{": "LBRACE", "}": "RBRACE", "[": "LBRACK", "]": "RBRACK"}


@dataclass
class Source:
    """Filtered text of one diagram with includes expanded, and a map back to original lines."""

    name: str
    text: str = ""
    _starts: list[int] = field(default_factory=list)
    _origins: list[tuple[str, int, tuple[tuple[str, int], ...], str]] = field(default_factory=list)

    def add_line(self, file: str, lineno: int, chain: tuple[tuple[str, int], ...], line: str) -> None:
        self._starts.append(len(self.text))
        self._origins.append((file, lineno, chain, line))
        self.text += line if line.endswith("\n") else line + "\n"

    def pos(self, offset: int) -> Pos:
        """Position in the original file of character `offset` of the filtered text."""
        if not self._starts:
            return Pos(self.name, 1, 1)
        i = max(bisect.bisect_right(self._starts, offset) - 1, 0)
        file, lineno, chain, _ = self._origins[i]
        return Pos(file, lineno, offset - self._starts[i] + 1, chain)

    def line_text(self, offset: int) -> str:
        if not self._starts:
            return ""
        i = max(bisect.bisect_right(self._starts, offset) - 1, 0)
        return self._origins[i][3]

    def end_offset(self) -> int:
        return max(len(self.text) - 1, 0)

    def error(self, message: str, offset: int, expected: str = "") -> DSMSyntaxError:
        return DSMSyntaxError(message, self.pos(offset), self.line_text(offset), expected)


def _resolve_include(target: str, load_path: str) -> str | None:
    path = target if os.path.isabs(target) else os.path.join(load_path, target)
    if os.path.exists(path):
        return path
    if os.path.exists(path + ".dsm"):
        return path + ".dsm"
    return None


def read_source(path: str, load_path: str | None = None, name: str | None = None) -> Source:
    """Read `path`, drop comment lines, expand `#include` lines; raise DSMSyntaxError on a bad
    include (missing, empty, or a cycle, shown as the chain of files)."""
    src = Source(name or os.path.splitext(os.path.basename(path))[0])
    if load_path is None:
        load_path = os.path.dirname(path) or "."
    _read_into(src, path, load_path, (), [])
    return src


def source_from_text(text: str, file: str = "<string>", load_path: str = ".") -> Source:
    """Like read_source, for text already in memory (tests, `dsm check -`)."""
    src = Source(os.path.splitext(os.path.basename(file))[0])
    _filter_lines(src, text, file, load_path, (), [os.path.abspath(file)])
    return src


def _read_into(src: Source, path: str, load_path: str, chain: tuple, stack: list[str]) -> None:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    _filter_lines(src, text, path, load_path, chain, stack + [os.path.realpath(path)])


def _filter_lines(src: Source, text: str, file: str, load_path: str, chain: tuple,
                  stack: list[str]) -> None:
    for lineno, line in enumerate(text.splitlines(keepends=True), 1):
        stripped = line.lstrip(" \t")
        if stripped.startswith("--"):
            continue
        if stripped.startswith("#"):
            if not stripped.startswith("#include"):
                continue
            _include(src, stripped[len("#include"):], file, lineno, line, load_path, chain, stack)
            continue
        src.add_line(file, lineno, chain, line)


def _include(src: Source, rest: str, file: str, lineno: int, line: str, load_path: str,
             chain: tuple, stack: list[str]) -> None:
    def fail(msg: str) -> DSMSyntaxError:
        col = len(line) - len(line.lstrip(" \t")) + 1
        return DSMSyntaxError(msg, Pos(file, lineno, col, chain), line)

    target = rest.strip(" \t\r\n\"'")
    if not target:
        raise fail("#include needs a file or directory name")
    path = _resolve_include(target, load_path)
    if path is None:
        raise fail(f"included file '{target}' not found (relative to load path '{load_path}')")
    new_chain = chain + ((file, lineno),)
    nested_load_path = os.path.dirname(path) if os.path.isabs(target) else load_path
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path)
                       if f.endswith(".dsm") and os.path.isfile(os.path.join(path, f)))
        nested_load_path = path if os.path.isabs(target) else load_path
    else:
        files = [path]
    for f in files:
        real = os.path.realpath(f)
        if real in stack:
            cycle = " -> ".join(os.path.basename(p) for p in stack[stack.index(real):] + [real])
            raise fail(f"#include cycle: {cycle}")
        _read_into(src, f, nested_load_path, new_chain, stack)


def tokenize(src: Source) -> list[Token]:
    """Split the filtered text into classified lark Tokens (`start_pos` = offset in src.text).

    Raises DSMSyntaxError for an unterminated quote or parenthesis (at the place it opened) and
    for end-of-line comments, which DSM does not have (spec §1.1).
    """
    text = src.text
    n = len(text)
    pos = 0
    out: list[Token] = []
    while True:
        while pos < n and text[pos] in _WSP:
            pos += 1
        if pos >= n:
            return out
        start = pos
        ch = text[pos]
        if ch in _SNT:
            out.append(_token(src, _SINGLE[ch], ch, start))
            pos += 1
            continue
        p = pos
        while p < n and text[p] not in _WSP and text[p] not in _SNT:
            c = text[p]
            if c == '"' or c == "'":
                p = _skip_quote(src, text, p)
            elif c == "(":
                p = _skip_parens(src, text, p)
            else:
                p += 1
        raw = text[start:p]
        pos = p
        if raw[0] in "\"'":
            out.append(_token(src, "WORD", raw[1:-1], start, quoted=True))
            continue
        if raw.startswith("--") and raw != "-->" or raw.startswith("/*") or raw.startswith("//"):
            raise src.error("comments must stand on their own line (a line starting with '--' "
                            "or '#'); DSM has no end-of-line or /* */ comments", start)
        if raw.startswith("import") and len(raw) > 6:
            out.append(_token(src, "IMPORT", raw, start))
            continue
        if raw.startswith("for") and (len(raw) == 3 or raw[3] == "("):
            out.append(_token(src, "FOR", raw, start))
            continue
        out.append(_token(src, KEYWORDS.get(raw, "WORD"), raw, start))


def _token(src: Source, kind: str, value: str, offset: int, quoted: bool = False) -> Token:
    p = src.pos(offset)
    tok = Token(kind, value, start_pos=offset, line=p.line, column=p.column)
    if quoted:
        tok.type = "WORD"
    return tok


def _skip_quote(src: Source, text: str, p: int) -> int:
    """Return the index just after the quote closing the one at `p` (backslash-escapes kept)."""
    q = text[p]
    i = p + 1
    n = len(text)
    while i < n:
        if text[i] == q and text[i - 1] != "\\":
            return i + 1
        i += 1
    raise src.error(f"unterminated {q} quote: it swallows the rest of the file", p)


def _skip_parens(src: Source, text: str, p: int) -> int:
    """Return the index just after the ')' matching the '(' at `p` (quotes honoured)."""
    depth = 0
    i = p
    n = len(text)
    while i < n:
        c = text[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        elif c in "\"'":
            j = i + 1
            while j < n and not (text[j] == c and text[j - 1] != "\\"):
                j += 1
            if j >= n:
                raise src.error(f"unterminated {c} quote inside parentheses", i)
            i = j
        i += 1
    raise src.error("unterminated '(': it swallows the rest of the file", p)
