"""quizconnect's settings: one ``quizconnect.conf`` for both versions.

The file is read as INI (``configparser``, section ``[quizconnect]``).  A file without any
section header is read as if it were all ``[quizconnect]``: that is the SEMS ``key=value``
form, so the *same* file is also a DSM app bundle whose keys the DSM scripts read as
``$config.<key>`` (the shipped ``dsm/quizconnect.conf`` is such a file).  Keys the Python
version does not know (``diag_path``, ``load_diags``...) are ignored by it, and the other way
round.

==============================  =========================================================  =========
key                             meaning                                                    default
==============================  =========================================================  =========
``number``                      called numbers handled, comma-separated: an exact number,  ``*``
                                ``^regex`` (matching the whole number) or ``prefix*``;
                                ``*`` = every number.  The same syntax as the DSM
                                adapter's ``number`` key.
``only_numbers_with_callees``   ``yes``: a number without callees is left to Yate's        ``yes``
                                other routers (``call.route`` unhandled; Yate answers 404
                                unless regexroute & co. route it); ``no``: quizconnect
                                claims every number of ``number`` and answers 404 itself.
                                Python version only (the DSM version always claims).
``db_url``                      ``sqlite:///file.db``, ``mysql://u:p@host/db``,             ``sqlite:///quizconnect.db``
                                ``postgresql://u:p@host/db``
``prompt_path``                 folder of ``welcome_caller.au``, ``welcome_callee.au``,    shipped prompts
                                ``sorry_pin_wrong.au``, ``pin_goodbye.au``
``outbound_domain``             host[:port] the callees are called at                     ``127.0.0.1:5080``
``target``                      callto template of a callee leg (``{callee}``,            ``sip/sip:{callee}@{outbound_domain}``
                                ``{outbound_domain}``, ``{called}``, ``{caller}``)
``caller_id``                   caller (From user) of the callee legs                     ``quizconnect``
``ring_timeout``                seconds a callee may ring                                 ``30``
``pin_timeout``                 seconds for the first key after a prompt                  ``15``
``interdigit_timeout``          seconds between keys                                      ``5``
``attempts``                    PIN attempts per callee before it is hung up              ``3``
``overall_timeout``             seconds until somebody must have won (then 480)           ``60``
``connect``                     ``bridge`` (chan.connect, trace D1) or ``conference``      ``bridge``
                                (room named after the caller leg, trace D2)
==============================  =========================================================  =========

Relative paths (``prompt_path``, a relative SQLite file) are taken relative to the folder of
the configuration file.  Durations are seconds (``float``).
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional

from yaypm.prompts import PROMPTS_DIR

__all__ = ["QuizConfig", "load_config", "ConfigError", "SECTION", "PROMPTS", "number_matcher"]

SECTION = "quizconnect"

#: The prompts quizconnect plays, by role (file ``<prompt_path>/<name>.au``).
PROMPTS = ("welcome_caller", "welcome_callee", "sorry_pin_wrong", "pin_goodbye")


class ConfigError(ValueError):
    """A setting has an unusable value; names the key, the value and the file."""

    def __init__(self, key: str, value: str, reason: str, path: Optional[str] = None) -> None:
        where = f" in {path}" if path else ""
        super().__init__(f"{key} = {value!r}{where}: {reason}")
        self.key = key
        self.value = value
        self.path = path


@dataclass(frozen=True)
class QuizConfig:
    """Every quizconnect setting (see the module documentation for the keys)."""

    number: str = "*"
    db_url: str = "sqlite:///quizconnect.db"
    prompt_path: str = PROMPTS_DIR
    outbound_domain: str = "127.0.0.1:5080"
    target: str = "sip/sip:{callee}@{outbound_domain}"
    caller_id: str = "quizconnect"
    ring_timeout: float = 30.0
    pin_timeout: float = 15.0
    interdigit_timeout: float = 5.0
    attempts: int = 3
    overall_timeout: float = 60.0
    connect: str = "bridge"
    only_numbers_with_callees: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "_matcher", number_matcher(self.number))
        if self.connect not in ("bridge", "conference"):
            raise ConfigError("connect", self.connect, "use 'bridge' or 'conference'")
        if self.attempts < 1:
            raise ConfigError("attempts", str(self.attempts), "at least 1")
        for key in ("ring_timeout", "pin_timeout", "interdigit_timeout", "overall_timeout"):
            if getattr(self, key) <= 0:
                raise ConfigError(key, str(getattr(self, key)), "must be more than 0 s")
        try:
            self.callee_target("x")
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError("target", self.target,
                              f"unknown field {e}; use {{callee}}, {{outbound_domain}}, "
                              f"{{called}}, {{caller}}")

    def handles(self, called: str) -> bool:
        """Whether ``called`` is one of the numbers quizconnect serves (``number``)."""
        return self._matcher(called)  # type: ignore[attr-defined]

    def prompt(self, name: str) -> str:
        """The path of prompt ``name`` (one of :data:`PROMPTS`)."""
        return os.path.join(self.prompt_path, name + ".au")

    def callee_target(self, callee: str, called: str = "", caller: str = "") -> str:
        """The callto of the leg to ``callee`` (``sip/sip:john@10.0.0.5:5080``).

        A callee written ``user@host[:port]`` in the table is called at that domain instead
        of ``outbound_domain`` (the DSM version does the same)."""
        user, sep, domain = callee.partition("@")
        return self.target.format(callee=user, outbound_domain=domain if sep else
                                  self.outbound_domain, called=called, caller=caller)

    def replace(self, **changes: Any) -> "QuizConfig":
        return dataclasses.replace(self, **changes)

    def dsm_config(self) -> Dict[str, str]:
        """The settings as ``$config.*`` strings for the DSM scripts (durations as whole
        seconds, since DSM timers are whole seconds; at least 1)."""
        out: Dict[str, str] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool):
                v = "yes" if v else "no"
            elif isinstance(v, float):
                v = max(1, int(round(v)))
            out[f.name] = str(v)
        return out


def number_matcher(spec: str) -> Callable[[str], bool]:
    """A predicate for ``number``: comma-separated exact numbers, ``^regex`` (whole number),
    ``prefix*`` (``*`` alone: every number).  ConfigError for a bad regular expression or an
    empty list."""
    exact = set()
    tests: List[Callable[[str], bool]] = []
    for item in spec.split(","):
        p = item.strip()
        if not p:
            continue
        if p.startswith("^"):
            try:
                rx = re.compile(p)
            except re.error as e:
                raise ConfigError("number", spec, f"bad regular expression {p!r}: {e}")
            tests.append(lambda n, rx=rx: rx.fullmatch(n) is not None)
        elif p.endswith("*"):
            tests.append(lambda n, pre=p[:-1]: n.startswith(pre))
        else:
            exact.add(p)
    if not exact and not tests:
        raise ConfigError("number", spec, "no number (use * for every number)")
    return lambda n: n in exact or any(t(n) for t in tests)


_FLOATS = ("ring_timeout", "pin_timeout", "interdigit_timeout", "overall_timeout")
_BOOLS = ("only_numbers_with_callees",)
_TRUTH = {"yes": True, "true": True, "on": True, "1": True,
          "no": False, "false": False, "off": False, "0": False}


def _from_mapping(values: Mapping[str, str], base: str, path: Optional[str]) -> QuizConfig:
    kw: Dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(QuizConfig)}
    for key, raw in values.items():
        if key not in names:
            continue                       # DSM bundle keys, comments of other tools
        value = raw.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]            # SEMS-style quoting
        if key in _FLOATS:
            try:
                kw[key] = float(value)
            except ValueError:
                raise ConfigError(key, value, "not a number of seconds", path) from None
        elif key in _BOOLS:
            if value.lower() not in _TRUTH:
                raise ConfigError(key, value, "use yes or no", path)
            kw[key] = _TRUTH[value.lower()]
        elif key == "attempts":
            if not value.isdigit():
                raise ConfigError(key, value, "not a whole number", path)
            kw[key] = int(value)
        elif key == "prompt_path":
            if value:
                kw[key] = value if os.path.isabs(value) else os.path.join(base, value)
        elif key == "db_url":
            kw[key] = _absolute_sqlite(value, base) if value else QuizConfig.db_url
        else:
            kw[key] = value
    try:
        return QuizConfig(**kw)
    except ConfigError as e:
        raise ConfigError(e.key, e.value, str(e).split(": ", 1)[-1], path) from None


def _absolute_sqlite(url: str, base: str) -> str:
    """A relative SQLite file is relative to the configuration's folder."""
    if "://" not in url:
        return url if os.path.isabs(url) else os.path.join(base, url)
    scheme, rest = url.split("://", 1)
    if scheme.lower() != "sqlite" or not rest.startswith("/") or rest.startswith("//") \
            or rest[1:] in ("", ":memory:"):
        return url
    return f"sqlite:///{os.path.join(base, rest[1:])}"


def load_config(path: Optional[str] = None, **overrides: Any) -> QuizConfig:
    """Read ``path`` (INI with ``[quizconnect]``, or section-less ``key=value``); keyword
    arguments override the file (command-line flags).  No path: the defaults."""
    values: Dict[str, str] = {}
    base = os.getcwd()
    if path is not None:
        base = os.path.dirname(os.path.abspath(path))
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ConfigError("conf", path, e.strerror or str(e)) from None
        parser = configparser.RawConfigParser(comment_prefixes=("#", ";"),
                                              inline_comment_prefixes=None, strict=False)
        if not re.search(r"^\s*\[", text, re.MULTILINE):
            text = f"[{SECTION}]\n" + text
        try:
            parser.read_string(text, source=path)
        except configparser.Error as e:
            raise ConfigError("conf", path, str(e).splitlines()[0]) from None
        if parser.has_section(SECTION):
            values.update(parser.items(SECTION))
    for key, value in overrides.items():
        if value is not None:
            values[key] = str(value)
    return _from_mapping(values, base, path)
