"""The event-driven loop that runs each charm's updater on its schedule.

One task sleeps until the earliest due charm *or* a command, whichever comes first: it awaits
``clock.wait(wakeup_event, timeout=seconds until the earliest due time)``. There is no polling
tick: an app whose next charm is due in an hour wakes once, in an hour. Commands (``run_now``,
``pause``, ``account_usable``...) act at once, and set the wake-up event only when they make
something due earlier than the loop planned to wake, so it re-plans its sleep.

Timing decisions, in one place:

* **Due times are wall-clock** (aware UTC, persisted as ``CharmStatus.next_due_at``), so they
  keep their meaning across restarts and suspends. On start, a charm whose due time passed runs
  once, staggered with the other overdue charms.
* **The next due time counts from when a run ends**, plus the interval with a bounded jitter
  (``interval * (1 ± entry.jitter)``, seeded rng for tests). Counting from the end means a slow
  run never causes back-to-back runs and the gap between two runs is never shorter than the
  interval (minus jitter); the jitter spreads charms that were added together.
* **Backoff** (:class:`BackoffPolicy`) for ``rate_limited``, ``offline``, ``server_error``,
  ``timeout``, ``storage`` and ``bug``: 30 s, 60 s, 120 s... up to 1 h, with jitter downward
  only, never shorter than the server's ``retry_after`` (capped at a day,
  :mod:`trayapp.core.retry`). It is independent of the interval (a
  daily charm that failed retries sooner than tomorrow) and never disables a charm for good.
* **config_error retries slowly**: the user must fix the charm's settings, so it waits the
  backoff cap (or its interval, if longer), not 30 s; a fix elsewhere is still noticed.
* **auth_required parks** every charm of the account until :meth:`Scheduler.account_usable`;
  then they all run at once (trigger ``account``). One whose error is ``charm_only`` (the
  account works, but this charm's permission was not granted) parks only that charm
  (``parked_alone``); the same call unparks it.
* **Suspend/resume**: when wall time advanced far more than monotonic time between two wake-ups
  (or on :meth:`Scheduler.wake`), overdue charms run once each (not once per missed interval),
  staggered over a few seconds. A backward wall step pulls far-future due times back in.
  Sleeping uses monotonic time, which stands still during suspend, so without help a jump is
  noticed at the loop's next planned wake-up: the app calls ``wake(WAKE_RESUMED)`` on the OS's
  resume signal to act at once.
* **User commands beat the schedule, not the user's settings**: ``run_now`` on a paused charm
  runs it once and leaves it paused; on a parked charm it runs once (the user asked) and
  unparks that charm only if the run succeeds.

Concurrency: a global limit and a per-account limit. Runs wait in one FIFO queue and start as
slots free up; a run whose account is at its limit lets the runs behind it pass. (Two nested
``asyncio.Semaphore``s would make a run hold a global slot while it waits for its account's.)

A run is a task awaited with a deadline (``entry.timeout``); at the deadline it is cancelled, so
the updater's code after its current ``await`` never runs, and recorded as ``timeout``.

An updater that blocks the loop (``time.sleep``, a synchronous socket read, a busy loop) never
reaches an ``await``, so neither its deadline nor anything else on the loop can run. The
watchdog (:mod:`trayapp.core.watchdog`) interrupts it from its thread once the deadline plus a
grace has passed; the run ends as ``froze`` (retried with backoff). After
:data:`FREEZE_LIMIT` such runs in a row the charm is parked (``CharmStatus.parked_frozen``)
until the user resumes it (:meth:`Scheduler.resume`).

Everything here runs on the event loop thread; call the commands from that thread.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import logging
import random
import sqlite3
import sys
import traceback
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import FrameType
from typing import Any

from trayapp.core import aio, slots
from trayapp.core import watchdog as watchdog_module
from trayapp.core.clock import Cancellable, Clock
from trayapp.core.errors import (
    STORAGE_FULL_MESSAGE,
    AuthRequired,
    NotFoundError,
    RateLimited,
    StoreFullError,
    SyncError,
)
from trayapp.core.events import (
    CharmStatusChanged,
    EngineEvent,
    LoopBlocked,
    RunFinished,
    RunStarted,
)
from trayapp.core.outcomes import OutcomeKind, RunOutcome, RunReport, waiting_outcome
from trayapp.core.redact import redact
from trayapp.core.retry import MAX_RETRY_AFTER
from trayapp.core.retry import BackoffPolicy as BackoffPolicy  # re-exported: engine, tests
from trayapp.core.status import (
    CharmState,
    CharmStatus,
    RunRecord,
    due,
    finished,
    loaded,
    parked,
    paused,
    resumed,
    started,
    unparked,
)
from trayapp.core.statusrepo import StatusRepo
from trayapp.core.watchdog import LoopWatchdog, UpdaterFroze, enter_run

log = logging.getLogger(__name__)

Runner = Callable[[str, str], Awaitable[RunReport | RunOutcome]]
"""``runner(charm_id, trigger)``: run one charm's updater once.

Return a :class:`RunReport` (``ok``), or a full :class:`RunOutcome` if the caller already
classified the run; raise a :class:`SyncError` subclass to end with its kind. Any other
exception is recorded as ``bug`` with its traceback.
"""

EventCallback = Callable[[EngineEvent], None]

# Triggers, as recorded in RunRecord.trigger.
TRIGGER_SCHEDULE = "schedule"
TRIGGER_MANUAL = "manual"
TRIGGER_RESUME = "resume"
TRIGGER_ACCOUNT = "account"

# wake() reasons with a meaning beyond "re-evaluate now".
WAKE_RESUMED = "resumed"  # from sleep: overdue charms run once each, staggered
WAKE_NETWORK = "network"  # network back: charms backing off because offline retry now too

# Wall time advancing this much more than monotonic time between two wake-ups means the machine
# slept. Large enough that NTP slews and a loaded machine never trigger it.
WALL_JUMP_THRESHOLD = 10.0
# Overdue charms after a resume (or at start) start this far apart, at most over STAGGER_MAX s.
STAGGER_STEP = 0.25
STAGGER_MAX = 10.0
# Bounds that keep every due time representable and every wait meaningful. The engine refuses
# longer intervals and pauses with a sentence; the scheduler clamps defensively (a value saved
# by an older version, a plugin's far-future Retry-After), so no date arithmetic can overflow.
MAX_INTERVAL = timedelta(days=366)
MAX_PAUSE = timedelta(days=366)
_MAX_DELAY_S = (MAX_INTERVAL * 2).total_seconds()  # the clamp of every computed due time
# After cancelling a timed-out run, how long to wait for it to actually stop before recording it.
CANCEL_GRACE = 5.0
# How long shutdown() waits (real time) for cancelled runs to unwind before giving up on them.
SHUTDOWN_GRACE = 5.0
# Runs in a row that blocked the app and had to be interrupted before the charm is parked.
FREEZE_LIMIT = 3

_CANCEL_TIMEOUT = "timeout"
_CANCEL_SHUTDOWN = "shutdown"
_CANCEL_USER = "user"
_CANCEL_REMOVED = "removed"
_CANCEL_PAUSED = "paused"

# Stale timer entries tolerated beyond twice the charm count before the heap is rebuilt.
_HEAP_SLACK = 32

_ACTION_RUN = "run"
_ACTION_UNPAUSE = "unpause"


_CANCEL_MESSAGES = {
    _CANCEL_SHUTDOWN: "the app was shutting down",
    _CANCEL_USER: "cancelled by the user",
    _CANCEL_REMOVED: "the charm was removed",
    _CANCEL_PAUSED: "paused",
}


_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(err: BaseException) -> str | None:
    """The message for a run that failed because the disk is full, or None if it did not.

    A full disk is the user's to fix and says so in its own words (``storage``), not a ``bug``:
    it shows up as the store's :class:`StoreFullError`, an ``OSError`` (ENOSPC, EDQUOT) from a
    file a pattern writes, or SQLite's own "database or disk is full", possibly as the cause of
    another exception.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StoreFullError):
            return str(current)
        if isinstance(current, OSError) and current.errno in _DISK_FULL_ERRNOS:
            return STORAGE_FULL_MESSAGE
        if isinstance(current, sqlite3.OperationalError) and "full" in str(current).lower():
            return STORAGE_FULL_MESSAGE
        current = current.__cause__ or current.__context__
    return None


