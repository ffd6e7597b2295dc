"""The app's loop (trayapp.ui.qtloop.QtLoop): cancelled timers leave no Qt timer behind.

qasync's own loop keeps a Qt timer for every cancelled ``call_later``, which then wakes the idle
tray when it was due (issue 17 item 3). Counts, not timings.
"""

from __future__ import annotations

import asyncio
import threading

from tests.ui.conftest import QLoop


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
    def pool_threads() -> set[int]:
        return {t.ident or 0 for t in threading.enumerate() if t.name.startswith("trayapp-pool")}

    async def scenario() -> tuple[set[int], set[int]]:
        before = pool_threads()
        used = set()
        for _ in range(5):  # sequential work reuses the one idle worker
            used.add(await asyncio.to_thread(threading.get_ident))
        return used, pool_threads() - before

    used, started = qloop.run(scenario())
    assert len(used) == 1
    assert len(started) <= 1
