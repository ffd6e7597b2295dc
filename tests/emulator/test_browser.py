"""A real browser (headless Chromium) completes the consent page up to the loopback redirect."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
import tempfile
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.emulator.harness import EmulatorServer, find_chromium, headless_chromium_argv

CHROMIUM = find_chromium()

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium (apt-get install chromium)"
)


async def _run_browser_flow(emu: EmulatorServer, decision: str) -> dict[str, list[str]]:
    emu.control.create_account("alice@example.com", name="Alice")
    client = emu.control.create_client()
    emu.control.set_consent(auto_submit=decision)
    got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def callback(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode()
        if not got.done() and "GET /cb" in line:
            got.set_result(line.split()[1])
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(callback, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    verifier = "v" * 50
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    params = {
        "response_type": "code",
        "client_id": client.id,
        "redirect_uri": f"http://127.0.0.1:{port}/cb",
        "scope": "https://www.googleapis.com/auth/gmail.readonly",
        "state": "xyz",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "access_type": "offline",
    }
    url = emu.url("/o/oauth2/v2/auth?" + urlencode(params))
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        assert CHROMIUM is not None
        proc = await asyncio.create_subprocess_exec(
            *headless_chromium_argv(CHROMIUM, url, profile),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "HOME": profile},
            start_new_session=True,  # its own process group, so its helpers die with it
        )
        try:
            target = await asyncio.wait_for(got, 60)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            server.close()
            await server.wait_closed()
    query = parse_qs(urlsplit(target).query)
    if decision == "allow":
        async with httpx.AsyncClient() as http:
            tok = await http.post(
                emu.url("/token"),
                data={
                    "grant_type": "authorization_code",
                    "code": query["code"][0],
                    "redirect_uri": params["redirect_uri"],
                    "code_verifier": verifier,
                },
                auth=(client.id, client.secret),
            )
        assert tok.status_code == 200
        assert "refresh_token" in tok.json()
    return query


async def test_headless_chromium_completes_consent() -> None:
    async with EmulatorServer() as emu:
        query = await _run_browser_flow(emu, "allow")
    assert query["state"] == ["xyz"]
    assert query["code"][0].startswith("4/0")


async def test_headless_chromium_denies() -> None:
    async with EmulatorServer() as emu:
        query = await _run_browser_flow(emu, "deny")
    assert query == {"state": ["xyz"], "error": ["access_denied"]}
