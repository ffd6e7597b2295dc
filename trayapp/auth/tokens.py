"""One token provider per account: valid access tokens, single-flight refresh, write-back, triage.

Why it is built the way it is:

* **google-auth does the OAuth part.** ``google.oauth2.credentials.Credentials.refresh`` knows
  the refresh grant, Google's error bodies, the re-auth (RAPT) dance and which statuses are
  worth retrying; re-implementing that would only drift from Google's behaviour. It is
  synchronous and sleeps between its own retries (3 attempts, ~1 s then ~2 s, on 5xx/429), so
  it runs in ``asyncio.to_thread`` over an httpx-backed transport
  (:class:`~trayapp.auth.transport.HttpxRequest`), never on the event loop.
* **One refresh in flight per account.** The first caller that finds the token stale starts a
  refresh *task*; every other caller awaits the same task through ``asyncio.shield``, so 50
  charms asking at once cause one request to the token endpoint, and a caller that is cancelled
  (its run timed out) does not cancel the refresh the others are waiting for.
* **Write-back before hand-out.** A new token (and a rotated refresh token) is stored through the
  account's :class:`~trayapp.auth.grants.GrantStore` (secret first, then the auth cell
  ``account:<id>:auth``), and only then is it returned. If either write fails, nobody gets the
  token. The cell must be writable: a provider whose auth cell is derived (read-only) refuses
  to be constructed, instead of discovering at the first refresh that its write-back goes
  nowhere.
* **What it needs from the accounts layer** is the small :class:`AccountBook` protocol: read the
  account, the OAuth client, report a problem, record the scopes Google says the grant has. It
  never imports :mod:`trayapp.auth.accounts` (no import circle) and calls nothing private.
* **Triage.** A refresh failure becomes exactly one of: the account needs sign-in (revoked or
  expired grant, re-auth policy), the client is misconfigured, a permission is missing, or a
  transient failure (server error, network) that changes nothing about the account and is
  retried later with backoff. The first three change the account's state once and raise
  :class:`~trayapp.core.errors.AuthRequired`; while the account is in such a state, callers get
  ``AuthRequired`` at once with no request to Google, until the user signs in again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from trayapp.auth.client_config import ClientConfig
from trayapp.auth.grants import GrantChanged, GrantStore, grant_changed_error
from trayapp.auth.models import (
    DEFAULT_TOKEN_LIFETIME_S,
    Account,
    AccountProblem,
    AccountState,
    Cause,
)
from trayapp.auth.secrets import KeyringNotReady
from trayapp.core.errors import (
    AuthRequired,
    NotFoundError,
    Offline,
    ServerError,
    SyncError,
    TrayappError,
)
from trayapp.core.redact import redact, register_secret

if TYPE_CHECKING:
    # Imported where used at run time: google.oauth2 (with its JWT and crypto modules) is
    # ~0.45 s on a cold start, which the tray would otherwise pay before showing its icon.
    from google.oauth2.credentials import Credentials

log = logging.getLogger(__name__)

# Refresh this long before the token expires. Larger than google-auth's own 225 s threshold so
# a token we hand out is always one google-auth would also call valid, with room for a run.
REFRESH_MARGIN = timedelta(minutes=5)
# invalid_grant this close to 7 days after consent is almost surely Google's 7-day limit for
# apps whose OAuth consent screen is in "Testing" status.
TESTING_EXPIRY = timedelta(days=7)
TESTING_EXPIRY_SLACK = timedelta(hours=12)

_REAUTH_ERRORS = ("invalid_rapt", "rapt_required")


# --- triage ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Triage:
    """What a refresh failure means. ``state`` is None for transient failures."""

    state: AccountState | None
    cause: Cause | None
    message: str  # what happened, one sentence: the account's ``reason``
    transient_kind: type[SyncError] | None = None  # Offline or ServerError when transient
    hint: str = ""  # how to fix it from the command line: the account's ``cli_hint``

    @property
    def cli_text(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


def signin_hint(account_label: str) -> str:
    """The CLI's how-to-fix for an account that must sign in again."""
    return f"sign in again with `trayapp accounts signin {account_label}` or from the tray menu"


