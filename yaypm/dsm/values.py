"""DSM argument conventions and value resolution (spec §1.4, §2.2, §2.6).

Arguments are split once, when a diagram is compiled (`param_1p`, `split_2p`, `split_list`);
values are resolved per execution: `resolve` (R), `interpolate` (I), `evaluate` (E). Functions
take a `Scope`-like object with `var` (dict), `params` (dict or None) and `select(name)`.
"""
from __future__ import annotations

from typing import Any, Protocol

_BLANKS = " \t"


class Scope(Protocol):
    """What value resolution reads: variables, the current event's params, selects."""

    var: dict[str, str]
    params: dict[str, str] | None

    def select(self, name: str) -> str: ...


# -- splitting (compile time) ---------------------------------------------------------------

def param_1p(arg: str) -> str:
    """1P: trim blanks; then strip all leading/trailing `"` (or `'` if it starts with one)."""
    s = arg.strip(_BLANKS)
    if s.startswith('"'):
        return s.strip('"')
    if s.startswith("'"):
        return s.strip("'")
    return s


def _unquote_part(part: str) -> str:
    p = part.strip(_BLANKS)
    if p and p[0] in "\"'":
        q = p[0]
        p = p.strip(q).replace("\\" + q, q)
    return p


def split_2p(arg: str, sep: str) -> tuple[str, str, bool]:
    """2P: split at the first `sep` outside quotes; returns (first, second, found).

    Quotes (either kind) toggle quoting; a backslash does not protect a quote here. Each part is
    trimmed and, if quoted, unquoted (embedded escaped quotes lose their backslash).
    """
    quoted = False
    for i, c in enumerate(arg):
        if c in "\"'":
            quoted = not quoted
        elif c == sep and not quoted:
            return _unquote_part(arg[:i]), _unquote_part(arg[i + 1:]), True
    return _unquote_part(arg), "", False


def split_list(arg: str) -> list[str]:
    """List convention: split at every comma, quotes ignored, parts trimmed."""
    if not arg.strip():
        return []
    return [p.strip(_BLANKS) for p in arg.split(",")]


def var_name(name: str) -> str:
    """A variable *name* argument: leading `$` optional, not resolved."""
    name = name.strip(_BLANKS)
    return name[1:] if name.startswith("$") else name


# -- resolution (run time) ------------------------------------------------------------------

def resolve(scope: Scope, s: str) -> str:
    """R: the whole text is one value: `$var`, `#param`, `@select`, else literal minus `"`."""
    if not s:
        return s
    c = s[0]
    if c == "$":
        if s[1:2] == "$":
            return "$"
        return scope.var.get(s[1:], "")
    if c == "#":
        if s[1:2] == "#":
            return "#"
        params = scope.params
        if params is None:
            return ""
        return params.get(s[1:], "")
    if c == "@":
        if s[1:2] == "@" or len(s) < 2:
            return "@"
        return scope.select(s[1:])
    return s.strip('"')


_NAME_END = " ,()[]$#@\t;:'\""


def interpolate(scope: Scope, q: str) -> str:
    """I: replace `$x`, `#x`, `@x` (and `$(x)`, `$"x"`, `$'x'`) inside text (SEMS replaceParams).

    Doubled sigils give one literal sigil (except at the very start), `\\$` is left alone,
    unset variables and absent params vanish, `#x` stays verbatim if the event has no params,
    and inserted text is not rescanned.
    """
    res = q
    pos = 0
    while pos < len(res):
        start = -1
        for i in range(pos, len(res)):
            if res[i] in "$#@":
                start = i
                break
        if start < 0:
            break
        pos = start + 1
        if start and pos < len(res) and res[start] == res[pos]:
            res = res[:start] + res[start + 1:]
            continue
        if start and res[start - 1] == "\\":
            continue
        if pos < len(res) and res[pos] in "(\"'":
            end = _find_any(res, start + 2)
        else:
            end = _find_any(res, start + 1)
        key = res[start + 1:end]
        if len(key) > 2 and end < len(res) and (
                (key[0] == "(" and res[end] == ")") or (key[0] in "\"'" and key[0] == res[end])):
            key = key[1:]
            end += 1
        sigil = res[start]
        if sigil == "$":
            if key in scope.var:
                val = scope.var[key]
                res = res[:start] + val + res[end:]
                pos = start + len(val)
            else:
                res = res[:start] + res[end:]
                pos = start
        elif sigil == "#":
            params = scope.params
            if params is not None:
                val = params.get(key)
                if val is None:
                    res = res[:start] + res[end:]
                    pos = start
                else:
                    res = res[:start] + val + res[end:]
                    pos = start + len(val)
        else:
            val = resolve(scope, "@" + key)
            res = res[:start] + val + res[end:]
            pos = start + len(val)
    return res


