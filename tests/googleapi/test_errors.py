"""Parsing and classifying Google's real error bodies (reference section 3.2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from trayapp.core.errors import AuthRequired, RateLimited, ServerError
from trayapp.core.outcomes import OutcomeKind
from trayapp.google.errors import (
    GoogleRequestError,
    SyncTokenExpired,
    classify,
    parse_error,
    parse_retry_after_text,
)

from .bodies import BODIES

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

# name -> (reason, is_retryable, exception type, outcome kind)
TABLE = {
    "401-authError": ("authError", False, AuthRequired, OutcomeKind.AUTH_REQUIRED),
    "403-insufficientScope": (
        "insufficientPermissions",
        False,
        AuthRequired,
        OutcomeKind.AUTH_REQUIRED,
    ),
    "404-history": ("notFound", False, GoogleRequestError, OutcomeKind.BUG),
    "400-startHistoryId": ("invalidArgument", False, GoogleRequestError, OutcomeKind.BUG),
    "429-rateLimitExceeded": ("rateLimitExceeded", True, RateLimited, OutcomeKind.RATE_LIMITED),
    "429-concurrent": ("rateLimitExceeded", True, RateLimited, OutcomeKind.RATE_LIMITED),
    "403-userRate-retry-after": ("rateLimitExceeded", True, RateLimited, OutcomeKind.RATE_LIMITED),
    "403-quota-per-user": ("rateLimitExceeded", True, RateLimited, OutcomeKind.RATE_LIMITED),
    "403-userRateLimitExceeded": (
        "userRateLimitExceeded",
        True,
        RateLimited,
        OutcomeKind.RATE_LIMITED,
    ),
    "410-fullSyncRequired": ("fullSyncRequired", False, SyncTokenExpired, OutcomeKind.BUG),
    "400-timeRangeEmpty": ("timeRangeEmpty", False, GoogleRequestError, OutcomeKind.BUG),
    "500-internalError": ("internalError", True, ServerError, OutcomeKind.SERVER_ERROR),
    "503-backendError": ("backendError", True, ServerError, OutcomeKind.SERVER_ERROR),
    "502-html": ("", True, ServerError, OutcomeKind.SERVER_ERROR),
    "503-empty": ("", True, ServerError, OutcomeKind.SERVER_ERROR),
}


def test_table_covers_every_captured_body() -> None:
    assert set(TABLE) == set(BODIES)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_classification(name: str) -> None:
    status, headers, body = BODIES[name]
    reason, retryable, exc_type, kind = TABLE[name]
    err = parse_error(status, httpx.Headers(headers), body, now=NOW)
    assert err.status == status
    assert err.reason == reason
    assert err.is_retryable is retryable
    exc = classify(err, service="Gmail", account_id="acct-1")
    assert isinstance(exc, exc_type)
    assert exc.kind is kind
    # Short, human, and one line; never the HTML page.
    assert len(exc.message) < 400 and "\n" not in exc.message and "<" not in exc.message
    assert exc.message.startswith("Gmail ")
    assert getattr(exc, "api_error", None) is err


def test_insufficient_scope_says_more_permission_is_needed() -> None:
    status, headers, body = BODIES["403-insufficientScope"]
    err = parse_error(status, httpx.Headers(headers), body, now=NOW)
    assert err.is_insufficient_scope
    exc = classify(err, service="Gmail", account_id="acct-1")
    assert isinstance(exc, AuthRequired)
    assert "more permission" in exc.message and "sign in again" in exc.message
    assert exc.account_id == "acct-1"


def test_scope_detected_from_header_alone() -> None:
    # Older captures carry only the WWW-Authenticate hint: still a permission problem.
    err = parse_error(
        403,
        httpx.Headers({"www-authenticate": 'Bearer error="insufficient_scope"'}),
        b'{"error": {"code": 403, "message": "Forbidden"}}',
        now=NOW,
    )
    assert err.is_insufficient_scope


def test_missing_status_and_fields_are_tolerated() -> None:
    err = parse_error(410, httpx.Headers(), b'{"error": {"code": 410}}', now=NOW)
    assert (err.reason, err.domain, err.rpc_status, err.message) == ("", "", "", "Gone")
    err = parse_error(500, httpx.Headers(), b'["not", "an", "object"]', now=NOW)
    assert err.message == "Internal Server Error"
    err = parse_error(
        400, httpx.Headers(), b'{"error": "invalid_request", "error_description": "x"}', now=NOW
    )
    assert (err.reason, err.message) == ("invalid_request", "x")


def test_forbidden_without_rate_reason_is_not_retried() -> None:
    err = parse_error(
        403,
        httpx.Headers(),
        b'{"error": {"code": 403, "message": "Delegation denied for a@b.c", '
        b'"errors": [{"reason": "forbidden", "domain": "global", '
        b'"message": "Delegation denied"}]}}',
        now=NOW,
    )
    assert not err.is_retryable and not err.is_rate_limit
    assert isinstance(classify(err, service="Gmail"), GoogleRequestError)


def test_daily_limit_is_rate_limited_but_not_retried_in_run() -> None:
    err = parse_error(
        403,
        httpx.Headers(),
        b'{"error": {"code": 403, "message": "Daily Limit Exceeded", '
        b'"errors": [{"reason": "dailyLimitExceeded", "domain": "usageLimits"}]}}',
        now=NOW,
    )
    assert err.is_rate_limit and not err.is_retryable
    assert isinstance(classify(err, service="Gmail"), RateLimited)


# ---- "Retry after" -------------------------------------------------------------------------


def test_retry_after_text_two_spaces_and_millis() -> None:
    when = parse_retry_after_text("User-rate limit exceeded.  Retry after 2024-11-12T11:16:42.247Z")
    assert when == datetime(2024, 11, 12, 11, 16, 42, 247000, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["Retry after tomorrow", "no time here", "Retry after 2024-13-45T99:99:99Z", ""],
)
def test_retry_after_text_garbage_is_ignored(text: str) -> None:
    assert parse_retry_after_text(text) is None


def test_retry_at_from_message() -> None:
    status, headers, body = BODIES["403-userRate-retry-after"]
    err = parse_error(status, httpx.Headers(headers), body, now=NOW)
    assert err.retry_at == datetime(2026, 11, 26, 12, 15, 42, 247000, tzinfo=UTC)
    exc = classify(err, service="Gmail")
    assert isinstance(exc, RateLimited)
    assert exc.retry_after == err.retry_at
    assert "12:15 UTC" in exc.message


def test_retry_after_header_seconds_and_date() -> None:
    body = BODIES["429-rateLimitExceeded"][2]
    err = parse_error(429, httpx.Headers({"retry-after": "120"}), body, now=NOW)
    assert err.retry_at == NOW + timedelta(seconds=120)
    err = parse_error(
        429, httpx.Headers({"retry-after": "Thu, 26 Nov 2026 12:05:00 GMT"}), body, now=NOW
    )
    assert err.retry_at == NOW + timedelta(minutes=5)
    err = parse_error(429, httpx.Headers({"retry-after": "soon"}), body, now=NOW)
    assert err.retry_at is None


def test_latest_of_header_and_message_wins() -> None:
    status, _, body = BODIES["403-userRate-retry-after"]
    err = parse_error(status, httpx.Headers({"retry-after": "60"}), body, now=NOW)
    assert err.retry_at == datetime(2026, 11, 26, 12, 15, 42, 247000, tzinfo=UTC)
    exc = classify(err, service="Gmail", retry_after=NOW + timedelta(hours=1))
    assert isinstance(exc, RateLimited)
    assert exc.retry_after == NOW + timedelta(hours=1)  # our backoff is later: it wins


def test_long_messages_are_cut_to_one_line() -> None:
    body = b'{"error": {"code": 400, "message": "' + b"word\\n " * 200 + b'"}}'
    err = parse_error(400, httpx.Headers(), body, now=NOW)
    assert len(err.message) <= 200 and "\n" not in err.message


def test_server_text_that_echoes_credentials_is_redacted() -> None:
    body = (
        b'{"error": {"code": 400, "message": "bad header Authorization: Bearer ya29.a0Secret'
        b'Value, body refresh_token=1//0gRefreshSecret"}}'
    )
    err = parse_error(400, httpx.Headers(), body, now=NOW)
    shown = str(classify(err, service="Gmail"))
    for text in (err.message, shown):
        assert "ya29.a0Secret" not in text and "1//0gRefreshSecret" not in text
        assert "[redacted]" in text


def test_retry_after_from_google_is_capped_at_a_day_like_every_other() -> None:
    """One parser, one cap (trayapp.core.retry): the header and the message text alike."""
    body = BODIES["429-rateLimitExceeded"][2]
    err = parse_error(429, httpx.Headers({"retry-after": str(30 * 86400)}), body, now=NOW)
    assert err.retry_at == NOW + timedelta(days=1)
    far = b'{"error": {"code": 403, "message": "Retry after 2099-01-01T00:00:00Z"}}'
    err = parse_error(403, httpx.Headers({}), far, now=NOW)
    assert err.retry_at == NOW + timedelta(days=1)
