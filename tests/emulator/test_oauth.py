"""OAuth: consent page, code exchange with PKCE, refresh, revocation, lifetimes, error bodies."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.emulator.harness import EmulatorServer, Session
from trayapp.emulator.control import ClientInfo

from .conftest import bearer, run_client

GMAIL = "https://www.googleapis.com/auth/gmail.readonly"
REDIRECT = "http://127.0.0.1:53123/"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    return verifier, challenge


class FormParser(HTMLParser):
    """Collects the consent form as a browser would submit it."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}
        self.radios: list[tuple[str, bool]] = []
        self.buttons: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a["action"]
        elif tag == "input" and a.get("type") == "hidden":
            self.fields[a["name"]] = a["value"]
        elif tag == "input" and a.get("type") == "radio":
            self.radios.append((a["value"], "checked" in a))
        elif tag == "button":
            self.buttons[a["id"]] = a["value"]


def auth_params(client: ClientInfo, challenge: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client.id,
        "redirect_uri": REDIRECT,
        "scope": f"openid email {GMAIL}",
        "state": "st4te",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "access_type": "offline",
        **extra,
    }


async def consent(
    http: httpx.AsyncClient,
    params: dict[str, str],
    decision: str = "allow",
    account: str | None = None,
) -> dict[str, list[str]]:
    page = await http.get("/o/oauth2/v2/auth", params=params)
    assert page.status_code == 200
    form = FormParser()
    form.feed(page.text)
    data = dict(form.fields)
    data["account"] = account or next(v for v, checked in form.radios if checked)
    data["decision"] = form.buttons[
        "submit_approve_access" if decision == "allow" else "submit_deny_access"
    ]
    resp = await http.post(
        form.action,
        content=urlencode(data),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 302
    location = resp.headers["location"]
    assert location.startswith(REDIRECT)
    return parse_qs(urlsplit(location).query)


async def exchange(
    http: httpx.AsyncClient,
    client: ClientInfo,
    code: str,
    verifier: str | None,
    *,
    basic: bool = True,
) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    if verifier is not None:
        form["code_verifier"] = verifier
    if basic:
        return await http.post("/token", data=form, auth=(client.id, client.secret))
    return await http.post(
        "/token", data={**form, "client_id": client.id, "client_secret": client.secret}
    )


@pytest.fixture
def client(emu: EmulatorServer) -> ClientInfo:
    emu.control.create_account("alice@example.com", name="Alice Example")
    return emu.control.create_client()


async def test_consent_form_code_exchange_with_pkce_basic_auth(
    http: httpx.AsyncClient, client: ClientInfo
) -> None:
    verifier, challenge = pkce()
    query = await consent(http, auth_params(client, challenge))
    assert query["state"] == ["st4te"]
    assert query["code"][0].startswith("4/0")
    resp = await exchange(http, client, query["code"][0], verifier)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3599
    assert body["scope"].split() == [
        "openid",
        "https://www.googleapis.com/auth/userinfo.email",
        GMAIL,
    ]
    assert body["refresh_token"].startswith("1//")
    assert body["id_token"].count(".") == 2
    info = await http.get("/oauth2/v2/userinfo", headers=bearer(body["access_token"]))
    assert info.json()["email"] == "alice@example.com"
    oidc = await http.get("/v1/userinfo", headers=bearer(body["access_token"]))
    assert oidc.json()["email_verified"] is True


async def test_code_is_one_time_and_expires(
    emu: EmulatorServer, http: httpx.AsyncClient, client: ClientInfo
) -> None:
    verifier, challenge = pkce()
    code = (await consent(http, auth_params(client, challenge)))["code"][0]
    assert (await exchange(http, client, code, verifier, basic=False)).status_code == 200
    again = await exchange(http, client, code, verifier)
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_grant", "error_description": "Bad Request"}

    code2 = (await consent(http, auth_params(client, challenge)))["code"][0]
    emu.control.advance_clock(601)
    late = await exchange(http, client, code2, verifier)
    assert late.json() == {"error": "invalid_grant", "error_description": "Bad Request"}


async def test_pkce_errors_verbatim(http: httpx.AsyncClient, client: ClientInfo) -> None:
    verifier, challenge = pkce()
    code = (await consent(http, auth_params(client, challenge)))["code"][0]
    missing = await exchange(http, client, code, None)
    assert missing.status_code == 400
    assert missing.json() == {
        "error": "invalid_grant",
        "error_description": "Missing code verifier.",
    }
    wrong = await exchange(http, client, code, verifier + "x")
    assert wrong.json() == {"error": "invalid_grant", "error_description": "Invalid code verifier."}
    # A failed verification does not burn the code.
    assert (await exchange(http, client, code, verifier)).status_code == 200


async def test_redirect_uri_must_match_and_be_loopback(
    http: httpx.AsyncClient, client: ClientInfo
) -> None:
    verifier, challenge = pkce()
    bad = await http.get(
        "/o/oauth2/v2/auth",
        params=auth_params(client, challenge, redirect_uri="https://evil.example/cb"),
    )
    assert bad.status_code == 400
    assert "redirect_uri_mismatch" in bad.text
    ok = await http.get(
        "/o/oauth2/auth", params=auth_params(client, challenge, redirect_uri="http://localhost:9/x")
    )
    assert ok.status_code == 200
    code = (await consent(http, auth_params(client, challenge)))["code"][0]
    resp = await http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://127.0.0.1:1/",
            "code_verifier": verifier,
        },
        auth=(client.id, client.secret),
    )
    assert resp.json() == {"error": "invalid_grant", "error_description": "Bad Request"}


