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

**Rescue.** A run that blocks the loop can never be stopped by its own deadline: that deadline
is a loop timer, and the loop is stuck inside the run. So when the thread finds the loop stalled
inside a labelled run whose deadline (the pattern's ``timeout``, in real time) passed more than
``grace`` seconds ago, it sends :data:`RESCUE_SIGNAL` to the loop thread
(``signal.pthread_kill``). The signal interrupts a blocking system call with EINTR (``time.sleep``,
a socket read, ``requests.get`` without a timeout, a lock, a subprocess wait), after which
Python runs the handler; a pure-Python busy loop runs it at its next bytecode. The handler
(:func:`_on_rescue_signal`) walks up from the frame it interrupted and raises
:class:`UpdaterFroze` only if that frame is still inside the very run that was found stuck
(the same labelled frame, same label), or if the current task belongs to that run (the run's
task runs in a context naming it, which the tasks its updater starts inherit: a stall in an
``asyncio.gather`` child is caught too); anywhere else it does nothing but chain to a handler
installed before ours. The scheduler turns :class:`UpdaterFroze` into the ``froze`` outcome.

Limits: Python runs signal handlers on the main thread only, so the rescue works only when the
loop runs there (the tray, ``run --headless``, ``trayapp sync``: all of them); elsewhere stalls
are still reported, not stopped. C code that holds the GIL and never returns to Python (a
catastrophic regular expression, arithmetic on a huge integer, a C extension's busy loop) cannot
be interrupted from inside the process at all. An updater that swallows ``BaseException`` is
interrupted again every ``grace`` seconds while it stays stuck. A task an updater started and
left running after its run ended is no longer watched (its run is over).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from types import CodeType, FrameType

log = logging.getLogger(__name__)

# Longest stack walked from the loop thread's current frame: updaters nest, but not this deep.
_MAX_DEPTH = 200

#: The signal that interrupts a stuck updater on the loop thread. Nothing else in the app or
#: its libraries uses it (qasync, Qt, desktop-notifier, dbus-fast, httpx; uvicorn's gunicorn
#: worker uses SIGUSR1, and the emulator never runs in the app's process). Should some other
#: code have installed a Python handler for it first, ours chains to it.
RESCUE_SIGNAL = signal.SIGUSR2

#: How long past its deadline a run may keep the loop blocked before it is interrupted.
FREEZE_GRACE = 2.0


class UpdaterFroze(BaseException):
    """Raised inside an updater that blocked the event loop past its run's deadline.

    A ``BaseException`` (like ``KeyboardInterrupt``), so the plugin's ``except Exception`` does
    not swallow it; the scheduler catches it around the run and records the ``froze`` outcome.
    ``seconds``: how long the loop had been blocked when it was interrupted.
    """

    def __init__(self, charm_id: str, seconds: float) -> None:
        super().__init__(f"charm {charm_id} blocked the event loop for {seconds:.1f} s")
        self.charm_id = charm_id
        self.seconds = seconds


@dataclass(eq=False, slots=True)
class RunLabel:
    """A labelled run: its frame, whose it is and when its deadline passes (monotonic, or
    None). Compared by identity: a label is one run."""

    frame_id: int
    charm_id: str
    deadline: float | None
    attempts: int = 0  # rescue signals sent for it
    last_attempt: float = field(default=0.0)
    # The first UpdaterFroze raised for it. Raised in a task its updater started, it may
    # reach the run as a cancellation (its deadline fired meanwhile): the run reads it here.
    froze: UpdaterFroze | None = None


# The run the current task works for, so the
# tasks its updater starts (asyncio.gather, create_task) inherit it: a stall in one of them has
# no labelled frame on the stack, yet the handler can tell which run it belongs to. Set by
# enter_run in the run's own task (each task runs in its own copy of the context).
_current_run: contextvars.ContextVar[RunLabel | None] = contextvars.ContextVar(
    "trayapp_current_run", default=None
)


def enter_run(label: RunLabel | None) -> None:
    """Make ``label`` the current run of the calling task (its own context; the tasks it
    starts from now on inherit it)."""
    _current_run.set(label)


# Watchdogs that may have a rescue armed; the signal handler looks at each one's target.
_watchdogs: weakref.WeakSet[LoopWatchdog] = weakref.WeakSet()
_previous_handler: Callable[[int, FrameType | None], object] | int | None = None


def _install_rescue_handler() -> bool:
    """Install :func:`_on_rescue_signal` for :data:`RESCUE_SIGNAL` (main thread only; once per
    process, kept for the process's life). False if it cannot be installed from here."""
    global _previous_handler
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(RESCUE_SIGNAL)
    if current is _on_rescue_signal:
        return True
    try:
        signal.signal(RESCUE_SIGNAL, _on_rescue_signal)
    except (ValueError, OSError):  # not the main interpreter, or no such signal here
        return False
    _previous_handler = current
    return True


def rescue_handler_code() -> CodeType:
    """The signal handler's code: its frame tops the traceback of :class:`UpdaterFroze`."""
    return _on_rescue_signal.__code__


def _on_rescue_signal(signum: int, frame: FrameType | None) -> None:
    """Raise :class:`UpdaterFroze` if the code interrupted at ``frame`` works for a run a
    watchdog found stuck past its deadline (and still running); else only chain.

    No logging here: the interrupted code may hold the logging lock.
    """
    for watchdog in list(_watchdogs):
        armed = watchdog._rescue
        if not armed:
            continue
        label = _stuck_run(watchdog._labels, armed, frame)
        if label is not None:
            watchdog._rescue = ()
            froze = UpdaterFroze(label.charm_id, time.monotonic() - watchdog._last_beat)
            if label.froze is None:
                label.froze = froze
            del frame  # do not keep the interrupted stack alive in the traceback
            raise froze
    previous = _previous_handler
    if callable(previous):
        previous(signum, frame)


def _stuck_run(
    live: dict[int, RunLabel], armed: tuple[RunLabel, ...], frame: FrameType | None
) -> RunLabel | None:
    """The armed, live run that ``frame`` works for: its labelled frame is on the stack, or
    the current task belongs to it (a task its updater started)."""
    current = _current_run.get()
    if current is not None and current in armed and live.get(current.frame_id) is current:
        return current
    depth = 0
    while frame is not None and depth < _MAX_DEPTH:
        label = live.get(id(frame))
        if label is not None:
            return label if label in armed else None  # the innermost run is the one stuck
        frame = frame.f_back
        depth += 1
    return None


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
        *,
        grace: float = FREEZE_GRACE,
    ) -> None:
        if threshold <= 0:
            raise ValueError("threshold must be > 0")
        self._loop = loop
        self._threshold = threshold
        self._on_blocked = on_blocked
        self._grace = grace
        # A beat every quarter threshold: a stall is seen at most threshold/4 after it starts to
        # count, and an unblocked loop pays one cheap timer per 250 ms (default) while it works.
        self._interval = threshold / 4
        self._labels: dict[int, RunLabel] = {}  # id(frame) -> label, for frames of live runs
        # Set by the thread just before it signals the loop thread: the runs found stuck past
        # their deadline. The handler raises only in code working for one of them.
        self._rescue: tuple[RunLabel, ...] = ()
        self._can_rescue = False
        self._active_runs = 0
        self._beat_handle: asyncio.TimerHandle | None = None
        self._expected = 0.0  # when the pending beat should fire (monotonic)
        self._last_beat = 0.0  # read by the thread; float stores are atomic under the GIL
        self._suspect: str | None = None
        self._loop_thread_id: int | None = None
        self._active = threading.Event()
        self._stop = threading.Event()  # set by close(): the thread leaves its sleep at once
        self._closed = False
        self._thread: threading.Thread | None = None
        self.stalls = 0  # stalls reported so far
        self.rescues = 0  # rescue signals sent so far

    @property
    def watching(self) -> bool:
        """True while runs are in progress (heartbeat armed, thread checking)."""
        return self._active.is_set()

    # -- frames -----------------------------------------------------------------------------------

    def label(
        self, frame: FrameType | None, charm_id: str, timeout: float | None = None
    ) -> RunLabel | None:
        """Say that code running under ``frame`` works for ``charm_id`` (until :meth:`unlabel`).

        ``timeout`` (real seconds from now): past it, plus the grace, a loop stuck under
        ``frame`` is interrupted (see the module docstring); None: never. Pass the returned
        label to :func:`enter_run` in the run's task, so the tasks it starts are known too.
        """
        if frame is None:
            return None
        deadline = time.monotonic() + timeout if timeout is not None else None
        label = RunLabel(id(frame), charm_id, deadline)
        self._labels[id(frame)] = label
        return label

    def unlabel(self, frame: FrameType | None) -> None:
        if frame is not None:
            label = self._labels.pop(id(frame), None)
            if label is not None and label in self._rescue:
                self._rescue = ()

    def _identify(self, frame: FrameType | None) -> RunLabel | None:
        depth = 0
        while frame is not None and depth < _MAX_DEPTH:
            label = self._labels.get(id(frame))
            if label is not None:
                return label
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
        if not self._can_rescue:
            # Python runs signal handlers on the main thread only: a loop elsewhere is watched
            # and reported, not rescued.
            self._can_rescue = _install_rescue_handler()
            if self._can_rescue:
                _watchdogs.add(self)
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
        """Stop the thread (it exits at once, not after its sleep) and the heartbeat."""
        self._closed = True
        self._rescue = ()
        _watchdogs.discard(self)
        self._deactivate()
        self._stop.set()
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
            # An Event, not time.sleep: close() (on the loop thread, at every scheduler
            # shutdown) joins this thread and must not wait out the sleep (125 ms by default).
            self._stop.wait(self._interval / 2)
            if self._closed:
                return
            if not self._active.is_set():
                continue
            # Sample while stalled: the first look may land between runs, and a run stuck past
            # its deadline is interrupted.
            if time.monotonic() - self._last_beat > self._threshold:
                self._sample()

    def _sample(self) -> None:
        thread_id = self._loop_thread_id
        if thread_id is None:
            return
        frame = sys._current_frames().get(thread_id)
        try:
            label = self._identify(frame)
        finally:
            del frame  # frames keep their locals alive: do not hold on to the loop's stack
        if label is not None and self._suspect is None:
            self._suspect = label.charm_id
            log.debug("event loop stalled inside run of %s", label.charm_id)
        if not self._can_rescue:
            return
        now = time.monotonic()
        if label is not None:
            overdue = [label] if self._overdue(label, now) else []
        else:
            # Stuck where no run's frame is on the stack: maybe in a task an updater started
            # (asyncio.gather). The handler tells by the task's context; offer it every run
            # that is past its deadline (it raises only in code working for one of them).
            overdue = [lb for lb in list(self._labels.values()) if self._overdue(lb, now)]
        if overdue:
            self._interrupt(overdue, now, named=label is not None)

    def _overdue(self, label: RunLabel, now: float) -> bool:
        return (
            label.deadline is not None
            and now >= label.deadline + self._grace
            and now - label.last_attempt >= self._grace
        )

    def _interrupt(self, labels: list[RunLabel], now: float, *, named: bool) -> None:
        """Signal the loop thread: its handler raises UpdaterFroze inside the stuck run."""
        thread_id = self._loop_thread_id
        if thread_id is None or signal.getsignal(RESCUE_SIGNAL) is not _on_rescue_signal:
            return  # someone replaced our handler: the signal's default would kill the app
        for label in labels:
            label.attempts += 1
            label.last_attempt = now
        first = labels[0]
        if not named:
            log.debug(
                "event loop stalled outside the runs' own frames; offering the overdue runs of %s",
                ", ".join(lb.charm_id for lb in labels),
            )
        elif first.attempts == 1:
            log.warning(
                "charm %s blocks the app past its time limit; interrupting it", first.charm_id
            )
        elif first.attempts == 4:
            log.error(
                "charm %s keeps blocking the app although it was interrupted %d times (it "
                "swallows the interruption, or is stuck in C code that never returns to Python)",
                first.charm_id,
                first.attempts - 1,
            )
        self._rescue = tuple(labels)
        self.rescues += 1
        try:
            signal.pthread_kill(thread_id, RESCUE_SIGNAL)
        except (OSError, ProcessLookupError):
            self._rescue = ()
