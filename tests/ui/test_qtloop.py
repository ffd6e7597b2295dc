"""The app's loop (trayapp.ui.qtloop.QtLoop): cancelled timers leave no Qt timer behind.

qasync's own loop keeps a Qt timer for every cancelled ``call_later``, which then wakes the idle
tray when it was due (issue 17 item 3). Counts, not timings.
"""

from __future__ import annotations

import asyncio
import threading

from tests.ui.conftest import QLoop
from trayapp.ui.qtloop import POOL_WORKERS


def test_cancelled_timers_are_gone(qloop: QLoop) -> None:
    loop = qloop.loop
    base = loop.pending_timers()
    fired: list[int] = []
    handles = [loop.call_later(60, fired.append, n) for n in range(50)]
    assert loop.pending_timers() == base + 50
    for h in handles:
        h.cancel()
    assert loop.pending_timers() == base
    assert fired == []


def test_timeouts_of_finished_waits_leave_nothing(qloop: QLoop) -> None:
    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        before = loop.pending_timers()  # type: ignore[attr-defined]
        for _ in range(20):
            await asyncio.wait_for(asyncio.sleep(0), 60)
            async with asyncio.timeout(120):
                await asyncio.sleep(0)
        return int(loop.pending_timers()) - before  # type: ignore[attr-defined]

    assert qloop.run(scenario()) == 0


def test_due_callbacks_run_once_in_order(qloop: QLoop) -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        done = asyncio.Event()
        loop.call_later(0.05, order.append, "b")
        loop.call_later(0.01, order.append, "a")
        loop.call_at(loop.time() + 0.1, lambda: (order.append("c"), done.set()))
        await done.wait()
        await asyncio.sleep(0.05)
        return order

    assert qloop.run(scenario()) == ["a", "b", "c"]


def test_default_executor_starts_threads_on_demand(qloop: QLoop) -> None:
    # Counted by the pool's own threads, not threading.active_count(): threads of other parts
    # of the process (earlier tests' helpers ending, D-Bus) came and went during the scenario.
    # Thread objects, not idents: an ident of an earlier test's ended worker can be reused.
    def pool_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("trayapp-pool")}

    Threads = set[threading.Thread]

    async def scenario() -> tuple[Threads, Threads]:
        before = pool_threads()
        await asyncio.to_thread(threading.get_ident)
        after_first = pool_threads() - before
        for _ in range(4):
            await asyncio.to_thread(threading.get_ident)
        return after_first, pool_threads() - before

    after_first, started = qloop.run(scenario())
    # The first call starts exactly one worker (qasync's executor started ten at first use).
    assert len(after_first) == 1
    # Sequential calls mostly reuse it, but the stdlib pool may start one more per call: its
    # worker marks itself idle only after the result is delivered, so the next submit can race
    # it (concurrent.futures.thread._worker). Never more than one per call, never the full pool.
    assert len(started) <= 5 < POOL_WORKERS
