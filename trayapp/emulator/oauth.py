"""OAuth 2.0 for installed apps: consent page, token endpoint, revocation, userinfo.

Behaviour and error bodies follow reference sections 2.2-2.5: PKCE S256, one-time codes with a
10-minute TTL, loopback redirect URIs on any port, refresh tokens only for
``access_type=offline`` at first consent or with ``prompt=consent``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from trayapp.emulator import errors
from trayapp.emulator.common import JSONResponseGoogle, authorize, emu_state, error_response
from trayapp.emulator.scopes import normalize_scopes
from trayapp.emulator.state import EmulatorState, OAuthClient

AUTH_PARAMS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "access_type",
    "prompt",
    "login_hint",
    "include_granted_scopes",
)


#: What Google's consent screen says for the scopes our app asks for.
_AUTH = "https://www.googleapis.com/auth/"
SCOPE_TEXT = {
    "openid": "Associate you with your personal info on Google",
    _AUTH + "userinfo.email": "See your primary Google Account email address",
    _AUTH + "userinfo.profile": "See your personal info",
    _AUTH + "gmail.readonly": "View your email messages and settings",
    _AUTH + "gmail.metadata": "View your email message metadata such as labels and headers, "
    "but not the email body",
    "https://mail.google.com/": "Read, compose, send, and permanently delete all your email "
    "from Gmail",
    _AUTH + "calendar.readonly": "See and download any calendar you can access using your "
    "Google Calendar",
    _AUTH + "calendar": "See, edit, share, and permanently delete all the calendars you can "
    "access using Google Calendar",
}


def is_allowed_redirect(uri: str) -> bool:
    """Loopback http redirect on any port, as Google allows for installed (desktop) apps."""
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises on a malformed port; any valid port (or none) is accepted
    except ValueError:
        return False
    if parts.scheme != "http" or parts.fragment:
        return False
    return parts.hostname in ("127.0.0.1", "localhost", "::1")


def _error_page(status: int, title: str, detail: str) -> HTMLResponse:
    body = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Sign in - Google Accounts"
        f"</title></head><body><h1>Access blocked: {html.escape(title)}</h1>"
        f"<p id=error>{html.escape(detail)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status)


def _validate_auth_request(
    state: EmulatorState, params: dict[str, str]
) -> tuple[OAuthClient, str] | HTMLResponse:
    client = state.clients.get(params.get("client_id", ""))
    if client is None:
        return _error_page(401, "Error 401: invalid_client", "The OAuth client was not found.")
    redirect = params.get("redirect_uri", "")
    if not redirect or not is_allowed_redirect(redirect):
        return _error_page(
            400,
            "Error 400: redirect_uri_mismatch",
            "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 "
            "policy. Use a loopback redirect URI such as http://127.0.0.1:PORT/.",
        )
    if params.get("response_type") != "code":
        return _error_page(
            400, "Error 400: invalid_request", "Required parameter is missing: response_type"
        )
    if not params.get("scope"):
        return _error_page(400, "Error 400: invalid_request", "Missing required parameter: scope")
    method = params.get("code_challenge_method")
    if method is not None and method not in ("S256", "plain"):
        return _error_page(400, "Error 400: invalid_request", "Invalid code_challenge_method")
    if method is not None and not params.get("code_challenge"):
        return _error_page(400, "Error 400: invalid_request", "Missing code_challenge")
    return client, redirect


def _redirect(uri: str, params: dict[str, str]) -> RedirectResponse:
    sep = "&" if urlsplit(uri).query else "?"
    return RedirectResponse(uri + sep + urlencode(params), status_code=302)


def _choose_account(state: EmulatorState, params: dict[str, str]) -> str | None:
    hint = params.get("login_hint", "").lower()
    if hint in state.accounts:
        return state.accounts[hint].email
    default = state.consent.default_account
    if default and default.lower() in state.accounts:
        return state.accounts[default.lower()].email
    return next((a.email for a in state.accounts.values()), None)


def _grant(
    state: EmulatorState, params: dict[str, str], client: OAuthClient, redirect: str, email: str
) -> RedirectResponse:
    scopes = normalize_scopes(params["scope"])
    key = (email.lower(), client.client_id)
    previous = state.grants.get(key)
    if params.get("include_granted_scopes") == "true" and previous:
        # Google, "OAuth 2.0 for Mobile & Desktop Apps", include_granted_scopes: "If you set
        # this parameter's value to true and the authorization request is granted, then the
        # new access token will also cover any scopes to which the user previously granted the
        # application access" (and the refresh token of the combined authorization covers
        # them: "Incremental authorization"). See docs/emulator.md.
        scopes = scopes + tuple(s for s in sorted(previous) if s not in scopes)
    offline = params.get("access_type") == "offline"
    prompts = params.get("prompt", "").split()
    issue_refresh = offline and (previous is None or "consent" in prompts)
    state.grants.setdefault(key, set()).update(scopes)
    method = params.get("code_challenge_method") or (
        "plain" if params.get("code_challenge") else None
    )
    code = state.issue_code(
        client_id=client.client_id,
        redirect_uri=redirect,
        scopes=scopes,
        email=email,
        challenge=params.get("code_challenge"),
        challenge_method=method,
        issue_refresh=issue_refresh,
    )
    out = {"code": code.code, "scope": " ".join(scopes), "authuser": "0", "prompt": "consent"}
    if "state" in params:
        out = {"state": params["state"], **out}
    return _redirect(redirect, out)


def _denied(params: dict[str, str], redirect: str) -> RedirectResponse:
    out = {"error": "access_denied"}
    if "state" in params:
        out["state"] = params["state"]
    return _redirect(redirect, out)


async def authorize_endpoint(request: Request) -> Response:
    state = emu_state(request)
    params = {k: v for k, v in request.query_params.items() if k in AUTH_PARAMS}
    checked = _validate_auth_request(state, params)
    if isinstance(checked, HTMLResponse):
        return checked
    client, redirect = checked
    if state.consent.deny:
        return _denied(params, redirect)
    email = _choose_account(state, params)
    if email is None:
        return _error_page(
            400,
            "no account",
            "The emulator has no accounts yet: create one with the control API (create_account).",
        )
    if state.consent.auto_approve:
        return _grant(state, params, client, redirect, email)
    return HTMLResponse(_consent_page(state, params, client, email))


def _consent_page(
    state: EmulatorState, params: dict[str, str], client: OAuthClient, email: str
) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in params.items()
    )
    accounts = "".join(
        f'<label class="account"><input type="radio" name="account" '
        f'value="{html.escape(a.email)}"{" checked" if a.email == email else ""}> '
        f"{html.escape(a.name)} &lt;{html.escape(a.email)}&gt;</label><br>"
        for a in state.accounts.values()
    )
    requested = normalize_scopes(params["scope"])
    granted: set[str] = set()
    if params.get("include_granted_scopes") == "true":
        # Incremental authorization: the screen asks only for what is new (Google's draft
        # draft-ietf-oauth-incremental-authz: "Consent screen should only display new scopes").
        granted = state.grants.get((email.lower(), client.client_id), set())
    new = [s for s in requested if s not in granted] or list(requested)
    had = sorted(s for s in granted if s not in new)

    def item(s: str) -> str:
        text, code = html.escape(SCOPE_TEXT.get(s, s)), html.escape(s)
        return f"<li>{text} <small><code>{code}</code></small></li>"

    scopes = "".join(item(s) for s in new)
    already = (
        f'<p>It already has access to:</p><ul id="granted">{"".join(item(s) for s in had)}</ul>'
        if had
        else ""
    )
    script = ""
    if state.consent.auto_submit in ("allow", "deny"):
        button = (
            "submit_approve_access"
            if state.consent.auto_submit == "allow"
            else "submit_deny_access"
        )
        script = f"<script>document.getElementById('{button}').click();</script>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - Google Accounts (emulator)</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}
button{{font-size:1.1em;margin:.5em}}li{{margin:.4em 0}}li small{{display:block;color:#666}}</style>
</head><body>
<h1>{html.escape(client.name)} wants to access your Google Account</h1>
<p>This is the local Google emulator's consent page. No real Google account is involved.</p>
<form id="consent" method="post" action="/o/oauth2/v2/auth/consent">
{hidden}
<fieldset><legend>Choose an account</legend>
{accounts}
</fieldset>
<p>The app asks for:</p><ul id="scopes">{scopes}</ul>{already}
<button type="submit" id="submit_deny_access" name="decision" value="deny">Deny</button>
<button type="submit" id="submit_approve_access" name="decision" value="allow">Allow</button>
</form>{script}</body></html>"""


