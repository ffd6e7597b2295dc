"""Tokens of accounts of non-Google services (a plugin's ``ApiToken`` or ``OAuth2Provider``).

The Google :class:`~trayapp.auth.tokens.TokenProvider` leans on google-auth; another provider
needs only the plain refresh grant of RFC 6749 section 6, done here with httpx. Everything
around it is the Google machinery's: the grant lives in the one grant store (secret in the
keyring or the flagged 0600 file, metadata in the writable auth cell ``account:<id>:auth``, the
generation handshake), a refreshed token is written back before anyone gets it, one refresh
runs at a time per account, and a refresh the provider refuses (``invalid_grant``) reports the
account as needing sign-in through the same book, so the tray, Settings, ``accounts list`` and
the parked charms behave exactly as for a Google account.

An API token never expires and cannot be refreshed: a 401 from the service means the user must
enter a new one (:meth:`ServiceTokenProvider.reject`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

from trayapp.auth.grants import GrantChanged, GrantStore, grant_changed_error
from trayapp.auth.models import (
    DEFAULT_TOKEN_LIFETIME_S,
    Account,
    AccountProblem,
    AccountState,
    Cause,
    fingerprint,
)
from trayapp.auth.secrets import KeyringNotReady
from trayapp.core.credentials import ApiToken, CredentialSpec, OAuth2Provider
from trayapp.core.errors import (
    AuthRequired,
    NotFoundError,
    Offline,
    RateLimited,
    ServerError,
    TrayappError,
)
from trayapp.core.redact import redact, register_secret

log = logging.getLogger(__name__)

REFRESH_MARGIN = timedelta(minutes=5)  # as for Google tokens: refresh ahead of expiry


def service_signin_hint(account: Account) -> str:
    """The CLI's how-to-fix for a service account that must sign in again."""
    what = "enter a new token" if account.credential_kind == "api_token" else "sign in again"
    return f"{what} with `trayapp accounts signin {account.label}` or from the tray menu"


class ServiceBook(Protocol):
    """What the provider needs from the accounts layer (AccountManager implements it)."""

    def get(self, account_id: str) -> Account: ...

    def report(self, account_id: str, problem: AccountProblem) -> Account: ...