def triage_refresh_error(
    exc: BaseException,
    *,
    status: int | None,
    account_label: str,
    granted_at: datetime | None,
    now: datetime,
) -> Triage:
    """Classify a failed refresh. Never includes a token in the message (the text is redacted)."""
    from google.auth import exceptions as ga_exceptions  # loaded with the first refresh

    again = signin_hint(account_label)
    if isinstance(exc, ga_exceptions.TransportError) and not isinstance(
        exc, ga_exceptions.RefreshError
    ):
        return Triage(
            None,
            None,
            f"cannot reach Google's token endpoint ({redact(str(exc))}); will retry",
            Offline,
        )
    data: dict[str, Any] = {}
    if (
        isinstance(exc, ga_exceptions.RefreshError)
        and len(exc.args) > 1
        and isinstance(exc.args[1], dict)
    ):
        data = exc.args[1]
    error = str(data.get("error") or "")
    subtype = str(data.get("error_subtype") or "")
    description = redact(str(data.get("error_description") or ""))[:200]
    text = str(exc.args[0]) if exc.args else ""

    if (error == "invalid_grant" and subtype in _REAUTH_ERRORS) or (
        not data and text.startswith("Reauthentication is needed")
    ):
        return Triage(
            AccountState.NEEDS_SIGN_IN,
            Cause.REAUTH_REQUIRED,
            f"Your Google Workspace administrator requires {account_label} to sign in again "
            "(re-authentication policy).",
            hint=again,
        )
    if error == "invalid_grant":
        age = now - granted_at if granted_at else None
        if age is not None and abs(age - TESTING_EXPIRY) <= TESTING_EXPIRY_SLACK:
            return Triage(
                AccountState.NEEDS_SIGN_IN,
                Cause.TESTING_EXPIRY,
                f"Google ended the sign-in of {account_label} after about 7 days, as it does "
                "for OAuth apps whose consent screen is in 'Testing' status.",
                hint=f"{again}; publish the app in Google Cloud Console to stop this",
            )
        return Triage(
            AccountState.NEEDS_SIGN_IN,
            Cause.INVALID_GRANT,
            f"Google no longer accepts the sign-in of {account_label} (access was revoked or "
            f"expired: {description or 'invalid_grant'}).",
            hint=again,
        )
    if error in ("invalid_client", "unauthorized_client"):
        return Triage(
            AccountState.CLIENT_MISCONFIGURED,
            Cause.INVALID_CLIENT,
            f"Google rejected the app's OAuth client ({error}: {description or 'no detail'}).",
            hint="import a valid Desktop-app client JSON with "
            f"`trayapp accounts client import FILE`, then {again}",
        )
    if error == "invalid_scope":
        # The refresh asks for no scopes (the grant's own come back), so this means Google
        # no longer honours the grant as stored: a new consent fixes it.
        return Triage(
            AccountState.NEEDS_SIGN_IN,
            Cause.INSUFFICIENT_SCOPE,
            f"{account_label} has not granted a permission Pattern Sync asks for "
            f"({description or 'invalid_scope'}).",
            hint=f"{again} and allow the requested access",
        )
    if status is None and not data and isinstance(exc, ga_exceptions.TransportError):
        return Triage(None, None, "cannot reach Google's token endpoint; will retry", Offline)
    shown = error or (f"HTTP {status}" if status else "unexpected response")
    return Triage(
        None,
        None,
        f"Google's token endpoint failed ({shown}{': ' + description if description else ''}); "
        "will retry",
        ServerError,
    )


# --- the provider ------------------------------------------------------------------------------


class AccountBook(Protocol):
    """What a token provider needs from the accounts layer (the AccountManager implements it)."""

    def get(self, account_id: str) -> Account:
        """The account as it stands (raises NotFoundError if it was removed)."""
        ...

    def client(self) -> ClientConfig:
        """The OAuth client (raises NotFoundError if none is configured)."""
        ...

    def report(self, account_id: str, problem: AccountProblem) -> Account:
        """Record that the account's grant cannot be used; returns the account as it now is."""
        ...

    def scopes_granted(self, account_id: str, scopes: Sequence[str]) -> Account:
        """Google says the grant holds exactly ``scopes`` now; returns the account."""
        ...