async def consent_submit(request: Request) -> Response:
    state = emu_state(request)
    form = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
    params = {k: v for k, v in form.items() if k in AUTH_PARAMS}
    checked = _validate_auth_request(state, params)
    if isinstance(checked, HTMLResponse):
        return checked
    client, redirect = checked
    if form.get("decision") != "allow":
        return _denied(params, redirect)
    email = form.get("account") or _choose_account(state, params)
    if email is None or email.lower() not in state.accounts:
        return _error_page(400, "unknown account", "Choose one of the listed accounts.")
    return _grant(state, params, client, redirect, state.accounts[email.lower()].email)


# ---- token endpoint ----


def _oauth_error(err: errors.OAuthError) -> Response:
    return Response(
        json.dumps(err.body(), indent=2),
        status_code=err.status,
        media_type="application/json; charset=utf-8",
        headers={
            "cache-control": "no-cache, no-store, max-age=0, must-revalidate",
            "pragma": "no-cache",
        },
    )


def _token_json(body: dict[str, Any]) -> Response:
    return Response(
        json.dumps(body, indent=2),
        media_type="application/json; charset=utf-8",
        headers={
            "cache-control": "no-cache, no-store, max-age=0, must-revalidate",
            "pragma": "no-cache",
        },
    )


def _client_auth(state: EmulatorState, request: Request, form: dict[str, str]) -> OAuthClient:
    cid = form.get("client_id")
    secret = form.get("client_secret")
    auth = request.headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip()).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise errors.invalid_client_unauthorized() from None
        user, _, pw = decoded.partition(":")
        cid, secret = unquote(user), unquote(pw)
    client = state.clients.get(cid or "")
    if client is None:
        raise errors.invalid_client_not_found()
    if secret is None or not secrets.compare_digest(secret, client.client_secret):
        raise errors.invalid_client_unauthorized()
    return client


