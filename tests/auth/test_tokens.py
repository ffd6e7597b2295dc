"""Token provider against the emulator: refresh ahead of expiry, single flight, write-back,
triage of every refresh failure, 401 handling, and secrets kept out of the store and logs."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from tests.emulator.harness import DEFAULT_SCOPES, EmulatorServer
from trayapp.auth.accounts import AccountManager
from trayapp.auth.grants import auth_cell_name
from trayapp.auth.models import Account, AccountState, Cause, fingerprint
from trayapp.auth.secrets import SecretVault
from trayapp.auth.signin import Grant, grant_from_token_response
from trayapp.auth.tokens import REFRESH_MARGIN, TokenProvider
from trayapp.core.errors import AuthRequired, Offline, ReadOnlyCellError, ServerError
from trayapp.core.store import Store
from trayapp.emulator.control import ClientInfo

pytestmark = pytest.mark.usefixtures("configured")

USERINFO = "oauth2.userinfo.get"
EMAIL = "alice@example.com"
Clock = Any
MemoryKeyring = Any


def token_requests(emu: EmulatorServer) -> list[Any]:
    return emu.control.requests(path="/token")


def grant_from_emulator(
    emu: EmulatorServer,
    client: ClientInfo,
    email: str = EMAIL,
    scopes: tuple[str, ...] = DEFAULT_SCOPES,
) -> Grant:
    """A grant as the browser flow would produce it, minted by the emulator's control API."""
    tokens = emu.control.issue_tokens(email, client.id, list(scopes))
    return grant_from_token_response(tokens, email=email)


async def signed_in(manager: AccountManager, emu: EmulatorServer, client: ClientInfo) -> Account:
    return await manager.complete_sign_in(grant_from_emulator(emu, client))


def secret_of(manager: AccountManager, keyring: MemoryKeyring, account_id: str) -> dict[str, str]:
    data: dict[str, str] = json.loads(keyring.data[manager.secret_key(account_id)])
    return data


async def test_fresh_token_is_served_without_a_refresh(
    manager: AccountManager, emu: EmulatorServer, client_info: ClientInfo
) -> None:
    grant = grant_from_emulator(emu, client_info)
    account = await manager.complete_sign_in(grant)
    emu.control.clear_log()
    provider = manager.provider(account.id)
    assert await provider.access_token() == grant.access_token
    assert token_requests(emu) == []


async def test_refreshes_ahead_of_expiry_and_writes_back_before_handing_out(
    manager: AccountManager,
    emu: EmulatorServer,
    client_info: ClientInfo,
    clock: Clock,
    keyring_mem: MemoryKeyring,
) -> None:
    grant = grant_from_emulator(emu, client_info)
    account = await manager.complete_sign_in(grant)
    provider = manager.provider(account.id)
    meta_before = manager.auth_cell(account.id).get()
    assert meta_before.expiry is not None
    # Still valid for a few minutes, but inside the refresh margin: refresh now, not at expiry.
    clock.offset = meta_before.expiry - clock() - REFRESH_MARGIN + timedelta(seconds=30)
    emu.control.clear_log()

    token = await provider.access_token()

    assert token != grant.access_token
    assert len(token_requests(emu)) == 1
    # Written back before being handed out: the cell and the secret store already have it.
    meta = manager.auth_cell(account.id).get()
    assert meta.fingerprint == fingerprint(token)
    assert meta.generation == meta_before.generation + 1
    assert meta.expiry is not None and meta.expiry > clock() + timedelta(minutes=50)
    assert secret_of(manager, keyring_mem, account.id)["access_token"] == token
    assert secret_of(manager, keyring_mem, account.id)["refresh_token"] == grant.refresh_token
    # And the new token is accepted by the API.
    async with httpx.AsyncClient() as http:
        r = await http.get(
            emu.url("/oauth2/v2/userinfo"), headers={"Authorization": f"Bearer {token}"}
        )
    assert r.status_code == 200


async def test_fifty_concurrent_askers_cause_exactly_one_refresh(
    manager: AccountManager, emu: EmulatorServer, client_info: ClientInfo, clock: Clock
) -> None:
    account = await signed_in(manager, emu, client_info)
    clock.offset = timedelta(hours=2)  # the token has expired on the provider's clock
    emu.control.clear_log()
    provider = manager.provider(account.id)

    tokens = await asyncio.gather(*(provider.access_token() for _ in range(50)))

    assert len(set(tokens)) == 1
    assert len(token_requests(emu)) == 1
    assert provider.refresh_count == 1


