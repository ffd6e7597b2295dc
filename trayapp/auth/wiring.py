"""How the accounts layer plugs into the engine and the Google clients.

Kept out of :mod:`trayapp.auth.accounts` so that module needs neither the engine nor the Google
client package: the engine is wired to accounts here, in one place, by whoever builds both (the
CLI, the tray, tests).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from trayapp.auth.accounts import AccountManager, ScopeNeeds
from trayapp.auth.client_config import ClientConfig
from trayapp.auth.models import Account
from trayapp.auth.secrets import SecretVault
from trayapp.core.credentials import CredentialSpec
from trayapp.core.errors import NotFoundError
from trayapp.core.events import AccountChanged, CharmsChanged, EngineEvent
from trayapp.google.endpoints import GoogleEndpoints

if TYPE_CHECKING:
    import httpx

    from trayapp.core.charms import CharmInfo
    from trayapp.core.engine import Engine
    from trayapp.core.patterns import PatternRegistry
    from trayapp.google.client import GoogleApi

log = logging.getLogger(__name__)


def google_endpoints(config: ClientConfig) -> GoogleEndpoints:
    """All Google URLs for this client: Google's own, or everything on the issuer's origin.

    The client JSON names the OAuth endpoints; the API roots follow from them (Google's real
    roots for Google, the same origin for the emulator), so the emulator needs no code switch.
    """
    base = GoogleEndpoints() if config.is_google else GoogleEndpoints.for_base(config.gmail_base)
    return dataclasses.replace(
        base,
        auth_uri=config.auth_uri,
        token_uri=config.token_uri,
        revoke_uri=config.revoke_uri,
        userinfo_uri=config.userinfo_uri,
    )


def charm_scope_needs(
    charms: Callable[[], Iterable[CharmInfo]], patterns: PatternRegistry
) -> ScopeNeeds:
    """``needs(account_id)``: the union of the scopes its charms' patterns declare.

    Used by the engine wiring (the engine's charms) and by the CLI's ``accounts`` commands
    (the profile's charms), so every sign-in asks for the same union.
    """

    def needs(account_id: str) -> list[str]:
        wanted: list[str] = []
        for info in charms():
            if info.account_id != account_id or info.pattern_id not in patterns:
                continue
            wanted.extend(patterns.meta(info.pattern_id).scopes)  # imports no pattern module
        return list(dict.fromkeys(wanted))

    return needs


def registry_services(patterns: PatternRegistry) -> Callable[[], Mapping[str, CredentialSpec]]:
    """``services()``: the credential each service id names, from the patterns that declare one
    (the first pattern of a service wins; patterns of one plugin share a declaration)."""

    def services() -> dict[str, CredentialSpec]:
        found: dict[str, CredentialSpec] = {}
        for meta in patterns.metas():  # descriptors: no pattern module is imported
            if meta.credential is not None:
                found.setdefault(meta.credential.service, meta.credential)
        return found

    return services


def attach_accounts(
    engine: Engine,
    *,
    vault: SecretVault | None = None,
    http: httpx.AsyncClient | None = None,
) -> AccountManager:
    """An AccountManager over the engine's store, publishing to the engine.

    Every committed account change becomes an ``AccountChanged`` engine event, and an account
    whose grant works (signed in again, keyring unlocked, permission granted) calls
    ``engine.account_usable``, which unparks that account's charms at once. A charm whose
    pattern needs scopes the grant lacks waits alone (``engine.permission_check``); the
    account's other charms keep syncing. The scopes each
    account needs are the union over its charms (``engine.charms()`` with the engine's pattern
    registry); when the charms change, accounts whose ``needs_permission`` came or went are
    published.
    """
    manager = AccountManager(
        engine.store,
        engine.profile.path,
        vault=vault,
        now=engine.clock.now,
        http=http,
        scope_needs=charm_scope_needs(engine.charms, engine.patterns),
        services=registry_services(engine.patterns),
    )

    def on_change(account: Account) -> None:
        engine.publish(AccountChanged(account.id))
        if account.grant_works:
            # Signed in, or a permission granted (also a partial one): the parked charms run;
            # one whose permission is still missing parks again alone, asking Google nothing.
            engine.account_usable(account.id)

    def on_engine_event(event: EngineEvent) -> None:
        if isinstance(event, CharmsChanged):
            manager.scope_needs_changed()

    manager.subscribe(on_change)
    engine.subscribe(on_engine_event)
    engine.permission_check = manager.charm_permission_missing
    # Non-Google services: each run's ctx.credential (a refused token -> needs sign-in), and
    # add_charm refusing an account of another service.
    engine.credential_factory = manager.credential

    def account_service(account_id: str) -> str | None:
        try:
            return manager.get(account_id).service
        except NotFoundError:
            return None

    engine.account_service = account_service
    manager.scope_needs_changed()  # remember each account's state before the first change
    return manager


def google_api_kwargs(manager: AccountManager, account_id: str) -> dict[str, Any]:
    """Keyword arguments for ``trayapp.google.client.GoogleApi`` for one account."""
    return {
        "tokens": manager.provider(account_id),
        "endpoints": google_endpoints(manager.clients.require()),
        "account_id": account_id,
        "on_scope_refused": functools.partial(manager.scopes_refused, account_id),
    }


class AccountsWiring:
    """Google accounts for an engine that runs charms: the one wiring for the CLI and the tray.

    :func:`attach_accounts` connects the account manager to the engine (sign-in events unpark
    charms), and ``engine.google_factory`` hands each charm its account's GoogleApi: one per
    account, shared by that account's charms so they share its quota budget, on the engine's
    clock (so a test clock drives backoff and quota windows too), closed by :meth:`aclose`.
    ``vault`` overrides the secret store (the tray's demo mode uses a file vault). An engine
    that already has a ``google_factory`` (tests, the demo) keeps it.
    """

    def __init__(self, engine: Engine, *, vault: SecretVault | None = None) -> None:
        self._engine = engine
        self._apis: dict[str, GoogleApi] = {}
        self.manager: AccountManager = attach_accounts(engine, vault=vault)
        if engine.google_factory is None:
            engine.google_factory = self.google_api

    def google_api(self, account_id: str) -> GoogleApi:
        """This account's client, created on first use and shared from then on."""
        api = self._apis.get(account_id)
        if api is None:
            from trayapp.google.client import GoogleApi

            api = GoogleApi(**google_api_kwargs(self.manager, account_id), clock=self._engine.clock)
            self._apis[account_id] = api
        return api

    def api_urls(self) -> list[str]:
        """The Google URLs charms with an account reach (the network monitor probes their hosts).

        Raises when no OAuth client is configured yet (nothing to reach then).
        """
        endpoints = google_endpoints(self.manager.clients.require())
        return [endpoints.gmail_base, endpoints.calendar_base, endpoints.token_uri]

    async def aclose(self) -> None:
        """Close every client, then the manager; call after the engine stopped its runs."""
        apis, self._apis = list(self._apis.values()), {}
        for api in apis:
            try:
                await api.aclose()
            except Exception:
                log.exception("closing a Google client failed")
        await self.manager.aclose()
