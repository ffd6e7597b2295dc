"""The tray controller on a real Engine, a real SQLite profile and a real local feed server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PySide6.QtCore import QPoint, QTimer
from PySide6.QtWidgets import QLabel, QMessageBox, QSystemTrayIcon

from tests.ui.conftest import QLoop, until
from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.core.events import LoopBlocked
from trayapp.core.outcomes import OutcomeKind
from trayapp.ui.demo import DemoFeedServer, seed_demo_charms
from trayapp.ui.model import IconState
from trayapp.ui.notify_policy import NotificationPolicy
from trayapp.ui.tray import TrayController
from trayapp.ui.windows import NO_TRAY_HINT, ActivityWindow, StatusWindow


@dataclass
class Env:
    engine: Engine
    ctl: TrayController
    feeds: DemoFeedServer
    lines: list[str]
    quits: list[bool]

    def all_ok(self) -> bool:
        st = self.engine.statuses()
        return len(st) == 3 and all(
            s.last_outcome is OutcomeKind.OK and s.state.value == "scheduled" for s in st.values()
        )

    def trigger(self, key: str) -> None:
        act = self.ctl.binder.action(key)
        assert act is not None, key
        act.trigger()

    def text(self, key: str) -> str:
        act = self.ctl.binder.action(key)
        assert act is not None, key
        return act.text()


@asynccontextmanager
async def tray_env(
    profile_dir: Path, *, use_tray: bool = True, force_status_window: bool = False
) -> AsyncIterator[Env]:
    feeds = DemoFeedServer()
    base = await feeds.start()
    engine = Engine(profile_dir, patterns=default_registry())
    seed_demo_charms(engine, base)
    lines: list[str] = []
    quits: list[bool] = []
    ctl = TrayController(
        engine,
        on_quit=lambda: quits.append(True),
        policy=NotificationPolicy(grace=timedelta(0)),
        use_desktop_notifications=False,
        use_tray=use_tray,
        force_status_window=force_status_window,
        report=lines.append,
    )
    await engine.start()
    await ctl.start()
    env = Env(engine, ctl, feeds, lines, quits)
    try:
        await until(env.all_ok)
        yield env
    finally:
        await ctl.stop()
        await engine.stop()
        engine.close()
        await feeds.stop()


def scenario(qloop: QLoop, profile_dir: Path, body: Callable[[Env], Awaitable[None]]) -> None:
    async def run() -> None:
        async with tray_env(profile_dir) as env:
            await body(env)

    qloop.run(run(), timeout=60)


def test_left_click_syncs_every_charm(qloop: QLoop, profile_dir: Path) -> None:
    async def body(env: Env) -> None:
        before = len(env.feeds.requests)
        assert env.ctl.tray is not None
        env.ctl.tray.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
        await until(lambda: len(env.feeds.requests) >= before + 3)
        assert sorted(env.feeds.requests[before:]) == [
            "/project-news.xml",
            "/release-notes.xml",
            "/team-blog.xml",
        ]
        await until(lambda: env.ctl.state is IconState.OK and env.all_ok())
        assert "TRAYAPP_ICON_STATE syncing" in env.lines
        # A context-menu (right) click is not a sync.
        n = len(env.feeds.requests)
        env.ctl.tray.activated.emit(QSystemTrayIcon.ActivationReason.Context)
        for _ in range(10):
            await asyncio.sleep(0)
        assert len(env.feeds.requests) == n

    scenario(qloop, profile_dir, body)


def test_a_click_shows_syncing_at_once_and_counts_the_charms(
    qloop: QLoop, profile_dir: Path
) -> None:
    """The issue: fast runs finished before the icon ever showed "syncing"."""

    async def body(env: Env) -> None:
        assert env.ctl.tray is not None and env.ctl.state is IconState.OK
        env.ctl.tray.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
        # Synchronously, inside the click: no event-loop turn has run yet.
        assert env.ctl.state is IconState.SYNCING
        assert env.ctl.tray.toolTip() == "Pattern Sync: Syncing 1 of 3…"
        assert env.ctl._anim.isActive()  # the arrows turn while it syncs
        seen: set[str] = set()

        def watch() -> bool:
            seen.add(env.ctl.tray.toolTip() if env.ctl.tray else "")
            return env.ctl.state is IconState.OK

        await until(watch)
        assert env.all_ok()
        assert "Pattern Sync: Syncing 3 of 3…" in seen
        assert not env.ctl._anim.isActive() and not env.ctl._batch_timer.isActive()

    scenario(qloop, profile_dir, body)


def test_menu_shows_each_charm_and_the_header(qloop: QLoop, profile_dir: Path) -> None:
    async def body(env: Env) -> None:
        env.ctl.refresh()
        assert env.text("header").startswith("All synced")
        for cid, name in [("project-news", "Project news"), ("team-blog", "Team blog")]:
            assert env.text(f"charm:{cid}").startswith(f"{name} — synced")
        assert "+3" in env.text("charm:project-news:counts")  # the demo feed starts with 3 items
        assert env.ctl.tray is not None
        assert env.ctl.tray.toolTip().startswith("Pattern Sync: All synced")

    scenario(qloop, profile_dir, body)


def test_pause_all_for_an_hour_then_resume(qloop: QLoop, profile_dir: Path) -> None:
    async def body(env: Env) -> None:
        env.trigger("pause_all:1h")
        await until(lambda: all(s.paused for s in env.engine.statuses().values()))
        until_set = {s.paused_until for s in env.engine.statuses().values()}
        assert len(until_set) == 1
        (when,) = until_set
        assert when is not None
        assert abs((when - (datetime.now(UTC) + timedelta(hours=1))).total_seconds()) < 60
        await until(lambda: env.ctl.state is IconState.PAUSED)
        assert env.text("pause_all").startswith("Paused, resumes")
        env.trigger("resume_all")
        await until(lambda: not any(s.paused for s in env.engine.statuses().values()))
        await until(lambda: env.ctl.state in (IconState.OK, IconState.SYNCING))

    scenario(qloop, profile_dir, body)


def test_per_charm_pause_and_sync_now(qloop: QLoop, profile_dir: Path) -> None:
    async def body(env: Env) -> None:
        env.trigger("charm:team-blog:pause")
        await until(lambda: env.engine.status("team-blog").paused)
        await until(lambda: env.text("charm:team-blog:pause") == "Resume")
        before = len(env.feeds.requests)
        env.trigger("charm:project-news:sync")
        await until(lambda: "/project-news.xml" in env.feeds.requests[before:])

    scenario(qloop, profile_dir, body)


def test_failures_notify_once_and_are_kept_when_no_service(qloop: QLoop, profile_dir: Path) -> None:
    async def body(env: Env) -> None:
        env.engine.update_charm("team-blog", settings={"url": f"{env.feeds.base_url}/gone.xml"})
        for attempt in (1, 2, 3):
            env.engine.sync_now("team-blog")
            await until(
                lambda n=attempt: env.engine.status("team-blog").consecutive_failures >= n  # type: ignore[misc]
            )
        await until(lambda: any(ln.startswith("TRAYAPP_NOTIFIED") for ln in env.lines))
        env.ctl.refresh()
        notified = [ln for ln in env.lines if ln.startswith("TRAYAPP_NOTIFIED")]
        assert len(notified) == 1 and "Team blog stopped syncing" in notified[0]
        entries = env.ctl.notifier.recent.items()
        assert len(entries) == 1 and entries[0].shown_by in ("tray", "none")
        # The entry is in the menu and its action still works (Activity on that charm).
        assert "Team blog stopped syncing" in env.text(f"recent:{entries[0].id}")
        env.trigger(f"recent:{entries[0].id}")
        win = env.ctl._windows.get("activity")
        assert isinstance(win, ActivityWindow) and win.current_charm() == "team-blog"
        assert win.table.rowCount() >= 3
        outcome = win.table.item(0, 2)
        assert outcome is not None and outcome.text() != "ok"
        # A feed that is gone (HTTP 404) is a config problem: the user must fix it (issue 14.6).
        assert env.ctl.state is IconState.ATTENTION

    scenario(qloop, profile_dir, body)


def test_loop_blocked_charm_is_shown(qloop: QLoop, profile_dir: Path) -> None:
    async def body(env: Env) -> None:
        env.engine.publish(LoopBlocked("release-notes", 2.4))
        await until(lambda: env.ctl.binder.action("blocked").isVisible())  # type: ignore[union-attr]
        assert env.text("blocked").startswith("Release notes froze the app for 2.4 s")

    scenario(qloop, profile_dir, body)


def test_the_open_menu_moves_no_row_and_shows_new_charms_once_closed(
    qloop: QLoop, profile_dir: Path
) -> None:
    """A charm added in the background (the demo's Gmail) used to push "Quit" down under the
    pointer; a freeze notice appearing at the top moved every row."""

    async def body(env: Env) -> None:
        menu = env.ctl.menu
        menu.popup(QPoint(40, 40))  # aboutToShow: one last full refresh before it shows
        await until(menu.isVisible)

        def rows() -> dict[str, int]:
            return {
                a.data(): menu.actionGeometry(a).y()
                for a in menu.actions()
                if isinstance(a.data(), str) and a.isVisible()
            }

        before, height = rows(), menu.height()
        refreshes = env.ctl.refreshes
        env.engine.add_charm(
            "feed-importer", {"url": f"{env.feeds.base_url}/team-blog.xml"}, name="Late feed"
        )
        fetched = len(env.feeds.requests)
        env.ctl.sync_clicked(None)  # status lines keep changing meanwhile
        await until(lambda: env.text("header").startswith("Syncing"))  # the words update
        await until(lambda: len(env.feeds.requests) >= fetched + 4)
        await until(lambda: env.engine.runs_in_progress() == 0)
        await until(lambda: env.text("header").startswith("All synced"))
        env.engine.publish(LoopBlocked("release-notes", 2.4))
        await until(lambda: env.text("blocked").startswith("Release notes froze"))
        assert rows() == before and menu.height() == height
        assert env.ctl.refreshes > refreshes + 1 and env.ctl.binder.deferred
        new = [c.id for c in env.engine.charms() if c.name == "Late feed"]
        assert env.ctl.binder.action(f"charm:{new[0]}") is None
        blocked = env.ctl.binder.action("blocked")
        assert blocked is not None and not blocked.isVisible()
        menu.hide()
        await until(lambda: env.ctl.binder.action(f"charm:{new[0]}") is not None)
        assert blocked.isVisible() and not env.ctl.binder.deferred
        menu.popup(QPoint(40, 40))
        await until(menu.isVisible)
        assert rows()["quit"] > before["quit"]  # two rows more: the charm and the notice
        menu.hide()

    scenario(qloop, profile_dir, body)


def test_quit_goes_through_on_quit(qloop: QLoop, profile_dir: Path) -> None:
    async def body(env: Env) -> None:
        env.trigger("quit")
        assert env.quits == [True]

    scenario(qloop, profile_dir, body)


def test_status_window_when_there_is_no_tray(qloop: QLoop, profile_dir: Path) -> None:
    async def run() -> None:
        async with tray_env(profile_dir, use_tray=False) as env:
            win = env.ctl.status_window
            assert isinstance(win, StatusWindow) and win.isVisible()
            env.ctl.refresh()
            assert win.summary.text().startswith("All synced")
            hints = [w.text() for w in win.findChildren(QLabel) if w.objectName() == "hint"]
            assert hints == [NO_TRAY_HINT]
            assert "TRAYAPP_STATUS_WINDOW" in env.lines

    qloop.run(run(), timeout=60)


def test_no_tray_asked_for_has_no_missing_tray_hint_and_closing_quits(
    qloop: QLoop, profile_dir: Path
) -> None:
    async def run() -> None:
        async with tray_env(profile_dir, use_tray=False, force_status_window=True) as env:
            win = env.ctl.status_window
            assert isinstance(win, StatusWindow) and win.isVisible()
            assert [w for w in win.findChildren(QLabel) if w.objectName() == "hint"] == []
            assert env.quits == []
            win.close()
            assert env.quits == [True]  # the window is the app: no invisible process left

    qloop.run(run(), timeout=60)


def test_relative_times_tick_only_while_the_menu_is_open(qloop: QLoop, profile_dir: Path) -> None:
    async def body(env: Env) -> None:
        ctl = env.ctl
        await until(lambda: not ctl._refresh_timer.isActive() and not ctl._grace_timer.isActive())
        idle_timers = [t for t in ctl.findChildren(QTimer) if t.isActive()]
        assert idle_timers == []  # an idle tray wakes up for nothing
        ctl.menu.aboutToShow.emit()
        assert ctl._tick.isActive() and ctl._tick.interval() == 15_000
        ctl.menu.aboutToHide.emit()
        assert not ctl._tick.isActive()

    scenario(qloop, profile_dir, body)


def _confirm(env: Env, answer: QMessageBox.StandardButton) -> None:
    boxes = [w for k, w in env.ctl._windows.items() if k.startswith("confirm:")]
    assert len(boxes) == 1 and isinstance(boxes[0], QMessageBox)
    button = boxes[0].button(answer)
    assert button is not None
    if answer is QMessageBox.StandardButton.Yes:  # the button says what it does
        assert button.text().replace("&", "") in ("Remove", "Reset and resync")
    button.click()


def test_reset_and_remove_ask_first_then_call_the_engine(qloop: QLoop, profile_dir: Path) -> None:
    async def body(env: Env) -> None:
        # Cancel changes nothing.
        env.trigger("charm:team-blog:remove")
        _confirm(env, QMessageBox.StandardButton.Cancel)
        assert "team-blog" in [c.id for c in env.engine.charms()]
        # Reset and resync: the charm fetches again from scratch.
        before = len(env.feeds.requests)
        env.trigger("charm:team-blog:reset")
        _confirm(env, QMessageBox.StandardButton.Yes)
        await until(lambda: "/team-blog.xml" in env.feeds.requests[before:])
        # Remove: gone from the engine and from the menu (only its own actions removed).
        news = env.ctl.binder.action("charm:project-news")
        env.trigger("charm:team-blog:remove")
        _confirm(env, QMessageBox.StandardButton.Yes)
        await until(lambda: "team-blog" not in [c.id for c in env.engine.charms()])
        await until(lambda: env.ctl.binder.action("charm:team-blog") is None)
        assert env.ctl.binder.action("charm:project-news") is news

    scenario(qloop, profile_dir, body)


def test_sync_now_of_a_rate_limited_charm_waits_and_says_so(
    qloop: QLoop, profile_dir: Path
) -> None:
    """A 429 with Retry-After: shown as waiting (no error icon), and "Sync now" within the
    wait sends no request but tells the user when the next try is."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class Limited(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(429)
            self.send_header("Retry-After", "1200")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Limited)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    async def body(env: Env) -> None:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/feed.xml"
        env.engine.update_charm("team-blog", settings={"url": url})
        env.engine.sync_now("team-blog")
        await until(lambda: env.engine.status("team-blog").last_outcome is OutcomeKind.RATE_LIMITED)
        await until(lambda: not env.engine.status("team-blog").running)
        assert hits == ["/feed.xml"]
        env.ctl.refresh()
        assert env.ctl.state is IconState.OK
        line = env.text("charm:team-blog")
        assert line.startswith("Team blog — waiting: the server asked to wait until "), line
        before = len(env.feeds.requests)
        env.trigger("charm:team-blog:sync")
        await until(lambda: any(ln.startswith("TRAYAPP_NOTIFIED") for ln in env.lines))
        assert "TRAYAPP_SYNC_WAITING team-blog" in env.lines
        notice = env.ctl.notifier.recent.items()[-1].notice
        assert notice.title == "Not synced yet"
        assert notice.body.startswith("Team blog: the server asked to wait until "), notice.body
        # A click on the icon syncs the other charms; the waiting one still is not contacted.
        assert env.ctl.tray is not None
        env.ctl.tray.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
        await until(lambda: len(env.feeds.requests) >= before + 2)
        await until(lambda: env.ctl.state is IconState.OK)
        assert hits == ["/feed.xml"]
        assert "/team-blog.xml" not in env.feeds.requests[before:]

    try:
        scenario(qloop, profile_dir, body)
    finally:
        httpd.shutdown()
        httpd.server_close()
