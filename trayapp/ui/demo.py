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
import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

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


# The throwaway profiles this process made: only these are ever deleted, so a user's own
# ``--demo --profile DIR`` is never removed.
_temp_profiles: set[Path] = set()


def make_demo_profile() -> Path:
    """The demo's throwaway profile for ``--demo`` without ``--profile``: never the user's real one.

    One per user (``$XDG_RUNTIME_DIR/trayapp-demo-<uid>``, else the temp folder), not one per
    launch: a second ``trayapp --demo`` then finds the first through the profile's control
    socket and shows its menu, instead of adding a second tray icon. A folder there that is not
    ours (another owner, a symlink, open to others) is never used: a fresh one is made instead.
    """
    uid = os.getuid() if hasattr(os, "getuid") else 0
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime and Path(runtime).is_dir() else Path(tempfile.gettempdir())
    path = base / f"trayapp-demo-{uid}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
        mine = stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077
        if not mine:
            raise PermissionError(f"{path} is not a private folder of this user")
    except OSError as exc:
        log.info("demo profile: %s; using a fresh temporary folder", exc)
        path = Path(tempfile.mkdtemp(prefix="trayapp-demo-"))
    _temp_profiles.add(path)
    return path


def remove_demo_profile(path: Path) -> bool:
    """Delete a profile made by :func:`make_demo_profile`, on clean shutdown; True if removed.

    Called after the engine and account stores are closed. Any other path is left alone (a
    ``--profile`` the user chose), so the call needs no condition at the call site.
    """
    if path not in _temp_profiles:
        return False
    _temp_profiles.discard(path)
    from trayapp.ipc import try_send

    if try_send(path, {"cmd": "ping"}, timeout=2.0) is not None:
        return False  # another demo instance runs on it (ours stopped serving before this)
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        log.warning("could not remove the demo profile %s", path)
        return False
    return True


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
    """The built-in Google emulator with the seeded demo account, running in its own thread."""

    server: Any
    email: str

    @property
    def base_url(self) -> str:
        return str(self.server.base_url)

    def stop(self) -> None:
        self.server.stop_thread()


async def start_demo_google(engine: Any, manager: Any) -> DemoGoogle | None:
    """Start the emulator (demo mailbox and calendars), sign the demo account in, add its charms.

    The emulator runs in its own thread so serving 3,000 demo messages never competes with the
    tray for the UI thread. The demo account is signed in by minting tokens through the
    emulator's control API (a real user would go through the consent page; "Sign in again" in
    the menu does exactly that). On a reused ``--profile`` the account and charms are kept and
    only repointed to this run's emulator (a new port, fresh tokens).
    """
    try:
        from trayapp.auth.client_config import parse_client_json
        from trayapp.auth.signin import OPENID_SCOPES, grant_from_token_response
        from trayapp.emulator.control import ClientInfo
        from trayapp.emulator.seed import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_EMAIL, DEMO_NAME
        from trayapp.emulator.server import EmulatorServer
    except ImportError as exc:
        log.info("demo without Google charms: %s", exc)
        return None
    patterns = {p.id: p for p in engine.patterns}
    wanted = [p for p in ("gmail-importer", "gcalendar-importer") if p in patterns]
    if manager is None or not wanted:
        return None
    server = EmulatorServer(demo=True)
    await asyncio.get_running_loop().run_in_executor(None, server.start_thread)
    demo = DemoGoogle(server, DEMO_EMAIL)
    client = ClientInfo(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, False)
    manager.clients.set(parse_client_json(json.dumps(client.client_config(server.base_url))))
    scopes = [*OPENID_SCOPES, *(s for p in wanted for s in patterns[p].scopes)]
    tokens = server.control.issue_tokens(DEMO_EMAIL, DEMO_CLIENT_ID, scopes)
    grant = grant_from_token_response(
        tokens, email=DEMO_EMAIL, name=DEMO_NAME, requested_scopes=scopes
    )
    existing = next((a for a in manager.accounts() if a.email == DEMO_EMAIL), None)
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
    return demo
