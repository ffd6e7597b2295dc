"""The one grant store: where an account's tokens and their metadata are read and written.

An account's *grant* is two things kept in step:

* the **secret** (:class:`~trayapp.auth.models.SecretPayload`: refresh token, access token and a
  generation number) in the keyring or the flagged 0600 file, under a key unique to the profile
  (:meth:`GrantStore.secret_key`), never in SQLite;
* the **auth cell** ``account:<id>:auth`` (:class:`~trayapp.auth.models.AuthMeta`: expiry,
  scopes, fingerprint, the same generation) in the store.

The *generation handshake*: every write bumps the generation, writes the secret first and the
cell second. A crash between the two leaves a secret one generation ahead of the cell, so the
stored access token is not trusted (the refresh token still is) and is refreshed. A writer that
read generation N and finds the cell at another number when it wants to write (another process
signed the account in or out meanwhile) gives up instead of overwriting that newer grant.

Sign-in (:meth:`~trayapp.auth.accounts.AccountManager.complete_sign_in`), refresh
(:class:`~trayapp.auth.tokens.TokenProvider`), sign-out and removal all go through here: there is
one way to write a grant and one way to read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets as pysecrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from trayapp.auth.models import Account, AuthMeta, SecretPayload, fingerprint
from trayapp.auth.secrets import SecretStore, SecretStoreKind, SecretVault
from trayapp.core.cells import Cell
from trayapp.core.errors import AuthRequired, NotFoundError, ReadOnlyCellError, ServerError
from trayapp.core.redact import register_secret
from trayapp.core.store import Store

log = logging.getLogger(__name__)

PROFILE_KEY_CELL = "app:auth_profile_key"


def auth_cell_name(account_id: str) -> str:
    return f"account:{account_id}:auth"


class GrantChanged(Exception):
    """The grant was rewritten (signed in or out elsewhere) since it was read: nothing written."""


def grant_changed_error(current: Account) -> ServerError | AuthRequired:
    """What a refresh that lost to another process's sign-in or sign-out (:class:`GrantChanged`)
    ends with: a retry when the account was signed in again, else sign-in required."""
    if current.grant_works:
        return ServerError(
            f"{current.label} was signed in again meanwhile; the sync will be retried"
        )
    return AuthRequired(
        current.cli_text or f"{current.label} is not signed in", account_id=current.id
    )


@dataclass(frozen=True)
class StoredGrant:
    """A grant as read back. Holds tokens: its repr hides them."""

    refresh_token: str | None = field(repr=False)  # None only for an API token
    # None when the secret and the cell disagree on the generation: refresh before use.
    access_token: str | None = field(repr=False)
    expiry: datetime | None
    generation: int
    granted_at: datetime | None


class GrantStore:
    """Reads and writes account grants (secret + auth cell) for one profile's store.

    Every secret-store call blocks (D-Bus), so the async methods run them in a thread. Raises
    :class:`~trayapp.auth.secrets.KeyringNotReady` when the keyring cannot be used now.
    """

    def __init__(self, store: Store, vault: SecretVault) -> None:
        self._store = store
        self.vault = vault
        self._profile_key_cell = store.cell(PROFILE_KEY_CELL, str | None, default=None)

    # -- names --------------------------------------------------------------------------------

    def secret_key(self, account_id: str) -> str:
        """The keyring entry name: unique per profile, so two profiles never share a secret."""
        key = self._profile_key_cell.get()
        if key is None:
            key = pysecrets.token_hex(8)
            self._profile_key_cell.set(key)
        return f"{key}:{account_id}"

    def auth_cell(self, account_id: str) -> Cell[AuthMeta]:
        """The account's auth cell. It must be writable: a derived cell here fails loudly."""
        name = auth_cell_name(account_id)
        with contextlib.suppress(NotFoundError):
            if not self._store.is_writable(name):
                # A write-back that cannot land would hand out tokens lost at the next start.
                raise ReadOnlyCellError(name)
        return self._store.cell(name, AuthMeta, default=AuthMeta())

    def meta(self, account_id: str) -> AuthMeta:
        return self.auth_cell(account_id).get()

    # -- reading ------------------------------------------------------------------------------

    async def read(
        self, account_id: str, kind: SecretStoreKind, *, token_only: bool = False
    ) -> StoredGrant | None:
        """The stored grant, or None if the secret store has none (or no refresh token).

        ``token_only``: an API-token account's grant (an access token that never expires and no
        refresh token); None if there is no token.
        """
        store = self.vault.store(kind)
        raw = await asyncio.to_thread(store.get, self.secret_key(account_id))
        payload = SecretPayload.model_validate_json(raw) if raw else None
        if payload is None or not (payload.access_token if token_only else payload.refresh_token):
            return None
        register_secret(payload.refresh_token, payload.access_token)
        meta = self.meta(account_id)
        trusted = payload.generation == meta.generation
        return StoredGrant(
            refresh_token=payload.refresh_token,
            # An API token is the whole grant: there is nothing to refresh it from, so a
            # generation mismatch (a crash between secret and cell) still trusts it.
            access_token=payload.access_token if trusted or token_only else None,
            expiry=meta.expiry if trusted else None,
            generation=meta.generation,
            granted_at=meta.granted_at,
        )

    async def revocable_token(self, account_id: str, kind: SecretStoreKind) -> str | None:
        """The token to revoke at sign-out: the refresh token, else the access token."""
        raw = await asyncio.to_thread(self.vault.store(kind).get, self.secret_key(account_id))
        payload = SecretPayload.model_validate_json(raw) if raw else None
        if payload is None:
            return None
        return payload.refresh_token or payload.access_token

    def describe(self, kind: SecretStoreKind) -> str:
        return self.vault.store(kind).description

    # -- writing ------------------------------------------------------------------------------

    def store_for_new_grant(self) -> SecretStore:
        """Where a new sign-in's secret goes (blocks; raises KeyringNotReady)."""
        return self.vault.store_for_new_secret()

    async def write(
        self,
        account_id: str,
        target: SecretStore,
        *,
        refresh_token: str | None,
        access_token: str,
        expiry: datetime | None,
        scopes: Sequence[str],
        now: datetime,
        granted_at: datetime | None,
        expect_generation: int | None = None,
        previous: SecretStoreKind | None = None,
        then: Callable[[AuthMeta], None] | None = None,
    ) -> AuthMeta:
        """Store a grant: the secret first, then (in one transaction) the cell and ``then``.

        ``expect_generation``: the generation the caller read; if the cell moved on since,
        :class:`GrantChanged` is raised and nothing is written. ``previous``: the store the
        account's secret was in before, cleared if it differs from ``target``. ``then`` runs
        inside the same store transaction as the cell write (the account record goes there).
        """
        register_secret(access_token, refresh_token)
        cell = self.auth_cell(account_id)
        current = cell.get()
        if expect_generation is not None and current.generation != expect_generation:
            raise GrantChanged(account_id)
        generation = current.generation + 1
        payload = SecretPayload(
            refresh_token=refresh_token, access_token=access_token, generation=generation
        )
        key = self.secret_key(account_id)
        await asyncio.to_thread(target.set, key, payload.model_dump_json())
        if previous is not None and previous is not target.kind:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.vault.store(previous).delete, key)
        meta = AuthMeta(
            generation=generation,
            expiry=expiry,
            scopes=tuple(dict.fromkeys(scopes)),
            fingerprint=fingerprint(access_token),
            refreshed_at=now,
            granted_at=granted_at,
            has_refresh_token=bool(refresh_token),
        )
        with self._store.transaction():
            cell.set(meta)
            if then is not None:
                then(meta)
        return meta

    async def delete(
        self,
        account_id: str,
        kind: SecretStoreKind | None,
        *,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Delete the secret, then bump the cell's generation (tokens forgotten) with ``then``."""
        if kind is not None:
            await asyncio.to_thread(self.vault.store(kind).delete, self.secret_key(account_id))
        cell = self.auth_cell(account_id)
        with self._store.transaction():
            cell.set(AuthMeta(generation=cell.get().generation + 1))
            if then is not None:
                then()

    def drop(self, account_id: str, kind: SecretStoreKind | None) -> None:
        """Forget everything of a removed account (best effort for the secret; blocks)."""
        if kind is not None:
            with contextlib.suppress(Exception):
                self.vault.store(kind).delete(self.secret_key(account_id))
