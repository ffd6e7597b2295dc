"""Machine-readable report lines for the end-to-end tests (``TRAYAPP_TEST_REPORT``).

A module of its own, with no Qt and no app imports, so the start-up icon can report itself
before the tray controller's imports load (issue 17); :mod:`trayapp.ui.tray` re-exports it.
"""

from __future__ import annotations

import sys


class TestReporter:
    """Machine-readable lines for the end-to-end tests (where to click, what was notified)."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, target: str | None) -> None:
        self._target = target

    @property
    def enabled(self) -> bool:
        return bool(self._target)

    def __call__(self, line: str) -> None:
        if not self._target:
            return
        if self._target == "stderr":
            print(line, file=sys.stderr, flush=True)
        else:
            with open(self._target, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
