"""Network back (issue 14.7): charms that failed ``offline`` sync within seconds of its return.

Everything real: an Engine with its SQLite store and scheduler on the system clock, a feed
charm fetching over TCP from 127.0.0.1, a port that refuses connections until a feed server
starts on it, and for NetworkManager a private D-Bus daemon with a fake NetworkManager service
that answers ``State`` and emits ``StateChanged`` as the real one does. The backoff is ten
minutes, so a second run within the test can only come from the monitor.
"""

# No `from __future__ import annotations` here: dbus-fast reads the D-Bus signatures of the fake
# service from its annotations ("u"), which must stay plain strings.

import asyncio
import logging
import os
import queue
import re
import shutil
import signal as signals
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dbus_fast.aio import MessageBus
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_property, signal

from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.core.network import NM_INTERFACE, NM_PATH, NM_SERVICE, NetworkMonitor, url_target
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.retry import BackoffPolicy

RSS = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>http://x/</link>'
    b"<description>d</description><item><guid>a</guid><title>A</title></item></channel></rss>"
)
SLOW_BACKOFF = BackoffPolicy(base=600, cap=3600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve_feed(port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
                f"Content-Length: {len(RSS)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + RSS)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # a probe connects and closes without a request
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def until(predicate: Callable[[], bool], within: float = 30.0) -> None:
    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), within)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    eng = Engine(
        tmp_path / "profile", patterns=default_registry(), backoff=SLOW_BACKOFF, jitter=0.0
    )
    yield eng
    await eng.stop()
    eng.close()


def runs(engine: Engine, charm_id: str) -> int:
    return len(engine.history(charm_id))


async def offline_feed_charm(engine: Engine, port: int) -> str:
    charm = engine.add_charm("feed-importer", {"url": f"http://127.0.0.1:{port}/feed.xml"}).id
    await engine.start()
    await until(lambda: engine.status(charm).last_error_kind is OutcomeKind.OFFLINE)
    return charm


# ---- the probe ----------------------------------------------------------------------------


