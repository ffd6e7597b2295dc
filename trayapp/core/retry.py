"""Retry and backoff: the one home of every "try again later" in the app.

Who waits, and on which ladder:

* **The scheduler** backs off a failed run (``rate_limited``, ``offline``, ``server_error``,
  ``bug``) with :class:`BackoffPolicy` (30 s doubling up to 1 h, jitter that only shortens), and
  never retries sooner than the server's ``retry_after``, itself capped by :func:`cap_retry_at`.
* **The Google client** retries a request *within* a run with :class:`RetryPolicy` (a ladder of
  seconds over the same :class:`BackoffPolicy`; 429, 5xx and rate-limit 403 only); a server that
  asks for a longer pause than ``max_wait`` ends the run with ``retry_after`` set, and the
  scheduler does the waiting. Batches retry their failed inner parts on the same policy
  (``GoogleApi.plan_retry``).
* **Token refresh** is google-auth's own (three tries on 5xx/429 inside ``refresh``); a refresh
  that still fails ends the run (``offline``/``server_error``) and the scheduler backs off.
* **A pattern's own long waits** (the Calendar importer's resync after repeated 410s) use
  :class:`BackoffPolicy` too, with their own base and cap.
* **Retry-After**: :func:`parse_retry_after` is the one parser of the HTTP header (delta-seconds
  or an HTTP date, RFC 9110 section 10.2.3), used by the Google client, the feed importer and any
  plugin (it is in :mod:`trayapp.api.http`). Every server-requested time is capped at
  :data:`MAX_RETRY_AFTER` (a day) from now by :func:`cap_retry_at`, so a misconfigured server
  saying "a year" cannot silence a charm for a year.
"""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

MAX_RETRY_AFTER = timedelta(days=1)
"""The longest wait a server's Retry-After (or "Retry after <time>") can impose."""


def cap_retry_at(when: datetime | None, now: datetime) -> datetime | None:
    """``when`` brought into ``[now, now + MAX_RETRY_AFTER]`` (None stays None)."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(when, now), now + MAX_RETRY_AFTER)


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """An HTTP ``Retry-After`` header as an absolute time, at most a day after ``now``.

    Delta-seconds (``120``) or an HTTP date (``Wed, 21 Oct 2015 07:28:00 GMT``); a date in the
    past means now. Anything else (empty, garbage, negative) is None: no request to honour.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = min(int(value), MAX_RETRY_AFTER.total_seconds())
        return cap_retry_at(now + timedelta(seconds=seconds), now)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return cap_retry_at(when, now)


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Exponential backoff with jitter and a cap: the one ladder every retry in the app uses.

    The n-th consecutive failure waits ``min(cap, base * factor**(n-1))`` scaled by a random
    factor in ``[1 - jitter, 1]``: jitter only shortens, so the cap is a true bound and clients
    that failed together (the network dropped) do not retry together. The scheduler backs off
    failed runs with the defaults (30 s up to 1 h); :class:`RetryPolicy` retries requests
    within a run on a ladder of seconds with ``jitter=0.5`` ("equal jitter": waits still grow,
    unlike full jitter, which may pick ~0).
    """

    base: float = 30.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base:
            raise ValueError("BackoffPolicy needs base > 0, factor >= 1 and cap >= base")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("BackoffPolicy jitter must be in [0, 1)")

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` consecutive failures (1 = the first).

        ``rng`` draws the jitter; without one (or with ``jitter=0``) the wait is the full step.
        """
        exponent = min(max(failures, 1) - 1, 64)  # 2**64 * 30 s is far past any cap
        raw = min(self.cap, self.base * self.factor**exponent)
        if rng is None or not self.jitter:
            return raw
        return raw * rng.uniform(1.0 - self.jitter, 1.0)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a request again within a run, and how long to wait first.

    Google's guidance (and googleapiclient's own ``_should_retry_response``): retry 429, 5xx and
    403 rate-limit reasons with truncated exponential backoff; never retry other 4xx. Two limits
    keep a run from hanging: a bounded number of attempts, and ``max_wait``: if the server asks
    for a longer pause than a run should sit through (Gmail's "Retry after <time>" is often 15
    minutes away), the request fails at once with ``retry_after`` set, and the scheduler does the
    waiting.

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
        retry_at = cap_retry_at(retry_at, now)
        if retry_at is not None:
            delay = max(delay, (retry_at - now).total_seconds())
        return delay
