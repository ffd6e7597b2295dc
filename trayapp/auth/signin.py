"""Browser sign-in for installed apps (RFC 8252): loopback redirect + PKCE, in asyncio.

The flow: listen on ``127.0.0.1`` on a free port; open the system browser on Google's consent
page with a PKCE S256 challenge and a random ``state``; wait (cancellable, with a timeout) for
the one redirect back to the loopback listener; check ``state``; exchange the code for tokens
with our own httpx call; learn who signed in (userinfo, else the Gmail profile); then answer
the browser with a friendly page saying what happened, and close the listener.

Why not google-auth-oauthlib's ``InstalledAppFlow``: it is blocking (a ``wsgiref`` server on a
thread, not cancellable), it goes through requests-oauthlib which refuses plain-http token
endpoints (the emulator) unless an environment variable disables the check process-wide, and
it rewrites the callback URL to https before parsing it. The loopback listener here is a
minimal HTTP/1.1 responder on asyncio streams: it needs to read one GET request line and answer
one page, which does not justify starting a web framework.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import html
import logging
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import threading
import webbrowser
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from trayapp import DISPLAY_NAME
from trayapp.auth.client_config import ClientConfig
from trayapp.auth.models import DEFAULT_TOKEN_LIFETIME_S
from trayapp.core.errors import TrayappError
from trayapp.core.redact import redact, register_secret

log = logging.getLogger(__name__)

OPENID_SCOPES = ("openid", "https://www.googleapis.com/auth/userinfo.email")
DEFAULT_TIMEOUT = 300.0  # seconds the user has to finish in the browser
_MAX_REQUEST_HEAD = 16 * 1024
_CONNECTION_READ_TIMEOUT = 15.0

Opener = Callable[[str], Any]


class SignInError(TrayappError):
    """The browser sign-in did not complete; the message says why and what to do."""


class SignInDenied(SignInError):
    pass


class SignInTimeout(SignInError):
    pass


class SignInStateMismatch(SignInError):
    pass


class GrantNotStored(SignInError):
    """Google signed the user in, but the grant is not stored yet: the app must ask the user.

    The browser is told to go back to the app (never "Signed in"); the grant waits in memory
    under ``pending_id`` so that finishing needs no second consent page.
    """

    def __init__(self, message: str, *, pending_id: str, email: str) -> None:
        super().__init__(message)
        self.pending_id = pending_id
        self.email = email


class KeyringUnavailable(GrantNotStored):
    """The system keyring could not store the grant (locked, no login collection, prompt
    dismissed). One choice for the user: unlock or create the keyring and retry
    (``AccountManager.store_pending_grant(pending_id)``), or keep the tokens in the 0600 file
    (``store_pending_grant(pending_id, use_file=True)``), which the app then warns about.
    ``detail`` is the keyring's own words (no secrets), for logs and "details" views.
    """

    def __init__(self, message: str, *, pending_id: str, email: str, detail: str) -> None:
        super().__init__(message, pending_id=pending_id, email=email)
        self.detail = detail


class WrongAccountError(SignInError):
    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class Grant:
    """What a completed sign-in yields. Holds tokens: never log it (its repr hides them)."""

    email: str
    name: str | None
    scopes: tuple[str, ...]
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: float
    obtained_at: datetime


@dataclass(frozen=True)
class AuthRequest:
    """One authorization request: the URL to open plus what the callback is checked against."""

    url: str
    redirect_uri: str
    state: str = field(repr=False)
    code_verifier: str = field(repr=False)


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge): 43-char verifier from 32 random bytes (RFC 7636 4.1)."""
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


