"""quizconnect, the DSM version: the scripts in ``dsm/`` on :mod:`yaypm.dsm`.

``make_engine(config)`` loads ``quizconnect_caller.dsm`` and ``quizconnect_callee.dsm`` into a
DSM :class:`~yaypm.dsm.Engine` whose ``$config.*`` are the settings of ``quizconnect.conf``
(durations rounded to whole seconds: DSM timers count seconds).  SQL goes through
:class:`yaypm.sql.Database` with the same URL rules as the Python version (``sqlite:///rel``
relative, ``sqlite:////abs`` absolute), always with bound parameters.

On Yate it runs through the DSM engine's adapter (:class:`yaypm.dsm.yate.DSMRunner`):
:func:`start` claims ``config.number`` for ``quizconnect_caller`` (the adapter's
``route.<app>`` key) and starts one session per call; callee legs are ``dlg.dialout`` legs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from twisted.logger import Logger

from yaypm.dsm import Engine
from yaypm.dsm.sql import AdbapiExecutor
from yaypm.sql import Database

from yaypm.apps.quizconnect.config import QuizConfig

log = Logger(namespace="yaypm.apps.quizconnect")

if TYPE_CHECKING:
    from yaypm.dispatcher import Dispatcher
    from yaypm.dsm.yate import DSMRunner
    from yaypm.registry import CallRegistry

__all__ = ["DSM_DIR", "SCRIPTS", "CALLER_APP", "CALLEE_APP", "load_scripts", "make_engine",
           "SQLExecutor", "adapter_available", "make_runner", "start", "watch"]

DSM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dsm")
CALLER_APP = "quizconnect_caller"
CALLEE_APP = "quizconnect_callee"
SCRIPTS = (CALLER_APP, CALLEE_APP)


def load_scripts(folder: str = DSM_DIR) -> Dict[str, str]:
    """The two diagrams' source text, by name."""
    out = {}
    for name in SCRIPTS:
        with open(os.path.join(folder, name + ".dsm"), encoding="utf-8") as f:
            out[name] = f.read()
    return out


#: mod_mysql's executor on :class:`yaypm.sql.Database` (``threaded=False``: inline, for SQLite
#: and tests on a ``task.Clock``): the DSM engine's own, so there is one SQL layer.
SQLExecutor = AdbapiExecutor


def make_engine(config: QuizConfig, *, clock: Any = None, threaded: bool = True,
                sql_connect: Optional[Callable[[str], Any]] = None,
                folder: str = DSM_DIR) -> Engine:
    """A DSM engine running quizconnect's two diagrams with ``config`` as ``$config.*``."""
    connect = sql_connect or (lambda url: SQLExecutor(url, threaded=threaded))
    settings = config.dsm_config()
    settings["route." + CALLER_APP] = config.number      # the adapter's route key
    return Engine.from_scripts(load_scripts(folder), config=settings, clock=clock,
                               sql_connect=connect,
                               conf={"monitoring_full_stategraph": "yes",
                                     "monitoring_full_transitions": "yes"})


def create_sqlite_table(db_url: str) -> None:
    """Create an SQLite callee table if missing (errors are the first call's 500)."""
    from yaypm.apps.quizconnect.store import CalleeStore
    db = Database(db_url, threaded=False)
    if db.scheme != "sqlite":
        return
    try:
        CalleeStore(db).init().addErrback(
            lambda f: log.error("quizconnect: cannot create the callees table: {error}",
                                error=f.getErrorMessage()))
    finally:
        db.close()


def adapter_available() -> bool:
    """Whether the DSM engine's Yate adapter (``yaypm.dsm.yate``) is installed."""
    try:
        import yaypm.dsm.yate  # noqa: F401
    except ImportError:
        return False
    return True


def make_runner(config: QuizConfig, *, engine: Optional[Engine] = None,
                registry: Optional["CallRegistry"] = None, clock: Any = None,
                threaded: bool = True) -> "DSMRunner":
    """The DSM adapter's runner for quizconnect: ``quizconnect_caller`` for the numbers of
    ``config.number``; callee legs may ring a little longer than ``ring_timeout`` on Yate's
    side (the callee script's own ring timer cancels them first)."""
    from yaypm.dsm.yate import DSMRunner
    if engine is None:
        engine = make_engine(config, clock=clock, threaded=threaded)
    create_sqlite_table(config.db_url)
    return DSMRunner(engine, registry=registry, clock=clock,
                     dialout_timeout=config.ring_timeout + 5.0)


class _Graph(list):
    """A session's ``dsm_stategraph`` that also reports each entry as it is appended."""

    def __init__(self, who: str, report: Callable[[str, str], None]) -> None:
        super().__init__()
        self.who = who
        self.report = report

    def append(self, entry: Any) -> None:
        super().append(entry)
        text = str(entry)
        if text.startswith(">"):
            self.transition = text.strip("> ")
            return
        state = text.split("/", 1)[-1]
        via, self.transition = getattr(self, "transition", ""), ""
        self.report(self.who, f"{via} -> {state}" if via else state)


class _Record(dict):
    def __init__(self, attrs: Dict[str, Any], report: Callable[[str, str], None]) -> None:
        super().__init__(attrs)
        self._report = report

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "dsm_stategraph" and isinstance(value, list):
            if self.get("app") == CALLER_APP:
                who = "caller"
            else:
                party = str(self.get("to", ""))
                who = party.split("sip:", 1)[-1].split("@", 1)[0] or "callee"
            value = _Graph(who, self._report)
        super().__setitem__(key, value)


def watch(engine: Engine, report: Callable[[str, str], None]) -> None:
    """Call ``report(who, text)`` for every transition a session takes (``"pin matches ->
    MATCHING_PIN"``; ``who``: ``caller`` or the callee's user), and with the initial state;
    for timelines (``yaypm demo --dsm``).  Call before the first session; replaces the
    engine's monitoring store (full state graphs)."""
    from yaypm.dsm.runtime import MonitoringStore

    class _Store(MonitoringStore):
        def create(self, sid: str, attrs: Dict[str, Any]) -> Dict[str, Any]:
            rec = _Record(attrs, report)
            self.active[sid] = rec
            return rec

    old = engine.registry.monitoring
    store = _Store(True, True)
    engine.registry.monitoring = store
    engine.monitoring = store
    del old


def start(dispatcher: "Dispatcher", config: QuizConfig, *, engine: Optional[Engine] = None,
          registry: Optional["CallRegistry"] = None) -> "DSMRunner":
    """Serve quizconnect's numbers with the DSM version on ``dispatcher``; returns the runner
    (``runner.attach`` is the ``start`` to hand a reconnecting connection)."""
    runner = make_runner(config, engine=engine, registry=registry)
    runner.attach(dispatcher)
    return runner
