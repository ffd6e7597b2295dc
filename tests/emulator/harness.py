"""Test helpers: start a real emulator on 127.0.0.1 and drive it (not installed with the app).

Two ways to run it::

    async with EmulatorServer() as emu:            # in the test's event loop
        ...
    with EmulatorServer.in_thread() as emu:         # uvicorn in a background thread
        ...

Either way ``emu.base_url`` is the real URL (port 0 is bound first, so the port is known before
any client starts) and ``emu.control`` is the in-process :class:`~trayapp.emulator.control.Control`.
The server itself is the product's (:mod:`trayapp.emulator.server`, which demo mode runs); this
module adds what only tests need.
With ``conformance=True`` (the default) every request and response is checked against Google's
discovery documents; leaving the context raises if the emulator produced a non-conforming
response, and ``emu.control.request_violations()`` lists requests a client got wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from trayapp.emulator import server
from trayapp.emulator.control import ClientInfo

GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"
CALENDAR_READONLY = "https://www.googleapis.com/auth/calendar.readonly"
DEFAULT_SCOPES = (
    GMAIL_READONLY,
    CALENDAR_READONLY,
    "openid",
    "https://www.googleapis.com/auth/userinfo.email",
)

#: The directory holding the ``trayapp`` package (a checkout, or site-packages).
_CHECKOUT = Path(__file__).resolve().parents[2]


@dataclass
class Session:
    """What ``EmulatorServer.quick_setup`` made: an account, a client and a token pair."""

    email: str
    client: ClientInfo
    access_token: str
    refresh_token: str
    scopes: tuple[str, ...]

    def refresh_form(self, refresh_token: str | None = None) -> dict[str, str]:
        """The ``/token`` form of a refresh (RFC 6749 6) by this session's client.

        ``refresh_token`` defaults to the session's own; pass another (a rotated or revoked
        one) to see how the endpoint treats it.
        """
        return {
            "grant_type": "refresh_token",
            "refresh_token": self.refresh_token if refresh_token is None else refresh_token,
            "client_id": self.client.id,
            "client_secret": self.client.secret,
        }


def timed_event(
    summary: str, start: str, end: str, tz: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A Calendar event body from ``start`` to ``end`` (RFC 3339), optionally in zone ``tz``.

    A recurring one gets ``tz`` "UTC" when none is given: Google refuses a recurring event
    without a start time zone ("Missing time zone definition for start time.")."""
    if tz is None and extra.get("recurrence"):
        tz = "UTC"
    s: dict[str, Any] = {"dateTime": start}
    e: dict[str, Any] = {"dateTime": end}
    if tz:
        s["timeZone"] = e["timeZone"] = tz
    return {"summary": summary, "start": s, "end": e, **extra}


def all_day_event(summary: str, start: str, end: str, **extra: Any) -> dict[str, Any]:
    """A Calendar all-day event body; ``end`` is exclusive (the day after), as Google has it."""
    return {"summary": summary, "start": {"date": start}, "end": {"date": end}, **extra}


class StaticToken:
    """A token source (``trayapp.google.tokens.TokenSource``) handing out one fixed token.

    For benchmarks and client tests that mint a token with :meth:`EmulatorServer.quick_setup`
    and never expect a refresh; a 401 hands back the same token, so the caller sees Google's
    answer rather than a refresh it did not ask for. Structural, so the emulator needs no app
    import.
    """

    def __init__(self, token: str) -> None:
        self.token = token

    async def access_token(self) -> str:
        return self.token

    async def refresh_after_rejection(self, rejected: str) -> str:
        return self.token


