"""Scheduler benchmark: run overhead and lateness against a bare asyncio floor, and idle cost.

    PYTHONPATH=. .venv/bin/python bench/scheduler.py [--charms 10000] [--reps 3]

* overhead: ``run_now()`` of N charms whose updater does nothing; CPU time per run of
  everything the scheduler does per run (queueing, the deadline, status transitions and saves,
  events, history, the watchdog), against the floor (:func:`floor_overhead`): a bare asyncio
  scheduler doing the same work minus that bookkeeping (a task per run, a slot, a deadline,
  the result recorded). Status kept in memory, and again in a real SQLite store against a
  floor that records each result in SQLite. Scheduler and floor alternate ``--reps`` times in
  one process; ratios are min/median/max over the repetitions.
* lateness: N charms due over ``--spread`` seconds (real SystemClock), evenly spread and in
  bursts due at the very same instant (``--bursts``); how late each run's updater started after
  its due time, p50/p99/max, against the floor (call_at timers starting the floor's runs).
* idle: 1,000 charms all due in 10 minutes; CPU seconds, scheduler loop iterations and event
  loop wake-ups (selector ``select()`` calls) while nothing is due. The target is 0 wake-ups.

About 12 minutes with the defaults on a 2-core machine; ``--reps 1 --lateness-reps 1
--idle-seconds 5`` for a quick look.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import selectors
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trayapp.core.clock import SystemClock
from trayapp.core.events import EngineEvent
from trayapp.core.outcomes import RunReport
from trayapp.core.scheduler import ScheduleEntry, Scheduler
from trayapp.core.status import CharmStatus
from trayapp.core.statusrepo import InMemoryStatusRepo, StatusRepo, StoreStatusRepo
from trayapp.core.store import Store

HOUR = timedelta(hours=1)
T = TypeVar("T")


class CountingSelector(selectors.DefaultSelector):
    """The platform selector, counting how often the event loop goes to sleep in select().

    Each blocking select() ends in a wake-up; a select(0) is the loop polling for I/O between
    ready callbacks, not a wake-up, so it is not counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.selects = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout > 0:
            self.selects += 1
        return super().select(timeout)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def noop(charm_id: str, trigger: str) -> RunReport:
    return RunReport()


def observer(event: EngineEvent) -> None:
    """The engine always observes the scheduler's events (it publishes them): so does the
    benchmark, so their cost is counted."""


@contextlib.contextmanager
def status_repo(kind: str) -> Iterator[StatusRepo]:
    """``memory``: InMemoryStatusRepo; ``sqlite``: the app's StoreStatusRepo in a fresh store
    (WAL, synchronous=NORMAL, as a profile's) in a temporary directory."""
    if kind == "memory":
        yield InMemoryStatusRepo()
        return
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "store.db") as store:
        yield StoreStatusRepo(store)


