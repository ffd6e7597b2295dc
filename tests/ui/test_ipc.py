"""Single instance over a private local socket, with a real Engine behind it."""

from __future__ import annotations

import asyncio
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from trayapp.auth.secrets import SecretVault
from trayapp.auth.wiring import AccountsWiring
from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.core.events import AccountChanged, EngineEvent
from trayapp.core.outcomes import OutcomeKind, RunOutcome, RunReport
from trayapp.ipc import (
    AlreadyRunning,
    register_engine_commands,
    serve,
    socket_path,
    try_send,
)
from trayapp.ui.demo import DemoFeedServer, seed_demo_charms


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(d))
    return d


def ask(profile: Path, cmd: dict[str, object]) -> asyncio.Future[dict[str, object] | None]:
    """try_send blocks (the CLI calls it before any loop exists): run it off the loop."""
    return asyncio.get_running_loop().run_in_executor(None, try_send, profile, cmd, 10.0)


async def test_status_sync_and_activate_reach_the_running_instance(
    profile_dir: Path, runtime_dir: Path
) -> None:
    feeds = DemoFeedServer()
    seed_engine = Engine(profile_dir, patterns=default_registry())
    seed_demo_charms(seed_engine, await feeds.start())
    engine = seed_engine
    server = await serve(engine, profile_dir)
    shown: list[bool] = []

    def activate(_req: dict[str, object]) -> dict[str, object]:
        shown.append(True)
        return {"shown": True}

    server.on("activate", activate)
    try:
        path = socket_path(profile_dir)
        assert path.parent.parent == runtime_dir
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

        status = await ask(profile_dir, {"cmd": "status"})
        assert status is not None and status["ok"] is True
        statuses = status["statuses"]
        assert isinstance(statuses, dict)
        assert set(statuses) == {"project-news", "release-notes", "team-blog"}

        reply = await ask(profile_dir, {"cmd": "sync", "charms": ["team-blog"], "wait": True})
        assert reply is not None and reply["ok"] is True
        assert reply["outcomes"]["team-blog"]["outcome"] == "ok"  # type: ignore[index]
        assert reply["outcomes"]["team-blog"]["counts"]["added"] == 3  # type: ignore[index]
        assert feeds.requests == ["/team-blog.xml"]

        reply = await ask(profile_dir, {"cmd": "show-menu"})
        assert reply == {"ok": True, "shown": True} and shown == [True]

        bad = await ask(profile_dir, {"cmd": "format-disk"})
        assert bad is not None and bad["ok"] is False and "unknown command" in str(bad["error"])
    finally:
        await server.close()
        await engine.stop()
        engine.close()
        await feeds.stop()
    assert not socket_path(profile_dir).exists()
    assert try_send(profile_dir, {"cmd": "ping"}, 1.0) is None


async def test_second_server_for_the_same_profile_is_refused(profile_dir: Path) -> None:
    engine = Engine(profile_dir, patterns=default_registry())
    server = await serve(engine, profile_dir)
    try:
        with pytest.raises(AlreadyRunning):
            await serve(engine, profile_dir)
        pong = await ask(profile_dir, {"cmd": "ping"})
        assert pong is not None and pong["pid"] == os.getpid()
    finally:
        await server.close()
        engine.close()
    # After a clean close a new instance can serve again.
    engine = Engine(profile_dir, patterns=default_registry())
    server = await serve(engine, profile_dir)
    await server.close()
    engine.close()


async def test_stale_socket_from_a_crash_is_replaced(profile_dir: Path) -> None:
    path = socket_path(profile_dir)
    path.write_text("left behind by a crashed instance")
    assert try_send(profile_dir, {"cmd": "ping"}, 1.0) is None
    engine = Engine(profile_dir, patterns=default_registry())
    server = await serve(engine, profile_dir)
    try:
        pong = await ask(profile_dir, {"cmd": "ping"})
        assert pong is not None and pong["ok"] is True
    finally:
        await server.close()
        engine.close()


def test_no_instance_means_none(profile_dir: Path) -> None:
    assert try_send(profile_dir, {"cmd": "status"}, 1.0) is None


def test_an_outcome_keeps_partial_retry_after_and_the_reports_message_over_ipc() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    warned = RunOutcome(
        OutcomeKind.OK, report=RunReport(added=1, partial=("work",), message="m")
    ).to_json()
    assert warned["partial"] == ["work"] and warned["message"] == "m"
    limited = RunOutcome(OutcomeKind.RATE_LIMITED, message="slow", retry_after=when).to_json()
    assert limited["retry_after"] == when.isoformat() and limited["message"] == "slow"
    assert limited["partial"] == []


async def test_an_account_changed_elsewhere_is_reread_and_published(profile_dir: Path) -> None:
    """What `trayapp accounts signin/signout` sends a running app (end to end with a signed-in
    account and parked charms: tests/test_cli_accounts.py)."""
    engine = Engine(profile_dir, patterns=default_registry())
    accounts = AccountsWiring(engine, vault=SecretVault(profile_dir, mode="file"))
    server = await serve(engine, profile_dir)
    register_engine_commands(server, engine, accounts.manager)
    events: list[EngineEvent] = []
    engine.subscribe(events.append)
    try:
        # Another process (the CLI) adds the account to the shared store.
        cli_engine = Engine(profile_dir, patterns=default_registry())
        cli = AccountsWiring(cli_engine, vault=SecretVault(profile_dir, mode="file"))
        account = cli.manager.add_placeholder("bob@example.com")
        await cli.aclose()
        cli_engine.close()
        assert not [e for e in events if isinstance(e, AccountChanged)]

        reply = await ask(profile_dir, {"cmd": "account-changed", "account": account.id})
        assert reply == {"ok": True, "usable": False}
        assert [e.account_id for e in events if isinstance(e, AccountChanged)] == [account.id]

        gone = await ask(profile_dir, {"cmd": "account-changed", "account": "no-such"})
        assert gone == {"ok": True, "usable": False}
        bad = await ask(profile_dir, {"cmd": "account-changed"})
        assert bad is not None and bad["ok"] is False and "account id" in str(bad["error"])
    finally:
        await server.close()
        await accounts.aclose()
        engine.close()


async def test_account_commands_say_so_when_the_app_has_no_accounts(profile_dir: Path) -> None:
    engine = Engine(profile_dir, patterns=default_registry())
    server = await serve(engine, profile_dir)
    register_engine_commands(server, engine)
    try:
        reply = await ask(profile_dir, {"cmd": "account-changed", "account": "a"})
        assert reply == {"ok": False, "error": "this app runs without Google accounts"}
    finally:
        await server.close()
        engine.close()
