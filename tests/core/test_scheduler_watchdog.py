"""The loop-lag watchdog, in real time: an updater that blocks the loop is noticed and named."""

from __future__ import annotations

import asyncio
import contextvars
import signal
import threading
import time
from datetime import timedelta

import pytest

from trayapp.core import watchdog
from trayapp.core.clock import FakeClock, SystemClock
from trayapp.core.events import EngineEvent, LoopBlocked
from trayapp.core.outcomes import OutcomeKind, RunReport
from trayapp.core.scheduler import FREEZE_LIMIT, ScheduleEntry, Scheduler
from trayapp.core.status import CharmState
from trayapp.core.statusrepo import InMemoryStatusRepo
from trayapp.core.watchdog import LoopWatchdog, UpdaterFroze

HOUR = timedelta(hours=1)


async def test_blocking_updater_is_named_and_cleared_after_a_clean_run() -> None:
    clock = FakeClock()
    blocked: asyncio.Future[LoopBlocked] = asyncio.get_running_loop().create_future()
    block = True
    polite_gate = asyncio.Event()

    def on_event(event: EngineEvent) -> None:
        if isinstance(event, LoopBlocked) and not blocked.done():
            blocked.set_result(event)

    async def runner(charm_id: str, trigger: str) -> RunReport:
        if charm_id == "rude" and block:
            await asyncio.sleep(0)
            time.sleep(1.5)  # noqa: ASYNC251 - the bug under test: a blocking updater
        if charm_id == "polite":
            await polite_gate.wait()  # in progress at the same time, never blocks
        return RunReport()

    scheduler = Scheduler(
        runner, InMemoryStatusRepo(), clock, on_event=on_event, loop_lag_threshold=1.0
    )
    scheduler.add(ScheduleEntry("polite", HOUR))
    scheduler.add(ScheduleEntry("rude", HOUR))
    try:
        await scheduler.start()
        rude_run = scheduler.run_now("rude")
        await asyncio.wait_for(rude_run, 30)
        event = await asyncio.wait_for(blocked, 30)
        assert event.charm_id == "rude"
        assert event.seconds > 1.0
        status = scheduler.status("rude")
        assert status.blocked_loop is not None
        assert "blocked the app for" in status.blocked_loop
        assert scheduler.status("polite").blocked_loop is None

        block = False
        await asyncio.wait_for(scheduler.run_now("rude"), 30)
        assert scheduler.status("rude").blocked_loop is None  # a clean run clears it
    finally:
        polite_gate.set()
        await scheduler.shutdown()


async def test_watchdog_sleeps_when_no_run_is_in_progress() -> None:
    clock = FakeClock()
    gate = asyncio.Event()

    async def runner(charm_id: str, trigger: str) -> RunReport:
        await gate.wait()
        return RunReport()

    scheduler = Scheduler(runner, InMemoryStatusRepo(), clock, loop_lag_threshold=1.0)
    scheduler.add(ScheduleEntry("a", HOUR))
    try:
        await scheduler.start()
        await clock.settle()
        watchdog = scheduler._watchdog
        assert watchdog is not None
        assert watchdog.watching  # a run is in progress
        gate.set()
        await clock.settle()
        assert not watchdog.watching
        assert watchdog._beat_handle is None  # no heartbeat timer left on an idle loop
        assert watchdog.stalls == 0
    finally:
        await scheduler.shutdown()


# --- rescue: a run stuck past its deadline is interrupted -----------------------------------------


async def test_a_run_stuck_past_its_deadline_is_interrupted_in_real_time() -> None:
    """The whole chain in the scheduler: label with the deadline, thread, signal, outcome."""

    async def runner(charm_id: str, trigger: str) -> RunReport:
        await asyncio.sleep(0)
        time.sleep(600)  # noqa: ASYNC251 - the bug under test
        return RunReport()

    clock = SystemClock()
    scheduler = Scheduler(runner, InMemoryStatusRepo(), clock, loop_lag_threshold=0.5)
    scheduler.add(ScheduleEntry("stuck", HOUR, timeout=timedelta(seconds=0.5)))
    try:
        await scheduler.start(schedule=False)
        outcome = await asyncio.wait_for(scheduler.run_now("stuck"), 60)
        assert outcome.kind is OutcomeKind.FROZE
        assert scheduler._watchdog is not None and scheduler._watchdog.rescues >= 1
        assert scheduler.status("stuck").freezes == 1
    finally:
        await scheduler.shutdown()


