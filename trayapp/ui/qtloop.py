"""The app's asyncio loop on Qt: qasync's ``QEventLoop`` whose cancelled timers really stop.

qasync (0.28) schedules ``call_later``/``call_at`` as a Qt timer per callback and wraps it in a
plain :class:`asyncio.Handle`; cancelling that handle only marks it, so the Qt timer still
fires when it was due and wakes the process for nothing. Every finished request leaves such a
corpse behind (httpx's 60 s timeouts, the scheduler's run deadline, ``wait_for`` guards,
dbus-fast's call timeouts): the idle tray woke every 10-30 s after a pass of syncs (issue 17,
item 3). Here a delayed callback is an :class:`asyncio.TimerHandle`, whose ``cancel()`` tells
the loop (``_timer_handle_cancelled``, as asyncio's own loops do), and the loop kills the Qt
timer at once. ``call_soon`` (delay 0) keeps qasync's path.

The loop's default executor (``run_in_executor(None, ...)``, ``asyncio.to_thread``: feed
parsing, SQLite reads for windows, DNS lookups) is one shared ``ThreadPoolExecutor`` whose
threads start on demand; qasync's own default starts ten ``QThread`` workers up front.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import qasync
from PySide6.QtCore import QObject, QTimerEvent


class _QtTimerHandle(asyncio.TimerHandle):
    """A TimerHandle that knows its Qt timer id."""

    timer_id: int = 0


class _Timers(QObject):
    """One-shot Qt timers for delayed callbacks, killed on cancel."""

    def __init__(self) -> None:
        super().__init__()
        self._handles: dict[int, _QtTimerHandle] = {}

    def add(self, handle: _QtTimerHandle, delay: float) -> None:
        handle.timer_id = self.startTimer(max(0, int(delay * 1000)))
        self._handles[handle.timer_id] = handle

    def cancel(self, handle: asyncio.TimerHandle) -> None:
        timer_id = getattr(handle, "timer_id", 0)
        if self._handles.pop(timer_id, None) is not None:
            self.killTimer(timer_id)

    def stop(self) -> None:
        for timer_id in list(self._handles):
            self.killTimer(timer_id)
        self._handles.clear()

    def pending(self) -> int:
        return len(self._handles)

    def timerEvent(self, event: QTimerEvent) -> None:
        timer_id = event.timerId()
        self.killTimer(timer_id)
        handle = self._handles.pop(timer_id, None)
        if handle is not None and not handle.cancelled():
            handle._run()


#: Upper bound of the shared worker pool; threads are only started when work waits for one.
POOL_WORKERS = 8


class QtLoop(qasync.QEventLoop):  # type: ignore[misc]  # qasync ships no type hints
    """``qasync.QEventLoop`` with delayed callbacks that leave no Qt timer behind on cancel."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._qt_timers = _Timers()
        self.set_default_executor(
            ThreadPoolExecutor(max_workers=POOL_WORKERS, thread_name_prefix="trayapp-pool")
        )

    def call_later(
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        if delay <= 0:
            handle: asyncio.Handle = super().call_later(delay, callback, *args, context=context)
            return handle
        timer = _QtTimerHandle(self.time() + delay, callback, args, self, context=context)
        self._qt_timers.add(timer, delay)
        return timer

    def call_at(
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        return self.call_later(when - self.time(), callback, *args, context=context)

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        self._qt_timers.cancel(handle)

    def pending_timers(self) -> int:
        """Delayed callbacks still scheduled (for tests: cancelled ones are not counted)."""
        return self._qt_timers.pending()

    def close(self) -> None:
        self._qt_timers.stop()
        super().close()
