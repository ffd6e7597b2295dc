"""Menu refresh at scale (issue 17.6): a refresh costs work in proportion to what changed.

The real Engine (SQLite profile, started scheduler) with many feed charms against the local
demo feed server, and the real TrayController with its QMenu. Counts, never timings: SQL
statements per refresh, charm entries rebuilt, menu items the binder looked at and Qt writes,
refreshes per burst of events. ``bench/menu_refresh.py`` prints the times beside these counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.ui.conftest import QLoop, until
from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.ui.demo import DemoFeedServer
from trayapp.ui.model import build_menu
from trayapp.ui.notify_policy import NotificationPolicy
from trayapp.ui.tray import TrayController

CHARMS = 40


class TrayClock:
    """The tray's clock, held still unless a test moves it: relative times ("synced 2 min
    ago") then change only when the test says, so the counts below are exact."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


@asynccontextmanager
async def many_charms(
    profile: Path, n: int = CHARMS, clock: TrayClock | None = None
) -> AsyncIterator[TrayController]:
    feeds = DemoFeedServer()
    base = await feeds.start()
    engine = Engine(profile, patterns=default_registry())
    slugs = ("project-news", "release-notes", "team-blog")
    for i in range(n):
        engine.add_charm(
            "feed-importer",
            {"url": f"{base}/{slugs[i % 3]}.xml"},
            name=f"Feed {i + 1}",
            interval=timedelta(hours=6),
        )
    ctl = TrayController(
        engine,
        now=clock or TrayClock(),
        policy=NotificationPolicy(grace=timedelta(0)),
        use_desktop_notifications=False,
        use_tray=True,
        report=lambda _l: None,
    )
    await engine.start()
    await ctl.start()
    try:
        await until(
            lambda: (
                all(s.last_success_at for s in engine.statuses().values())
                and not ctl._refresh_timer.isActive()
            ),
            within=120,
        )
        yield ctl
    finally:
        await ctl.stop()
        await engine.stop()
        engine.close()
        await feeds.stop()


def sql_during(ctl: TrayController, fn: object) -> list[str]:
    conn = ctl.engine.store._db()
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        assert callable(fn)
        fn()
    finally:
        conn.set_trace_callback(None)
    return seen


def top_level(ctl: TrayController) -> int:
    return len(ctl.menu.actions())


def test_one_charm_changed_costs_one_entry_not_one_per_charm(
    qloop: QLoop, profile_dir: Path
) -> None:
    async def body() -> None:
        clock = TrayClock()
        async with many_charms(profile_dir, clock=clock) as ctl:
            engine, binder, builder = ctl.engine, ctl.binder, ctl.menu_builder
            cid = engine.charms()[7].id
            ctl.refresh()
            before = (builder.rows_built, binder.visited, binder.updated, binder.writes)
            compared = builder.texts_compared
            reads = engine._charms.reads

            engine.pause(cid)  # one status change, published by the engine
            statements = sql_during(ctl, ctl.refresh)

            # No stored row is read or decoded: the charm list and the statuses are in memory;
            # the only statement asks SQLite whether another process wrote (data_version).
            assert statements and all(s == "PRAGMA data_version" for s in statements), statements
            assert len(statements) <= 2
            assert engine._charms.reads == reads
            built = builder.rows_built - before[0]
            visited = binder.visited - before[1]
            updated = binder.updated - before[2]
            writes = binder.writes - before[3]
            assert built == 1  # the paused charm's entry; the other 39 are reused
            # ...without even working out their relative times (the clock stayed inside
            # every other entry's window).
            assert builder.texts_compared - compared == 1
            # The binder walks the top level (one item per charm plus ~20 fixed ones) and the
            # changed entry's own submenu, and touches Qt only for items that changed: before
            # issue 17.6 it compared all ~12 items of every charm (about 500 here).
            assert visited <= top_level(ctl) + 13
            assert updated <= 12  # header, "Resume all", the charm's line, its changed items
            assert 1 <= writes <= 12
            pause = binder.action(f"charm:{cid}:pause")
            assert pause is not None and pause.text() == "Resume"
            line = binder.action(f"charm:{cid}")
            assert line is not None and line.text().endswith("— paused")

            # The menu equals one built from scratch for the same snapshot.
            snap = ctl.snapshot()
            assert ctl.menu_builder.build(snap) == build_menu(snap)

            # A tick with nothing changed rebuilds nothing and writes nothing to Qt.
            before = (builder.rows_built, binder.writes, builder.texts_compared)
            ctl.refresh()
            assert (builder.rows_built, binder.writes, builder.texts_compared) == before
            # Ten minutes later every "synced just now" reads "synced 10 min ago": every entry
            # is rebuilt once, and the next tick is quiet again.
            first = engine.charms()[0].id
            synced = engine.status(first).last_success_at
            assert synced is not None
            clock.at = synced + timedelta(minutes=10)
            rebuilt = builder.rows_built
            ctl.refresh()
            assert builder.rows_built - rebuilt == CHARMS
            assert line.text().endswith("— paused")
            other = binder.action(f"charm:{first}")
            assert other is not None and other.text().endswith("— synced 10 min ago")
            rebuilt = builder.rows_built
            ctl.refresh()
            assert builder.rows_built == rebuilt

    qloop.run(body(), timeout=180)


