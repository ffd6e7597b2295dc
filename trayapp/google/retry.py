"""When to try a Google request again, and how long to wait first.

Google's guidance (and googleapiclient's own ``_should_retry_response``): retry 429, 5xx and
403 rate-limit reasons with truncated exponential backoff; never retry other 4xx. Two limits
keep a run from hanging: a bounded number of attempts, and ``max_wait``: if the server asks for
a longer pause than a run should sit through (Gmail's "Retry after <time>" is often 15 minutes
away), the request fails at once with ``retry_after`` set, and the scheduler does the waiting.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime

from trayapp.core.clock import BackoffPolicy


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff settings shared by plain requests and the inner parts of batches.

    ``max_attempts`` counts every try of a retryable HTTP error, the first included.
    ``transport_attempts`` is separate and smaller: a machine that is offline should learn it in
    seconds, not after the full backoff ladder.
    """

    max_attempts: int = 5
    transport_attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 32.0
    max_wait: float = 60.0

    _ladder: BackoffPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.transport_attempts < 1:
            raise ValueError("RetryPolicy attempts must be at least 1")
        if self.base_delay <= 0 or self.max_delay < self.base_delay or self.max_wait < 0:
            raise ValueError("RetryPolicy delays must satisfy 0 < base_delay <= max_delay")
        ladder = BackoffPolicy(base=self.base_delay, factor=2.0, cap=self.max_delay, jitter=0.5)
        object.__setattr__(self, "_ladder", ladder)  # frozen: set once, here

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry).

        "Equal jitter": the wait is between half and all of the truncated exponential step, so
        retries really do slow down (unlike full jitter, which can pick ~0) while clients that
        failed together spread apart.
        """
        return self._ladder.delay(retry + 1, rng)

    def wait_for(
        self, retry: int, rng: random.Random, now: datetime, retry_at: datetime | None
    ) -> float:
        """The wait before retry ``retry``: the larger of our backoff and the server's request."""
        delay = self.backoff(retry, rng)
        if retry_at is not None:
            delay = max(delay, (retry_at - now).total_seconds())
        return delay
