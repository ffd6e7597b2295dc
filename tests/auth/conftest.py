"""Fixtures for the accounts/tokens/sign-in tests: a real emulator, a real store, real HTTP."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import google.auth._exponential_backoff as ga_backoff
import httpx
import pytest

from tests.emulator.harness import DEFAULT_SCOPES, EmulatorServer
from trayapp.auth.accounts import AccountManager
from trayapp.auth.client_config import parse_client_json
from trayapp.auth.secrets import SecretStoreKind, SecretVault
from trayapp.auth.signin import Grant, grant_from_token_response
from trayapp.core.redact import forget_secrets
from trayapp.core.store import Store
from trayapp.emulator.control import ClientInfo

EMAIL = "alice@example.com"


class MemoryKeyring:
    """A stand-in for the OS keyring (the real one is tested under dbus-run-session).

    Lets token tests keep secrets out of the profile entirely, as a real keyring does, so they
    can assert that *no* profile file holds a token.
    """

    kind = SecretStoreKind.KEYRING

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.locked = False
        self.writes = 0

    @property
    def description(self) -> str:
        return "memory keyring (tests)"

    def available(self) -> tuple[bool, str]:
        return (not self.locked, "locked" if self.locked else "")

    def _check(self) -> None:
        if self.locked:
            from trayapp.auth.secrets import KeyringNotReady

            raise KeyringNotReady("KeyringLocked: Failed to unlock the collection!")

    def get(self, key: str) -> str | None:
        self._check()
        return self.data.get(key)

    def set(self, key: str, value: str) -> None:
        self._check()
        self.writes += 1
        self.data[key] = value

    def delete(self, key: str) -> None:
        self._check()
        self.data.pop(key, None)


class Clock:
    """The provider's wall clock, movable by tests (the emulator keeps its own)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture(autouse=True)
def _no_refresh_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """google-auth sleeps ~1 s and ~2 s between its refresh retries: record, don't sleep.

    Only google-auth's backoff module sees the fake ``time``; nothing else is patched.
    """
    slept: list[float] = []
    monkeypatch.setattr(ga_backoff, "time", types.SimpleNamespace(sleep=slept.append))
    return slept


@pytest.fixture(autouse=True)
def _clean_redaction() -> Iterator[None]:
    yield
    forget_secrets()


@pytest.fixture
async def emu() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer() as server:
        yield server


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    path = tmp_path / "profile"
    path.mkdir()
    return path


@pytest.fixture
def store(profile: Path) -> Iterator[Store]:
    s = Store.open(profile / "trayapp.db")
    yield s
    s.close()


@pytest.fixture
def keyring_mem() -> MemoryKeyring:
    return MemoryKeyring()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def manager(
    store: Store, profile: Path, keyring_mem: MemoryKeyring, clock: Clock
) -> AsyncIterator[AccountManager]:
    vault = SecretVault(profile, mode="keyring", keyring_store=keyring_mem)  # type: ignore[arg-type]
    async with httpx.AsyncClient() as http:
        m = AccountManager(store, profile, vault=vault, now=clock, http=http)
        yield m
        await m.aclose()


@pytest.fixture
def client_info(emu: EmulatorServer) -> ClientInfo:
    emu.control.create_account(EMAIL, name="Alice")
    return emu.control.create_client()


@pytest.fixture
def configured(manager: AccountManager, emu: EmulatorServer, client_info: ClientInfo) -> None:
    import json

    manager.clients.set(parse_client_json(json.dumps(client_info.client_config(emu.base_url))))


GrantMaker = Callable[..., Grant]


@pytest.fixture
def make_grant(emu: EmulatorServer, client_info: ClientInfo) -> GrantMaker:
    """Mint a grant as the browser flow would produce it, through the emulator's control API."""

    def make(
        client: ClientInfo | None = None,
        email: str = EMAIL,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
    ) -> Grant:
        tokens = emu.control.issue_tokens(email, (client or client_info).id, list(scopes))
        return grant_from_token_response(tokens, email=email)

    return make
