"""A full fetch under the emulator's per-user quota: >= 0.98 of the ceiling, no 429s.

Time is virtual and shared: every wait of the client (quota pacing, backoff) advances the
emulator's clock by the same amount, so the emulator's sliding one-minute window sees exactly
the request rate the client would produce in real time, and the test takes a second or two.
The quota is Google's shape scaled down by 10 (1,500 units/min), so 400 messages (more than a
minute of quota) exercise the window.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from tests.emulator.harness import EmulatorServer
from trayapp.google.client import GoogleApi
from trayapp.google.endpoints import GoogleEndpoints
from trayapp.google.quota import AccountQuota, QuotaConfig

from .conftest import EMAIL
from .emulator_tokens import EmulatorTokens
from .helpers import StepClock

SCALE = 0.1
MESSAGES = 400


class SharedClock(StepClock):
    """A StepClock whose waits also move the emulator's virtual clock."""

    def __init__(self, emu: EmulatorServer) -> None:
        super().__init__(start=datetime.fromtimestamp(emu.control.now(), UTC))
        self.emu = emu

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        self.emu.control.advance_clock(seconds)


async def test_full_fetch_runs_near_the_quota_ceiling_without_429s(emu: EmulatorServer) -> None:
    session = emu.quick_setup(EMAIL)
    limit = int(15_000 * SCALE)
    emu.control.set_quota(gmail_units_per_minute=limit, enabled=True)
    for n in range(MESSAGES):
        emu.control.add_message(EMAIL, f"Subject: m{n}\r\n\r\nbody {n}\r\n".encode())
    clock = SharedClock(emu)
    config = QuotaConfig().scaled(SCALE)
    api = GoogleApi(
        EmulatorTokens.for_session(emu, session),
        endpoints=GoogleEndpoints.for_base(emu.base_url),
        quota=AccountQuota.create(config, clock),
        clock=clock,
        rng=random.Random(5),
    )
    async with api:
        gmail = api.gmail()
        start = clock.monotonic()
        ids = [m["id"] async for page in gmail.iter_message_pages() for m in page.messages]
        # One batch at a time: the stepping clock is exact for a single waiter.
        result = await gmail.get_messages(ids, format="minimal", parallel=1)
        elapsed = clock.monotonic() - start
    assert len(result.messages) == MESSAGES and not result.errors
    units = api.quota.gmail.spent
    floor = units / (limit / 60)  # the fastest the quota allows
    statuses = [entry.status for entry in emu.control.requests()]
    too_many = sum(1 for s in statuses if s in (429, 403))
    assert too_many == 0, f"{too_many} rate-limit answers"
    assert floor / elapsed >= 0.98, f"ran at {floor / elapsed:.3f} of the quota ceiling"


async def test_a_lower_real_limit_is_learned_from_a_few_rate_limit_answers(
    emu: EmulatorServer,
) -> None:
    """Another app spends part of the user's quota: Google's real limit for us is 70% of the
    published one. The budget must learn it from the 429s (a handful, not one per batch) and
    still use most of what is left."""
    session = emu.quick_setup(EMAIL)
    published = int(15_000 * SCALE)
    real = int(published * 0.7)
    emu.control.set_quota(gmail_units_per_minute=real, enabled=True)
    count = 1000
    for n in range(count):
        emu.control.add_message(EMAIL, f"Subject: m{n}\r\n\r\nbody {n}\r\n".encode())
    clock = SharedClock(emu)
    api = GoogleApi(
        EmulatorTokens.for_session(emu, session),
        endpoints=GoogleEndpoints.for_base(emu.base_url),
        quota=AccountQuota.create(QuotaConfig().scaled(SCALE), clock),
        clock=clock,
        rng=random.Random(7),
    )
    async with api:
        gmail = api.gmail()
        start = clock.monotonic()
        ids = [m["id"] async for page in gmail.iter_message_pages() for m in page.messages]
        result = await gmail.get_messages(ids, format="minimal", parallel=1)
        elapsed = clock.monotonic() - start
    assert len(result.messages) == count and not result.errors
    budget = api.quota.gmail
    assert budget.rate < budget.ceiling  # it learned: below the published rate
    # Each rate-limited batch answers 429 for its parts; the client sees one answer per round
    # trip and cuts its rate for it.
    limited_parts = sum(1 for e in emu.control.requests() if e.status in (429, 403))
    assert limited_parts > 0  # the test did hit the lower limit
    assert budget.rate_limited <= 5, f"{budget.rate_limited} rate-limited round trips"
    floor = count * 5 / (real / 60)  # the fastest the real limit allows for the messages
    assert floor / elapsed >= 0.75, f"ran at {floor / elapsed:.3f} of the real ceiling"