async def test_probe_notices_the_host_answering_and_the_charm_syncs_at_once(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    monitor = NetworkMonitor(engine, use_dbus=False)  # the default 2 s probe interval
    await monitor.start()
    try:
        charm = await offline_feed_charm(engine, port)
        await until(lambda: monitor.probing)
        await until(lambda: monitor.probes >= 2)  # it tried and failed: still down
        assert monitor.notified == 0 and runs(engine, charm) == 1

        server = await serve_feed(port)
        back = time.monotonic()
        try:
            with caplog.at_level(logging.INFO, "trayapp.core.network"):
                await until(lambda: engine.status(charm).healthy)
            elapsed = time.monotonic() - back
        finally:
            server.close()
            await server.wait_closed()
        print(f"network back -> charm synced in {elapsed:.2f} s")  # the 5 s target; not asserted
        assert monitor.notified == 1
        assert runs(engine, charm) == 2  # one retry, not the 10-minute backoff
        assert "reachable again" in caplog.text
        # Everything healthy: the probe stops and makes no more connections.
        await until(lambda: not monitor.probing)
        probes = monitor.probes
        await asyncio.sleep(2 * monitor.probe_interval + 0.5)
        assert monitor.probes == probes
    finally:
        await monitor.stop()


async def test_no_probe_at_all_while_every_charm_is_healthy(engine: Engine) -> None:
    port = free_port()
    server = await serve_feed(port)
    try:
        charm = engine.add_charm("feed-importer", {"url": f"http://127.0.0.1:{port}/f"}).id
        monitor = NetworkMonitor(engine, use_dbus=False, probe_interval=0.1)
        await monitor.start()
        await engine.start()
        await until(lambda: engine.status(charm).healthy and runs(engine, charm) == 1)
        await asyncio.sleep(1.0)  # ten probe intervals
        assert monitor.probes == 0 and not monitor.probing
        await monitor.stop()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_host_that_answers_while_the_charm_stays_offline_is_retried_once(
    engine: Engine,
) -> None:
    """Edge-triggered: a reachable host whose charm still fails is not retried every probe."""
    port = free_port()
    charm = await offline_feed_charm(engine, port)
    # Something else answers on the probe target, but the charm's own URL stays unreachable.
    decoy = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    decoy_port = decoy.sockets[0].getsockname()[1]
    monitor = NetworkMonitor(engine, use_dbus=False, probe_interval=0.1)
    monitor.targets = lambda: [("127.0.0.1", decoy_port)]  # type: ignore[method-assign]
    await monitor.start()
    try:
        await until(lambda: monitor.notified == 1)
        await until(lambda: runs(engine, charm) == 2)
        await until(lambda: monitor.probes >= 10)
        assert monitor.notified == 1 and runs(engine, charm) == 2
    finally:
        await monitor.stop()
        decoy.close()
        await decoy.wait_closed()


def test_targets_come_from_urls_in_settings() -> None:
    assert url_target("https://example.org/feed") == ("example.org", 443)
    assert url_target("http://127.0.0.1:8080/x?key=1") == ("127.0.0.1", 8080)
    assert url_target("ftp://example.org/") is None
    assert url_target("http://[::1]:bad/") is None
    assert url_target("not a url") is None


# ---- NetworkManager over D-Bus ------------------------------------------------------------

needs_dbus = pytest.mark.skipif(
    shutil.which("dbus-daemon") is None, reason="needs dbus-daemon for a private bus"
)


@pytest.fixture
def private_bus() -> Iterator[str]:
    proc = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1", "--nopidfile"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().decode().strip()
    yield address
    proc.terminate()
    proc.wait(10)


class FakeNetworkManager(ServiceInterface):
    """The two members of org.freedesktop.NetworkManager the monitor uses."""

    def __init__(self, state: int) -> None:
        super().__init__(NM_INTERFACE)
        self._state = state

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> "u":  # type: ignore[name-defined]  # noqa: F821
        return self._state

    @signal()
    def StateChanged(self) -> "u":  # type: ignore[name-defined]  # noqa: F821
        return self._state

    def set_state(self, state: int) -> None:
        self._state = state
        self.StateChanged()


async def fake_network_manager(address: str, state: int) -> tuple[MessageBus, FakeNetworkManager]:
    bus = await MessageBus(bus_address=address).connect()
    nm = FakeNetworkManager(state)
    bus.export(NM_PATH, nm)
    await bus.request_name(NM_SERVICE)
    return bus, nm


@needs_dbus
async def test_network_manager_state_changed_wakes_the_offline_charm(
    engine: Engine, private_bus: str
) -> None:
    port = free_port()
    bus, nm = await fake_network_manager(private_bus, 20)  # NM_STATE_DISCONNECTED
    # A probe interval far beyond the test: only NetworkManager's signal can cause the retry.
    monitor = NetworkMonitor(engine, bus_address=private_bus, probe_interval=3600)
    await monitor.start()
    server: asyncio.Server | None = None
    try:
        # Every charm healthy: no D-Bus connection yet (it is made for the first offline one).
        assert not monitor.network_manager
        charm = await offline_feed_charm(engine, port)
        await until(lambda: monitor.network_manager)
        assert not monitor.probing  # NetworkManager says down: its signal will come, no probing

        server = await serve_feed(port)
        nm.set_state(40)  # connecting: not yet
        await asyncio.sleep(0.3)
        assert monitor.notified == 0
        nm.set_state(70)  # NM_STATE_CONNECTED_GLOBAL
        back = time.monotonic()
        await until(lambda: engine.status(charm).healthy)
        print(f"NetworkManager online -> charm synced in {time.monotonic() - back:.2f} s")
        assert monitor.notified == 1 and monitor.probes == 0
        assert runs(engine, charm) == 2
    finally:
        await monitor.stop()
        bus.disconnect()
        if server is not None:
            server.close()
            await server.wait_closed()


@needs_dbus
async def test_network_manager_online_but_host_down_still_probes(
    engine: Engine, private_bus: str
) -> None:
    """NetworkManager says "connected", yet the server is away: the probe covers that."""
    port = free_port()
    bus, _nm = await fake_network_manager(private_bus, 70)
    monitor = NetworkMonitor(engine, bus_address=private_bus, probe_interval=0.2)
    await monitor.start()
    server: asyncio.Server | None = None
    try:
        charm = await offline_feed_charm(engine, port)
        await until(lambda: monitor.probing and monitor.probes >= 1)
        server = await serve_feed(port)
        await until(lambda: engine.status(charm).healthy)
        assert monitor.notified == 1
    finally:
        await monitor.stop()
        bus.disconnect()
        if server is not None:
            server.close()
            await server.wait_closed()


async def test_no_bus_means_probe_only(engine: Engine, tmp_path: Path) -> None:
    port = free_port()
    monitor = NetworkMonitor(
        engine, bus_address=f"unix:path={tmp_path}/nothing", probe_interval=0.2
    )
    await monitor.start()
    try:
        await offline_feed_charm(engine, port)
        await until(lambda: monitor.probes >= 1)  # tried the bus, found none, probes instead
        assert not monitor.network_manager
    finally:
        await monitor.stop()


# ---- the headless engine ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


class StderrLines:
    """A child's stderr read on a thread, so the test can wait for a line without blocking."""

    def __init__(self, stream: Any) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> tuple[str, float]:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if re.search(pattern, line):
                return line, time.monotonic()
        raise AssertionError(f"no line matching {pattern!r}: {''.join(self.seen)}")


def test_the_headless_engine_syncs_an_offline_charm_when_its_server_comes_back(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAYAPP_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    profile = tmp_path / "profile"
    port = free_port()
    url = f"http://127.0.0.1:{port}/atom.xml"
    base = [sys.executable, "-m", "trayapp", "--profile", str(profile)]
    added = subprocess.run(
        [*base, "charms", "add", "feed-importer", "--name", "news", "--set", f"url={url}"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    engine = subprocess.Popen(
        [*base, "run", "--headless"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    feeds: subprocess.Popen[bytes] | None = None
    try:
        err = StderrLines(engine.stderr)
        err.wait_for(r"charm news: offline")
        feeds = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
             "-d", str(ROOT / "tests" / "data" / "feeds")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        started = time.monotonic()
        # The default backoff would retry 15-30 s later; the monitor's line comes first.
        err.wait_for(r"network is reachable again")
        _line, synced = err.wait_for(r"charm news: ok \(\+2")
        print(f"headless: server back -> charm synced in {synced - started:.2f} s")
    finally:
        engine.send_signal(signals.SIGTERM)
        engine.wait(60)
        if feeds is not None:
            feeds.terminate()
            feeds.wait(10)
    assert engine.returncode == 0
