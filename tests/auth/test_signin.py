"""The browser sign-in end to end against the emulator: an HTTP client that follows the consent
page and its redirects like a browser, and a real headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.emulator.harness import (
    DEFAULT_SCOPES,
    GMAIL_READONLY,
    EmulatorServer,
    answer_consent_page,
    find_chromium,
    headless_chromium_argv,
)
from trayapp.auth.accounts import AccountManager
from trayapp.auth.models import DEFAULT_TOKEN_LIFETIME_S, Account, AccountState
from trayapp.auth.signin import (
    SignInDenied,
    SignInTimeout,
    WrongAccountError,
    grant_from_token_response,
)
from trayapp.emulator.control import ClientInfo

pytestmark = pytest.mark.usefixtures("configured")

EMAIL = "alice@example.com"


class HttpBrowser:
    """An HTTP client playing the browser: GET the consent page, submit it, follow redirects.

    It runs in the background (a browser is another process), so the sign-in can answer the
    redirect while this "browser" waits for the final page.
    """

    def __init__(self, decision: str = "allow", account: str | None = None) -> None:
        self.decision = decision
        self.account = account
        self.urls: list[str] = []
        self.tasks: list[asyncio.Task[httpx.Response]] = []

    def __call__(self, url: str) -> bool:
        self.urls.append(url)
        self.tasks.append(asyncio.get_running_loop().create_task(self._browse(url)))
        return True

    async def _browse(self, url: str) -> httpx.Response:
        async with httpx.AsyncClient(follow_redirects=True, timeout=60) as http:
            # A browser asks for the favicon too: it must get a 404, not count as the callback.
            redirect = urlsplit(parse_qs(urlsplit(url).query)["redirect_uri"][0])
            icon = await http.get(f"http://{redirect.netloc}/favicon.ico")
            assert icon.status_code == 404
            return await answer_consent_page(http, url, self.decision, self.account)

    async def final_page(self) -> httpx.Response:
        return await asyncio.wait_for(self.tasks[-1], 60)


def auth_requests(emu: EmulatorServer) -> list[dict[str, str]]:
    return [dict(e.query) for e in emu.control.requests(path="/o/oauth2/*auth")]


async def test_add_account_through_the_consent_page(
    manager: AccountManager, emu: EmulatorServer
) -> None:
    browser = HttpBrowser()
    printed: list[str] = []
    changes: list[Account] = []
    manager.subscribe(changes.append)

    account = await manager.sign_in(
        None, [GMAIL_READONLY], opener=browser, on_url=printed.append, timeout=60
    )

    assert account.email == EMAIL and account.state is AccountState.SIGNED_IN
    assert GMAIL_READONLY in account.scopes
    assert changes and changes[-1].usable
    assert printed == browser.urls  # the URL to copy is the one the browser opened
    final = await browser.final_page()
    assert final.status_code == 200 and "Signed in" in final.text and EMAIL in final.text

    [query] = auth_requests(emu)
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert query["access_type"] == "offline"
    assert len(query["state"]) >= 32
    assert query["redirect_uri"].startswith("http://127.0.0.1:")
    # One consent page per sign-in, always with a refresh token: prompt=consent every time.
    assert query["prompt"] == "consent" and "login_hint" not in query
    assert "include_granted_scopes" not in query  # a new account has nothing granted yet
    # The listener served one callback and closed.
    port = urlsplit(query["redirect_uri"]).port
    with pytest.raises(OSError):
        _r, w = await asyncio.open_connection("127.0.0.1", port)
        w.close()
    # The tokens work: the provider serves the stored access token.
    assert await manager.provider(account.id).access_token()


async def test_signing_an_account_in_again_hints_it_and_asks_for_consent(
    manager: AccountManager, emu: EmulatorServer
) -> None:
    first = await manager.sign_in(None, [GMAIL_READONLY], opener=HttpBrowser(), timeout=60)
    emu.control.revoke_refresh_token(EMAIL)
    emu.control.clear_log()

    again = await manager.sign_in(first.id, (), opener=HttpBrowser(), timeout=60)

    assert again.id == first.id and again.usable
    [query] = auth_requests(emu)
    assert query["login_hint"] == EMAIL
    assert query["prompt"] == "consent"
    assert query["include_granted_scopes"] == "true"
    assert GMAIL_READONLY in query["scope"]  # the scopes it had are kept


async def test_a_new_account_that_consented_before_needs_one_consent_page_only(
    manager: AccountManager, emu: EmulatorServer, client_info: ClientInfo
) -> None:
    # The user granted this client earlier (say, from a profile since deleted): Google sends
    # no refresh token without prompt=consent. The sign-in asks with it from the start, so one
    # consent page is enough (issue 12: "one consent round per sign-in").
    emu.control.issue_tokens(EMAIL, client_info.id, list(DEFAULT_SCOPES))
    browser = HttpBrowser()
    account = await manager.sign_in(None, [GMAIL_READONLY], opener=browser, timeout=60)
    assert account.usable
    [query] = auth_requests(emu)
    assert query["prompt"] == "consent"
    assert len(browser.urls) == 1


async def test_access_denied(manager: AccountManager, emu: EmulatorServer) -> None:
    browser = HttpBrowser(decision="deny")
    with pytest.raises(SignInDenied, match="denied"):
        await manager.sign_in(None, [GMAIL_READONLY], opener=browser, timeout=60)
    final = await browser.final_page()
    assert final.status_code == 400 and "Sign-in failed" in final.text
    assert manager.accounts() == []


async def test_timeout(manager: AccountManager, emu: EmulatorServer) -> None:
    urls: list[str] = []
    with pytest.raises(SignInTimeout, match="timed out"):
        await manager.sign_in(None, [GMAIL_READONLY], opener=urls.append, timeout=0.2)
    port = urlsplit(parse_qs(urlsplit(urls[0]).query)["redirect_uri"][0]).port
    with pytest.raises(OSError):
        _r, w = await asyncio.open_connection("127.0.0.1", port)
        w.close()


async def test_a_callback_with_the_wrong_state_is_ignored_and_the_sign_in_goes_on(
    manager: AccountManager, emu: EmulatorServer
) -> None:
    """Issue 14.8: any local process can reach the loopback port. A request with the wrong
    ``state`` gets a 400 page and changes nothing: the real browser's answer still signs in."""
    forged_pages: list[httpx.Response] = []
    browser = HttpBrowser()

    def opener(url: str) -> bool:
        redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]

        async def forge_then_browse() -> httpx.Response:
            async with httpx.AsyncClient() as http:
                for params in (
                    {"code": "4/0forged", "state": "wrong"},
                    {"error": "access_denied", "state": "junk"},
                    {"code": "4/0forged"},
                ):
                    forged_pages.append(await http.get(redirect, params=params))
            return await browser._browse(url)

        browser.urls.append(url)
        browser.tasks.append(asyncio.get_running_loop().create_task(forge_then_browse()))
        return True

    account = await manager.sign_in(None, [GMAIL_READONLY], opener=opener, timeout=60)

    assert account.usable and account.email == EMAIL
    assert [p.status_code for p in forged_pages] == [400, 400, 400]
    assert all("does not belong" in p.text for p in forged_pages)
    final = await browser.final_page()
    assert final.status_code == 200 and "Signed in" in final.text
    # Only the real code was exchanged; the forged one never reached the token endpoint.
    assert len(emu.control.requests(path="/token")) == 1


