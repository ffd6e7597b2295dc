"""trayapp.api.testing: a pattern's run in a temporary profile, in a few lines."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.plugins.conftest import JsonServer
from trayapp.api import (
    BaseModel,
    CellSpec,
    Field,
    NoSettings,
    Pattern,
    RunReport,
    SecretStr,
    UpdateContext,
    testing,
)
from trayapp.api.testing import run_pattern, run_pattern_sync
from trayapp.core.errors import SettingsError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "notifications-plugin" / "src"


@pytest.fixture
def example() -> Iterator[Any]:
    sys.path.insert(0, str(EXAMPLE))
    try:
        import trayapp_notifications

        yield trayapp_notifications.Notifications
    finally:
        sys.path.remove(str(EXAMPLE))


def listing(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=[{"id": "1", "title": "a"}, {"id": "2", "title": "b"}])


async def test_mock_transport_run_returns_outcome_items_cells_and_logs(
    tmp_path: Path, example: Any
) -> None:
    run = await run_pattern(
        example,
        {"url": "https://api.example.test/n.json"},
        transport=httpx.MockTransport(listing),
        profile=tmp_path,
    )
    assert run.kind == "ok"
    assert (run.report.added, run.report.updated) == (2, 0)
    assert run.items == {"items": {"1": {"id": "1", "title": "a"}, "2": {"id": "2", "title": "b"}}}
    assert run.cells == {"state": {"etag": None}}
    assert "INFO 2 new, 0 changed notifications" in run.logs


async def test_local_server_conditional_get_over_two_runs(
    tmp_path: Path, example: Any, json_server: JsonServer
) -> None:
    json_server.documents["/n.json"] = [{"id": "7", "title": "hello"}]
    settings = {"url": f"{json_server.url}/n.json"}
    first = await run_pattern(example, settings, profile=tmp_path)
    second = await run_pattern(example, settings, profile=tmp_path)
    assert (first.kind, first.report.added) == ("ok", 1)
    assert (second.kind, second.report.added, second.report.message) == ("ok", 0, "not modified")
    assert second.charm_id == first.charm_id
    # The second request was conditional and got no body: one request per sync.
    assert [r[2] for r in json_server.requests] == [None, json_server.etag("/n.json")]
    assert second.items == {"items": {"7": {"id": "7", "title": "hello"}}}


async def test_outcomes_come_back_classified(
    tmp_path: Path, example: Any, json_server: JsonServer
) -> None:
    json_server.status["/n.json"] = 429
    json_server.headers["/n.json"] = {"Retry-After": "60"}
    run = await run_pattern(example, {"url": f"{json_server.url}/n.json"}, profile=tmp_path)
    assert run.kind == "rate_limited"
    assert run.outcome.retry_after is not None
    assert run.items == {"items": {}}


def test_a_bad_setting_is_refused_naming_the_field(tmp_path: Path, example: Any) -> None:
    with pytest.raises(SettingsError, match="max_items: must be at most 10000"):
        run_pattern_sync(example, {"url": "https://a.test/n", "max_items": 10**6}, profile=tmp_path)
    with pytest.raises(SettingsError, match="url: must not contain a user name or password"):
        run_pattern_sync(example, {"url": "https://me:pw@a.test/n"}, profile=tmp_path)


class Hangs(Pattern[NoSettings]):
    id = "hangs"
    title = "Hangs"
    cells = (CellSpec("n", writes=True, default=0),)

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        ctx.cell("n").set(1)
        await ctx.http.get("https://never.example.test/")
        return RunReport()


def test_a_hang_is_stopped_at_the_timeout_given(tmp_path: Path) -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        import asyncio

        await asyncio.Event().wait()
        raise AssertionError

    run = run_pattern_sync(
        Hangs,
        transport=httpx.MockTransport(never),
        profile=tmp_path,
        run_timeout=timedelta(seconds=1),
    )
    assert run.kind == "timeout"
    assert run.cells == {"n": 1}


class TokenSettings(BaseModel):
    token: SecretStr = Field(description="API token")


class LogsItsToken(Pattern[TokenSettings]):
    id = "logs-its-token"
    title = "Logs its token"
    Settings = TokenSettings

    async def bg_updater(self, ctx: UpdateContext[TokenSettings]) -> RunReport:
        ctx.log.warning("careless: the token is %s", ctx.settings.token.get_secret_value())
        return RunReport()


def test_secrets_stay_in_the_test_profile_and_out_of_the_captured_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the machine had a keyring: the harness must still not use it (a test's token
    # would replace the app's own secret of a charm with the same id there).
    monkeypatch.setenv("TRAYAPP_SECRET_STORE", "keyring")
    token = "tok-5e0c9a7b3d214f86-HARNESS"
    run = run_pattern_sync(LogsItsToken, {"token": token}, profile=tmp_path)
    assert run.kind == "ok"
    assert run.logs == ["WARNING careless: the token is [redacted]"]
    assert token in (tmp_path / "secrets.json").read_text()


def test_settings_error_is_importable_from_the_harness(tmp_path: Path) -> None:
    with pytest.raises(testing.SettingsError, match="token: required"):
        run_pattern_sync(LogsItsToken, {}, profile=tmp_path)


@pytest.fixture
def private_example() -> Iterator[Any]:
    sys.path.insert(0, str(EXAMPLE))
    try:
        import trayapp_notifications

        yield trayapp_notifications.PrivateNotifications
    finally:
        sys.path.remove(str(EXAMPLE))


async def test_a_credential_pattern_runs_with_a_token_and_a_401_needs_sign_in(
    tmp_path: Path, private_example: Any, json_server: JsonServer
) -> None:
    json_server.documents["/p.json"] = [{"id": "x"}]
    json_server.tokens["/p.json"] = "good"
    settings = {"url": f"{json_server.url}/p.json"}

    with pytest.raises(ValueError, match="pass token="):
        await run_pattern(private_example, settings, profile=tmp_path)

    refused = await run_pattern(private_example, settings, profile=tmp_path, token="bad")
    assert refused.kind == "auth_required"
    assert refused.account is not None
    assert (refused.account["state"], refused.account["cause"]) == (
        "needs_sign_in",
        "token_rejected",
    )
    assert json_server.requests[-1][3] == "Bearer bad"

    # Same profile, a new token: the same account, signed in again, and the charm imports.
    fixed = await run_pattern(private_example, settings, profile=tmp_path, token="good")
    assert fixed.kind == "ok", fixed.outcome.message
    assert fixed.account is not None and fixed.account["id"] == refused.account["id"]
    assert fixed.account["state"] == "signed_in"
    assert fixed.items == {"items": {"x": {"id": "x"}}}
    assert json_server.requests[-1][3] == "Bearer good"
    assert not any("good" in line for line in fixed.logs)
