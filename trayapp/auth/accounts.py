"""Google accounts of a profile: records, states, sign-in/out, and their token providers.

An account is a first-class record (``account:<id>:record``) with its email, granted scopes and
grant state. Its tokens and their metadata belong to the grant store
(:mod:`trayapp.auth.grants`): secret in the keyring (or flagged 0600 file), metadata in the
writable auth cell ``account:<id>:auth``; never in the SQLite file.

**Scopes follow the charms.** The engine tells the manager which scopes each account's charms
need (:meth:`AccountManager.set_scope_needs`). ``needs_permission`` is never stored: an account
whose grant works but lacks a scope its charms need *is* in ``needs_permission``, computed each
time the account is read from the facts (granted scopes, needed scopes). Every sign-in asks for
the union; :meth:`AccountManager.grant_permission` asks for the missing part with incremental
consent (``include_granted_scopes=true``). A 403 insufficient-scope answer from Google corrects
the granted scopes (:meth:`AccountManager.scopes_refused`), which leads to the same state.

State changes are *published*: :meth:`AccountManager.subscribe` callbacks run after the change
is committed (and when the charms' needs change what an account's state is), so the engine can
unpark an account's charms the moment it is usable again and the tray can show "needs sign-in"
or "needs permission" the moment it happens.

Failures never delete anything: an account whose grant was revoked keeps its id, email and
charms, and only changes state. Only :meth:`AccountManager.remove` (an explicit user action)
deletes an account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets as pysecrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from trayapp.auth.client_config import ClientConfig, ClientConfigRepo
from trayapp.auth.grants import GrantStore, auth_cell_name
from trayapp.auth.models import (
    Account,
    AccountProblem,
    AccountState,
    AuthMeta,
    Cause,
    describe_scopes,
)
from trayapp.auth.secrets import KeyringNotReady, SecretStoreKind, SecretVault
from trayapp.core.cells import Cell
from trayapp.core.credentials import ApiToken, Credential, CredentialSpec, OAuth2Provider
from trayapp.core.errors import AuthRequired, ConfigError, ConfigProblem, NotFoundError
from trayapp.core.httptransport import LazyTLSTransport
from trayapp.core.redact import redact, register_secret
from trayapp.core.store import Store

if TYPE_CHECKING:
    # Imported where used: the sign-in flow (browser, loopback listener), the token refresh
    # and the service tokens load with the first sign-in or the first run of an account's
    # charm, not with the account list a tray without accounts shows at start (issue 17).
    from trayapp.auth.service_tokens import ServiceTokenProvider
    from trayapp.auth.signin import Grant
    from trayapp.auth.tokens import TokenProvider

__all__ = [
    "Account",
    "AccountManager",
    "AccountState",
    "AuthMeta",
    "Cause",
    "SignOutResult",
    "auth_cell_name",
]

log = logging.getLogger(__name__)

ACCOUNT_PREFIX = "account:"

AccountListener = Callable[[Account], None]
ScopeNeeds = Callable[[str], Iterable[str]]
"""``needs(account_id)`` -> the OAuth scopes the account's charms need."""
ServiceSpecs = Callable[[], Mapping[str, CredentialSpec]]
"""``services()`` -> service id -> the credential the installed patterns declare for it."""


def record_cell_name(account_id: str) -> str:
    return f"account:{account_id}:record"


@dataclass(frozen=True, slots=True)
class SignOutResult:
    account: Account
    revoked: bool  # the provider confirmed the revocation
    message: str  # user-facing summary


@dataclass(frozen=True)
class _Pending:
    grant: Grant
    account_id: str | None


