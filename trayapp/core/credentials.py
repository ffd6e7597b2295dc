"""Credentials for services other than Google: what a pattern declares and what its run gets.

A pattern that talks to a service needing a login (an API token, or OAuth 2.0 with another
provider) declares it once, as a class attribute::

    credential = ApiToken(service="github", title="GitHub",
                          help_url="https://github.com/settings/tokens")

Its charms then belong to an *account of that service* (``trayapp accounts add --service
github``), exactly as a Gmail charm belongs to a Google account. The token lives with the
account in the keyring (or the flagged 0600 file), never in the database; the run reads it
through ``ctx.credential`` (:class:`Credential`). When the service refuses it (the updater
raises :class:`~trayapp.core.errors.AuthRequired`, e.g. through ``raise_for_status`` on a 401),
the account is marked "needs sign-in", every charm of it waits, and the tray asks the user to
sign in again (a new token, or the provider's browser sign-in), as for Google.

This module is Qt-free and knows nothing of the accounts layer: the engine is given a
:data:`CredentialFactory` by whoever wires accounts (``trayapp.auth.wiring``), which builds each
run's :class:`Credential` over a :class:`CredentialSource`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from trayapp.core.errors import AuthRequired

__all__ = [
    "ApiToken",
    "Credential",
    "CredentialAuth",
    "CredentialFactory",
    "CredentialSource",
    "CredentialSpec",
    "OAuth2Provider",
    "check_credential",
]

GOOGLE_SERVICE = "google"
_SERVICE_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A personal access token / API key the user pastes in (GitHub, GitLab, Todoist ...).

    ``service`` is a short lower-case id shared by every pattern that uses the same accounts
    (``"github"``); ``title`` names the service to the user ("GitHub"); ``help_url`` is the page
    where a token is made (shown beside the token field). The token is sent as the ``header``
    request header, ``"<scheme> <token>"`` (``scheme=None``: the token alone, as for
    ``X-Api-Key``). ``check_url`` (optional): a GET that answers 2xx for a good token; adding an
    account then refuses a token the service rejects, and ``identity_field`` (a top-level key of
    its JSON answer, e.g. ``"login"``) names the account.
    """

    service: str
    title: str
    help_url: str = ""
    header: str = "Authorization"
    scheme: str | None = "Bearer"
    check_url: str | None = None
    identity_field: str | None = None

    @property
    def kind(self) -> str:
        return "api_token"