def _to_aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _naive_utc(value: datetime | None) -> datetime | None:
    # google-auth compares expiry with naive UTC datetimes.
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None)


@dataclass
class _Loaded:
    """The credentials of one grant generation, with what the write-back needs to know.

    google-auth's ``Credentials`` (and with them google-auth's JWT and crypto modules, about 60
    modules with cryptography) are made at the first refresh: a stored token that is still
    valid is used without them (issue 17: the demo's tray never loads them at start).
    """

    access_token: str | None = field(repr=False)
    refresh_token: str | None = field(repr=False)
    token_uri: str
    client_id: str
    client_secret: str = field(repr=False)
    expiry: datetime | None  # naive UTC, as google-auth keeps it
    generation: int
    granted_at: datetime | None
    _creds: Credentials | None = field(default=None, repr=False)

    @property
    def creds(self) -> Credentials:
        if self._creds is None:
            # token_uri is passed explicitly, never taken from google-auth's defaults: its
            # from_authorized_user_info() resets it to Google's URL, which would send an
            # emulator (or any non-Google issuer) account's refresh token to the internet. No
            # scopes: a refresh then asks for the grant as it is, and Google's answer says
            # which scopes that is (a scope the user took back is learnt here, not guessed).
            from google.oauth2.credentials import Credentials

            self._creds = Credentials(  # type: ignore[no-untyped-call]
                token=self.access_token,
                refresh_token=self.refresh_token,
                token_uri=self.token_uri,
                client_id=self.client_id,
                client_secret=self.client_secret,
                expiry=self.expiry,
            )
        return self._creds