async def test_a_cancelled_asker_does_not_cancel_the_refresh_others_wait_for(
    manager: AccountManager, emu: EmulatorServer, client_info: ClientInfo, clock: Clock
) -> None:
    account = await signed_in(manager, emu, client_info)
    clock.offset = timedelta(hours=2)
    emu.control.add_fault(kind="latency", endpoint="oauth.token", latency_ms=300, times=1)
    emu.control.clear_log()
    provider = manager.provider(account.id)
    first = asyncio.create_task(provider.access_token())
    second = asyncio.create_task(provider.access_token())
    await asyncio.sleep(0)  # one loop turn: both tasks run up to awaiting the refresh
    assert provider._inflight is not None
    first.cancel()
    token = await second
    assert first.cancelled()
    assert token and len(token_requests(emu)) == 1


async def test_revoked_grant_means_needs_sign_in_exactly_once(
    manager: AccountManager, emu: EmulatorServer, client_info: ClientInfo, clock: Clock
) -> None:
    account = await signed_in(manager, emu, client_info)
    changes: list[Account] = []
    manager.subscribe(changes.append)
    emu.control.revoke_refresh_token(EMAIL)
    clock.offset = timedelta(hours=2)
    emu.control.clear_log()
    provider = manager.provider(account.id)

    results = await asyncio.gather(
        *(provider.access_token() for _ in range(50)), return_exceptions=True
    )

    assert all(isinstance(r, AuthRequired) for r in results)
    assert {r.account_id for r in results if isinstance(r, AuthRequired)} == {account.id}
    assert len(token_requests(emu)) == 1  # one attempt, no retries of a dead grant
    assert [(c.state, c.cause) for c in changes] == [
        (AccountState.NEEDS_SIGN_IN, Cause.INVALID_GRANT)
    ]
    after = manager.get(account.id)
    assert after.state is AccountState.NEEDS_SIGN_IN
    assert after.email == EMAIL  # never deleted because of a failure
    assert after.reason.startswith("Google no longer accepts the sign-in")
    assert "trayapp" not in after.reason  # the tray shows it as is
    assert "`trayapp accounts signin alice@example.com`" in after.cli_hint
    assert not manager.account_usable(account.id)

    # Asking again does not go back to Google: the account waits for the user.
    with pytest.raises(AuthRequired):
        await provider.access_token()
    with pytest.raises(AuthRequired):
        await provider.refresh_after_rejection("whatever")
    assert len(token_requests(emu)) == 1

    # A new sign-in makes it usable again, and the listener hears it (the engine unparks).
    changes.clear()
    new = grant_from_emulator(emu, client_info)
    await manager.complete_sign_in(new, account.id)
    assert [c.state for c in changes] == [AccountState.SIGNED_IN]
    assert manager.account_usable(account.id)
    assert await provider.access_token() == new.access_token


async def test_token_endpoint_500s_are_retried_and_never_ask_for_sign_in(
    manager: AccountManager,
    emu: EmulatorServer,
    client_info: ClientInfo,
    clock: Clock,
    keyring_mem: MemoryKeyring,
    _no_refresh_sleep: list[float],
) -> None:
    account = await signed_in(manager, emu, client_info)
    secret_before = dict(keyring_mem.data)
    changes: list[Account] = []
    manager.subscribe(changes.append)
    clock.offset = timedelta(hours=2)
    emu.control.add_fault(kind="token_error", token_error="500")
    emu.control.clear_log()
    provider = manager.provider(account.id)

    with pytest.raises(ServerError):
        await provider.access_token()

    assert len(token_requests(emu)) == 3  # google-auth's own retries
    assert len(_no_refresh_sleep) == 2  # with its backoff in between (not slept here)
    assert changes == []
    assert manager.get(account.id).state is AccountState.SIGNED_IN
    assert keyring_mem.data == secret_before  # credentials kept

    emu.control.clear_faults()
    assert await provider.access_token()


@pytest.mark.parametrize("fault", ["503-html", "temporarily_unavailable"])
async def test_other_transient_token_errors_are_server_errors(
    manager: AccountManager, emu: EmulatorServer, client_info: ClientInfo, clock: Clock, fault: str
) -> None:
    account = await signed_in(manager, emu, client_info)
    clock.offset = timedelta(hours=2)
    emu.control.add_fault(kind="token_error", token_error=fault)
    with pytest.raises(ServerError):
        await manager.provider(account.id).access_token()
    assert manager.get(account.id).state is AccountState.SIGNED_IN


