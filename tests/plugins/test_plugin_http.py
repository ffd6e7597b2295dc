"""The HTTP helpers of the public API: status -> outcome, Retry-After, next-poll hints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from trayapp import api
from trayapp.api import (
    BaseModel,
    CellSpec,
    Pattern,
    RunReport,
    UpdateContext,
    outcome_for_status,
    poll_interval_hint,
    raise_for_status,
)
from trayapp.api.testing import run_pattern
from trayapp.core.engine import Engine
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.patterns import PatternRegistry

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, headers=headers, request=httpx.Request("GET", "https://api.example.test/x?key=s3")
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, None),
        (204, None),
        (304, None),
        (301, OutcomeKind.CONFIG_ERROR),
        (400, OutcomeKind.CONFIG_ERROR),
        (401, OutcomeKind.AUTH_REQUIRED),
        (403, OutcomeKind.AUTH_REQUIRED),
        (404, OutcomeKind.CONFIG_ERROR),
        (408, OutcomeKind.OFFLINE),
        (410, OutcomeKind.CONFIG_ERROR),
        (429, OutcomeKind.RATE_LIMITED),
        (500, OutcomeKind.SERVER_ERROR),
        (503, OutcomeKind.SERVER_ERROR),
    ],
)
def test_status_maps_to_an_outcome(status: int, kind: OutcomeKind | None) -> None:
    assert outcome_for_status(status) is kind
    if kind is None:
        raise_for_status(response(status), NOW)  # no error
        return
    with pytest.raises(api.SyncError) as info:
        raise_for_status(response(status), NOW)
    assert info.value.kind is kind
    assert "s3" not in str(info.value)  # the query (a key) is never in the message
    assert f"HTTP {status}" in str(info.value)


def test_rate_limit_carries_the_parsed_retry_after_capped_at_a_day() -> None:
    with pytest.raises(api.RateLimited) as info:
        raise_for_status(response(429, **{"Retry-After": "120"}), NOW, what="the feed")
    assert info.value.retry_after == NOW + timedelta(seconds=120)
    assert str(info.value).startswith("the feed is limiting requests (HTTP 429)")
    with pytest.raises(api.RateLimited) as info:
        raise_for_status(response(429, **{"Retry-After": "99999999"}), NOW)
    assert info.value.retry_after == NOW + api.MAX_RETRY_AFTER
    # 503 with a stated end is a rate limit (maintenance), honouring the date form too.
    with pytest.raises(api.RateLimited) as info:
        raise_for_status(response(503, **{"Retry-After": "Thu, 01 Jan 2026 12:05:00 GMT"}), NOW)
    assert info.value.retry_after == NOW + timedelta(minutes=5)


def test_the_api_reexports_the_one_retry_after_parser() -> None:
    from trayapp.core import retry

    assert api.parse_retry_after is retry.parse_retry_after
    assert api.http.parse_retry_after is retry.parse_retry_after


def test_poll_interval_hint_reads_seconds_and_ignores_garbage() -> None:
    assert poll_interval_hint(response(200, **{"X-Poll-Interval": "60"})) == timedelta(seconds=60)
    assert poll_interval_hint({"x-poll-interval": " 90 "}) == timedelta(seconds=90)
    assert poll_interval_hint(response(200)) is None
    assert poll_interval_hint(response(200, **{"X-Poll-Interval": "soon"})) is None
    assert poll_interval_hint(response(200, **{"X-Poll-Interval": "-5"})) is None
    assert poll_interval_hint(response(200, **{"X-Poll-Interval": "9999999"})) == timedelta(days=1)


def test_run_report_refuses_a_negative_next_poll() -> None:
    with pytest.raises(ValueError, match="next_poll"):
        RunReport(next_poll=timedelta(seconds=-1))


class PollSettings(BaseModel):
    url: str


class Poller(Pattern[PollSettings]):
    id = "poller"
    title = "Poller"
    Settings = PollSettings
    default_interval = timedelta(minutes=5)
    cells = (CellSpec("runs", writes=True, default=0),)

    async def bg_updater(self, ctx: UpdateContext[PollSettings]) -> RunReport:
        resp = await ctx.http.get(ctx.settings.url)
        raise_for_status(resp, ctx.now())
        ctx.cell("runs").update(lambda n: n + 1)
        # A pattern that closes the shared client must not break it for the next request.
        await ctx.http.aclose()
        async with ctx.http:
            pass
        raise_for_status(await ctx.http.get(ctx.settings.url), ctx.now())
        return RunReport(updated=1, next_poll=poll_interval_hint(resp))


def poll_server(seconds: str) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["user-agent"] == api.USER_AGENT
        return httpx.Response(200, json={}, headers={"X-Poll-Interval": seconds})

    return httpx.MockTransport(answer)


async def next_due_after_run(tmp_path: Path, seconds: str) -> timedelta:
    run = await run_pattern(
        Poller,
        {"url": "https://api.example.test/n"},
        transport=poll_server(seconds),
        profile=tmp_path / seconds,
    )
    assert run.kind == "ok", run.outcome.message
    engine = Engine(tmp_path / seconds, patterns=PatternRegistry())
    try:
        status = engine.status(run.charm_id)
        assert status.last_run_at is not None and status.next_due_at is not None
        return status.next_due_at - status.last_run_at
    finally:
        engine.close()


async def test_next_poll_delays_the_next_run_and_is_bounded(tmp_path: Path) -> None:
    # A longer wait than the 5 min interval is honoured...
    assert await next_due_after_run(tmp_path, "3600") == timedelta(hours=1)
    # ...a shorter one changes nothing (the interval, within its 10 % jitter)...
    shorter = await next_due_after_run(tmp_path, "30")
    assert timedelta(minutes=4, seconds=30) <= shorter <= timedelta(minutes=5, seconds=30)
    # ...and a huge one waits a day at most.
    assert await next_due_after_run(tmp_path, "9999999") == timedelta(days=1)


async def test_a_pattern_cannot_close_the_shared_client(tmp_path: Path) -> None:
    transport = poll_server("0")
    first = await run_pattern(
        Poller, {"url": "https://api.example.test/n"}, transport=transport, profile=tmp_path
    )
    second = await run_pattern(
        Poller, {"url": "https://api.example.test/n"}, transport=transport, profile=tmp_path
    )
    assert (first.kind, second.kind) == ("ok", "ok"), second.outcome.message
    assert second.cells["runs"] == 2
