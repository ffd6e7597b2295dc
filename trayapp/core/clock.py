"""Time, as the scheduler and token code see it.

Code that decides *when* things happen takes a :class:`Clock` instead of calling ``time`` or
``datetime.now`` so tests can drive time by hand. There are two notions of time on purpose:

* ``now()`` is the aware UTC wall clock. Due times are wall-clock based because they are
  persisted and must mean the same thing after a restart or a suspend.
* ``monotonic()`` never jumps. Comparing how far each advanced between two moments is how the
  scheduler notices that the machine was suspended (wall time moved, monotonic time did not).

Waiting goes through the clock too (:meth:`Clock.wait`), so a test's :class:`FakeClock` decides
when a sleeper wakes, and nothing in the scheduler ever sleeps on real time by accident.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Cancellable(Protocol):
    """A pending :meth:`Clock.call_later`: ``cancel()`` stops it (no wake-up is left behind)."""

    def cancel(self) -> object: ...


class Clock(Protocol):
    """The time source of the scheduler. ``wait`` takes a plain ``timeout`` (rather than being
    wrapped in ``asyncio.timeout``) because the fake clock must own the deadline."""

    def now(self) -> datetime:
        """Aware UTC wall-clock time."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (does not advance while the machine sleeps)."""
        ...

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:  # noqa: ASYNC109
        """Wait until ``event`` is set or ``timeout`` seconds pass; True if the event is set.

        ``timeout=None`` waits for the event only; ``timeout <= 0`` just reports the event.
        """
        ...

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable:
        """Call ``callback()`` on the event loop after ``seconds`` (monotonic time), unless the
        returned handle is cancelled first. No task, no event: one loop timer (the scheduler's
        run deadlines)."""
        ...


class SystemClock:
    """The real clocks: ``datetime.now(UTC)``, ``time.monotonic`` and the event loop's timers."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:  # noqa: ASYNC109
        if event.is_set():
            return True
        if timeout is None:
            await event.wait()
            return True
        if timeout <= 0:
            return False
        # asyncio.timeout() is one loop timer and no extra task, unlike wait_for(): this is on the
        # path of every run (its deadline) and of every scheduler wake-up.
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return event.is_set()
        return True

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable:
        return asyncio.get_running_loop().call_later(seconds, callback)


async def sleep(clock: Clock, seconds: float) -> None:
    """``asyncio.sleep`` on ``clock``: a test's :class:`FakeClock` decides when the sleeper wakes.

    For backoff and pacing waits in code that takes a Clock; ``asyncio.sleep`` there would wait
    on real time even in a test that fakes it.
    """
    if seconds > 0:
        await clock.wait(asyncio.Event(), seconds)


DEFAULT_FAKE_START = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when a test says so: deterministic scheduling tests.

    ``advance(s)`` moves both clocks and wakes every waiter whose deadline has passed; the woken
    coroutines run the next time the test yields (``await clock.settle()``). ``run_for(s)`` is
    usually what a test wants: it walks through every deadline on the way, settling at each, so
    a chain of timers fires in order at the right times, as it would in real time.
    ``jump_wall(s)`` moves only the wall clock, like a suspend/resume or an NTP step.
    """

    def __init__(
        self, start: datetime = DEFAULT_FAKE_START, monotonic_start: float = 1000.0
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock start must be timezone-aware")
        self._wall = start.astimezone(UTC)
        self._mono = monotonic_start
        self._seq = itertools.count()
        # (deadline in monotonic seconds, seq, future resolved when the deadline passes)
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self.waits = 0  # how many timed waits were started: lets tests prove nobody polls

    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:  # noqa: ASYNC109
        if event.is_set():
            return True
        if timeout is None:
            await event.wait()
            return True
        if timeout <= 0:
            return False
        self.waits += 1
        loop = asyncio.get_running_loop()
        deadline: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._timers, (self._mono + timeout, next(self._seq), deadline))
        setter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait((setter, deadline), return_when=asyncio.FIRST_COMPLETED)
        finally:
            setter.cancel()
            deadline.cancel()  # a cancelled timer is skipped (and dropped) by advance()
        return event.is_set()

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable:
        self.waits += 1
        deadline: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self._mono + max(0.0, seconds), next(self._seq), deadline))

        def fire(future: asyncio.Future[None]) -> None:
            if not future.cancelled():
                callback()

        deadline.add_done_callback(fire)
        return deadline

    def next_deadline(self) -> float | None:
        """Seconds from now until the earliest pending timed wait, or None if there is none."""
        self._drop_cancelled()
        return max(0.0, self._timers[0][0] - self._mono) if self._timers else None

    def advance(self, seconds: float) -> None:
        """Move wall and monotonic time forward and wake the waiters whose deadline passed."""
        if seconds < 0:
            raise ValueError("time only moves forward; use jump_wall() for a backward wall step")
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)
        while self._timers and self._timers[0][0] <= self._mono:
            _, _, fut = heapq.heappop(self._timers)
            if not fut.done():
                fut.set_result(None)

    def jump_wall(self, seconds: float) -> None:
        """Move only the wall clock (suspend/resume, NTP step); monotonic time stands still.

        No waiter wakes: a real sleeping process notices only at its next wake-up, or when told
        (``Scheduler.wake``).
        """
        self._wall += timedelta(seconds=seconds)

    async def settle(self) -> None:
        """Let every ready callback and task run until nothing is left to do.

        Only the event loop's own work is awaited: threads (``asyncio.to_thread``) are not.
        """
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)  # the default loops' ready queue (CPython)
        idle_rounds = 0
        for rounds in range(100_000):
            await asyncio.sleep(0)
            if ready is None:
                if rounds >= 200:  # another loop implementation: a generous fixed number
                    return
            elif len(ready) == 0:
                # Two quiet rounds in a row: a callback scheduled by the last one has run too.
                idle_rounds += 1
                if idle_rounds >= 2:
                    return
            else:
                idle_rounds = 0

    async def run_for(self, seconds: float) -> None:
        """Advance by ``seconds``, stopping at every deadline on the way and settling there."""
        target = self._mono + seconds
        await self.settle()
        while True:
            self._drop_cancelled()
            if not self._timers or self._timers[0][0] > target:
                break
            self.advance(max(0.0, self._timers[0][0] - self._mono))
            await self.settle()
        self.advance(target - self._mono)
        await self.settle()

    def _drop_cancelled(self) -> None:
        while self._timers and self._timers[0][2].done():
            heapq.heappop(self._timers)
