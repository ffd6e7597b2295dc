"""Per-account quota budgets, so every charm of one account shares Google's per-user limits.

Gmail limits each user to 15,000 cost units per minute (250/s as a moving average that allows
short bursts), with per-method costs; Calendar to 600 requests per minute per user. Two charms of
the same account (say an inbox importer and a "starred" importer) must share one budget, or
together they trip the limit that each alone respects. The app builds one
:class:`~trayapp.google.client.GoogleApi` per account (``trayapp.auth.wiring``) and hands it to
every charm of that account, so its one :class:`AccountQuota` is the account's budget; the
clients charge every request to it.

Each budget is a token bucket. Going faster than the bucket allows is pointless (Google answers
429 and the retry costs more time than pacing did), so requests wait *before* sending. The
bucket runs at ``headroom`` (default 0.95) of the published rate and its burst is sized so that
``burst + 60 s × rate`` stays within the per-minute limit: no sliding 60-second window can
exceed Google's ceiling, while a sync still runs at ~0.95 of it.

The bucket is written here rather than taken from a library because it must wait on the app's
injectable :class:`~trayapp.core.clock.Clock` (deterministic tests) and allow *debt*: a batch of
50 ``messages.get`` (250 units) may cost more than the burst, and FIFO reservation by debt keeps
concurrent callers fair without a lock or a queue (asyncio runs the reservation atomically).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from trayapp.core.clock import Clock, SystemClock, sleep

#: Gmail quota units per method id (developers.google.com/gmail/api/reference/quota).
GMAIL_COSTS: dict[str, int] = {
    "gmail.users.getProfile": 1,
    "gmail.users.labels.list": 1,
    "gmail.users.labels.get": 1,
    "gmail.users.history.list": 2,
    "gmail.users.messages.list": 5,
    "gmail.users.messages.get": 5,
    "gmail.users.messages.attachments.get": 5,
    "gmail.users.threads.get": 10,
}
DEFAULT_GMAIL_COST = 5  # unknown methods: the common read cost


def gmail_cost(method_id: str) -> int:
    return GMAIL_COSTS.get(method_id, DEFAULT_GMAIL_COST)


class RateBudget:
    """A token bucket with debt, plus a cap on requests in flight.

    ``rate`` is units per second, ``burst`` the bucket size. :meth:`acquire` reserves at once and
    sleeps off any debt, so callers are served in the order they asked.
    """

    def __init__(
        self, *, rate: float, burst: float, max_concurrent: int, clock: Clock | None = None
    ) -> None:
        if rate <= 0 or burst <= 0 or max_concurrent < 1:
            raise ValueError("RateBudget needs rate > 0, burst > 0 and max_concurrent >= 1")
        self.rate = rate
        self.burst = burst
        self.max_concurrent = max_concurrent
        self._clock = clock or SystemClock()
        self._tokens = burst
        self._last = self._clock.monotonic()
        self._slots = asyncio.Semaphore(max_concurrent)
        self.spent = 0.0  # units charged so far (benchmarks and tests read it)
        self.waited = 0.0  # seconds callers spent waiting for units

    @property
    def available(self) -> float:
        """Units in the bucket now (negative while callers are waiting off debt)."""
        self._refill()
        return self._tokens

    async def acquire(self, cost: float) -> None:
        """Take ``cost`` units, waiting until the bucket has produced them."""
        if cost <= 0:
            return
        self._refill()
        self._tokens -= cost
        self.spent += cost
        wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait <= 0:
            return
        self.waited += wait
        try:
            await sleep(self._clock, wait)
        except BaseException:
            # Cancelled while waiting: give the units back so the others are not slowed.
            self._tokens += cost
            self.spent -= cost
            raise

    @asynccontextmanager
    async def reserve(self, cost: float) -> AsyncIterator[None]:
        """Pay ``cost`` units, then hold one of the ``max_concurrent`` slots for the block."""
        await self.acquire(cost)
        async with self._slots:
            yield

    def note_rate_limited(self) -> None:
        """Google said 429 anyway (another app, a clock skew): stop every caller's burst.

        Emptying the bucket makes each charm of the account pace from zero, on top of the
        failing request's own backoff.
        """
        self._refill()
        self._tokens = min(self._tokens, 0.0)

    def _refill(self) -> None:
        now = self._clock.monotonic()
        elapsed = now - self._last
        self._last = now
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    """Per-user limits and how close to them we run. Defaults are Google's published numbers."""

    gmail_units_per_minute: float = 15_000.0
    gmail_burst: float = 250.0  # one 50-call messages.get batch
    gmail_max_concurrent: int = 4
    calendar_requests_per_minute: float = 600.0
    calendar_burst: float = 20.0
    calendar_max_concurrent: int = 4
    headroom: float = 0.95

    def __post_init__(self) -> None:
        if not 0 < self.headroom <= 1:
            raise ValueError("QuotaConfig.headroom must be in (0, 1]")

    @property
    def gmail_rate(self) -> float:
        """Units per second the Gmail budget runs at."""
        return self.gmail_units_per_minute / 60.0 * self.headroom

    @property
    def calendar_rate(self) -> float:
        return self.calendar_requests_per_minute / 60.0 * self.headroom

    def scaled(self, factor: float) -> QuotaConfig:
        """The same shape with every limit multiplied (benchmarks against a faster emulator)."""
        return QuotaConfig(
            gmail_units_per_minute=self.gmail_units_per_minute * factor,
            gmail_burst=self.gmail_burst * factor,
            gmail_max_concurrent=self.gmail_max_concurrent,
            calendar_requests_per_minute=self.calendar_requests_per_minute * factor,
            calendar_burst=self.calendar_burst * factor,
            calendar_max_concurrent=self.calendar_max_concurrent,
            headroom=self.headroom,
        )


@dataclass
class AccountQuota:
    """The budgets of one account: Gmail in cost units, Calendar in requests."""

    gmail: RateBudget
    calendar: RateBudget

    @classmethod
    def create(cls, config: QuotaConfig | None = None, clock: Clock | None = None) -> AccountQuota:
        config = config or QuotaConfig()
        return cls(
            gmail=RateBudget(
                rate=config.gmail_rate,
                burst=config.gmail_burst,
                max_concurrent=config.gmail_max_concurrent,
                clock=clock,
            ),
            calendar=RateBudget(
                rate=config.calendar_rate,
                burst=config.calendar_burst,
                max_concurrent=config.calendar_max_concurrent,
                clock=clock,
            ),
        )
