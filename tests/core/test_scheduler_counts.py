"""What one run costs the scheduler, counted (issue 17.6): tasks, timers, SQLite statements.

Timings are never pass/fail; these counts are. They pin the per-run path that bench/scheduler.py
measures: one task per run (the updater is awaited in it, not in a second task), one deadline
timer shared by runs that follow one another, and the status and history writes of one loop
iteration committed together.
"""

from __future__ import annotations

import asyncio
import gc
import random
import sqlite3
from collections.abc import Callable, Coroutine, Generator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from trayapp.core import scheduler as scheduler_module
from trayapp.core.clock import Cancellable, FakeClock
from trayapp.core.outcomes import OutcomeKind, RunReport
from trayapp.core.redact import redact
from trayapp.core.scheduler import BackoffPolicy, ScheduleEntry, Scheduler
from trayapp.core.status import CharmState
from trayapp.core.statusrepo import InMemoryStatusRepo, StatusRepo, StoreStatusRepo
from trayapp.core.store import Store

HOUR = timedelta(hours=1)
RUNS = 40
CONCURRENCY = 4


class TimerClock(FakeClock):
    """A FakeClock that keeps the timers handed out by ``call_later`` (the run deadlines; the
    scheduler loop sleeps with ``wait``)."""

    def __init__(self) -> None:
        super().__init__()
        self.timers: list[Cancellable] = []

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable:
        timer = super().call_later(seconds, callback)
        self.timers.append(timer)
        return timer

    def pending_timers(self) -> int:
        return sum(1 for t in self.timers if isinstance(t, asyncio.Future) and not t.done())


async def noop(charm_id: str, trigger: str) -> RunReport:
    return RunReport()


def make(repo: StatusRepo, clock: FakeClock, **kwargs: Any) -> Scheduler:
    scheduler = Scheduler(
        noop,
        repo,
        clock,
        max_concurrency=CONCURRENCY,
        rng=random.Random(1),
        loop_lag_threshold=0,
        **kwargs,
    )
    for i in range(RUNS):
        scheduler.add(ScheduleEntry(f"c{i}", HOUR))
    return scheduler


async def started(scheduler: Scheduler, clock: FakeClock) -> None:
    """Start it without scheduling: only run_now() runs a charm."""
    await scheduler.start(schedule=False)
    await clock.settle()


