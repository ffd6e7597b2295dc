"""Quota budgets: pacing math, fairness, concurrency cap, sharing per account."""

from __future__ import annotations

import asyncio
from bisect import bisect_left

import pytest

from trayapp.core.clock import FakeClock
from trayapp.google.quota import (
    GMAIL_COSTS,
    AccountQuota,
    QuotaConfig,
    RateBudget,
    gmail_cost,
)

from .helpers import StepClock


def test_published_costs() -> None:
    assert gmail_cost("gmail.users.messages.get") == 5
    assert gmail_cost("gmail.users.messages.list") == 5
    assert gmail_cost("gmail.users.history.list") == 2
    assert gmail_cost("gmail.users.getProfile") == 1
    assert gmail_cost("gmail.users.labels.list") == 1
    assert set(GMAIL_COSTS) >= {"gmail.users.getProfile", "gmail.users.history.list"}


def test_defaults_never_exceed_the_per_minute_limit_in_any_window() -> None:
    config = QuotaConfig()
    window = 60 + config.window_slack
    assert config.gmail_burst + window * config.gmail_rate <= config.gmail_units_per_minute
    assert config.calendar_burst + window * config.calendar_rate <= 600
    # No fixed margin: the rate is as close to the published 250 units/s as the burst allows.
    assert config.gmail_rate >= 0.98 * 250


async def test_greedy_full_sync_runs_near_the_ceiling_and_under_it() -> None:
    """A client sending 50-call batches as fast as the budget allows, for 5 virtual minutes.

    It must reach >= 0.98 of the 15,000 units/min ceiling, and no 60-second window may hold more
    than 15,000 units (what Google would answer with 429s).
    """
    clock = StepClock()
    config = QuotaConfig()
    budget = RateBudget(
        rate=config.gmail_rate, burst=config.gmail_burst, max_concurrent=4, clock=clock
    )
    start = clock.monotonic()
    sent: list[float] = []
    while clock.monotonic() - start < 300:
        await budget.acquire(250)  # one batch of 50 messages.get
        sent.append(clock.monotonic() - start)
    elapsed = sent[-1]
    throughput = 250 * (len(sent) - 1) / elapsed * 60  # units/min after the first burst
    assert throughput >= 0.98 * 15_000
    for i, t in enumerate(sent):
        window = bisect_left(sent, t + 60) - i
        assert window * 250 <= 15_000


async def test_acquire_within_burst_does_not_wait() -> None:
    clock = StepClock()
    budget = RateBudget(rate=10, burst=50, max_concurrent=1, clock=clock)
    for _ in range(10):
        await budget.acquire(5)
    assert clock.waits == []
    await budget.acquire(5)
    assert clock.waits == [pytest.approx(0.5)]
    assert budget.spent == 55


async def test_cost_larger_than_burst_waits_off_the_debt() -> None:
    clock = StepClock()
    budget = RateBudget(rate=100, burst=250, max_concurrent=1, clock=clock)
    await budget.acquire(500)  # a 100-call batch
    assert clock.waits == [pytest.approx(2.5)]


async def test_concurrent_callers_are_served_in_order_at_the_rate() -> None:
    clock = FakeClock()
    budget = RateBudget(rate=10, burst=10, max_concurrent=10, clock=clock)
    done: list[tuple[int, float]] = []

    async def caller(n: int) -> None:
        await budget.acquire(10)
        done.append((n, clock.monotonic()))

    tasks = [asyncio.create_task(caller(n)) for n in range(4)]
    await clock.run_for(10)
    await asyncio.gather(*tasks)
    t0 = done[0][1]
    assert [n for n, _ in done] == [0, 1, 2, 3]
    assert [t - t0 for _, t in done] == pytest.approx([0, 1, 2, 3])


async def test_cancelled_waiter_gives_its_units_back() -> None:
    clock = FakeClock()
    budget = RateBudget(rate=10, burst=10, max_concurrent=1, clock=clock)
    await budget.acquire(10)
    waiter = asyncio.create_task(budget.acquire(10))
    await clock.settle()
    assert budget.available == pytest.approx(-10)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.available == pytest.approx(0)
    assert budget.spent == 10


async def test_concurrency_cap() -> None:
    clock = FakeClock()
    budget = RateBudget(rate=1000, burst=1000, max_concurrent=2, clock=clock)
    in_flight = peak = 0
    release = asyncio.Event()

    async def request() -> None:
        nonlocal in_flight, peak
        async with budget.reserve(1):
            in_flight += 1
            peak = max(peak, in_flight)
            await release.wait()
            in_flight -= 1

    tasks = [asyncio.create_task(request()) for _ in range(5)]
    await clock.settle()
    assert in_flight == 2
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 2


async def test_rate_limited_empties_the_bucket() -> None:
    clock = StepClock()
    budget = RateBudget(rate=10, burst=100, max_concurrent=1, clock=clock)
    budget.note_rate_limited()
    await budget.acquire(10)
    # From an empty bucket, at the rate the 429 cut it to (10 x 0.8 units/s).
    assert clock.waits == [pytest.approx(10 / 8)]


async def test_a_rate_limit_answer_cuts_the_rate_and_quiet_minutes_bring_it_back() -> None:
    clock = StepClock()
    budget = RateBudget(rate=100, burst=100, max_concurrent=1, clock=clock, recovery=0.05)
    budget.note_rate_limited()
    budget.note_rate_limited()  # the other requests in flight: same news, one cut
    assert budget.rate == pytest.approx(80)
    assert (budget.rate_limited, budget.cuts) == (2, 1)
    clock.advance(1.5)
    budget.note_rate_limited()  # a new answer at the lower rate: cut again
    assert budget.cuts == 2
    low = budget.rate
    assert low < 80
    clock.advance(60)  # a quiet minute gives back 5% of the ceiling
    assert budget.available == pytest.approx(100)
    assert budget.rate == pytest.approx(low + 5)
    clock.advance(3600)  # never above the ceiling
    budget.available  # noqa: B018 (refills)
    assert budget.rate == pytest.approx(100)


def test_repeated_rate_limits_never_stop_the_budget() -> None:
    clock = StepClock()
    budget = RateBudget(rate=100, burst=100, max_concurrent=1, clock=clock, floor=0.1)
    for _ in range(50):
        clock.advance(2)
        budget.note_rate_limited()
    assert budget.rate == pytest.approx(10, rel=0.1)


def test_scaled_config_keeps_the_shape() -> None:
    fast = QuotaConfig().scaled(10)
    assert fast.gmail_rate == pytest.approx(QuotaConfig().gmail_rate * 10)
    assert fast.gmail_burst + 60 * fast.gmail_rate <= fast.gmail_units_per_minute
    quota = AccountQuota.create(fast)
    assert quota.calendar.rate == pytest.approx(QuotaConfig().calendar_rate * 10)


def test_invalid_budgets_are_refused() -> None:
    with pytest.raises(ValueError):
        RateBudget(rate=0, burst=1, max_concurrent=1)
    with pytest.raises(ValueError):
        QuotaConfig(gmail_burst=15_000)  # a burst of a whole minute leaves no rate
    with pytest.raises(ValueError):
        QuotaConfig(window_slack=-1)
    with pytest.raises(ValueError):
        RateBudget(rate=1, burst=1, max_concurrent=1, decrease=1.0)
