"""Accounts wired into the real Engine: a revoked grant parks every charm of the account after
exactly one refresh attempt, and signing in again unparks them and they run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.emulator.harness import DEFAULT_SCOPES, EmulatorServer
from trayapp.api import NoSettings, Pattern, RunReport, UpdateContext
from trayapp.auth.accounts import AccountManager
from trayapp.auth.client_config import parse_client_json
from trayapp.auth.models import AccountState
from trayapp.auth.secrets import SecretVault
from trayapp.auth.signin import Grant, grant_from_token_response
from trayapp.auth.wiring import AccountsWiring
from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.core.events import AccountChanged, EngineEvent, RunFinished
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.patterns import PatternRegistry
from trayapp.core.profile import Profile
from trayapp.core.status import CharmState
from trayapp.emulator.control import ClientInfo
from trayapp.google.client import GoogleApi

EMAIL = "alice@example.com"
USERINFO_EMAIL = "https://www.googleapis.com/auth/userinfo.email"
WAIT = 60.0
CHARMS = ("one", "two", "three")


class WhoAmI(Pattern[NoSettings]):
    """Calls an authorized Google endpoint through ctx.google, as the Gmail importer would."""

    id = "whoami"
    title = "Who am I"
    Settings = NoSettings
    scopes = (USERINFO_EMAIL,)

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        api: GoogleApi = ctx.google
        response = await api.send("gmail", "oauth2.userinfo.get", "GET", api.endpoints.userinfo_uri)
        assert response.json()["email"] == EMAIL
        return RunReport(updated=1)


class Finished:
    def __init__(self, engine: Engine) -> None:
        self.events: list[EngineEvent] = []
        self._changed = asyncio.Event()
        engine.subscribe(self._on)

    def _on(self, event: EngineEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def outcomes(self) -> list[tuple[str, OutcomeKind]]:
        return [
            (e.record.charm_id, e.record.outcome) for e in self.events if isinstance(e, RunFinished)
        ]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


def grant(emu: EmulatorServer, client: ClientInfo) -> Grant:
    tokens = emu.control.issue_tokens(EMAIL, client.id, list(DEFAULT_SCOPES))
    return grant_from_token_response(tokens, email=EMAIL)


@pytest.fixture
async def wiring(
    tmp_path: Path, emu: EmulatorServer, client_info: ClientInfo, keyring_mem: Any
) -> AsyncIterator[tuple[Engine, AccountsWiring]]:
    registry = PatternRegistry()
    registry.register(WhoAmI)
    engine = Engine(Profile.resolve(tmp_path / "engine-profile"), patterns=registry, jitter=0.0)
    vault = SecretVault(engine.profile.path, mode="keyring", keyring_store=keyring_mem)
    accounts = AccountsWiring(engine, vault=vault)
    accounts.manager.clients.set(
        parse_client_json(json.dumps(client_info.client_config(emu.base_url)))
    )
    yield engine, accounts
    await engine.stop()
    await accounts.aclose()
    engine.close()


@pytest.fixture
def wired(wiring: tuple[Engine, AccountsWiring]) -> tuple[Engine, AccountManager]:
    return wiring[0], wiring[1].manager


async def test_an_accounts_charms_share_one_google_client_on_the_engine_clock_closed_at_the_end(
    wiring: tuple[Engine, AccountsWiring], emu: EmulatorServer, client_info: ClientInfo
) -> None:
    engine, accounts = wiring
    account = await accounts.manager.complete_sign_in(grant(emu, client_info))
    for name in CHARMS:
        engine.add_charm("whoami", {}, name=name, account_id=account.id)
    handed_out: list[GoogleApi] = []
    assert engine.google_factory is not None
    factory = engine.google_factory

    def spy(account_id: str) -> Any:
        api = factory(account_id)
        handed_out.append(api)
        return api

    engine.google_factory = spy
    seen = Finished(engine)
    await engine.start()
    await seen.wait_for(lambda: len(seen.outcomes()) >= 3)

    assert {o for _, o in seen.outcomes()} == {OutcomeKind.OK}
    assert len(handed_out) == 3 and len({id(api) for api in handed_out}) == 1
    api = handed_out[0]
    assert api.quota is accounts.google_api(account.id).quota  # one quota budget per account
    assert api.clock is engine.clock
    await engine.stop()
    await accounts.aclose()
    assert api._http.is_closed


async def test_a_google_factory_already_set_is_kept(tmp_path: Path, keyring_mem: Any) -> None:
    def mine(account_id: str) -> Any:
        return account_id

    engine = Engine(
        Profile.resolve(tmp_path / "p"), patterns=default_registry(), google_factory=mine
    )
    vault = SecretVault(engine.profile.path, mode="keyring", keyring_store=keyring_mem)
    accounts = AccountsWiring(engine, vault=vault)
    try:
        assert engine.google_factory is mine
    finally:
        await accounts.aclose()
        engine.close()


async def test_revoked_grant_parks_the_accounts_charms_and_sign_in_resumes_them(
    wired: tuple[Engine, AccountManager], emu: EmulatorServer, client_info: ClientInfo
) -> None:
    engine, manager = wired
    account = await manager.complete_sign_in(grant(emu, client_info))
    for name in CHARMS:
        engine.add_charm("whoami", {}, name=name, account_id=account.id)
    seen = Finished(engine)
    await engine.start()
    await seen.wait_for(lambda: len(seen.outcomes()) >= 3)
    assert {o for _, o in seen.outcomes()} == {OutcomeKind.OK}

    # The user revokes access at Google (and the access token dies with the grant).
    emu.control.revoke_refresh_token(EMAIL)
    emu.control.clear_log()
    seen.events.clear()
    engine.sync_now()
    await seen.wait_for(lambda: len(seen.outcomes()) >= 3)

    assert {o for _, o in seen.outcomes()} == {OutcomeKind.AUTH_REQUIRED}
    assert len(emu.control.requests(path="/token")) == 1  # one refresh attempt, for all charms
    assert manager.get(account.id).state is AccountState.NEEDS_SIGN_IN
    assert all(engine.status(c).state is CharmState.PARKED for c in CHARMS)
    assert any(isinstance(e, AccountChanged) for e in seen.events)

    # Signing in again unparks them at once, and they run.
    seen.events.clear()
    await manager.complete_sign_in(grant(emu, client_info), account.id)
    await seen.wait_for(lambda: len(seen.outcomes()) >= 3)
    assert sorted(seen.outcomes()) == sorted((c, OutcomeKind.OK) for c in CHARMS)