class ServiceTokenProvider:
    """Tokens for one account of a non-Google service; the run's ``CredentialSource``.

    ``spec`` is the service's declaration (given by each run's pattern; the newest wins, so a
    plugin update that moves the token endpoint is followed). ``http`` makes the async client
    used for refreshes.
    """

    def __init__(
        self,
        book: ServiceBook,
        account_id: str,
        grants: GrantStore,
        spec: CredentialSpec,
        *,
        http: Callable[[], httpx.AsyncClient],
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._book = book
        self.account_id = account_id
        self._grants = grants
        self.spec = spec
        self._http = http
        self._now = now or (lambda: datetime.now(UTC))
        grants.auth_cell(account_id)  # fails loudly (ReadOnlyCellError) on a derived cell
        self._token: str | None = None
        self._refresh_token: str | None = None
        self._expiry: datetime | None = None
        self._generation = 0
        self._granted_at: datetime | None = None
        self._lock = asyncio.Lock()
        self.refresh_count = 0

    # -- CredentialSource ---------------------------------------------------------------------

    async def access_token(self) -> str:
        self._usable_account()
        if self._fresh():
            assert self._token is not None
            return self._token
        async with self._lock:
            return await self._obtain(force=False, rejected=None)

    async def refresh_after_rejection(self, rejected: str) -> str | None:
        if isinstance(self.spec, ApiToken):
            return None  # nothing to refresh from: the user must enter a new token
        self._usable_account()
        async with self._lock:
            return await self._obtain(force=True, rejected=rejected)

    def reject(self, message: str, token: str | None = None) -> None:
        """The service refused ``token``: the account needs sign-in (once; a later failure of
        an account that already needs the user changes nothing). A refusal of a token that is
        no longer the account's (a new one was entered, or refreshed, while the run was under
        way) changes nothing either: the auth cell's fingerprint says which token is current."""
        try:
            account = self._book.get(self.account_id)
        except NotFoundError:
            return
        if not account.grant_works:
            return
        current = self._grants.meta(self.account_id).fingerprint
        if token is not None and current is not None and fingerprint(token) != current:
            log.info(
                "%s refused an older token of account %s; the current one is kept",
                self.spec.title,
                self.account_id,
            )
            return
        self.reset()
        # The run's own words ("... refused the credentials (HTTP 401); ...") go to the log;
        # the account's reason says what the user must know, the same for every pattern.
        log.warning(
            "%s refused the token of account %s: %s",
            self.spec.title,
            self.account_id,
            redact(message),
        )
        what = "token" if isinstance(self.spec, ApiToken) else "sign-in"
        self._book.report(
            self.account_id,
            AccountProblem(
                AccountState.NEEDS_SIGN_IN,
                Cause.TOKEN_REJECTED,
                f"{self.spec.title} refused the {what} of {account.label}.",
                service_signin_hint(account),
            ),
        )

    # -- shared with the Google provider's callers ---------------------------------------------

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """No refresh runs while sign-in, a new token or sign-out rewrites the grant."""
        async with self._lock:
            try:
                yield
            finally:
                self.reset()

    def reset(self) -> None:
        self._token = None
        self._refresh_token = None
        self._expiry = None

    # -- internals -----------------------------------------------------------------------------

    def _usable_account(self) -> Account:
        try:
            account = self._book.get(self.account_id)
        except NotFoundError as exc:
            raise AuthRequired(str(exc), account_id=self.account_id) from None
        if not account.grant_works:
            raise AuthRequired(
                account.cli_text or f"{account.label} is not signed in",
                account_id=self.account_id,
            )
        return account

    def _fresh(self) -> bool:
        if self._token is None:
            return False
        if self._expiry is None:
            # An API token, or a provider that gave no expires_in (GitHub's OAuth tokens do not
            # expire): good until the service refuses it (401: refresh if possible, else
            # needs sign-in).
            return True
        return self._now() < self._expiry - REFRESH_MARGIN

    async def _obtain(self, *, force: bool, rejected: str | None) -> str:
        account = self._usable_account()
        if self._token is None:
            await self._load(account)
        token = self._token
        replaced = rejected is not None and token != rejected
        if token is not None and self._fresh() and (not force or replaced):
            return token
        if isinstance(self.spec, ApiToken):
            assert token is not None  # _load raised otherwise
            return token
        return await self._refresh(account, self.spec)

    async def _load(self, account: Account) -> None:
        if account.secret_store is None:
            raise self._fail(
                account,
                f"There is no saved token for {account.label}.",
                Cause.SECRET_MISSING,
            )
        token_only = isinstance(self.spec, ApiToken)
        try:
            stored = await self._grants.read(
                self.account_id, account.secret_store, token_only=token_only
            )
        except KeyringNotReady as exc:
            raise self._fail(
                account, str(exc), Cause.KEYRING_LOCKED, state=AccountState.KEYRING_NOT_READY
            ) from None
        except TrayappError as exc:
            raise self._fail(account, str(exc), Cause.SECRET_MISSING) from None
        if stored is None:
            raise self._fail(
                account,
                f"The saved token of {account.label} is missing from the "
                f"{self._grants.describe(account.secret_store)}.",
                Cause.SECRET_MISSING,
            )
        self._token = stored.access_token
        self._refresh_token = stored.refresh_token
        self._expiry = stored.expiry if stored.access_token else None
        self._generation = stored.generation
        self._granted_at = stored.granted_at or account.granted_at

    async def _refresh(self, account: Account, spec: OAuth2Provider) -> str:
        if not self._refresh_token:
            raise self._fail(
                account,
                f"{spec.title} gave no refresh token for {account.label}.",
                Cause.SECRET_MISSING,
            )
        form = {
            "grant_type": "refresh_token",
            "refresh_token": self._refresh_token,
            "client_id": spec.client_id,
        }
        if spec.client_secret:
            form["client_secret"] = spec.client_secret
        self.refresh_count += 1
        try:
            response = await self._http().post(
                spec.token_url, data=form, headers={"Accept": "application/json"}, timeout=30
            )
        except httpx.TransportError as exc:
            raise Offline(
                f"cannot reach {spec.title}'s token endpoint ({type(exc).__name__}); will retry"
            ) from None
        body = _json(response)
        if response.status_code == 200 and isinstance(body.get("access_token"), str):
            return await self._store(account, body)
        error = str(body.get("error") or "")
        detail = redact(str(body.get("error_description") or ""))[:200]
        log.warning(
            "token refresh for account %s (%s) failed: HTTP %d %s",
            self.account_id,
            spec.service,
            response.status_code,
            error,
        )
        if response.status_code == 429:
            raise RateLimited(f"{spec.title}'s token endpoint is limiting requests (HTTP 429)")
        if response.status_code >= 500:
            raise ServerError(
                f"{spec.title}'s token endpoint failed (HTTP {response.status_code}); will retry"
            )
        if error in ("invalid_client", "unauthorized_client"):
            raise self._fail(
                account,
                f"{spec.title} rejected the plugin's OAuth client ({error}); update the plugin "
                "or ask its author",
                Cause.INVALID_CLIENT,
            )
        raise self._fail(
            account,
            f"{spec.title} no longer accepts the sign-in of {account.label} (access was revoked "
            f"or expired: {detail or error or f'HTTP {response.status_code}'}).",
            Cause.INVALID_GRANT,
        )

    async def _store(self, account: Account, body: dict[str, Any]) -> str:
        token = str(body["access_token"])
        rotated = body.get("refresh_token")
        refresh_token = str(rotated) if isinstance(rotated, str) and rotated else None
        refresh_token = refresh_token or self._refresh_token
        register_secret(token, refresh_token)
        try:
            lifetime = float(body.get("expires_in", DEFAULT_TOKEN_LIFETIME_S))
        except (TypeError, ValueError):
            lifetime = DEFAULT_TOKEN_LIFETIME_S
        expiry = self._now() + timedelta(seconds=lifetime)
        assert account.secret_store is not None
        try:
            meta = await self._grants.write(
                self.account_id,
                self._grants.vault.store(account.secret_store),
                refresh_token=refresh_token,
                access_token=token,
                expiry=expiry,
                scopes=self._grants.meta(self.account_id).scopes,
                now=self._now(),
                granted_at=self._granted_at,
                expect_generation=self._generation,
            )
        except GrantChanged:
            self.reset()
            raise grant_changed_error(self._book.get(self.account_id)) from None
        except KeyringNotReady as exc:
            raise self._fail(
                account, str(exc), Cause.KEYRING_LOCKED, state=AccountState.KEYRING_NOT_READY
            ) from None
        self._token = token
        self._refresh_token = refresh_token
        self._expiry = expiry
        self._generation = meta.generation
        log.info(
            "refreshed the access token of account %s (%s; generation %d, valid until %s)",
            self.account_id,
            self.spec.service,
            meta.generation,
            expiry.isoformat(timespec="seconds"),
        )
        return token

    def _fail(
        self,
        account: Account,
        message: str,
        cause: Cause,
        *,
        state: AccountState = AccountState.NEEDS_SIGN_IN,
    ) -> AuthRequired:
        hint = service_signin_hint(account) if state is AccountState.NEEDS_SIGN_IN else ""
        updated = self._book.report(self.account_id, AccountProblem(state, cause, message, hint))
        return AuthRequired(updated.cli_text or message, account_id=self.account_id)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
