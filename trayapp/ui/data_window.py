""" "Your data": browse what each charm imported, open a message or a link, export.

Loaded on first use only (the tray imports this module when the window is first opened). All
reads go through :class:`~trayapp.ui.data_reader.DataReader` (a read-only SQLite connection on a
worker thread), so the window never blocks the event loop or the sync, and cannot write.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices, QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from trayapp import DISPLAY_NAME
from trayapp.ui.data_reader import DataReader, EventRow, FeedRow, MailRow, kind_of
from trayapp.ui.model import Snapshot

if TYPE_CHECKING:
    from trayapp.core.charms import CharmInfo
    from trayapp.ui.tray import TrayController

log = logging.getLogger(__name__)

SEARCH_DELAY_MS = 250
_COLUMNS = {
    "mail": ("Date", "From", "Subject", "Labels"),
    "events": ("When", "Title", "Calendar", "Location"),
    "feed": ("Published", "Title", "Author"),
}
_NOUNS = {"mail": "messages", "events": "upcoming events", "feed": "items"}


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    local = value.astimezone()
    return f"{local:%Y-%m-%d %H:%M}"


def _label(label_id: str) -> str:
    """Gmail's system label ids as Gmail shows them: CATEGORY_SOCIAL -> Social, INBOX -> Inbox."""
    if label_id.startswith("CATEGORY_"):
        label_id = label_id.removeprefix("CATEGORY_")
    return label_id.capitalize() if label_id.isupper() else label_id


