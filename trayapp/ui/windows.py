"""The windows: Activity, and the status window used when there is no tray (Settings: settings.py).

All are non-modal and opened from ordinary slots, never from coroutines (qasync#59/#82). They
read the same snapshot the menu is built from and call the same engine methods.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QCloseEvent, QGuiApplication, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from trayapp import DISPLAY_NAME, __version__
from trayapp.core.logfiles import newest_log
from trayapp.ui.icons import render
from trayapp.ui.model import Snapshot, charm_line, icon_state, relative_past, summary
from trayapp.ui.settings import SettingsWindow
from trayapp.ui.wording import detail_for_gui

if TYPE_CHECKING:
    from trayapp.core.patterns import PatternRegistry
    from trayapp.ui.tray import TrayController

__all__ = ["ActivityWindow", "SettingsWindow", "StatusWindow", "diagnostics"]

NO_TRAY_HINT = "No system tray found: on GNOME, install the AppIndicator extension for the icon."
# The Activity window opens at this size with the charm list this wide (the splitter keeps the
# user's choice while the window is open).
ACTIVITY_SIZE = (860, 520)
ACTIVITY_LIST_WIDTH = 290


def _profile_dir(ctl: TrayController) -> Path:
    return ctl.engine.profile.path


def _redact(text: str) -> str:
    from trayapp.core.redact import redact

    return redact(text)


def diagnostics(ctl: TrayController) -> str:
    """What a bug report needs (versions, states, recent runs and notices), secrets removed."""
    snap = ctl.snapshot()
    data: dict[str, Any] = {
        "app": DISPLAY_NAME,
        "version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "pyside6": pyside_version,
        "qt": qVersion(),
        "log_file": str(newest_log(ctl.engine.profile.path) or ctl.engine.profile.logs_dir),
        "summary": summary(snap),
        "icon_state": icon_state(snap).value,
        "accounts": [
            {"id": a.id, "email": a.email, "state": a.state.value, "reason": a.reason}
            for a in snap.accounts
        ],
        # A plugin's bug report needs which plugins (and versions) were loaded, and which failed.
        "patterns": [_pattern_facts(ctl.engine.patterns, p.id) for p in ctl.engine.patterns],
        "plugin_problems": [problem.to_json() for problem in ctl.engine.patterns.problems],
        "charms": [],
        "notifications": [
            {"at": e.at.isoformat(), "title": e.notice.title, "shown_by": e.shown_by}
            for e in ctl.notifier.recent.items()
        ],
    }
    for c in snap.charms:
        data["charms"].append(
            {
                "id": c.id,
                "name": c.name,
                "pattern": c.pattern_id,
                "account": c.account_id,
                "status": c.status.to_json(),
                "history": [r.to_json() for r in ctl.engine.history(c.id, 10)],
            }
        )
    return _redact(json.dumps(data, indent=2, default=str))


def _pattern_facts(registry: PatternRegistry, pattern_id: str) -> dict[str, Any]:
    source = registry.source(pattern_id)
    version: str | None = None
    if source not in ("built-in", "test"):
        try:
            version = metadata.version(source)
        except (metadata.PackageNotFoundError, ValueError):
            version = None  # an entry point without a distribution
    return {"id": pattern_id, "source": source, "version": version}


class _Ticking(QWidget):
    """Asks the controller for the relative-time tick only while visible."""

    def __init__(self, ctl: TrayController) -> None:
        super().__init__()
        self.ctl = ctl

    def showEvent(self, event: QShowEvent) -> None:
        self.ctl.visible_window_ticking(True)
        self.update_from(self.ctl.snapshot())
        super().showEvent(event)

    def hideEvent(self, event: QHideEvent) -> None:
        self.ctl.visible_window_ticking(False)
        super().hideEvent(event)

    def update_from(self, snap: Snapshot) -> None:
        raise NotImplementedError


class StatusWindow(_Ticking):
    """The no-tray fallback: status line, the same menu behind a button, and the hint."""

    def __init__(self, ctl: TrayController) -> None:
        super().__init__(ctl)
        self.setWindowTitle(DISPLAY_NAME)
        self.setObjectName("status_window")
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.icon = QLabel()
        self.icon.setFixedSize(32, 32)
        self.summary = QLabel()
        self.summary.setObjectName("summary")
        self.summary.setWordWrap(True)
        row.addWidget(self.icon)
        row.addWidget(self.summary, 1)
        lay.addLayout(row)
        buttons = QHBoxLayout()
        sync = QPushButton(self.tr("&Sync all now"))
        sync.setObjectName("status_sync")
        sync.clicked.connect(lambda: ctl.run_command("sync_all"))
        menu = QPushButton(self.tr("&Menu"))
        menu.setObjectName("status_menu")
        menu.setMenu(ctl.menu)
        buttons.addWidget(sync)
        buttons.addWidget(menu)
        lay.addLayout(buttons)
        # Only when the tray was wanted but is missing; --no-tray asked for this window.
        if not getattr(ctl, "tray_declined", False):
            hint = QLabel(self.tr(NO_TRAY_HINT))
            hint.setObjectName("hint")
            hint.setWordWrap(True)
            hint.setStyleSheet("color: palette(mid)")
            lay.addWidget(hint)
        self.resize(360, 130)

    def closeEvent(self, event: QCloseEvent) -> None:
        """This window is the app when there is no tray: closing it quits (no invisible process)."""
        super().closeEvent(event)
        if event.isAccepted() and not getattr(self.ctl, "disposing", False):
            self.ctl.report("TRAYAPP_STATUS_WINDOW_CLOSED")
            self.ctl.run_command("quit")

    def update_from(self, snap: Snapshot) -> None:
        self.icon.setPixmap(render(icon_state(snap), 32))
        self.summary.setText(summary(snap))


def _when(at: datetime, now: datetime) -> str:
    """Today's runs by time alone, older ones with their date: leaves the details column room."""
    local = at.astimezone()
    return (
        local.strftime("%H:%M:%S") if local.date() == now.date() else local.strftime("%d %b %H:%M")
    )


