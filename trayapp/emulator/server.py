"""Running the emulator under uvicorn, in the current loop or in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from trayapp.emulator.app import TRANSPORT_KEY, EmulatorApp


class TransportH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, exposing the socket transport to the app.

    Fault injection needs the raw transport to reset a connection (RST) or cut a body short;
    ASGI has no standard way to do that, so each connection wraps the app to put the transport
    in ``scope["extensions"]``.
    """

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        inner = self.app

        async def app_with_transport(scope: Any, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})[TRANSPORT_KEY] = transport
            await inner(scope, receive, send)

        self.app = app_with_transport


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host and stops promptly.

    Tests start and stop one server per test; uvicorn's 100 ms polling of ``should_exit`` and
    its fixed 100 ms pause at shutdown would dominate the suite's run time, so exit is
    event-driven here and shutdown polls in 5 ms steps.
    """

    _wake: asyncio.Event | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def request_exit(self) -> None:
        """Ask the server to stop; call from its own loop thread."""
        self.should_exit = True
        if self._wake is not None:
            self._wake.set()

    async def main_loop(self) -> None:
        self._wake = asyncio.Event()
        counter = 0
        while not self.should_exit:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            counter += 10  # on_tick refreshes the Date header when counter % 10 == 0
            if await self.on_tick(counter):
                return

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.config.timeout_graceful_shutdown or 3)
        # uvicorn tracks connections and tasks in plain sets with no completion event.
        while (self.server_state.connections or self.server_state.tasks) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        for task in list(self.server_state.tasks):
            task.cancel()
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def make_server(app: EmulatorApp, *, log_level: str = "warning") -> QuietServer:
    config = uvicorn.Config(
        app,
        http=TransportH11Protocol,
        lifespan="on",
        log_level=log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=3,
        timeout_keep_alive=30,
    )
    return QuietServer(config)


async def wait_started(server: QuietServer, task: asyncio.Task[None], limit: float = 30.0) -> None:
    """Wait for uvicorn to report it is serving (or for its task to fail)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    # uvicorn sets a plain ``started`` flag and offers no event to await.
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the emulator server stopped during startup")
        if loop.time() > deadline:
            raise TimeoutError("the emulator server did not start within 30 s")
        await asyncio.sleep(0.005)
