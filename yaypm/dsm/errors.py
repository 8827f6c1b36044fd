"""Errors raised while reading DSM scripts and configuration."""
from __future__ import annotations

from .model import Pos


class DSMSyntaxError(Exception):
    """A script cannot be read: carries the position, the offending line and what was expected.

    `str()` gives the full report: ``file:line:col: message``, the source line, a caret under
    the column, and the include chain; the whole file is refused (no partial diagram).
    """

    def __init__(self, message: str, pos: Pos, line_text: str = "", expected: str = "") -> None:
        self.message = message
        self.pos = pos
        self.line_text = line_text
        self.expected = expected
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.pos.describe()}: error: {self.message}"
        if self.expected:
            head += f" (expected {self.expected})"
        if not self.line_text:
            return head
        line = self.line_text.rstrip("\n").expandtabs(1)
        caret = " " * max(self.pos.column - 1, 0) + "^"
        return f"{head}\n    {line}\n    {caret}"


class DSMConfigError(Exception):
    """A configuration file is malformed or names something missing (file, line and reason)."""

    def __init__(self, message: str, file: str = "", line: int = 0) -> None:
        self.message = message
        self.file = file
        self.line = line
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(where + message)


class DSMLoadError(Exception):
    """A diagram or bundle failed to load: every problem found, each with its position."""

    def __init__(self, problems: list) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
