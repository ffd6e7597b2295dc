"""Fixtures: a real emulator on 127.0.0.1 per test (starting one takes a few milliseconds)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from trayapp.emulator.testing import EmulatorServer, Session


@pytest.fixture
async def emu() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer() as server:
        yield server
        # Every request the tests made must fit discovery too (reference section 1.4).
        assert server.control.request_violations() == []


@pytest.fixture
async def http(emu: EmulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emu.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def session(emu: EmulatorServer) -> Session:
    return emu.quick_setup(
        "alice@example.com",
        [
            "https://www.googleapis.com/auth/gmail.readonly",
            "https://www.googleapis.com/auth/calendar.readonly",
            "openid",
            "email",
        ],
        name="Alice Example",
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
