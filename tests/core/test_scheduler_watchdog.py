"""The loop-lag watchdog, in real time: an updater that blocks the loop is noticed and named."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from trayapp.core.clock import FakeClock
from trayapp.core.events import EngineEvent, LoopBlocked
from trayapp.core.outcomes import RunReport
from trayapp.core.scheduler import ScheduleEntry, Scheduler
from trayapp.core.statusrepo import InMemoryStatusRepo

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