def _s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest())
        .rstrip(b"=")
        .decode()
    )


async def token_endpoint(request: Request) -> Response:
    state = emu_state(request)
    ctype = request.headers.get("content-type", "")
    raw = (await request.body()).decode("utf-8", "replace")
    if "json" in ctype:
        try:
            form = {k: str(v) for k, v in json.loads(raw or "{}").items()}
        except (ValueError, AttributeError):
            return _oauth_error(errors.invalid_request("Invalid JSON payload received."))
    else:
        form = dict(parse_qsl(raw, keep_blank_values=True))
    try:
        grant_type = form.get("grant_type")
        if not grant_type:
            raise errors.invalid_request("Required parameter is missing: grant_type")
        if grant_type not in ("authorization_code", "refresh_token"):
            raise errors.OAuthError(
                400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}"
            )
        client = _client_auth(state, request, form)
        if grant_type == "authorization_code":
            return _token_json(_exchange_code(state, client, form))
        return _token_json(_refresh(state, client, form))
    except errors.OAuthError as err:
        return _oauth_error(err)


def _exchange_code(
    state: EmulatorState, client: OAuthClient, form: dict[str, str]
) -> dict[str, Any]:
    value = form.get("code")
    if not value:
        raise errors.invalid_request("Missing required parameter: code")
    code = state.codes.get(value)
    if (
        code is None
        or code.used
        or code.expires_at <= state.clock.now()
        or code.client_id != client.client_id
        or form.get("redirect_uri") != code.redirect_uri
    ):
        raise errors.invalid_grant("Bad Request")
    if code.challenge is not None:
        verifier = form.get("code_verifier")
        if not verifier:
            raise errors.invalid_grant("Missing code verifier.")
        expected = _s256(verifier) if code.challenge_method == "S256" else verifier
        if not secrets.compare_digest(expected, code.challenge):
            raise errors.invalid_grant("Invalid code verifier.")
    code.used = True
    refresh = None
    if code.issue_refresh:
        refresh = state.issue_refresh_token(code.email, client.client_id, code.scopes)
    access = state.issue_access_token(
        code.email, client.client_id, code.scopes, refresh.token if refresh else None
    )
    body = state.token_response(access, refresh, include_refresh=True)
    if "openid" in code.scopes:
        body["id_token"] = _id_token(state, client, code.email, code.scopes)
    return body


