"""Browser sign-in with a plugin's OAuth 2.0 provider (``trayapp.api.OAuth2Provider``).

The same flow as Google's (:mod:`trayapp.auth.signin`): a loopback listener on ``127.0.0.1``
(RFC 8252 section 7.3), PKCE S256 (RFC 7636), a random ``state`` checked on the callback, the
code exchanged with our own httpx call (RFC 6749 section 4.1.3), and the browser told the real
outcome only after the grant is stored. What differs is only what is Google's: the endpoints
and client come from the plugin's declaration, there is no ``access_type``/``prompt`` or
OpenID scope, and the account's name comes from the provider's ``userinfo_url`` when the
plugin names one (else from the user).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from trayapp.auth.models import DEFAULT_TOKEN_LIFETIME_S
from trayapp.auth.signin import (
    DEFAULT_TIMEOUT,
    GrantNotStored,
    LoopbackReceiver,
    SignInDenied,
    SignInError,
    SignInStateMismatch,
    _page,
    default_opener,
    pkce_pair,
)
from trayapp.core.credentials import OAuth2Provider
from trayapp.core.redact import redact, register_secret

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProviderGrant:
    """A completed sign-in with a provider. Holds tokens: its repr hides them."""

    identity: str | None  # the account's name at the provider, when it says
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: float | None  # None: the provider did not say (the token may not expire)
    scopes: tuple[str, ...]
    obtained_at: datetime


def authorize_url(spec: OAuth2Provider, redirect_uri: str, state: str, challenge: str) -> str:
    params = {
        "response_type": "code",
        "client_id": spec.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **dict(spec.extra_authorize_params),
    }
    if spec.scopes:
        params["scope"] = " ".join(dict.fromkeys(spec.scopes))
    sep = "&" if urlsplit(spec.authorize_url).query else "?"
    return spec.authorize_url + sep + urlencode(params)


async def run_provider_sign_in(
    spec: OAuth2Provider,
    *,
    http: httpx.AsyncClient,
    opener: Callable[[str], Awaitable[Any] | Any] | None = None,
    on_url: Callable[[str], None] | None = None,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - the user's time in the browser
    keep: Callable[[ProviderGrant], Awaitable[str]] | None = None,
) -> ProviderGrant:
    """The whole browser sign-in with ``spec``'s provider; cancellable at any await.

    ``keep`` stores the grant and returns the account's name for the browser's final page; a
    :class:`GrantNotStored` or :class:`SignInError` it raises is shown in the browser too.
    """
    async with LoopbackReceiver() as receiver:
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(24)
        url = authorize_url(spec, receiver.redirect_uri, state, challenge)
        params = await receiver.open_and_wait(
            url,
            state,
            opener=opener or default_opener,
            on_url=on_url,
            wait_s=timeout,
            timed_out=f"Sign-in with {spec.title} timed out after {int(timeout)} s without an "
            "answer from the browser; start it again and finish it in the browser window that "
            "opens (or open the printed link yourself)",
        )
        try:
            grant = await _complete(spec, params, state, verifier, receiver.redirect_uri, http)
            name = await keep(grant) if keep is not None else (grant.identity or spec.title)
        except GrantNotStored as exc:
            await receiver.respond(
                200,
                _page(
                    "One more step in Pattern Sync",
                    f"{spec.title} signed you in, but Pattern Sync could not save the sign-in "
                    f"yet ({exc}). Go back to Pattern Sync to finish.",
                    ok=False,
                ),
            )
            raise
        except SignInError as exc:
            await receiver.respond(400, _page("Sign-in failed", str(exc), ok=False))
            raise
        except BaseException:
            await receiver.respond(
                400, _page("Sign-in failed", "Something went wrong; see Pattern Sync.", ok=False)
            )
            raise
        await receiver.respond(
            200,
            _page(
                "Signed in",
                f"Pattern Sync is now signed in to {spec.title} as {name}. You can close this tab.",
            ),
        )
        return grant


async def _complete(
    spec: OAuth2Provider,
    params: dict[str, str],
    state: str,
    verifier: str,
    redirect_uri: str,
    http: httpx.AsyncClient,
) -> ProviderGrant:
    if not secrets.compare_digest(params.get("state", ""), state):
        raise SignInStateMismatch(
            "The browser's answer did not belong to this sign-in (the 'state' did not match); "
            "start the sign-in again"
        )
    error = params.get("error")
    if error == "access_denied":
        raise SignInDenied(
            f"Access was denied in the browser, so Pattern Sync cannot use this {spec.title} "
            f"account; sign in again and allow access on {spec.title}'s page"
        )
    if error:
        raise SignInError(
            f"{spec.title} refused the sign-in ({redact(error)}: "
            f"{redact(params.get('error_description', ''))[:200]}); try again"
        )
    code = params.get("code")
    if not code:
        raise SignInError("The browser returned no authorization code; start the sign-in again")
    register_secret(code)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": spec.client_id,
        "code_verifier": verifier,
    }
    if spec.client_secret:
        form["client_secret"] = spec.client_secret
    try:
        response = await http.post(
            spec.token_url, data=form, headers={"Accept": "application/json"}, timeout=30
        )
    except httpx.HTTPError as exc:
        log.warning("the %s code exchange failed: %s", spec.service, type(exc).__name__)
        raise SignInError(
            f"Cannot reach {spec.title}'s token endpoint; check the network and sign in again"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    access = body.get("access_token")
    if response.status_code != 200 or not isinstance(access, str) or not access:
        err = redact(str(body.get("error", "")))
        raise SignInError(
            f"{spec.title} did not accept the sign-in code (HTTP {response.status_code}"
            f"{', ' + err if err else ''}); start the sign-in again"
        )
    refresh = body.get("refresh_token")
    refresh_token = refresh if isinstance(refresh, str) and refresh else None
    register_secret(access, refresh_token)
    expires_in: float | None
    try:
        expires_in = float(body["expires_in"]) if "expires_in" in body else None
    except (TypeError, ValueError):
        expires_in = DEFAULT_TOKEN_LIFETIME_S
    scope = body.get("scope")
    return ProviderGrant(
        identity=await fetch_provider_identity(spec, access, http),
        access_token=access,
        refresh_token=refresh_token,
        expires_in=expires_in,
        scopes=tuple(str(scope).replace(",", " ").split()) if scope else tuple(spec.scopes),
        obtained_at=datetime.now(UTC),
    )


async def fetch_provider_identity(
    spec: OAuth2Provider, token: str, http: httpx.AsyncClient
) -> str | None:
    """The account's name: the ``identity_field`` of ``userinfo_url``'s JSON, or None."""
    if not spec.userinfo_url or not spec.identity_field:
        return None
    try:
        response = await http.get(
            spec.userinfo_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        data = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    found = data.get(spec.identity_field) if isinstance(data, dict) else None
    return str(found) if isinstance(found, str | int) and str(found) else None