async def test_client_authentication_errors(http: httpx.AsyncClient, client: ClientInfo) -> None:
    unknown = await http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": "x",
            "client_id": "nope",
            "client_secret": "s",
        },
    )
    assert unknown.status_code == 401
    assert unknown.json() == {
        "error": "invalid_client",
        "error_description": "The OAuth client was not found.",
    }
    wrong = await http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        auth=(client.id, "wrong"),
    )
    assert wrong.status_code == 401
    assert wrong.json() == {"error": "invalid_client", "error_description": "Unauthorized"}
    no_grant = await http.post("/token", data={"client_id": client.id})
    assert no_grant.json() == {
        "error": "invalid_request",
        "error_description": "Required parameter is missing: grant_type",
    }
    unknown_page = await http.get(
        "/o/oauth2/v2/auth",
        params={
            "client_id": "nope",
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": GMAIL,
        },
    )
    assert unknown_page.status_code == 401
    assert "invalid_client" in unknown_page.text


async def test_refresh_grant_and_revocation(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    form = session.refresh_form()
    resp = await http.post("/token", data=form)
    assert resp.status_code == 200
    body = resp.json()
    assert "refresh_token" not in body
    assert body["expires_in"] == 3599 and body["token_type"] == "Bearer"
    narrowed = await http.post("/token", data={**form, "scope": GMAIL})
    assert narrowed.json()["scope"] == GMAIL

    assert (await http.post("/revoke", data={"token": session.refresh_token})).status_code == 200
    dead = await http.post("/token", data=form)
    assert dead.status_code == 400
    assert dead.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    # Access tokens minted from the revoked refresh token die with it.
    api = await http.get("/oauth2/v2/userinfo", headers=bearer(body["access_token"]))
    assert api.status_code == 401
    assert api.json()["error"]["errors"][0]["reason"] == "authError"
    again = await http.post("/revoke", data={"token": session.refresh_token})
    assert again.json() == {
        "error": "invalid_token",
        "error_description": "Token expired or revoked",
    }


async def test_access_token_lifetime_on_virtual_clock(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    assert (
        await http.get("/oauth2/v2/userinfo", headers=bearer(session.access_token))
    ).status_code == 200
    emu.control.advance_clock(3600)
    resp = await http.get("/oauth2/v2/userinfo", headers=bearer(session.access_token))
    assert resp.status_code == 401
    assert (
        resp.headers["www-authenticate"]
        == 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
    )
    assert resp.json()["error"]["message"].startswith(
        "Request had invalid authentication credentials."
    )


async def test_expire_access_tokens_and_revoke_via_control(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    assert emu.control.expire_access_tokens(session.email) == 1
    assert (
        await http.get("/oauth2/v2/userinfo", headers=bearer(session.access_token))
    ).status_code == 401
    assert emu.control.revoke_refresh_token(session.email) == 1
    resp = await http.post("/token", data=session.refresh_form())
    assert resp.json()["error_description"] == "Token has been expired or revoked."


async def test_testing_client_refresh_tokens_expire_after_seven_days(
    emu: EmulatorServer, http: httpx.AsyncClient
) -> None:
    s = emu.quick_setup("t@example.com", [GMAIL], testing_client=True)
    form = s.refresh_form()
    emu.control.advance_clock(7 * 24 * 3600 - 60)
    assert (await http.post("/token", data=form)).status_code == 200
    emu.control.advance_clock(120)
    resp = await http.post("/token", data=form)
    assert resp.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    # Basic scopes only: no 7-day limit.
    basic = emu.control.issue_tokens("t@example.com", s.client.id, ["openid", "email"])
    emu.control.advance_clock(30 * 24 * 3600)
    ok = await http.post("/token", data={**form, "refresh_token": basic["refresh_token"]})
    assert ok.status_code == 200


async def test_refresh_tokens_capped_per_account_and_client(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    emu.control.set_refresh_token_cap(2)
    second = emu.control.issue_tokens(session.email, session.client.id, [GMAIL])
    third = emu.control.issue_tokens(session.email, session.client.id, [GMAIL])

    async def refresh(tok: str) -> int:
        r = await http.post("/token", data=session.refresh_form(tok))
        return r.status_code

    assert [
        await refresh(t)
        for t in (session.refresh_token, second["refresh_token"], third["refresh_token"])
    ] == [400, 200, 200]


async def test_refresh_token_only_at_first_consent_or_prompt_consent(
    http: httpx.AsyncClient, client: ClientInfo
) -> None:
    verifier, challenge = pkce()
    first = await exchange(
        http, client, (await consent(http, auth_params(client, challenge)))["code"][0], verifier
    )
    assert "refresh_token" in first.json()
    second = await exchange(
        http, client, (await consent(http, auth_params(client, challenge)))["code"][0], verifier
    )
    assert "refresh_token" not in second.json()
    forced = await exchange(
        http,
        client,
        (await consent(http, auth_params(client, challenge, prompt="consent")))["code"][0],
        verifier,
    )
    assert "refresh_token" in forced.json()
    online = await exchange(
        http,
        client,
        (
            await consent(
                http, auth_params(client, challenge, access_type="online", prompt="consent")
            )
        )["code"][0],
        verifier,
    )
    assert "refresh_token" not in online.json()


async def test_include_granted_scopes_adds_earlier_grants(
    http: httpx.AsyncClient, client: ClientInfo
) -> None:
    _, challenge = pkce()
    await consent(http, auth_params(client, challenge))
    cal = "https://www.googleapis.com/auth/calendar.readonly"
    q = await consent(
        http, auth_params(client, challenge, scope=cal, include_granted_scopes="true")
    )
    assert set(q["scope"][0].split()) == {
        cal,
        GMAIL,
        "openid",
        "https://www.googleapis.com/auth/userinfo.email",
    }
    q2 = await consent(http, auth_params(client, challenge, scope=cal))
    assert q2["scope"] == [cal]


async def test_incremental_consent_page_and_tokens_cover_the_combined_grant(
    http: httpx.AsyncClient, client: ClientInfo
) -> None:
    """Google's include_granted_scopes (docs/emulator.md): the consent page asks only for what
    is new, and the code's access and refresh tokens cover the old scopes and the new ones."""
    verifier, challenge = pkce()
    await consent(http, auth_params(client, challenge))
    cal = "https://www.googleapis.com/auth/calendar.readonly"
    params = auth_params(client, challenge, scope=cal, include_granted_scopes="true")
    page = await http.get("/o/oauth2/v2/auth", params=params)
    asked = page.text.split('id="scopes">', 1)[1].split("</ul>", 1)[0]
    assert cal in asked and GMAIL not in asked  # only the new scope is asked for
    assert GMAIL in page.text.split('id="granted">', 1)[1]  # and what it has is said
    q = await consent(http, {**params, "prompt": "consent"})
    tokens = (await exchange(http, client, q["code"][0], verifier)).json()
    assert {cal, GMAIL} <= set(tokens["scope"].split())
    refreshed = await http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(client.id, client.secret),
    )
    assert {cal, GMAIL} <= set(refreshed.json()["scope"].split())
    # Without the parameter the page asks for everything requested, and nothing more is given.
    plain = await http.get("/o/oauth2/v2/auth", params=auth_params(client, challenge, scope=cal))
    assert 'id="granted"' not in plain.text


async def test_deny_choose_account_and_login_hint(
    emu: EmulatorServer, http: httpx.AsyncClient, client: ClientInfo
) -> None:
    verifier, challenge = pkce()
    denied = await consent(http, auth_params(client, challenge), decision="deny")
    assert denied == {"state": ["st4te"], "error": ["access_denied"]}

    emu.control.create_account("bob@example.com", name="Bob")
    page = await http.get(
        "/o/oauth2/v2/auth", params=auth_params(client, challenge, login_hint="bob@example.com")
    )
    form = FormParser()
    form.feed(page.text)
    assert form.radios == [("alice@example.com", False), ("bob@example.com", True)]
    code = (await consent(http, auth_params(client, challenge), account="bob@example.com"))["code"][
        0
    ]
    tokens = (await exchange(http, client, code, verifier)).json()
    info = await http.get("/oauth2/v2/userinfo", headers=bearer(tokens["access_token"]))
    assert info.json()["email"] == "bob@example.com"


async def test_auto_approve_and_auto_deny_redirect_immediately(
    emu: EmulatorServer, http: httpx.AsyncClient, client: ClientInfo
) -> None:
    verifier, challenge = pkce()
    emu.control.set_consent(auto_approve=True)
    resp = await http.get("/o/oauth2/v2/auth", params=auth_params(client, challenge))
    assert resp.status_code == 302
    q = parse_qs(urlsplit(resp.headers["location"]).query)
    assert q["state"] == ["st4te"]
    assert (await exchange(http, client, q["code"][0], verifier)).status_code == 200
    emu.control.set_consent(deny=True)
    resp = await http.get("/o/oauth2/v2/auth", params=auth_params(client, challenge))
    assert parse_qs(urlsplit(resp.headers["location"]).query) == {
        "error": ["access_denied"],
        "state": ["st4te"],
    }


async def test_google_auth_credentials_refresh_against_emulator(
    emu: EmulatorServer, session: Session
) -> None:
    """The real google-auth library refreshes through the emulator's token endpoint."""
    args = (emu.url("/token"), session.refresh_token, session.client.id, session.client.secret)
    out = await run_client("google_auth_refresh.py", *args)
    assert out == {"ok": True, "token_prefix": "ya29.", "has_expiry": True}
    entries = emu.control.requests(api_method="oauth.token")
    assert len(entries) == 1
    # Secrets are fingerprinted in the request log.
    assert session.refresh_token not in entries[0].body.decode()
    assert re.search(r"refresh_token=sha256:[0-9a-f]{12}", entries[0].body.decode())
    emu.control.revoke_refresh_token(session.email)
    dead = await run_client("google_auth_refresh.py", *args)
    assert dead["ok"] is False and dead["retryable"] is False
    assert dead["args"] == [
        "invalid_grant: Token has been expired or revoked.",
        {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
    ]
