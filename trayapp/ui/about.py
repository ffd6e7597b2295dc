"""About and help: versions, licence, where the docs and the logs are, "Copy diagnostics".

Loaded on first use only. Version strings come from the running interpreter and package
metadata, never hard-coded, so a bug report says what actually ran.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, QUrl, qVersion
from PySide6.QtGui import QDesktopServices, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from trayapp import DISPLAY_NAME, DIST_NAME, __version__
from trayapp.core.logfiles import log_dir, newest_log
from trayapp.ui.icons import render
from trayapp.ui.model import IconState

if TYPE_CHECKING:
    from trayapp.ui.tray import TrayController

__all__ = ["AboutWindow", "docs_location", "log_dir", "versions"]

KEY_LIBRARIES = (
    "PySide6-Essentials",
    "qasync",
    "httpx",
    "pydantic",
    "google-auth",
    "keyring",
    "desktop-notifier",
    "feedparser",
    "icalendar",
)


def versions() -> list[tuple[str, str]]:
    """(name, version) of the app, Python, Qt and the key libraries, as installed."""
    out = [
        (DISPLAY_NAME, __version__),
        ("Python", platform.python_version()),
        ("Qt", qVersion()),
        ("PySide6", pyside_version),
    ]
    for name in KEY_LIBRARIES:
        if name.startswith("PySide6"):
            continue
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    out.append(("System", platform.platform()))
    return out


def licence() -> str:
    try:
        meta = metadata.metadata(DIST_NAME)
        text = meta["License-Expression"] or meta["License"] or ""
    except metadata.PackageNotFoundError:
        text = ""
    return str(text).strip() or "MIT"


def docs_location() -> Path | None:
    """The documentation shipped with this copy: docs/ of a checkout or a bundle, or None."""
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "docs"]
    if bundle := getattr(sys, "_MEIPASS", None):
        candidates.append(Path(bundle) / "docs")
    return next((c for c in candidates if (c / "tray.md").is_file()), None)


class AboutWindow(QWidget):
    def __init__(self, ctl: TrayController) -> None:
        super().__init__()
        self.ctl = ctl
        self.setObjectName("about")
        self.setWindowTitle(self.tr("About {app}").format(app=DISPLAY_NAME))
        self.resize(520, 460)

        logo = QLabel()
        logo.setPixmap(render(IconState.OK, 48, dpr=self.devicePixelRatioF()))
        logo.setAccessibleName(self.tr("{app} logo").format(app=DISPLAY_NAME))
        title = QLabel(f"<b>{DISPLAY_NAME}</b> {__version__}")
        title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        tagline = QLabel(
            self.tr("Keeps your Gmail, Calendar and feeds synced to this computer.")
            + "<br>"
            + self.tr("Licence: {licence}").format(licence=licence())
        )
        head = QHBoxLayout()
        head.addWidget(logo)
        text = QVBoxLayout()
        text.addWidget(title)
        text.addWidget(tagline)
        head.addLayout(text, 1)

        self.details = QTextBrowser()
        self.details.setObjectName("about_versions")
        self.details.setAccessibleName(self.tr("Versions"))
        self.details.setOpenLinks(False)
        self.details.setPlainText("\n".join(f"{name}: {ver}" for name, ver in versions()))
        self.where = QLabel()
        self.where.setObjectName("about_paths")
        self.where.setWordWrap(True)
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        profile = ctl.engine.profile.path
        log = newest_log(profile) or log_dir(profile)
        self.where.setText(self.tr("Data: {data}\nLog: {log}").format(data=profile, log=log))

        self.docs_button = QPushButton(self.tr("&Documentation"))
        self.docs_button.setObjectName("about_docs")
        self.docs_button.setAccessibleName(self.tr("Open the documentation"))
        self.docs_button.clicked.connect(self.open_docs)
        self.docs_button.setVisible(docs_location() is not None)
        self.logs_button = QPushButton(self.tr("Open &log folder"))
        self.logs_button.setObjectName("about_logs")
        self.logs_button.clicked.connect(lambda: ctl.run_command("open_logs"))
        self.copy_button = QPushButton(self.tr("&Copy diagnostics"))
        self.copy_button.setObjectName("about_copy")
        self.copy_button.setAccessibleName(self.tr("Copy diagnostics, secrets removed"))
        self.copy_button.clicked.connect(self.copy_diagnostics)
        self.close_button = QPushButton(self.tr("Close"))
        self.close_button.setObjectName("about_close")
        self.close_button.clicked.connect(self.close)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.close)

        buttons = QHBoxLayout()
        for b in (self.docs_button, self.logs_button, self.copy_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(self.details, 1)
        layout.addWidget(self.where)
        layout.addLayout(buttons)
        self.close_button.setDefault(True)

    def open_docs(self) -> None:
        docs = docs_location()
        if docs is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(docs)))
            self.ctl.report(f"TRAYAPP_OPENED_FOLDER {docs}")

    def diagnostics(self) -> str:
        from trayapp.ui.windows import diagnostics

        return diagnostics(self.ctl)

    def copy_diagnostics(self) -> None:
        QGuiApplication.clipboard().setText(self.diagnostics())
        self.copy_button.setText(self.tr("Copied (secrets removed)"))