@contextlib.contextmanager
def results_table() -> Iterator[sqlite3.Connection]:
    """The SQLite floor's own store: one table of results, configured as the app's store."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE results (charm TEXT PRIMARY KEY, started REAL, ended REAL, ok INTEGER)"
        )
        try:
            yield conn
        finally:
            conn.close()


async def bench_overhead(n: int, concurrency: int, store: str) -> dict[str, float]:
    clock = SystemClock()
    with status_repo(store) as repo:
        # Already run once: next due in an hour, so only run_now() runs them.
        due = clock.now() + HOUR
        repo.save_batch([CharmStatus(f"c{i}", next_due_at=due) for i in range(n)], [])
        scheduler = Scheduler(noop, repo, clock, max_concurrency=concurrency, on_event=observer)
        for i in range(n):
            scheduler.add(ScheduleEntry(f"c{i}", HOUR))
        await scheduler.start()
        wall, cpu = time.perf_counter(), time.process_time()
        futures = {f"c{i}": scheduler.run_now(f"c{i}") for i in range(n)}
        await asyncio.gather(*futures.values())
        scheduler.flush()  # the last iteration's writes are part of the work
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await scheduler.shutdown()
    assert all(f.result().ok for f in futures.values())
    return {"wall_us": wall / n * 1e6, "cpu_us": cpu / n * 1e6, "runs_per_s": n / wall}


async def floor_overhead(n: int, concurrency: int, store: str) -> dict[str, float]:
    """The bare asyncio floor for the same work: a scheduler with none of our bookkeeping.

    Per run: a future handed to the caller, one task that waits for one of ``concurrency``
    slots, awaits the no-op updater under a deadline (``asyncio.timeout``, the entry's default
    10 minutes), records the result with its start and end times (a dict per charm, as a status
    store would), and sets the future. No status transitions, history, events, backoff,
    watchdog or redaction. ``store="sqlite"``: the result is also written to a SQLite table,
    one row and one commit per run (:func:`results_table`).
    """
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(results_table()) if store == "sqlite" else None
        return await _floor_overhead(n, concurrency, conn)


async def _floor_overhead(
    n: int, concurrency: int, conn: sqlite3.Connection | None
) -> dict[str, float]:
    slots = asyncio.Semaphore(concurrency)
    results: dict[str, tuple[float, float, RunReport]] = {}
    deadline = timedelta(minutes=10).total_seconds()

    async def one(charm_id: str, future: asyncio.Future[RunReport]) -> None:
        async with slots:
            started = time.time()
            async with asyncio.timeout(deadline):
                result = await noop(charm_id, "manual")
            ended = time.time()
            results[charm_id] = (started, ended, result)
            if conn is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
                    (charm_id, started, ended, 1),
                )
            future.set_result(result)

    loop = asyncio.get_running_loop()
    wall, cpu = time.perf_counter(), time.process_time()
    futures: list[asyncio.Future[RunReport]] = []
    tasks = []
    for i in range(n):
        future: asyncio.Future[RunReport] = loop.create_future()
        futures.append(future)
        tasks.append(asyncio.create_task(one(f"c{i}", future)))
    await asyncio.gather(*futures)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await asyncio.gather(*tasks)
    assert len(results) == n
    return {"wall_us": wall / n * 1e6, "cpu_us": cpu / n * 1e6, "runs_per_s": n / wall}


def due_offsets(n: int, spread: float, burst: int) -> list[float]:
    """Seconds after the first due time: ``n`` charms over ``spread`` seconds, ``burst`` of them
    due at the very same instant each time (1: evenly spread)."""
    groups = max(1, -(-n // burst))
    return [spread * (i // burst) / groups for i in range(n)]


LEAD = 10.0  # seconds from setup to the first due time: setup must not make charms overdue


def lateness_stats(late_s: list[tuple[int, float]]) -> dict[str, float]:
    """p50/p99/max over every run, and (for bursts) the p99 within each burst: its median over
    the bursts says what a typical burst costs, which a single stall (a full garbage
    collection, the process preempted) in one of the 20 bursts cannot move. The overall p99 of
    10,000 runs in bursts of 500 is the tail of the worst burst alone."""
    ms = [x * 1000 for _, x in late_s]
    groups: dict[int, list[float]] = {}
    for group, x in late_s:
        groups.setdefault(group, []).append(x * 1000)
    per_burst = sorted(percentile(v, 0.99) for v in groups.values())
    return {
        "runs": len(ms),
        "p50_ms": percentile(ms, 0.50),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
        "burst_p99_median_ms": per_burst[len(per_burst) // 2],
    }


async def floor_lateness(
    n: int, spread: float, burst: int, concurrency: int, store: str = "memory"
) -> dict[str, float]:
    """The bare asyncio floor for lateness: at each due time (a ``call_at`` timer) a task is
    started that waits for one of ``concurrency`` slots, notes how late its updater starts,
    awaits it under a deadline and records the result: the scheduler's work minus its
    bookkeeping, as in :func:`floor_overhead` (``store="sqlite"``: a row and a commit per run
    too, as there; before session 4 this floor wrote nothing for either store)."""
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(results_table()) if store == "sqlite" else None
        return await _floor_lateness(n, spread, burst, concurrency, conn)


async def _floor_lateness(
    n: int, spread: float, burst: int, concurrency: int, conn: sqlite3.Connection | None
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(concurrency)
    results: dict[str, RunReport] = {}
    lateness: list[tuple[int, float]] = []
    done = asyncio.Event()
    deadline = timedelta(minutes=10).total_seconds()
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, due: float) -> None:
        charm_id = f"c{i}"
        async with slots:
            started = time.time()
            lateness.append((i // burst, started - due))
            async with asyncio.timeout(deadline):
                results[charm_id] = await noop(charm_id, "schedule")
            if conn is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
                    (charm_id, started, time.time(), 1),
                )
        if len(lateness) == n:
            done.set()

    def fire(i: int, due: float) -> None:
        task = loop.create_task(one(i, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    base_loop, base_wall = loop.time() + LEAD, time.time() + LEAD
    for i, offset in enumerate(due_offsets(n, spread, burst)):
        loop.call_at(base_loop + offset, fire, i, base_wall + offset)
    await asyncio.wait_for(done.wait(), spread + 120)
    return lateness_stats(lateness)


async def bench_lateness(
    n: int, spread: float, burst: int, concurrency: int, store: str
) -> dict[str, float]:
    clock = SystemClock()
    lateness: list[tuple[int, float]] = []
    all_ran = asyncio.Event()
    scheduler: Scheduler | None = None

    async def runner(charm_id: str, trigger: str) -> RunReport:
        assert scheduler is not None
        due = scheduler.status(charm_id).next_due_at  # still the due time while it runs
        assert due is not None
        lateness.append((int(charm_id[1:]) // burst, (clock.now() - due).total_seconds()))
        if len(lateness) == n:
            all_ran.set()
        return RunReport()

    with status_repo(store) as repo:
        first = clock.now() + timedelta(seconds=LEAD)
        statuses = [
            CharmStatus(f"c{i}", next_due_at=first + timedelta(seconds=offset))
            for i, offset in enumerate(due_offsets(n, spread, burst))
        ]
        repo.save_batch(statuses, [])  # one transaction: setup must stay well inside LEAD
        scheduler = Scheduler(runner, repo, clock, max_concurrency=concurrency, on_event=observer)
        for i in range(n):
            scheduler.add(ScheduleEntry(f"c{i}", HOUR))
        await scheduler.start()
        # A charm already due when the scheduler starts is run as overdue (staggered over
        # seconds): the setup was too slow for LEAD and the measurement would mean nothing.
        late_setup = (clock.now() - first).total_seconds()
        if late_setup > 0:
            raise RuntimeError(f"setup took {late_setup:.1f} s past the first due time")
        await asyncio.wait_for(all_ran.wait(), spread + 120)
        await scheduler.shutdown()
    return lateness_stats(lateness)


async def bench_idle(n: int, seconds: float, selector: CountingSelector) -> dict[str, float]:
    clock = SystemClock()
    repo = InMemoryStatusRepo()
    for i in range(n):
        repo.save(CharmStatus(f"c{i}", next_due_at=clock.now() + timedelta(minutes=10)))
    scheduler = Scheduler(noop, repo, clock)
    for i in range(n):
        scheduler.add(ScheduleEntry(f"c{i}", HOUR))
    await scheduler.start()
    await asyncio.sleep(0)  # let the loop plan its (single) sleep
    await asyncio.sleep(0)
    wakeups, selects, cpu = scheduler.loop_wakeups, selector.selects, time.process_time()
    # One plain sleep for the whole window: the driver adds exactly one wake-up, at the end.
    await asyncio.sleep(seconds)
    result = {
        "cpu_s": time.process_time() - cpu,
        "loop_iterations": scheduler.loop_wakeups - wakeups,
        "selects": selector.selects - selects - 1,  # minus the driver's own sleep
    }
    await scheduler.shutdown()
    return result


def run(
    coro_factory: Callable[[], Coroutine[Any, Any, T]], selector: CountingSelector | None = None
) -> T:
    def loop_factory() -> asyncio.AbstractEventLoop:
        return asyncio.SelectorEventLoop(selector or CountingSelector())

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coro_factory())


def min_med_max(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return ordered[0], ordered[len(ordered) // 2], ordered[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--charms", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3, help="repetitions (min/median/max)")
    parser.add_argument("--lateness-reps", type=int, default=3, help="repetitions of lateness")
    parser.add_argument("--spread", type=float, default=5.0, help="seconds the due times span")
    parser.add_argument(
        "--bursts",
        default="1,500",
        help="charms due at the same instant, comma-separated (1: evenly spread)",
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--idle-charms", type=int, default=1_000)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    args = parser.parse_args()
    n, conc, reps = args.charms, args.concurrency, args.reps

    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, asyncio SelectorEventLoop")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows: list[tuple[str, str, str]] = []

    # Scheduler and floor alternate in the same process: each ratio is scheduler / floor of
    # the same repetition, so machine load hits both alike.
    for store in ("memory", "sqlite"):
        pairs = []
        for _ in range(reps):
            o = run(lambda: bench_overhead(n, conc, store))  # noqa: B023 - run at once
            f = run(lambda: floor_overhead(n, conc, store))  # noqa: B023
            pairs.append((o["cpu_us"], f["cpu_us"]))
        lo, med, hi = min_med_max([a for a, _ in pairs])
        rows.append(
            (
                f"run CPU, status in {store}",
                f"{med:.1f} µs/run",
                f"{n} no-op runs, concurrency {conc}; min {lo:.1f} max {hi:.1f}",
            )
        )
        lo, med, hi = min_med_max([b for _, b in pairs])
        floor = "a task, a slot, asyncio.timeout, result kept" + (
            "" if store == "memory" else ", a row + commit in SQLite"
        )
        rows.append((f"  floor, {store}", f"{med:.1f} µs/run", f"{floor}; {lo:.1f}-{hi:.1f}"))
        lo, med, hi = min_med_max([a / b for a, b in pairs])
        rows.append(
            (
                f"  ratio, {store}",
                f"{med:.2f}",
                f"scheduler / floor, min {lo:.2f} max {hi:.2f} (x{reps}); target <= 2",
            )
        )

    bursts = [int(b) for b in args.bursts.split(",")]
    for store, burst in [(st, b) for st in ("memory", "sqlite") for b in bursts]:
        ours, floors = [], []
        for _ in range(args.lateness_reps):
            ours.append(run(lambda: bench_lateness(n, args.spread, burst, conc, store)))  # noqa: B023
            floors.append(run(lambda: floor_lateness(n, args.spread, burst, conc, store)))  # noqa: B023
        what = ("evenly" if burst == 1 else f"{burst} at once") + f", {store}"
        lo, med, hi = min_med_max([r["p99_ms"] for r in ours])
        rows.append(
            (
                f"lateness p99, {what}",
                f"{med:.2f} ms",
                f"{n} due over {args.spread:g} s; min {lo:.2f} max {hi:.2f}; target <= 50",
            )
        )
        lo, med, hi = min_med_max([r["p99_ms"] for r in floors])
        rows.append((f"  floor p99, {what}", f"{med:.2f} ms", f"min {lo:.2f} max {hi:.2f}"))
        if burst > 1:
            lo, med, hi = min_med_max([r["burst_p99_median_ms"] for r in ours])
            floor_med = statistics.median(r["burst_p99_median_ms"] for r in floors)
            rows.append(
                (
                    f"  p99 in a typical burst, {what}",
                    f"{med:.2f} ms",
                    f"median over the bursts of each burst's p99; floor {floor_med:.2f} ms",
                )
            )
        rows.append(
            (
                f"  p50 / max, {what}",
                f"{statistics.median(r['p50_ms'] for r in ours):.2f} ms",
                f"max {max(r['max_ms'] for r in ours):.2f} ms "
                f"(floor {max(r['max_ms'] for r in floors):.2f} ms)",
            )
        )

    selector = CountingSelector()
    idle = run(lambda: bench_idle(args.idle_charms, args.idle_seconds, selector), selector)
    label = f"{args.idle_charms} charms due in 10 min, {args.idle_seconds:g} s"
    rows.append(("idle CPU", f"{idle['cpu_s']:.4f} s", label))
    rows.append(("idle scheduler wake-ups", f"{idle['loop_iterations']:.0f}", "target 0"))
    rows.append(("idle event-loop wake-ups", f"{idle['selects']:.0f}", "select() calls, target 0"))
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    widths = [max(len(r[i]) for r in [*rows, ("metric", "value", "notes")]) for i in range(3)]
    header = ("metric", "value", "notes")
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
