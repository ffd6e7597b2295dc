"""Guard against PySide6 6.12.0 on CPython 3.11 dropping a reference to True per Signal.emit().

qasync emits a signal on every thread callback, so that bug kills a long-running tray with
``Fatal Python error: bool_dealloc``. pyproject pins it out; this test fails if it comes back.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication


class Emitter(QObject):
    fired = Signal(object, tuple)


def test_emit_does_not_leak_references_to_true(qapp: QApplication) -> None:
    e = Emitter()
    seen: list[int] = []
    e.fired.connect(lambda _a, _b: seen.append(1))
    before = sys.getrefcount(True)
    for _ in range(5000):
        e.fired.emit(True, (True,))
    after = sys.getrefcount(True)
    assert len(seen) == 5000
    # On 3.12+ True is immortal and its refcount is a constant; on 3.11 it must not fall.
    assert after >= before - 50, f"refcount of True fell from {before} to {after}"
