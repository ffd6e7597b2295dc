"""Fixtures: a real emulator on 127.0.0.1 per test (starting one takes a few milliseconds)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulator.harness import EmulatorServer, Session


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


CLIENTS = Path(__file__).parent / "clients"
REPO = Path(__file__).resolve().parents[2]


async def run_client(script: str, *args: str) -> Any:
    """Run a script from tests/emulator/clients with Google's own client libraries.

    A subprocess, because pytest puts ``tests/`` on sys.path and ``tests/google`` would shadow
    the installed ``google`` namespace package inside the test process.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CLIENTS / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=str(CLIENTS),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return json.loads(out.decode().strip().splitlines()[-1])
