"""Reset a charm from Settings (issue 16.5: ``charms reset`` in the GUI too).

The real Settings window on the real tray controller and Engine (SQLite profile, started
scheduler) with the demo feed charms against the local feed server: the confirmation says what is
lost, Cancel changes nothing, Reset clears the charm's data and syncs it again, and the status
line follows that sync.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget

from tests.ui.conftest import QLoop, until
from tests.ui.test_tray import Env, scenario
from trayapp.ui.settings import SettingsWindow

SHOTS = Path(__file__).resolve().parents[2] / "out" / "menu"


def shot(widget: QWidget, name: str) -> None:
    """Keep a picture of what the user sees at this step (out/ is ignored by git)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert widget.grab().save(str(SHOTS / f"offscreen-{name}.png"))


def open_on(env: Env, charm_id: str) -> SettingsWindow:
    win = env.ctl.open_window("settings", "charms")
    assert isinstance(win, SettingsWindow)
    win.charm_list.setCurrentRow(win._charm_ids.index(charm_id))
    assert win._editing == charm_id
    return win


def the_box(win: SettingsWindow) -> QMessageBox:
    boxes = [b for b in win.findChildren(QMessageBox) if b.isVisible()]
    assert len(boxes) == 1, boxes
    return boxes[0]


def test_reset_in_settings_asks_what_is_lost_then_clears_and_syncs_again(
    qloop: QLoop, profile_dir: Path
) -> None:
    async def body(env: Env) -> None:
        engine, cid = env.engine, "team-blog"
        win = open_on(env, cid)
        assert win.reset_charm.isVisible() and win.reset_charm.isEnabled()
        assert win.reset_charm.text().replace("&", "") == "Reset and resync…"
        items = engine.stored_items(cid)
        assert items >= 3  # the demo feed's first items
        runs = len(engine.history(cid))

        # Cancel changes nothing: no request, the data stays.
        before = len(env.feeds.requests)
        win.reset_charm.click()
        box = the_box(win)
        assert box.text() == "Forget what Team blog has imported and sync it again from scratch?"
        detail = box.informativeText()
        assert f"the {items} items it has imported" in detail
        assert "settings and sync history are kept" in detail
        assert "nothing is changed or deleted at the source" in detail
        assert "--" not in detail and "trayapp " not in detail  # no CLI words in the GUI
        shot(box, "settings-reset-confirm")
        cancel = box.button(QMessageBox.StandardButton.Cancel)
        assert cancel is not None
        cancel.click()
        await until(lambda: not [b for b in win.findChildren(QMessageBox) if b.isVisible()])
        for _ in range(20):
            await until(lambda: not env.ctl._refresh_timer.isActive())
        assert len(env.feeds.requests) == before and engine.stored_items(cid) == items
        assert len(engine.history(cid)) == runs

        # Reset: the engine's reset (as "trayapp charms reset"), then the charm syncs again.
        win.reset_charm.click()
        box = the_box(win)
        yes = box.button(QMessageBox.StandardButton.Yes)
        assert yes is not None and yes.text().replace("&", "") == "Reset and resync"
        yes.click()
        assert "TRAYAPP_CHARM_RESET team-blog" in env.lines
        assert win.save_status.text().startswith("Cleared what “Team blog” had imported")
        await until(lambda: "/team-blog.xml" in env.feeds.requests[before:])
        await until(lambda: "synced again from the start" in win.save_status.text())
        assert re.fullmatch(
            r"“Team blog” synced again from the start: \d+ items?\.", win.save_status.text()
        ), win.save_status.text()
        # Everything it holds came in again with that run (the store had been emptied):
        # a sync that only refreshed would have added nothing.
        status = engine.status(cid)
        assert status.last_counts.added == engine.stored_items(cid) >= items
        assert len(engine.history(cid)) == runs + 1  # history kept, one more run
        assert engine.charm(cid).settings["url"].endswith("/team-blog.xml")  # settings kept
        shot(win, "settings-reset-done")

        # A new charm has nothing to reset.
        win.new_charm()
        assert not win.reset_charm.isVisible()

    scenario(qloop, profile_dir, body)


def test_reset_of_a_charm_removed_while_asking_says_so_without_a_traceback(
    qloop: QLoop, profile_dir: Path
) -> None:
    async def body(env: Env) -> None:
        win = open_on(env, "project-news")
        win.reset_charm.click()
        box = the_box(win)
        env.engine.remove_charm("project-news")  # from the tray menu or the CLI meanwhile
        yes = box.button(QMessageBox.StandardButton.Yes)
        assert yes is not None
        yes.click()
        await until(lambda: win._editing is None)  # the list followed: nothing to edit
        await until(lambda: not env.ctl._refresh_timer.isActive())
        assert win.save_status.text() == "That charm was removed."
        assert "TRAYAPP_CHARM_RESET project-news" not in env.lines

    scenario(qloop, profile_dir, body)


def test_the_status_line_follows_the_sync_after_a_reset(qloop: QLoop, profile_dir: Path) -> None:
    """While the charm syncs again from the start the line says so; then how it ended. The
    feed here answers only when the test lets it, so the running state is seen for sure."""

    async def body(env: Env) -> None:
        gate = [asyncio.Event()]
        feed = env.feeds.feed_xml("team-blog").encode()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # request line and headers
            await gate[0].wait()
            head = "HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nConnection: close\r\n"
            writer.write(f"{head}Content-Length: {len(feed)}\r\n\r\n".encode() + feed)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            slow = env.engine.add_charm(
                "feed-importer", {"url": f"http://127.0.0.1:{port}/slow.xml"}, name="Slow"
            )
            await until(lambda: env.engine.runs_in_progress() == 1)
            gate[0].set()  # its first sync may finish
            await until(lambda: env.engine.status(slow.id).last_success_at is not None)
            gate[0] = asyncio.Event()

            win = open_on(env, slow.id)
            win.reset_charm.click()
            yes = the_box(win).button(QMessageBox.StandardButton.Yes)
            assert yes is not None
            yes.click()
            await until(lambda: env.engine.runs_in_progress() == 1)
            await until(lambda: win.save_status.text() == "Syncing “Slow” again from the start…")
            assert env.engine.stored_items(slow.id) == 0  # cleared while it waits
            gate[0].set()
            await until(lambda: "synced again from the start" in win.save_status.text())
            assert win.save_status.text() == (
                f"“Slow” synced again from the start: {env.engine.stored_items(slow.id)} items."
            )
        finally:
            gate[0].set()
            server.close()

    scenario(qloop, profile_dir, body)
