"""quizconnect: a caller dials a number, every callee registered for it is called, and the first
callee to type its PIN is connected with the caller (the SEMS DSM tutorial, seed 002).

Two versions with the same behaviour and the same ``quizconnect.conf``:

* :mod:`yaypm.apps.quizconnect.app` — Deferreds and ``async def`` on :mod:`yaypm.ivr`;
* ``yaypm/apps/quizconnect/dsm/`` — the tutorial's DSM scripts without their faults, run by
  :mod:`yaypm.dsm` (:mod:`yaypm.apps.quizconnect.dsm_runner`).

Commands: ``yaypm quizconnect init-db|add-callee|list|run``, ``yaypm demo``.
"""

from yaypm.apps.quizconnect.config import ConfigError, QuizConfig, load_config
from yaypm.apps.quizconnect.store import Callee, CalleeStore

__all__ = ["QuizConfig", "load_config", "ConfigError", "Callee", "CalleeStore"]
