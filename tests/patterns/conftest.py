"""Shared fixtures for Google-backed pattern tests: a real emulator, engine and signed-in account.

Everything is real: the emulator on 127.0.0.1, the Engine with its SQLite store in a temp
profile, the accounts layer (``trayapp.auth.wiring``) with a file secret vault, the token
provider refreshing at the emulator's ``/token``, and ``trayapp.google.GoogleApi`` per account
with the account's shared quota budget. A pattern test only adds charms, seeds the mailbox or
calendar through ``harness.emu.control`` and runs syncs::

    async def test_something(google_harness: HarnessFactory) -> None:
        h = await google_harness(patterns=(GmailImporter,))
        h.add_mail(subject="hello")
        charm = h.add_charm("gmail-importer", {"query": "in:inbox"})
        outcome = await h.sync(charm)

``TimeWarp`` runs the emulator's clock and the client's clock K times faster than real time, so
tests of per-minute quotas (Gmail's window is 60 s) finish in seconds while both sides still see
the same rate: one virtual minute of quota is 60/K real seconds for the emulator *and* for the
client's token bucket.
"""

from __future__ import annotations

import asyncio
import email.message
import email.utils
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.emulator.harness import DEFAULT_SCOPES, EmulatorServer
from trayapp.auth.accounts import AccountManager
from trayapp.auth.client_config import parse_client_json
from trayapp.auth.secrets import SecretVault
from trayapp.auth.signin import Grant, grant_from_token_response
from trayapp.auth.wiring import attach_accounts, google_api_kwargs
from trayapp.core.clock import Cancellable, SystemClock
from trayapp.core.engine import Engine
from trayapp.core.outcomes import RunOutcome
from trayapp.core.patterns import Pattern, PatternRegistry
from trayapp.core.profile import Profile
from trayapp.core.redact import forget_secrets
from trayapp.core.retry import RetryPolicy
from trayapp.core.store import Collection
from trayapp.emulator.state import Clock as EmulatorClock
from trayapp.google.client import GoogleApi
from trayapp.google.quota import AccountQuota, QuotaConfig

EMAIL = "alice@example.com"


# ---- time warp ----------------------------------------------------------------------------


class TimeWarp:
    """Wall and monotonic time running ``factor`` times faster than real, from now on."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self._wall0 = time.time()
        self._mono0 = time.monotonic()

    def epoch(self) -> float:
        return self._wall0 + (time.time() - self._wall0) * self.factor

    # The trayapp Clock protocol (for GoogleApi: quota pacing, backoff, Retry-After).
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.epoch(), UTC)

    def monotonic(self) -> float:
        return self._mono0 + (time.monotonic() - self._mono0) * self.factor

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:  # noqa: ASYNC109
        """The real clock's wait with warped seconds made real (``timeout / factor``)."""
        real = None if timeout is None else timeout / self.factor
        return await SystemClock().wait(event, real)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable:
        return SystemClock().call_later(seconds / self.factor, callback)


class WarpedEmulatorClock(EmulatorClock):
    """The emulator's clock (quota windows, token lifetimes) on a :class:`TimeWarp`."""

    def __init__(self, warp: TimeWarp) -> None:
        super().__init__()
        self.warp = warp

    def now(self) -> float:
        return self.warp.epoch() + self.offset


# ---- the harness --------------------------------------------------------------------------