def test_a_burst_of_events_is_one_refresh_and_edits_reach_the_menu(
    qloop: QLoop, profile_dir: Path
) -> None:
    async def body() -> None:
        async with many_charms(profile_dir) as ctl:
            engine = ctl.engine
            ctl.refresh()
            n = ctl.refreshes
            built = ctl.menu_builder.rows_built
            engine.pause(None)  # CHARMS status changes in one call: one loop turn
            await until(lambda: ctl.refreshes > n and not ctl._refresh_timer.isActive())
            for _ in range(5):  # nothing else is pending
                await until(lambda: not ctl._refresh_timer.isActive())
            assert ctl.refreshes == n + 1
            assert ctl.menu_builder.rows_built - built == CHARMS  # each changed once

            # While a run is in progress (here one held open by a server that never answers),
            # status changes arriving one per loop turn, right after a refresh (as in a sync
            # of many charms), join one refresh instead of one each.
            release = asyncio.Event()

            async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await release.wait()
                writer.close()

            server = await asyncio.start_server(hold, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            slow = engine.add_charm(
                "feed-importer", {"url": f"http://127.0.0.1:{port}/slow.xml"}, name="Slow"
            )
            try:
                await until(lambda: engine.runs_in_progress() == 1)
                ids = [c.id for c in engine.charms() if c.id != slow.id]
                ctl.refresh()
                n = ctl.refreshes
                for cid in ids[:20]:
                    engine.resume(cid)
                    await asyncio.sleep(0)  # the next event comes in a later loop turn
                await until(lambda: not ctl._refresh_timer.isActive())
                # One, or a few if the machine stalled past REFRESH_GAP_MS between two events;
                # a zero-delay timer alone ran 20 here.
                assert 1 <= ctl.refreshes - n <= 3
                line = ctl.binder.action(f"charm:{ids[19]}")
                assert line is not None and "paused" not in line.text()
            finally:
                release.set()
                server.close()
            # The run ends: with nothing left running the last refresh comes at once.
            await until(lambda: engine.runs_in_progress() == 0)
            await until(lambda: not ctl._refresh_timer.isActive())
            slow_line = ctl.binder.action(f"charm:{slow.id}")
            assert slow_line is not None and "syncing" not in slow_line.text()
            engine.remove_charm(slow.id)
            engine.pause(None)
            await until(lambda: not ctl._refresh_timer.isActive())
            assert all(s.paused for s in engine.statuses().values())
            header = ctl.binder.action("header")
            assert header is not None and header.text() == "Paused until you resume"

            # A rename through the engine (Settings, the CLI's IPC) reaches the menu: the
            # cached charm list is dropped on the engine's own writes.
            first = engine.charms()[0]
            reads = engine._charms.reads
            engine.update_charm(first.id, name="Renamed feed")
            await until(lambda: not ctl._refresh_timer.isActive())
            ctl.refresh()
            line = ctl.binder.action(f"charm:{first.id}")
            assert line is not None and line.text().startswith("Renamed feed — ")
            assert engine._charms.reads == reads + 1

            # A charm another process added (its own connection) shows after reload, read
            # once: the other connection's commit changed SQLite's data_version.
            other = Engine(profile_dir, patterns=default_registry())
            try:
                added = other.add_charm(
                    "feed-importer",
                    {"url": "http://127.0.0.1:9/none.xml"},
                    name="From the CLI",
                    interval=timedelta(hours=6),
                )
            finally:
                other.close()
            engine.reload_charms()
            await until(lambda: ctl.binder.action(f"charm:{added.id}") is not None)
            removed_before = ctl.binder.removed
            engine.remove_charm(added.id)
            await until(lambda: ctl.binder.action(f"charm:{added.id}") is None)
            assert ctl.binder.removed == removed_before + 1

    qloop.run(body(), timeout=180)
