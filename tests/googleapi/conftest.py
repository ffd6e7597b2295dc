"""Fixtures for the Google client tests against the real emulator (127.0.0.1)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from tests.emulator.harness import EmulatorServer, Session
from trayapp.core.retry import RetryPolicy
from trayapp.google.client import GoogleApi
from trayapp.google.endpoints import GoogleEndpoints

from .discovery_check import check
from .emulator_tokens import EmulatorTokens
from .helpers import StepClock

EMAIL = "alice@example.com"


@dataclass
class Rig:
    emu: EmulatorServer
    session: Session
    tokens: EmulatorTokens
    api: GoogleApi
    clock: StepClock

    def api_requests(self, api_method: str) -> list[object]:
        """Logged requests for one discovery method (batch parts included)."""
        return list(self.emu.control.requests(api_method=api_method))


@pytest.fixture
async def emu() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer() as server:
        yield server
        # Every request our clients sent must fit Google's discovery documents: checked here
        # with our own small validator, and by the emulator's once it has one.
        problems = [
            problem
            for entry in server.control.requests()
            for problem in check(entry.api_method or "", entry.method, entry.path, entry.query)
        ]
        assert problems == []
        assert server.control.request_violations() == []


@pytest.fixture
async def rig(emu: EmulatorServer) -> AsyncIterator[Rig]:
    session = emu.quick_setup(EMAIL)
    tokens = EmulatorTokens.for_session(emu, session)
    # Backoff waits are instant (StepClock) but start at the emulator's idea of now, so a
    # "Retry after <time>" from it is compared against the same time line.
    clock = StepClock(start=datetime.fromtimestamp(emu.control.now(), UTC))
    api = GoogleApi(
        tokens,
        endpoints=GoogleEndpoints.for_base(emu.base_url),
        account_id="acct-alice",
        retry=RetryPolicy(max_attempts=5),
        clock=clock,
        rng=random.Random(1),
    )
    async with api:
        yield Rig(emu, session, tokens, api, clock)
