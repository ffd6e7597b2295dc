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
bucket's rate is the highest for which ``burst + (60 s + slack) × rate`` stays within the
per-minute limit, so no sliding 60-second window can exceed Google's ceiling while a long sync
runs at ~0.98-0.99 of it; no fixed safety margin. The published limit is only where it starts:
the budget learns the real one from Google's answers (a rate-limit answer cuts the rate
multiplicatively, each quiet minute creeps it back), so another app spending the same user's
quota costs a few 429s, not one per request.

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
    """An adaptive token bucket with debt, plus a cap on requests in flight.

    ``rate`` starts at ``ceiling`` (units per second: the most the account's published limit
    allows, see :class:`QuotaConfig`), ``burst`` is the bucket size. :meth:`acquire` reserves at
    once and sleeps off any debt, so callers are served in the order they asked.

    The budget learns from Google's answers (AIMD, as TCP does): a rate-limit answer
    (:meth:`note_rate_limited`: another app of the user spends the same per-user quota, or the
    limit is lower than published) cuts the rate by ``decrease`` and empties the bucket; every
    minute without one gives back ``recovery`` of the ceiling, up to the ceiling and never above.
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        max_concurrent: int,
        clock: Clock | None = None,
        decrease: float = 0.8,
        recovery: float = 0.05,
        floor: float = 0.05,
    ) -> None:
        if rate <= 0 or burst <= 0 or max_concurrent < 1:
            raise ValueError("RateBudget needs rate > 0, burst > 0 and max_concurrent >= 1")
        if not 0 < decrease < 1 or recovery < 0 or not 0 < floor <= 1:
            raise ValueError("RateBudget needs 0 < decrease < 1, recovery >= 0, 0 < floor <= 1")
        self.ceiling = rate
        self.rate = rate
        self.burst = burst
        self.max_concurrent = max_concurrent
        self.decrease = decrease
        self.recovery = recovery
        self.floor = floor
        self._clock = clock or SystemClock()
        self._tokens = burst
        self._last = self._clock.monotonic()
        self._last_cut: float | None = None
        self._slots = asyncio.Semaphore(max_concurrent)
        self.spent = 0.0  # units charged so far (benchmarks and tests read it)
        self.waited = 0.0  # seconds callers spent waiting for units
        self.rate_limited = 0  # rate-limit answers reported so far
        self.cuts = 0  # times the rate was cut because of them

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
        """Hold one of the ``max_concurrent`` slots, pay ``cost`` units, then run the block.

        The slot comes first so a request leaves as soon as it is paid for: paying first and
        then queueing for a slot would send paid requests late, bunched into a later minute
        than the bucket accounted them to (Google counts them when they arrive).
        """
        async with self._slots:
            await self.acquire(cost)
            yield

    def note_rate_limited(self) -> None:
        """Google said 429 / rateLimitExceeded anyway: slow down and stop every caller's burst.

        The rate drops by ``decrease`` (once per second at most: the other requests already in
        flight were sent at the old rate and their 429s say nothing new) and the bucket is
        emptied, so each charm of the account paces from zero, on top of the failing request's
        own backoff.
        """
        self._refill()
        self.rate_limited += 1
        now = self._clock.monotonic()
        if self._last_cut is None or now - self._last_cut >= 1.0:
            self._last_cut = now
            self.rate = max(self.ceiling * self.floor, self.rate * self.decrease)
            self.cuts += 1
        self._tokens = min(self._tokens, 0.0)

    def _refill(self) -> None:
        now = self._clock.monotonic()
        elapsed = now - self._last
        self._last = now
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            if self.rate < self.ceiling:
                self.rate = min(
                    self.ceiling, self.rate + self.ceiling * self.recovery * elapsed / 60.0
                )


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    """Per-user limits and how the budgets are sized. Defaults are Google's published numbers.

    The rate is not a fixed fraction of the limit: it is the highest that keeps every sliding
    60-second window within the per-minute limit, given the burst and ``window_slack``
    seconds of timing slack (the client's clock against Google's, and how much one request's
    latency can differ from another's): ``burst + (60 + window_slack) x rate <= limit``. With
    Gmail's numbers that is 0.98 of the published 250 units/s; a long sync averages more,
    because the first burst is free.
    """

    gmail_units_per_minute: float = 15_000.0
    gmail_burst: float = 250.0  # one 50-call messages.get batch
    gmail_max_concurrent: int = 4
    calendar_requests_per_minute: float = 600.0
    calendar_burst: float = 20.0
    calendar_max_concurrent: int = 4
    window_slack: float = 0.2

    def __post_init__(self) -> None:
        if self.window_slack < 0:
            raise ValueError("QuotaConfig.window_slack must be >= 0 seconds")
        if not 0 < self.gmail_burst < self.gmail_units_per_minute:
            raise ValueError("QuotaConfig.gmail_burst must be above 0 and below the limit")
        if not 0 < self.calendar_burst < self.calendar_requests_per_minute:
            raise ValueError("QuotaConfig.calendar_burst must be above 0 and below the limit")

    @property
    def gmail_rate(self) -> float:
        """Units per second the Gmail budget runs at (its ceiling)."""
        return (self.gmail_units_per_minute - self.gmail_burst) / (60.0 + self.window_slack)

    @property
    def calendar_rate(self) -> float:
        return (self.calendar_requests_per_minute - self.calendar_burst) / (
            60.0 + self.window_slack
        )

    def scaled(self, factor: float) -> QuotaConfig:
        """The same shape with every limit multiplied (benchmarks against a faster emulator)."""
        return QuotaConfig(
            gmail_units_per_minute=self.gmail_units_per_minute * factor,
            gmail_burst=self.gmail_burst * factor,
            gmail_max_concurrent=self.gmail_max_concurrent,
            calendar_requests_per_minute=self.calendar_requests_per_minute * factor,
            calendar_burst=self.calendar_burst * factor,
            calendar_max_concurrent=self.calendar_max_concurrent,
            window_slack=self.window_slack,
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
