"""Monitoring tests fail if anything logs a traceback they did not ask for."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List

import pytest
from twisted.logger import globalLogPublisher


@pytest.fixture(autouse=True)
def logged_failures(request: pytest.FixtureRequest) -> Iterator[List[Dict[str, Any]]]:
    """Failures logged during the test; a test expecting some clears the list."""
    seen: List[Dict[str, Any]] = []

    def observer(event: Dict[str, Any]) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            seen.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        yield seen
    finally:
        globalLogPublisher.removeObserver(observer)
    if seen:
        first = seen[0]
        f = first.get("log_failure")
        detail = f.getTraceback() if f is not None else repr(first)
        pytest.fail(f"{len(seen)} failure(s) logged during the test; first:\n{detail}")