def _duration(seconds: float) -> str:
    """A stall's length in words: "45 s", "2 min", "1 h 5 min"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"


# Built without their __init__ (core/slots.py): every run builds these. RunOutcome(kind,
# report, message, traceback, retry_after) for a successful run, and the events it emits.
_ok_outcome = slots.builder(RunOutcome)
_run_started = slots.builder(RunStarted)
_run_finished = slots.builder(RunFinished)
_status_changed = slots.builder(CharmStatusChanged)


def _cancelled(reason: str) -> RunOutcome:
    return RunOutcome(
        OutcomeKind.CANCELLED, message=f"stopped: {_CANCEL_MESSAGES.get(reason, reason)}"
    )


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """How one charm is scheduled. ``jitter`` is a fraction of the interval (0.1 = ±10 %)."""

    charm_id: str
    interval: timedelta
    account_id: str | None = None
    timeout: timedelta = timedelta(minutes=10)
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.interval <= timedelta(0):
            raise ValueError(f"interval of charm {self.charm_id!r} must be positive")
        if self.timeout <= timedelta(0):
            raise ValueError(f"timeout of charm {self.charm_id!r} must be positive")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter of charm {self.charm_id!r} must be in [0, 1)")


@dataclass(eq=False, slots=True)
class _Run:
    """One requested run: queued, then executing, then resolved.

    A run executes in one task (``_execute``), which awaits the updater itself: no second task,
    no per-run event or timer. Its deadline is kept here and enforced by the scheduler's one
    shared deadline timer (``_on_deadline``), which cancels the task; a task that ignores that
    is recorded from outside and abandoned (``_abandon``).
    """

    charm_id: str
    trigger: str
    future: asyncio.Future[RunOutcome]
    task: asyncio.Task[None] | None = None  # _execute, which awaits the updater
    cancel_reason: str | None = None
    auth_account: str | None = None  # from AuthRequired.account_id
    charm_only: bool = False  # from AuthRequired.charm_only: park this charm, not its account
    blocked: str | None = None  # set by the watchdog while this run executes
    account: str | None = None  # the account whose slot it holds (fixed at dispatch)
    started_at: datetime | None = None
    timeout: float = 0.0  # seconds, from the entry when the run started
    deadline: float = 0.0  # monotonic: when the deadline timer acts on this run next
    in_updater: bool = False  # the task awaits the updater: cancelling the task stops it
    cancels: int = 0  # task.cancel() calls made by the scheduler (the rest came from outside)
    overdue: bool = False  # its deadline passed and the task was cancelled: grace period
    recorded: bool = False  # _finish ran: the outcome is in, the slot is free
    frame: FrameType | None = None  # the _execute frame the watchdog knows it by


@dataclass(eq=False, slots=True)
class _Charm:
    entry: ScheduleEntry
    status: CharmStatus  # parked/paused live here, so what is persisted is what is in force
    timer_token: int = 0
    timer_at: float | None = None  # POSIX seconds (wall clock) of the live timer
    timer_action: str = _ACTION_RUN
    timer_trigger: str = TRIGGER_SCHEDULE
    pending: _Run | None = None  # queued, waiting for a slot
    active: _Run | None = None  # executing
    zombie: asyncio.Task[None] | None = None  # ignored cancellation, still running


class Scheduler:
    """Runs charms on their schedules; see the module docstring for the timing rules.

    ``on_event`` receives :class:`CharmStatusChanged`, :class:`RunStarted`, :class:`RunFinished`
    and :class:`LoopBlocked` on the loop thread; its exceptions are logged, never propagated.
    ``loop_lag_threshold`` (seconds, ``<= 0`` disables) is the stall the watchdog reports.
    """

    def __init__(
        self,
        runner: Runner,
        repo: StatusRepo,
        clock: Clock,
        *,
        max_concurrency: int = 4,
        per_account_concurrency: int = 2,
        backoff: BackoffPolicy | None = None,
        rng: random.Random | None = None,
        on_event: EventCallback | None = None,
        loop_lag_threshold: float = 1.0,
    ) -> None:
        if max_concurrency < 1 or per_account_concurrency < 1:
            raise ValueError("concurrency limits must be >= 1")
        self._runner = runner
        self._repo = repo
        self._clock = clock
        self._max_concurrency = max_concurrency
        self._per_account = per_account_concurrency
        self._backoff = backoff or BackoffPolicy()
        self._rng = rng or random.Random()
        self._on_event = on_event
        self._lag_threshold = loop_lag_threshold

        self._persisted = self._load_persisted()
        self._charms: dict[str, _Charm] = {}
        # Timers: (due POSIX seconds, seq, charm id, token); stale entries are skipped lazily.
        self._heap: list[tuple[float, int, str, int]] = []
        self._seq = itertools.count()
        self._queue: OrderedDict[str, _Run] = OrderedDict()
        self._running = 0
        self._running_by_account: Counter[str] = Counter()

        # Executing runs and their charms, for the one shared deadline timer (_on_deadline).
        self._timed: dict[_Run, _Charm] = {}
        self._deadline_handle: Cancellable | None = None
        self._deadline_at = 0.0
        # Status and history writes of runs, saved together once per loop iteration (flush()).
        self._unsaved: dict[str, CharmStatus] = {}
        self._unsaved_runs: list[RunRecord] = []
        # End-of-iteration work (_tidy): the writes above, and dropping the deadline timer and
        # the watchdog once no run executes. One call_soon per loop iteration with runs.
        self._tidy_handle: asyncio.Handle | None = None
        self._watching = False  # the watchdog was told a run executes (run_started)

        self._wakeup = asyncio.Event()
        self._sleeping = False  # the loop is awaiting its wake-up (not mid-iteration)
        self._sleep_until: float | None = None  # when it plans to wake; None: only on a command
        self._wake_reasons: list[str] = []
        self._last_wall: float | None = None
        self._last_mono: float | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._watchdog: LoopWatchdog | None = None
        self._started = False
        self._stopping = False
        self.loop_wakeups = 0  # loop iterations: the "no polling" tests and benchmark read it

    # ---------------------------------------------------------------------------------- lifecycle

    async def start(self, *, schedule: bool = True) -> None:
        """Start the loop. Charms whose due time passed while the app was off run once each.

        ``schedule=False`` (a one-shot ``trayapp sync``): only runs asked for with
        :meth:`run_now` execute; no charm is started by its due time.
        """
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        if self._lag_threshold > 0:
            self._watchdog = LoopWatchdog(loop, self._lag_threshold, self._on_loop_blocked)
        now_dt = self._clock.now()
        now = now_dt.timestamp()
        overdue: list[_Charm] = []
        for charm in self._charms.values():
            # This scheduler runs the profile now: what was saved is taken over as it stands.
            self._set(charm, loaded(charm.status, now_dt))
            if charm.pending is not None or not schedule:
                continue
            due_at = self._due_ts(charm)
            if not charm.status.paused and not charm.status.parked and due_at <= now:
                overdue.append(charm)
            else:
                self._reschedule(charm)
        self._stagger(overdue, TRIGGER_SCHEDULE)
        self._loop_task = loop.create_task(self._loop(), name="trayapp-scheduler")
        self._loop_task.add_done_callback(self._loop_ended)
        self._dispatch()

    async def shutdown(self) -> None:
        """Stop: cancel running runs (recorded as ``cancelled``), drop queued ones, persist.

        Returns within about :data:`SHUTDOWN_GRACE` seconds even if an updater ignores
        cancellation; such a run is recorded as cancelled and left behind.
        """
        if self._stopping:
            return
        self._stopping = True
        self._wakeup.set()
        if self._loop_task is not None:
            await asyncio.wait({self._loop_task})
        for run in list(self._queue.values()):
            self._drop_pending(run, "the app is shutting down")
        runs = [(c, c.active) for c in self._charms.values() if c.active is not None]
        for _, run in runs:
            self._stop_run(run, _CANCEL_SHUTDOWN)
        tasks = {run.task for _, run in runs if run.task is not None}
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
        for charm, run in runs:  # still running: their updaters ignore being cancelled
            self._abandon(charm, run)
        if self._tidy_handle is not None:
            self._tidy_handle.cancel()
        self._tidy()  # everything saved; no deadline timer left
        if self._watchdog is not None:
            self._watchdog.close()

    # --------------------------------------------------------------------------- charm registry

    def add(self, entry: ScheduleEntry) -> None:
        """Schedule a charm. One with persisted status keeps its due time; a new one runs now."""
        if entry.charm_id in self._charms:
            raise ValueError(f"charm {entry.charm_id!r} is already scheduled; use update()")
        account = entry.account_id
        status = self._persisted.pop(entry.charm_id, None)
        if status is None:
            # New: it waits with its siblings if their account needs signing in again. Due at
            # once when the loop runs; not started, "no due time yet" (the start runs it).
            status = CharmStatus(
                entry.charm_id,
                next_due_at=self._clock.now() if self._started else None,
                parked=self._account_parked(account),
            )
        elif self._started:
            status = loaded(status, self._clock.now())
        charm = _Charm(entry=entry, status=status)
        self._charms[entry.charm_id] = charm
        if self._started:
            # Not before: an engine that only reads (``trayapp status``) writes nothing.
            self._set(charm, status, force=True)
            self._reschedule(charm)

    def update(self, entry: ScheduleEntry) -> None:
        """Change a charm's interval, account, timeout or jitter.

        A new interval takes effect from the last run's end (so a shorter interval may make the
        charm due at once); a charm backing off keeps its backoff.
        """
        charm = self._get(entry.charm_id)
        old = charm.entry
        charm.entry = entry
        changes: dict[str, Any] = {}
        if entry.account_id != old.account_id:
            changes["parked"] = self._account_parked(entry.account_id, besides=charm)
        if (
            self._started
            and entry.interval != old.interval
            and charm.status.state is not CharmState.BACKING_OFF
        ):
            base = charm.status.last_run_at or self._clock.now()
            changes["next_due_at"] = self._after(base, self._interval_delay(entry))
        self._update(charm, **changes)
        if self._started and charm.pending is None and charm.active is None:
            self._reschedule(charm)

    def remove(self, charm_id: str) -> None:
        """Forget a charm: its timer, queued run and status go; a running run is cancelled."""
        charm = self._get(charm_id)
        del self._charms[charm_id]
        self._clear_timer(charm)
        if charm.pending is not None:
            self._drop_pending(charm.pending, "the charm was removed")
        if charm.active is not None:
            self._stop_run(charm.active, _CANCEL_REMOVED)
        # Its writes not saved yet must not bring it back after the delete.
        self._unsaved.pop(charm_id, None)
        self._unsaved_runs = [r for r in self._unsaved_runs if r.charm_id != charm_id]
        try:
            self._repo.delete(charm_id)
        except Exception:
            log.exception("could not delete the status of charm %s", charm_id)

    # ---------------------------------------------------------------------------------- commands

    def run_now(self, charm_id: str, trigger: str = TRIGGER_MANUAL) -> asyncio.Future[RunOutcome]:
        """Run a charm as soon as a slot is free; the future resolves with its outcome.

        Coalesces: if a run of this charm is queued or in progress, its future is returned and no
        second run starts. A queued run_now jumps ahead of scheduled runs. A paused charm runs
        once and stays paused; a parked charm runs once (the user asked) and is unparked only if
        that run succeeds.
        """
        charm = self._get(charm_id)
        if charm.active is not None:
            return charm.active.future
        if self._stopping:
            future: asyncio.Future[RunOutcome] = asyncio.get_running_loop().create_future()
            future.set_result(
                RunOutcome(OutcomeKind.CANCELLED, message="not run: the app is shutting down")
            )
            return future
        wait = charm.status.waiting_until(self._clock.now()) if charm.pending is None else None
        if wait is not None and trigger == TRIGGER_MANUAL:
            # The server said when to try again: not even the user's sync asks sooner
            # (docs/plugins.md). Nothing runs and nothing is recorded; its timer stays.
            future = asyncio.get_running_loop().create_future()
            future.set_result(waiting_outcome(wait))
            return future
        run = self._enqueue(charm, trigger)
        run.trigger = trigger  # a queued scheduled run becomes the user's run
        self._queue.move_to_end(charm_id, last=False)
        self._dispatch()
        return run.future

    def run_soon(self, charm_id: str) -> None:
        """The user asked for a run: now if the loop runs (:meth:`run_now`), else it is made due
        now (saved), so the start runs it first."""
        if self._started:
            self.run_now(charm_id)
        else:
            charm = self._get(charm_id)
            now = self._clock.now()
            if charm.status.waiting_until(now) is None:  # else: due when the server allows
                self._set(charm, due(charm.status, now))

    def refresh(self) -> None:
        """Not started: re-read the saved statuses (another process may be running these
        charms, or changed them). A started scheduler is the one writer: nothing to read."""
        if self._started:
            return
        persisted = self._load_persisted()
        for charm_id, charm in self._charms.items():
            saved = persisted.get(charm_id)
            if saved is not None:
                charm.status = saved

    def busy(self, charm_id: str) -> bool:
        """Whether a run of the charm executes in this scheduler now."""
        return self._get(charm_id).active is not None

    def cancel(self, charm_id: str) -> bool:
        """Cancel a charm's running or queued run (recorded as ``cancelled``). False if none."""
        charm = self._get(charm_id)
        if charm.pending is not None:
            self._drop_pending(charm.pending, "cancelled by the user")
            self._reschedule(charm)
            return True
        run = charm.active
        if run is None or run.cancel_reason is not None or run.recorded:
            return False
        self._stop_run(run, _CANCEL_USER)
        return True

    def pause(self, charm_id: str | None = None, until: datetime | None = None) -> None:
        """Pause one charm (or all): no scheduled runs until resumed or until ``until``.

        A run already in progress finishes; a queued run the user did not ask for (scheduled,
        after a resume from sleep, after a sign-in) is dropped, as it would not have been queued
        had the charm been paused already. The pause and its end time persist
        (``CharmStatus.paused``/``paused_until``).
        """
        if until is not None and until.tzinfo is None:
            raise ValueError("pause(until=...) needs an aware datetime")
        for charm in self._select(charm_id):
            if charm.pending is not None and charm.pending.trigger != TRIGGER_MANUAL:
                self._drop_pending(charm.pending, "paused")
            self._set(charm, paused(charm.status, until))
            if charm.pending is None and charm.active is None:
                self._reschedule(charm)

    def resume(self, charm_id: str | None = None) -> None:
        """Undo :meth:`pause`. A charm whose due time passed while paused runs now (once).

        A parked charm without an account (its pattern raised AuthRequired for a token in its
        settings) has no sign-in to wait for: resuming it is the user's "try again", so it is
        unparked and runs now (see :meth:`unpark`).
        """
        for charm in self._select(charm_id):
            self.unpark(charm.entry.charm_id)
            if charm.status.paused:
                self._unpause(charm)

    def unpark(self, charm_id: str) -> bool:
        """Unpark a parked charm that has no account, or that was parked because it blocked
        the app (``parked_frozen``), and make it due now; False otherwise.

        Other charms with an account stay parked until the account is usable
        (:meth:`account_usable`): signing in is what fixes them. A resumed frozen charm that
        blocks the app once more is parked again at once (``freezes`` is kept until a run ends
        some other way).
        """
        charm = self._get(charm_id)
        status = charm.status
        if not status.parked or (charm.entry.account_id is not None and not status.parked_frozen):
            return False
        self._set(charm, due(unparked(charm.status), self._clock.now()))
        if charm.pending is None and charm.active is None:
            self._reschedule(charm)
        return True

    def account_usable(self, account_id: str) -> None:
        """The account works again (signed in): unpark its charms and run them all now (not
        started: they are made due now, so the start runs them first)."""
        for charm in self._charms.values():
            if charm.entry.account_id != account_id or not charm.status.parked:
                continue
            if charm.status.parked_frozen:
                continue  # it waits for the user's resume, not for the account
            if not self._started:
                self._set(charm, due(unparked(charm.status), self._clock.now()))
                continue
            self._set(charm, unparked(charm.status))
            if charm.active is not None:
                continue
            if charm.status.paused:
                self._reschedule(charm)
            else:
                self._clear_timer(charm)
                self._enqueue(charm, TRIGGER_ACCOUNT)
        self._dispatch()

    def wake(self, reason: str) -> None:
        """Re-evaluate now: after a resume from sleep (:data:`WAKE_RESUMED`), when the network
        came back (:data:`WAKE_NETWORK`: charms backing off because offline retry too), or for
        any other reason (just re-plan). Overdue charms run once each, staggered.
        """
        self._wake_reasons.append(reason)
        self._wakeup.set()

    # ------------------------------------------------------------------------------------ status

    def status(self, charm_id: str) -> CharmStatus:
        return self._get(charm_id).status

    def statuses(self) -> dict[str, CharmStatus]:
        return {charm_id: charm.status for charm_id, charm in self._charms.items()}

    def entries(self) -> dict[str, ScheduleEntry]:
        """A copy: for comparing every entry (reload). For membership use ``charm_id in``."""
        return {charm_id: charm.entry for charm_id, charm in self._charms.items()}

    def __contains__(self, charm_id: object) -> bool:
        """Whether the charm is scheduled here; O(1), no copy (the engine asks per command)."""
        return charm_id in self._charms

    @property
    def running(self) -> int:
        """How many runs are executing now."""
        return self._running

    # -------------------------------------------------------------------------------- the loop

    async def _loop(self) -> None:
        while True:
            # Single-threaded: no command can slip in between clear() and the wait below.
            self._wakeup.clear()
            if self._stopping:
                return
            self.loop_wakeups += 1
            try:
                self._check_wall_jump()
                if self._wake_reasons:
                    reasons, self._wake_reasons = self._wake_reasons, []
                    self._on_wake(reasons)
                self._fire_due_timers()
                self._dispatch()
            except Exception:
                # A scheduler bug must not stop every charm for good: log it and keep planning.
                log.exception("scheduler loop iteration failed")
            timeout = self._seconds_to_next_timer()
            self._sleep_until = None if timeout is None else self._clock.now().timestamp() + timeout
            self._sleeping = True
            try:
                await self._clock.wait(self._wakeup, timeout)
            finally:
                self._sleeping = False

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the scheduler loop crashed", exc_info=task.exception())

    def _check_wall_jump(self) -> None:
        wall = self._clock.now().timestamp()
        mono = self._clock.monotonic()
        if self._last_wall is not None and self._last_mono is not None:
            drift = (wall - self._last_wall) - (mono - self._last_mono)
            if drift > WALL_JUMP_THRESHOLD:
                log.info("wall clock jumped %.0f s ahead (suspend/resume?)", drift)
                self._stagger(self._overdue(), TRIGGER_RESUME)
            elif drift < -WALL_JUMP_THRESHOLD:
                log.info("wall clock stepped %.0f s back", -drift)
                self._clamp_future_timers()
        self._last_wall, self._last_mono = wall, mono

    def _on_wake(self, reasons: list[str]) -> None:
        overdue = self._overdue()
        if WAKE_NETWORK in reasons:
            seen = {c.entry.charm_id for c in overdue}
            overdue += [
                c
                for c in self._charms.values()
                if c.entry.charm_id not in seen
                and c.timer_at is not None
                and c.timer_action == _ACTION_RUN
                and c.status.last_error_kind is OutcomeKind.OFFLINE
            ]
        trigger = TRIGGER_RESUME if WAKE_RESUMED in reasons else TRIGGER_SCHEDULE
        self._stagger(overdue, trigger)

    def _overdue(self) -> list[_Charm]:
        now = self._clock.now().timestamp()
        return [
            c
            for c in self._charms.values()
            if c.timer_at is not None and c.timer_action == _ACTION_RUN and c.timer_at <= now
        ]

    def _stagger(self, charms: list[_Charm], trigger: str) -> None:
        """Make overdue charms due now, a short step apart in their original order."""
        if not charms:
            return
        charms.sort(key=lambda c: (self._due_ts(c), c.entry.charm_id))
        step = min(STAGGER_STEP, STAGGER_MAX / len(charms))
        now = self._clock.now().timestamp()
        for i, charm in enumerate(charms):
            self._set_timer(charm, now + i * step, _ACTION_RUN, trigger)

    def _clamp_future_timers(self) -> None:
        """After a backward wall step, no charm should wait longer than it could have planned."""
        now = self._clock.now()
        for charm in self._charms.values():
            if charm.timer_at is None or charm.timer_action != _ACTION_RUN:
                continue
            entry = charm.entry
            longest = entry.interval.total_seconds() * (1 + entry.jitter)
            if charm.status.state is CharmState.BACKING_OFF:
                longest = max(longest, self._backoff.cap)
            if charm.timer_at > now.timestamp() + longest:
                self._set(charm, due(charm.status, self._after(now, self._interval_delay(entry))))
                self._reschedule(charm)

    def _fire_due_timers(self) -> None:
        now = self._clock.now().timestamp()
        while self._heap and self._heap[0][0] <= now:
            _, _, charm_id, token = heapq.heappop(self._heap)
            charm = self._charms.get(charm_id)
            if charm is None or charm.timer_token != token or charm.timer_at is None:
                continue
            action, trigger = charm.timer_action, charm.timer_trigger
            charm.timer_at = None
            if action == _ACTION_UNPAUSE:
                self._unpause(charm)
            else:
                self._enqueue(charm, trigger)

    def _seconds_to_next_timer(self) -> float | None:
        while self._heap:
            _, _, charm_id, token = self._heap[0]
            charm = self._charms.get(charm_id)
            if charm is not None and charm.timer_token == token and charm.timer_at is not None:
                return max(0.0, self._heap[0][0] - self._clock.now().timestamp())
            heapq.heappop(self._heap)  # stale: drop it so it never causes a wake-up
        return None

    # -------------------------------------------------------------------------------- timers

    def _set_timer(self, charm: _Charm, at: float, action: str, trigger: str) -> None:
        charm.timer_token += 1
        charm.timer_at = at
        charm.timer_action = action
        charm.timer_trigger = trigger
        heapq.heappush(self._heap, (at, next(self._seq), charm.entry.charm_id, charm.timer_token))
        if len(self._heap) > 2 * len(self._charms) + _HEAP_SLACK:
            self._compact_timers()
        # Earlier than the loop's planned wake-up: let it re-plan. Not when later: a finished run
        # arming its next timer must not wake an idle loop. (While the loop is mid-iteration it
        # plans after this anyway.)
        if self._sleeping and (self._sleep_until is None or at < self._sleep_until):
            self._wakeup.set()

    def _compact_timers(self) -> None:
        """Drop the stale timer entries that are not at the top of the heap.

        Re-arming a timer leaves the old entry behind (a heap cannot delete from the middle);
        it is skipped when it reaches the top, at its old due time. A charm re-armed faster
        than its interval (manual syncs, a backoff re-planned, runs triggered by wake-ups) thus
        left one dead entry per run until that time: with a 6-hour interval and a sync every
        5 minutes the heap grew by 72 entries per charm, and without bound when due times keep
        moving out. Rebuilding once the heap holds twice the charms (plus slack) keeps it
        O(charms) at O(1) amortised cost per timer.
        """
        live = [
            item
            for item in self._heap
            if (charm := self._charms.get(item[2])) is not None
            and charm.timer_token == item[3]
            and charm.timer_at is not None
        ]
        heapq.heapify(live)
        self._heap = live

    @property
    def timer_backlog(self) -> int:
        """Timer entries held, live and stale (tests and the soak benchmark check its bound)."""
        return len(self._heap)

    def _clear_timer(self, charm: _Charm) -> None:
        charm.timer_token += 1
        charm.timer_at = None

    def _reschedule(self, charm: _Charm) -> None:
        """Arm the one timer a charm at rest needs: its next run, or the end of its pause."""
        charm.timer_token += 1  # _clear_timer, inline: every run ends here
        charm.timer_at = None
        if self._stopping or charm.pending is not None or charm.active is not None:
            return
        status = charm.status
        if status.paused:
            if status.paused_until is not None:
                self._set_timer(
                    charm, status.paused_until.timestamp(), _ACTION_UNPAUSE, TRIGGER_SCHEDULE
                )
        elif not status.parked:
            due = status.next_due_at
            at = due.timestamp() if due is not None else self._clock.now().timestamp()
            self._set_timer(charm, at, _ACTION_RUN, TRIGGER_SCHEDULE)

    def _due_ts(self, charm: _Charm) -> float:
        due = charm.status.next_due_at
        return due.timestamp() if due is not None else self._clock.now().timestamp()

    def _unpause(self, charm: _Charm) -> None:
        self._set(charm, resumed(charm.status))
        if charm.pending is None and charm.active is None:
            self._reschedule(charm)

    def _interval_delay(self, entry: ScheduleEntry) -> float:
        seconds = min(entry.interval, MAX_INTERVAL).total_seconds()
        # rng.uniform(-1.0, 1.0), which is exactly this, without its call (every run).
        return seconds * (1.0 + entry.jitter * (-1.0 + 2.0 * self._rng.random()))

    @staticmethod
    def _after(when: datetime, seconds: float) -> datetime:
        """``when`` plus a delay, clamped so no interval, backoff or Retry-After overflows."""
        if seconds > _MAX_DELAY_S:
            seconds = _MAX_DELAY_S
        elif not seconds > 0.0:  # negative or NaN
            seconds = 0.0
        return when + timedelta(0, seconds)

    # ------------------------------------------------------------------------- queue and slots

    def _enqueue(self, charm: _Charm, trigger: str) -> _Run:
        if charm.active is not None:
            return charm.active
        if charm.pending is not None:
            return charm.pending
        self._clear_timer(charm)
        future: asyncio.Future[RunOutcome] = asyncio.get_running_loop().create_future()
        run = _Run(charm_id=charm.entry.charm_id, trigger=trigger, future=future)
        charm.pending = run
        self._queue[run.charm_id] = run
        return run

    def _drop_pending(self, run: _Run, why: str) -> None:
        self._queue.pop(run.charm_id, None)
        charm = self._charms.get(run.charm_id)
        if charm is not None and charm.pending is run:
            charm.pending = None
        if not run.future.done():
            run.future.set_result(RunOutcome(OutcomeKind.CANCELLED, message=f"not run: {why}"))

    def _dispatch(self) -> None:
        """Start queued runs while slots are free, oldest first."""
        if (
            self._running >= self._max_concurrency
            or not self._queue
            or not self._started
            or self._stopping
        ):
            return
        starting: list[tuple[_Charm, _Run]] = []
        for charm_id, run in self._queue.items():
            if self._running >= self._max_concurrency:
                break
            charm = self._charms[charm_id]
            if charm.zombie is not None:
                continue
            account = charm.entry.account_id
            if account is not None:
                if self._running_by_account[account] >= self._per_account:
                    continue
                self._running_by_account[account] += 1
            self._running += 1
            run.account = account
            starting.append((charm, run))
        for charm, run in starting:
            del self._queue[run.charm_id]
            charm.pending = None
            charm.active = run
            run.task = asyncio.get_running_loop().create_task(
                self._execute(charm, run), name=f"trayapp-run:{run.charm_id}"
            )

    def _release_slot(self, run: _Run) -> None:
        self._running -= 1
        account = run.account
        if account is not None:
            self._running_by_account[account] -= 1
            if self._running_by_account[account] <= 0:
                del self._running_by_account[account]

    # -------------------------------------------------------------------------------- one run

    def _stop_run(self, run: _Run, reason: str) -> None:
        """Cancel a dispatched run. One whose task has not reached the updater yet ends before
        it calls it (see the top of _execute); one in its updater has its task cancelled."""
        run.cancel_reason = run.cancel_reason or reason
        if run.in_updater and not run.recorded:
            self._cancel_task(run)

    def _cancel_task(self, run: _Run) -> None:
        task = run.task
        if task is not None and not task.done():
            run.cancels += 1
            task.cancel()

    async def _execute(self, charm: _Charm, run: _Run) -> None:
        """The one task of a run: mark it running, await the updater, classify and record how
        it ended.

        This coroutine's frame is what the watchdog looks for on the loop thread's stack: while
        an updater blocks the loop, this frame is below it and is labelled with ``charm_id``.
        (The updater is awaited here, not in a coroutine of its own: one frame less per run.)
        """
        charm_id = charm.entry.charm_id
        run.started_at = self._clock.now()
        if run.cancel_reason is not None:  # stopped between dispatch and this first step
            self._finish(charm, run, _cancelled(run.cancel_reason))
            return
        self._set(charm, started(charm.status), changed=True, defer=True)  # -> RUNNING
        if self._on_event is not None:
            self._emit(_run_started(charm_id, run.trigger))

        run.frame = sys._getframe()
        run.timeout = timeout = charm.entry.timeout.total_seconds()
        watchdog = self._watchdog
        label = None
        if watchdog is not None:
            # Its deadline in real time too: the watchdog interrupts a run that blocks the
            # loop past it (it can never reach the await where its cancellation would land).
            # Also in this task's context: the tasks its updater starts belong to the run.
            label = watchdog.label(run.frame, charm_id, timeout)
            enter_run(label)
        self._arm_deadline(charm, run, self._clock.monotonic() + timeout)
        run.in_updater = True
        outcome: RunOutcome | None = None
        try:
            result = await self._runner(charm_id, run.trigger)
            if isinstance(result, RunReport):
                outcome = _ok_outcome(OutcomeKind.OK, result, "", None, None)
            elif isinstance(result, RunOutcome):
                outcome = result
            else:
                outcome = RunOutcome(
                    OutcomeKind.BUG,
                    message=f"the updater returned {type(result).__name__}, expected a RunReport",
                )
        except asyncio.CancelledError:
            task = run.task
            if task is not None and task.cancelling() > run.cancels:
                # Cancelled from outside the scheduler (not by _stop_run or the deadline):
                # recorded as cancelled, and the cancellation goes on up, as expected.
                run.in_updater = False
                if not run.recorded:
                    if watchdog is not None:
                        watchdog.unlabel(run.frame)
                    run.frame = None
                    self._finish(charm, run, RunOutcome(OutcomeKind.CANCELLED))
                raise
            if run.cancel_reason is None:
                outcome = RunOutcome(
                    OutcomeKind.BUG,
                    message="the updater was cancelled from inside (a CancelledError escaped it)",
                )
        except SyncError as err:
            if isinstance(err, AuthRequired):
                run.auth_account = err.account_id
                run.charm_only = err.charm_only
            retry_after = err.retry_after if isinstance(err, RateLimited) else None
            outcome = RunOutcome(err.kind, message=err.message or str(err), retry_after=retry_after)
        except UpdaterFroze as froze:
            outcome = self._froze(charm_id, froze)
        except Exception as err:
            full = disk_full(err)
            if full is not None:
                outcome = RunOutcome(OutcomeKind.STORAGE, message=full)
            else:
                outcome = RunOutcome(
                    OutcomeKind.BUG,
                    message=f"{type(err).__name__}: {err}",
                    traceback=traceback.format_exc(),
                )
        finally:
            run.in_updater = False
            # The scheduler's own code from here on is not the run's: the watchdog must never
            # interrupt it (the tasks the updater started keep their own copy of the context).
            enter_run(None)
        if run.recorded:  # abandoned after ignoring cancellation; _zombie_done cleans up
            return
        if watchdog is not None:
            stuck = label.froze if label is not None else None
            if stuck is not None and (outcome is None or outcome.kind is not OutcomeKind.FROZE):
                # Interrupted in a task its updater started (asyncio.gather): the deadline's
                # cancellation may have reached the run first; what happened is that it froze.
                outcome = self._froze(charm_id, stuck)
            watchdog.unlabel(run.frame)
        # Done with the frame: a frame object kept past its coroutine's end keeps the
        # coroutine's locals (this run among them), a reference cycle only the garbage
        # collector would free, for every run.
        run.frame = None
        if run.cancels:
            task = run.task
            if task is not None:
                for _ in range(run.cancels):  # our own cancellations end here, handled
                    task.uncancel()
        self._finish(charm, run, self._outcome_of(run, outcome))

    def _froze(self, charm_id: str, froze: UpdaterFroze) -> RunOutcome:
        """The outcome of a run the watchdog interrupted because it blocked the loop."""
        # Where the updater was stuck: its frames, without the watchdog's signal handler.
        handler = watchdog_module.rescue_handler_code()
        frames = traceback.StackSummary.extract(
            (frame, line)
            for frame, line in traceback.walk_tb(froze.__traceback__)
            if frame.f_code is not handler
        )
        stack = (
            "The updater was stuck here when it was stopped (most recent call last):\n"
            + "".join(frames.format())
        )
        log.error(
            "charm %s blocked the app for %.0f s, past its time limit, and was stopped; its "
            "updater must not call blocking code (use ctx.http, or asyncio.to_thread for "
            "blocking work). Where it was stuck:\n%s",
            charm_id,
            froze.seconds,
            redact(stack),
        )
        return RunOutcome(
            OutcomeKind.FROZE,
            message=(
                f"stopped: it blocked Pattern Sync for {_duration(froze.seconds)}; "
                "the plugin must not call blocking code"
            ),
            traceback=stack,
        )

    def _outcome_of(
        self, run: _Run, result: RunOutcome | None, *, ended: bool = True
    ) -> RunOutcome:
        """How a run ended, given what its updater returned (None: it raised CancelledError;
        ``ended`` False: it is still running, having ignored being cancelled)."""
        reason = run.cancel_reason
        if result is not None and result.kind is OutcomeKind.FROZE:
            # Interrupted by the watchdog: the loop was blocked, so the deadline's timer may
            # have fired right after; what happened is that it froze.
            return result
        if reason == _CANCEL_TIMEOUT:
            message = f"the update took longer than {run.timeout:g} s and was stopped"
            if not ended:
                message = (
                    f"the update took longer than {run.timeout:g} s and ignored being stopped; "
                    "it will not run again until it ends (the pattern must not swallow "
                    "asyncio.CancelledError)"
                )
            return RunOutcome(OutcomeKind.TIMEOUT, message=message)
        if result is not None:
            return result  # it finished before the cancellation reached it
        return _cancelled(reason or _CANCEL_USER)

    # ------------------------------------------------------------------------- run deadlines

    def _arm_deadline(self, charm: _Charm, run: _Run, deadline: float) -> None:
        """Give an executing run its deadline. One timer serves every executing run: it is
        re-armed only when this deadline is earlier than the one it waits for (rare: runs start
        in order and share timeouts), and dropped when no run executes."""
        run.deadline = deadline
        self._timed[run] = charm
        if self._watchdog is not None and not self._watching:
            self._watching = True
            self._watchdog.run_started()  # until no run executes: see _tidy
        if self._deadline_handle is None or deadline < self._deadline_at:
            self._set_deadline_timer(deadline)

    def _set_deadline_timer(self, at: float) -> None:
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
        self._deadline_at = at
        delay = max(0.0, at - self._clock.monotonic())
        self._deadline_handle = self._clock.call_later(delay, self._on_deadline)

    def _disarm_deadline(self, run: _Run) -> None:
        """The run is recorded. Once no run executes or waits to start, the deadline timer and
        the watchdog stop at the end of this loop iteration (_tidy): runs that follow one
        another (many due at once) share one timer, not one each. A timer left for a run that
        ended fires once, finds nothing past its deadline and re-arms for the earliest."""
        self._timed.pop(run, None)
        if not self._timed:
            self._tidy_soon()

    def _on_deadline(self) -> None:
        """The earliest deadline passed: cancel the runs past theirs; abandon those that were
        cancelled for it :data:`CANCEL_GRACE` seconds ago and still run."""
        self._deadline_handle = None
        at = self._deadline_at
        now = self._clock.monotonic()
        for run, charm in [(r, c) for r, c in self._timed.items() if r.deadline <= at]:
            if run.overdue:
                self._abandon(charm, run)
                continue
            run.cancel_reason = run.cancel_reason or _CANCEL_TIMEOUT
            run.overdue = True
            run.deadline = now + CANCEL_GRACE
            self._cancel_task(run)
        if self._timed:
            self._set_deadline_timer(min(r.deadline for r in self._timed))

    def _abandon(self, charm: _Charm, run: _Run) -> None:
        """Record a run whose updater ignores being cancelled, and leave its task running: the
        charm does not run again until it ends (``_Charm.zombie``)."""
        if run.recorded:
            return
        log.error("charm %s ignored cancellation; its updater is still running", run.charm_id)
        task = run.task
        if task is not None and not task.done():
            aio.abandon(task)  # the process must not wait for it at exit either
            charm.zombie = task
            frame = run.frame
            task.add_done_callback(lambda _: self._zombie_done(charm, frame))
        self._finish(charm, run, self._outcome_of(run, None, ended=False))

    def _zombie_done(self, charm: _Charm, frame: FrameType | None) -> None:
        charm.zombie = None
        if self._watchdog is not None:
            self._watchdog.unlabel(frame)
        log.info("the abandoned run of charm %s finally stopped", charm.entry.charm_id)
        self._dispatch()

    def _finish(self, charm: _Charm, run: _Run, outcome: RunOutcome) -> None:
        if run.recorded:
            return
        run.recorded = True
        self._disarm_deadline(run)
        charm_id = charm.entry.charm_id
        ended = self._clock.now()
        started_at = run.started_at or ended
        charm.active = None
        self._release_slot(run)
        # Messages and tracebacks are persisted and shown (tray, --json): scrub secrets first.
        # Most runs end OK with neither: no regex pass and no copy for them (issue 17.6).
        if outcome.message or outcome.traceback:
            outcome = replace(
                outcome,
                message=redact(outcome.message) if outcome.message else outcome.message,
                traceback=redact(outcome.traceback) if outcome.traceback else outcome.traceback,
            )
        if outcome.kind is OutcomeKind.FROZE and charm.status.freezes + 1 >= FREEZE_LIMIT:
            outcome = replace(
                outcome,
                message=(
                    f"{outcome.message}; it did so {charm.status.freezes + 1} times in a row, "
                    "so it will not try again until you resume it"
                ),
            )
        record = RunRecord.from_outcome(charm_id, started_at, ended, outcome, run.trigger)
        removed = self._charms.get(charm_id) is not charm
        if not removed:
            self._record(charm, run, record, outcome, ended, run.account)
        self._emit(_run_finished(record))
        if not run.future.done():
            run.future.set_result(outcome)
        self._dispatch()

    def _record(
        self,
        charm: _Charm,
        run: _Run,
        record: RunRecord,
        outcome: RunOutcome,
        ended: datetime,
        account: str | None,
    ) -> None:
        kind = outcome.kind
        status = charm.status
        next_due: datetime | None
        frozen_out = kind is OutcomeKind.FROZE and status.freezes + 1 >= FREEZE_LIMIT
        if kind is OutcomeKind.AUTH_REQUIRED or frozen_out:
            next_due = None  # parked until the account is usable / the user resumes it
        elif kind.retries_slowly:
            # Only the user can fix it: try again rarely, in case it was fixed elsewhere.
            slow = max(self._backoff.cap, self._interval_delay(charm.entry))
            next_due = self._after(ended, slow)
        elif kind.backs_off:
            delay = self._backoff.delay(status.consecutive_failures + 1, self._rng)
            if outcome.retry_after is not None:
                asked = (outcome.retry_after - ended).total_seconds()
                if asked > MAX_RETRY_AFTER.total_seconds():
                    log.warning(
                        "charm %s: the server asked to wait until %s; waiting a day at most",
                        charm.entry.charm_id,
                        outcome.retry_after.isoformat(),
                    )
                delay = max(delay, min(asked, MAX_RETRY_AFTER.total_seconds()))
            next_due = self._after(ended, delay)
        elif run.cancel_reason == _CANCEL_SHUTDOWN:
            next_due = ended  # interrupted: run it again at the next start
        else:
            delay = self._interval_delay(charm.entry)
            asked_poll = outcome.report.next_poll if kind is OutcomeKind.OK else None
            if asked_poll is not None:  # the pattern asked for a later poll: at most a day
                delay = max(delay, min(asked_poll, MAX_RETRY_AFTER).total_seconds())
            next_due = self._after(ended, delay)
        # Whether a success unparks it. Only a parked charm needs the answer, and asking scans
        # every charm of the scheduler (_account_parked): not on every run (issue 17.6).
        unpark = (
            not status.parked
            or account is None
            or run.trigger == TRIGGER_MANUAL  # the user ran it and it worked: it is fine
            or not self._account_parked(account, besides=charm)
        )
        new = finished(
            status, outcome, ended, next_due_at=next_due, unpark=unpark, blocked=run.blocked
        )

        self._unsaved_runs.append(record)  # saved with the status, in one transaction
        if self._tidy_handle is None:
            self._tidy_soon()
        self._set(charm, new, changed=status.running, defer=True)  # running -> not: changed
        if frozen_out:
            log.error(
                "charm %s blocked the app %d times in a row; it is parked until resumed",
                charm.entry.charm_id,
                new.freezes,
            )
            self._park(charm, None, alone=True, frozen=True)
        elif kind is OutcomeKind.AUTH_REQUIRED and run.charm_only:
            self._park(charm, None, alone=True)  # the account works: its other charms go on
        elif kind is OutcomeKind.AUTH_REQUIRED:
            self._park(charm, run.auth_account or account)
        elif not self._stopping:
            self._reschedule(charm)

    def _account_parked(self, account: str | None, besides: _Charm | None = None) -> bool:
        """Whether ``account`` needs the user: some charm of it (other than ``besides``) is
        parked for its account (not just for a permission of its own). Derived from the charms'
        own ``parked`` (the one place parking lives), so a charm added later for that account
        waits with its siblings, also after a restart."""
        if account is None:
            return False
        return any(
            c.entry.account_id == account
            and c.status.parked
            and not c.status.parked_alone
            and c is not besides
            for c in self._charms.values()
        )

    def _park(
        self, charm: _Charm, account: str | None, *, alone: bool = False, frozen: bool = False
    ) -> None:
        """Park every charm of ``account`` (or just this one if ``account`` is None; ``alone``:
        for a permission only this charm lacks, see ``CharmStatus.parked_alone``; ``frozen``:
        it blocked the app too often, see ``CharmStatus.parked_frozen``)."""
        if account is None:
            targets = [charm]
        else:
            targets = [c for c in self._charms.values() if c.entry.account_id == account]
            if charm not in targets:
                targets.append(charm)
        for target in targets:
            if target.pending is not None and target.pending.trigger != TRIGGER_MANUAL:
                self._drop_pending(target.pending, "its account needs signing in again")
            if target.active is None and target.pending is None:
                self._clear_timer(target)
            self._set(target, parked(target.status, alone=alone, frozen=frozen))

    # ---------------------------------------------------------------------------- watchdog

    def _on_loop_blocked(self, charm_id: str | None, seconds: float) -> None:
        log.warning(
            "the event loop was blocked for %.1f s%s",
            seconds,
            f" by charm {charm_id}" if charm_id else "",
        )
        self._emit(LoopBlocked(charm_id, seconds))
        charm = self._charms.get(charm_id) if charm_id is not None else None
        if charm is None:
            return
        message = (
            f"its updater blocked the app for {seconds:.1f} s; it must not call blocking code "
            "(use await, or asyncio.to_thread for blocking work)"
        )
        if charm.active is not None:
            charm.active.blocked = message
        self._update(charm, blocked_loop=message)

    # ------------------------------------------------------------------------------ helpers

    def _get(self, charm_id: str) -> _Charm:
        charm = self._charms.get(charm_id)
        if charm is None:
            raise NotFoundError(f"no charm {charm_id!r} is scheduled; check the charm id")
        return charm

    def _select(self, charm_id: str | None) -> Iterable[_Charm]:
        return list(self._charms.values()) if charm_id is None else [self._get(charm_id)]

    def _update(self, charm: _Charm, **changes: Any) -> None:
        self._set(charm, charm.status.with_(**changes))

    def _set(
        self,
        charm: _Charm,
        status: CharmStatus,
        *,
        force: bool = False,
        changed: bool = False,
        defer: bool = False,
    ) -> None:
        """The one writer of a charm's status: keep, persist and announce it if it changed.

        ``changed``: the caller knows it differs (a run started or ended), so no comparison.
        ``defer``: saved with the other writes of this loop iteration (:meth:`flush`), not at
        once; for the per-run writes, so many runs ending together cost one transaction.
        """
        if not (force or changed) and status == charm.status:
            return
        charm.status = status
        charm_id = status.charm_id
        if self._charms.get(charm_id) is not charm:
            return
        self._unsaved[charm_id] = status
        if defer:
            if self._tidy_handle is None:
                self._tidy_soon()
        else:
            self.flush()
        if self._on_event is not None:
            self._emit(_status_changed(charm_id, status))

    def _tidy_soon(self) -> None:
        """Run :meth:`_tidy` at the end of this loop iteration (at once if the loop is off)."""
        if self._tidy_handle is None:
            if self._started and not self._stopping:
                self._tidy_handle = asyncio.get_running_loop().call_soon(self._tidy)
            else:
                self._tidy()

    def _tidy(self) -> None:
        self._tidy_handle = None
        self.flush()
        if self._timed or self._running:
            return  # runs execute or are about to start: the timer and the watchdog stay
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()  # nothing executes: no wake-up left behind
            self._deadline_handle = None
        if self._watching and self._watchdog is not None:
            self._watching = False
            self._watchdog.run_finished()

    def flush(self) -> None:
        """Save the statuses and run records not saved yet, in one transaction.

        A run's writes wait at most until the end of the loop iteration it ended in; they are
        also flushed before a status is written at once, by :meth:`remove` and by
        :meth:`shutdown`. Readers of the repo's history call this first (``Engine.history``).
        A run's record and its status are saved in the same transaction, so a crash keeps both
        or neither: the charm then just runs again, as after a crash mid-run.
        """
        if not self._unsaved and not self._unsaved_runs:
            return
        statuses = list(self._unsaved.values())
        records = self._unsaved_runs
        self._unsaved, self._unsaved_runs = {}, []
        try:
            self._repo.save_batch(statuses, records)
            return
        except Exception:
            log.debug(
                "saving %d statuses and %d runs together failed",
                len(statuses),
                len(records),
                exc_info=True,
            )
        # One bad write must not cost the others: save them one by one, naming each failure.
        for record in records:
            try:
                self._repo.append_run(record)
            except Exception:
                log.exception("could not save the run history of charm %s", record.charm_id)
        for status in statuses:
            try:
                self._repo.save(status)
            except Exception:
                log.exception("could not save the status of charm %s", status.charm_id)

    def _emit(self, event: EngineEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("an event observer failed on %s", type(event).__name__)

    def _load_persisted(self) -> dict[str, CharmStatus]:
        try:
            return self._repo.load_all()
        except Exception as exc:
            # One line for the user's log (no traceback); the details for a debug log.
            log.error("could not load the saved charm status (%s); starting fresh", exc)
            log.debug("loading the saved charm status failed", exc_info=True)
            return {}
