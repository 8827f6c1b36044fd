"""Test helpers shipped to users: in-memory connection, Deferred assertions, simulator, fixtures.

``success_result_of``/``failure_result_of``/``assert_no_result`` are trial's
``SynchronousTestCase`` methods as plain functions for pytest.
"""

from __future__ import annotations

from typing import Any, Type

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from yaypm.testing.memory import MemoryConnection

__all__ = ["MemoryConnection", "success_result_of", "failure_result_of", "assert_no_result"]


def _result(d: Deferred) -> list:
    out: list = []
    d.addBoth(lambda r: (out.append(r), r)[1] if not isinstance(r, Failure) else
              (out.append(r), None)[1])
    return out


def success_result_of(d: Deferred) -> Any:
    """The result of an already fired Deferred; AssertionError if pending or failed."""
    out = _result(d)
    if not out:
        raise AssertionError(f"{d!r} has no result yet")
    if isinstance(out[0], Failure):
        raise AssertionError(f"{d!r} failed: {out[0].getTraceback()}")
    return out[0]


def failure_result_of(d: Deferred, *types: Type[BaseException]) -> Failure:
    """The Failure of an already failed Deferred (of one of ``types`` if given)."""
    out = _result(d)
    if not out:
        raise AssertionError(f"{d!r} has no result yet")
    f = out[0]
    if not isinstance(f, Failure):
        raise AssertionError(f"{d!r} succeeded with {f!r}, expected a failure")
    if types and not f.check(*types):
        raise AssertionError(f"{d!r} failed with {f.value!r}, expected {types}")
    return f


def assert_no_result(d: Deferred) -> None:
    """AssertionError if ``d`` has already fired."""
    out: list = []
    d.addBoth(lambda r: (out.append(r), r)[1])
    if out:
        raise AssertionError(f"{d!r} already fired with {out[0]!r}")
