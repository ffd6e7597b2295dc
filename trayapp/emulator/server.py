"""Running the emulator under uvicorn, in the current loop or in a background thread.

:class:`EmulatorServer` is the product's way to run it (demo mode, ``python -m
trayapp.emulator``'s library form); the test harness in ``tests/emulator/harness.py`` extends it
with discovery conformance checks and test conveniences, which need test-only dependencies and
are not installed with the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Generator
from email.utils import formatdate
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from trayapp.emulator.app import TRANSPORT_KEY, EmulatorApp
from trayapp.emulator.control import Control
from trayapp.emulator.state import EmulatorState

if TYPE_CHECKING:
    from trayapp.emulator.seed import DemoInfo


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

    def data_received(self, data: bytes) -> None:
        refresh_date_header(self.server_state, self.config)
        super().data_received(data)


def refresh_date_header(server_state: Any, config: uvicorn.Config) -> None:
    """Keep uvicorn's ``Date`` default header current, refreshed when a request arrives.

    uvicorn refreshes it from a once-a-second tick of its main loop, which wakes an idle demo
    tray every second for nothing (issue 17: zero idle wake-ups). Here the header is rebuilt at
    most once per second, from the arrival of request bytes, so every response still carries the
    current date in the IMF-fixdate form (RFC 9110 section 6.6.1, as Google's servers send it).
    """
    second = int(time.time())
    if getattr(server_state, "trayapp_date_second", None) == second:
        return
    server_state.trayapp_date_second = second
    date = [(b"date", formatdate(second, usegmt=True).encode())] if config.date_header else []
    server_state.default_headers = date + config.encoded_headers


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host and stops promptly.

    Tests start and stop one server per test; uvicorn's 100 ms polling of ``should_exit`` and
    its fixed 100 ms pause at shutdown would dominate the suite's run time, so exit is
    event-driven here and shutdown polls in 5 ms steps. The main loop has no periodic tick at
    all (an idle demo emulator costs zero wake-ups).
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
        # No tick: the Date header is refreshed per request (TransportH11Protocol), and exit is
        # requested through the event, so an idle server never wakes its loop.
        self._wake = asyncio.Event()
        while not self.should_exit:
            await self._wake.wait()

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


class EmulatorServer:
    """A real emulator on ``host:port`` (port 0: a free one, known before any client starts).

    ``emu.base_url`` is the real URL and ``emu.control`` the in-process
    :class:`~trayapp.emulator.control.Control`. With ``demo=True`` the demo account, client and
    data are seeded before the first request (``emu.demo_info``). Run it in the current loop
    (``async with``/:meth:`start`) or in a daemon thread with its own loop
    (``with``/:meth:`start_thread`), which is what demo mode does.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: int = 0,
        seed: int | None = 0,
        demo: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.app = EmulatorApp(EmulatorState(seed), latency_ms=latency_ms)
        self.control = Control(self.app)
        self.demo = demo
        #: Set when ``demo=True``: the demo account and OAuth client (see trayapp.emulator.seed).
        self.demo_info: DemoInfo | None = None
        self.base_url = ""
        self._server: QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None

    # ---- async (current loop) ----

    async def __aenter__(self) -> EmulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self._prepare()
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"http://{host}:{self.port}"
        self.app.loop = asyncio.get_running_loop()
        self._server = make_server(self.app)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        await wait_started(self._server, self._task)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self.app.begin_shutdown()
        self._server.request_exit()
        await self._task
        self._server = None

    # ---- background thread ----

    def start_thread(self) -> None:
        ready = threading.Event()

        def run() -> None:
            async def main() -> None:
                await self.start()
                ready.set()
                assert self._task is not None
                await self._task

            try:
                asyncio.run(main())
            except BaseException as exc:  # reported to the starting thread
                self._thread_error = exc
                ready.set()

        self._thread = threading.Thread(target=run, name="trayapp-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(60):
            raise TimeoutError("the emulator thread did not start within 60 s")
        if self._thread_error is not None:
            raise RuntimeError("the emulator thread failed to start") from self._thread_error

    def stop_thread(self) -> None:
        loop = self.app.loop
        if self._thread is None or loop is None:
            return

        def stop() -> None:
            self.app.begin_shutdown()
            if self._server is not None:
                self._server.request_exit()

        if loop.is_running():
            loop.call_soon_threadsafe(stop)
        self._thread.join(30)
        self._thread = None

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

    # ---- conveniences ----

    def _prepare(self) -> None:
        """Before the socket opens: seed the demo (subclasses add their own set-up)."""
        if self.demo and self.demo_info is None:
            from trayapp.emulator.seed import seed_demo

            self.demo_info = seed_demo(self.control)

    def url(self, path: str) -> str:
        return self.base_url + path
