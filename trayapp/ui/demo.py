"""Demo mode (``trayapp --demo``): something real to watch syncing on a fresh machine.

Two halves: feed-importer charms against a tiny in-process feed server on 127.0.0.1 (each feed
gains an item every few requests, so syncs show real counts; every request is logged and, in
test mode, reported, so the end-to-end tests see a click turn into a fetch), and, when the
Google patterns are installed, a Gmail and a Calendar charm on the demo account of the built-in
Google emulator (``start_demo_google``).

Written on asyncio streams rather than the emulator's Starlette stack because it serves three
static-ish XML documents; it is Qt-free and shares the app's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from trayapp.ui.demo_profile import (  # the throwaway profile lives there; re-exported
    make_demo_profile,  # noqa: F401
    remove_demo_profile,  # noqa: F401
)

if TYPE_CHECKING:
    from trayapp.core.engine import Engine

log = logging.getLogger(__name__)

DEMO_FEEDS = {
    "project-news": "Project news",
    "release-notes": "Release notes",
    "team-blog": "Team blog",
}
DEMO_INTERVAL = timedelta(minutes=2)
NEW_ITEM_EVERY = 2  # requests per new item, per feed
FEED_WINDOW = 20  # a feed lists its newest 20 items, like most real feeds
# The request log serves tests and the curious; a demo left running for days must not grow it.
REQUEST_LOG_KEEP = 1000


@dataclass
class DemoFeedServer:
    on_request: Callable[[str], None] = lambda _path: None
    requests: list[str] = field(default_factory=list)
    _server: asyncio.AbstractServer | None = None
    _hits: dict[str, int] = field(default_factory=dict)
    # Feeds made to fail (HTTP 503) through /_demo/fail/<slug>: lets a user (and the e2e tests)
    # see what a failing charm looks like; /_demo/heal/<slug> undoes it.
    failing: set[str] = field(default_factory=set)
    port: int = 0
    # Open connections' handlers: a keep-alive client (a browser, a pooled HTTP client) holds
    # one open after the server stops listening; stop() ends them while the loop still runs.
    _handlers: dict[asyncio.Task[Any], asyncio.StreamWriter] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.base_url

    async def stop(self) -> None:
        """Stop listening and close every open connection before returning.

        A handler still waiting on a keep-alive connection when the app's qasync loop is torn
        down closes its transport from a garbage-collected coroutine, which schedules on a Qt
        timer object that no longer exists ("libshiboken: Internal C++ object (_SimpleTimer)
        already deleted"). Closing the connections here lets each handler see end-of-stream
        and return on a live loop. (Not task.cancel(): on Python 3.11 the streams module's
        done-callback then logs the CancelledError as an unhandled exception.)
        """
        if self._server is not None:
            self._server.close()
        handlers = dict(self._handlers)
        for writer in handlers.values():
            writer.close()
        if handlers:
            _done, stuck = await asyncio.wait(handlers, timeout=2)
            for task in stuck:  # a peer that never reads: give up on it
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def feed_xml(self, slug: str) -> str:
        hits = self._hits.get(slug, 0)
        count = 3 + hits // NEW_ITEM_EVERY
        title = DEMO_FEEDS[slug]
        base = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
        items = []
        for n in range(count, max(0, count - FEED_WINDOW), -1):
            when = format_datetime(base + timedelta(hours=n))
            items.append(
                f"<item><title>{escape(title)} #{n}</title>"
                f"<link>{self.base_url}/{slug}/{n}</link><guid>{slug}-{n}</guid>"
                f"<pubDate>{when}</pubDate><description>Demo item {n}</description></item>"
            )
        return (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{escape(title)}</title><link>{self.base_url}/{slug}</link>"
            f"<description>Pattern Sync demo feed</description>{''.join(items)}</channel></rss>"
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers[task] = writer
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # headers: the demo feed ignores them (no conditional GET)
                parts = request_line.decode("latin-1").split()
                path = parts[1] if len(parts) > 1 else "/"
                slug = path.strip("/").removesuffix(".xml")
                control = path.split("/")
                if len(control) == 4 and control[1] == "_demo" and control[3] in DEMO_FEEDS:
                    if control[2] == "fail":
                        self.failing.add(control[3])
                    elif control[2] == "heal":
                        self.failing.discard(control[3])
                    body = b"ok"
                    head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                elif slug in self.failing:
                    body = b"demo outage"
                    head = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                elif slug in DEMO_FEEDS:
                    self._hits[slug] = self._hits.get(slug, 0) + 1
                    body = self.feed_xml(slug).encode()
                    head = "HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml; charset=utf-8\r\n"
                else:
                    body = b"not found"
                    head = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                self.requests.append(path)
                if len(self.requests) > 2 * REQUEST_LOG_KEEP:
                    del self.requests[:-REQUEST_LOG_KEEP]
                self.on_request(path)
                writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._handlers.pop(task, None)


def seed_demo_charms(engine: Engine, base_url: str) -> None:
    """Add the demo charms to an empty profile; on a reused profile, repoint them to this port."""
    existing = {c.name: c for c in engine.charms()}
    for slug, title in DEMO_FEEDS.items():
        url = f"{base_url}/{slug}.xml"
        charm = existing.get(title)
        if charm is None:
            engine.add_charm("feed-importer", {"url": url}, name=title, interval=DEMO_INTERVAL)
        elif charm.settings.get("url") != url:
            engine.update_charm(charm.id, settings={**charm.settings, "url": url})


@dataclass
class DemoGoogle:
    """The built-in Google emulator with the seeded demo account, in a child process.

    Google is another machine for a real user; for the demo it is another process, so its
    server stack (Starlette, uvicorn) and the 3,000-message mailbox never sit in the tray's
    memory or compete with the tray's threads. The child stops when the tray closes its
    standard input (``stop``), and by itself when the tray dies (``--until-stdin-closes``).
    """

    process: subprocess.Popen[bytes]
    facts: dict[str, Any]

    @property
    def base_url(self) -> str:
        return str(self.facts["base_url"])

    @property
    def email(self) -> str:
        return str(self.facts["account"])

    def stop(self) -> None:
        """Stop the emulator (blocking: call from a worker thread)."""
        proc = self.process
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # end of file: the emulator stops (--until-stdin-closes)
        try:
            proc.wait(EMULATOR_STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(EMULATOR_STOP_WAIT_S)
        if proc.stdout is not None:  # after the exit: a reader blocked on it has seen EOF
            with contextlib.suppress(OSError):
                proc.stdout.close()


EMULATOR_START_WAIT_S = 60.0  # python start-up, the server stack and 3,000 seeded messages
EMULATOR_STOP_WAIT_S = 10.0


def demo_emulator_available() -> bool:
    """Is the emulator's server stack installed (the Google half of the demo needs it)?"""
    return all(importlib.util.find_spec(name) is not None for name in ("starlette", "uvicorn"))


def emulator_command(*args: str) -> list[str]:
    """``trayapp emulator ARGS`` as a child process: the frozen bundle or this Python."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "emulator", *args]
    return [sys.executable, "-m", "trayapp.emulator", *args]


def spawn_demo_emulator(profile_dir: Path) -> DemoGoogle | None:
    """Start the demo emulator process at once; :func:`start_demo_google` waits for it.

    Started before the engine opens, so seeding its mailbox runs beside the tray's own start.
    None when the emulator is not installed (the demo then has its feed charms only).
    """
    if not demo_emulator_available():
        log.info("demo without Google charms: the emulator is not installed")
        return None
    config = profile_dir / DEMO_CLIENT_FILE
    args = ("--seed", "demo", "--port", "0", "--json", "--until-stdin-closes")
    process = subprocess.Popen(
        emulator_command(*args, "--client-config", str(config)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    return DemoGoogle(process, {})


DEMO_CLIENT_FILE = "demo-client-secret.json"  # written by the emulator into the demo profile


async def start_demo_google(engine: Any, manager: Any, demo: DemoGoogle, profile_dir: Path) -> bool:
    """Wait for the emulator, sign the demo account in, add its Gmail and Calendar charms.

    False (and the emulator stopped) when the profile has no account manager or the Google
    patterns are absent. The demo account is signed in by minting tokens through the emulator's
    control API (``POST /__emu__/issue_tokens``; a real user would go through the consent page,
    and "Sign in again" in the menu does exactly that). On a reused ``--profile`` the account
    and charms are kept and only repointed to this run's emulator (a new port, fresh tokens).
    """
    patterns = {m.id: m for m in engine.patterns.metas()}  # descriptors: no import
    wanted = [p for p in ("gmail-importer", "gcalendar-importer") if p in patterns]
    loop = asyncio.get_running_loop()
    if manager is None or not wanted:
        await loop.run_in_executor(None, demo.stop)
        return False
    stdout = demo.process.stdout
    assert stdout is not None
    # The CLI's one JSON line of facts is its promise that it listens (nothing polls a port).
    line = await asyncio.wait_for(
        loop.run_in_executor(None, stdout.readline), EMULATOR_START_WAIT_S
    )
    if not line:
        raise RuntimeError(f"the demo emulator ended at start (status {demo.process.poll()})")
    demo.facts = json.loads(line)
    await _sign_in_demo(demo, engine, manager, patterns, wanted, profile_dir)
    return True


async def _sign_in_demo(
    demo: DemoGoogle,
    engine: Any,
    manager: Any,
    patterns: dict[str, Any],
    wanted: list[str],
    profile_dir: Path,
) -> None:
    import httpx

    from trayapp.auth.client_config import parse_client_json
    from trayapp.auth.signin import OPENID_SCOPES, grant_from_token_response

    config = profile_dir / DEMO_CLIENT_FILE
    try:
        text = config.read_text(encoding="utf-8")
    finally:
        config.unlink(missing_ok=True)  # the emulator's demo client: no use once read
    manager.clients.set(parse_client_json(text, source=str(config)))
    scopes = [*OPENID_SCOPES, *(s for p in wanted for s in patterns[p].scopes)]
    body = {"email": demo.email, "client_id": demo.facts["client_id"], "scopes": scopes}
    async with httpx.AsyncClient(base_url=demo.base_url, trust_env=False, timeout=30) as http:
        answer = await http.post("/__emu__/issue_tokens", json=body)
        answer.raise_for_status()
    tokens = answer.json()["result"]
    grant = grant_from_token_response(
        tokens, email=demo.email, name=demo.facts.get("name"), requested_scopes=scopes
    )
    existing = next((a for a in manager.accounts() if a.email == demo.email), None)
    account = await manager.complete_sign_in(grant, existing.id if existing else None)
    names = {c.name for c in engine.charms()}
    if "Demo Gmail" not in names and "gmail-importer" in wanted:
        engine.add_charm(
            "gmail-importer",
            {"query": "in:inbox", "max_messages": 200},
            name="Demo Gmail",
            account_id=account.id,
            interval=DEMO_INTERVAL,
        )
    if "Demo Calendar" not in names and "gcalendar-importer" in wanted:
        engine.add_charm(
            "gcalendar-importer", {}, name="Demo Calendar", account_id=account.id,
            interval=DEMO_INTERVAL,
        )  # fmt: skip
