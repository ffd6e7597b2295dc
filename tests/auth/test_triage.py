"""Refresh-failure triage as a table: every shape google-auth raises maps to one verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.auth import exceptions as ga

from trayapp.auth.models import AccountState, Cause
from trayapp.auth.tokens import triage_refresh_error
from trayapp.core.errors import Offline, ServerError

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def refresh_error(error: str, **extra: str) -> ga.RefreshError:
    data = {"error": error, "error_description": "detail", **extra}
    return ga.RefreshError(f"{error}: detail", data)


@pytest.mark.parametrize(
    ("exc", "status", "state", "cause", "transient"),
    [
        (
            refresh_error("invalid_grant"),
            400,
            AccountState.NEEDS_SIGN_IN,
            Cause.INVALID_GRANT,
            None,
        ),
        (
            refresh_error("invalid_grant", error_subtype="rapt_required"),
            400,
            AccountState.NEEDS_SIGN_IN,
            Cause.REAUTH_REQUIRED,
            None,
        ),
        (
            ga.RefreshError("Reauthentication is needed. Please run `gcloud auth ...`"),
            400,
            AccountState.NEEDS_SIGN_IN,
            Cause.REAUTH_REQUIRED,
            None,
        ),
        (
            refresh_error("invalid_client"),
            401,
            AccountState.CLIENT_MISCONFIGURED,
            Cause.INVALID_CLIENT,
            None,
        ),
        (
            refresh_error("unauthorized_client"),
            401,
            AccountState.CLIENT_MISCONFIGURED,
            Cause.INVALID_CLIENT,
            None,
        ),
        (
            refresh_error("invalid_scope"),
            400,
            AccountState.NEEDS_SIGN_IN,
            Cause.INSUFFICIENT_SCOPE,
            None,
        ),
        (ga.RefreshError("<html>503</html>", retryable=False), 503, None, None, ServerError),
        (refresh_error("internal_failure"), 500, None, None, ServerError),
        (refresh_error("invalid_request"), 400, None, None, ServerError),
        (
            ga.TransportError("ConnectError talking to http://127.0.0.1:1/token"),
            None,
            None,
            None,
            Offline,
        ),
    ],
)
def test_triage(
    exc: BaseException,
    status: int | None,
    state: AccountState | None,
    cause: Cause | None,
    transient: type[Exception] | None,
) -> None:
    verdict = triage_refresh_error(
        exc, status=status, account_label="a@example.com", granted_at=NOW, now=NOW
    )
    assert (verdict.state, verdict.cause, verdict.transient_kind) == (state, cause, transient)
    assert verdict.message
    # The reason says what happened (the tray shows it); only the hint names CLI commands.
    assert "trayapp" not in verdict.message
    if state is AccountState.NEEDS_SIGN_IN:
        assert "accounts signin a@example.com" in verdict.hint
        assert verdict.cli_text == f"{verdict.message}; {verdict.hint}"


@pytest.mark.parametrize(
    ("age_days", "testing"), [(7, True), (6.6, True), (7.4, True), (3, False), (30, False)]
)
def test_seven_day_message_only_near_seven_days(age_days: float, testing: bool) -> None:
    verdict = triage_refresh_error(
        refresh_error("invalid_grant"),
        status=400,
        account_label="a@example.com",
        granted_at=NOW - timedelta(days=age_days),
        now=NOW,
    )
    assert (verdict.cause is Cause.TESTING_EXPIRY) is testing
    assert ("Testing" in verdict.message) is testing
    assert ("publish the app" in verdict.hint) is testing


def test_server_text_with_a_token_is_redacted() -> None:
    exc = ga.RefreshError(
        "invalid_grant: x", {"error": "invalid_grant", "error_description": "bad 1//0gSECRETtoken"}
    )
    verdict = triage_refresh_error(exc, status=400, account_label="a", granted_at=None, now=NOW)
    assert "1//0gSECRETtoken" not in verdict.message