def build_auth_request(
    client: ClientConfig,
    redirect_uri: str,
    scopes: Sequence[str],
    *,
    login_hint: str | None = None,
    force_consent: bool = False,
    include_granted_scopes: bool = False,
) -> AuthRequest:
    """The consent-page URL for these scopes, with a fresh state and PKCE verifier."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(dict.fromkeys(scopes)),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "access_type": "offline",
    }
    if include_granted_scopes:
        params["include_granted_scopes"] = "true"
    if login_hint:
        params["login_hint"] = login_hint
    if force_consent:
        # Google returns a refresh token only on first consent or when asked to show the
        # consent screen again; callers ask only when they know none would come back.
        params["prompt"] = "consent"
    sep = "&" if urlsplit(client.auth_uri).query else "?"
    url = client.auth_uri + sep + urlencode(params)
    return AuthRequest(url=url, redirect_uri=redirect_uri, state=state, code_verifier=verifier)


# --- the loopback listener ---------------------------------------------------------------------


@dataclass
class _Callback:
    params: dict[str, str]
    writer: asyncio.StreamWriter


class LoopbackReceiver:
    """Accepts exactly one OAuth redirect on 127.0.0.1:<free port>, then stops listening.

    Requests to other paths (a browser's ``/favicon.ico``) get a 404 and do not count. The
    connection of the accepted callback is kept open until :meth:`respond` sends the final
    page, so the browser shows the real outcome (signed in as X, or what went wrong).
    """

    def __init__(self, path: str = "/") -> None:
        self._path = path
        # Set once the request is built: a callback whose ``state`` differs is answered 400
        # and ignored (any local process can reach the port; only the browser knows it).
        self.expected_state: str | None = None
        self.ignored = 0  # callbacks ignored for a wrong state (tests, logs)
        self._server: asyncio.Server | None = None
        self._result: asyncio.Future[_Callback] | None = None
        self.port: int = 0

    async def __aenter__(self) -> LoopbackReceiver:
        self._result = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_server(self._handle, host="127.0.0.1", port=0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}{self._path}"

    async def wait(self) -> dict[str, str]:
        assert self._result is not None, "use `async with LoopbackReceiver()`"
        callback = await asyncio.shield(self._result)
        return callback.params

    async def open_and_wait(
        self,
        url: str,
        state: str,
        *,
        opener: Callable[[str], Awaitable[Any] | Any],
        on_url: Callable[[str], None] | None,
        wait_s: float,
        timed_out: str,
    ) -> dict[str, str]:
        """Open ``url`` in the browser and wait for its redirect carrying ``state``.

        A callback with another state is refused (see :attr:`expected_state`); no answer within
        ``wait_s`` seconds raises :class:`SignInTimeout` with the words ``timed_out``.
        """
        self.expected_state = state
        if on_url is not None:
            on_url(url)
        opened = opener(url)
        if asyncio.iscoroutine(opened) or isinstance(opened, asyncio.Future):
            opened = await opened
        if opened is False:
            log.warning("could not open a browser; the user must open the sign-in URL by hand")
        try:
            return await asyncio.wait_for(self.wait(), wait_s)
        except TimeoutError:
            raise SignInTimeout(timed_out) from None

    async def respond(self, status: int, page: str) -> None:
        """Send the final page to the browser and close the connection."""
        if self._result is None or not self._result.done() or self._result.cancelled():
            return
        writer = self._result.result().writer
        await _send(writer, status, page)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        if self._result is not None and self._result.done() and not self._result.cancelled():
            writer = self._result.result().writer
            if not writer.is_closing():
                await _send(writer, 200, _page("Sign-in finished", "You can close this tab."))
        elif self._result is not None and not self._result.done():
            self._result.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        keep_open = False
        try:
            try:
                head = await asyncio.wait_for(
                    reader.readuntil(b"\r\n\r\n"), _CONNECTION_READ_TIMEOUT
                )
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            if len(head) > _MAX_REQUEST_HEAD:
                await _send(writer, 431, _page("Request too large", ""))
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            if len(parts) != 3 or parts[0] != "GET":
                await _send(writer, 405, _page("Not allowed", "This page only accepts GET."))
                return
            target = urlsplit(parts[1])
            query = {k: v[0] for k, v in parse_qs(target.query, keep_blank_values=True).items()}
            is_callback = target.path == self._path and (
                "code" in query or "error" in query or "state" in query
            )
            if not is_callback or self._result is None or self._result.done():
                await _send(writer, 404, _page("Not found", ""))
                return
            if self.expected_state is not None and not secrets.compare_digest(
                query.get("state", "").encode(), self.expected_state.encode()
            ):
                self.ignored += 1
                log.warning("ignored a sign-in callback with the wrong state; still waiting")
                await _send(
                    writer,
                    400,
                    _page(
                        "Not this sign-in",
                        "This answer does not belong to the sign-in in progress (an old tab?). "
                        "Finish the sign-in in the tab that Pattern Sync opened.",
                        ok=False,
                    ),
                )
                return
            keep_open = True
            self._result.set_result(_Callback(query, writer))
            # One callback only: stop accepting connections now.
            if self._server is not None:
                self._server.close()
        finally:
            if not keep_open:
                writer.close()


async def _send(writer: asyncio.StreamWriter, status: int, page: str) -> None:
    reasons = {
        200: "OK",
        400: "Bad Request",
        404: "Not Found",
        405: "Method Not Allowed",
        431: "Request Header Fields Too Large",
    }
    body = page.encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Referrer-Policy: no-referrer\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    try:
        writer.write(head + body)
        await writer.drain()
    except (ConnectionError, RuntimeError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _page(title: str, message: str, *, ok: bool = True) -> str:
    colour = "#1e7e34" if ok else "#b02a37"
    icon = "&#10003;" if ok else "&#10007;"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(DISPLAY_NAME)}: {html.escape(title)}</title>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        "<style>body{font-family:system-ui,sans-serif;display:flex;min-height:90vh;"
        "align-items:center;justify-content:center;background:#f6f7f9;color:#222}"
        "main{background:#fff;padding:2em 2.5em;border-radius:12px;max-width:34em;"
        "box-shadow:0 2px 12px #0002}h1{font-size:1.3em;color:" + colour + "}</style>"
        f"</head><body><main><h1 id='result'>{icon} {html.escape(title)}</h1>"
        f"<p>{html.escape(message)}</p><p>{html.escape(DISPLAY_NAME)}</p></main></body></html>"
    )


# --- the flow ----------------------------------------------------------------------------------


async def default_opener(url: str) -> bool:
    """Start the system browser on ``url`` without waiting for it; False if none started."""
    return await asyncio.to_thread(launch_browser, url)


def launch_browser(url: str) -> bool:
    """Start ``$BROWSER`` (or ``xdg-open`` on Linux/BSD) detached; else ask :mod:`webbrowser`.

    Not :func:`webbrowser.open` for those two: for a ``$BROWSER`` command it waits until the
    browser exits, and a browser that was not already running stays open, so sign-in (which
    needs the answer the browser sends) and the process itself would hang. Each entry of the
    ``os.pathsep``-separated ``$BROWSER`` is tried in turn (``%s`` marks where the URL goes,
    else it is appended), in its own session so a Ctrl+C in our terminal does not reach it.
    """
    commands = [c for c in os.environ.get("BROWSER", "").split(os.pathsep) if c.strip()]
    if sys.platform not in ("win32", "darwin") and shutil.which("xdg-open"):
        commands.append("xdg-open %s")
    for command in commands:
        try:
            argv = shlex.split(command)
        except ValueError:
            continue
        if not argv:
            continue
        argv = [a.replace("%s", url) for a in argv] if "%s" in command else [*argv, url]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            log.info("could not start the browser %r: %s", argv[0], exc)
            continue
        # Reap it whenever it exits, so no zombie is left; a daemon thread never delays exit.
        threading.Thread(target=proc.wait, name="browser-reaper", daemon=True).start()
        return True
    return bool(webbrowser.open(url, 1))


async def run_sign_in(
    client: ClientConfig,
    scopes: Sequence[str],
    *,
    http: httpx.AsyncClient,
    login_hint: str | None = None,
    expected_email: str | None = None,
    force_consent: bool = False,
    include_granted_scopes: bool = False,
    opener: Callable[[str], Awaitable[Any] | Any] | None = None,
    on_url: Callable[[str], None] | None = None,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - the user's time in the browser
    keep: Callable[[Grant], Awaitable[object]] | None = None,
) -> Grant:
    """Run the whole browser sign-in and return the grant. Cancellable at any await.

    ``on_url`` receives the consent URL before the browser is opened, so the CLI can print it
    and the tray can offer "copy link" (for when the browser opens on another profile).
    ``opener`` opens the URL (default: the system browser; tests pass headless Chromium or an
    HTTP client). ``expected_email`` makes signing in as someone else an error. ``keep``
    stores the grant: the browser's "Signed in" page is sent only after it returned, so the
    page never claims a sign-in the app did not keep (a :class:`GrantNotStored` it raises
    sends the browser back to the app instead).
    """
    all_scopes = tuple(dict.fromkeys((*OPENID_SCOPES, *scopes)))
    async with LoopbackReceiver() as receiver:
        request = build_auth_request(
            client,
            receiver.redirect_uri,
            all_scopes,
            login_hint=login_hint or expected_email,
            force_consent=force_consent,
            include_granted_scopes=include_granted_scopes,
        )
        params = await receiver.open_and_wait(
            request.url,
            request.state,
            opener=opener or default_opener,
            on_url=on_url,
            wait_s=timeout,
            timed_out=f"Sign-in timed out after {int(timeout)} s without an answer from the "
            "browser; start the sign-in again and finish it in the browser window that opens "
            "(or open the printed link yourself)",
        )
        try:
            grant = await _complete(client, request, params, http=http, scopes=all_scopes)
            if expected_email and grant.email.lower() != expected_email.lower():
                raise WrongAccountError(
                    f"You signed in as {grant.email}, but this account is {expected_email}; "
                    f"sign in again and choose {expected_email} in Google's account chooser "
                    f"(or add {grant.email} as a new account)",
                    expected=expected_email,
                    actual=grant.email,
                )
            if keep is not None:
                await keep(grant)
        except GrantNotStored as exc:
            await receiver.respond(
                200,
                _page(
                    "One more step in Pattern Sync",
                    f"Google signed you in as {exc.email}, but Pattern Sync could not save the "
                    "sign-in yet. Go back to Pattern Sync to finish; you will not need to sign "
                    "in with Google again.",
                    ok=False,
                ),
            )
            raise
        except SignInError as exc:
            await receiver.respond(400, _page("Sign-in failed", str(exc), ok=False))
            raise
        except BaseException:
            await receiver.respond(
                400,
                _page("Sign-in failed", "Something went wrong; see Pattern Sync.", ok=False),
            )
            raise
        await receiver.respond(
            200,
            _page(
                "Signed in",
                f"Pattern Sync is now signed in as {grant.email}. You can close this tab.",
            ),
        )
        return grant


async def _complete(
    client: ClientConfig,
    request: AuthRequest,
    params: dict[str, str],
    *,
    http: httpx.AsyncClient,
    scopes: Sequence[str],
) -> Grant:
    if not secrets.compare_digest(params.get("state", ""), request.state):
        raise SignInStateMismatch(
            "The browser's answer did not belong to this sign-in (the 'state' did not match: "
            "an old tab, or another app's redirect); start the sign-in again"
        )
    error = params.get("error")
    if error == "access_denied":
        raise SignInDenied(
            "Access was denied in the browser, so Pattern Sync cannot use this account; sign in "
            "again and choose Allow (or Continue) on Google's consent page"
        )
    if error:
        raise SignInError(
            f"Google refused the sign-in ({redact(error)}: "
            f"{redact(params.get('error_description', ''))[:200]}); try again"
        )
    code = params.get("code")
    if not code:
        raise SignInError("The browser returned no authorization code; start the sign-in again")
    register_secret(code)
    tokens = await _exchange_code(client, code, request, http=http)
    access_token = str(tokens["access_token"])
    refresh_token = tokens.get("refresh_token")
    register_secret(access_token, refresh_token if isinstance(refresh_token, str) else None)
    email, name = await fetch_identity(client, access_token, http=http)
    requested = str(params.get("scope") or " ".join(scopes)).split()
    return grant_from_token_response(tokens, email=email, name=name, requested_scopes=requested)


def grant_from_token_response(
    tokens: Mapping[str, Any],
    *,
    email: str,
    name: str | None = None,
    requested_scopes: Sequence[str] = (),
) -> Grant:
    """A :class:`Grant` from a token endpoint's JSON answer (RFC 6749 5.1) for a known user.

    The browser flow ends here, and so does anything else that already holds tokens for an
    account and wants to store them through ``AccountManager.complete_sign_in`` (demo mode,
    tests and benchmarks minting tokens from the emulator), so a token response is read one
    way everywhere. The token response names no user, hence ``email``. ``scope`` may be
    omitted when it equals the request (RFC 6749 5.1), hence ``requested_scopes``; a missing
    or malformed ``expires_in`` means Google's usual lifetime. Redaction is not its job: the
    flow registers tokens as they arrive and ``complete_sign_in`` registers what it stores.
    """
    refresh_token = tokens.get("refresh_token")
    try:
        expires_in = float(tokens.get("expires_in", DEFAULT_TOKEN_LIFETIME_S))
    except (TypeError, ValueError):
        expires_in = DEFAULT_TOKEN_LIFETIME_S
    scope = tokens.get("scope")
    return Grant(
        email=email,
        name=name,
        scopes=tuple(str(scope).split()) if scope else tuple(requested_scopes),
        access_token=str(tokens["access_token"]),
        refresh_token=str(refresh_token) if refresh_token else None,
        expires_in=expires_in,
        obtained_at=datetime.now(UTC),
    )


async def _exchange_code(
    client: ClientConfig, code: str, request: AuthRequest, *, http: httpx.AsyncClient
) -> dict[str, Any]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.redirect_uri,
        "client_id": client.client_id,
        "client_secret": client.secret,
        "code_verifier": request.code_verifier,
    }
    try:
        response = await http.post(
            client.token_uri, data=form, headers={"Accept": "application/json"}, timeout=30
        )
    except httpx.HTTPError as exc:
        raise SignInError(
            f"Cannot reach Google's token endpoint ({type(exc).__name__}); check the network "
            "and sign in again"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
        err = str(body.get("error", "")) if isinstance(body, dict) else ""
        desc = str(body.get("error_description", "")) if isinstance(body, dict) else ""
        if err == "invalid_client":
            raise SignInError(
                "Google rejected the app's OAuth client (invalid_client); import a valid "
                "Desktop-app client JSON with `trayapp accounts client import FILE`"
            )
        raise SignInError(
            f"Google did not accept the sign-in code (HTTP {response.status_code}"
            f"{', ' + redact(err) if err else ''}{': ' + redact(desc)[:200] if desc else ''}); "
            "start the sign-in again"
        )
    return body


async def fetch_identity(
    client: ClientConfig, access_token: str, *, http: httpx.AsyncClient
) -> tuple[str, str | None]:
    """(email, display name) of the token's owner: userinfo, else the Gmail profile."""
    headers = {"Authorization": f"Bearer {access_token}"}
    problems: list[str] = []
    try:
        response = await http.get(client.userinfo_uri, headers=headers, timeout=30)
        if response.status_code == 200:
            data = response.json()
            email = data.get("email")
            if isinstance(email, str) and email:
                name = data.get("name")
                return email, name if isinstance(name, str) else None
        problems.append(f"userinfo HTTP {response.status_code}")
    except (httpx.HTTPError, ValueError) as exc:
        problems.append(f"userinfo {type(exc).__name__}")
    try:
        url = client.gmail_base.rstrip("/") + "/gmail/v1/users/me/profile"
        response = await http.get(url, headers=headers, timeout=30)
        if response.status_code == 200:
            email = response.json().get("emailAddress")
            if isinstance(email, str) and email:
                return email, None
        problems.append(f"Gmail profile HTTP {response.status_code}")
    except (httpx.HTTPError, ValueError) as exc:
        problems.append(f"Gmail profile {type(exc).__name__}")
    raise SignInError(
        f"Signed in, but could not learn which Google account it is ({'; '.join(problems)}); "
        "try again"
    )