async def test_network_failure_is_offline(
    manager: AccountManager, emu: EmulatorServer, client_info: ClientInfo, clock: Clock
) -> None:
    account = await signed_in(manager, emu, client_info)
    clock.offset = timedelta(hours=2)
    emu.control.add_fault(kind="reset", endpoint="oauth.token")
    with pytest.raises(Offline):
        await manager.provider(account.id).access_token()
    assert manager.get(account.id).state is AccountState.SIGNED_IN


@pytest.mark.parametrize(
    ("fault", "state", "cause"),
    [
        ("invalid_client", AccountState.CLIENT_MISCONFIGURED, Cause.INVALID_CLIENT),
        ("invalid_rapt", AccountState.NEEDS_SIGN_IN, Cause.REAUTH_REQUIRED),
        ("invalid_grant", AccountState.NEEDS_SIGN_IN, Cause.INVALID_GRANT),
    ],
)
async def test_refresh_failures_are_triaged(
    manager: AccountManager,
    emu: EmulatorServer,
    client_info: ClientInfo,
    clock: Clock,
    fault: str,
    state: AccountState,
    cause: Cause,
) -> None:
    account = await signed_in(manager, emu, client_info)
    clock.offset = timedelta(hours=2)
    emu.control.add_fault(kind="token_error", token_error=fault)
    emu.control.clear_log()
    with pytest.raises(AuthRequired) as info:
        await manager.provider(account.id).access_token()
    assert info.value.account_id == account.id
    after = manager.get(account.id)
    assert (after.state, after.cause) == (state, cause)
    assert after.email == EMAIL
    assert len(token_requests(emu)) == 1
    assert str(info.value) == after.cli_text  # the run's message tells a CLI user the fix
    assert "trayapp" not in after.reason


async def test_invalid_grant_about_seven_days_after_consent_mentions_testing_status(
    manager: AccountManager, emu: EmulatorServer, clock: Clock
) -> None:
    testing = emu.control.create_client(testing=True)
    import json as _json

    from trayapp.auth.client_config import parse_client_json

    manager.clients.set(parse_client_json(_json.dumps(testing.client_config(emu.base_url))))
    account = await signed_in(manager, emu, testing)
    # Seven days later on both clocks: the emulator expires a Testing client's grant.
    emu.control.advance_clock(7 * 24 * 3600 + 60)
    clock.offset = timedelta(days=7, minutes=1)
    with pytest.raises(AuthRequired) as info:
        await manager.provider(account.id).access_token()
    assert manager.get(account.id).cause is Cause.TESTING_EXPIRY
    assert "7 days" in str(info.value) and "Testing" in str(info.value)


async def test_a_refresh_learns_the_granted_scopes_and_a_charm_need_means_needs_permission(
    manager: AccountManager, emu: EmulatorServer, client_info: ClientInfo, clock: Clock
) -> None:
    narrow = ("openid", "https://www.googleapis.com/auth/userinfo.email")
    gmail = "https://www.googleapis.com/auth/gmail.readonly"
    grant = grant_from_emulator(emu, client_info, scopes=narrow)
    account = await manager.complete_sign_in(grant)
    manager.set_scope_needs(lambda account_id: [gmail] if account_id == account.id else [])
    assert manager.get(account.id).state is AccountState.NEEDS_PERMISSION
    # The record claims more than the grant holds (e.g. a scope revoked on Google's side).
    from trayapp.auth.accounts import record_cell_name

    cell = manager.store.cell(record_cell_name(account.id), Account | None, default=None)
    stored = cell.get()
    assert stored is not None
    cell.set(stored.model_copy(update={"scopes": (*narrow, gmail)}))
    assert manager.get(account.id).usable  # as far as the record knows
    clock.offset = timedelta(hours=2)
    # The grant works for the scopes it holds: the token is handed out (a charm that needs no
    # Gmail keeps syncing), and a charm that needs Gmail waits for the permission instead.
    assert await manager.provider(account.id).access_token()
    assert "read Gmail" in manager.charm_permission_missing(account.id, [gmail])
    assert manager.charm_permission_missing(account.id, list(narrow)) == ""
    # The refresh asked for no scopes and Google's answer named the real ones.
    [refresh] = [e for e in token_requests(emu) if b"grant_type=refresh_token" in e.body]
    assert "scope" not in dict(parse_qsl(refresh.body.decode()))
    after = manager.get(account.id)
    assert after.state is AccountState.NEEDS_PERMISSION
    assert after.missing_scopes == (gmail,) and gmail not in after.scopes
    assert after.permission_prompt == f"Allow Pattern Sync to read Gmail for {EMAIL}"