async def test_signing_in_as_someone_else_is_caught(
    manager: AccountManager, emu: EmulatorServer
) -> None:
    emu.control.create_account("bob@example.com", name="Bob")
    alice = await manager.sign_in(None, [GMAIL_READONLY], opener=HttpBrowser(), timeout=60)
    emu.control.revoke_refresh_token(EMAIL)
    browser = HttpBrowser(account="bob@example.com")
    with pytest.raises(WrongAccountError) as info:
        await manager.sign_in(alice.id, (), opener=browser, timeout=60)
    assert "bob@example.com" in str(info.value) and EMAIL in str(info.value)
    final = await browser.final_page()
    assert "bob@example.com" in final.text
    assert manager.get(alice.id).email == EMAIL
    assert [a.email for a in manager.accounts()] == [EMAIL]


async def test_sign_in_can_be_cancelled(manager: AccountManager, emu: EmulatorServer) -> None:
    urls: list[str] = []
    opened = asyncio.Event()

    def opener(url: str) -> None:
        urls.append(url)
        opened.set()

    task = asyncio.create_task(manager.sign_in(None, [GMAIL_READONLY], opener=opener))
    await asyncio.wait_for(opened.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    port = urlsplit(parse_qs(urlsplit(urls[0]).query)["redirect_uri"][0]).port
    with pytest.raises(OSError):
        _r, w = await asyncio.open_connection("127.0.0.1", port)
        w.close()


async def test_sign_out_revokes_and_deletes_local_secrets(
    manager: AccountManager, emu: EmulatorServer, keyring_mem: Any
) -> None:
    account = await manager.sign_in(None, [GMAIL_READONLY], opener=HttpBrowser(), timeout=60)
    token = await manager.provider(account.id).access_token()
    result = await manager.sign_out(account.id)
    assert result.revoked
    assert keyring_mem.data == {}
    after = manager.get(account.id)
    assert after.state is AccountState.SIGNED_OUT and after.email == EMAIL
    [revoke] = emu.control.requests(path="/revoke")
    assert revoke.status == 200
    async with httpx.AsyncClient() as http:
        r = await http.get(
            emu.url("/oauth2/v2/userinfo"), headers={"Authorization": f"Bearer {token}"}
        )
    assert r.status_code == 401  # revoked at the provider, not just forgotten


# --- a real browser ------------------------------------------------------------------------


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """An opener that starts headless Chromium on the URL (flags per desktop-testing.md)."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium is absent (apt-get install chromium); CI installs it")
    procs: list[subprocess.Popen[bytes]] = []

    def open_(url: str) -> None:
        profile = tmp_path / f"chromium-{len(procs)}"
        profile.mkdir()
        procs.append(
            subprocess.Popen(
                headless_chromium_argv(chromium, url, profile),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "HOME": str(profile)},
                # Its own process group, so the renderer and helper processes die with it.
                start_new_session=True,
            )
        )

    yield open_
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def test_headless_chromium_signs_in_through_the_consent_page(
    manager: AccountManager, emu: EmulatorServer, chromium: Callable[[str], None]
) -> None:
    emu.control.set_consent(auto_submit="allow")  # the page clicks "Allow" in the browser
    account = await manager.sign_in(None, [GMAIL_READONLY], opener=chromium, timeout=90)
    assert account.email == EMAIL and account.usable
    # The browser went through the consent page and submitted it.
    assert emu.control.requests(path="/o/oauth2/v2/auth/consent")
    assert await manager.provider(account.id).access_token()


async def test_headless_chromium_deny(
    manager: AccountManager, emu: EmulatorServer, chromium: Callable[[str], None]
) -> None:
    emu.control.set_consent(auto_submit="deny")
    with pytest.raises(SignInDenied):
        await manager.sign_in(None, [GMAIL_READONLY], opener=chromium, timeout=90)


@pytest.mark.parametrize(
    ("extra", "scopes", "lifetime"),
    [
        ({"scope": f"openid {GMAIL_READONLY}", "expires_in": 120}, ("openid", GMAIL_READONLY), 120),
        # RFC 6749 5.1: scope may be omitted when it is what was requested.
        ({"expires_in": "120"}, ("openid",), 120),
        # No (or a malformed) lifetime: Google's usual hour, not a crash or a zero.
        ({}, ("openid",), DEFAULT_TOKEN_LIFETIME_S),
        ({"expires_in": "soon"}, ("openid",), DEFAULT_TOKEN_LIFETIME_S),
    ],
)
def test_a_token_response_becomes_a_grant(
    extra: dict[str, Any], scopes: tuple[str, ...], lifetime: float
) -> None:
    response = {"access_token": "ya29.a", "refresh_token": "1//r", **extra}
    grant = grant_from_token_response(
        response, email=EMAIL, name="Alice", requested_scopes=["openid"]
    )
    assert (grant.email, grant.name, grant.scopes) == (EMAIL, "Alice", scopes)
    assert (grant.access_token, grant.refresh_token, grant.expires_in) == (
        "ya29.a",
        "1//r",
        lifetime,
    )
    no_refresh = grant_from_token_response({"access_token": "ya29.b"}, email=EMAIL)
    assert no_refresh.refresh_token is None