class ActivityWindow(_Ticking):
    """Per-charm run history, the recent notifications, and a redacted diagnostics copy."""

    def __init__(self, ctl: TrayController) -> None:
        super().__init__(ctl)
        self.setWindowTitle(self.tr("{app}: Activity").format(app=DISPLAY_NAME))
        self.resize(ACTIVITY_SIZE[0], ACTIVITY_SIZE[1])
        lay = QVBoxLayout(self)
        # Splitters, so a user with long charm names or error texts can give them the room; the
        # initial sizes fit "✗  Team blog — server error, retry in 2 min" on two lines at most.
        top = QSplitter(Qt.Orientation.Horizontal)
        top.setChildrenCollapsible(False)
        self.charms = QListWidget()
        self.charms.setObjectName("charms")
        self.charms.setAccessibleName(self.tr("Charms"))
        # Long lines wrap at words (and elide past that) instead of growing a scrollbar.
        self.charms.setWordWrap(True)
        self.charms.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.charms.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.charms.setResizeMode(QListView.ResizeMode.Adjust)
        self.charms.setSpacing(2)
        self.charms.setMinimumWidth(160)
        self.charms.currentItemChanged.connect(lambda *_: self._load_history())
        top.addWidget(self.charms)
        self.table = QTableWidget(0, 5)
        self.table.setObjectName("history")
        self.table.setAccessibleName(self.tr("Run history"))
        self.table.setTabKeyNavigation(False)  # Tab moves on; arrows move inside
        self.table.setHorizontalHeaderLabels(
            [self.tr(h) for h in ("Started", "Duration", "Outcome", "Items", "Details")]
        )
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        top.addWidget(self.table)
        top.setStretchFactor(0, 0)
        top.setStretchFactor(1, 1)
        top.setSizes([ACTIVITY_LIST_WIDTH, ACTIVITY_SIZE[0] - ACTIVITY_LIST_WIDTH])
        self.splitter = top
        recent_box = QWidget()
        recent_lay = QVBoxLayout(recent_box)
        recent_lay.setContentsMargins(0, 0, 0, 0)
        recent_label = QLabel(self.tr("Recent &notifications"))
        recent_lay.addWidget(recent_label)
        self.recent = QListWidget()
        recent_label.setBuddy(self.recent)
        self.recent.setObjectName("recent")
        self.recent.setAccessibleName(self.tr("Recent notifications"))
        self.recent.setWordWrap(True)
        self.recent.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.recent.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.recent.setResizeMode(QListView.ResizeMode.Adjust)
        self.recent.itemActivated.connect(self._run_recent)
        recent_lay.addWidget(self.recent)
        body = QSplitter(Qt.Orientation.Vertical)
        body.setChildrenCollapsible(False)
        body.addWidget(top)
        body.addWidget(recent_box)
        body.setStretchFactor(0, 3)
        body.setStretchFactor(1, 1)
        lay.addWidget(body, 1)
        bottom = QHBoxLayout()
        self.copy = QPushButton(self.tr("&Copy diagnostics"))
        self.copy.setObjectName("copy_diagnostics")
        self.copy.setAccessibleName(self.tr("Copy diagnostics, secrets removed"))
        self.copy.clicked.connect(self.copy_diagnostics)
        bottom.addStretch(1)
        bottom.addWidget(self.copy)
        lay.addLayout(bottom)
        self._charm_ids: list[str] = []

    def focus(self, charm_id: str | None) -> None:
        snap = self.ctl.snapshot()
        self.update_from(snap)
        if charm_id and charm_id in self._charm_ids:
            self.charms.setCurrentRow(self._charm_ids.index(charm_id))

    def update_from(self, snap: Snapshot) -> None:
        ids = [c.id for c in snap.charms]
        current = self.current_charm()
        if ids != self._charm_ids:
            # The ids first, signals off: clearing moves the current row, and a removed
            # charm's history must not be asked for.
            self._charm_ids = ids
            self.charms.blockSignals(True)
            self.charms.clear()
            for _ in ids:
                self.charms.addItem(QListWidgetItem())
            self.charms.blockSignals(False)
        for row, c in enumerate(snap.charms):
            item = self.charms.item(row)
            if item is not None:
                line = charm_line(c, snap)
                item.setText(line)
                item.setToolTip(line)
        if current in ids:
            self.charms.setCurrentRow(ids.index(current))
        elif ids and self.charms.currentRow() < 0:
            self.charms.setCurrentRow(0)
        self._load_history()
        self.recent.clear()
        for e in self.ctl.notifier.recent.items():
            shown = {"desktop": "", "tray": " (tray balloon)", "none": " (not shown: no service)"}
            text = f"{relative_past(e.at, snap.now)} · {e.notice.title}{shown[e.shown_by]}"
            if e.notice.action_label:
                text += f"  [{e.notice.action_label}]"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, e.id)
            self.recent.addItem(item)

    def current_charm(self) -> str | None:
        row = self.charms.currentRow()
        return self._charm_ids[row] if 0 <= row < len(self._charm_ids) else None

    def _load_history(self) -> None:
        cid = self.current_charm()
        records = list(self.ctl.engine.history(cid, 50)) if cid else []
        snap_now = datetime.now().astimezone()
        self.table.setRowCount(len(records))
        for row, r in enumerate(records):
            c = r.counts
            detail = r.message or ""
            if r.partial:
                detail = f"partial: {', '.join(r.partial)}. {detail}"
            cells = [
                _when(r.started_at, snap_now),
                f"{r.duration_s:.1f} s",
                r.outcome.value.replace("_", " "),
                f"+{c.added} ~{c.updated} −{c.removed}",
                _redact(detail_for_gui(detail) or ""),
            ]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, col, item)
        for col in range(4):  # the details column takes the rest (full text in its tooltip)
            self.table.resizeColumnToContents(col)

    def _run_recent(self, item: QListWidgetItem) -> None:
        self.ctl.notifier.run_recent(int(item.data(Qt.ItemDataRole.UserRole)))

    def diagnostics(self) -> str:
        return diagnostics(self.ctl)

    def copy_diagnostics(self) -> None:
        QGuiApplication.clipboard().setText(self.diagnostics())
        self.copy.setText(self.tr("Copied (secrets removed)"))
