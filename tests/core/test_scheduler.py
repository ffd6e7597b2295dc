"""Scheduler behaviour under a FakeClock: every timing rule, deterministically.

Updaters in these tests "take time" by waiting on the fake clock, so nothing sleeps on real time
(except the watchdog tests in test_scheduler_watchdog.py, which are about real time).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from trayapp.core import scheduler as scheduler_module
from trayapp.core.clock import FakeClock
from trayapp.core.errors import (
    AuthRequired,
    ConfigProblem,
    NotFoundError,
    Offline,
    RateLimited,
    ServerError,
    StoreFullError,
)
from trayapp.core.events import (
    CharmStatusChanged,
    EngineEvent,
    RunFinished,
    RunStarted,
)
from trayapp.core.outcomes import OutcomeKind, RunOutcome, RunReport
from trayapp.core.scheduler import (
    STAGGER_MAX,
    WAKE_NETWORK,
    WAKE_RESUMED,
    BackoffPolicy,
    ScheduleEntry,
    Scheduler,
)
from trayapp.core.status import CharmState, CharmStatus, Counts
from trayapp.core.statusrepo import InMemoryStatusRepo

MIN = timedelta(minutes=1)
Behaviour = Callable[[], Awaitable[Any]]


class Harness:
    """A scheduler over a FakeClock and an in-memory repo, with scripted updaters."""

    def __init__(
        self,
        clock: FakeClock | None = None,
        repo: InMemoryStatusRepo | None = None,
        seed: int = 7,
        **kwargs: Any,
    ) -> None:
        self.clock = clock or FakeClock()
        self.repo = repo or InMemoryStatusRepo()
        self.events: list[EngineEvent] = []
        self.calls: list[tuple[str, str, datetime]] = []
        self.behaviours: dict[str, Behaviour] = {}
        kwargs.setdefault("loop_lag_threshold", 0)  # real-time watchdog: its own test file
        self.scheduler = Scheduler(
            self.runner,
            self.repo,
            self.clock,
            rng=random.Random(seed),
            on_event=self.events.append,
            **kwargs,
        )

    async def runner(self, charm_id: str, trigger: str) -> Any:
        self.calls.append((charm_id, trigger, self.clock.now()))
        behaviour = self.behaviours.get(charm_id)
        if behaviour is None:
            return RunReport(added=1)
        return await behaviour()

    def runs_of(self, charm_id: str) -> list[tuple[str, datetime]]:
        return [(trigger, at) for cid, trigger, at in self.calls if cid == charm_id]

    async def sleep(self, seconds: float) -> None:
        """Take ``seconds`` of fake time inside an updater."""
        await self.clock.wait(asyncio.Event(), seconds)

    async def start(self, *entries: ScheduleEntry) -> None:
        for entry in entries:
            self.scheduler.add(entry)
        await self.scheduler.start()
        await self.clock.settle()


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def factory(**kwargs: Any) -> Harness:
        harness = Harness(**kwargs)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        await asyncio.wait_for(harness.scheduler.shutdown(), 10)


@pytest.fixture
def h(make: Callable[..., Harness]) -> Harness:
    return make()


def gated(gate: asyncio.Event, report: RunReport | None = None) -> Behaviour:
    async def behaviour() -> RunReport:
        await gate.wait()
        return report or RunReport()

    return behaviour


def raising(exc: BaseException) -> Behaviour:
    async def behaviour() -> RunReport:
        raise exc

    return behaviour


# ------------------------------------------------------------------------------------ no polling


async def test_loop_does_not_wake_while_nothing_is_due(h: Harness) -> None:
    await h.start(ScheduleEntry("a", 10 * MIN, jitter=0))
    assert len(h.runs_of("a")) == 1  # a new charm runs at once
    wakeups, waits = h.scheduler.loop_wakeups, h.clock.waits

    for _ in range(599):  # ten minutes in one-second steps: the loop must stay asleep
        h.clock.advance(1)
        await h.clock.settle()
    assert h.scheduler.loop_wakeups == wakeups
    assert h.clock.waits == waits
    assert len(h.runs_of("a")) == 1

    h.clock.advance(1)
    await h.clock.settle()
    assert len(h.runs_of("a")) == 2
    # One wake-up for the due time, at most one more to re-plan after the run ended.
    assert h.scheduler.loop_wakeups - wakeups <= 2


async def test_idle_scheduler_with_no_charms_never_wakes(h: Harness) -> None:
    await h.start()
    wakeups = h.scheduler.loop_wakeups
    await h.clock.run_for(24 * 3600)
    assert h.scheduler.loop_wakeups == wakeups
    assert h.clock.next_deadline() is None  # nobody is even waiting on a timer


async def test_finishing_run_does_not_wake_a_loop_sleeping_on_an_earlier_charm(h: Harness) -> None:
    await h.start(ScheduleEntry("soon", 5 * MIN, jitter=0), ScheduleEntry("late", 60 * MIN))
    await h.clock.run_for(1)
    wakeups = h.scheduler.loop_wakeups
    h.scheduler.run_now("late")  # its next due time (1 h) is after "soon": no re-plan needed
    await h.clock.settle()
    assert len(h.runs_of("late")) == 2
    assert h.scheduler.loop_wakeups == wakeups


# ---------------------------------------------------------------------- due times and intervals


async def test_persisted_due_time_survives_restart(make: Callable[..., Harness]) -> None:
    first = make()
    await first.start(ScheduleEntry("a", 10 * MIN, jitter=0))
    due = first.scheduler.status("a").next_due_at
    assert due == first.clock.now() + 10 * MIN
    await first.scheduler.shutdown()
    await first.clock.run_for(120)

    second = make(clock=first.clock, repo=first.repo)
    await second.start(ScheduleEntry("a", 10 * MIN, jitter=0))
    assert second.calls == []  # not due yet: a restart does not reset the schedule
    assert second.scheduler.status("a").next_due_at == due
    await second.clock.run_for(479)
    assert second.calls == []
    await second.clock.run_for(1)
    assert [c[0] for c in second.calls] == ["a"]


async def test_charm_overdue_at_start_runs_once(make: Callable[..., Harness]) -> None:
    repo = InMemoryStatusRepo()
    clock = FakeClock()
    # The app was off for a day: a 10-minute charm missed 144 runs and must run once.
    repo.save(CharmStatus("a", next_due_at=clock.now() - timedelta(days=1)))
    repo.save(CharmStatus("b", next_due_at=clock.now() + 5 * MIN))
    h = make(clock=clock, repo=repo)
    await h.start(ScheduleEntry("a", 10 * MIN), ScheduleEntry("b", 10 * MIN))
    await h.clock.run_for(60)
    assert len(h.runs_of("a")) == 1
    assert h.runs_of("b") == []


async def test_jitter_is_bounded_and_deterministic(make: Callable[..., Harness]) -> None:
    def gaps(h: Harness) -> list[float]:
        history = h.repo.history("a")
        return [
            (later.started_at - earlier.finished_at).total_seconds()
            for later, earlier in itertools.pairwise(history)
        ]

    one, two, other_seed = make(seed=3), make(seed=3), make(seed=4)
    for h in (one, two, other_seed):
        await h.start(ScheduleEntry("a", timedelta(seconds=100), jitter=0.2))
        await h.clock.run_for(100 * 60)
    observed = gaps(one)
    assert len(observed) == 49
    assert min(observed) >= 80 and max(observed) <= 120
    assert max(observed) - min(observed) > 20  # it does spread
    assert observed == gaps(two)  # same seed, same schedule
    assert observed != gaps(other_seed)


async def test_next_due_counts_from_the_end_of_the_run(h: Harness) -> None:
    async def takes_half_a_minute() -> RunReport:
        await h.sleep(30)
        return RunReport()

    h.behaviours["a"] = takes_half_a_minute
    started = h.clock.now()
    await h.start(ScheduleEntry("a", 10 * MIN, jitter=0))
    await h.clock.run_for(30)
    status = h.scheduler.status("a")
    assert status.last_run_at == started + timedelta(seconds=30)
    assert status.next_due_at == status.last_run_at + 10 * MIN


async def test_update_interval_reschedules_from_last_run(h: Harness) -> None:
    await h.start(ScheduleEntry("a", 60 * MIN, jitter=0))
    ran_at = h.scheduler.status("a").last_run_at
    assert ran_at is not None
    await h.clock.run_for(5 * 60)
    h.scheduler.update(ScheduleEntry("a", 10 * MIN, jitter=0))
    await h.clock.settle()
    assert h.scheduler.status("a").next_due_at == ran_at + 10 * MIN
    await h.clock.run_for(5 * 60)
    assert len(h.runs_of("a")) == 2
    assert h.runs_of("a")[1][1] == ran_at + 10 * MIN


async def test_added_after_start_runs_at_once_and_removed_stops(h: Harness) -> None:
    await h.start()
    h.scheduler.add(ScheduleEntry("a", 10 * MIN))
    await h.clock.settle()
    assert len(h.runs_of("a")) == 1
    h.scheduler.remove("a")
    assert h.repo.load_all() == {}
    await h.clock.run_for(3600)
    assert len(h.runs_of("a")) == 1
    with pytest.raises(NotFoundError):
        h.scheduler.status("a")


async def test_removing_a_running_charm_cancels_it_and_leaves_no_status(h: Harness) -> None:
    h.behaviours["a"] = gated(asyncio.Event())
    await h.start(ScheduleEntry("a", 10 * MIN))
    future = h.scheduler.run_now("a")
    h.scheduler.remove("a")
    await h.clock.settle()
    assert future.result().kind is OutcomeKind.CANCELLED
    assert "a" not in h.repo.load_all()  # the finishing run did not resurrect it
    assert h.repo.history("a") == []
    h.scheduler.add(ScheduleEntry("a", 10 * MIN))  # the id can be reused at once
    await h.clock.settle()
    assert len(h.runs_of("a")) == 2
    assert h.scheduler.status("a").last_outcome is None  # a fresh charm, not the removed one


# ---------------------------------------------------------------------------------- timeouts


async def test_timeout_cancels_the_work_for_real(h: Harness) -> None:
    reached: list[str] = []

    async def hangs() -> RunReport:
        try:
            await h.sleep(3600)
        except asyncio.CancelledError:
            reached.append("cancelled")
            raise
        reached.append("after the await")  # must never run
        return RunReport()

    h.behaviours["a"] = hangs
    await h.start(ScheduleEntry("a", 60 * MIN, timeout=timedelta(seconds=60)))
    future = h.scheduler.run_now("a")  # coalesces with the run in progress
    await h.clock.run_for(59)
    assert not future.done()
    await h.clock.run_for(1)
    assert future.done()
    outcome = future.result()
    assert outcome.kind is OutcomeKind.TIMEOUT
    assert "60 s" in outcome.message
    assert reached == ["cancelled"]
    h.behaviours["a"] = gated(asyncio.Event())  # later retries must not resurrect the first
    await h.clock.run_for(7200)
    assert "after the await" not in reached
    record = h.repo.history("a")[-1]
    assert record.outcome is OutcomeKind.TIMEOUT
    assert record.duration_s == 60


async def test_updater_that_ignores_cancellation_is_not_run_twice(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()

    async def stubborn() -> RunReport:
        while not release.is_set():
            try:
                await h.sleep(10)
            except asyncio.CancelledError:
                continue  # swallowed: a badly written updater
        return RunReport()

    h.behaviours["a"] = stubborn
    await h.start(ScheduleEntry("a", timedelta(seconds=30), timeout=timedelta(seconds=20)))
    await h.clock.run_for(20 + scheduler_module.CANCEL_GRACE)
    assert h.scheduler.status("a").last_outcome is OutcomeKind.TIMEOUT
    assert "ignored cancellation" in caplog.text
    assert "ignored being stopped" in (h.scheduler.status("a").last_error or "")
    await h.clock.run_for(3600)  # due again many times, but the abandoned run still runs
    assert len(h.runs_of("a")) == 1
    release.set()
    await h.clock.run_for(20)
    await h.clock.run_for(3600)
    assert len(h.runs_of("a")) >= 2


# ---------------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (RateLimited("slow down"), OutcomeKind.RATE_LIMITED),
        (Offline("network unreachable"), OutcomeKind.OFFLINE),
        (ServerError("HTTP 503"), OutcomeKind.SERVER_ERROR),
        (AuthRequired("sign in again"), OutcomeKind.AUTH_REQUIRED),
        (ValueError("boom"), OutcomeKind.BUG),
    ],
)
async def test_exceptions_map_to_outcomes(h: Harness, exc: Exception, kind: OutcomeKind) -> None:
    h.behaviours["a"] = raising(exc)
    await h.start(ScheduleEntry("a", 10 * MIN, account_id="acct"))
    record = h.repo.history("a")[0]
    assert record.outcome is kind
    assert str(exc) in record.message
    status = h.scheduler.status("a")
    assert status.last_outcome is kind
    assert status.last_error_kind is kind
    assert status.consecutive_failures == 1
    assert not status.healthy
    if kind is OutcomeKind.BUG:
        assert record.traceback is not None
        assert "ValueError: boom" in record.traceback
        assert "in behaviour" in record.traceback  # the updater's own frame is kept
    else:
        assert record.traceback is None


async def test_secrets_in_error_messages_are_redacted(h: Harness) -> None:
    h.behaviours["a"] = raising(RuntimeError("GET /x?access_token=ya29.SECRETSECRET failed"))
    await h.start(ScheduleEntry("a", 10 * MIN))
    record = h.repo.history("a")[0]
    assert record.outcome is OutcomeKind.BUG
    assert "SECRETSECRET" not in record.message
    assert record.traceback is not None and "SECRETSECRET" not in record.traceback
    assert "SECRETSECRET" not in (h.scheduler.status("a").last_error or "")


async def test_ok_report_counts_and_status_fields(h: Harness) -> None:
    h.behaviours["a"] = gated(asyncio.Event(), RunReport(added=3, updated=2, removed=1))
    await h.start()
    t0 = h.clock.now()

    async def report() -> RunReport:
        await h.sleep(2)
        return RunReport(added=3, updated=2, removed=1, partial=("cal-2",))

    h.behaviours["a"] = report
    h.scheduler.add(ScheduleEntry("a", 10 * MIN, jitter=0))
    await h.clock.settle()
    assert h.scheduler.status("a").state is CharmState.RUNNING
    await h.clock.run_for(2)
    status = h.scheduler.status("a")
    assert status.state is CharmState.SCHEDULED
    assert status.last_outcome is OutcomeKind.OK
    assert status.last_run_at == status.last_success_at == t0 + timedelta(seconds=2)
    assert status.next_due_at == t0 + timedelta(seconds=2) + 10 * MIN
    assert status.last_counts == Counts(3, 2, 1)
    assert status.consecutive_failures == 0 and status.healthy
    h.scheduler.run_now("a")
    await h.clock.run_for(2)
    status = h.scheduler.status("a")
    assert status.totals == Counts(6, 4, 2)
    assert h.repo.load_all()["a"] == status  # saved on every change
    history = h.repo.history("a")
    assert [r.trigger for r in history] == ["manual", "schedule"]
    assert history[0].partial == ("cal-2",)


async def test_runner_may_return_a_full_outcome(h: Harness) -> None:
    async def classified() -> RunOutcome:
        return RunOutcome(OutcomeKind.OFFLINE, message="no route")

    h.behaviours["a"] = classified
    await h.start(ScheduleEntry("a", 10 * MIN))
    assert h.scheduler.status("a").last_error_kind is OutcomeKind.OFFLINE


async def test_runner_returning_garbage_is_a_bug(h: Harness) -> None:
    async def wrong() -> object:
        return {"added": 1}

    h.behaviours["a"] = wrong
    await h.start(ScheduleEntry("a", 10 * MIN))
    assert h.scheduler.status("a").last_error_kind is OutcomeKind.BUG
    assert "expected a RunReport" in (h.scheduler.status("a").last_error or "")


async def test_cancelled_error_escaping_the_updater_is_a_bug(h: Harness) -> None:
    h.behaviours["a"] = raising(asyncio.CancelledError())
    await h.start(ScheduleEntry("a", 10 * MIN))
    assert h.scheduler.status("a").last_error_kind is OutcomeKind.BUG


async def test_user_cancel_is_cancelled_and_not_a_failure(h: Harness) -> None:
    h.behaviours["a"] = gated(asyncio.Event())
    await h.start(ScheduleEntry("a", 10 * MIN, jitter=0))
    future = h.scheduler.run_now("a")
    assert h.scheduler.cancel("a")
    await h.clock.settle()
    assert future.result().kind is OutcomeKind.CANCELLED
    status = h.scheduler.status("a")
    assert status.consecutive_failures == 0
    assert status.last_outcome is OutcomeKind.CANCELLED
    assert status.state is CharmState.SCHEDULED
    assert status.next_due_at == h.clock.now() + 10 * MIN
    assert not h.scheduler.cancel("a")  # nothing left to cancel


def test_keyboard_interrupt_propagates() -> None:
    async def main() -> None:
        clock = FakeClock()

        async def runner(charm_id: str, trigger: str) -> RunReport:
            raise KeyboardInterrupt

        scheduler = Scheduler(runner, InMemoryStatusRepo(), clock, loop_lag_threshold=0)
        scheduler.add(ScheduleEntry("a", 10 * MIN))
        await scheduler.start()
        await asyncio.sleep(3600)  # real time: the interrupt must end this long before

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(main())


# ----------------------------------------------------------------------------------- backoff


def test_backoff_policy_delays_are_exponential_jittered_and_capped() -> None:
    policy = BackoffPolicy()
    rng = random.Random(1)
    for failures in range(1, 40):
        raw = min(3600.0, 30.0 * 2 ** (failures - 1))
        for _ in range(50):
            delay = policy.delay(failures, rng)
            assert raw * 0.8 <= delay <= raw
    assert policy.delay(10_000, rng) <= 3600.0  # no overflow, still capped
    with pytest.raises(ValueError):
        BackoffPolicy(base=0)
    with pytest.raises(ValueError):
        BackoffPolicy(cap=10, base=30)


async def test_transient_failures_back_off_and_never_disable(h: Harness) -> None:
    h.behaviours["a"] = raising(ServerError("HTTP 500"))
    await h.start(ScheduleEntry("a", 5 * MIN))
    await h.clock.run_for(10 * 3600)
    history = list(reversed(h.repo.history("a")))
    assert len(history) >= 12
    for n, (earlier, later) in enumerate(itertools.pairwise(history), start=1):
        raw = min(3600.0, 30.0 * 2 ** (n - 1))
        gap = (later.started_at - earlier.finished_at).total_seconds()
        assert raw * 0.8 <= gap <= raw, (n, gap)
    status = h.scheduler.status("a")
    assert status.consecutive_failures == len(history)
    assert status.state is CharmState.BACKING_OFF
    assert status.next_due_at is not None and status.next_due_at > h.clock.now()

    h.behaviours.pop("a")  # the server recovers
    await h.clock.run_for(3600)
    status = h.scheduler.status("a")
    assert status.consecutive_failures == 0
    assert status.state is CharmState.SCHEDULED
    assert status.last_error is None and status.last_error_kind is None


async def test_rate_limited_retry_after_is_honoured(h: Harness) -> None:
    retry_at = h.clock.now() + timedelta(hours=2)  # longer than the backoff cap
    h.behaviours["a"] = raising(RateLimited("quota", retry_after=retry_at))
    await h.start(ScheduleEntry("a", 5 * MIN))
    assert h.scheduler.status("a").next_due_at == retry_at
    await h.clock.run_for(2 * 3600 - 1)
    assert len(h.runs_of("a")) == 1
    await h.clock.run_for(1)
    assert len(h.runs_of("a")) == 2


async def test_a_retry_after_beyond_a_day_is_capped_at_a_day(h: Harness) -> None:
    """A plugin (or a broken server) asking for a year does not silence the charm for a year."""
    start = h.clock.now()
    h.behaviours["a"] = raising(RateLimited("busy", retry_after=start + timedelta(days=365)))
    await h.start(ScheduleEntry("a", 5 * MIN))
    assert h.scheduler.status("a").next_due_at == start + timedelta(days=1)


async def test_repeated_bug_shows_as_failing(h: Harness) -> None:
    h.behaviours["a"] = raising(KeyError("cursor"))
    await h.start(ScheduleEntry("a", 5 * MIN))
    await h.clock.run_for(30)
    status = h.scheduler.status("a")
    assert status.consecutive_failures == 2
    assert status.last_error_kind is OutcomeKind.BUG
    assert status.state is CharmState.BACKING_OFF
    assert status.last_error == "KeyError: 'cursor'"


async def test_network_back_retries_offline_charms_now(make: Callable[..., Harness]) -> None:
    h = make(backoff=BackoffPolicy(base=600, cap=3600))
    h.behaviours["offline"] = raising(Offline("no network"))
    await h.start(ScheduleEntry("offline", 5 * MIN), ScheduleEntry("fine", 60 * MIN))
    await h.clock.run_for(60)
    assert len(h.runs_of("offline")) == 1
    h.behaviours.pop("offline")
    h.scheduler.wake(WAKE_NETWORK)
    await h.clock.settle()
    assert len(h.runs_of("offline")) == 2
    assert len(h.runs_of("fine")) == 1
    assert h.scheduler.status("offline").healthy


async def test_a_config_problem_retries_slowly_and_never_disables(h: Harness) -> None:
    h.behaviours["feed"] = raising(ConfigProblem("the feed was not found (HTTP 404)"))
    await h.start(ScheduleEntry("feed", 5 * MIN, jitter=0))
    status = h.scheduler.status("feed")
    assert status.last_error_kind is OutcomeKind.CONFIG_ERROR
    assert status.last_error == "the feed was not found (HTTP 404)"
    # Not the 30 s, 60 s... of a transient failure: the backoff cap (1 h) from the first failure.
    await h.clock.run_for(3599)
    assert len(h.runs_of("feed")) == 1
    await h.clock.run_for(1)
    assert len(h.runs_of("feed")) == 2
    h.behaviours.pop("feed")  # the user fixed the URL (or the site put the feed back)
    await h.clock.run_for(3600)
    assert len(h.runs_of("feed")) == 3 and h.scheduler.status("feed").healthy


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        StoreFullError("the disk holding /p/trayapp.db is full; the change was rolled back"),
        sqlite3.OperationalError("database or disk is full"),
    ],
    ids=["enospc", "store", "sqlite"],
)
async def test_a_full_disk_is_a_storage_problem_not_a_bug(h: Harness, exc: Exception) -> None:
    async def behaviour() -> RunReport:
        try:
            raise exc
        except Exception as inner:
            raise RuntimeError("writing the export failed") from inner  # wrapped is still seen

    h.behaviours["a"] = behaviour
    await h.start(ScheduleEntry("a", 5 * MIN, jitter=0))
    status = h.scheduler.status("a")
    assert status.last_error_kind is OutcomeKind.STORAGE
    assert status.last_error is not None and "full" in status.last_error
    assert "Errno" not in status.last_error and "Error" not in status.last_error
    assert status.state is CharmState.BACKING_OFF  # retried with backoff, as space may come back
    assert h.repo.history("a")[0].traceback is None


# ----------------------------------------------------------------------------------- parking


async def test_auth_required_parks_the_account_until_usable(h: Harness) -> None:
    h.behaviours["a1"] = raising(AuthRequired("sign in again"))
    await h.start(
        ScheduleEntry("a1", 10 * MIN, account_id="alice"),
        ScheduleEntry("b1", 10 * MIN, account_id="bob"),
    )
    await h.clock.run_for(60)
    h.scheduler.add(ScheduleEntry("a2", 10 * MIN, account_id="alice"))  # added while parked
    await h.clock.settle()
    for charm_id in ("a1", "a2"):
        status = h.scheduler.status(charm_id)
        assert status.state is CharmState.PARKED
        assert h.repo.load_all()[charm_id].state is CharmState.PARKED
    assert h.scheduler.status("a1").last_error_kind is OutcomeKind.AUTH_REQUIRED

    await h.clock.run_for(24 * 3600)
    assert len(h.runs_of("a1")) == 1  # parked: never on schedule, never disabled either
    assert h.runs_of("a2") == []
    assert len(h.runs_of("b1")) > 100  # the other account is unaffected

    h.behaviours.pop("a1")
    h.scheduler.account_usable("alice")
    await h.clock.settle()
    assert h.runs_of("a1")[-1] == ("account", h.clock.now())
    assert h.runs_of("a2") == [("account", h.clock.now())]
    for charm_id in ("a1", "a2"):
        status = h.scheduler.status(charm_id)
        assert status.state is CharmState.SCHEDULED
        assert status.healthy


async def test_parking_survives_a_restart(make: Callable[..., Harness]) -> None:
    first = make()
    first.behaviours["a1"] = raising(AuthRequired("sign in again"))
    await first.start(
        ScheduleEntry("a1", 10 * MIN, account_id="alice"),
        ScheduleEntry("a2", 10 * MIN, account_id="alice"),
    )
    await first.clock.run_for(5)
    await first.scheduler.shutdown()

    second = make(clock=first.clock, repo=first.repo)
    await second.start(
        ScheduleEntry("a1", 10 * MIN, account_id="alice"),
        ScheduleEntry("a2", 10 * MIN, account_id="alice"),
    )
    second.scheduler.add(ScheduleEntry("a3", 10 * MIN, account_id="alice"))
    await second.clock.run_for(3600)
    assert second.calls == []
    assert {s.state for s in second.scheduler.statuses().values()} == {CharmState.PARKED}
    second.scheduler.account_usable("alice")
    await second.clock.settle()
    assert sorted(c[0] for c in second.calls) == ["a1", "a2", "a3"]


async def test_a_parked_charm_that_is_also_paused_stays_parked_after_a_restart(
    make: Callable[..., Harness],
) -> None:
    first = make()
    first.behaviours["a1"] = raising(AuthRequired("sign in again"))
    await first.start(
        ScheduleEntry("a1", 10 * MIN, account_id="alice"),
        ScheduleEntry("a2", 10 * MIN, account_id="alice"),
    )
    await first.clock.run_for(5)
    first.scheduler.pause("a2")  # shows "paused"; parked all the same
    await first.scheduler.shutdown()
    assert first.repo.load_all()["a2"].parked

    # a2 is added first: its own saved status must say it is parked, whatever the order.
    second = make(clock=first.clock, repo=first.repo)
    await second.start(
        ScheduleEntry("a2", 10 * MIN, account_id="alice"),
        ScheduleEntry("a1", 10 * MIN, account_id="alice"),
    )
    second.scheduler.resume("a2")
    await second.clock.run_for(3600)
    assert second.calls == []
    assert second.scheduler.status("a2").state is CharmState.PARKED


async def test_a_sign_in_while_paused_is_not_undone_by_a_restart(
    make: Callable[..., Harness],
) -> None:
    first = make()
    first.behaviours["a1"] = raising(AuthRequired("sign in again"))
    await first.start(
        ScheduleEntry("a1", 10 * MIN, account_id="alice"),
        ScheduleEntry("a2", 10 * MIN, account_id="alice"),
    )
    await first.clock.run_for(5)
    first.scheduler.pause("a1")
    first.scheduler.account_usable("alice")  # a1 stays paused; its last outcome stays auth
    await first.clock.settle()
    assert first.scheduler.status("a1").last_outcome is OutcomeKind.AUTH_REQUIRED
    assert not first.scheduler.status("a1").parked
    await first.scheduler.shutdown()

    second = make(clock=first.clock, repo=first.repo)
    await second.start(
        ScheduleEntry("a1", 10 * MIN, account_id="alice"),
        ScheduleEntry("a2", 10 * MIN, account_id="alice"),
    )
    await second.clock.run_for(3600)
    assert second.scheduler.status("a2").state is CharmState.SCHEDULED
    assert len(second.runs_of("a2")) >= 5  # the account works: nothing parked it again
    assert second.scheduler.status("a1").state is CharmState.PAUSED
    assert not second.scheduler.status("a1").parked


async def test_auth_required_account_from_error_wins(h: Harness) -> None:
    h.behaviours["a"] = raising(AuthRequired("sign in", account_id="carol"))
    await h.start(
        ScheduleEntry("a", 10 * MIN, account_id="carol"),
        ScheduleEntry("c", 10 * MIN, account_id="carol"),
    )
    await h.clock.run_for(5)
    assert h.scheduler.status("c").state is CharmState.PARKED


async def test_run_now_on_parked_charm_runs_once(h: Harness) -> None:
    h.behaviours["a"] = raising(AuthRequired("sign in again"))
    await h.start(
        ScheduleEntry("a", 10 * MIN, account_id="alice"),
        ScheduleEntry("b", 10 * MIN, account_id="alice"),
    )
    await h.clock.run_for(5)
    outcome = await h.scheduler.run_now("a")
    assert outcome.kind is OutcomeKind.AUTH_REQUIRED
    assert h.scheduler.status("a").state is CharmState.PARKED

    h.behaviours.pop("a")
    outcome = await h.scheduler.run_now("a")
    assert outcome.ok
    assert h.scheduler.status("a").state is CharmState.SCHEDULED  # the user's run worked
    assert h.scheduler.status("b").state is CharmState.PARKED  # its sibling waits for sign-in


# ----------------------------------------------------------------------------------- commands


async def test_run_now_coalesces_with_a_run_in_progress(h: Harness) -> None:
    gate = asyncio.Event()
    h.behaviours["a"] = gated(gate)
    await h.start(ScheduleEntry("a", 10 * MIN))
    first = h.scheduler.run_now("a")
    assert h.scheduler.run_now("a") is first
    await h.clock.settle()
    assert len(h.runs_of("a")) == 1
    gate.set()
    assert (await first).ok
    second = h.scheduler.run_now("a")
    assert second is not first
    await second
    assert len(h.runs_of("a")) == 2


async def test_run_now_coalesces_with_a_queued_run_and_jumps_the_queue(
    make: Callable[..., Harness],
) -> None:
    h = make(max_concurrency=1)
    gate = asyncio.Event()
    h.behaviours["busy"] = gated(gate)
    await h.start(ScheduleEntry("busy", 10 * MIN))
    h.scheduler.add(ScheduleEntry("x", 10 * MIN))
    h.scheduler.add(ScheduleEntry("y", 10 * MIN))
    await h.clock.settle()  # x and y are due and queued behind "busy"
    queued = h.scheduler.run_now("y")
    assert h.scheduler.run_now("y") is queued
    await h.clock.settle()
    assert h.runs_of("y") == []
    gate.set()
    await queued
    await h.clock.settle()
    order = [c[0] for c in h.calls]
    assert order == ["busy", "y", "x"]  # the user's request went first
    assert [t for t, _ in h.runs_of("y")] == ["manual"]


async def test_run_now_on_unknown_charm_says_so(h: Harness) -> None:
    await h.start()
    with pytest.raises(NotFoundError, match="nope"):
        h.scheduler.run_now("nope")


async def test_pause_and_resume(h: Harness) -> None:
    await h.start(ScheduleEntry("a", 10 * MIN, jitter=0), ScheduleEntry("b", 10 * MIN))
    h.scheduler.pause("a")
    assert h.scheduler.status("a").state is CharmState.PAUSED
    assert h.repo.load_all()["a"].paused
    await h.clock.run_for(3600)
    assert len(h.runs_of("a")) == 1
    assert len(h.runs_of("b")) > 1

    outcome = await h.scheduler.run_now("a")  # runs once, stays paused
    assert outcome.ok
    assert len(h.runs_of("a")) == 2
    assert h.scheduler.status("a").state is CharmState.PAUSED
    await h.clock.run_for(3600)
    assert len(h.runs_of("a")) == 2

    h.scheduler.resume("a")
    await h.clock.settle()
    assert len(h.runs_of("a")) == 3  # overdue while paused: runs once, now
    assert h.scheduler.status("a").state is CharmState.SCHEDULED
    assert not h.repo.load_all()["a"].paused


async def test_pause_all_and_resume_all(h: Harness) -> None:
    await h.start(ScheduleEntry("a", 10 * MIN), ScheduleEntry("b", 10 * MIN))
    await h.clock.run_for(1)
    h.scheduler.pause()
    await h.clock.run_for(3600)
    assert len(h.calls) == 2
    assert all(s.state is CharmState.PAUSED for s in h.scheduler.statuses().values())
    h.scheduler.resume()
    await h.clock.run_for(1)
    assert len(h.calls) == 4


async def test_timed_pause_auto_resumes_and_persists(make: Callable[..., Harness]) -> None:
    first = make()
    await first.start(ScheduleEntry("a", 10 * MIN))
    until = first.clock.now() + timedelta(hours=1)
    first.scheduler.pause("a", until=until)
    assert first.repo.load_all()["a"].paused_until == until
    await first.clock.run_for(1800)
    await first.scheduler.shutdown()

    second = make(clock=first.clock, repo=first.repo)  # restarted while paused
    await second.start(ScheduleEntry("a", 10 * MIN))
    assert second.scheduler.status("a").state is CharmState.PAUSED
    await second.clock.run_for(1799)
    assert second.calls == []
    await second.clock.run_for(1)
    assert [c[1] for c in second.calls] == ["schedule"]
    status = second.scheduler.status("a")
    assert not status.paused and status.paused_until is None


async def test_pause_drops_a_queued_scheduled_run(make: Callable[..., Harness]) -> None:
    h = make(max_concurrency=1)
    gate = asyncio.Event()
    h.behaviours["busy"] = gated(gate)
    await h.start(ScheduleEntry("busy", 10 * MIN), ScheduleEntry("z", 10 * MIN))
    await h.clock.run_for(1)
    assert h.runs_of("z") == []  # due, but queued behind "busy"
    h.scheduler.pause("z")
    gate.set()
    await h.clock.run_for(60)
    assert h.runs_of("z") == []


async def test_pause_drops_a_queued_run_the_user_did_not_ask_for(
    make: Callable[..., Harness],
) -> None:
    h = make(max_concurrency=1)
    await h.start(ScheduleEntry("z", 10 * MIN))
    assert len(h.runs_of("z")) == 1
    gate = asyncio.Event()
    h.behaviours["busy"] = gated(gate)
    h.scheduler.add(ScheduleEntry("busy", 10 * MIN))
    await h.clock.run_for(1)
    assert h.scheduler.status("busy").state is CharmState.RUNNING  # holds the only slot
    h.clock.jump_wall(6 * 3600)  # the machine slept: z is overdue and queues as a resume run
    h.scheduler.wake(WAKE_RESUMED)
    await h.clock.run_for(STAGGER_MAX)
    assert len(h.runs_of("z")) == 1  # still queued behind "busy"
    h.scheduler.pause("z")
    gate.set()
    await h.clock.run_for(60)
    assert len(h.runs_of("z")) == 1
    assert h.scheduler.status("z").state is CharmState.PAUSED


# -------------------------------------------------------------------------------- concurrency


async def test_global_and_per_account_limits(make: Callable[..., Harness]) -> None:
    h = make(max_concurrency=4, per_account_concurrency=2)
    gates: dict[str, asyncio.Event] = {}
    running: dict[str, set[str]] = {}
    peak: dict[str, int] = {}

    def tracked(charm_id: str, account: str) -> Behaviour:
        gate = gates.setdefault(charm_id, asyncio.Event())

        async def behaviour() -> RunReport:
            now_running = running.setdefault(account, set())
            now_running.add(charm_id)
            total = sum(len(s) for s in running.values())
            peak[account] = max(peak.get(account, 0), len(now_running))
            peak["*"] = max(peak.get("*", 0), total)
            await gate.wait()
            now_running.discard(charm_id)
            return RunReport()

        return behaviour

    entries = [ScheduleEntry(f"a{i}", 60 * MIN, account_id="A") for i in range(5)]
    entries += [ScheduleEntry("b0", 60 * MIN, account_id="B")]
    entries += [ScheduleEntry(f"n{i}", 60 * MIN) for i in range(3)]  # no account
    for entry in entries:
        h.behaviours[entry.charm_id] = tracked(entry.charm_id, entry.account_id or "-")
    await h.start(*entries)
    await h.clock.run_for(STAGGER_MAX)  # everything is due and queued
    assert h.scheduler.running == 4
    assert len(running["A"]) == 2  # A's queued charms let B and the others pass

    def release(charm_id: str) -> None:
        gates[charm_id].set()

    for charm_id in ("a0", "a1", "a2", "a3", "a4", "b0", "n0", "n1", "n2"):
        release(charm_id)
        await h.clock.settle()
        assert h.scheduler.running <= 4
    await h.clock.settle()
    assert peak["*"] == 4
    assert peak["A"] == 2
    assert {c[0] for c in h.calls} == {e.charm_id for e in entries}
    assert h.scheduler.running == 0


async def test_account_change_during_a_run_releases_the_right_slot(
    make: Callable[..., Harness],
) -> None:
    h = make(per_account_concurrency=1)
    gate = asyncio.Event()
    h.behaviours["a"] = gated(gate)
    await h.start(ScheduleEntry("a", 60 * MIN, account_id="A"))
    h.scheduler.update(ScheduleEntry("a", 60 * MIN, account_id="B"))  # moved while running
    gate.set()
    await h.clock.settle()
    h.scheduler.add(ScheduleEntry("a2", 60 * MIN, account_id="A"))
    await h.clock.settle()
    assert len(h.runs_of("a2")) == 1  # A's slot was given back, not B's
    assert h.scheduler.running == 0


# -------------------------------------------------------------------------- events and status


async def test_events_in_order_and_observer_errors_do_not_break_the_loop(
    make: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    h = make()
    seen: list[EngineEvent] = []

    def angry(event: EngineEvent) -> None:
        seen.append(event)
        raise RuntimeError("observer bug")

    h.scheduler._on_event = angry
    with caplog.at_level(logging.ERROR):
        await h.start(ScheduleEntry("a", 10 * MIN))
        await h.clock.run_for(3600)
    kinds = [type(e) for e in seen if not isinstance(e, CharmStatusChanged)]
    assert kinds[:2] == [RunStarted, RunFinished]
    assert len(h.runs_of("a")) >= 5  # the loop kept going
    assert "observer bug" in caplog.text
    states = [e.status.state for e in seen if isinstance(e, CharmStatusChanged)]
    assert CharmState.RUNNING in states and states[-1] is CharmState.SCHEDULED


async def test_history_is_appended_per_finished_run(h: Harness) -> None:
    await h.start(ScheduleEntry("a", timedelta(seconds=60), jitter=0))
    await h.clock.run_for(60 * 59)
    assert len(h.repo.history("a")) == 50  # the repo keeps 50 of the 60 runs
    finished = [e for e in h.events if isinstance(e, RunFinished)]
    assert len(finished) == 60
    assert h.repo.history("a")[0] == finished[-1].record


# ------------------------------------------------------------------------------ suspend/resume


async def test_wall_clock_jump_runs_overdue_charms_once_staggered(h: Harness) -> None:
    ids = [f"c{i}" for i in range(5)]
    await h.start(*(ScheduleEntry(i, 10 * MIN) for i in ids))
    await h.clock.run_for(STAGGER_MAX)
    h.calls.clear()

    h.clock.jump_wall(3 * 3600)  # slept 3 hours: 18 missed intervals each
    jumped_at = h.clock.now()
    await h.clock.run_for(11 * 60)  # the loop wakes at its (monotonic) deadline and notices
    assert sorted(c[0] for c in h.calls) == ids  # once each, not once per missed interval
    assert {c[1] for c in h.calls} == {"resume"}
    starts = sorted(c[2] for c in h.calls)
    assert len(set(starts)) == len(starts)  # not in the same instant
    assert starts[-1] - starts[0] <= timedelta(seconds=STAGGER_MAX)
    assert all(s > jumped_at for s in starts)


async def test_wake_after_resume_runs_overdue_charms_at_once(h: Harness) -> None:
    ids = [f"c{i}" for i in range(3)]
    await h.start(*(ScheduleEntry(i, 10 * MIN) for i in ids))
    await h.clock.run_for(STAGGER_MAX)
    h.calls.clear()
    h.clock.jump_wall(3600)
    h.scheduler.wake(WAKE_RESUMED)
    await h.clock.settle()
    assert len(h.calls) == 1  # the first at once, the others a step apart
    await h.clock.run_for(STAGGER_MAX)
    assert sorted(c[0] for c in h.calls) == ids
    assert len({c[2] for c in h.calls}) == 3


async def test_backward_wall_step_does_not_delay_charms(h: Harness) -> None:
    await h.start(ScheduleEntry("a", 10 * MIN))
    h.calls.clear()
    h.clock.jump_wall(-2 * 3600)  # an NTP step back by two hours
    h.scheduler.wake("clock changed")
    await h.clock.run_for(11 * 60)
    assert len(h.runs_of("a")) == 1


# ---------------------------------------------------------------------------------- shutdown


async def test_shutdown_cancels_runs_records_them_and_returns_promptly(
    make: Callable[..., Harness],
) -> None:
    h = make(max_concurrency=1)
    h.behaviours["a"] = gated(asyncio.Event())
    await h.start(ScheduleEntry("a", 10 * MIN), ScheduleEntry("b", 10 * MIN))
    await h.clock.run_for(1)
    running = h.scheduler.run_now("a")
    queued = h.scheduler.run_now("b")
    await asyncio.wait_for(h.scheduler.shutdown(), 5)
    assert running.result().kind is OutcomeKind.CANCELLED
    assert queued.result().kind is OutcomeKind.CANCELLED
    status = h.repo.load_all()["a"]
    assert status.state is not CharmState.RUNNING
    assert status.last_outcome is OutcomeKind.CANCELLED
    assert status.next_due_at == h.clock.now()  # interrupted: runs again at the next start
    assert h.repo.history("a")[0].outcome is OutcomeKind.CANCELLED
    assert h.repo.history("b") == []  # never started, so never recorded


async def test_shutdown_right_after_run_now_is_prompt(make: Callable[..., Harness]) -> None:
    h = make()
    h.behaviours["a"] = gated(asyncio.Event())
    await h.start()
    h.scheduler.add(ScheduleEntry("a", 10 * MIN))
    future = h.scheduler.run_now("a")  # dispatched, its task not yet stepped
    await asyncio.wait_for(h.scheduler.shutdown(), 1)  # far less than SHUTDOWN_GRACE
    assert future.result().kind is OutcomeKind.CANCELLED
    assert h.repo.history("a")[0].outcome is OutcomeKind.CANCELLED


async def test_cancel_before_the_run_starts(h: Harness) -> None:
    await h.start()
    h.scheduler.add(ScheduleEntry("a", 10 * MIN))
    future = h.scheduler.run_now("a")
    assert h.scheduler.cancel("a")
    assert not h.scheduler.cancel("a")  # already being cancelled
    await h.clock.settle()
    assert future.result().kind is OutcomeKind.CANCELLED
    assert h.calls == []


async def test_run_that_finished_as_shutdown_began_keeps_its_outcome(h: Harness) -> None:
    await h.start()
    h.scheduler.add(ScheduleEntry("a", 10 * MIN))
    future = h.scheduler.run_now("a")
    await asyncio.sleep(0)  # the updater returns at its first step; the scheduler has not seen it
    await h.scheduler.shutdown()
    assert future.result().ok
    assert h.repo.history("a")[0].outcome is OutcomeKind.OK


async def test_run_now_after_shutdown_resolves_at_once(h: Harness) -> None:
    await h.start(ScheduleEntry("a", 10 * MIN))
    await h.scheduler.shutdown()
    future = h.scheduler.run_now("a")
    assert future.done() and future.result().kind is OutcomeKind.CANCELLED


async def test_shutdown_gives_up_on_an_updater_that_ignores_cancellation(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_module, "SHUTDOWN_GRACE", 0.2)
    release = asyncio.Event()

    async def stubborn() -> RunReport:
        while True:
            try:
                await release.wait()
                return RunReport()
            except asyncio.CancelledError:
                continue

    h.behaviours["a"] = stubborn
    await h.start(ScheduleEntry("a", 10 * MIN))
    future = h.scheduler.run_now("a")
    await asyncio.wait_for(h.scheduler.shutdown(), 5)
    assert future.result().kind is OutcomeKind.CANCELLED
    assert h.repo.history("a")[0].outcome is OutcomeKind.CANCELLED
    release.set()  # let it end so the test leaves nothing behind
    await h.clock.settle()


# ------------------------------------------------------------------------------ bounded memory


async def test_manual_syncs_faster_than_the_interval_leave_no_timer_backlog(h: Harness) -> None:
    """Each re-armed timer used to leave its old heap entry until the old due time: a charm
    synced every 5 minutes on a 6-hour interval piled up 72 dead entries, so the soak
    benchmark's RSS kept rising. The heap must stay O(charms) however many runs happen."""
    charms = [f"c{n}" for n in range(10)]
    await h.start(*(ScheduleEntry(cid, 360 * MIN) for cid in charms))
    await h.clock.run_for(STAGGER_MAX)  # the first runs, staggered
    for _ in range(50):
        for cid in charms:
            h.scheduler.run_now(cid)
        await h.clock.settle()
        h.clock.advance(300)
        await h.clock.settle()
    assert [len(h.runs_of(cid)) for cid in charms] == [51] * len(charms)
    assert h.scheduler.timer_backlog <= 2 * len(charms) + scheduler_module._HEAP_SLACK

    # Dropping the dead entries kept every live timer: each charm still runs on schedule.
    due: dict[str, datetime] = {}
    for cid in charms:
        next_due = h.scheduler.status(cid).next_due_at
        assert next_due is not None
        due[cid] = next_due
    await h.clock.run_for(360 * 60 * 1.1 + 1)  # the longest jittered interval
    assert [len(h.runs_of(cid)) for cid in charms] == [52] * len(charms)
    assert all(h.runs_of(cid)[-1][1] >= due[cid] for cid in charms)


async def test_membership_is_by_charm_id(h: Harness) -> None:
    await h.start(ScheduleEntry("a", MIN))
    assert "a" in h.scheduler
    assert "b" not in h.scheduler
    h.scheduler.remove("a")
    assert "a" not in h.scheduler
