"""Google accounts of a profile: records, states, sign-in/out, and their token providers.

An account is a first-class record (``account:<id>:record``) with its email, granted scopes and
state, plus a writable auth cell (``account:<id>:auth``) holding non-secret token metadata. The
tokens themselves live in the secret store (:mod:`trayapp.auth.secrets`), never in the SQLite
file.

State changes are *published*: :meth:`AccountManager.subscribe` callbacks run after the change
is committed, so the engine can unpark an account's charms the moment it is signed in again and
the tray can show "needs sign-in" the moment a refresh fails.

Failures never delete anything: an account whose grant was revoked keeps its id, email and
charms, and only changes state. Only :meth:`AccountManager.remove` (an explicit user action)
deletes an account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets as pysecrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from trayapp.auth.client_config import ClientConfig, ClientConfigRepo
from trayapp.auth.models import (
    Account,
    AccountState,
    AuthMeta,
    Cause,
    SecretPayload,
    fingerprint,
)
from trayapp.auth.secrets import KeyringNotReady, SecretVault
from trayapp.auth.signin import Grant, SignInError, run_sign_in
from trayapp.auth.tokens import TokenProvider, signin_hint
from trayapp.core.cells import Cell
from trayapp.core.errors import ConfigError, NotFoundError
from trayapp.core.redact import redact, register_secret
from trayapp.core.store import Store

__all__ = [
    "Account",
    "AccountManager",
    "AccountState",
    "AuthMeta",
    "Cause",
    "SignOutResult",
]

log = logging.getLogger(__name__)

PROFILE_KEY_CELL = "app:auth_profile_key"
ACCOUNT_PREFIX = "account:"

AccountListener = Callable[[Account], None]


def record_cell_name(account_id: str) -> str:
    return f"account:{account_id}:record"


def auth_cell_name(account_id: str) -> str:
    return f"account:{account_id}:auth"


@dataclass(frozen=True, slots=True)
class SignOutResult:
    account: Account
    revoked: bool  # the provider confirmed the revocation
    message: str  # user-facing summary


class AccountManager:
    """Accounts of one profile. Create one per Store, on the thread that uses the Store.

    ``vault`` defaults to the profile's keyring/file vault; ``now`` is the clock (tests pass a
    fake one); ``http`` is the async client used for sign-in, identity and revocation.
    """

    def __init__(
        self,
        store: Store,
        profile_dir: Path,
        *,
        vault: SecretVault | None = None,
        now: Callable[[], datetime] | None = None,
        http: httpx.AsyncClient | None = None,
        sync_http_factory: Callable[[], httpx.Client] | None = None,
    ) -> None:
        self.store = store
        self.profile_dir = Path(profile_dir)
        self.vault = vault or SecretVault(self.profile_dir)
        self.clients = ClientConfigRepo(store)
        self._now = now or (lambda: datetime.now(UTC))
        self._http = http
        self._owns_http = http is None
        self._sync_http_factory = sync_http_factory
        self._listeners: list[AccountListener] = []
        self._providers: dict[str, TokenProvider] = {}
        self._profile_key_cell = store.cell(PROFILE_KEY_CELL, str | None, default=None)
        self._keyring_retry: asyncio.Task[None] | None = None

    # -- lookup ------------------------------------------------------------------------------

    def _record(self, account_id: str) -> Cell[Account | None]:
        return self.store.cell(record_cell_name(account_id), Account | None, default=None)

    def auth_cell(self, account_id: str) -> Cell[AuthMeta]:
        """The account's writable auth cell (token metadata only)."""
        return self.store.cell(auth_cell_name(account_id), AuthMeta, default=AuthMeta())

    def accounts(self) -> list[Account]:
        ids = [
            name[len(ACCOUNT_PREFIX) : -len(":record")]
            for name in self.store.cell_names(ACCOUNT_PREFIX)
            if name.endswith(":record")
        ]
        found = [a for a in (self._record(i).get() for i in ids) if a is not None]
        return sorted(found, key=lambda a: (a.created_at, a.id))

    def get(self, account_id: str) -> Account:
        account = self._record(account_id).get()
        if account is None:
            raise NotFoundError(
                f"no account {account_id!r}; see `trayapp accounts list` for the accounts"
            )
        return account

    def find(self, id_or_email: str) -> Account:
        """An account by id or (case-insensitive) email."""
        with contextlib.suppress(NotFoundError):
            return self.get(id_or_email)
        for account in self.accounts():
            if account.email and account.email.lower() == id_or_email.lower():
                return account
        raise NotFoundError(
            f"no account {id_or_email!r}; see `trayapp accounts list`, or add one with "
            "`trayapp accounts add`"
        )

    async def reload(self, account_id: str) -> Account | None:
        """Another process (``trayapp accounts ...``) changed this account: catch up with it.

        The record and token metadata are read from the store each time, but the account's
        provider keeps tokens in memory and nobody here heard of the change. So: forget those
        tokens (the next run loads the new grant from the secret store), then publish the
        record as it now is, which unparks the account's charms if it is usable again. Returns
        None (and publishes nothing) for an account that no longer exists.
        """
        provider = self._providers.get(account_id)
        if provider is not None:
            async with provider.exclusive():  # waits out a refresh with the old grant
                pass
        account = self._record(account_id).get()
        if account is None:
            self._providers.pop(account_id, None)
            return None
        log.info("account %s changed in another process; now %s", account_id, account.state.value)
        self._publish(account)
        return account

    def account_usable(self, account_id: str) -> bool:
        try:
            return self.get(account_id).usable
        except NotFoundError:
            return False

    def secret_key(self, account_id: str) -> str:
        """The keyring entry name: unique per profile, so two profiles never share a secret."""
        key = self._profile_key_cell.get()
        if key is None:
            key = pysecrets.token_hex(8)
            self._profile_key_cell.set(key)
        return f"{key}:{account_id}"

    # -- publishing ----------------------------------------------------------------------------

    def subscribe(self, listener: AccountListener) -> Callable[[], None]:
        """Call ``listener(account)`` after every committed change of any account's record.

        The engine uses it to unpark charms (``account.usable`` turned True) and to publish
        ``AccountChanged``. A failing listener is logged and never breaks the others.
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _publish(self, account: Account) -> None:
        for listener in list(self._listeners):
            try:
                listener(account)
            except Exception:
                log.exception("account listener failed for %s", account.id)

    def _save(self, account: Account) -> Account:
        self._record(account.id).set(account)
        self._publish(account)
        return account

    def _set_state(
        self,
        account_id: str,
        state: AccountState,
        reason: str,
        cause: Cause | None,
        *,
        hint: str = "",
        missing_scopes: Sequence[str] = (),
    ) -> Account:
        """Change an account's state (never its email or anything else); publish it."""
        current = self.get(account_id)
        if current.state is AccountState.SIGNED_OUT and state is not AccountState.SIGNED_IN:
            return current  # signed out on purpose: a late failure does not change that
        if (
            current.state is state
            and current.reason == reason
            and current.cli_hint == hint
            and current.cause == cause
            and current.missing_scopes == tuple(missing_scopes)
        ):
            return current
        log.info(
            "account %s is now %s%s", account_id, state.value, f" ({cause.value})" if cause else ""
        )
        updated = current.model_copy(
            update={
                "state": state,
                "reason": redact(reason) if state is not AccountState.SIGNED_IN else "",
                "cli_hint": hint if state is not AccountState.SIGNED_IN else "",
                "cause": cause,
                "missing_scopes": tuple(missing_scopes),
                "updated_at": self._now(),
            }
        )
        self._save(updated)
        if state is AccountState.KEYRING_NOT_READY:
            self._schedule_keyring_retry()
        return updated

    # -- tokens -------------------------------------------------------------------------------

    def provider(self, account_id: str) -> TokenProvider:
        """The account's token provider (one per account; implements TokenSource)."""
        provider = self._providers.get(account_id)
        if provider is None:
            self.get(account_id)
            provider = TokenProvider(
                self,
                account_id,
                self.auth_cell(account_id),
                now=self._now,
                http_client_factory=self._sync_http_factory,
            )
            self._providers[account_id] = provider
        return provider

    def require_scopes(self, account_id: str, scopes: Sequence[str]) -> None:
        """Raise AuthRequired (and mark needs_permission) if the grant lacks ``scopes``."""
        account = self.get(account_id)
        missing = [s for s in scopes if s not in account.scopes]
        if missing and account.usable:
            raise self.provider(account_id).insufficient_scope(missing)

    # -- client -------------------------------------------------------------------------------

    def import_client(self, config: ClientConfig) -> list[Account]:
        """Store a new OAuth client; accounts of another client must sign in again.

        A grant belongs to the client that obtained it: a refresh token of client A is
        ``invalid_client``/``invalid_grant`` for client B. Rather than let each account fail at
        its next refresh, they are marked now with the reason, and the ones that were
        ``client_misconfigured`` because of the old client become signable again.
        """
        self.clients.set(config)
        changed: list[Account] = []
        for account in self.accounts():
            if (
                account.client_id
                and account.client_id != config.client_id
                and account.state is not AccountState.SIGNED_OUT
            ):
                changed.append(
                    self._set_state(
                        account.id,
                        AccountState.NEEDS_SIGN_IN,
                        f"The app's OAuth client changed since {account.label} signed in.",
                        Cause.INVALID_CLIENT,
                        hint=signin_hint(account.label),
                    )
                )
        for provider in self._providers.values():
            provider.reset()
        return changed

    # -- sign-in --------------------------------------------------------------------------------

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=30, follow_redirects=False)
        return self._http

    async def sign_in(
        self,
        account_id: str | None = None,
        scopes: Sequence[str] = (),
        *,
        opener: Callable[[str], Any] | None = None,
        on_url: Callable[[str], None] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the user's time in the browser
    ) -> Account:
        """Run the browser sign-in: add a new account (``account_id=None``) or re-sign one in.

        Re-signing an existing account passes its email as ``login_hint`` and rejects a
        different account; its already granted scopes are kept (incremental authorization).
        A new account whose email is already in the profile signs that account in again rather
        than creating a duplicate.
        """
        client = self.clients.require()
        existing = self.get(account_id) if account_id else None
        wanted = tuple(dict.fromkeys((*(existing.scopes if existing else ()), *scopes)))
        # Google returns a refresh token only on first consent or with prompt=consent. An
        # account we already had a grant for (same client) would get none without it.
        had_grant = bool(
            existing and existing.granted_at and existing.client_id == client.client_id
        )
        kwargs: dict[str, Any] = {"opener": opener, "on_url": on_url}
        if timeout is not None:
            kwargs["timeout"] = timeout
        grant = await run_sign_in(
            client,
            wanted,
            http=self._http_client(),
            expected_email=existing.email if existing else None,
            force_consent=had_grant,
            include_granted_scopes=bool(existing and existing.scopes),
            **kwargs,
        )
        if grant.refresh_token is None:
            # The user had consented to this client before (e.g. a profile made afresh), so
            # Google sent no refresh token. Ask again with the consent screen shown.
            log.info("no refresh token came back; asking again with prompt=consent")
            grant = await run_sign_in(
                client,
                wanted,
                http=self._http_client(),
                expected_email=grant.email,
                force_consent=True,
                include_granted_scopes=bool(existing and existing.scopes),
                **kwargs,
            )
            if grant.refresh_token is None:
                raise SignInError(
                    "Google did not return a refresh token, so Pattern Sync could not stay "
                    "signed in; remove Pattern Sync's access at "
                    "https://myaccount.google.com/permissions and sign in again"
                )
        if existing is None:
            for account in self.accounts():
                if account.email and account.email.lower() == grant.email.lower():
                    existing = account
                    break
        return await self.complete_sign_in(grant, existing.id if existing else None)

    async def complete_sign_in(self, grant: Grant, account_id: str | None = None) -> Account:
        """Persist a grant: secret first, then metadata and record; publish; unpark.

        Raises KeyringNotReady (the account is left as it was) if the keyring is locked.
        """
        client = self.clients.require()
        register_secret(grant.access_token, grant.refresh_token)
        if account_id is None:
            return await self._complete_sign_in(client, grant, None)
        # No refresh with the old grant may run (and write back) while the new one is stored.
        async with self.provider(account_id).exclusive():
            return await self._complete_sign_in(client, grant, account_id)

    async def _complete_sign_in(
        self, client: ClientConfig, grant: Grant, account_id: str | None
    ) -> Account:
        now = self._now()
        if account_id is None:
            account_id = _new_account_id()
            account = Account(
                id=account_id,
                email=grant.email,
                state=AccountState.NEEDS_SIGN_IN,
                cause=Cause.NEVER_SIGNED_IN,
                created_at=now,
                updated_at=now,
            )
        else:
            account = self.get(account_id)
        previous_store = account.secret_store
        store = await asyncio.to_thread(self.vault.store_for_new_secret)
        cell = self.auth_cell(account_id)
        meta = cell.get()
        generation = meta.generation + 1
        payload = SecretPayload(
            refresh_token=grant.refresh_token,
            access_token=grant.access_token,
            generation=generation,
        )
        await asyncio.to_thread(store.set, self.secret_key(account_id), payload.model_dump_json())
        if previous_store is not None and previous_store != store.kind:
            with contextlib.suppress(Exception):
                old = self.vault.store(previous_store)
                await asyncio.to_thread(old.delete, self.secret_key(account_id))
        expiry = now + timedelta(seconds=grant.expires_in)
        scopes = tuple(dict.fromkeys(grant.scopes))
        signed_in = account.model_copy(
            update={
                "email": grant.email,
                "name": grant.name or account.name,
                "scopes": scopes,
                "state": AccountState.SIGNED_IN,
                "reason": "",
                "cli_hint": "",
                "cause": None,
                "missing_scopes": (),
                "secret_store": store.kind,
                "client_id": client.client_id,
                "granted_at": now,
                "updated_at": now,
            }
        )
        with self.store.transaction():
            cell.set(
                AuthMeta(
                    generation=generation,
                    expiry=expiry,
                    scopes=scopes,
                    fingerprint=fingerprint(grant.access_token),
                    refreshed_at=now,
                    granted_at=now,
                    has_refresh_token=True,
                )
            )
            self._record(account_id).set(signed_in)
        log.info("account %s signed in as %s", account_id, grant.email)
        self._publish(signed_in)
        return signed_in

    # -- sign-out / remove -------------------------------------------------------------------

    async def sign_out(self, account_id: str) -> SignOutResult:
        """Revoke the grant at the provider, delete local secrets, keep the record (signed_out).

        Local secrets are deleted even when revocation fails (offline): the user asked to sign
        out, and the message says how to finish the revocation by hand.
        """
        # No refresh may run (and write its token back) while the grant is being removed.
        async with self.provider(account_id).exclusive():
            return await self._sign_out(account_id)

    async def _sign_out(self, account_id: str) -> SignOutResult:
        account = self.get(account_id)
        payload: SecretPayload | None = None
        if account.secret_store is not None:
            store = self.vault.store(account.secret_store)
            try:
                raw = await asyncio.to_thread(store.get, self.secret_key(account_id))
            except KeyringNotReady as exc:
                raise ConfigError(
                    f"cannot sign out {account.label} while the keyring is locked: {exc}"
                ) from None
            payload = SecretPayload.model_validate_json(raw) if raw else None
        revoked, problem = False, ""
        token = payload.refresh_token or payload.access_token if payload else None
        if token:
            revoked, problem = await self._revoke(token)
        if account.secret_store is not None:
            store = self.vault.store(account.secret_store)
            await asyncio.to_thread(store.delete, self.secret_key(account_id))
        cell = self.auth_cell(account_id)
        now = self._now()
        with self.store.transaction():
            cell.set(AuthMeta(generation=cell.get().generation + 1))
            updated = account.model_copy(
                update={
                    "state": AccountState.SIGNED_OUT,
                    "reason": f"{account.label} is signed out.",
                    "cli_hint": f"sign in with `trayapp accounts signin {account.label}`",
                    "cause": Cause.SIGNED_OUT,
                    "secret_store": None,
                    "updated_at": now,
                }
            )
            self._record(account_id).set(updated)
        self._publish(updated)
        if revoked or not token:
            message = f"Signed out {account.label}; its tokens were revoked and deleted."
        else:
            message = (
                f"Signed out {account.label} and deleted its tokens, but Google could not be "
                f"told ({problem}); remove Pattern Sync's access at "
                "https://myaccount.google.com/permissions to finish"
            )
        return SignOutResult(updated, revoked, message)

    async def _revoke(self, token: str) -> tuple[bool, str]:
        client = self.clients.get()
        if client is None:
            return False, "no OAuth client configured"
        try:
            response = await self._http_client().post(
                client.revoke_uri, data={"token": token}, timeout=30
            )
        except httpx.HTTPError as exc:
            return False, type(exc).__name__
        if response.status_code == 200:
            return True, ""
        if response.status_code == 400:
            # invalid_token: already revoked or expired; nothing left to revoke.
            return True, ""
        return False, f"HTTP {response.status_code}"

    def remove(self, account_id: str) -> None:
        """Delete the account record and auth cell (explicit user action only).

        Call :meth:`sign_out` first to revoke; this only forgets locally.
        """
        account = self.get(account_id)
        if account.secret_store is not None:
            with contextlib.suppress(Exception):
                self.vault.store(account.secret_store).delete(self.secret_key(account_id))
        self.store.drop_prefix(f"account:{account_id}:")
        self._providers.pop(account_id, None)

    def add_placeholder(self, email: str | None = None) -> Account:
        """An account record that has never signed in (the UI lists it as 'needs sign-in')."""
        now = self._now()
        account_id = _new_account_id()
        account = Account(
            id=account_id,
            email=email,
            state=AccountState.NEEDS_SIGN_IN,
            reason="Not signed in yet.",
            cli_hint=f"sign in with `trayapp accounts signin {email or account_id}`",
            cause=Cause.NEVER_SIGNED_IN,
            created_at=now,
            updated_at=now,
        )
        return self._save(account)

    # -- keyring readiness ------------------------------------------------------------------

    async def retry_keyring(self) -> list[Account]:
        """Re-check accounts waiting for the keyring; those that can read it become signed in.

        Returns the accounts that became usable. Called on a timer after the keyring was
        found locked, and by the engine when the session resumes.
        """
        back: list[Account] = []
        for account in self.accounts():
            if account.state is not AccountState.KEYRING_NOT_READY or not account.secret_store:
                continue
            store = self.vault.store(account.secret_store)
            try:
                raw = await asyncio.to_thread(store.get, self.secret_key(account.id))
            except KeyringNotReady:
                continue
            provider = self._providers.get(account.id)
            if provider is not None:
                provider.reset()
            if raw:
                back.append(self._set_state(account.id, AccountState.SIGNED_IN, "", None))
            else:
                self._set_state(
                    account.id,
                    AccountState.NEEDS_SIGN_IN,
                    f"The saved sign-in of {account.label} is no longer in the keyring.",
                    Cause.SECRET_MISSING,
                    hint=signin_hint(account.label),
                )
        return back

    def _schedule_keyring_retry(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._keyring_retry is None or self._keyring_retry.done():
            self._keyring_retry = loop.create_task(self._keyring_retry_loop())

    async def _keyring_retry_loop(self) -> None:
        """Back off 5 s -> 5 min until no account waits for the keyring."""
        delay = 5.0
        while any(a.state is AccountState.KEYRING_NOT_READY for a in self.accounts()):
            await asyncio.sleep(delay)
            await self.retry_keyring()
            delay = min(delay * 2, 300.0)

    # -- status -----------------------------------------------------------------------------

    def secret_storage_status(self) -> dict[str, Any]:
        """For `accounts status` and the tray: where secrets go, and any warning to show.

        Blocks briefly (asks the keyring daemon whether it answers): call it off the loop.
        """
        available, why = self.vault.keyring.available()
        return {
            "mode": self.vault.mode,
            "keyring": self.vault.keyring.description,
            "keyring_available": available,
            "keyring_problem": why or None,
            "file": str(self.vault.file.path),
            "warning": self.vault.warning,
        }

    async def aclose(self) -> None:
        if self._keyring_retry is not None:
            self._keyring_retry.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._keyring_retry
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None


def _new_account_id() -> str:
    return "acct-" + pysecrets.token_hex(4)
