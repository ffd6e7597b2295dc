"""A third-party plugin, written from docs/plugins.md, whose updaters call blocking code.

Used by the tests of the watchdog's rescue (tests/plugins/test_hang.py and the tray e2e test):
it is installed as a real plugin (entry points in a ``.dist-info`` of the profile's plugins
folder) or registered in a registry. Until the file named by ``release_file`` exists, each
updater blocks the whole event loop in its own way; after that it returns at once.
"""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import timedelta
from pathlib import Path

from trayapp.api import BaseModel, Pattern, RunReport, UpdateContext


class HangSettings(BaseModel):
    release_file: str = ""  # once this file exists, the updater stops blocking


def _released(settings: HangSettings) -> bool:
    return bool(settings.release_file) and Path(settings.release_file).exists()


class SleepyImporter(Pattern[HangSettings]):
    """Calls time.sleep(600) on the event loop: a typical blocking call."""

    id = "hang-sleep"
    title = "Sleepy importer"
    Settings = HangSettings
    timeout = timedelta(seconds=1)

    async def bg_updater(self, ctx: UpdateContext[HangSettings]) -> RunReport:
        if not _released(ctx.settings):
            time.sleep(600)  # noqa: ASYNC251 - the bug this plugin is about
        return RunReport(message="released")


class BusyImporter(Pattern[HangSettings]):
    """Spins in a pure-Python loop that never awaits."""

    id = "hang-busy"
    title = "Busy importer"
    Settings = HangSettings
    timeout = timedelta(seconds=1)

    async def bg_updater(self, ctx: UpdateContext[HangSettings]) -> RunReport:
        spins = 0
        while not _released(ctx.settings):
            spins += 1
        return RunReport(message=f"released after {spins} spins")


class SocketImporter(Pattern[HangSettings]):
    """Reads from a socket that never answers, synchronously (like requests without timeout)."""

    id = "hang-socket"
    title = "Socket importer"
    Settings = HangSettings
    timeout = timedelta(seconds=1)

    async def bg_updater(self, ctx: UpdateContext[HangSettings]) -> RunReport:
        if not _released(ctx.settings):
            mine, theirs = socket.socketpair()
            with mine, theirs:
                mine.recv(1)  # nobody ever writes to ``theirs``
        return RunReport()


class GatherImporter(Pattern[HangSettings]):
    """Fetches pages concurrently with asyncio.gather; each fetch blocks (requests-style)."""

    id = "hang-gather"
    title = "Gather importer"
    Settings = HangSettings
    timeout = timedelta(seconds=1)

    async def bg_updater(self, ctx: UpdateContext[HangSettings]) -> RunReport:
        async def fetch(page: int) -> int:
            if not _released(ctx.settings):
                time.sleep(600)  # noqa: ASYNC251 - blocks inside a task the updater started
            return page

        pages = await asyncio.gather(fetch(1), fetch(2))
        return RunReport(added=len(pages))
