"""Transport faults from a real server: hangs, resets and truncated bodies are retried, then
reported as ``Offline``; never a bug, never a hang."""

from __future__ import annotations

import random
import socket

import httpx
import pytest

from trayapp.core.errors import Offline
from trayapp.core.retry import RetryPolicy
from trayapp.google.client import GoogleApi
from trayapp.google.endpoints import GoogleEndpoints

from .conftest import Rig
from .helpers import CountingTokens, StepClock


def quick_api(rig: Rig, attempts: int = 3) -> GoogleApi:
    return GoogleApi(
        rig.tokens,
        endpoints=GoogleEndpoints.for_base(rig.emu.base_url),
        clock=rig.clock,
        rng=random.Random(2),
        retry=RetryPolicy(transport_attempts=attempts),
        timeout=httpx.Timeout(0.5),
    )


@pytest.mark.parametrize("kind", ["hang", "reset", "reset_after_headers", "truncate"])
async def test_transport_fault_once_is_retried(rig: Rig, kind: str) -> None:
    rig.emu.control.add_fault(kind=kind, endpoint="gmail.users.getProfile", times=1, hang_seconds=5)
    async with quick_api(rig) as api:
        profile = await api.gmail().get_profile()
    assert profile["emailAddress"] == rig.session.email
    assert len(rig.emu.control.requests(api_method="gmail.users.getProfile")) == 2
    assert len(rig.clock.waits) == 1


async def test_server_that_keeps_hanging_is_offline(rig: Rig) -> None:
    rig.emu.control.add_fault(kind="hang", endpoint="gmail.users.getProfile", hang_seconds=5)
    async with quick_api(rig, attempts=2) as api:
        with pytest.raises(Offline) as info:
            await api.gmail().get_profile()
    assert "timed out" in info.value.message
    assert len(rig.emu.control.requests(api_method="gmail.users.getProfile")) == 2


async def test_nothing_listening_is_offline() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The port was free a moment ago and nothing was told to listen on it.
    clock = StepClock()
    api = GoogleApi(
        CountingTokens(),
        endpoints=GoogleEndpoints.for_base(f"http://127.0.0.1:{port}"),
        clock=clock,
        retry=RetryPolicy(transport_attempts=2),
    )
    async with api:
        with pytest.raises(Offline) as info:
            await api.calendar().list_calendars()
    assert "connection failed" in info.value.message and len(clock.waits) == 1