@dataclass
class GoogleHarness:
    """An engine with one signed-in Google account, against a running emulator."""

    emu: EmulatorServer
    engine: Engine
    accounts: AccountManager
    account_id: str
    email: str
    quota: AccountQuota  # the account's budget, shared by its GoogleApi objects
    clock: Any = None
    api_options: dict[str, Any] = field(default_factory=dict)
    apis: dict[str, GoogleApi] = field(default_factory=dict)
    _mail_seq: int = 0

    # -- wiring --

    def google(self, account_id: str) -> GoogleApi:
        """The engine's ``google_factory``: one GoogleApi per account, sharing its quota."""
        api = self.apis.get(account_id)
        if api is None:
            kwargs = google_api_kwargs(self.accounts, account_id)
            if self.clock is not None:
                kwargs["clock"] = self.clock
            kwargs.update(self.api_options)
            api = GoogleApi(**kwargs, quota=self.quota)
            self.apis[account_id] = api
        return api

    # -- charms --

    def add_charm(self, pattern_id: str, settings: dict[str, Any], name: str | None = None) -> str:
        return self.engine.add_charm(pattern_id, settings, name=name, account_id=self.account_id).id

    async def sync(self, charm_id: str) -> RunOutcome:
        return (await self.engine.sync([charm_id]))[charm_id]

    def collection(self, charm_id: str, name: str) -> Collection:
        return self.engine.store.collection(f"charm:{charm_id}:{name}")

    def items(self, charm_id: str, name: str = "messages") -> dict[str, Any]:
        return dict(self.collection(charm_id, name).items())

    # -- the mailbox --

    def add_mail(
        self,
        subject: str | None = None,
        *,
        labels: Sequence[str] = ("INBOX", "UNREAD"),
        sender: str = "Bob <bob@example.com>",
        to: str | None = None,
        body: str | None = None,
        html: str | None = None,
        attachment: tuple[str, bytes] | None = None,
        when: datetime | None = None,
        internal_date_ms: int | None = None,
    ) -> str:
        """Add an RFC 822 message to the account's mailbox; returns its Gmail id."""
        self._mail_seq += 1
        n = self._mail_seq
        msg = email.message.EmailMessage()
        msg["From"] = sender
        msg["To"] = to or self.email
        msg["Subject"] = subject if subject is not None else f"message {n}"
        msg["Message-ID"] = f"<m{n}.{time.monotonic_ns()}@example.com>"
        if when is not None:
            msg["Date"] = email.utils.format_datetime(when)
        msg.set_content(body if body is not None else f"Body of message {n}.\n")
        if html is not None:
            msg.add_alternative(html, subtype="html")
        if attachment is not None:
            name, data = attachment
            msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
        kwargs: dict[str, Any] = {"label_ids": list(labels)}
        if internal_date_ms is not None:
            kwargs["internal_date"] = internal_date_ms
        return str(self.emu.control.add_message(self.email, msg.as_bytes(), **kwargs))

    async def query_ids(self, query: str | None, label_ids: Iterable[str] = ()) -> set[str]:
        """What Gmail (the emulator) says matches: the ground truth to compare the store with.

        Uses its own GoogleApi with a private budget, so it never slows the charm under test.
        """
        async with GoogleApi(**google_api_kwargs(self.accounts, self.account_id)) as api:
            gmail = api.gmail()
            return {
                str(ref["id"])
                async for page in gmail.iter_message_pages(query or None, list(label_ids))
                for ref in page.messages
            }


HarnessFactory = Callable[..., Awaitable[GoogleHarness]]


def make_grant(emu: EmulatorServer, client_id: str, email_address: str) -> Grant:
    tokens = emu.control.issue_tokens(email_address, client_id, list(DEFAULT_SCOPES))
    return grant_from_token_response(tokens, email=email_address)


async def open_engine(
    profile_dir: Path,
    patterns: Iterable[type[Pattern[Any]]],
    *,
    quota: QuotaConfig | None = None,
    clock: Any = None,
) -> tuple[Engine, AccountManager, AccountQuota]:
    """An Engine on ``profile_dir`` with accounts attached (file vault: no keyring needed)."""
    registry = PatternRegistry()
    for pattern in patterns:
        registry.register(pattern)
    engine = Engine(Profile.resolve(profile_dir), patterns=registry, jitter=0.0)
    vault = SecretVault(engine.profile.path, mode="file")
    manager = attach_accounts(engine, vault=vault)
    return engine, manager, AccountQuota.create(quota or QuotaConfig(), clock)


@pytest.fixture(autouse=True)
def _clean_redaction() -> Iterable[None]:
    yield
    forget_secrets()


@pytest.fixture
def time_warp() -> type[TimeWarp]:
    """The :class:`TimeWarp` class, for tests (conftest modules are not importable by name)."""
    return TimeWarp


@pytest.fixture
async def emu() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer() as server:
        yield server


@pytest.fixture
async def google_harness(tmp_path: Path, emu: EmulatorServer) -> AsyncIterator[HarnessFactory]:
    """``await google_harness(patterns=(...,), quota=QuotaConfig(...), warp=TimeWarp(...),
    retry=RetryPolicy(...))``: every argument but ``patterns`` is optional."""
    made: list[GoogleHarness] = []

    async def make(
        patterns: Iterable[type[Pattern[Any]]],
        *,
        quota: QuotaConfig | None = None,
        warp: TimeWarp | None = None,
        email_address: str = EMAIL,
        retry: RetryPolicy | None = None,
    ) -> GoogleHarness:
        if warp is not None:
            emu.app.state.clock = WarpedEmulatorClock(warp)
        emu.control.create_account(email_address, name="Alice")
        client = emu.control.create_client()
        engine, manager, account_quota = await open_engine(
            tmp_path / f"profile-{len(made)}", patterns, quota=quota, clock=warp
        )
        manager.clients.set(parse_client_json(json.dumps(client.client_config(emu.base_url))))
        account = await manager.complete_sign_in(make_grant(emu, client.id, email_address))
        harness = GoogleHarness(
            emu=emu,
            engine=engine,
            accounts=manager,
            account_id=account.id,
            email=email_address,
            quota=account_quota,
            clock=warp,
            api_options={"retry": retry} if retry is not None else {},
        )
        engine.google_factory = harness.google
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.engine.stop()
        for api in harness.apis.values():
            await api.aclose()
        await harness.accounts.aclose()
        harness.engine.close()
