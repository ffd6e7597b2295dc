"""The tray controller: observes the engine, shows icon/menu/notifications, sends commands.

It holds no sync logic. Events only mark the view dirty; one single-shot timer coalesces a burst
of events into one refresh: at once (after the events already queued), except while runs are in
progress, when the engine's run events refresh at most once per :data:`REFRESH_GAP_MS`. Relative
times tick only while the menu (or the status window) is visible, so an idle tray has no timers
running at all.

A refresh costs work in proportion to what changed (issue 17.6): the engine keeps its charm list
decoded, the snapshot keeps the view of each charm whose definition and status objects did not
change, :class:`~trayapp.ui.model.MenuBuilder` rebuilds only the entries whose words changed, and
the binder skips unchanged entries without touching Qt.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QMenu, QMessageBox, QSystemTrayIcon, QWidget

from trayapp import DISPLAY_NAME
from trayapp.core.engine import Engine
from trayapp.core.events import (
    CharmStatusChanged,
    EngineEvent,
    LoopBlocked,
    RunFinished,
    RunProgress,
    RunStarted,
)
from trayapp.core.status import CharmState, CharmStatus
from trayapp.ui.accounts import AccountsSource, NoAccounts
from trayapp.ui.i18n import tr
from trayapp.ui.icons import (
    SYNC_FRAME_MS,
    SYNC_FRAMES,
    Style,
    default_style,
    icon_path,
    state_icon,
)
from trayapp.ui.menu import MenuBinder, new_menu
from trayapp.ui.model import (
    AccountView,
    CharmView,
    CommandTable,
    IconState,
    LoopBlock,
    MenuBuilder,
    RecentEntry,
    Snapshot,
    SyncBatch,
    ViewCache,
    charm_needs_sign_in,
    icon_state,
    make_snapshot,
    pause_until,
    tooltip,
)
from trayapp.ui.notifier import Notifier
from trayapp.ui.notify_policy import Notice, NotificationPolicy
from trayapp.ui.report import TestReporter as TestReporter  # re-exported

log = logging.getLogger(__name__)

TEST_REPORT_ENV = "TRAYAPP_TEST_REPORT"  # "stderr" or a file path: machine-readable UI events
MENU_TICK_MS = 15_000
LOOP_BLOCK_SHOWN_FOR = timedelta(hours=1)
# While events keep coming, refresh at most this often: a sync of 200 charms sends 600+ events
# (started, status, finished), each of which used to refresh on its own. 50 ms is below what
# the eye notices in a menu or a tooltip, and an event after a quiet spell refreshes at once.
REFRESH_GAP_MS = 50
CLICK_FEEDBACK_S = 1.2  # a click shows "syncing" at least this long, however fast the runs are
BATCH_GIVE_UP_S = 5.0  # a clicked charm that has not started by then is not waited for


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _MenuWatch(QObject):
    """Test mode: calls back after the open menu moved, resized or was repainted (an entry
    that moves inside it repaints it), so its layout is reported again if it changed."""

    def __init__(self, changed: Callable[[], None], parent: QObject) -> None:
        super().__init__(parent)
        self._changed = changed

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in (QEvent.Type.Move, QEvent.Type.Resize, QEvent.Type.Paint):
            self._changed()
        return False


class TrayController(QObject):
    def __init__(
        self,
        engine: Engine,
        accounts: AccountsSource | None = None,
        *,
        now: Callable[[], datetime] = _utcnow,
        on_quit: Callable[[], None] = lambda: None,
        policy: NotificationPolicy | None = None,
        use_desktop_notifications: bool = True,
        force_status_window: bool = False,
        use_tray: bool | None = None,
        watch_system: bool = False,
        tray: QSystemTrayIcon | None = None,
        report: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.accounts: AccountsSource = accounts or NoAccounts()
        self.now = now
        self._on_quit = on_quit
        self.report = report or TestReporter(os.environ.get(TEST_REPORT_ENV))
        self.policy = policy or NotificationPolicy()
        self.notifier = Notifier(
            self.run_command,
            now,
            balloon=self._balloon,
            icon=icon_path(IconState.OK),
            report=self.report,
            use_desktop=use_desktop_notifications,
        )
        self.notifier.on_change(self.schedule_refresh)
        self._watch_system = watch_system  # sleep/resume events (the app: True)
        self._sleep: Any = None
        self._loop_block: LoopBlock | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._windows: dict[str, QWidget] = {}
        self._disposed = False
        self.state: IconState | None = None
        self.refreshes = 0
        self.disposing = False
        self.icon_style: Style = default_style()
        # The sync the user sees: charms in it, those finished, and how long to show it at least.
        self._batch: set[str] = set()
        self._batch_done: set[str] = set()
        self._batch_started: set[str] = set()
        self._batch_clicked_at = 0.0
        self._batch_min_until = 0.0
        self._batch_timer = QTimer(self)  # ends the click feedback; runs only during a sync
        self._batch_timer.setSingleShot(True)
        self._batch_timer.timeout.connect(self.schedule_refresh)
        self._frame = 0
        self._anim = QTimer(self)  # turns the syncing arrows; runs only while syncing
        self._anim.setInterval(SYNC_FRAME_MS)
        self._anim.timeout.connect(self._next_frame)

        self.menu: QMenu = new_menu()
        self.binder = MenuBinder(self.menu, self.run_command)
        self.menu_builder = MenuBuilder()
        self._views: ViewCache = {}  # charm views kept between snapshots (make_snapshot)
        self._last_refresh = -1e9  # time.monotonic() of the last refresh
        self.menu.aboutToShow.connect(self._menu_shown)
        self.menu.aboutToHide.connect(self._menu_hidden)

        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.timeout.connect(self.refresh)
        self._tick = QTimer(self)  # runs only while the menu or status window is visible
        self._tick.setInterval(MENU_TICK_MS)
        self._tick.timeout.connect(self.refresh)
        self._grace_timer = QTimer(self)
        self._grace_timer.setSingleShot(True)
        # Precise: a coarse QTimer may fire up to 5% early (0.75 s of the 15 s quiet period),
        # and a notice held back by the quiet period is delivered only by this refresh.
        self._grace_timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._grace_timer.timeout.connect(self._grace_over)

        # Test mode only: polls the icon geometry until the tray host has placed it.
        self._geo_timer = QTimer(self)
        self._geo_timer.setInterval(100)
        self._geo_timer.timeout.connect(self._report_geometry)
        self._geo_polls = 0
        self._geo_last: tuple[int, int, int, int] | None = None
        self._menu_report_timer = QTimer(self)
        self._menu_report_timer.setSingleShot(True)
        self._menu_report_timer.setInterval(50)
        self._menu_report_timer.timeout.connect(self._first_menu_report)
        self._menu_reporting = False  # test mode: the open menu's layout has been reported
        self._menu_layout: tuple[object, ...] | None = None  # ...and this is what was reported
        self._menu_generation = 0
        self._menu_watch: _MenuWatch | None = None

        self.tray: QSystemTrayIcon | None = None
        self.status_window: QWidget | None = None
        # The user asked for the window (--no-tray): it says nothing about a missing tray.
        self.tray_declined = force_status_window
        if use_tray is None:
            use_tray = QSystemTrayIcon.isSystemTrayAvailable() and not force_status_window
        if tray is not None:
            tray.setParent(self)  # adopt the icon shown while the engine started
            self.tray = tray
            self.tray.setContextMenu(self.menu)
            self.tray.activated.connect(self._activated)
        elif use_tray:
            self.tray = QSystemTrayIcon(state_icon(IconState.OK, self.icon_style), self)
            self.tray.setContextMenu(self.menu)
            self.tray.activated.connect(self._activated)
        self.commands = self._command_table()
        if hasattr(self.accounts, "on_result"):
            self.accounts.on_result = self._sign_in_result

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._unsubscribe.append(self.engine.subscribe(self._on_engine_event))
        self._unsubscribe.append(self.accounts.subscribe(self.schedule_refresh))
        # The icon first: probing the notification service can take up to its timeout.
        self.policy.started(self.now())
        self._arm_grace_timer()
        self.refresh()
        if self.tray is not None:
            self.tray.show()
            reporting = not isinstance(self.report, TestReporter) or self.report.enabled
            if reporting and QSystemTrayIcon.isSystemTrayAvailable():
                self._geo_timer.start()  # test mode on a real tray host only
        else:
            from trayapp.ui.windows import StatusWindow

            win = StatusWindow(self)
            self.status_window = win
            win.show()
            self.report("TRAYAPP_STATUS_WINDOW")
        self.report("TRAYAPP_READY")
        if self._watch_system:
            from trayapp.ui.system_events import SleepWatcher

            self._sleep = SleepWatcher(self.resumed_from_sleep)
            await self._sleep.start()

    async def stop(self) -> None:
        for unsub in self._unsubscribe:
            unsub()
        self._unsubscribe.clear()
        self._tick.stop()
        self._refresh_timer.stop()
        self._grace_timer.stop()
        self._geo_timer.stop()
        self._menu_report_timer.stop()
        self._anim.stop()
        self._batch_timer.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.notifier.stop()
        if self._sleep is not None:
            self._sleep.stop()
        self.dispose()

    def dispose(self) -> None:
        """Close and delete the widgets in a safe order: icon, then its menu, then windows.

        Left to Python's garbage collector, the menu (a parentless widget) can be deleted before
        the tray icon that still points to it, or while Qt is delivering an event to it.
        """
        if self._disposed:
            return
        self._disposed = True
        if self.tray is not None:
            self.tray.hide()
            self.tray.setContextMenu(None)  # type: ignore[arg-type]
            self.tray.deleteLater()
            self.tray = None
        self.disposing = True  # closing windows now is the quit, not a request to quit
        for win in [*self._windows.values(), self.status_window]:
            if win is not None:
                win.close()
                release = getattr(win, "dispose", None)
                if callable(release):
                    release()  # e.g. the data window's reader thread
                win.deleteLater()
        self._windows.clear()
        self.status_window = None
        self.menu.close()
        self.menu.deleteLater()

    def _report_geometry(self) -> None:
        """Report where the icon is once the tray host has embedded it (test mode only).

        Right after ``show()`` Qt answers with the unembedded window at (0, 0); the position is
        reported once it has left the origin and held still for one poll (100 ms), or after 10 s.
        """
        if self.tray is None:
            self._geo_timer.stop()
            return
        g = self.tray.geometry()
        geo = (g.x(), g.y(), g.width(), g.height())
        self._geo_polls += 1
        settled = geo == self._geo_last and g.width() > 0 and (g.x(), g.y()) != (0, 0)
        self._geo_last = geo
        if settled or self._geo_polls >= 100:
            self._geo_timer.stop()
            if g.width() > 0:
                self.report("TRAYAPP_TRAY_GEOMETRY {} {} {} {}".format(*geo))

    def _grace_over(self) -> None:
        """The quiet period ended: tell what it held back (re-armed if the timer came early)."""
        if self.policy.in_quiet_period(self.now()):
            self._arm_grace_timer()
            return
        self.refresh()

    def _arm_grace_timer(self) -> None:
        until = self.policy.quiet_until()
        if until is not None:
            ms = max(0, int((until - self.now()).total_seconds() * 1000) + 50)
            self._grace_timer.start(ms)

    def resumed_from_sleep(self) -> None:
        """Called when the machine wakes: a fresh quiet period, then the engine catches up."""
        self.report("TRAYAPP_RESUMED")
        self.policy.resumed_from_sleep(self.now())
        self._arm_grace_timer()
        self.engine.notify_resumed_from_sleep()

    # -- observing --------------------------------------------------------------------------

    def _on_engine_event(self, event: EngineEvent) -> None:
        if isinstance(event, LoopBlocked):
            self._loop_block = LoopBlock(event.charm_id, event.seconds, self.now())
            self.report(f"TRAYAPP_LOOP_BLOCKED {event.charm_id} {event.seconds:.2f}")
        elif isinstance(event, RunStarted):
            if not self._batch:
                self._batch_min_until = 0.0
            self._batch.add(event.charm_id)
            self._batch_started.add(event.charm_id)
        elif isinstance(event, RunFinished):
            if event.record.charm_id in self._batch:
                self._batch_done.add(event.record.charm_id)
            name = next(
                (c.name for c in self.engine.charms() if c.id == event.record.charm_id),
                event.record.charm_id,
            )
            notice = self.policy.observe_run(event.record, name)
            if notice is not None:
                self.notifier.deliver(notice)
            self.report(f"TRAYAPP_RUN_FINISHED {event.record.charm_id} {event.record.outcome}")
        # Everything else (status changes, charms or accounts added/removed) is in the snapshot.
        running = isinstance(event, RunStarted | RunFinished | RunProgress | CharmStatusChanged)
        if running and self.engine.runs_in_progress() > 0:
            self._schedule_run_refresh()  # more to come: the end of the sync shows at once
        else:
            self.schedule_refresh()

    def schedule_refresh(self) -> None:
        """Refresh after the events already queued (a zero timer; a pending one joins it)."""
        timer = self._refresh_timer
        if not timer.isActive() or timer.remainingTime() > 0:
            timer.start(0)

    def _schedule_run_refresh(self) -> None:
        """Refresh for the engine's events while runs are in progress, which come in bursts
        (a sync of 200 charms sends 600 and more): at once after a quiet spell, else when
        :data:`REFRESH_GAP_MS` have passed since the last refresh; every event until then
        joins that refresh."""
        if not self._refresh_timer.isActive():
            since_ms = (time.monotonic() - self._last_refresh) * 1000
            self._refresh_timer.start(max(0, int(REFRESH_GAP_MS - since_ms)))

    def snapshot(self) -> Snapshot:
        now = self.now()
        block = self._loop_block
        if block is not None and now - block.at > LOOP_BLOCK_SHOWN_FOR:
            block = self._loop_block = None
        recent = [
            RecentEntry(e.id, e.notice.title, e.at, e.shown_by != "none", e.notice.action_label)
            for e in self.notifier.recent.items()[:10]
        ]
        charms = self.engine.charms()
        statuses = self.engine.statuses()
        batch = self._current_batch(statuses)
        return make_snapshot(
            now,
            charms,
            statuses,
            self.accounts.accounts(),
            block,
            recent,
            batch,
            views=self._views,
        )

    def _current_batch(self, statuses: Mapping[str, CharmStatus]) -> SyncBatch | None:
        """The sync being shown, or None once every charm in it has finished (and, after a
        click, the minimum feedback time has passed)."""
        if not self._batch:
            return None
        mono = time.monotonic()
        running = {cid for cid, st in statuses.items() if st.state is CharmState.RUNNING}
        self._batch &= set(statuses)  # charms removed meanwhile
        self._batch |= running
        if mono >= self._batch_clicked_at + BATCH_GIVE_UP_S:
            # Clicked charms the engine did not run (nothing to do, parked meanwhile).
            self._batch = {c for c in self._batch if c in self._batch_started or c in running}
        pending = self._batch - self._batch_done
        if not running and not pending and mono >= self._batch_min_until:
            self._batch.clear()
            self._batch_done.clear()
            self._batch_started.clear()
            self._batch_timer.stop()
            return None
        if not self._batch_timer.isActive():
            # Look again when the click's feedback time ends, or when waiting for clicked
            # charms that never started is given up; run events refresh in between.
            wake = (
                self._batch_min_until
                if mono < self._batch_min_until
                else self._batch_clicked_at + BATCH_GIVE_UP_S
            )
            if wake > mono:
                self._batch_timer.start(int((wake - mono) * 1000) + 20)
        if not self._batch:
            return SyncBatch(0, 0)  # only the click's feedback time is left
        return SyncBatch(len(self._batch_done & self._batch), len(self._batch))

    def _start_batch(self, charm_ids: Sequence[str]) -> None:
        """A click: show "syncing" at once, before any run has started."""
        if not charm_ids:
            return
        mono = time.monotonic()
        if not self._batch:
            self._batch_done.clear()
            self._batch_started.clear()
        self._batch.update(charm_ids)
        # Charms clicked again run again: they are not done until their new run ends.
        self._batch_done.difference_update(charm_ids)
        self._batch_started.difference_update(charm_ids)
        self._batch_clicked_at = mono
        self._batch_min_until = mono + CLICK_FEEDBACK_S

    def _next_frame(self) -> None:
        if self.state is not IconState.SYNCING or self.tray is None:
            self._anim.stop()
            return
        self._frame = (self._frame + 1) % SYNC_FRAMES
        self.tray.setIcon(state_icon(IconState.SYNCING, self.icon_style, self._frame))

    def refresh(self) -> None:
        self.refreshes += 1
        self._refresh_timer.stop()  # this refresh covers the events it was waiting for
        self._last_refresh = time.monotonic()
        snap = self.snapshot()
        state = icon_state(snap)
        text = tooltip(snap)
        if state is not self.state:
            self.state = state
            if self.tray is not None:
                self._frame = 0
                self.tray.setIcon(state_icon(state, self.icon_style))
                if state is IconState.SYNCING:
                    self._anim.start()
                else:
                    self._anim.stop()
            self.report(f"TRAYAPP_ICON_STATE {state.value}")
        if self.tray is not None and self.tray.toolTip() != f"{DISPLAY_NAME}: {text}":
            self.tray.setToolTip(f"{DISPLAY_NAME}: {text}")
        self.binder.apply(self.menu_builder.build(snap))
        for notice in self.policy.observe(snap):
            self.notifier.deliver(notice)
        if self.status_window is not None:
            update = getattr(self.status_window, "update_from", None)
            if callable(update):
                update(snap)
        for win in self._windows.values():
            update = getattr(win, "update_from", None)
            if callable(update) and win.isVisible():
                update(snap)

    def _menu_shown(self) -> None:
        self.refresh()
        self._tick.start()
        if isinstance(self.report, TestReporter) and self.report.enabled:
            self.report("TRAYAPP_MENU_OPENING")
            if self._menu_watch is None:
                self._menu_watch = _MenuWatch(self._report_menu_if_moved, self)
                self.menu.installEventFilter(self._menu_watch)
            self._menu_reporting = False
            self._menu_layout = None
            self._menu_report_timer.start()

    def _first_menu_report(self) -> None:
        if not self.menu.isVisible():
            return  # closed within 50 ms: never report a hidden menu as shown
        self._menu_reporting = True
        self._report_menu(first=True)

    def _report_menu_if_moved(self) -> None:
        if self._menu_reporting and self.menu.isVisible():
            self._report_menu(first=False)

    def _report_menu(self, *, first: bool) -> None:
        """Test mode: where the open menu's entries are, as one numbered layout.

        Each top-level item's screen rectangle (``TRAYAPP_MENU_ITEM``), then on the first report
        of an opening ``TRAYAPP_MENU_SHOWN``, then ``TRAYAPP_MENU_LAYOUT <generation> x y w h``.
        Reported again, with a new generation, whenever the menu moves or resizes or an entry
        moves while it is open, so a test clicks an entry where it is now (the pointer: keys
        sent before the menu holds the keyboard grab are lost).
        """
        g = self.menu.geometry()
        rows: list[tuple[str, int, int, int, int]] = []
        for key in (
            "sync_all", "add_account", "welcome", "settings", "activity", "data", "about",
            "open_data", "quit",
        ):  # fmt: skip
            action = self.binder.action(key)
            if action is None or not action.isVisible():
                continue
            r = self.menu.actionGeometry(action).translated(g.topLeft())
            if r.isValid():
                rows.append((key, r.x(), r.y(), r.width(), r.height()))
        layout = (g.x(), g.y(), g.width(), g.height(), *rows)
        if layout == self._menu_layout:
            return
        self._menu_layout = layout
        self._menu_generation += 1
        for row in rows:
            self.report("TRAYAPP_MENU_ITEM {} {} {} {} {}".format(*row))
        if first:
            self.report(f"TRAYAPP_MENU_SHOWN {g.x()} {g.y()} {g.width()} {g.height()}")
        self.report(
            f"TRAYAPP_MENU_LAYOUT {self._menu_generation} {g.x()} {g.y()} {g.width()} {g.height()}"
        )

    def _menu_hidden(self) -> None:
        self._tick.stop()
        self._menu_report_timer.stop()
        self._menu_reporting = False
        self.report("TRAYAPP_MENU_HIDDEN")

    def visible_window_ticking(self, visible: bool) -> None:
        """Windows that show relative times call this from show/hide events."""
        if visible:
            self._tick.start()
        elif not self.menu.isVisible():
            self._tick.stop()

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        # A second click soon after the first arrives as DoubleClick; it is still a click
        # (the engine coalesces it with the sync already running).
        if reason in (
            QSystemTrayIcon.ActivationReason.Trigger,
            QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            self.report("TRAYAPP_CLICKED sync_all")
            self.sync_clicked(None)

    def sync_clicked(self, charm_id: str | None) -> None:
        """A click on the icon or on "Sync now": start the runs and show it at once."""
        self.engine.sync_now(charm_id)
        snap = self.snapshot()
        targets = [
            c
            for c in snap.charms
            if (charm_id is None or c.id == charm_id) and not charm_needs_sign_in(c, snap)
        ]
        # A charm the server asked to wait is not contacted before that time (the engine
        # does not run it): no "syncing" for it, and a word if nothing else syncs.
        waiting = [c for c in targets if c.status.waiting_until(snap.now) is not None]
        ids = [c.id for c in targets if c not in waiting]
        if waiting:
            self.report(f"TRAYAPP_SYNC_WAITING {' '.join(c.id for c in waiting)}")
        if waiting and not ids:
            self._tell_waiting(waiting, snap.now)
        self._start_batch(ids)
        self.refresh()  # now, not after the event queue: the icon changes within the click

    def _tell_waiting(self, waiting: Sequence[CharmView], now: datetime) -> None:
        from trayapp.ui.wording import server_wait

        first = waiting[0]
        why = server_wait(first.status.retry_after, now)
        body = (
            self.tr("{name}: {why}. It syncs by itself then.").format(name=first.name, why=why)
            if len(waiting) == 1
            else self.tr(
                "{n} charms: the servers asked to wait. They sync by themselves then."
            ).format(n=len(waiting))
        )
        self.notifier.deliver(
            Notice(f"wait:{first.id}", "waiting", self.tr("Not synced yet"), body)
        )

    def activate(self) -> None:
        """A second launch asked us to show ourselves: pop the menu (or raise the window)."""
        if self.status_window is not None:
            self.status_window.show()
            self.status_window.raise_()
            self.status_window.activateWindow()
        elif self.tray is not None:
            geo = self.tray.geometry()
            self.menu.popup(geo.bottomLeft() if geo.isValid() else self.menu.pos())

    def _balloon(self, notice: Notice) -> bool:
        if self.tray is None or not self.tray.isVisible() or not self.tray.supportsMessages():
            return False
        icon = (
            QSystemTrayIcon.MessageIcon.Critical
            if notice.icon == IconState.ERROR.value
            else QSystemTrayIcon.MessageIcon.Warning
            if notice.kind in ("sign_in", "failing")
            else QSystemTrayIcon.MessageIcon.Information
        )
        self.tray.showMessage(notice.title, notice.body, icon, 15_000)
        return True

    # -- commands ---------------------------------------------------------------------------

    def _command_table(self) -> CommandTable:
        e = self.engine
        return CommandTable(
            {
                "sync_all": lambda _a: self.sync_clicked(None),
                "sync": lambda a: self.sync_clicked(a),
                "pause": lambda a: e.pause(a, None),
                "resume": lambda a: e.resume(a),
                "pause_all": lambda a: e.pause(None, pause_until(a or "forever", self.now())),
                "resume_all": lambda _a: e.resume(None),
                "signin": lambda a: self.sign_in(a),
                "cancel_signin": lambda a: self.accounts.cancel_sign_in(a),
                "copy_signin_link": lambda a: self._copy_link(a),
                "add_account": lambda _a: self.add_account(),
                "welcome": lambda _a: self.open_window("welcome"),
                "connect_google": lambda a: self.open_window("connect_google", a),
                "reset": lambda a: self._confirm_reset(a),
                "remove": lambda a: self._confirm_remove(a),
                "mute": lambda a: self._mute(a),
                "recent": lambda a: self.notifier.run_recent(int(a or 0)),
                "settings": lambda a: self.open_window("settings", a),
                "activity": lambda a: self.open_window("activity", a),
                "open_data": lambda _a: self.open_data_folder(),
                "data": lambda a: self.open_window("data", a),
                "about": lambda _a: self.open_window("about"),
                "open_logs": lambda _a: self.open_log_folder(),
                "quit": lambda _a: self._on_quit(),
            }
        )

    def run_command(self, command: str) -> None:
        """Every menu item, notification action and IPC request ends here."""
        self.report(f"TRAYAPP_COMMAND {command}")
        try:
            result = self.commands.dispatch(command)
            if asyncio.iscoroutine(result):
                self.spawn(result)
        except Exception:
            log.exception("tray command %r failed", command)
        self.schedule_refresh()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run a coroutine from a slot; errors are logged, cancellation is expected at quit."""

        async def guarded() -> Any:
            try:
                return await coro
            except asyncio.CancelledError:
                log.debug("tray task cancelled")
                raise
            except Exception:
                log.exception("tray task failed")
                return None

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if inspect.iscoroutine(coro):
            # Cancelled before it ran (quit right after a click): close it, or Python warns
            # that it was never awaited.
            task.add_done_callback(lambda t: coro.close() if t.cancelled() else None)
        return task

    def _has_client(self) -> bool:
        """False only when accounts are available and no OAuth client is set up yet."""
        from trayapp.ui.accounts import AccountActions

        acc = self.accounts
        return not isinstance(acc, AccountActions) or acc.client_summary() is not None

    def add_account(self) -> None:
        """ "Add account…": the guided Google set-up first when there is no client yet."""
        if not self._has_client():
            self.open_window("connect_google")
        else:
            self.open_window("settings", "accounts")

    def sign_in(self, account_id: str | None) -> None:
        """Start the browser sign-in from a click (menu, notification, Settings), never alone.

        Another service's account signs in its own way: a token account gets the small "new
        token" dialog, an OAuth provider's account its browser sign-in (no Google client needed).
        """
        view = next((a for a in self.accounts.accounts() if a.id == account_id), None)
        if view is not None and view.token:
            self.open_token_dialog(view.service, view)
            return
        if (view is None or view.is_google) and not self._has_client():
            self.open_window("connect_google")
            return

        async def flow() -> None:
            try:
                await self.accounts.begin_sign_in(account_id)
            except Exception as exc:
                from trayapp.ui.wording import for_gui

                self.notifier.deliver(
                    Notice(
                        f"signin-error:{account_id}",
                        "failing",
                        self.tr("Sign-in could not start"),
                        for_gui(exc),
                        self.tr("Open settings"),
                        "settings:accounts",
                    )
                )
                return
            self.report(f"TRAYAPP_SIGN_IN_STARTED {account_id}")
            self.schedule_refresh()

        self.spawn(flow())

    def open_token_dialog(
        self,
        service: str,
        account: AccountView | None = None,
        on_saved: Callable[[str], None] | None = None,
    ) -> None:
        """The token dialog: a new account of ``service`` (``account`` None) or a new token."""
        from trayapp.ui.accounts import AuthAccounts
        from trayapp.ui.token_dialog import TokenDialog

        accounts = self.accounts
        if not isinstance(accounts, AuthAccounts):
            return
        choice = accounts.services().get(service)
        title = choice.title if choice else (account.service_title if account else service)
        account_id = account.id if account else None

        async def save(token: str, name: str | None) -> str:
            return await accounts.add_token(service, token, name, account_id)

        def saved(new_id: str) -> None:
            self.report(f"TRAYAPP_TOKEN_SAVED {new_id}")
            self.schedule_refresh()
            if on_saved is not None:
                on_saved(new_id)

        key = f"token:{account_id or service}"
        old = self._windows.get(key)
        if old is not None:
            old.raise_()
            old.activateWindow()
            return
        box = TokenDialog(
            title,
            account=account.email if account else None,
            help_url=choice.help_url if choice else "",
            save=save,
            spawn=self.spawn,
            on_saved=saved,
        )
        self._windows[key] = box
        box.finished.connect(lambda _r: self._windows.pop(key, None))
        box.open()
        self.report("TRAYAPP_WINDOW_SHOWN token_dialog")
        self.report_widgets(box)

    def _sign_in_result(self, account_id: str | None, error: BaseException | None) -> None:
        self.report(f"TRAYAPP_SIGN_IN_DONE {account_id} {type(error).__name__ if error else 'ok'}")
        from trayapp.ui.keyring_choice import is_keyring_choice

        if is_keyring_choice(error) and error is not None:
            self.ask_keyring_choice(error)
        elif error is not None and not isinstance(error, asyncio.CancelledError):
            from trayapp.ui.wording import for_gui

            self.notifier.deliver(
                Notice(
                    f"signin-error:{account_id}",
                    "failing",
                    self.tr("Sign-in did not complete"),
                    for_gui(error),
                    self.tr("Try again"),
                    f"signin:{account_id}" if account_id else "add_account",
                )
            )
        self.schedule_refresh()

    def ask_keyring_choice(self, error: BaseException) -> None:
        """The keychain could not keep a sign-in: one dialog, keychain again or a private file."""
        from trayapp.ui.keyring_choice import KeyringChoice

        store = getattr(self.accounts, "store_pending", None)
        if not callable(store):
            return

        def done(message: str) -> None:
            self.report(f"TRAYAPP_KEYRING_CHOICE_DONE {message}")
            self.schedule_refresh()

        box = KeyringChoice(error, store, self.spawn, done)
        self._windows[f"keyring:{id(box)}"] = box
        box.finished.connect(lambda _r: self._windows.pop(f"keyring:{id(box)}", None))
        box.open()
        self.report("TRAYAPP_WINDOW_SHOWN keyring_choice")
        self.report_widgets(box)

    def _copy_link(self, account_id: str | None) -> None:
        url = self.accounts.sign_in_url(account_id)
        if url:
            QGuiApplication.clipboard().setText(url)

    def _mute(self, charm_id: str | None) -> None:
        if charm_id:
            self.policy.mute(charm_id, self.snapshot())

    def _name(self, charm_id: str | None) -> str:
        return next((c.name for c in self.engine.charms() if c.id == charm_id), str(charm_id))

    def _confirm(
        self,
        title: str,
        text: str,
        verb: str,
        on_yes: Callable[[], None],
        *,
        detail: str = "",
        parent: QWidget | None = None,
    ) -> QMessageBox:
        # Non-modal (open(), not exec()): no nested event loop inside the qasync loop.
        box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=parent)
        box.setObjectName("confirm")
        if detail:
            box.setInformativeText(detail)
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        yes = box.button(QMessageBox.StandardButton.Yes)
        if yes is not None:
            yes.setText(verb)  # the button says what it does ("Remove"), not "Yes"
            yes.setAccessibleName(verb.replace("&", ""))
            yes.setObjectName("confirm_yes")
        cancel = box.button(QMessageBox.StandardButton.Cancel)
        if cancel is not None:
            cancel.setObjectName("confirm_cancel")

        def done(result: int) -> None:
            if result == QMessageBox.StandardButton.Yes:
                on_yes()
                self.schedule_refresh()
            box.deleteLater()

        box.finished.connect(done)
        self._windows[f"confirm:{id(box)}"] = box
        box.finished.connect(lambda _r: self._windows.pop(f"confirm:{id(box)}", None))
        box.open()
        self.report_widgets(box)  # test mode: where its buttons are
        return box

    def _confirm_reset(self, charm_id: str | None) -> None:
        if charm_id:
            self.confirm_reset(charm_id)

    def confirm_reset(
        self,
        charm_id: str,
        *,
        parent: QWidget | None = None,
        on_done: Callable[[BaseException | None], None] | None = None,
    ) -> QMessageBox | None:
        """Ask first, saying what is lost, then reset the charm (the engine's ``reset_charm``,
        as ``trayapp charms reset``): from the menu's "Reset and resync…" and from Settings.

        ``on_done(error)`` runs after the reset was asked of the engine (error None) or was
        refused (the charm was removed meanwhile: the error, in the engine's words); not on
        Cancel.
        """
        from trayapp.core.errors import TrayappError

        name = self._name(charm_id)
        try:
            count = self.engine.stored_items(charm_id)
        except TrayappError:
            return None  # removed meanwhile: nothing to reset
        what = (
            tr("the 1 item it has imported for this charm")
            if count == 1
            else tr("the {n} items it has imported for this charm").format(n=f"{count:,}")
            if count
            else tr("what it has imported for this charm so far")
        )
        detail = tr(
            "Pattern Sync deletes {what} and the point where its last sync stopped, then syncs "
            "everything again (this can take a while for a large mailbox or calendar). Its "
            "settings and sync history are kept; nothing is changed or deleted at the source."
        ).format(what=what)

        def reset() -> None:
            try:
                self.engine.reset_charm(charm_id)
            except TrayappError as exc:
                log.warning("could not reset charm %s: %s", charm_id, exc)
                if on_done is not None:
                    on_done(exc)
                return
            self.report(f"TRAYAPP_CHARM_RESET {charm_id}")
            if on_done is not None:
                on_done(None)

        return self._confirm(
            tr("Reset and resync"),
            tr("Forget what {name} has imported and sync it again from scratch?").format(name=name),
            tr("&Reset and resync"),
            reset,
            detail=detail,
            parent=parent,
        )

    def _confirm_remove(self, charm_id: str | None) -> None:
        if not charm_id:
            return
        name = self._name(charm_id)
        self._confirm(
            tr("Remove charm"),
            tr("Remove {name} and the data it imported? This cannot be undone.").format(name=name),
            tr("&Remove"),
            lambda: self._call(self.engine.remove_charm, charm_id),
        )

    def _call(self, fn: Callable[[str], Any], arg: str) -> None:
        result = fn(arg)
        if asyncio.iscoroutine(result):
            self.spawn(result)

    def open_log_folder(self) -> None:
        folder = self.engine.profile.logs_dir
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
        self.report(f"TRAYAPP_OPENED_FOLDER {folder}")

    def open_data_folder(self) -> None:
        path = self.engine.profile.path
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    def maybe_first_run(self) -> bool:
        """Open the welcome window once, on a first start: no charms, no accounts, never shown.

        Called by the app after the engine started (not by tests' controllers). The profile's
        UI prefs remember that it was shown, so it never comes back on its own.
        """
        from trayapp.ui.prefs import UiPrefs

        profile = self.engine.profile.path
        prefs = UiPrefs.load(profile)
        if prefs.welcome_shown or self.engine.charms() or self.accounts.accounts():
            return False
        self.open_window("welcome")
        return True

    def _make_window(self, which: str) -> QWidget:
        """Windows are built on first use only: none exists while the tray just sits there."""
        if which == "settings":
            from trayapp.ui.settings import SettingsWindow

            return SettingsWindow(self)
        if which == "welcome":
            from trayapp.ui.welcome import WelcomeWindow

            return WelcomeWindow(self)
        if which == "connect_google":
            from trayapp.ui.connect_wizard import ConnectGoogleWizard

            return ConnectGoogleWizard(self)
        if which == "data":
            from trayapp.ui.data_window import DataWindow

            return DataWindow(self)
        if which == "about":
            from trayapp.ui.about import AboutWindow

            return AboutWindow(self)
        from trayapp.ui.windows import ActivityWindow

        return ActivityWindow(self)

    def open_window(self, which: str, arg: str | None = None) -> QWidget:
        win = self._windows.get(which)
        if win is None:
            win = self._make_window(which)
            self._windows[which] = win
        focus = getattr(win, "focus", None)
        if callable(focus):
            focus(arg)
        win.show()
        win.raise_()
        win.activateWindow()
        self.report(f"TRAYAPP_WINDOW_SHOWN {which}")
        self.report_widgets(win)
        return win

    def report_widgets(self, win: QWidget) -> None:
        """Test mode: where a window's named controls are, so a desktop test can click them."""
        if isinstance(self.report, TestReporter) and not self.report.enabled:
            return
        # With ``win`` as the context: dropped if the window is deleted first (a confirmation
        # answered at once).
        QTimer.singleShot(0, win, lambda: self._report_widgets_now(win))

    def _report_widgets_now(self, win: QWidget) -> None:
        from PySide6.QtCore import QPoint
        from PySide6.QtWidgets import (
            QAbstractButton,
            QComboBox,
            QLineEdit,
            QListWidget,
            QPlainTextEdit,
            QTabWidget,
        )

        kinds = (QAbstractButton, QComboBox, QLineEdit, QPlainTextEdit, QListWidget)
        for tabs in win.findChildren(QTabWidget):
            bar = tabs.tabBar()
            for i in range(tabs.count()):
                r = bar.tabRect(i)
                at = bar.mapToGlobal(r.topLeft())
                key = tabs.tabText(i).replace("&", "").lower()
                self.report(
                    f"TRAYAPP_WIDGET {win.objectName()} tab:{key} {at.x()} {at.y()} "
                    f"{r.width()} {r.height()}"
                )
        for w in win.findChildren(QWidget):
            name = w.objectName()
            if not name or name.startswith("qt_") or not isinstance(w, kinds):
                continue
            if not w.isVisible():
                continue
            at = w.mapToGlobal(QPoint(0, 0))
            self.report(
                f"TRAYAPP_WIDGET {win.objectName()} {name} {at.x()} {at.y()} "
                f"{w.width()} {w.height()}"
            )
        self.report(f"TRAYAPP_WIDGETS_DONE {win.objectName()}")