async def test_needs_permission_is_computed_from_the_charms_needs(
    manager: AccountManager, emu: EmulatorServer, client_info: ClientInfo
) -> None:
    narrow = ("openid", "https://www.googleapis.com/auth/userinfo.email")
    account = await manager.complete_sign_in(grant_from_emulator(emu, client_info, scopes=narrow))
    gmail = "https://www.googleapis.com/auth/gmail.readonly"
    needs: list[str] = []
    manager.set_scope_needs(lambda _account_id: needs)
    published: list[Account] = []
    manager.subscribe(published.append)
    assert manager.get(account.id).usable
    needs.append(gmail)  # a Gmail charm was added for the account
    [changed] = manager.scope_needs_changed()
    after = manager.get(account.id)
    assert after.state is AccountState.NEEDS_PERMISSION and after.missing_scopes == (gmail,)
    assert published == [changed] and changed.state is AccountState.NEEDS_PERMISSION
    # The grant still works for what it holds (other charms keep syncing); the Gmail charm
    # waits for the permission.
    assert await manager.provider(account.id).access_token()
    assert "read Gmail" in manager.charm_permission_missing(account.id, [gmail])
    # Nothing stored says so: the record still holds the grant's own state.
    assert manager._record(account.id).get().state is AccountState.SIGNED_IN  # type: ignore[union-attr]
    assert manager.scope_needs_changed() == []  # no change, no second notification
    needs.clear()  # the charm was removed
    [back] = manager.scope_needs_changed()
    assert back.usable and manager.get(account.id).usable


async def test_401_from_the_api_means_one_refresh_and_one_retry(
    manager: AccountManager, emu: EmulatorServer, client_info: ClientInfo
) -> None:
    from trayapp.google.client import GoogleApi
    from trayapp.google.endpoints import GoogleEndpoints

    account = await signed_in(manager, emu, client_info)
    provider = manager.provider(account.id)
    emu.control.expire_access_tokens(EMAIL)  # the server says expired; our clock does not
    emu.control.clear_log()
    async with GoogleApi(provider, endpoints=GoogleEndpoints.for_base(emu.base_url)) as api:
        response = await api.send("gmail", USERINFO, "GET", emu.url("/oauth2/v2/userinfo"))
    assert response.json()["email"] == EMAIL
    assert len(token_requests(emu)) == 1
    assert len(emu.control.requests(api_method=USERINFO)) == 2


async def test_401_twice_does_not_loop(
    manager: AccountManager, emu: EmulatorServer, client_info: ClientInfo
) -> None:
    from trayapp.google.client import GoogleApi
    from trayapp.google.endpoints import GoogleEndpoints

    account = await signed_in(manager, emu, client_info)
    emu.control.add_fault(kind="status", status="401", endpoint=USERINFO)
    emu.control.clear_log()
    async with GoogleApi(
        manager.provider(account.id), endpoints=GoogleEndpoints.for_base(emu.base_url)
    ) as api:
        with pytest.raises(AuthRequired):
            await api.send("gmail", USERINFO, "GET", emu.url("/oauth2/v2/userinfo"))
    assert len(token_requests(emu)) == 1
    assert len(emu.control.requests(api_method=USERINFO)) == 2


async def test_refresh_after_rejection_returns_a_newer_token_without_refreshing(
    manager: AccountManager, emu: EmulatorServer, client_info: ClientInfo
) -> None:
    grant = grant_from_emulator(emu, client_info)
    account = await manager.complete_sign_in(grant)
    provider = manager.provider(account.id)
    emu.control.clear_log()
    # 20 charms all got a 401 for the same token at once: one refresh between them.
    tokens = await asyncio.gather(
        *(provider.refresh_after_rejection(grant.access_token) for _ in range(20))
    )
    assert len(set(tokens)) == 1 and tokens[0] != grant.access_token
    assert len(token_requests(emu)) == 1
    # A late 401 for the old token gets the new one, with no new refresh.
    assert await provider.refresh_after_rejection(grant.access_token) == tokens[0]
    assert len(token_requests(emu)) == 1


