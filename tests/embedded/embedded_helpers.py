"""Constants shared by the embedded-mode tests."""

from pathlib import Path

APPS = Path(__file__).resolve().parent / "apps"

#: Handlers + watches apps/main_app.py installs (11 handlers, 1 watch).
MAIN_HANDLERS = 12