def _find_any(s: str, start: int) -> int:
    for i in range(start, len(s)):
        if s[i] in _NAME_END:
            return i
    return len(s)


def _is_number(s: str) -> bool:
    return bool(s) and (s.isdigit() or (s[0] in "+-" and s[1:].isdigit()))


def evaluate(scope: Scope, text: str) -> str:
    """E: blanks removed, split at the first `-` (else `+`), integer result if both sides are
    numbers, else the whole text resolved with R (so `a-b-c` is `a-(b-c)`)."""
    s = text.replace(" ", "")
    if not s:
        return s
    p = s.find("-")
    if p < 0:
        p = s.find("+")
    if p >= 0:
        a = evaluate(scope, s[:p])
        b = evaluate(scope, s[p + 1:])
        if a.isdigit() and b.isdigit():
            return str(int(a) - int(b) if s[p] == "-" else int(a) + int(b))
    return resolve(scope, s)


# -- test() expressions ---------------------------------------------------------------------

def parse_test(expr: str) -> tuple[str, str, str] | None:
    """Split `lhs OP rhs` searching `==`, `!=`, `<`, `>` in that order in the raw text.

    Returns (lhs, op, rhs) trimmed, ("", "", "") for an empty expression (always true), or None
    when no operator is found (SEMS: logged and never true; yaypm's checker makes it an error).
    """
    e = expr.strip(_BLANKS)
    if not e:
        return ("", "", "")
    for op in ("==", "!=", "<", ">"):
        i = e.find(op)
        if i >= 0:
            return e[:i].strip(_BLANKS), op, e[i + len(op):].strip(_BLANKS)
    return None


def _operand(scope: Scope, side: str) -> str:
    if len(side) > 5 and side.startswith("len(") and side.endswith(")"):
        return str(len(resolve(scope, side[4:-1])))     # fixed on both sides (⚑D8)
    return resolve(scope, side)


def _to_int(s: str) -> int | None:
    if s == "":
        return 0
    t = s.strip(" \t\n")
    try:
        return int(t, 10) if t == s.lstrip(" \t\n") else None
    except ValueError:
        return None


def eval_test(scope: Scope, test: tuple[str, str, str]) -> bool:
    """Evaluate a parsed test(): `==` with `*` prefix wildcard on the right, `<`/`>` integer
    when both sides are base-10 integers (empty = 0), else byte-wise."""
    lhs, op, rhs = test
    if not op:
        return True
    if op == "never":
        return False
    left = _operand(scope, lhs)
    right = _operand(scope, rhs)
    if op == "==":
        star = right.find("*")
        if star < 0:
            return left == right
        return len(left) >= star and left[:star] == right[:star]
    if op == "!=":
        return left != right
    li, ri = _to_int(left), _to_int(right)
    if li is not None and ri is not None:
        return li < ri if op == "<" else li > ri
    lb, rb = left.encode(), right.encode()
    return lb < rb if op == "<" else lb > rb


def truthy(value: Any) -> bool:
    """DSM booleans: "true" is true, anything else false."""
    return value == "true"