async def test_provider_bound_to_a_read_only_cell_fails_at_construction(
    manager: AccountManager, store: Store, emu: EmulatorServer, client_info: ClientInfo
) -> None:
    account = await signed_in(manager, emu, client_info)
    # An account whose auth cell name is taken by a derived (read-only) cell: the grant store
    # and so the provider refuse it at once, instead of losing every write-back.
    other = "acct-readonly"
    store.derived(auth_cell_name(other), [manager.auth_cell(account.id)], lambda meta: meta)
    with pytest.raises(ReadOnlyCellError, match=auth_cell_name(other)):
        manager.grants.auth_cell(other)
    with pytest.raises(ReadOnlyCellError, match=auth_cell_name(other)):
        TokenProvider(manager, other, manager.grants)


async def test_reloaded_account_refreshes_against_the_configured_token_uri(
    store: Store,
    profile: Path,
    keyring_mem: MemoryKeyring,
    clock: Clock,
    manager: AccountManager,
    emu: EmulatorServer,
    client_info: ClientInfo,
) -> None:
    account = await signed_in(manager, emu, client_info)
    path = store.path
    store.close()
    # A new process: new store, new manager, same profile and keyring.
    reopened = Store.open(path)
    try:
        vault = SecretVault(profile, mode="keyring", keyring_store=keyring_mem)
        async with httpx.AsyncClient() as http:
            again = AccountManager(reopened, profile, vault=vault, now=clock, http=http)
            clock.offset = timedelta(hours=2)
            emu.control.clear_log()
            token = await again.provider(account.id).access_token()
            assert token
            # The refresh went to the emulator (google-auth would default to Google's URL).
            assert len(token_requests(emu)) == 1
            assert again.get(account.id).usable
    finally:
        reopened.close()


async def test_keyring_locked_means_waiting_for_keyring_not_signed_out(
    manager: AccountManager,
    emu: EmulatorServer,
    client_info: ClientInfo,
    keyring_mem: MemoryKeyring,
) -> None:
    account = await signed_in(manager, emu, client_info)
    manager.provider(account.id).reset()  # as after a restart: must read the keyring
    keyring_mem.locked = True
    with pytest.raises(AuthRequired, match="keyring"):
        await manager.provider(account.id).access_token()
    assert manager.get(account.id).state is AccountState.KEYRING_NOT_READY
    keyring_mem.locked = False
    back = await manager.retry_keyring()
    assert [a.id for a in back] == [account.id]
    assert await manager.provider(account.id).access_token()