class TaskCounter:
    """Counts the tasks created on the running loop (its task factory)."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []
        self._loop = asyncio.get_running_loop()
        self._previous = self._loop.get_task_factory()

    def __enter__(self) -> TaskCounter:
        def factory(
            loop: asyncio.AbstractEventLoop,
            coro: Generator[Any, None, Any] | Coroutine[Any, Any, Any],
            **kwargs: Any,
        ) -> asyncio.Task[Any]:
            task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **kwargs)
            self.tasks.append(task)
            return task

        self._loop.set_task_factory(factory)  # type: ignore[arg-type]
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.set_task_factory(self._previous)

    @property
    def names(self) -> list[str]:
        return sorted(task.get_name() for task in self.tasks)  # named after the factory ran


async def test_one_task_per_run() -> None:
    clock = FakeClock()
    scheduler = make(InMemoryStatusRepo(), clock)
    await started(scheduler, clock)
    try:
        with TaskCounter() as tasks:
            futures = [scheduler.run_now(f"c{i}") for i in range(RUNS)]
            await asyncio.gather(*futures)
            await clock.settle()
        assert all(f.result().ok for f in futures)
        # One task per run, named after its charm; no updater task, no watcher task. (The
        # only others: the FakeClock's own waiter behind the scheduler loop's sleep, when the
        # first run_now wakes it to re-plan: per loop wake-up, not per run.)
        ours = [name for name in tasks.names if name.startswith("trayapp-")]
        assert ours == sorted(f"trayapp-run:c{i}" for i in range(RUNS))
        assert len(tasks.names) - len(ours) <= 2, tasks.names
    finally:
        await scheduler.shutdown()


async def test_runs_that_follow_one_another_share_one_deadline_timer() -> None:
    clock = TimerClock()
    scheduler = make(InMemoryStatusRepo(), clock)
    await started(scheduler, clock)
    try:
        futures = [scheduler.run_now(f"c{i}") for i in range(RUNS)]
        await asyncio.gather(*futures)
        await clock.settle()
        # A timer per run would be RUNS (before: a timed Event wait per run). Runs that start
        # while others execute or wait for a slot reuse the armed deadline timer.
        assert len(clock.timers) == 1
        assert clock.pending_timers() == 0  # and none is left behind once they ended
    finally:
        await scheduler.shutdown()


async def test_deadline_still_applies_to_each_run_under_the_shared_timer() -> None:
    """The shared timer must not let a later run keep an earlier one past its deadline."""
    clock = TimerClock()
    gate = asyncio.Event()

    async def hangs(charm_id: str, trigger: str) -> RunReport:
        await gate.wait()
        return RunReport()

    # A long backoff: the timed-out short run must not run again (and hold a deadline of its
    # own) before long's deadline; with the default 30 s backoff its third run started before
    # t=100 in about one test in twelve (the jitter), and a timer was rightly left for it.
    scheduler = Scheduler(
        hangs,
        InMemoryStatusRepo(),
        clock,
        loop_lag_threshold=0,
        backoff=BackoffPolicy(base=1000.0),
        rng=random.Random(1),
    )
    scheduler.add(ScheduleEntry("long", HOUR, timeout=timedelta(seconds=100)))
    scheduler.add(ScheduleEntry("short", HOUR, timeout=timedelta(seconds=10)))
    await scheduler.start(schedule=False)
    try:
        long_run = scheduler.run_now("long")
        await clock.run_for(5)
        short_run = scheduler.run_now("short")  # its deadline (t=15) is before long's (t=100)
        await clock.run_for(10)
        assert short_run.done() and short_run.result().kind is OutcomeKind.TIMEOUT
        assert not long_run.done()
        await clock.run_for(85)
        assert long_run.done() and long_run.result().kind is OutcomeKind.TIMEOUT
        assert clock.pending_timers() == 0
    finally:
        gate.set()
        await scheduler.shutdown()


class StatementLog:
    """Every SQL statement the store's connection executes (sqlite3's trace callback).

    SQLite traces a statement again for each trigger it fires (the item count triggers), with
    the same text: a statement identical to the one before is such a re-run, not counted.
    """

    def __init__(self, store: Store) -> None:
        self.statements: list[str] = []
        self._conn: sqlite3.Connection = store._db()

    def _trace(self, sql: str) -> None:
        if not self.statements or self.statements[-1] != sql:
            self.statements.append(sql)

    def __enter__(self) -> StatementLog:
        self._conn.set_trace_callback(self._trace)
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.set_trace_callback(None)

    def count(self, verb: str) -> int:
        return sum(1 for s in self.statements if s.lstrip().upper().startswith(verb))


async def test_sqlite_statements_and_commits_per_run(tmp_path: Path) -> None:
    clock = FakeClock()
    with Store.open(tmp_path / "store.db") as store:
        repo = StoreStatusRepo(store)
        scheduler = make(repo, clock)
        await started(scheduler, clock)
        try:
            with StatementLog(store) as log:
                futures = [scheduler.run_now(f"c{i}") for i in range(RUNS)]
                await asyncio.gather(*futures)
                await clock.settle()
            assert all(f.result().ok for f in futures)
            # Before: three transactions per run (status when it started, its history record,
            # status when it ended), 17 statements. Now the runs that end in one loop iteration
            # (up to CONCURRENCY here) commit together: status and record in one transaction.
            commits = log.count("COMMIT")
            assert commits <= RUNS // CONCURRENCY + 1, log.statements
            # Per run: its record, the trim of its history (one DELETE that reads the count
            # and only the rows that go) and its status, written with executemany per
            # iteration; nothing is read first. Session 3: 6 statements per run (a count read
            # and a statement per item); before it 17.
            assert log.count("INSERT") == 2 * RUNS, log.statements
            assert log.count("DELETE") == RUNS, log.statements
            assert log.count("SELECT") == 0, log.statements
            assert len(log.statements) <= 3 * RUNS + 2 * commits, len(log.statements)
            # Nothing lost by batching: every run's record and final status are stored.
            saved = repo.load_all()
            for i in range(RUNS):
                assert saved[f"c{i}"].state is CharmState.SCHEDULED
                assert saved[f"c{i}"].last_run_at == clock.now()
                assert [r.trigger for r in repo.history(f"c{i}")] == ["manual"]
        finally:
            await scheduler.shutdown()


async def test_a_run_in_progress_is_saved_as_running_before_its_updater_continues(
    tmp_path: Path,
) -> None:
    """Batching must not hide a run from other processes: its "running" status is committed
    at the end of the loop iteration it started in (``trayapp status`` and the kill -9 test
    read it from the store)."""
    clock = FakeClock()
    gate = asyncio.Event()

    async def waits(charm_id: str, trigger: str) -> RunReport:
        await gate.wait()
        return RunReport()

    with Store.open(tmp_path / "store.db") as store:
        repo = StoreStatusRepo(store)
        scheduler = Scheduler(waits, repo, clock, loop_lag_threshold=0)
        scheduler.add(ScheduleEntry("a", HOUR))
        await scheduler.start(schedule=False)
        try:
            future = scheduler.run_now("a")
            await clock.settle()
            with Store.open(tmp_path / "store.db") as other:  # another process's view
                assert StoreStatusRepo(other).load_all()["a"].state is CharmState.RUNNING
            gate.set()
            await future
            await clock.settle()
            with Store.open(tmp_path / "store.db") as other:
                seen = StoreStatusRepo(other)
                assert seen.load_all()["a"].state is CharmState.SCHEDULED
                assert [r.outcome for r in seen.history("a")] == [OutcomeKind.OK]
        finally:
            await scheduler.shutdown()


async def test_runs_leave_no_reference_cycles_for_the_garbage_collector() -> None:
    """Everything a run makes is freed by reference counting when it ends. Each run used to
    leave a cycle (the run kept its coroutine's frame object, which kept the finished
    coroutine's locals, the run among them): at 10k runs that was most of the collector's work
    (153 young-generation collections per 10k runs instead of 36)."""
    clock = FakeClock()
    scheduler = make(InMemoryStatusRepo(), clock, on_event=lambda event: None)
    await started(scheduler, clock)
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):  # every charm runs three times: steady state, history kept
            futures = [scheduler.run_now(f"c{i}") for i in range(RUNS)]
            await asyncio.gather(*futures)
            await clock.settle()
            assert all(f.result().ok for f in futures)
        del futures
        assert gc.collect() == 0  # nothing unreachable: no cycle was left behind
    finally:
        gc.enable()
        await scheduler.shutdown()


async def test_a_run_without_error_text_is_not_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages and tracebacks are scrubbed of secrets before they are saved; a run that ends
    OK has neither, so it costs no regular-expression pass (issue 17.6)."""
    calls: list[str] = []

    def counting(text: str) -> str:
        calls.append(text)
        return redact(text)

    monkeypatch.setattr(scheduler_module, "redact", counting)

    async def fails_for_c0(charm_id: str, trigger: str) -> RunReport:
        if charm_id == "c0":
            raise RuntimeError("bad thing with token=abc123")
        return RunReport()

    clock = FakeClock()
    scheduler = Scheduler(
        fails_for_c0,
        InMemoryStatusRepo(),
        clock,
        max_concurrency=CONCURRENCY,
        loop_lag_threshold=0,
    )
    for i in range(RUNS):
        scheduler.add(ScheduleEntry(f"c{i}", HOUR))
    await started(scheduler, clock)
    try:
        oks = [scheduler.run_now(f"c{i}") for i in range(1, RUNS)]
        await asyncio.gather(*oks)
        assert all(f.result().ok for f in oks)
        assert calls == []  # RUNS - 1 clean runs: no redaction at all
        failed = await scheduler.run_now("c0")
        assert failed.kind is OutcomeKind.BUG
        assert calls  # the failure's message and traceback went through it
        assert "abc123" not in failed.message
    finally:
        await scheduler.shutdown()
