"""The loop-lag watchdog: notices an updater that blocks the event loop, and names it.

An updater that calls blocking code (``time.sleep``, a synchronous HTTP call, heavy parsing)
freezes every other charm and the tray. From inside the loop that can only be noticed *after*
the fact, when nobody knows any more who did it. So two halves work together:

* the loop half, a heartbeat timer (``loop.call_later``) that measures how late it fired: that is
  how long the loop was blocked;
* a daemon thread that, when the heartbeat goes stale, looks at the loop thread's current stack
  (``sys._current_frames()``) and finds the frame of the coroutine that executes a run. The
  scheduler labels those frames with their charm id (:meth:`LoopWatchdog.label`).

Both halves are active only while runs are in progress (``run_started``/``run_finished``): an idle
app has no heartbeat and a thread parked on an event, so the watchdog costs zero wake-ups.
Real time (``time.monotonic``) is used on purpose, never the scheduler's Clock: a blocked loop is
a real-world fact even in a test that fakes the schedule.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

# Longest stack walked from the loop thread's current frame: updaters nest, but not this deep.
_MAX_DEPTH = 200


class LoopWatchdog:
    """Measure event-loop stalls while runs are in progress and name the charm that caused them.

    ``on_blocked(charm_id, seconds)`` is called on the loop thread once the loop is free again;
    ``charm_id`` is None when the stall was not inside a labelled run.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        threshold: float,
        on_blocked: Callable[[str | None, float], None],
    ) -> None:
        if threshold <= 0:
            raise ValueError("threshold must be > 0")
        self._loop = loop
        self._threshold = threshold
        self._on_blocked = on_blocked
        # A beat every quarter threshold: a stall is seen at most threshold/4 after it starts to
        # count, and an unblocked loop pays one cheap timer per 250 ms (default) while it works.
        self._interval = threshold / 4
        self._labels: dict[int, str] = {}  # id(frame) -> charm id, for frames of live runs
        self._active_runs = 0
        self._beat_handle: asyncio.TimerHandle | None = None
        self._expected = 0.0  # when the pending beat should fire (monotonic)
        self._last_beat = 0.0  # read by the thread; float stores are atomic under the GIL
        self._suspect: str | None = None
        self._loop_thread_id: int | None = None
        self._active = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.stalls = 0  # stalls reported so far

    @property
    def watching(self) -> bool:
        """True while runs are in progress (heartbeat armed, thread checking)."""
        return self._active.is_set()

    # -- frames -----------------------------------------------------------------------------------

    def label(self, frame: FrameType | None, charm_id: str) -> None:
        """Say that code running under ``frame`` works for ``charm_id`` (until :meth:`unlabel`)."""
        if frame is not None:
            self._labels[id(frame)] = charm_id

    def unlabel(self, frame: FrameType | None) -> None:
        if frame is not None:
            self._labels.pop(id(frame), None)

    def _identify(self, frame: FrameType | None) -> str | None:
        depth = 0
        while frame is not None and depth < _MAX_DEPTH:
            charm_id = self._labels.get(id(frame))
            if charm_id is not None:
                return charm_id
            frame = frame.f_back
            depth += 1
        return None

    # -- activity ---------------------------------------------------------------------------------

    def run_started(self) -> None:
        self._active_runs += 1
        if self._active_runs == 1:
            self._activate()

    def run_finished(self) -> None:
        self._active_runs = max(0, self._active_runs - 1)
        if self._active_runs == 0:
            self._deactivate()

    def _activate(self) -> None:
        if self._closed:
            return
        self._loop_thread_id = threading.get_ident()
        now = time.monotonic()
        self._last_beat = now
        self._schedule_beat(now)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name="trayapp-loop-watchdog", daemon=True
            )
            self._thread.start()
        self._active.set()

    def _deactivate(self) -> None:
        self._active.clear()
        if self._beat_handle is not None:
            # The last run may have just stalled the loop and ended before the beat could fire.
            self._check(time.monotonic())
            self._beat_handle.cancel()
            self._beat_handle = None

    def close(self) -> None:
        """Stop the thread (it exits within one check interval) and the heartbeat."""
        self._closed = True
        self._deactivate()
        self._active.set()  # let the thread see _closed
        if self._thread is not None:
            self._thread.join(timeout=self._interval * 4 + 1)
            self._thread = None

    # -- loop half --------------------------------------------------------------------------------

    def _schedule_beat(self, now: float) -> None:
        self._expected = now + self._interval
        self._beat_handle = self._loop.call_later(self._interval, self._beat)

    def _beat(self) -> None:
        now = time.monotonic()
        self._check(now)
        self._last_beat = now
        if self._active_runs > 0 and not self._closed:
            self._schedule_beat(now)
        else:
            self._beat_handle = None

    def _check(self, now: float) -> None:
        lag = now - self._expected
        # Always consume the suspect: one sampled during a stall too short to report must not
        # be blamed for the next one.
        suspect, self._suspect = self._suspect, None
        if lag > self._threshold:
            self.stalls += 1
            try:
                self._on_blocked(suspect, lag)
            except Exception:
                log.exception("loop watchdog callback failed")
            # Measure the next stall from here, not from the stale beat.
            self._expected = now + self._interval

    # -- thread half ------------------------------------------------------------------------------

    def _watch(self) -> None:
        while True:
            self._active.wait()  # parked here, without wake-ups, while no run is in progress
            if self._closed:
                return
            # Twice per beat: a stall is sampled well before it ends, even on a busy machine.
            time.sleep(self._interval / 2)
            if self._closed:
                return
            if not self._active.is_set():
                continue
            # Sample until a labelled frame is found: the first look may land between runs.
            if time.monotonic() - self._last_beat > self._threshold and self._suspect is None:
                self._sample()

    def _sample(self) -> None:
        thread_id = self._loop_thread_id
        if thread_id is None:
            return
        frame = sys._current_frames().get(thread_id)
        try:
            suspect = self._identify(frame)
        finally:
            del frame  # frames keep their locals alive: do not hold on to the loop's stack
        if suspect is not None:
            self._suspect = suspect
            log.debug("event loop stalled inside run of %s", suspect)
