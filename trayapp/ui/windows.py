"""The windows: Settings, Activity, and the status window used when there is no tray.

All are non-modal and opened from ordinary slots, never from coroutines (qasync#59/#82). They
read the same snapshot the menu is built from and call the same engine methods.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from trayapp import DISPLAY_NAME, __version__
from trayapp.core.errors import TrayappError
from trayapp.ui.autostart import Autostart
from trayapp.ui.icons import render
from trayapp.ui.model import Snapshot, charm_line, icon_state, relative_past, summary
from trayapp.ui.prefs import UiPrefs
from trayapp.ui.schema_form import SchemaForm

if TYPE_CHECKING:
    from trayapp.ui.tray import TrayController

NO_TRAY_HINT = "No system tray found: on GNOME, install the AppIndicator extension for the icon."
# The Activity window opens at this size with the charm list this wide (the splitter keeps the
# user's choice while the window is open).
ACTIVITY_SIZE = (860, 520)
ACTIVITY_LIST_WIDTH = 290


def _profile_dir(ctl: TrayController) -> Path:
    return ctl.engine.profile.path


def _redact(text: str) -> str:
    try:
        from trayapp.core.redact import redact
    except ImportError:  # pragma: no cover - redact ships with core
        return text
    return redact(text)


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
        sync = QPushButton("Sync all now")
        sync.clicked.connect(lambda: ctl.run_command("sync_all"))
        menu = QPushButton("Menu")
        menu.setMenu(ctl.menu)
        buttons.addWidget(sync)
        buttons.addWidget(menu)
        lay.addLayout(buttons)
        hint = QLabel(NO_TRAY_HINT)
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: palette(mid)")
        lay.addWidget(hint)
        self.resize(360, 130)

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
        self.setWindowTitle(f"{DISPLAY_NAME}: Activity")
        self.resize(ACTIVITY_SIZE[0], ACTIVITY_SIZE[1])
        lay = QVBoxLayout(self)
        # Splitters, so a user with long charm names or error texts can give them the room; the
        # initial sizes fit "✗  Team blog — server error, retry in 2 min" on two lines at most.
        top = QSplitter(Qt.Orientation.Horizontal)
        top.setChildrenCollapsible(False)
        self.charms = QListWidget()
        self.charms.setObjectName("charms")
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
        self.table.setHorizontalHeaderLabels(["Started", "Duration", "Outcome", "Items", "Details"])
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
        recent_lay.addWidget(QLabel("Recent notifications"))
        self.recent = QListWidget()
        self.recent.setObjectName("recent")
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
        self.copy = QPushButton("Copy diagnostics")
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
            self.charms.clear()
            self._charm_ids = ids
            for _ in ids:
                self.charms.addItem(QListWidgetItem())
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
                _redact(detail),
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
        snap = self.ctl.snapshot()
        data: dict[str, Any] = {
            "app": DISPLAY_NAME,
            "version": __version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "pyside6": pyside_version,
            "summary": summary(snap),
            "icon_state": icon_state(snap).value,
            "accounts": [
                {"id": a.id, "email": a.email, "state": a.state.value, "reason": a.reason}
                for a in snap.accounts
            ],
            "charms": [],
            "notifications": [
                {"at": e.at.isoformat(), "title": e.notice.title, "shown_by": e.shown_by}
                for e in self.ctl.notifier.recent.items()
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
                    "history": [r.to_json() for r in self.ctl.engine.history(c.id, 10)],
                }
            )
        return _redact(json.dumps(data, indent=2, default=str))

    def copy_diagnostics(self) -> None:
        QGuiApplication.clipboard().setText(self.diagnostics())
        self.copy.setText("Copied (secrets removed)")


class SettingsWindow(QWidget):
    """Accounts, charms (forms from each pattern's settings schema), start-up, notifications."""

    def __init__(self, ctl: TrayController) -> None:
        super().__init__()
        self.ctl = ctl
        self.setWindowTitle(f"{DISPLAY_NAME}: Settings")
        self.resize(640, 520)
        self.tabs = QTabWidget()
        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs)
        self._build_accounts()
        self._build_charms()
        self._build_general()

    def focus(self, tab: str | None) -> None:
        index = {"accounts": 0, "charms": 1, "general": 2}.get(tab or "")
        if index is not None:
            self.tabs.setCurrentIndex(index)
        self._reload_accounts()
        self._reload_charms()

    # -- accounts ---------------------------------------------------------------------------

    def _build_accounts(self) -> None:
        page = QWidget()
        lay = QVBoxLayout(page)
        self.account_list = QListWidget()
        self.account_list.setObjectName("accounts")
        lay.addWidget(self.account_list)
        row = QHBoxLayout()
        add = QPushButton("Add account…")
        add.clicked.connect(lambda: self.ctl.sign_in(None))
        again = QPushButton("Sign in again")
        again.clicked.connect(self._sign_in_selected)
        row.addWidget(add)
        row.addWidget(again)
        row.addStretch(1)
        lay.addLayout(row)
        self.tabs.addTab(page, "Accounts")
        self._reload_accounts()

    def _reload_accounts(self) -> None:
        self.account_list.clear()
        for a in self.ctl.accounts.accounts():
            text = f"{a.email} — {a.state.value.replace('_', ' ')}"
            if a.reason:
                text += f": {a.reason}"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, a.id)
            self.account_list.addItem(item)

    def _sign_in_selected(self) -> None:
        item = self.account_list.currentItem()
        if item is not None:
            self.ctl.sign_in(str(item.data(Qt.ItemDataRole.UserRole)))

    # -- charms -----------------------------------------------------------------------------

    def _build_charms(self) -> None:
        page = QWidget()
        lay = QHBoxLayout(page)
        left = QVBoxLayout()
        self.charm_list = QListWidget()
        self.charm_list.setObjectName("charm_list")
        self.charm_list.currentRowChanged.connect(self._edit_selected)
        left.addWidget(self.charm_list)
        new = QPushButton("New charm")
        new.clicked.connect(self.new_charm)
        left.addWidget(new)
        lay.addLayout(left, 1)
        right = QVBoxLayout()
        form = QFormLayout()
        self.pattern = QComboBox()
        self.pattern.setObjectName("pattern")
        for p in self._patterns():
            self.pattern.addItem(p.title or p.id, p.id)
        self.pattern.currentIndexChanged.connect(lambda _i: self._rebuild_form())
        self.name = QLineEdit()
        self.name.setObjectName("name")
        self.interval = QSpinBox()
        self.interval.setObjectName("interval")
        self.interval.setRange(1, 24 * 60)
        self.interval.setSuffix(" min")
        form.addRow("Pattern", self.pattern)
        form.addRow("Name", self.name)
        form.addRow("Sync every", self.interval)
        self.account = QComboBox()  # shown for patterns that need a Google account
        self.account.setObjectName("account")
        self.account_label = QLabel("Account")
        form.addRow(self.account_label, self.account)
        right.addLayout(form)
        self.form_host = QVBoxLayout()
        right.addLayout(self.form_host)
        self.form: SchemaForm | None = None
        self.save_status = QLabel("")
        self.save_status.setObjectName("save_status")
        self.save_status.setWordWrap(True)
        right.addWidget(self.save_status)
        self.save = QPushButton("Add charm")
        self.save.setObjectName("save")
        self.save.clicked.connect(self.save_charm)
        right.addStretch(1)
        right.addWidget(self.save)
        lay.addLayout(right, 2)
        self.tabs.addTab(page, "Charms")
        self._editing: str | None = None
        self._charm_ids: list[str] = []
        self._reload_charms()
        self._rebuild_form()

    def _patterns(self) -> list[Any]:
        patterns = getattr(self.ctl.engine, "patterns", None)
        try:
            return list(patterns) if patterns is not None else []
        except TypeError:
            return []

    def _pattern(self, pattern_id: str | None) -> Any:
        return next((p for p in self._patterns() if p.id == pattern_id), None)

    def _rebuild_form(self, values: dict[str, Any] | None = None) -> None:
        if self.form is not None:
            self.form_host.removeWidget(self.form)
            self.form.hide()  # deleteLater runs later; until then it would overlap the new form
            self.form.setParent(None)
            self.form.deleteLater()
            self.form = None
        p = self._pattern(self.pattern.currentData())
        if p is None:
            return
        needs_account = bool(getattr(p, "needs_account", False))
        self.account.clear()
        for a in self.ctl.accounts.accounts():
            self.account.addItem(f"{a.email} ({a.state.value.replace('_', ' ')})", a.id)
        if not self.account.count():
            self.account.addItem("No account yet: add one in the Accounts tab", None)
        self.account.setVisible(needs_account)
        self.account_label.setVisible(needs_account)
        self.form = SchemaForm(p.settings_model())
        self.form_host.addWidget(self.form)
        self.form.show()
        if values:
            self.form.set_values(values)
        if self._editing is None:
            interval = getattr(p, "default_interval", timedelta(minutes=30))
            self.interval.setValue(max(1, int(interval.total_seconds() // 60)))

    def _reload_charms(self) -> None:
        self.charm_list.blockSignals(True)
        self.charm_list.clear()
        self._charm_ids = []
        for c in self.ctl.engine.charms():
            self.charm_list.addItem(c.name)
            self._charm_ids.append(c.id)
        self.charm_list.blockSignals(False)

    def new_charm(self) -> None:
        self._editing = None
        self.charm_list.clearSelection()
        self.name.setText("")
        self.pattern.setEnabled(True)
        self.save.setText("Add charm")
        self._rebuild_form()

    def _edit_selected(self, row: int) -> None:
        if not 0 <= row < len(self._charm_ids):
            return
        charm = next((c for c in self.ctl.engine.charms() if c.id == self._charm_ids[row]), None)
        if charm is None:
            return
        self._editing = charm.id
        self.pattern.blockSignals(True)
        self.pattern.setCurrentIndex(max(0, self.pattern.findData(charm.pattern_id)))
        self.pattern.blockSignals(False)
        self.pattern.setEnabled(False)
        self.name.setText(charm.name)
        interval = getattr(charm, "interval", None)
        if isinstance(interval, timedelta):
            self.interval.setValue(max(1, int(interval.total_seconds() // 60)))
        self._rebuild_form(dict(getattr(charm, "settings", {}) or {}))
        self.save.setText("Save changes")

    def save_charm(self) -> bool:
        """Validate inline first (per-field errors), then let the engine have the last word."""
        if self.form is None:
            return False
        model = self.form.validate()
        if model is None:
            self.save_status.setText("Fix the highlighted fields.")
            return False
        settings = model.model_dump(mode="json", exclude_unset=True)
        interval = timedelta(minutes=self.interval.value())
        name = self.name.text().strip() or None
        try:
            if self._editing is None:
                account = self.account.currentData() if self.account.isVisible() else None
                info = self.ctl.engine.add_charm(
                    self.pattern.currentData(),
                    settings,
                    name=name,
                    interval=interval,
                    account_id=account,
                )
                self._editing = info.id
            else:
                self.ctl.engine.update_charm(
                    self._editing, settings=settings, name=name, interval=interval
                )
        except TrayappError as exc:
            self.form.show_general_error(str(exc))
            self.save_status.setText("Not saved.")
            return False
        self.save_status.setText("Saved.")
        self._reload_charms()
        self.ctl.schedule_refresh()
        return True

    # -- general ----------------------------------------------------------------------------

    def _build_general(self) -> None:
        page = QWidget()
        lay = QVBoxLayout(page)
        self.autostart = Autostart()
        st = self.autostart.status()
        self.autostart_box = QCheckBox("Start Pattern Sync when I log in")
        self.autostart_box.setObjectName("autostart")
        self.autostart_box.setChecked(st.enabled)
        self.autostart_box.toggled.connect(self._toggle_autostart)
        self.autostart_info = QLabel(st.describe())
        self.autostart_info.setObjectName("autostart_info")
        self.autostart_info.setWordWrap(True)
        self.repair = QPushButton("Repair start-up entry")
        self.repair.setVisible(st.stale)
        self.repair.clicked.connect(self._repair_autostart)
        lay.addWidget(self.autostart_box)
        lay.addWidget(self.autostart_info)
        lay.addWidget(self.repair)
        prefs = UiPrefs.load(_profile_dir(self.ctl))
        self.notify_errors = QCheckBox("Notify me when a charm fails or an account needs me")
        self.notify_errors.setChecked(prefs.notify_errors)
        self.notify_new = QCheckBox("Notify me about new items (summary after a sync)")
        self.notify_new.setChecked(prefs.notify_new_items)
        self.notify_errors.toggled.connect(lambda _v: self._save_prefs())
        self.notify_new.toggled.connect(lambda _v: self._save_prefs())
        lay.addWidget(self.notify_errors)
        lay.addWidget(self.notify_new)
        lay.addStretch(1)
        self.tabs.addTab(page, "General")

    def _toggle_autostart(self, on: bool) -> None:
        st = self.autostart.enable() if on else self.autostart.disable()
        self.autostart_info.setText(st.describe())
        self.repair.setVisible(st.stale)

    def _repair_autostart(self) -> None:
        st = self.autostart.repair()
        self.autostart_info.setText(st.describe())
        self.repair.setVisible(st.stale)

    def _save_prefs(self) -> None:
        prefs = UiPrefs(
            notify_errors=self.notify_errors.isChecked(),
            notify_new_items=self.notify_new.isChecked(),
            grace_seconds=int(self.ctl.policy.grace.total_seconds()),
        )
        prefs.save(_profile_dir(self.ctl))
        self.ctl.policy.errors_enabled = prefs.notify_errors
        self.ctl.policy.new_items_summary = prefs.notify_new_items
