"""The tray's start-up icon shows the store upgrade's progress (issue 17.5): its tooltip and a
one-line menu, so a long upgrade does not look like an app that hangs."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from trayapp.ui.runner import UpgradeShown


def test_the_start_up_icon_says_how_far_the_upgrade_is(qapp: QApplication) -> None:
    tray = QSystemTrayIcon()
    tray.setToolTip("Pattern Sync: starting…")
    lines: list[str] = []
    shown = UpgradeShown(tray, lines.append)
    for done in (0.0, 0.4, 0.85):
        shown(done)
    assert tray.toolTip() == "Pattern Sync: upgrading your data (85%)…"
    menu = tray.contextMenu()
    assert menu is not None
    actions = menu.actions()
    assert [a.text() for a in actions] == ["Upgrading your data (85%)…"]
    assert not actions[0].isEnabled()
    assert lines == ["TRAYAPP_UPGRADE 0", "TRAYAPP_UPGRADE 40", "TRAYAPP_UPGRADE 85"]


def test_without_an_icon_the_progress_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    shown = UpgradeShown(None, lines.append)
    shown(0.0)
    shown(1.0)
    err = capsys.readouterr().err
    assert "upgrading your data for this version (0%)…" in err
    assert "upgrading your data for this version (100%)…" in err
