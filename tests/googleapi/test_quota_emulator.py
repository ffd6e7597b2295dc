"""A full fetch under the emulator's per-user quota: near the ceiling, (almost) no 429s.

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
    assert too_many <= 3, f"{too_many} rate-limit answers"
    assert floor / elapsed >= 0.9, f"ran at {floor / elapsed:.2f} of the quota ceiling"