def _refresh(state: EmulatorState, client: OAuthClient, form: dict[str, str]) -> dict[str, Any]:
    value = form.get("refresh_token")
    if not value:
        raise errors.invalid_request("Missing required parameter: refresh_token")
    tok = state.refresh_tokens.get(value)
    if tok is None or not state.refresh_valid(tok) or tok.client_id != client.client_id:
        raise errors.invalid_grant()
    scopes = tok.scopes
    if form.get("scope"):
        requested = normalize_scopes(form["scope"])
        extra = [s for s in requested if s not in tok.scopes]
        if extra:
            raise errors.OAuthError(
                400,
                "invalid_scope",
                "Some requested scopes were invalid. {invalid=[" + ", ".join(extra) + "]}",
            )
        scopes = requested
    access = state.issue_access_token(tok.email, client.client_id, scopes, tok.token)
    body = state.token_response(access, tok, include_refresh=False)
    if "openid" in scopes:
        body["id_token"] = _id_token(state, client, tok.email, scopes)
    return body


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _id_token(
    state: EmulatorState, client: OAuthClient, email: str, scopes: tuple[str, ...]
) -> str:
    """An unsigned-in-spirit JWT (random signature): clients must not trust it for identity."""
    acct = state.account(email)
    now = int(state.clock.now())
    claims: dict[str, Any] = {
        "iss": "https://accounts.google.com",
        "azp": client.client_id,
        "aud": client.client_id,
        "sub": acct.id,
        "iat": now,
        "exp": now + 3599,
    }
    if "https://www.googleapis.com/auth/userinfo.email" in scopes:
        claims.update(email=acct.email, email_verified=True)
    header = {"alg": "RS256", "kid": "emulator", "typ": "JWT"}
    return ".".join(
        [
            _b64(json.dumps(header).encode()),
            _b64(json.dumps(claims).encode()),
            _b64(secrets.token_bytes(256)),
        ]
    )


async def revoke_endpoint(request: Request) -> Response:
    state = emu_state(request)
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    value = form.get("token") or request.query_params.get("token") or ""
    rt = state.refresh_tokens.get(value)
    at = state.access_tokens.get(value)
    if rt is not None and state.refresh_valid(rt):
        state.revoke_refresh(rt)
        state.grants.pop((rt.email, rt.client_id), None)
    elif at is not None and state.access_valid(at):
        at.revoked = True
        parent = state.refresh_tokens.get(at.refresh_token or "")
        if parent is not None:
            state.revoke_refresh(parent)
        state.grants.pop((at.email, at.client_id), None)
    else:
        return _oauth_error(errors.OAuthError(400, "invalid_token", "Token expired or revoked"))
    return Response(b"", media_type="application/json; charset=utf-8")


async def userinfo_v2(request: Request) -> Response:
    try:
        acct = authorize(request, "oauth2.userinfo.get")
    except errors.ApiError as err:
        return error_response(err)
    return JSONResponseGoogle(acct.userinfo_v2())


async def userinfo_v1(request: Request) -> Response:
    try:
        acct = authorize(request, "oauth2.userinfo.v1")
    except errors.ApiError as err:
        return error_response(err)
    return JSONResponseGoogle(acct.userinfo_oidc())
