"""yaypm.dsm: run SEMS DonkeySM (DSM) scripts on Yate.

Pipeline: text → `parser` (lark grammar `dsm.lark` over a hand-written tokenizer) → `model`
(frozen dataclasses with positions) → `checker` (all problems at once) → `diagram` (actions and
conditions bound to `modules`) → `runtime` (one `Session` per call leg, driven through the
`backend.DSMCallBackend` interface) — held together by `config.Engine`.

Public API::

    from yaypm.dsm import Engine, FakeBackend
    engine = Engine("dsm.conf"); engine.load()         # or Engine.from_scripts({...})
    session = engine.create_session("app", backend, selects={...})
    session.start(); session.invite(); session.key(5); session.hangup()

The decisions ⚑D1–D12 of the specification are listed in DECISIONS.md beside this file.
"""
from __future__ import annotations

from .backend import DialRequest, DSMCallBackend, MediaError
from .checker import check_file, check_script
from .config import DSMApplicationSet, Engine, conf_list, read_conf
from .diagram import Diagram, ModuleSet, Problem, compile_script
from .errors import DSMConfigError, DSMLoadError, DSMSyntaxError
from .model import Pos, Script
from .modules import DSMModule, action, condition, register_module
from .parser import parse_file, parse_text
from .runtime import AppContext, DSMException, MonitoringStore, Session, SessionRegistry
from .testing import FakeBackend

__all__ = ["DialRequest", "DSMCallBackend", "MediaError", "check_file", "check_script",
           "DSMApplicationSet", "Engine", "conf_list", "read_conf", "Diagram", "ModuleSet",
           "Problem", "compile_script", "DSMConfigError", "DSMLoadError", "DSMSyntaxError",
           "Pos", "Script", "DSMModule", "action", "condition", "register_module",
           "parse_file", "parse_text", "AppContext", "DSMException", "MonitoringStore",
           "Session", "SessionRegistry", "FakeBackend"]
