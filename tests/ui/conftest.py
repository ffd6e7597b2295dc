"""Fixtures for the tray tests: offscreen Qt, a qasync loop, a real Engine on a temp profile."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import pytest
import qasync
from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QApplication

from trayapp.ui.qtloop import QtLoop

T = TypeVar("T")


async def until(predicate: Callable[[], bool], within: float = 20.0) -> None:
    """Let the loop (Qt events included) run until ``predicate`` holds; fail after ``within`` s.

    A condition wait, not a fixed sleep: the predicates span Qt widgets and engine state, which
    share no single event to await, so they are re-checked every 20 ms up to a generous deadline.
    """

    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), within)


class QLoop:
    """Runs coroutines on a qasync loop so Qt timers, signals and asyncio share one thread.

    Run a whole scenario in one ``run()``: qasync 0.28 can lose socket readiness that arrives
    while its loop is stopped between two ``run_until_complete`` calls (an in-flight HTTP
    response then never completes).
    """

    def __init__(self, loop: qasync.QEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        result: T = self.loop.run_until_complete(asyncio.wait_for(coro, timeout))
        return result

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        """Spin the loop (Qt events included) until ``predicate`` holds; fail after ``timeout``."""

        self.run(until(predicate, timeout), timeout + 1)


@pytest.fixture
def qloop(qapp: QApplication) -> Iterator[QLoop]:
    # As in the app: closing a window must not quit (and so stop the qasync loop).
    qapp.setQuitOnLastWindowClosed(False)
    loop = QtLoop(qapp, already_running=False)  # the app's loop (trayapp.ui.qtloop)
    asyncio.set_event_loop(loop)
    try:
        yield QLoop(loop)
    finally:
        # Delete this test's widgets now, while its loop exists, not at a random later GC.
        gc.collect()
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture
def profile_dir(tmp_path: Path) -> Path:
    p = tmp_path / "profile"
    p.mkdir()
    return p
