"""GoogleApi's request loop: auth retry, backoff, Retry-after, no retry on 4xx, offline.

``httpx.MockTransport`` scripts the responses (pure logic only); the same behaviours are checked
against the emulator in ``test_integration.py``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta
from enum import Enum

import httpx
import pytest

from trayapp.core.errors import AuthRequired, Offline, RateLimited, ServerError
from trayapp.core.retry import RetryPolicy
from trayapp.google.errors import GoogleRequestError, HistoryExpired
from trayapp.google.wire import encode_params

from .bodies import BODIES
from .helpers import START, google_error, make_api, ok


def canned(name: str, headers: dict[str, str] | None = None) -> httpx.Response:
    status, base_headers, body = BODIES[name]
    return httpx.Response(status, headers={**base_headers, **(headers or {})}, content=body)


async def test_success_sends_bearer_token_and_lowercase_params() -> None:
    api, rec, _, _ = make_api([ok({"emailAddress": "a@b.c", "historyId": "12"})])
    async with api:
        profile = await api.gmail().get_profile()
    assert profile["emailAddress"] == "a@b.c"
    assert rec.requests[0].headers["authorization"] == "Bearer tok-1"
    assert rec.requests[0].url.path == "/gmail/v1/users/me/profile"


async def test_401_refreshes_once_and_retries_once() -> None:
    api, rec, clock, tokens = make_api([canned("401-authError"), ok({"historyId": "5"})])
    async with api:
        await api.gmail().get_profile()
    assert len(rec.requests) == 2
    assert tokens.refreshes == ["tok-1"]
    assert rec.requests[1].headers["authorization"] == "Bearer tok-2"
    assert clock.waits == []  # a refresh is the remedy: no backoff


async def test_401_twice_is_auth_required_without_a_loop() -> None:
    api, rec, _, tokens = make_api(lambda r: canned("401-authError"))
    async with api:
        with pytest.raises(AuthRequired) as info:
            await api.gmail().get_profile()
    assert len(rec.requests) == 2 and len(tokens.refreshes) == 1
    assert "sign in again" in info.value.message
    assert "tok-" not in info.value.message
    assert info.value.account_id == "acct-1"


async def test_429_backs_off_exponentially_then_succeeds() -> None:
    script = [canned("429-rateLimitExceeded")] * 3 + [ok({"historyId": "1"})]
    api, rec, clock, _ = make_api(list(script), retry=RetryPolicy(max_attempts=5))
    async with api:
        await api.gmail().get_profile()
    assert len(rec.requests) == 4
    # Equal jitter: retry n waits between half and all of base * 2**n.
    assert len(clock.waits) == 3
    for n, wait in enumerate(clock.waits):
        assert 2**n / 2 <= wait <= 2**n
    # Same seed, same sequence: deterministic.
    expected = [RetryPolicy().backoff(n, rng) for rng in [random.Random(7)] for n in range(3)]
    assert clock.waits == pytest.approx(expected)


async def test_backoff_is_truncated() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=8)
    rng = random.Random(1)
    assert all(policy.backoff(n, rng) <= 8 for n in range(20))
    assert all(policy.backoff(n, rng) >= 4 for n in range(3, 20))


@pytest.mark.parametrize("name", ["500-internalError", "503-backendError", "502-html", "503-empty"])
async def test_server_errors_are_retried_then_raise(name: str) -> None:
    api, rec, clock, _ = make_api(lambda r: canned(name), retry=RetryPolicy(max_attempts=3))
    async with api:
        with pytest.raises(ServerError) as info:
            await api.gmail().get_profile()
    assert len(rec.requests) == 3 and len(clock.waits) == 2
    assert "<" not in info.value.message


@pytest.mark.parametrize(
    "name", ["403-quota-per-user", "403-userRateLimitExceeded", "429-concurrent"]
)
async def test_rate_limits_exhausted_raise_rate_limited_with_retry_after(name: str) -> None:
    api, rec, clock, _ = make_api(lambda r: canned(name), retry=RetryPolicy(max_attempts=4))
    async with api:
        with pytest.raises(RateLimited) as info:
            await api.gmail().get_profile()
    assert len(rec.requests) == 4
    assert info.value.retry_after is not None and info.value.retry_after > clock.now()


@pytest.mark.parametrize(
    "name", ["400-startHistoryId", "400-timeRangeEmpty", "403-insufficientScope"]
)
async def test_other_4xx_are_not_retried(name: str) -> None:
    api, rec, clock, tokens = make_api(lambda r: canned(name))
    async with api:
        with pytest.raises((GoogleRequestError, AuthRequired)):
            await api.gmail().get_profile()
    assert len(rec.requests) == 1 and clock.waits == [] and tokens.refreshes == []


async def test_history_404_is_history_expired() -> None:
    api, rec, _, _ = make_api(lambda r: canned("404-history"))
    async with api:
        with pytest.raises(HistoryExpired):
            async for _ in api.gmail().list_history("123"):
                pass
    assert len(rec.requests) == 1


async def test_retry_after_in_message_is_honoured_when_short() -> None:
    at = (START + timedelta(seconds=20)).isoformat().replace("+00:00", "Z")
    slow = google_error(403, "rateLimitExceeded", f"User-rate limit exceeded.  Retry after {at}")
    api, _, clock, _ = make_api([slow, ok({})])
    async with api:
        await api.gmail().get_profile()
    assert clock.waits == [pytest.approx(20.0)]  # the server's 20 s beats our ~1 s backoff


async def test_retry_after_header_is_honoured() -> None:
    api, _, clock, _ = make_api([canned("429-rateLimitExceeded", {"retry-after": "7"}), ok({})])
    async with api:
        await api.gmail().get_profile()
    assert clock.waits == [pytest.approx(7.0)]


async def test_long_retry_after_raises_instead_of_sleeping() -> None:
    at = datetime(2026, 11, 26, 12, 15, 0, tzinfo=UTC)  # 15 minutes after START
    slow = google_error(
        429, "rateLimitExceeded", "User-rate limit exceeded.  Retry after 2026-11-26T12:15:00Z"
    )
    api, rec, clock, _ = make_api(lambda r: slow, retry=RetryPolicy(max_wait=60))
    async with api:
        with pytest.raises(RateLimited) as info:
            await api.gmail().get_profile()
    assert len(rec.requests) == 1 and clock.waits == []
    assert info.value.retry_after == at


async def test_transport_errors_retry_then_offline() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    api, rec, clock, _ = make_api(fail, retry=RetryPolicy(transport_attempts=3))
    async with api:
        with pytest.raises(Offline) as info:
            await api.gmail().get_profile()
    assert len(rec.requests) == 3 and len(clock.waits) == 2
    assert "network" in info.value.message


async def test_timeout_then_success() -> None:
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        return ok({"historyId": "3"})

    api, _, _, _ = make_api(flaky)
    async with api:
        assert (await api.gmail().get_profile())["historyId"] == "3"


async def test_non_json_success_is_a_server_error() -> None:
    api, _, _, _ = make_api(lambda r: httpx.Response(200, content=b"<html>"))
    async with api:
        with pytest.raises(ServerError):
            await api.gmail().get_profile()


async def test_rate_limit_empties_the_shared_budget() -> None:
    api, _, _, _ = make_api([canned("429-rateLimitExceeded"), ok({})])
    async with api:
        assert api.quota.gmail.available == api.quota.gmail.burst
        await api.gmail().get_profile()
        # Emptied on the 429, then refilled only by the backoff time (~0.5-1 s at 237.5/s).
        assert api.quota.gmail.available < api.quota.gmail.burst


# ---- parameter encoding --------------------------------------------------------------------


class Color(Enum):
    RED = "red"


def test_encode_params_uses_googles_spelling() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    items = encode_params(
        {
            "singleEvents": True,
            "showDeleted": False,
            "labelIds": ["INBOX", "UNREAD"],
            "maxResults": 500,
            "timeMin": when,
            "pageToken": None,
            "color": Color.RED,
        }
    )
    assert items == [
        ("singleEvents", "true"),
        ("showDeleted", "false"),
        ("labelIds", "INBOX"),
        ("labelIds", "UNREAD"),
        ("maxResults", "500"),
        ("timeMin", "2026-01-02T03:04:05+00:00"),
        ("color", "red"),
    ]


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timeMin"):
        encode_params({"timeMin": datetime(2026, 1, 1)})


async def test_message_format_is_sent_lowercase() -> None:
    api, rec, _, _ = make_api([ok({"id": "m1"})])
    async with api:
        await api.gmail().get_message("m1", format="FULL")  # type: ignore[arg-type]
    assert rec.requests[0].url.params["format"] == "full"
    with pytest.raises(ValueError):
        await api.gmail().get_message("m1", format="everything")  # type: ignore[arg-type]


async def test_tokens_never_reach_logs_or_messages(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trayapp.google")
    script = [
        canned("429-rateLimitExceeded"),
        canned("401-authError"),
        canned("503-backendError"),
        canned("401-authError"),
    ]
    api, _, _, tokens = make_api(script)
    async with api:
        with pytest.raises(AuthRequired) as info:
            await api.gmail().get_profile()
    assert "retry" in caplog.text.lower()  # the retries were logged...
    for secret in ("tok-1", "tok-2", tokens.current):
        assert secret not in caplog.text  # ...without the tokens
        assert secret not in str(info.value)


async def test_the_token_is_obtained_before_quota_is_spent_or_a_slot_is_held() -> None:
    api, rec, _, _ = make_api([ok({"historyId": "1"})])
    budget = api.quota.gmail
    slots_free_during_refresh: list[bool] = []

    class SignedOut:
        async def access_token(self) -> str:
            slots_free_during_refresh.append(not budget._slots.locked())
            raise AuthRequired("sign in again", account_id="acct-1")

        async def refresh_after_rejection(self, rejected: str) -> str:
            raise AssertionError("no request was sent, so nothing was rejected")

    api.tokens = SignedOut()
    budget.max_concurrent = 1
    budget._slots = asyncio.Semaphore(1)
    async with api:
        with pytest.raises(AuthRequired):
            await api.gmail().get_profile()
    assert rec.requests == []
    assert budget.spent == 0
    assert slots_free_during_refresh == [True]
