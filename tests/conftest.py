"""Suite-wide settings. Each area keeps its own fixtures in its own conftest.py."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

# Qt tests run offscreen unless a test starts its own virtual desktop (tests/e2e).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Nothing in the suite may open a real browser or talk to a real keyring by accident.
os.environ.setdefault("BROWSER", "true")
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")

# Property-based tests explore new random examples on developers' machines; in CI they replay a
# fixed sequence, so a landing never depends on the luck of the draw (Hypothesis's documented
# "ci" profile practice). A bug they find locally gets its own example test.
if os.environ.get("CI"):
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, database=None)
    _hypothesis_settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _process_wide_state_restored() -> Iterator[None]:
    """A test that opens the app's host in this process gets its process-wide settings (the
    private umask 077, the 0.5 ms GIL switch interval): later tests, and the programs they
    start (the bundle build), keep the suite's own."""
    umask = os.umask(0o022)
    os.umask(umask)
    interval = sys.getswitchinterval()
    yield
    os.umask(umask)
    sys.setswitchinterval(interval)
