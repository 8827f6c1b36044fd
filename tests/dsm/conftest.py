"""Fixtures for the DSM tests (helpers live in dsm_helpers.py)."""
from __future__ import annotations

import pytest
from twisted.internet.task import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()