class TokenProvider:
    """Access tokens for one account (implements ``trayapp.google.tokens.TokenSource``).

    Created by :meth:`AccountManager.provider`; one instance per account and event loop.
    ``book`` is the accounts layer (:class:`AccountBook`), ``grants`` the grant store.
    """

    def __init__(
        self,
        book: AccountBook,
        account_id: str,
        grants: GrantStore,
        *,
        now: Callable[[], datetime] | None = None,
        http_client_factory: Callable[[], httpx.Client] | None = None,
    ) -> None:
        self._book = book
        self.account_id = account_id
        self._grants = grants
        # Fails loudly (ReadOnlyCellError) if the account's auth cell is a derived cell.
        self._cell = grants.auth_cell(account_id)
        self._now = now or (lambda: datetime.now(UTC))
        self._http_client_factory = http_client_factory
        self._loaded: _Loaded | None = None
        self._token: str | None = None
        self._expiry: datetime | None = None
        self._inflight: asyncio.Task[str] | None = None
        # Held by every token fetch and by sign-in/sign-out while they rewrite the grant.
        self._grant_lock = asyncio.Lock()
        # Counters for status and tests: how many refresh grants this provider sent.
        self.refresh_count = 0

    # -- TokenSource ---------------------------------------------------------------------------

    async def access_token(self) -> str:
        """A token valid for at least :data:`REFRESH_MARGIN`; refreshes (once) if needed."""
        self._usable_account()
        if self._fresh():
            assert self._token is not None
            return self._token
        return await self._single_flight(force=False)

    async def refresh_after_rejection(self, rejected: str) -> str:
        """After an API answered 401 to ``rejected``: a different, freshly refreshed token.

        If another caller already replaced ``rejected``, that newer token is returned without a
        new refresh, so a burst of 401s from many charms still causes one refresh.
        """
        self._usable_account()
        if self._inflight is not None:
            token = await asyncio.shield(self._inflight)
            if token != rejected:
                return token
        if self._token is not None and self._token != rejected and self._fresh():
            return self._token
        return await self._single_flight(force=True, rejected=rejected)

    # -- more API ------------------------------------------------------------------------------

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold off token fetches while sign-in or sign-out rewrites the account's grant.

        Entering waits for an in-flight refresh to end (whatever its result); until the block
        exits, no refresh can start. So a refresh with the old grant can never write its token
        over the new grant's (or bring back a signed-out account's), even one that a charm
        starts while sign-in awaits the keyring. On exit the in-memory tokens are forgotten:
        callers that waited meanwhile load the new grant.
        """
        async with self._grant_lock:
            try:
                yield
            finally:
                self.reset()

    def reset(self) -> None:
        """Forget in-memory tokens (after a sign-in or sign-out); the next ask reloads them."""
        self._loaded = None
        self._token = None
        self._expiry = None

    @property
    def expiry(self) -> datetime | None:
        return self._expiry

    # -- internals -----------------------------------------------------------------------------

    def _usable_account(self) -> Account:
        """The account, read once per ask; AuthRequired (no request to Google) if its grant does
        not work. One in ``needs_permission`` gets tokens for the scopes it granted: only the
        charms that need the missing ones wait (the engine's permission check)."""
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
        return (
            self._token is not None
            and self._expiry is not None
            and self._now() < self._expiry - REFRESH_MARGIN
        )

    async def _single_flight(self, *, force: bool, rejected: str | None = None) -> str:
        task = self._inflight
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._obtain(force=force, rejected=rejected),
                name=f"token-refresh:{self.account_id}",
            )
            self._inflight = task
            task.add_done_callback(self._flight_done)
        return await asyncio.shield(task)

    def _flight_done(self, task: asyncio.Task[str]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have been cancelled meanwhile

    async def _obtain(self, *, force: bool, rejected: str | None) -> str:
        async with self._grant_lock:
            # The one read of the account for this refresh: everything below works from it.
            account = self._usable_account()
            loaded = await self._load(account)
            token = self._token
            # A forced refresh is skipped only when someone already replaced the rejected token.
            replaced = rejected is not None and token != rejected
            if token is not None and self._fresh() and (not force or replaced):
                return token
            return await self._refresh(account, loaded)

    async def _load(self, account: Account) -> _Loaded:
        """The account's credentials, read from the grant store once per provider."""
        if self._loaded is not None:
            return self._loaded
        try:
            client = self._book.client()
        except NotFoundError:
            raise self._fail(
                AccountState.CLIENT_MISCONFIGURED,
                "No OAuth client is configured.",
                Cause.INVALID_CLIENT,
                hint="import your Desktop-app client JSON with "
                "`trayapp accounts client import FILE` (or use demo mode)",
            ) from None
        if account.secret_store is None:
            raise self._fail(
                AccountState.NEEDS_SIGN_IN,
                f"There is no saved sign-in for {account.label}.",
                Cause.SECRET_MISSING,
                hint=f"sign in with `trayapp accounts signin {account.label}`",
            )
        try:
            stored = await self._grants.read(self.account_id, account.secret_store)
        except KeyringNotReady as exc:
            raise self._fail(
                AccountState.KEYRING_NOT_READY, str(exc), Cause.KEYRING_LOCKED
            ) from None
        except TrayappError as exc:
            raise self._fail(AccountState.NEEDS_SIGN_IN, str(exc), Cause.SECRET_MISSING) from None
        if stored is None:
            raise self._fail(
                AccountState.NEEDS_SIGN_IN,
                f"The saved sign-in of {account.label} is missing from the "
                f"{self._grants.describe(account.secret_store)}.",
                Cause.SECRET_MISSING,
                hint=signin_hint(account.label),
            )
        expiry = _to_aware(stored.expiry)
        self._loaded = _Loaded(
            access_token=stored.access_token,
            refresh_token=stored.refresh_token,
            token_uri=client.token_uri,
            client_id=client.client_id,
            client_secret=client.secret,
            expiry=_naive_utc(expiry),
            generation=stored.generation,
            granted_at=stored.granted_at or account.granted_at,
        )
        self._token = stored.access_token
        self._expiry = expiry if stored.access_token else None
        return self._loaded

    async def _refresh(self, account: Account, loaded: _Loaded) -> str:
        creds = loaded.creds
        client = (
            self._http_client_factory() if self._http_client_factory else None
        )  # None: the transport makes (and closes) its own
        # google-auth (and its crypto) loads with the first refresh, not at start (issue 17).
        from google.auth import exceptions as ga_exceptions

        from trayapp.auth.transport import HttpxRequest

        request = HttpxRequest(client)
        self.refresh_count += 1
        try:
            await asyncio.to_thread(creds.refresh, request)
        except (ga_exceptions.RefreshError, ga_exceptions.TransportError) as exc:
            verdict = triage_refresh_error(
                exc,
                status=request.last_status,
                account_label=account.label,
                granted_at=account.granted_at,
                now=self._now(),
            )
            log.warning(
                "token refresh for account %s failed after %d attempt(s): %s",
                self.account_id,
                len(request.statuses),
                verdict.message,
            )
            if verdict.state is not None:
                raise self._fail(
                    verdict.state, verdict.message, verdict.cause, hint=verdict.hint
                ) from None
            kind = verdict.transient_kind or ServerError
            raise kind(verdict.message) from None
        finally:
            request.close()
            if client is not None:
                client.close()
        granted = tuple(request.granted_scope.split()) if request.granted_scope else account.scopes
        token: str | None = creds.token
        if not token:
            raise ServerError("Google's token endpoint returned no access token; will retry")
        register_secret(token, creds.refresh_token)
        # Expiry on our clock: google-auth computed it from its own utcnow() + expires_in, and
        # leaves it None when the endpoint sent no expires_in.
        google_expiry = _to_aware(creds.expiry)
        if google_expiry is None:
            lifetime = timedelta(seconds=DEFAULT_TOKEN_LIFETIME_S)
        else:
            lifetime = google_expiry - datetime.now(UTC)
        expiry = self._now() + lifetime
        await self._write_back(account, loaded, token, expiry, granted)
        self._token = token
        self._expiry = expiry
        if set(granted) != set(account.scopes):
            # Google's answer says which scopes the grant holds; if a charm needs one it no
            # longer has, the account now needs permission (that charm waits for it).
            after = self._book.scopes_granted(self.account_id, granted)
            if not after.grant_works:
                raise AuthRequired(after.cli_text, account_id=self.account_id)
        return token

    async def _write_back(
        self,
        account: Account,
        loaded: _Loaded,
        token: str,
        expiry: datetime,
        scopes: tuple[str, ...],
    ) -> None:
        """Through the grant store (secret, then cell) before anyone sees the token."""
        assert account.secret_store is not None  # _load checked it
        try:
            meta = await self._grants.write(
                self.account_id,
                self._grants.vault.store(account.secret_store),
                refresh_token=loaded.creds.refresh_token,
                access_token=token,
                expiry=expiry,
                scopes=scopes,
                now=self._now(),
                granted_at=loaded.granted_at,
                expect_generation=loaded.generation,
            )
        except GrantChanged:
            # Signed in or out by another process while the refresh ran: its grant wins.
            self.reset()
            raise grant_changed_error(self._book.get(self.account_id)) from None
        except KeyringNotReady as exc:
            # The refreshed credentials stay in memory (self._loaded), so the next attempt after
            # the keyring is unlocked writes them instead of refreshing again.
            raise self._fail(
                AccountState.KEYRING_NOT_READY, str(exc), Cause.KEYRING_LOCKED
            ) from None
        loaded.generation = meta.generation
        log.info(
            "refreshed the access token of account %s (generation %d, valid until %s)",
            self.account_id,
            meta.generation,
            expiry.isoformat(timespec="seconds"),
        )

    def _fail(
        self, state: AccountState, message: str, cause: Cause | None, *, hint: str = ""
    ) -> AuthRequired:
        """Report the account's new state; the error carries the CLI's hint for run messages."""
        updated = self._book.report(self.account_id, AccountProblem(state, cause, message, hint))
        return AuthRequired(updated.cli_text or message, account_id=self.account_id)