async def test_no_token_in_any_profile_file_logs_json_or_errors(
    manager: AccountManager,
    emu: EmulatorServer,
    client_info: ClientInfo,
    clock: Clock,
    keyring_mem: MemoryKeyring,
    profile: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    grant = grant_from_emulator(emu, client_info)
    account = await manager.complete_sign_in(grant)
    clock.offset = timedelta(hours=2)
    refreshed = await manager.provider(account.id).access_token()
    emu.control.revoke_refresh_token(EMAIL)
    clock.offset = timedelta(hours=4)
    with pytest.raises(AuthRequired) as info:
        await manager.provider(account.id).access_token()

    secrets = [grant.access_token, grant.refresh_token, refreshed]
    assert all(secrets)
    manager.store.close()  # flush the WAL into the database file
    files = [p for p in profile.rglob("*") if p.is_file()]  # noqa: ASYNC240 - test inspection
    blobs = {p.name: p.read_bytes() for p in files}
    assert any(name.startswith("trayapp.db") for name in blobs)
    for secret in secrets:
        assert secret is not None
        for name, blob in blobs.items():
            assert secret.encode() not in blob, f"token found in {name}"
        assert secret not in caplog.text
        assert secret not in str(info.value)
    # The accounts' JSON (what --json prints) and their state messages hold no token either.
    reopened = Store.open(profile / "trayapp.db")
    try:
        again = AccountManager(reopened, profile, vault=manager.vault)
        text = json.dumps([a.to_json() for a in again.accounts()])
        for secret in secrets:
            assert secret is not None and secret not in text
    finally:
        reopened.close()


async def test_sign_out_during_a_refresh_never_brings_the_tokens_back(
    manager: AccountManager,
    emu: EmulatorServer,
    client_info: ClientInfo,
    clock: Clock,
    keyring_mem: MemoryKeyring,
) -> None:
    account = await signed_in(manager, emu, client_info)
    clock.offset = timedelta(hours=2)
    emu.control.add_fault(kind="latency", endpoint="oauth.token", latency_ms=300, times=1)
    provider = manager.provider(account.id)
    asking = asyncio.create_task(provider.access_token())
    await asyncio.sleep(0)  # the refresh is in flight
    assert provider._inflight is not None

    result = await manager.sign_out(account.id)

    await asyncio.gather(asking, return_exceptions=True)
    assert result.account.state is AccountState.SIGNED_OUT
    assert keyring_mem.data == {}
    assert manager.auth_cell(account.id).get().fingerprint is None
    with pytest.raises(AuthRequired, match="signed out"):
        await provider.access_token()


async def test_accounts_are_independent(
    manager: AccountManager, emu: EmulatorServer, client_info: ClientInfo, clock: Clock
) -> None:
    emu.control.create_account("bob@example.com", name="Bob")
    alice = await signed_in(manager, emu, client_info)
    bob = await manager.complete_sign_in(
        grant_from_emulator(emu, client_info, email="bob@example.com")
    )
    assert [a.email for a in manager.accounts()] == [EMAIL, "bob@example.com"]
    emu.control.revoke_refresh_token(EMAIL)
    clock.offset = timedelta(hours=2)
    with pytest.raises(AuthRequired):
        await manager.provider(alice.id).access_token()
    assert await manager.provider(bob.id).access_token()
    assert manager.get(bob.id).usable and not manager.get(alice.id).usable


async def test_a_refresh_started_while_sign_in_stores_the_new_grant_never_overwrites_it(
    manager: AccountManager,
    emu: EmulatorServer,
    client_info: ClientInfo,
    clock: Clock,
    keyring_mem: MemoryKeyring,
) -> None:
    """A charm asks for a token after sign-in began storing the new grant (so there was no
    in-flight refresh to wait for): it must get the new grant, never refresh with the old one
    and write that back over the new refresh token."""
    account = await signed_in(manager, emu, client_info)
    provider = manager.provider(account.id)
    new_grant = grant_from_emulator(emu, client_info)
    clock.offset = timedelta(hours=2)  # the old access token is stale: asking would refresh
    emu.control.add_fault(kind="latency", endpoint="oauth.token", latency_ms=300, times=1)

    entered, release = threading.Event(), threading.Event()
    plain_set = keyring_mem.set

    def gated_set(key: str, value: str) -> None:
        entered.set()
        assert release.wait(10)
        plain_set(key, value)

    keyring_mem.set = gated_set
    signing = asyncio.create_task(manager.complete_sign_in(new_grant, account.id))
    assert await asyncio.to_thread(entered.wait, 10)  # sign-in is writing the new grant
    keyring_mem.set = plain_set
    asking = asyncio.create_task(provider.access_token())
    await asyncio.sleep(0.05)
    release.set()

    await asyncio.wait_for(signing, 10)
    token = await asyncio.wait_for(asking, 10)
    assert token == new_grant.access_token
    assert secret_of(manager, keyring_mem, account.id)["refresh_token"] == new_grant.refresh_token
    assert manager.auth_cell(account.id).get().fingerprint == fingerprint(new_grant.access_token)
    assert token_requests(emu) == []  # the new grant's token was fresh: nothing to refresh


async def test_a_token_without_expires_in_is_reused_not_refreshed_on_every_ask(
    manager: AccountManager,
    emu: EmulatorServer,
    client_info: ClientInfo,
    clock: Clock,
) -> None:
    """RFC 6749 lets a token endpoint leave ``expires_in`` out; the provider must then assume a
    normal lifetime instead of treating the token as already stale (a refresh per request)."""
    account = await signed_in(manager, emu, client_info)
    grants: list[str] = []

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        grants.append(request.url.path)
        return httpx.Response(
            200, json={"access_token": "no-expiry-token-1", "token_type": "Bearer"}
        )

    provider = TokenProvider(
        manager,
        account.id,
        manager.grants,
        now=clock,
        http_client_factory=lambda: httpx.Client(transport=httpx.MockTransport(token_endpoint)),
    )
    clock.offset = timedelta(hours=2)  # the sign-in's token is stale: one refresh
    for _ in range(3):
        assert await provider.access_token() == "no-expiry-token-1"
    assert len(grants) == 1
    expiry = provider.expiry
    assert expiry is not None and expiry - clock() > timedelta(minutes=50)