def test_the_rescue_signal_raises_only_in_code_working_for_the_stuck_run() -> None:
    """A signal that arrives after the run moved on (or anywhere else) raises nothing; in a
    task of the stuck run (its context names the run) it raises."""
    loop = asyncio.new_event_loop()

    def in_task_of(label: watchdog.RunLabel) -> None:  # what a task the updater started sees
        watchdog.enter_run(label)
        signal.raise_signal(watchdog.RESCUE_SIGNAL)

    try:
        dog = LoopWatchdog(loop, 1.0, lambda *_: None)
        assert watchdog._install_rescue_handler()  # tests run on the main thread
        watchdog._watchdogs.add(dog)
        elsewhere = object()  # stands for a run frame that is not on this stack
        label = watchdog.RunLabel(id(elsewhere), "x", 0.0)
        dog._labels[id(elsewhere)] = label
        dog._rescue = (label,)
        signal.raise_signal(watchdog.RESCUE_SIGNAL)  # handled here, at once: must not raise
        assert dog._rescue == (label,)  # not consumed: nothing here works for that run

        with pytest.raises(UpdaterFroze) as froze:
            contextvars.Context().run(in_task_of, label)
        assert froze.value.charm_id == "x" and dog._rescue == ()

        dog._rescue = (label,)
        del dog._labels[id(elsewhere)]  # the run ended: its tasks are no longer its
        contextvars.Context().run(in_task_of, label)  # raises nothing
        dog.close()
        assert dog not in watchdog._watchdogs
    finally:
        loop.close()


def test_the_rescue_handler_chains_to_a_handler_installed_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[int] = []
    monkeypatch.setattr(watchdog, "_previous_handler", lambda signum, frame: seen.append(signum))
    assert watchdog._install_rescue_handler()
    signal.raise_signal(watchdog.RESCUE_SIGNAL)
    assert seen == [watchdog.RESCUE_SIGNAL]


def test_the_handler_is_not_installed_off_the_main_thread() -> None:
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(watchdog._install_rescue_handler()))
    thread.start()
    thread.join(10)
    assert results == [False]


# --- what a froze outcome does to the schedule (fake clock: the runner raises UpdaterFroze) ------


async def test_freezes_back_off_then_park_only_that_charm_until_resumed() -> None:
    clock = FakeClock()
    freeze = True

    async def runner(charm_id: str, trigger: str) -> RunReport:
        if charm_id == "bad" and freeze:
            raise UpdaterFroze(charm_id, 130.0)
        return RunReport()

    scheduler = Scheduler(runner, InMemoryStatusRepo(), clock, loop_lag_threshold=0)
    scheduler.add(ScheduleEntry("bad", HOUR, account_id="acct"))
    scheduler.add(ScheduleEntry("sibling", HOUR, account_id="acct"))
    try:
        await scheduler.start()
        for n in range(1, FREEZE_LIMIT):
            outcome = await scheduler.run_now("bad")
            assert outcome.kind is OutcomeKind.FROZE
            assert outcome.message == (
                "stopped: it blocked Pattern Sync for 2 min; the plugin must not call blocking code"
            )
            status = scheduler.status("bad")
            assert status.freezes == n and not status.parked
            assert status.state is CharmState.BACKING_OFF
        outcome = await scheduler.run_now("bad")
        assert "will not try again until you resume it" in outcome.message
        status = scheduler.status("bad")
        assert status.parked and status.parked_frozen and status.parked_alone
        assert status.next_due_at is None

        # Its account is fine: the sibling still runs, and a new charm of it is not parked.
        assert (await scheduler.run_now("sibling")).kind is OutcomeKind.OK
        scheduler.add(ScheduleEntry("new", HOUR, account_id="acct"))
        assert not scheduler.status("new").parked

        # Signing in again does not unpark it: only the user's resume does.
        scheduler.account_usable("acct")
        assert scheduler.status("bad").parked_frozen
        freeze = False
        scheduler.resume("bad")
        assert not scheduler.status("bad").parked
        await clock.settle()
        status = scheduler.status("bad")
        assert status.last_outcome is OutcomeKind.OK and status.freezes == 0
    finally:
        await scheduler.shutdown()


async def test_froze_wins_over_the_deadline_that_fired_in_the_same_turn() -> None:
    """The loop was blocked past the deadline: its timer and the run's end are both ready."""
    clock = FakeClock()

    async def runner(charm_id: str, trigger: str) -> RunReport:
        clock.advance(HOUR.total_seconds())  # the run's deadline passes while it "blocks"
        raise UpdaterFroze(charm_id, 5.0)

    scheduler = Scheduler(runner, InMemoryStatusRepo(), clock, loop_lag_threshold=0)
    scheduler.add(ScheduleEntry("bad", HOUR, timeout=timedelta(seconds=1)))
    try:
        await scheduler.start(schedule=False)
        outcome = await scheduler.run_now("bad")
        assert outcome.kind is OutcomeKind.FROZE
        assert outcome.message.startswith("stopped: it blocked Pattern Sync for 5 s")
    finally:
        await scheduler.shutdown()