class DataWindow(QWidget):
    """Charms on the left; the selected charm's items on the right."""

    def __init__(self, ctl: TrayController) -> None:
        super().__init__()
        self.ctl = ctl
        self.setObjectName("data")
        self.setWindowTitle(self.tr("Your data — {app}").format(app=DISPLAY_NAME))
        self.resize(920, 560)
        engine = ctl.engine
        self.reader = DataReader(engine.profile.db_path, engine.patterns)
        self._charms: list[CharmInfo] = []
        self._rows: list[MailRow] | list[EventRow] | list[FeedRow] = []
        self._kind = ""
        self._generation = 0  # a newer load wins over a slower older one
        self._last_run: dict[str, Any] = {}
        self.loads = 0  # finished loads (tests wait on it)

        self.charm_list = QListWidget()
        self.charm_list.setObjectName("data_charms")
        self.charm_list.setAccessibleName(self.tr("Charms"))
        self.charm_list.currentRowChanged.connect(lambda _r: self.reload())

        self.search = QLineEdit()
        self.search.setObjectName("data_search")
        self.search.setPlaceholderText(self.tr("Search sender, subject, labels…"))
        self.search.setAccessibleName(self.tr("Search"))
        self.search.setClearButtonEnabled(True)
        search_label = QLabel(self.tr("&Search:"))
        search_label.setBuddy(self.search)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.reload)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.search.returnPressed.connect(self.reload)

        self.table = QTableWidget(0, 4)
        self.table.setObjectName("data_table")
        self.table.setAccessibleName(self.tr("Items"))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        rows = self.table.verticalHeader()
        rows.setDefaultSectionSize(self.fontMetrics().height() + 6)  # compact, like a mail list
        self.table.setWordWrap(False)
        self.table.setTabKeyNavigation(False)  # Tab leaves the table, arrows move in it
        self.table.itemActivated.connect(lambda _i: self.open_selected())
        self.table.itemSelectionChanged.connect(self._update_buttons)

        self.status = QLabel()
        self.status.setObjectName("data_status")
        self.status.setAccessibleName(self.tr("Status"))

        self.open_button = QPushButton(self.tr("&Open"))
        self.open_button.setObjectName("data_open")
        self.open_button.clicked.connect(self.open_selected)
        self.export_button = QPushButton(self.tr("E&xport…"))
        self.export_button.setObjectName("data_export")
        self.export_button.setAccessibleName(self.tr("Export this charm's data"))
        self.export_button.clicked.connect(self.export)
        self.reload_button = QPushButton(self.tr("&Reload"))
        self.reload_button.setObjectName("data_reload")
        self.reload_button.clicked.connect(self.reload)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Refresh), self, self.reload)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Find), self, self.search.setFocus)
        close = QShortcut(QKeySequence(QKeySequence.StandardKey.Close), self)
        close.activated.connect(self.close)

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(search_label)
        top.addWidget(self.search, 1)
        rl.addLayout(top)
        rl.addWidget(self.table, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.reload_button)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.export_button)
        rl.addLayout(buttons)

        split = QSplitter()
        split.addWidget(self.charm_list)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([230, 690])
        layout = QVBoxLayout(self)
        layout.addWidget(split)
        self.setTabOrder(self.charm_list, self.search)
        self.setTabOrder(self.search, self.table)
        self.setTabOrder(self.table, self.reload_button)
        self.setTabOrder(self.reload_button, self.open_button)
        self.setTabOrder(self.open_button, self.export_button)
        self._fill_charms()

    # -- charms ----------------------------------------------------------------------------

    def _fill_charms(self) -> None:
        current = self.current_charm()
        charms = [c for c in self.ctl.engine.charms() if kind_of(c.pattern_id)]
        if [c.id for c in charms] == [c.id for c in self._charms]:
            return
        self._charms = charms
        self.charm_list.blockSignals(True)
        self.charm_list.clear()
        for c in charms:
            item = QListWidgetItem(c.name)
            item.setData(Qt.ItemDataRole.UserRole, c.id)
            item.setToolTip(self.tr(_NOUNS[kind_of(c.pattern_id)]))
            self.charm_list.addItem(item)
        self.charm_list.blockSignals(False)
        ids = [c.id for c in charms]
        self.charm_list.setCurrentRow(ids.index(current) if current in ids else 0)
        if not charms:
            self.status.setText(self.tr("No charm has imported anything yet."))

    def current_charm(self) -> str | None:
        item = self.charm_list.currentItem()
        value = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        return value if isinstance(value, str) else None

    def _charm(self) -> CharmInfo | None:
        cid = self.current_charm()
        return next((c for c in self._charms if c.id == cid), None)

    def focus(self, charm_id: str | None) -> None:
        """Open on a charm (the tray's ``data:<charm id>`` command)."""
        self._fill_charms()
        for row in range(self.charm_list.count()):
            item = self.charm_list.item(row)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == charm_id:
                self.charm_list.setCurrentRow(row)
                return
        if not self._rows:
            self.reload()

    def update_from(self, snap: Snapshot) -> None:
        """Called on tray refreshes while visible: reload when the shown charm synced again."""
        self._fill_charms()
        cid = self.current_charm()
        view = next((c for c in snap.charms if c.id == cid), None)
        if view is None or cid is None:
            return
        last = view.status.last_success_at
        if cid in self._last_run and self._last_run[cid] != last:
            self.reload()
        self._last_run[cid] = last

    # -- loading ---------------------------------------------------------------------------

    def reload(self) -> None:
        charm = self._charm()
        if charm is None:
            self.table.setRowCount(0)
            return
        self._generation += 1
        self.status.setText(self.tr("Loading…"))
        self.ctl.spawn(self._load(charm, self._generation, self.search.text()))

    async def _load(self, charm: CharmInfo, generation: int, search: str) -> None:
        kind = kind_of(charm.pattern_id)
        try:
            rows: Sequence[MailRow | EventRow | FeedRow]
            if kind == "mail":
                rows = await self.reader.mail(charm, search)
                total = await self.reader.count(charm, "messages")
            elif kind == "events":
                rows = await self.reader.events(charm)
                if search:
                    words = search.lower().split()
                    rows = [
                        r
                        for r in rows
                        if isinstance(r, EventRow)
                        and all(
                            w in f"{r.summary} {r.calendar} {r.location}".lower() for w in words
                        )
                    ]
                total = len(rows)
            else:
                rows = await self.reader.feed_items(charm, search)
                total = await self.reader.count(charm, "items")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the data window could not read %s", charm.id)
            if generation == self._generation:
                self.status.setText(self.tr("Could not read this charm's data; see the log."))
            return
        if generation != self._generation:
            return
        self._show(kind, list(rows), total, bool(search))
        self.loads += 1
        keys = sorted(r.key for r in rows if isinstance(r, MailRow | FeedRow))
        digest = hashlib.sha1(",".join(keys).encode()).hexdigest()[:12] if keys else "-"
        self.ctl.report(f"TRAYAPP_DATA_LOADED {charm.id} {kind} {len(rows)} {total} {digest}")

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self.charm_list.hasFocus() and not self.search.hasFocus():
            self.charm_list.setFocus()  # arrows and type-ahead choose a charm at once

    def _show(
        self, kind: str, rows: list[MailRow | EventRow | FeedRow], total: int, searched: bool
    ) -> None:
        self._kind = kind
        self._rows = rows  # type: ignore[assignment]
        cols = _COLUMNS[kind]
        self.table.clear()
        self.table.setColumnCount(len(cols))
        self.table.setHorizontalHeaderLabels([self.tr(c) for c in cols])
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(self._cells(row)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(r, c, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.resizeColumnsToContents()
        header.setStretchLastSection(True)
        title_col = 2 if kind == "mail" else 1
        header.setSectionResizeMode(title_col, QHeaderView.ResizeMode.Stretch)
        search_hint = {
            "mail": "Search sender, subject, labels…",
            "events": "Search title, calendar, place…",
            "feed": "Search title, author…",
        }[kind]
        self.search.setPlaceholderText(self.tr(search_hint))
        noun = self.tr(_NOUNS[kind])
        if searched:
            text = self.tr("{n} of {total} {noun} match").format(
                n=f"{len(rows):,}", total=f"{total:,}", noun=noun
            )
        elif len(rows) < total:
            text = self.tr("{total} {noun}, newest {n} shown").format(
                n=f"{len(rows):,}", total=f"{total:,}", noun=noun
            )
        else:
            text = self.tr("{total} {noun}").format(total=f"{total:,}", noun=noun)
        self.status.setText(text)
        self.open_button.setText(
            self.tr("&Open as .eml") if kind == "mail" else self.tr("&Open link")
        )
        self.open_button.setAccessibleName(
            self.tr("Open the selected message") if kind == "mail" else self.tr("Open the link")
        )
        if rows:
            self.table.selectRow(0)
        self._update_buttons()

    def _cells(self, row: MailRow | EventRow | FeedRow) -> list[str]:
        if isinstance(row, MailRow):
            labels = ", ".join(_label(lbl) for lbl in row.labels)
            return [_when(row.date), row.sender, row.subject, labels]
        if isinstance(row, EventRow):
            local = row.start.astimezone() if not row.all_day else row.start
            when = (
                self.tr("{day} (all day)").format(day=f"{local:%Y-%m-%d}")
                if row.all_day
                else f"{local:%Y-%m-%d %H:%M}"
            )
            title = row.summary + (" ↻" if row.recurring else "")
            return [when, title, row.calendar, row.location]
        return [_when(row.published), row.title, row.author]

    def selected(self) -> MailRow | EventRow | FeedRow | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        index = rows[0].row()
        return self._rows[index] if 0 <= index < len(self._rows) else None

    def _update_buttons(self) -> None:
        row = self.selected()
        if isinstance(row, MailRow):
            self.open_button.setEnabled(True)
        elif isinstance(row, EventRow | FeedRow):
            self.open_button.setEnabled(bool(row.link))
        else:
            self.open_button.setEnabled(False)
        self.export_button.setEnabled(self._charm() is not None)

    # -- actions ---------------------------------------------------------------------------

    def open_selected(self) -> None:
        row = self.selected()
        charm = self._charm()
        if row is None or charm is None:
            return
        if isinstance(row, MailRow):
            self.ctl.spawn(self._open_eml(charm, row))
        elif row.link:
            QDesktopServices.openUrl(QUrl(row.link))
            self.ctl.report(f"TRAYAPP_DATA_OPENED {row.link}")

    async def _open_eml(self, charm: CharmInfo, row: MailRow) -> None:
        data = await self.reader.eml(charm, row.key)
        if data is None:
            self.status.setText(self.tr("That message is no longer stored."))
            return
        folder = Path(tempfile.mkdtemp(prefix="trayapp-eml-"))  # 0700
        safe = "".join(ch for ch in row.key if ch.isalnum() or ch in "-_") or "message"
        path = folder / f"{safe}.eml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))
        self.ctl.report(f"TRAYAPP_DATA_OPENED {path}")
        self.status.setText(self.tr("Opened {name}").format(name=path.name))

    def export(self) -> None:
        """Ask where (non-modal dialog: no nested event loop), then export in the background."""
        charm = self._charm()
        if charm is None:
            return
        formats = list(self.reader.export_formats(charm))
        if not formats:
            self.status.setText(self.tr("This charm has nothing to export."))
            return
        dialog = QFileDialog(self, self.tr("Export {name}").format(name=charm.name))
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        filters = [self._filter(f) for f in formats]
        dialog.setNameFilters(filters)
        dialog.selectFile(f"{charm.id}.{formats[0]}")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def chosen(path: str) -> None:
            fmt = formats[filters.index(dialog.selectedNameFilter())]
            self.start_export(charm, fmt, Path(path))

        dialog.fileSelected.connect(chosen)
        dialog.open()

    @staticmethod
    def _filter(fmt: str) -> str:
        return {
            "jsonl": "JSON lines (*.jsonl)",
            "ics": "iCalendar (*.ics)",
            "eml": "One .eml file per message, into a folder (*)",
        }.get(fmt, f"{fmt} (*.{fmt})")

    def start_export(self, charm: CharmInfo, fmt: str, dest: Path) -> None:
        self.status.setText(self.tr("Exporting…"))
        self.ctl.spawn(self._export(charm, fmt, dest))

    async def _export(self, charm: CharmInfo, fmt: str, dest: Path) -> None:
        try:
            n = await self.reader.export(charm, fmt, dest)
        except Exception as exc:  # an ExportError says what to do; others are logged
            from trayapp.core.errors import ExportError

            if not isinstance(exc, ExportError):
                log.exception("export of %s failed", charm.id)
            text = str(exc) if isinstance(exc, ExportError) else self.tr("see the log")
            self.status.setText(self.tr("Export failed: {why}").format(why=text))
            self.ctl.report(f"TRAYAPP_DATA_EXPORT_FAILED {charm.id}")
            return
        self.status.setText(self.tr("Exported {n} to {path}").format(n=f"{n:,}", path=dest))
        self.ctl.report(f"TRAYAPP_DATA_EXPORTED {charm.id} {fmt} {n}")

    def dispose(self) -> None:
        """The tray calls this at quit: the worker thread and its connection end."""
        self.reader.close()
