"""SystemClock and FakeClock: the two time sources the scheduler is tested and run with."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from trayapp.core.clock import Clock, FakeClock, SystemClock, sleep


async def test_system_clock_is_aware_utc_and_waits_for_the_event() -> None:
    clock: Clock = SystemClock()
    assert clock.now().tzinfo is UTC
    event = asyncio.Event()
    asyncio.get_running_loop().call_soon(event.set)
    assert await clock.wait(event, 30) is True  # returns as soon as the event is set


async def test_system_clock_wait_times_out_and_handles_edge_timeouts() -> None:
    clock = SystemClock()
    event = asyncio.Event()
    start = clock.monotonic()
    assert await clock.wait(event, 0.05) is False
    assert clock.monotonic() - start >= 0.04
    assert await clock.wait(event, 0) is False
    event.set()
    assert await clock.wait(event, None) is True


async def test_fake_clock_wakes_waiters_only_when_advanced() -> None:
    clock = FakeClock()
    event = asyncio.Event()
    waiter = asyncio.ensure_future(clock.wait(event, 10))
    await clock.settle()
    clock.advance(9.5)
    await clock.settle()
    assert not waiter.done()
    assert clock.next_deadline() == pytest.approx(0.5)
    clock.advance(0.5)
    await clock.settle()
    assert waiter.result() is False
    assert clock.next_deadline() is None


async def test_fake_clock_wait_returns_true_when_the_event_is_set_first() -> None:
    clock = FakeClock()
    event = asyncio.Event()
    waiter = asyncio.ensure_future(clock.wait(event, 10))
    await clock.settle()
    event.set()
    await clock.settle()
    assert waiter.result() is True
    assert clock.next_deadline() is None  # its timer was withdrawn


async def test_fake_clock_jump_wall_moves_only_the_wall_clock() -> None:
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC))
    mono = clock.monotonic()
    waiter = asyncio.ensure_future(clock.wait(asyncio.Event(), 5))
    await clock.settle()
    clock.jump_wall(3600)
    await clock.settle()
    assert clock.now() == datetime(2026, 3, 1, 1, tzinfo=UTC)
    assert clock.monotonic() == mono
    assert not waiter.done()  # a sleeper does not notice a wall jump by itself
    clock.advance(5)
    await clock.settle()
    assert waiter.done()


async def test_run_for_fires_chained_timers_at_their_own_times() -> None:
    clock = FakeClock()
    seen: list[float] = []

    async def ticker() -> None:
        for _ in range(3):
            await clock.wait(asyncio.Event(), 10)
            seen.append(clock.monotonic())

    task = asyncio.ensure_future(ticker())
    start = clock.monotonic()
    await clock.run_for(100)
    assert task.done()
    assert [t - start for t in seen] == [10, 20, 30]
    assert clock.monotonic() - start == 100


def test_fake_clock_rejects_naive_start_and_backward_advance() -> None:
    with pytest.raises(ValueError):
        FakeClock(datetime(2026, 1, 1))
    clock = FakeClock()
    with pytest.raises(ValueError):
        clock.advance(-1)
    clock.advance(1)
    assert clock.now() == FakeClock().now() + timedelta(seconds=1)


async def test_sleep_waits_on_the_given_clock_not_on_real_time() -> None:
    clock = FakeClock()
    sleeper = asyncio.ensure_future(sleep(clock, 5))
    await clock.run_for(4.9)
    assert not sleeper.done()
    await clock.run_for(0.1)
    assert sleeper.done()
    await sleeper
    waits = clock.waits
    await sleep(clock, 0)  # nothing to wait for: no timer at all
    await sleep(clock, -1)
    assert clock.waits == waits
