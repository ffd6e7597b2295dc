"""The first-run welcome window: what Pattern Sync does, and three ways to start.

Opened once on its own (no charms, no accounts, never shown before: see
``TrayController.maybe_first_run``) and any time from the tray menu ("Getting started…") or
Settings > General. Built on first use only, like every window.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from PySide6.QtCore import QProcess, Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCommandLinkButton,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from trayapp import DISPLAY_NAME
from trayapp.ui.prefs import UiPrefs

if TYPE_CHECKING:
    from pathlib import Path

    from trayapp.ui.tray import TrayController


def demo_command() -> tuple[str, list[str]]:
    """How to start ``trayapp --demo`` as its own process (an installed bundle or Python)."""
    if getattr(sys, "frozen", False):
        return sys.executable, ["--demo"]
    return sys.executable, ["-m", "trayapp", "--demo"]


class WelcomeWindow(QWidget):
    def __init__(self, ctl: TrayController) -> None:
        super().__init__()
        self.ctl = ctl
        self.setObjectName("welcome_window")
        self.setWindowTitle(self.tr("Welcome to {app}").format(app=DISPLAY_NAME))
        self.setMinimumWidth(520)
        lay = QVBoxLayout(self)
        lay.setSpacing(10)
        title = QLabel(self.tr("Welcome to {app}").format(app=DISPLAY_NAME))
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        title.setFont(font)
        lay.addWidget(title)
        intro = QLabel(
            self.tr(
                "Pattern Sync copies your Gmail, Google Calendar and news feeds to this computer "
                "and keeps them up to date in the background. It lives in the system tray: the "
                "icon shows whether everything is in sync, and its menu has everything else."
            )
        )
        intro.setObjectName("intro")
        intro.setWordWrap(True)
        lay.addWidget(intro)
        lay.addWidget(QLabel(self.tr("How would you like to start?")))

        self.demo = QCommandLinkButton(
            self.tr("Try the &demo"),
            self.tr("Look around with sample mail, events and feeds. Nothing of yours is used."),
        )
        self.demo.setObjectName("welcome_demo")
        self.demo.clicked.connect(self.start_demo)
        self.google = QCommandLinkButton(
            self.tr("&Connect a Google account"),
            self.tr(
                "Sync Gmail and Google Calendar. You set up your own Google OAuth client once "
                "(about ten minutes); the steps are shown."
            ),
        )
        self.google.setObjectName("welcome_google")
        self.google.clicked.connect(self.connect_google)
        self.feed = QCommandLinkButton(
            self.tr("Add a &feed"),
            self.tr("Follow a news site or blog by its RSS or Atom feed. No account needed."),
        )
        self.feed.setObjectName("welcome_feed")
        self.feed.clicked.connect(self.add_feed)
        for b in (self.demo, self.google, self.feed):
            b.setAccessibleName(b.text().replace("&", ""))
            b.setAccessibleDescription(b.description())
            lay.addWidget(b)
        self.status = QLabel("")
        self.status.setObjectName("welcome_status")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        foot = QHBoxLayout()
        hint = QLabel(self.tr("Open this window again from the tray menu: Getting started…"))
        hint.setStyleSheet("color: palette(mid)")
        hint.setWordWrap(True)
        foot.addWidget(hint, 1)
        close = QPushButton(self.tr("C&lose"))
        close.setObjectName("welcome_close")
        close.clicked.connect(self.close)
        foot.addWidget(close, 0, Qt.AlignmentFlag.AlignBottom)
        lay.addLayout(foot)

    def _profile(self) -> Path:
        return self.ctl.engine.profile.path

    def showEvent(self, event: QShowEvent) -> None:
        prefs = UiPrefs.load(self._profile())
        if not prefs.welcome_shown:
            prefs.welcome_shown = True
            prefs.save(self._profile())
        super().showEvent(event)

    def focus(self, _arg: str | None) -> None:
        self.status.setText("")

    def start_demo(self) -> None:
        """The demo runs as its own app with a throwaway profile: this one stays untouched."""
        program, args = demo_command()
        started = QProcess.startDetached(program, args)
        ok = started[0] if isinstance(started, tuple) else bool(started)
        if ok:
            self.status.setText(
                self.tr(
                    "The demo opens as a second icon in the tray; quit it from its menu when "
                    "you are done."
                )
            )
        else:
            self.status.setText(self.tr("The demo could not be started."))

    def connect_google(self) -> None:
        self.ctl.open_window("connect_google")
        self.close()

    def add_feed(self) -> None:
        self.ctl.open_window("settings", "charms:new:feed-importer")
        self.close()
