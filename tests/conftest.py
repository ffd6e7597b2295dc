"""Suite-wide settings. Each area keeps its own fixtures in its own conftest.py."""

from __future__ import annotations

import os

# Qt tests run offscreen unless a test starts its own virtual desktop (tests/e2e).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Nothing in the suite may open a real browser or talk to a real keyring by accident.
os.environ.setdefault("BROWSER", "true")
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
