"""mod_utils: numbers, strings, ids, count prompts (`utils.*`, spec §2.9)."""
from __future__ import annotations

import hashlib
import json
import random
import uuid
from typing import Any

from ..runtime import DSMException
from ..values import resolve, var_name
from . import DSMModule, action, condition, register_module
from .core import media_call


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else repr(x)


def count_files(cnt: int, basedir: str, suffix: str, right: bool) -> list[str]:
    """Files to say number `cnt` (SEMS utils_get_count_files): 0-20 one file, then powers of
    ten, then tens and units (`x<units>` first for left-to-right languages such as German)."""
    if cnt <= 20:
        return [f"{basedir}{cnt}{suffix}"]
    res = []
    for i in range(9, 1, -1):
        q, cnt = divmod(cnt, 10 ** i)
        if q:
            res.append(f"{basedir}{q * 10 ** i}{suffix}")
    if not cnt:
        return res
    if cnt <= 20 or cnt % 10 == 0:
        return res + [f"{basedir}{cnt}{suffix}"]
    tens, units = divmod(cnt, 10)
    pair = [f"{basedir}{tens * 10}{suffix}", f"{basedir}x{units}{suffix}"]
    return res + (pair if right else pair[::-1])


def _set_json(s: Any, prefix: str, value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _set_json(s, f"{prefix}.{k}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _set_json(s, f"{prefix}[{i}]", v)
    elif value is None:
        s.var[prefix] = ""
    elif isinstance(value, bool):
        s.var[prefix] = "true" if value else "false"
    else:
        s.var[prefix] = str(value)


@register_module
class UtilsModule(DSMModule):
    """`import(mod_utils)`."""

    name = "mod_utils"

    def __init__(self, engine: Any = None) -> None:
        super().__init__(engine)
        self.random = random.Random()

    @action("utils.getNewId", arity=(1, 1))
    def get_new_id(self, s: Any, name: str = "") -> None:
        s.var[resolve(s, name) if name.startswith("$") else var_name(name)] = str(uuid.uuid4())

    @action("utils.rand", split=",", arity=(1, 2))
    def rand(self, s: Any, name: str = "", modulo: str = "") -> None:
        m = resolve(s, modulo) if modulo else ""
        n = resolve(s, name) if name.startswith("$") else var_name(name)
        mod = int(m) if m.isdigit() else 0
        v = self.random.randrange(2 ** 31)
        s.var[n] = str(v % mod if mod else v)

    @action("utils.srand", arity=(0, 1))
    def srand(self, s: Any, seed: str = "") -> None:
        self.random.seed(resolve(s, seed) if seed else None)

    def _arith(self, s: Any, name: str, value: str, op: Any) -> None:
        a = _num(resolve(s, name))
        b = _num(resolve(s, value))
        s.var[var_name(name)] = _fmt(op(a, b))

    @action("utils.add", split=",", arity=(2, 2))
    def add(self, s: Any, name: str = "", value: str = "") -> None:
        self._arith(s, name, value, lambda a, b: a + b)

    @action("utils.sub", split=",", arity=(2, 2))
    def sub(self, s: Any, name: str = "", value: str = "") -> None:
        self._arith(s, name, value, lambda a, b: a - b)

    @action("utils.mul", split=",", arity=(2, 2))
    def mul(self, s: Any, name: str = "", value: str = "") -> None:
        self._arith(s, name, value, lambda a, b: a * b)

    @action("utils.int", split=",", arity=(2, 2))
    def int_(self, s: Any, name: str = "", value: str = "") -> None:
        s.var[var_name(name)] = str(int(_num(resolve(s, value))))

    @action("utils.md5", split=",", arity=(2, 2))
    def md5(self, s: Any, name: str = "", value: str = "") -> None:
        s.var[var_name(name)] = hashlib.md5(resolve(s, value).encode()).hexdigest()

    @action("utils.replace", split=",", arity=(2, 2))
    def replace(self, s: Any, name: str = "", spec: str = "") -> None:
        """`$name` with every `search` replaced by `repl` (`search=>repl`, `$vars` allowed)."""
        parts = spec.split("=>")
        if len(parts) != 2:
            s.set_errno("arg", f"could not parse search=>replace '{spec}'")
            return
        search = resolve(s, parts[0]) if parts[0].startswith("$") else parts[0]
        if not search:
            s.set_errno("arg", f"search var '{parts[0]}' value is empty")
            return
        repl = resolve(s, parts[1]) if parts[1].startswith("$") else parts[1]
        s.var[var_name(name)] = resolve(s, name).replace(search, repl)

    @action("utils.splitString", split=",", arity=(1, 2))
    def split_string(self, s: Any, name: str = "", delim: str = "") -> None:
        text = resolve(s, name)
        d = resolve(s, delim)
        n = var_name(name)
        items = list(text) if not d else text.split(d)
        for i, item in enumerate(items):
            s.var[f"{n}[{i}]"] = item

    @action("utils.splitStringCR", split=",", arity=(1, 2))
    def split_string_cr(self, s: Any, name: str = "", dst: str = "") -> None:
        text = resolve(s, name)
        n = var_name(dst or name)
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for i, line in enumerate(lines):
            s.var[f"{n}[{i}]"] = line

    @action("utils.decodeJson", split=",", arity=(2, 2))
    def decode_json(self, s: Any, text: str = "", name: str = "") -> None:
        if not name:
            s.set_errno("arg", "struct name is empty")
            return
        try:
            value = json.loads(resolve(s, text))
        except ValueError:
            s.set_errno("arg", "failed to decode json string")
            return
        _set_json(s, var_name(name), value)

    @action("utils.escapeCRLF", arity=(1, 1))
    def escape_crlf(self, s: Any, name: str = "") -> None:
        n = var_name(name)
        s.var[n] = s.var.get(n, "").replace("\r\n", "\\r\\n")

    @action("utils.unescapeCRLF", arity=(1, 1))
    def unescape_crlf(self, s: Any, name: str = "") -> None:
        n = var_name(name)
        s.var[n] = s.var.get(n, "").replace("\\r\\n", "\r\n")

    def _count(self, s: Any, cnt: str, basedir: str, suffix: str, right: bool,
               play: bool) -> None:
        c = resolve(s, cnt)
        if not c.isdigit():
            s.set_errno("arg", f"could not parse count '{c}'")
            return
        files = count_files(int(c), resolve(s, basedir), suffix, right)
        if play:
            for f in files:
                media_call(s, s.backend.play, f, False, False)
        else:
            for i, f in enumerate(files):
                s.var[f"count_file[{i}]"] = f
        s.set_errno("")

    @action("utils.playCountRight", split=",", arity=(1, 2))
    def play_count_right(self, s: Any, cnt: str = "", basedir: str = "") -> None:
        self._count(s, cnt, basedir, ".wav", True, True)

    @action("utils.playCountLeft", split=",", arity=(1, 2))
    def play_count_left(self, s: Any, cnt: str = "", basedir: str = "") -> None:
        self._count(s, cnt, basedir, ".wav", False, True)

    @action("utils.getCountRight", split=",", arity=(1, 2))
    def get_count_right(self, s: Any, cnt: str = "", basedir: str = "") -> None:
        self._count(s, cnt, basedir, ".wav", True, False)

    @action("utils.getCountLeft", split=",", arity=(1, 2))
    def get_count_left(self, s: Any, cnt: str = "", basedir: str = "") -> None:
        self._count(s, cnt, basedir, ".wav", False, False)

    @action("utils.getCountRightNoSuffix", split=",", arity=(1, 2))
    def get_count_right_ns(self, s: Any, cnt: str = "", basedir: str = "") -> None:
        self._count(s, cnt, basedir, "", True, False)

    @action("utils.getCountLeftNoSuffix", split=",", arity=(1, 2))
    def get_count_left_ns(self, s: Any, cnt: str = "", basedir: str = "") -> None:
        self._count(s, cnt, basedir, "", False, False)

    @action("utils.spell", split=",", arity=(1, 2))
    def spell(self, s: Any, word: str = "", basedir: str = "") -> None:
        """Play `<basedir><char>.wav` for each character of the word."""
        d = resolve(s, basedir)
        for ch in resolve(s, word):
            media_call(s, s.backend.play, f"{d}{ch}.wav", False, False)

    @action("utils.playRingTone", split=",", arity=(1, 2))
    def play_ring_tone(self, s: Any, length: str = "", params: str = "") -> None:
        """Ring tone of `length` ms (0 = endless) with optional `on, off, f, f2`."""
        try:
            ln = int(resolve(s, length))
        except ValueError:
            ln = 0
        vals = [2000, 4000, 440, 480]
        for i, p in enumerate(params.split(",")[:4] if params else ()):
            v = resolve(s, p.strip(' \t"'))
            if v.lstrip("-").isdigit():
                vals[i] = int(v)
        media_call(s, s.backend.play_ringtone, ln, *vals, False)

    @condition("utils.isInList", split=",", arity=(2, 2))
    def is_in_list(self, s: Any, key: str = "", items: str = "") -> bool:
        k = resolve(s, key)
        return any(k == i.strip(" \t") for i in resolve(s, items).split(","))

    @condition("utils.startsWith", split=",", arity=(2, 2))
    def starts_with(self, s: Any, text: str = "", prefix: str = "") -> bool:
        return resolve(s, text).startswith(resolve(s, prefix))


_ = DSMException