class EmulatorServer(server.EmulatorServer):
    """The product's :class:`trayapp.emulator.server.EmulatorServer`, checked against discovery.

    With ``conformance=True`` (the default) every request and response is checked against
    Google's discovery documents (:mod:`tests.emulator.conformance`); leaving the context raises
    if the emulator produced a non-conforming response.
    """

    def __init__(self, *, conformance: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conformance = conformance

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        if exc_type is None:
            self.raise_for_response_violations()

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls, **kwargs: Any) -> Generator[EmulatorServer, None, None]:
        """Run uvicorn in a daemon thread with its own loop (for sync, subprocess and e2e tests)."""
        emu = cls(**kwargs)
        emu.start_thread()
        ok = False
        try:
            yield emu
            ok = True
        finally:
            emu.stop_thread()
        if ok:
            emu.raise_for_response_violations()

    def __enter__(self) -> EmulatorServer:
        self.start_thread()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_thread()
        if exc_type is None:
            self.raise_for_response_violations()

    def _prepare(self) -> None:
        if self.conformance and self.app.state.conformance is None:
            from tests.emulator.conformance import Conformance

            self.app.state.conformance = Conformance.load(strict=True)
        super()._prepare()

    def quick_setup(
        self,
        email: str = "user@example.com",
        scopes: Iterable[str] = DEFAULT_SCOPES,
        *,
        name: str | None = None,
        testing_client: bool = False,
    ) -> Session:
        """Create an account and a client and mint tokens, skipping the consent page."""
        self.control.create_account(email, name=name)
        client = self.control.create_client(testing=testing_client)
        tokens = self.control.issue_tokens(email, client.id, list(scopes))
        return Session(
            email,
            client,
            tokens["access_token"],
            tokens["refresh_token"],
            tuple(tokens["scope"].split()),
        )

    def raise_for_response_violations(self) -> None:
        problems = self.control.response_violations() if self._thread is None else []
        if problems:
            raise AssertionError(
                "the emulator sent responses that do not conform to discovery:\n"
                + "\n".join(problems[:20])
            )


async def start_emulator_process(
    *args: str, stderr: int | None = None
) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    """Start ``python -m trayapp.emulator --port 0 --json *args``; return it and its facts line.

    For callers that want the emulator in another process, as a client sees it (the CLI's own
    tests, client benchmarks). The facts line (base URL, account, client id) is the CLI's
    promise that it is listening, so nothing here polls a port. ``PYTHONPATH`` gains this
    checkout, so it runs without an editable install. If no facts line arrives within a minute,
    the process is killed before the error propagates, so a broken start leaks nothing.
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(_CHECKOUT), os.environ.get("PYTHONPATH")))),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "trayapp.emulator",
        "--port",
        "0",
        "--json",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        env=env,
    )
    assert proc.stdout is not None
    try:
        facts: dict[str, Any] = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc, facts


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable on PATH, if any: tests skip without one."""
    names = ("chromium", "chromium-browser", "google-chrome")
    return next((path for path in map(shutil.which, names) if path), None)


def headless_chromium_argv(
    chromium: str, url: str, profile_dir: str | os.PathLike[str]
) -> list[str]:
    """Command line for headless Chromium opening ``url`` on the emulator's consent page.

    The flags are the ones desktop-testing.md settles on: no sandbox (containers), no GPU, no
    QUIC or background networking (only 127.0.0.1 may be contacted), and a throwaway profile.
    Run it with ``HOME`` set to ``profile_dir`` too, and in its own session
    (``start_new_session=True``) so killing the process group takes the helpers with it.
    """
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        "--disable-extensions",
        f"--user-data-dir={os.fspath(profile_dir)}",
        "--remote-debugging-port=0",
        url,
    ]


class _ConsentForm(HTMLParser):
    """The consent page's form: its action and hidden fields, as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and a.get("type") == "hidden":
            self.fields[a["name"]] = a.get("value", "")


async def answer_consent_page(
    http: httpx.AsyncClient, url: str, decision: str = "allow", account: str | None = None
) -> httpx.Response:
    """Play the user on the emulator's consent page: open ``url``, submit ``decision``.

    Without JavaScript or a real browser (see :func:`headless_chromium_argv` for that), so
    sign-in tests stay fast. ``account`` picks one on the account chooser. ``http`` should
    follow redirects, so the answer is the loopback callback's page; when the emulator shows no
    form (consent already given, or an error page) that page is returned unsubmitted.
    """
    page = await http.get(url)
    if "<form" not in page.text:
        return page
    form = _ConsentForm()
    form.feed(page.text)
    data = dict(form.fields, decision=decision)
    if account:
        data["account"] = account
    return await http.post(str(page.url.join(form.action)), data=data)
