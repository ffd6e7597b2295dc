"""Accounts of non-Google services (a plugin's ApiToken / OAuth2Provider) in the real engine.

Real parts: SQLite store, the engine's scheduler and shared HTTP client, the accounts layer,
the grant store with the 0600 file vault, and a real OAuth 2.0 provider + API on 127.0.0.1
(tests/auth/service_provider.py). The browser of the OAuth sign-in is an HTTP client that
follows the provider's redirect to the loopback listener, as the Google sign-in tests do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from tests.auth.service_provider import CLIENT_ID, Provider, running_provider
from trayapp.api import (
    ApiToken,
    NoSettings,
    OAuth2Provider,
    Pattern,
    RunReport,
    UpdateContext,
    raise_for_status,
)
from trayapp.auth.models import AccountState, Cause
from trayapp.auth.secrets import SecretVault
from trayapp.auth.wiring import AccountsWiring
from trayapp.core.engine import Engine
from trayapp.core.errors import ConfigError
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.patterns import PatternDeclarationError, PatternRegistry
from trayapp.core.profile import Profile
from trayapp.core.redact import forget_secrets


@pytest.fixture
def provider() -> Iterator[Provider]:
    with running_provider() as p:
        yield p


def patterns_for(provider: Provider) -> PatternRegistry:
    class TokenItems(Pattern[NoSettings]):
        id = "token-items"
        title = "Items (token)"
        Settings = NoSettings
        credential: ClassVar[ApiToken] = ApiToken(
            service="example",
            title="Example",
            help_url=provider.url + "/tokens",
            check_url=provider.url + "/user",
            identity_field="login",
        )
        collections = ("items",)

        async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
            assert ctx.credential is not None
            headers = await ctx.credential.auth_headers()
            resp = await ctx.http.get(provider.url + "/items", headers=headers)
            raise_for_status(resp, ctx.now(), what="Example")
            added = sum(ctx.collection("items").upsert(e["id"], e) == "added" for e in resp.json())
            return RunReport(added=added)

    class OAuthItems(Pattern[NoSettings]):
        id = "oauth-items"
        title = "Items (OAuth)"
        Settings = NoSettings
        credential: ClassVar[OAuth2Provider] = OAuth2Provider(
            service="exampleauth",
            title="Example Auth",
            authorize_url=provider.url + "/authorize",
            token_url=provider.url + "/token",
            revoke_url=provider.url + "/revoke",
            client_id=CLIENT_ID,
            scopes=("read",),
            userinfo_url=provider.url + "/user",
            identity_field="login",
        )
        collections = ("items",)

        async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
            assert ctx.credential is not None
            resp = await ctx.http.get(provider.url + "/items", auth=ctx.credential.auth)
            raise_for_status(resp, ctx.now(), what="Example Auth")
            added = sum(ctx.collection("items").upsert(e["id"], e) == "added" for e in resp.json())
            return RunReport(added=added)

    registry = PatternRegistry()
    registry.register(TokenItems)
    registry.register(OAuthItems)
    return registry


@pytest.fixture
async def wired(tmp_path: Path, provider: Provider) -> AsyncIterator[tuple[Engine, AccountsWiring]]:
    engine = Engine(
        Profile.resolve(tmp_path / "profile"), patterns=patterns_for(provider), jitter=0.0
    )
    vault = SecretVault(engine.profile.path, mode="file")
    accounts = AccountsWiring(engine, vault=vault)
    yield engine, accounts
    await engine.stop()
    await accounts.aclose()
    engine.close()
    forget_secrets()


def profile_bytes(profile: Path, *, skip_secrets: bool = True) -> bytes:
    return b"".join(
        p.read_bytes()
        for p in profile.rglob("*")
        if p.is_file() and not (skip_secrets and p.name == "secrets.json")
    )


class HttpBrowser:
    """The 'browser': opens the authorize URL in the background (a browser is another process)
    and follows the provider's redirect to the app's loopback listener; keeps the final page."""

    def __init__(self) -> None:
        self.pages: list[str] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def __call__(self, url: str) -> bool:
        task = asyncio.get_running_loop().create_task(self._go(url))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def _go(self, url: str) -> None:
        async with httpx.AsyncClient(follow_redirects=True, timeout=30) as browser:
            self.pages.append((await browser.get(url)).text)


async def test_api_token_account_syncs_a_401_needs_sign_in_and_a_new_token_recovers(
    wired: tuple[Engine, AccountsWiring], provider: Provider
) -> None:
    engine, accounts = wired
    manager = accounts.manager
    provider.api_tokens.add("good-token-1")

    with pytest.raises(ConfigError, match="did not accept this token"):
        await manager.add_token("example", "wrong-token")
    assert manager.accounts() == []  # a refused token is not stored

    account = await manager.add_token("example", "good-token-1")
    assert (account.service, account.label, account.credential_kind) == (
        "example",
        "octo",  # the check_url's identity_field
        "api_token",
    )
    assert account.state is AccountState.SIGNED_IN
    charm = engine.add_charm("token-items", {}, account_id=account.id)
    second = engine.add_charm("token-items", {}, name="second", account_id=account.id)

    outcomes = await engine.sync([charm.id])
    assert outcomes[charm.id].kind is OutcomeKind.OK, outcomes[charm.id].message
    assert provider.api_auth[-1] == "Bearer good-token-1"
    assert len(engine.store.collection(f"charm:{charm.id}:items")) == 2
    # The token is in the 0600 secrets file, nowhere else in the profile (not in SQLite).
    assert b"good-token-1" not in profile_bytes(engine.profile.path)
    assert b"good-token-1" in (engine.profile.path / "secrets.json").read_bytes()
    assert "good-token-1" not in json.dumps([a.to_json() for a in manager.accounts()])

    # The service stops accepting the token: 401 -> the account needs sign-in, both charms wait.
    provider.api_tokens.clear()
    outcomes = await engine.sync([charm.id])
    assert outcomes[charm.id].kind is OutcomeKind.AUTH_REQUIRED
    after = manager.get(account.id)
    assert after.state is AccountState.NEEDS_SIGN_IN
    assert after.cause is Cause.TOKEN_REJECTED
    assert after.reason == "Example refused the token of octo."
    assert "trayapp accounts signin octo" in after.cli_hint
    assert engine.status(charm.id).parked and engine.status(second.id).parked
    requests = len(provider.api_auth)
    outcomes = await engine.sync([second.id])  # asks the service nothing while it needs sign-in
    assert outcomes[second.id].kind is OutcomeKind.AUTH_REQUIRED
    assert len(provider.api_auth) == requests

    # Re-auth: a new token for the same account; its charms are unparked and sync again.
    provider.api_tokens.add("good-token-2")
    again = await manager.add_token("example", "good-token-2", account_id=account.id)
    assert again.id == account.id and again.state is AccountState.SIGNED_IN
    assert not engine.status(charm.id).parked and not engine.status(second.id).parked
    outcomes = await engine.sync([second.id])
    assert outcomes[second.id].kind is OutcomeKind.OK, outcomes[second.id].message
    assert provider.api_auth[-1] == "Bearer good-token-2"
    assert len(manager.accounts()) == 1


async def test_oauth_provider_sign_in_refresh_write_back_and_revocation(
    wired: tuple[Engine, AccountsWiring], provider: Provider
) -> None:
    engine, accounts = wired
    manager = accounts.manager
    browser = HttpBrowser()
    account = await manager.sign_in_service("exampleauth", opener=browser, timeout=30)
    assert (account.service, account.label, account.state) == (
        "exampleauth",
        "octo",
        AccountState.SIGNED_IN,
    )
    await asyncio.wait_for(asyncio.gather(*browser.tasks), 30)
    assert "signed in to Example Auth as octo" in browser.pages[-1]
    code_request = provider.token_requests[-1]
    assert code_request["grant_type"] == "authorization_code"
    assert code_request["code_verifier"]  # PKCE, checked by the provider
    charm = engine.add_charm("oauth-items", {}, account_id=account.id)
    outcomes = await engine.sync([charm.id])
    assert outcomes[charm.id].kind is OutcomeKind.OK, outcomes[charm.id].message
    first_token = provider.api_auth[-1]
    generation = manager.auth_cell(account.id).get().generation

    # The provider drops the access token early: the 401 is answered by one refresh and a
    # retry inside the same run; the new token is written back (auth cell generation + 1).
    provider.revoke_access()
    outcomes = await engine.sync([charm.id])
    assert outcomes[charm.id].kind is OutcomeKind.OK, outcomes[charm.id].message
    assert [r["grant_type"] for r in provider.token_requests[1:]] == ["refresh_token"]
    assert provider.api_auth[-2:] == [first_token, provider.api_auth[-1]]
    assert provider.api_auth[-1] != first_token
    meta = manager.auth_cell(account.id).get()
    assert meta.generation == generation + 1 and meta.has_refresh_token
    secret = (engine.profile.path / "secrets.json").read_text()
    assert provider.api_auth[-1].removeprefix("Bearer ") in secret
    assert provider.api_auth[-1].removeprefix("Bearer ").encode() not in profile_bytes(
        engine.profile.path
    )

    # The user removes the app's access: the refresh is invalid_grant -> needs sign-in.
    provider.revoke_all()
    outcomes = await engine.sync([charm.id])
    assert outcomes[charm.id].kind is OutcomeKind.AUTH_REQUIRED
    after = manager.get(account.id)
    assert after.state is AccountState.NEEDS_SIGN_IN
    assert after.cause is Cause.INVALID_GRANT
    assert "Example Auth no longer accepts the sign-in of octo" in after.reason
    assert engine.status(charm.id).parked

    # Signing in again through the same browser flow brings it back.
    again = await manager.sign_in(account.id, opener=HttpBrowser(), timeout=30)
    assert again.id == account.id and again.state is AccountState.SIGNED_IN
    assert not engine.status(charm.id).parked
    outcomes = await engine.sync([charm.id])
    assert outcomes[charm.id].kind is OutcomeKind.OK, outcomes[charm.id].message

    # Sign-out revokes the refresh token at the provider (RFC 7009) and forgets it.
    result = await manager.sign_out(account.id)
    assert result.revoked
    assert provider.refresh_tokens == set()
    assert manager.get(account.id).state is AccountState.SIGNED_OUT


async def test_an_account_of_another_service_is_refused_when_the_charm_is_added(
    wired: tuple[Engine, AccountsWiring], provider: Provider
) -> None:
    engine, accounts = wired
    provider.api_tokens.add("tok")
    account = await accounts.manager.add_token("example", "tok", name="work")
    assert account.label == "work"
    with pytest.raises(ConfigError, match="needs a Example Auth account, but account"):
        engine.add_charm("oauth-items", {}, account_id=account.id)
    with pytest.raises(ConfigError, match="accounts add --service example"):
        engine.add_charm("token-items", {})
    with pytest.raises(ConfigError, match="browser sign-in"):
        await accounts.manager.sign_in_service("example")


def test_a_credential_declaration_is_checked_when_registered() -> None:
    class Bad(Pattern[NoSettings]):
        id = "bad"
        title = "Bad"
        Settings = NoSettings
        credential: ClassVar[Any] = ApiToken(service="Not A Slug", title="X")

        async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
            return RunReport()

    with pytest.raises(PatternDeclarationError, match="short lower-case id"):
        PatternRegistry().register(Bad)

    class Both(Bad):
        id = "both"
        credential = ApiToken(service="x", title="X")
        scopes = ("https://www.googleapis.com/auth/gmail.readonly",)

    with pytest.raises(PatternDeclarationError, match="both Google scopes and a credential"):
        PatternRegistry().register(Both)


async def test_a_refusal_of_a_token_replaced_meanwhile_does_not_undo_the_new_one(
    wired: tuple[Engine, AccountsWiring], provider: Provider
) -> None:
    """A run that sent the old token gets its 401 after the user entered a new token: the
    account stays signed in with the new one (the auth cell's fingerprint tells them apart)."""
    engine, accounts = wired
    manager = accounts.manager
    provider.api_tokens.update({"old-token", "new-token"})
    account = await manager.add_token("example", "old-token")
    spec = engine.patterns.get("token-items").credential
    assert isinstance(spec, ApiToken)
    in_flight = manager.credential(account.id, spec)
    assert await in_flight.token() == "old-token"
    await manager.add_token("example", "new-token", account_id=account.id)
    in_flight.rejected("HTTP 401")
    assert manager.get(account.id).state is AccountState.SIGNED_IN
    current = manager.credential(account.id, spec)
    assert await current.token() == "new-token"
    current.rejected("HTTP 401")
    assert manager.get(account.id).state is AccountState.NEEDS_SIGN_IN