@dataclass(frozen=True, slots=True)
class OAuth2Provider:
    """OAuth 2.0 with another provider: the same browser sign-in as for Google.

    Authorization-code flow with PKCE (S256) and a loopback redirect on ``127.0.0.1`` (RFC
    8252), so the provider must accept ``http://127.0.0.1:<any port>/`` as a redirect URI for
    ``client_id`` (a "public"/"native" client). ``client_secret`` only for providers that insist
    on one for native apps (it is not secret in a distributed app). Access tokens are refreshed
    with the refresh token before they expire (RFC 6749 section 6) and written back to the
    account; a refresh the provider refuses (``invalid_grant``) means "needs sign-in". The token
    is sent as ``Authorization: Bearer <token>``. ``userinfo_url`` + ``identity_field``
    (optional): a GET with the new token whose JSON field names the account (``"email"``,
    ``"login"``); without them the user names it.
    """

    service: str
    title: str
    authorize_url: str
    token_url: str
    client_id: str
    scopes: tuple[str, ...] = ()
    client_secret: str | None = field(default=None, repr=False)
    help_url: str = ""
    userinfo_url: str | None = None
    identity_field: str | None = None
    revoke_url: str | None = None
    extra_authorize_params: Mapping[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "oauth2"

    @property
    def header(self) -> str:
        return "Authorization"

    @property
    def scheme(self) -> str | None:
        return "Bearer"


CredentialSpec = ApiToken | OAuth2Provider


def check_credential(spec: object) -> str:
    """ "" if ``spec`` is a usable declaration, else what is wrong with it."""
    if not isinstance(spec, ApiToken | OAuth2Provider):
        return "credential must be an ApiToken or an OAuth2Provider"
    if not isinstance(spec.service, str) or not _SERVICE_RE.match(spec.service):
        return f"credential service {spec.service!r} must be a short lower-case id like 'github'"
    if spec.service == GOOGLE_SERVICE:
        return "credential service 'google' is taken: Google patterns declare scopes instead"
    if not spec.title:
        return "credential title is empty"
    if isinstance(spec, OAuth2Provider):
        for name in ("authorize_url", "token_url"):
            if not str(getattr(spec, name)).startswith(("https://", "http://127.0.0.1")):
                return f"credential {name} must be an https:// address"
        if not spec.client_id:
            return "credential client_id is empty"
    return ""


class CredentialSource(Protocol):
    """The account side of a credential (implemented by the accounts layer)."""

    async def access_token(self) -> str:
        """A token to send now (an OAuth one refreshed first when it is about to expire).

        Raises AuthRequired when the account needs sign-in (no request is made then)."""
        ...

    async def refresh_after_rejection(self, rejected: str) -> str | None:
        """After a 401 to ``rejected``: a freshly refreshed token, or None when there is no
        way to get a new one without the user (an API token)."""
        ...

    def reject(self, message: str, token: str | None = None) -> None:
        """The service refused ``token`` (the one the run sent; None: not known): the account
        needs sign-in (tray, status, notice), unless the account's token was replaced since
        (a new token entered while the run was under way)."""
        ...


class Credential:
    """``ctx.credential``: the token of the charm's account for the pattern's service.

    Use :meth:`auth_headers` on each request, or pass :attr:`auth` to httpx (``ctx.http.get(url,
    auth=ctx.credential.auth)``), which also refreshes an OAuth token once on a 401 and retries.
    Raise :class:`~trayapp.api.AuthRequired` when the service refuses the token
    (``raise_for_status`` does it for 401/403): the account is then shown as needing sign-in and
    its charms wait until the user signs in again. The token is registered with the log
    redaction; never put it in an exception message or a cell yourself.
    """

    def __init__(
        self,
        spec: CredentialSpec,
        source: CredentialSource,
        *,
        account_id: str,
        label: str,
    ) -> None:
        self.spec = spec
        self.account_id = account_id
        self.label = label  # the account's name, as the user sees it ("work", "me@x.org")
        self._source = source
        self._sent: str | None = None  # the token last handed to the run

    def __repr__(self) -> str:
        return f"Credential(service={self.spec.service!r}, account={self.account_id!r})"

    async def token(self) -> str:
        """The current token (refreshed first when it is an OAuth token about to expire)."""
        self._sent = await self._source.access_token()
        return self._sent

    def header_value(self, token: str) -> str:
        return f"{self.spec.scheme} {token}" if self.spec.scheme else token

    async def auth_headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <token>"}`` (the header and scheme the spec declares)."""
        return {self.spec.header: self.header_value(await self.token())}

    @property
    def auth(self) -> CredentialAuth:
        """An ``httpx.Auth`` adding the token; on a 401, one refresh and retry (OAuth)."""
        return CredentialAuth(self)

    def rejected(self, message: str = "") -> AuthRequired:
        """Mark the account as needing sign-in and return the error to raise::

        raise ctx.credential.rejected("GitHub refused the token")

        (Raising ``AuthRequired`` yourself, or through ``raise_for_status``, does the same.)
        """
        text = message or f"{self.spec.title} refused the token of {self.label}"
        self._source.reject(text, self._sent)
        return AuthRequired(text, account_id=self.account_id)

    async def _refresh_after(self, rejected: str) -> str | None:
        fresh = await self._source.refresh_after_rejection(rejected)
        if fresh is not None:
            self._sent = fresh
        return fresh


class CredentialAuth(httpx.Auth):
    """httpx authentication with a :class:`Credential`: sets the header; after a 401, asks for
    a refreshed token once (OAuth) and resends. A 401 that stays is returned to the caller,
    whose ``raise_for_status`` turns it into AuthRequired."""

    def __init__(self, credential: Credential) -> None:
        self._credential = credential

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("ctx.credential.auth works with the async client (ctx.http) only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        spec = self._credential.spec
        token = await self._credential.token()
        request.headers[spec.header] = self._credential.header_value(token)
        response = yield request
        if response.status_code != 401:
            return
        fresh = await self._credential._refresh_after(token)
        if fresh is None or fresh == token:
            return
        request.headers[spec.header] = self._credential.header_value(fresh)
        yield request


CredentialFactory = Callable[[str, CredentialSpec], Credential]
"""``factory(account_id, spec)`` -> the run's :class:`Credential`. Raises AuthRequired when the
account is missing or belongs to another service. Set on the engine by the accounts wiring."""