class AccountManager:
    """Accounts of one profile. Create one per Store, on the thread that uses the Store.

    ``vault`` defaults to the profile's keyring/file vault; ``now`` is the clock (tests pass a
    fake one); ``http`` is the async client used for sign-in, identity and revocation;
    ``scope_needs`` says which scopes each account's charms need (see :meth:`set_scope_needs`).
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
        scope_needs: ScopeNeeds | None = None,
        services: ServiceSpecs | None = None,
    ) -> None:
        self.store = store
        self.profile_dir = Path(profile_dir)
        self.vault = vault or SecretVault(self.profile_dir)
        self.grants = GrantStore(store, self.vault)
        self.clients = ClientConfigRepo(store)
        self._now = now or (lambda: datetime.now(UTC))
        self._http = http
        self._owns_http = http is None
        self._sync_http_factory = sync_http_factory
        self._scope_needs: ScopeNeeds = scope_needs or (lambda _account_id: ())
        self._listeners: list[AccountListener] = []
        self._providers: dict[str, TokenProvider] = {}
        self._services: ServiceSpecs = services or dict
        self._service_providers: dict[str, ServiceTokenProvider] = {}
        self._pending: dict[str, _Pending] = {}
        # What each account looked like when last published: a change of the charms' needs
        # publishes only the accounts whose computed state it changed.
        self._published: dict[str, tuple[AccountState, tuple[str, ...]]] = {}
        self._keyring_retry: asyncio.Task[None] | None = None

    # -- lookup ------------------------------------------------------------------------------

    def _record(self, account_id: str) -> Cell[Account | None]:
        return self.store.cell(record_cell_name(account_id), Account | None, default=None)

    def auth_cell(self, account_id: str) -> Cell[AuthMeta]:
        """The account's writable auth cell (token metadata only)."""
        return self.grants.auth_cell(account_id)

    def secret_key(self, account_id: str) -> str:
        """The keyring entry name of the account's secret (see GrantStore.secret_key)."""
        return self.grants.secret_key(account_id)

    def _ids(self) -> list[str]:
        return [
            name[len(ACCOUNT_PREFIX) : -len(":record")]
            for name in self.store.cell_names(ACCOUNT_PREFIX)
            if name.endswith(":record")
        ]

    def accounts(self) -> list[Account]:
        found = [a for a in (self._record(i).get() for i in self._ids()) if a is not None]
        return [self._view(a) for a in sorted(found, key=lambda a: (a.created_at, a.id))]

    def _stored(self, account_id: str) -> Account:
        account = self._record(account_id).get()
        if account is None:
            raise NotFoundError(
                f"no account {account_id!r}; see `trayapp accounts list` for the accounts"
            )
        return account

    def get(self, account_id: str) -> Account:
        """The account as it stands, ``needs_permission`` computed from the charms' needs."""
        return self._view(self._stored(account_id))

    def find(self, id_or_email: str) -> Account:
        """An account by id, (case-insensitive) email, or a non-Google account's name."""
        with contextlib.suppress(NotFoundError):
            return self.get(id_or_email)
        for account in self.accounts():
            if account.email and account.email.lower() == id_or_email.lower():
                return account
        for account in self.accounts():  # another service's account by its name
            if not account.is_google and account.label.lower() == id_or_email.lower():
                return account
        raise NotFoundError(
            f"no account {id_or_email!r}; see `trayapp accounts list`, or add one with "
            "`trayapp accounts add`"
        )

    def client(self) -> ClientConfig:
        """The OAuth client (raises NotFoundError with how to import one)."""
        return self.clients.require()

    async def reload(self, account_id: str) -> Account | None:
        """Another process (``trayapp accounts ...``) changed this account: catch up with it.

        The record and token metadata are read from the store each time, but the account's
        provider keeps tokens in memory and nobody here heard of the change. So: forget those
        tokens (the next run loads the new grant from the secret store), then publish the
        record as it now is, which unparks the account's charms if it is usable again. Returns
        None (and publishes nothing) for an account that no longer exists.
        """
        provider = self._providers.get(account_id) or self._service_providers.get(account_id)
        if provider is not None:
            async with provider.exclusive():  # waits out a refresh with the old grant
                pass
        stored = self._record(account_id).get()
        if stored is None:
            self._providers.pop(account_id, None)
            self._service_providers.pop(account_id, None)
            self._published.pop(account_id, None)
            return None
        account = self._view(stored)
        log.info("account %s changed in another process; now %s", account_id, account.state.value)
        self._publish(account)
        return account

    def account_usable(self, account_id: str) -> bool:
        try:
            return self.get(account_id).usable
        except NotFoundError:
            return False

    # -- scopes follow the charms --------------------------------------------------------------

    def set_scope_needs(self, needs: ScopeNeeds) -> None:
        """Where the scopes each account's charms need come from (the engine's charms).

        Call :meth:`scope_needs_changed` whenever the charms change (the wiring does it on the
        engine's ``CharmsChanged``).
        """
        self._scope_needs = needs
        self.scope_needs_changed()

    def required_scopes(self, account_id: str) -> tuple[str, ...]:
        """The scopes the account's charms need, in a stable order."""
        try:
            return tuple(dict.fromkeys(self._scope_needs(account_id)))
        except Exception:  # a broken source must not take the accounts down with it
            log.exception("could not tell which scopes the charms of %s need", account_id)
            return ()

    def missing_scopes(self, account_id: str) -> tuple[str, ...]:
        stored = self._stored(account_id)
        return tuple(s for s in self.required_scopes(account_id) if s not in stored.scopes)

    def _view(self, stored: Account) -> Account:
        """The stored grant state, with ``needs_permission`` computed on top of it."""
        state = stored.state
        if state is AccountState.NEEDS_PERMISSION:
            state = AccountState.SIGNED_IN  # stored by older versions: the facts decide now
        if state is not AccountState.SIGNED_IN:
            return stored if stored.state is state else stored.model_copy(update={"state": state})
        missing = tuple(s for s in self.required_scopes(stored.id) if s not in stored.scopes)
        if not missing:
            if stored.state is state and not stored.missing_scopes:
                return stored
            return stored.model_copy(
                update={
                    "state": state,
                    "missing_scopes": (),
                    "reason": "",
                    "cli_hint": "",
                    "cause": None,
                }
            )
        return stored.model_copy(
            update={
                "state": AccountState.NEEDS_PERMISSION,
                "missing_scopes": missing,
                "cause": Cause.INSUFFICIENT_SCOPE,
                "reason": f"A charm needs permission to {describe_scopes(missing)}, which "
                f"{stored.label} has not granted yet.",
                "cli_hint": f"allow it with `trayapp accounts signin {stored.label}` or from "
                "the tray menu",
            }
        )

    def charm_permission_missing(self, account_id: str, scopes: Sequence[str]) -> str:
        """For a charm that needs ``scopes``: "" if the account's grant holds them, else one
        sentence saying which permission it waits for. "" too for an account with a problem
        of its own (signed out, needs sign-in...): its token provider says so, for every charm.
        """
        try:
            stored = self._stored(account_id)
        except NotFoundError:
            return ""
        if not self._view(stored).grant_works:
            return ""
        missing = tuple(s for s in dict.fromkeys(scopes) if s not in stored.scopes)
        if not missing:
            return ""
        return (
            f"This charm waits for permission to {describe_scopes(missing)}, which "
            f"{stored.label} has not granted yet; allow it from the tray menu or with "
            f"`trayapp accounts signin {stored.label}`."
        )

    def scope_needs_changed(self) -> list[Account]:
        """The charms changed: publish every account whose computed state changed with them."""
        changed: list[Account] = []
        for account in self.accounts():
            key = (account.state, account.missing_scopes)
            if self._published.get(account.id, key) != key:
                self._publish(account)
                changed.append(account)
            else:
                self._published[account.id] = key
        return changed

    def scopes_granted(self, account_id: str, scopes: Sequence[str]) -> Account:
        """Google says the grant holds exactly ``scopes`` (a token answer): record that fact."""
        stored = self._stored(account_id)
        granted = tuple(dict.fromkeys(scopes))
        if set(granted) == set(stored.scopes):
            return self._view(stored)
        log.info("account %s: Google reports the granted scopes changed", account_id)
        return self._save(stored.model_copy(update={"scopes": granted, "updated_at": self._now()}))

    def scopes_refused(self, account_id: str, accepted: Sequence[str]) -> Account:
        """Google answered 403 insufficient scope to a call that accepts any of ``accepted``.

        The token holds none of them, whatever the record said: they are removed from the
        granted scopes, so an account whose charms need one is in ``needs_permission``.
        """
        stored = self._stored(account_id)
        granted = tuple(s for s in stored.scopes if s not in set(accepted))
        if granted == stored.scopes:
            return self._view(stored)
        log.info("account %s: Google refused a call for missing scopes", account_id)
        updated = self._save(
            stored.model_copy(update={"scopes": granted, "updated_at": self._now()})
        )
        provider = self._providers.get(account_id)
        if provider is not None:
            provider.reset()  # the next token comes with the grant as it now is
        return updated

    # -- publishing ----------------------------------------------------------------------------

    def subscribe(self, listener: AccountListener) -> Callable[[], None]:
        """Call ``listener(account)`` after every committed change of any account.

        That is: a record change, or a charm change that changed an account's computed state
        (``needs_permission`` came or went). The engine uses it to unpark charms
        (``account.usable`` turned True) and to publish ``AccountChanged``. A failing listener
        is logged and never breaks the others.
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _publish(self, account: Account) -> None:
        self._published[account.id] = (account.state, account.missing_scopes)
        for listener in list(self._listeners):
            try:
                listener(account)
            except Exception:
                log.exception("account listener failed for %s", account.id)

    def _save(self, stored: Account) -> Account:
        self._record(stored.id).set(stored)
        view = self._view(stored)
        self._publish(view)
        return view

    def report(self, account_id: str, problem: AccountProblem) -> Account:
        """Record that the account's grant cannot be used (or works again); publish it.

        Only the grant state, reason and cause change, never its email or anything else. An
        account signed out on purpose stays signed out whatever a late failure says.
        """
        current = self._stored(account_id)
        state = problem.state
        if state is AccountState.NEEDS_PERMISSION:
            raise ValueError("needs_permission is computed from the charms' needs, not reported")
        if current.state is AccountState.SIGNED_OUT and state is not AccountState.SIGNED_IN:
            return self._view(current)
        reason = redact(problem.message) if state is not AccountState.SIGNED_IN else ""
        hint = problem.hint if state is not AccountState.SIGNED_IN else ""
        if (
            current.state is state
            and current.reason == reason
            and current.cli_hint == hint
            and current.cause == problem.cause
        ):
            return self._view(current)
        log.info(
            "account %s is now %s%s",
            account_id,
            state.value,
            f" ({problem.cause.value})" if problem.cause else "",
        )
        updated = self._save(
            current.model_copy(
                update={
                    "state": state,
                    "reason": reason,
                    "cli_hint": hint,
                    "cause": problem.cause,
                    "missing_scopes": (),
                    "updated_at": self._now(),
                }
            )
        )
        if state is AccountState.KEYRING_NOT_READY:
            self._schedule_keyring_retry()
        return updated

    # -- tokens -------------------------------------------------------------------------------

    def provider(self, account_id: str) -> TokenProvider:
        """The account's token provider (one per account; implements TokenSource)."""
        provider = self._providers.get(account_id)
        if provider is None:
            from trayapp.auth.tokens import TokenProvider

            self._stored(account_id)
            provider = TokenProvider(
                self,
                account_id,
                self.grants,
                now=self._now,
                http_client_factory=self._sync_http_factory,
            )
            self._providers[account_id] = provider
        return provider

    # -- client -------------------------------------------------------------------------------

    def import_client(self, config: ClientConfig) -> list[Account]:
        """Store a new OAuth client; accounts of another client must sign in again.

        A grant belongs to the client that obtained it: a refresh token of client A is
        ``invalid_client``/``invalid_grant`` for client B. Rather than let each account fail at
        its next refresh, they are marked now with the reason, and the ones that were
        ``client_misconfigured`` because of the old client become signable again.
        """
        from trayapp.auth.tokens import signin_hint

        self.clients.set(config)
        changed: list[Account] = []
        for account in self.accounts():
            if (
                account.client_id
                and account.client_id != config.client_id
                and account.state is not AccountState.SIGNED_OUT
            ):
                changed.append(
                    self.report(
                        account.id,
                        AccountProblem(
                            AccountState.NEEDS_SIGN_IN,
                            Cause.INVALID_CLIENT,
                            f"The app's OAuth client changed since {account.label} signed in.",
                            signin_hint(account.label),
                        ),
                    )
                )
        for provider in self._providers.values():
            provider.reset()
        return changed

    def remove_client(self) -> list[Account]:
        """Forget the OAuth client. Accounts keep their records; each must sign in again
        once a client is imported (their grants belong to the removed client)."""
        self.clients.clear()
        changed: list[Account] = []
        for account in self.accounts():
            if account.client_id and account.state is not AccountState.SIGNED_OUT:
                changed.append(
                    self.report(
                        account.id,
                        AccountProblem(
                            AccountState.CLIENT_MISCONFIGURED,
                            Cause.INVALID_CLIENT,
                            "No OAuth client is configured.",
                            "import your Desktop-app client JSON with "
                            "`trayapp accounts client import FILE`",
                        ),
                    )
                )
        for provider in self._providers.values():
            provider.reset()
        return changed

    # -- sign-in --------------------------------------------------------------------------------

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=30, follow_redirects=False, transport=LazyTLSTransport()
            )
        return self._http

    def sign_in_scopes(self, account_id: str | None, extra: Sequence[str] = ()) -> tuple[str, ...]:
        """What a sign-in asks for: identity, the scopes granted so far, the union of what the
        account's charms need, and ``extra`` (a charm being added, or ``--scope``)."""
        granted: tuple[str, ...] = ()
        needed: tuple[str, ...] = ()
        if account_id is not None:
            granted = self._stored(account_id).scopes
            needed = self.required_scopes(account_id)
        from trayapp.auth.signin import OPENID_SCOPES

        return tuple(dict.fromkeys((*OPENID_SCOPES, *granted, *needed, *extra)))

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

        Asks for :meth:`sign_in_scopes`: the union of what the account's charms need, what it
        had, and ``scopes``. One consent page per sign-in: ``prompt=consent`` always, so Google
        always returns a refresh token and no second round is ever needed. Re-signing an
        existing account passes its email as ``login_hint`` and rejects a different account;
        an account with scopes asks with ``include_granted_scopes=true`` (incremental
        consent). A new account whose email is already in the profile signs that account in
        again rather than creating a duplicate. The browser shows "Signed in" only once the
        grant is stored; if the keyring cannot store it, :class:`KeyringUnavailable` is raised
        with the grant kept for :meth:`store_pending_grant` (no second consent page).
        """
        from trayapp.auth.signin import SignInError, run_sign_in

        existing = self.get(account_id) if account_id else None
        if existing is not None and not existing.is_google:
            return await self.sign_in_service(
                existing.service,
                account_id=existing.id,
                opener=opener,
                on_url=on_url,
                timeout=timeout,
            )
        client = self.clients.require()
        wanted = self.sign_in_scopes(account_id, scopes)
        kwargs: dict[str, Any] = {"opener": opener, "on_url": on_url}
        if timeout is not None:
            kwargs["timeout"] = timeout
        stored: list[Account] = []

        async def keep(grant: Grant) -> None:
            if grant.refresh_token is None:
                raise SignInError(
                    "Google did not return a refresh token, so Pattern Sync could not stay "
                    "signed in; remove Pattern Sync's access at "
                    "https://myaccount.google.com/permissions and sign in again"
                )
            target = existing.id if existing else self._account_for_email(grant.email)
            stored.append(await self._keep_or_hold(grant, target))

        await run_sign_in(
            client,
            wanted,
            http=self._http_client(),
            expected_email=existing.email if existing else None,
            force_consent=True,
            include_granted_scopes=bool(existing and existing.scopes),
            keep=keep,
            **kwargs,
        )
        return stored[-1]

    async def grant_permission(
        self,
        account_id: str,
        *,
        opener: Callable[[str], Any] | None = None,
        on_url: Callable[[str], None] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the user's time in the browser
    ) -> Account:
        """Incremental consent for what the account's charms need and it has not granted.

        The sign-in asks for the missing scopes with ``include_granted_scopes=true``, so the
        new grant holds the old scopes and the new ones; on success the account is usable and
        its parked charms run. For an account that is not in ``needs_permission`` it is a
        plain :meth:`sign_in` (which asks for the same union).
        """
        return await self.sign_in(account_id, opener=opener, on_url=on_url, timeout=timeout)

    def _account_for_email(self, email: str) -> str | None:
        for account in self.accounts():
            if account.email and account.email.lower() == email.lower():
                return account.id
        return None

    async def _keep_or_hold(self, grant: Grant, account_id: str | None) -> Account:
        """Store the grant; if the keyring cannot, keep it in memory and ask the user."""
        from trayapp.auth.signin import KeyringUnavailable

        try:
            return await self.complete_sign_in(grant, account_id)
        except KeyringNotReady as exc:
            pending_id = pysecrets.token_urlsafe(12)
            self._pending[pending_id] = _Pending(grant, account_id)
            log.warning("the keyring could not store the sign-in of %s: %s", grant.email, exc)
            raise KeyringUnavailable(
                f"Signed in as {grant.email}, but the system keyring could not store the "
                "sign-in. Unlock or create the keyring and try again, or keep the sign-in in a "
                "file only you can read.",
                pending_id=pending_id,
                email=grant.email,
                detail=exc.detail,
            ) from None

    async def store_pending_grant(self, pending_id: str, *, use_file: bool = False) -> Account:
        """Finish a sign-in whose grant the keyring could not store (see KeyringUnavailable).

        ``use_file=False``: try the keyring again (the user unlocked or created it); raises
        :class:`KeyringUnavailable` again (same ``pending_id``) if it still cannot. ``True``:
        keep the tokens in the profile's 0600 file; ``vault.warning`` then says so. Either way
        no new consent page is needed.
        """
        pending = self._pending.get(pending_id)
        if pending is None:
            raise NotFoundError(
                "that sign-in is no longer waiting (it was finished, cancelled, or the app "
                "restarted); sign in again"
            )
        from trayapp.auth.signin import KeyringUnavailable

        target = SecretStoreKind.FILE if use_file else None
        try:
            account = await self.complete_sign_in(
                pending.grant, pending.account_id, secret_store=target
            )
        except KeyringNotReady as exc:
            raise KeyringUnavailable(
                f"The system keyring still cannot store the sign-in of {pending.grant.email}. "
                "Unlock or create the keyring and try again, or keep the sign-in in a file "
                "only you can read.",
                pending_id=pending_id,
                email=pending.grant.email,
                detail=exc.detail,
            ) from None
        del self._pending[pending_id]
        return account

    def discard_pending_grant(self, pending_id: str) -> None:
        """The user gave up on a sign-in waiting for storage: forget its tokens."""
        self._pending.pop(pending_id, None)

    async def complete_sign_in(
        self,
        grant: Grant,
        account_id: str | None = None,
        *,
        secret_store: SecretStoreKind | None = None,
    ) -> Account:
        """Persist a grant through the grant store: secret first, then metadata and record
        (one transaction); publish; unpark.

        ``secret_store`` forces where the secret goes (the user chose the file); default: the
        vault's choice. Raises KeyringNotReady (the account is left as it was) if the keyring
        cannot store it.
        """
        client = self.clients.require()
        register_secret(grant.access_token, grant.refresh_token)
        if account_id is None:
            return await self._complete_sign_in(client, grant, None, secret_store)
        # No refresh with the old grant may run (and write back) while the new one is stored.
        async with self.provider(account_id).exclusive():
            return await self._complete_sign_in(client, grant, account_id, secret_store)

    async def _complete_sign_in(
        self,
        client: ClientConfig,
        grant: Grant,
        account_id: str | None,
        secret_store: SecretStoreKind | None,
    ) -> Account:
        now = self._now()
        if account_id is None:
            account = Account(
                id=_new_account_id(),
                email=grant.email,
                state=AccountState.NEEDS_SIGN_IN,
                cause=Cause.NEVER_SIGNED_IN,
                created_at=now,
                updated_at=now,
            )
        else:
            account = self._stored(account_id)
        if secret_store is not None:
            target = self.vault.store(secret_store)
        else:
            target = await asyncio.to_thread(self.grants.store_for_new_grant)
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
                "secret_store": target.kind,
                "client_id": client.client_id,
                "granted_at": now,
                "updated_at": now,
            }
        )
        record = self._record(signed_in.id)
        await self.grants.write(
            signed_in.id,
            target,
            refresh_token=grant.refresh_token,
            access_token=grant.access_token,
            expiry=now + timedelta(seconds=grant.expires_in),
            scopes=scopes,
            now=now,
            granted_at=now,
            previous=account.secret_store,
            then=lambda _meta: record.set(signed_in),
        )
        log.info("account %s signed in as %s", signed_in.id, grant.email)
        view = self._view(signed_in)
        self._publish(view)
        return view

    # -- accounts of other services (a plugin's ApiToken / OAuth2Provider) ----------------------

    def set_services(self, services: ServiceSpecs) -> None:
        """Where the services' declarations come from (the installed patterns' credentials)."""
        self._services = services

    def service_specs(self) -> dict[str, CredentialSpec]:
        try:
            return dict(self._services())
        except Exception:  # a broken registry must not take the accounts down with it
            log.exception("could not list the services the installed patterns declare")
            return {}

    def service_spec(self, service: str) -> CredentialSpec:
        """The declaration of ``service``; NotFoundError naming the installed ones if none."""
        specs = self.service_specs()
        spec = specs.get(service)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            raise NotFoundError(
                f"no installed pattern uses the service {service!r} (services of the installed "
                f"patterns: {known}); install the plugin that provides it"
            )
        return spec

    def service_provider(
        self, account_id: str, spec: CredentialSpec | None = None
    ) -> ServiceTokenProvider:
        """The token provider of a non-Google account (one per account)."""
        provider = self._service_providers.get(account_id)
        if provider is None:
            from trayapp.auth.service_tokens import ServiceTokenProvider

            account = self._stored(account_id)
            spec = spec or self.service_spec(account.service)
            provider = ServiceTokenProvider(
                self, account_id, self.grants, spec, http=self._http_client, now=self._now
            )
            self._service_providers[account_id] = provider
        elif spec is not None:
            provider.spec = spec  # the pattern's (newest) declaration wins
        return provider

    def _holder(self, account_id: str) -> TokenProvider | ServiceTokenProvider:
        """The provider whose ``exclusive()`` guards this account's grant."""
        account = self._stored(account_id)
        if account.is_google:
            return self.provider(account_id)
        if account_id in self._service_providers:
            return self._service_providers[account_id]
        specs = self.service_specs()
        spec = specs.get(account.service)
        if spec is None:  # plugin gone: a token-kind placeholder guards the grant all the same
            spec = ApiToken(service=account.service, title=account.service_title)
        return self.service_provider(account_id, spec)

    def credential(self, account_id: str, spec: CredentialSpec) -> Credential:
        """A run's ``ctx.credential`` for a charm of ``account_id`` whose pattern needs ``spec``.

        AuthRequired if the account is gone; ConfigProblem if it is another service's.
        """
        try:
            account = self.get(account_id)
        except NotFoundError:
            raise AuthRequired(
                f"account {account_id!r} is no longer in this profile; edit this charm and "
                f"choose a {spec.title} account (see 'trayapp accounts list')",
                account_id=account_id,
            ) from None
        if account.service != spec.service:
            raise ConfigProblem(
                f"this charm needs a {spec.title} account, but {account.label} is a "
                f"{account.service_title} account; edit the charm and choose a {spec.title} "
                "account"
            )
        return Credential(
            spec,
            self.service_provider(account_id, spec),
            account_id=account_id,
            label=account.label,
        )

    def find_service_account(self, service: str, name: str) -> Account | None:
        for account in self.accounts():
            if account.service == service and (account.name or "").lower() == name.lower():
                return account
        return None

    async def add_token(
        self,
        service: str,
        token: str,
        *,
        name: str | None = None,
        account_id: str | None = None,
        secret_store: SecretStoreKind | None = None,
        check: bool = True,
    ) -> Account:
        """Store an API token: a new account of ``service``, or a new token for ``account_id``
        (re-auth after the service refused the old one; its parked charms then run).

        ``check=False`` (the test harness only) skips the service's ``check_url`` and also takes
        an OAuth provider's access token as is (an account that cannot refresh).

        When the service declares a ``check_url``, the token is tried first: a token the
        service refuses is not stored (ConfigError saying so). A new account is named
        ``name``, else what the service says (``identity_field``), else "<Title> account";
        an account of the same service and name gets the new token instead of a duplicate.
        Raises KeyringNotReady (nothing stored) if the keyring cannot keep it.
        """
        spec = self.service_spec(service)
        if check and not isinstance(spec, ApiToken):
            raise ConfigError(
                f"{spec.title} accounts sign in in the browser, not with a token; use "
                f"`trayapp accounts add --service {service}` without a token"
            )
        token = token.strip()
        if not token or any(c.isspace() for c in token):
            raise ConfigError(
                f"that is not a {spec.title} token (it is empty or has spaces in it); paste the "
                "token exactly as the service shows it"
            )
        register_secret(token)
        identity = (
            await self._check_token(spec, token) if check and isinstance(spec, ApiToken) else None
        )
        existing = self._stored(account_id) if account_id else None
        if existing is not None and existing.service != service:
            raise ConfigError(f"{existing.label} is not a {spec.title} account")
        if existing is None:
            label = name or identity
            existing = self.find_service_account(service, label) if label else None
            name = label or f"{spec.title} account"
        now = self._now()
        if existing is None:
            existing = Account(
                id=_new_account_id(),
                service=service,
                service_title=spec.title,
                credential_kind=spec.kind,
                name=name,
                state=AccountState.NEEDS_SIGN_IN,
                cause=Cause.NEVER_SIGNED_IN,
                created_at=now,
                updated_at=now,
            )
            return await self._store_service_grant(
                existing, spec, token, None, None, (), secret_store
            )
        async with self._holder(existing.id).exclusive():
            return await self._store_service_grant(
                existing, spec, token, None, None, (), secret_store
            )

    async def _check_token(self, spec: ApiToken, token: str) -> str | None:
        """Try the token on the service's ``check_url``: its identity, or ConfigError."""
        if not spec.check_url:
            return None
        value = f"{spec.scheme} {token}" if spec.scheme else token
        try:
            response = await self._http_client().get(
                spec.check_url, headers={spec.header: value}, timeout=30
            )
        except httpx.HTTPError as exc:
            log.warning("checking a %s token failed: %s", spec.service, type(exc).__name__)
            raise ConfigError(
                f"cannot reach {spec.title} to check the token; check the network and try again"
            ) from None
        if response.status_code in (401, 403):
            raise ConfigError(
                f"{spec.title} did not accept this token (HTTP {response.status_code}); make "
                f"a new one{' at ' + spec.help_url if spec.help_url else ''} and try again"
            )
        if not 200 <= response.status_code < 300:
            raise ConfigError(
                f"{spec.title} could not check the token (HTTP {response.status_code}); try "
                "again later"
            )
        if not spec.identity_field:
            return None
        try:
            data = response.json()
        except ValueError:
            return None
        found = data.get(spec.identity_field) if isinstance(data, dict) else None
        return str(found) if isinstance(found, str | int) and str(found) else None

    async def _store_service_grant(
        self,
        account: Account,
        spec: CredentialSpec,
        access_token: str,
        refresh_token: str | None,
        expires_in: float | None,
        scopes: Sequence[str],
        secret_store: SecretStoreKind | None,
    ) -> Account:
        now = self._now()
        if secret_store is not None:
            target = self.vault.store(secret_store)
        else:
            target = await asyncio.to_thread(self.grants.store_for_new_grant)
        signed_in = account.model_copy(
            update={
                "service_title": spec.title,
                "credential_kind": spec.kind,
                "scopes": tuple(dict.fromkeys(scopes)),
                "state": AccountState.SIGNED_IN,
                "reason": "",
                "cli_hint": "",
                "cause": None,
                "missing_scopes": (),
                "secret_store": target.kind,
                "granted_at": now,
                "updated_at": now,
            }
        )
        record = self._record(signed_in.id)
        await self.grants.write(
            signed_in.id,
            target,
            refresh_token=refresh_token,
            access_token=access_token,
            expiry=now + timedelta(seconds=expires_in) if expires_in is not None else None,
            scopes=signed_in.scopes,
            now=now,
            granted_at=now,
            previous=account.secret_store,
            then=lambda _meta: record.set(signed_in),
        )
        provider = self._service_providers.get(signed_in.id)
        if provider is not None:
            provider.reset()
        log.info("account %s (%s) signed in as %s", signed_in.id, spec.service, signed_in.label)
        view = self._view(signed_in)
        self._publish(view)
        return view

    async def sign_in_service(
        self,
        service: str,
        *,
        account_id: str | None = None,
        name: str | None = None,
        opener: Callable[[str], Any] | None = None,
        on_url: Callable[[str], None] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the user's time in the browser
    ) -> Account:
        """Browser sign-in with an OAuth 2.0 provider: a new account, or ``account_id`` again.

        For an API-token service this cannot work (the token must be typed in): ConfigError
        saying so. Re-signing an account whose provider names its user refuses another user.
        """
        spec = self.service_spec(service)
        if not isinstance(spec, OAuth2Provider):
            raise ConfigError(
                f"{spec.title} uses a token, not a browser sign-in; enter a new token (in "
                f"the tray menu, or `trayapp accounts signin ACCOUNT` in a terminal)"
            )
        existing = self._stored(account_id) if account_id else None
        from trayapp.auth.provider_signin import ProviderGrant, run_provider_sign_in
        from trayapp.auth.signin import SignInError, WrongAccountError

        stored: list[Account] = []

        async def keep(grant: ProviderGrant) -> str:
            target = existing
            if (
                target is not None
                and grant.identity
                and target.name
                and target.name.lower() != grant.identity.lower()
                and target.cause is not Cause.NEVER_SIGNED_IN
            ):
                raise WrongAccountError(
                    f"You signed in to {spec.title} as {grant.identity}, but this account is "
                    f"{target.name}; sign in again as {target.name} (or add {grant.identity} "
                    "as a new account)",
                    expected=target.name,
                    actual=grant.identity,
                )
            label = name or grant.identity
            if target is None and label:
                target = self.find_service_account(service, label)
            now = self._now()
            if target is None:
                target = Account(
                    id=_new_account_id(),
                    service=service,
                    service_title=spec.title,
                    credential_kind=spec.kind,
                    name=label or f"{spec.title} account",
                    state=AccountState.NEEDS_SIGN_IN,
                    cause=Cause.NEVER_SIGNED_IN,
                    created_at=now,
                    updated_at=now,
                )
            try:
                async with self._holder_for(target, spec).exclusive():
                    account = await self._store_service_grant(
                        target,
                        spec,
                        grant.access_token,
                        grant.refresh_token,
                        grant.expires_in,
                        grant.scopes,
                        None,
                    )
            except KeyringNotReady as exc:
                raise SignInError(
                    f"Signed in, but the system keyring could not store the sign-in ({exc}); "
                    "unlock it and sign in again"
                ) from None
            stored.append(account)
            return account.label

        kwargs: dict[str, Any] = {"opener": opener, "on_url": on_url}
        if timeout is not None:
            kwargs["timeout"] = timeout
        await run_provider_sign_in(spec, http=self._http_client(), keep=keep, **kwargs)
        return stored[-1]

    def _holder_for(self, account: Account, spec: CredentialSpec) -> ServiceTokenProvider:
        provider = self._service_providers.get(account.id)
        if provider is None:
            from trayapp.auth.service_tokens import ServiceTokenProvider

            provider = ServiceTokenProvider(
                self, account.id, self.grants, spec, http=self._http_client, now=self._now
            )
            if self._record(account.id).get() is not None:
                self._service_providers[account.id] = provider
        return provider

    async def _sign_out_service(self, account: Account) -> SignOutResult:
        """Forget a service account's token; revoke it first when the provider can (RFC 7009)."""
        spec = self.service_specs().get(account.service)
        revoked = False
        if (
            isinstance(spec, OAuth2Provider)
            and spec.revoke_url
            and account.secret_store is not None
        ):
            with contextlib.suppress(KeyringNotReady):
                token = await self.grants.revocable_token(account.id, account.secret_store)
                if token:
                    form = {"token": token, "client_id": spec.client_id}
                    with contextlib.suppress(httpx.HTTPError):
                        response = await self._http_client().post(
                            spec.revoke_url, data=form, timeout=30
                        )
                        revoked = response.status_code in (200, 400)
        again = "enter a new token" if account.credential_kind == "api_token" else "sign in"
        updated = account.model_copy(
            update={
                "state": AccountState.SIGNED_OUT,
                "reason": f"{account.label} is signed out.",
                "cli_hint": f"{again} with `trayapp accounts signin {account.label}`",
                "cause": Cause.SIGNED_OUT,
                "missing_scopes": (),
                "secret_store": None,
                "updated_at": self._now(),
            }
        )
        record = self._record(account.id)
        await self.grants.delete(account.id, account.secret_store, then=lambda: record.set(updated))
        view = self._view(updated)
        self._publish(view)
        if revoked:
            message = f"Signed out {account.label}; its tokens were revoked and deleted."
        elif account.credential_kind == "api_token":
            message = (
                f"Signed out {account.label} and deleted its token; revoke the token at "
                f"{account.service_title} too if you no longer need it"
                + (f" ({spec.help_url})" if spec is not None and spec.help_url else "")
            )
            revoked = True  # nothing Pattern Sync could have revoked
        else:
            message = (
                f"Signed out {account.label} and deleted its tokens; remove Pattern Sync's "
                f"access in your {account.service_title} account settings to finish"
            )
        return SignOutResult(view, revoked, message)

    # -- sign-out / remove -------------------------------------------------------------------

    async def sign_out(self, account_id: str) -> SignOutResult:
        """Revoke the grant at the provider, delete local secrets, keep the record (signed_out).

        Local secrets are deleted even when revocation fails (offline): the user asked to sign
        out, and the message says how to finish the revocation by hand.
        """
        # No refresh may run (and write its token back) while the grant is being removed.
        async with self._holder(account_id).exclusive():
            return await self._sign_out(account_id)

    async def _sign_out(self, account_id: str) -> SignOutResult:
        account = self._stored(account_id)
        if not account.is_google:
            return await self._sign_out_service(account)
        token: str | None = None
        if account.secret_store is not None:
            try:
                token = await self.grants.revocable_token(account_id, account.secret_store)
            except KeyringNotReady as exc:
                raise ConfigError(
                    f"cannot sign out {account.label} while the keyring is locked: {exc}"
                ) from None
        revoked, problem = False, ""
        if token:
            revoked, problem = await self._revoke(token)
        updated = account.model_copy(
            update={
                "state": AccountState.SIGNED_OUT,
                "reason": f"{account.label} is signed out.",
                "cli_hint": f"sign in with `trayapp accounts signin {account.label}`",
                "cause": Cause.SIGNED_OUT,
                "missing_scopes": (),
                "secret_store": None,
                "updated_at": self._now(),
            }
        )
        record = self._record(account_id)
        await self.grants.delete(account_id, account.secret_store, then=lambda: record.set(updated))
        view = self._view(updated)
        self._publish(view)
        if revoked or not token:
            message = f"Signed out {account.label}; its tokens were revoked and deleted."
        else:
            message = (
                f"Signed out {account.label} and deleted its tokens, but Google could not be "
                f"told ({problem}); remove Pattern Sync's access at "
                "https://myaccount.google.com/permissions to finish"
            )
        return SignOutResult(view, revoked, message)

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

        Call :meth:`sign_out` first to revoke; this only forgets locally. What happens to the
        data its charms imported is the engine's business (remove or keep those charms).
        """
        account = self._stored(account_id)
        self.grants.drop(account_id, account.secret_store)
        self.store.drop_prefix(f"account:{account_id}:")
        self._providers.pop(account_id, None)
        self._service_providers.pop(account_id, None)
        self._published.pop(account_id, None)

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
            try:
                grant = await self.grants.read(
                    account.id,
                    account.secret_store,
                    token_only=account.credential_kind == "api_token",
                )
            except KeyringNotReady:
                continue
            provider = self._providers.get(account.id) or self._service_providers.get(account.id)
            if provider is not None:
                provider.reset()
            if grant is not None:
                after = self.report(account.id, AccountProblem(AccountState.SIGNED_IN, None, ""))
                if after.usable:
                    back.append(after)
            else:
                self.report(
                    account.id,
                    AccountProblem(
                        AccountState.NEEDS_SIGN_IN,
                        Cause.SECRET_MISSING,
                        f"The saved sign-in of {account.label} is no longer in the keyring.",
                        _signin_hint(account),
                    ),
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
        self._pending.clear()
        if self._keyring_retry is not None:
            self._keyring_retry.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._keyring_retry
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None


def _new_account_id() -> str:
    return "acct-" + pysecrets.token_hex(4)


def _signin_hint(account: Account) -> str:
    """What to do to sign ``account`` in again (the Google or the other service's words)."""
    if account.is_google:
        from trayapp.auth.tokens import signin_hint

        return signin_hint(account.label)
    from trayapp.auth.service_tokens import service_signin_hint

    return service_signin_hint(account)
