"""The CA store is loaded once per process, at the first https request, never for plain http.

Counts of ``SSLContext.load_verify_locations`` (how httpx loads certifi's bundle), against a
real HTTP server on 127.0.0.1; the https requests go to a closed local port (the handshake
never starts, but the pool and its context are made exactly as for a real host).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.core.httptransport import LazyTLSTransport, shared_tls_context


@pytest.fixture
def ca_loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every CA-store load made while the test runs (the real call still happens)."""
    shared_tls_context.cache_clear()
    calls: list[Any] = []
    real = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        calls.append(args or kwargs)
        real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    yield calls
    shared_tls_context.cache_clear()


@pytest.fixture
async def http_url() -> AsyncIterator[str]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/"
    server.close()
    await server.wait_closed()


def _closed_https_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"https://127.0.0.1:{s.getsockname()[1]}/"


async def test_plain_http_loads_no_ca_store_and_https_loads_it_once(
    ca_loads: list[Any], http_url: str
) -> None:
    first, second = LazyTLSTransport(), LazyTLSTransport()
    async with httpx.AsyncClient(transport=first) as a, httpx.AsyncClient(transport=second) as b:
        assert (await a.get(http_url)).text == "ok"
        assert (await b.get(http_url)).text == "ok"
        assert ca_loads == [] and not first.tls_started
        for client in (a, b, a):
            with pytest.raises(httpx.ConnectError):
                await client.get(_closed_https_url())
        assert first.tls_started and second.tls_started
    assert len(ca_loads) == 1  # one store for every client of the process


async def test_the_engines_shared_client_loads_no_ca_store_for_http(
    ca_loads: list[Any], http_url: str, tmp_path: Path
) -> None:
    engine = Engine(tmp_path / "profile", patterns=default_registry(plugins=False))
    try:
        assert (await engine.http.get(http_url)).text == "ok"
        assert ca_loads == []
        with pytest.raises(httpx.ConnectError):
            await engine.http.get(_closed_https_url())
        assert len(ca_loads) == 1
    finally:
        await engine.http.close_for_real()  # type: ignore[attr-defined]
        engine.close()


def test_verify_cannot_be_weakened() -> None:
    with pytest.raises(TypeError):
        LazyTLSTransport(verify=False)
