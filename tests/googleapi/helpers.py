"""Small real pieces for the Google client unit tests: a stepping clock and a token source.

These are not fakes of Google: the unit tests use ``httpx.MockTransport`` only for the pure
logic (classification, backoff, batch codec); behaviour against a server is tested against the
emulator in ``test_integration.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from trayapp.core.retry import RetryPolicy
from trayapp.google.client import GoogleApi
from trayapp.google.endpoints import GoogleEndpoints

START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class StepClock:
    """A clock where every wait returns at once and moves time forward by its timeout.

    Fine for one coroutine at a time (a request's retry loop); it records every wait so tests
    can assert the exact backoff sequence without really sleeping.
    """

    def __init__(self, start: datetime = START) -> None:
        self._now = start
        self._mono = 1000.0
        self.waits: list[float] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:  # noqa: ASYNC109
        assert timeout is not None
        self.waits.append(timeout)
        self.advance(timeout)
        await asyncio.sleep(0)
        return event.is_set()


class CountingTokens:
    """A TokenSource that counts calls; ``refresh_after_rejection`` hands out ``tok-N``."""

    def __init__(self) -> None:
        self.current = "tok-1"
        self.refreshes: list[str] = []

    async def access_token(self) -> str:
        return self.current

    async def refresh_after_rejection(self, rejected: str) -> str:
        self.refreshes.append(rejected)
        if rejected == self.current:
            self.current = f"tok-{len(self.refreshes) + 1}"
        return self.current


def google_error(
    status: int,
    reason: str,
    message: str,
    *,
    domain: str = "global",
    rpc: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    err: dict[str, Any] = {
        "code": status,
        "message": message,
        "errors": [{"message": message, "domain": domain, "reason": reason}],
    }
    if rpc:
        err["status"] = rpc
    return httpx.Response(
        status,
        json={"error": err},
        headers={"content-type": "application/json; charset=UTF-8", **(headers or {})},
    )


Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Serves responses from a script (list of responses or a handler) and records requests."""

    def __init__(self, script: list[httpx.Response] | Handler) -> None:
        self.script = script
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if callable(self.script):
            return self.script(request)
        return self.script.pop(0)


def make_api(
    script: list[httpx.Response] | Handler,
    *,
    retry: RetryPolicy | None = None,
    tokens: CountingTokens | None = None,
    seed: int = 7,
) -> tuple[GoogleApi, Recorder, StepClock, CountingTokens]:
    import random

    recorder = Recorder(script)
    clock = StepClock()
    tokens = tokens or CountingTokens()
    api = GoogleApi(
        tokens,
        endpoints=GoogleEndpoints.for_base("http://google.test"),
        account_id="acct-1",
        retry=retry,
        clock=clock,
        rng=random.Random(seed),
        transport=httpx.MockTransport(recorder),
    )
    return api, recorder, clock, tokens


def ok(data: dict[str, Any]) -> httpx.Response:
    return httpx.Response(
        200, content=json.dumps(data).encode(), headers={"content-type": "application/json"}
    )
