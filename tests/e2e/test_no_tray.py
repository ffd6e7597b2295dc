"""No tray host on the desktop (GNOME without AppIndicator): the status window appears instead."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.e2e.desktop import Desktop, ReportLog, missing_tools
from tests.e2e.test_tray_desktop import OUT, REPO, app_module

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bool(missing_tools()), reason="desktop tools missing"),
]


def test_status_window_with_a_hint_when_there_is_no_tray(tmp_path: Path) -> None:
    desktop = Desktop(tmp_path)
    try:
        desktop.start(tray_host=False)
        report = ReportLog(tmp_path / "report.log")
        app = desktop.spawn(
            [sys.executable, "-m", app_module(), "--demo", "--profile", str(tmp_path / "p")],
            log="app",
            env=desktop.env(
                QT_QPA_PLATFORM="xcb",
                TRAYAPP_TEST_REPORT=str(report.path),
                TRAYAPP_TRAY_WAIT="1",  # the default waits 10 s for a panel that may come late
                PYTHONPATH=str(REPO),
                PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
            ),
            cwd=str(REPO),
        )
        report.wait("TRAYAPP_STATUS_WINDOW", 60)
        assert not [ln for ln in report.lines() if ln.startswith("TRAYAPP_TRAY_GEOMETRY")]
        report.wait("TRAYAPP_RUN_FINISHED", 60, count=3)
        desktop.wait_painted(OUT / "status-window.png", (0, 0, 360, 130))
        app.terminate()
        assert app.wait(timeout=60) == 0
    finally:
        desktop.stop()
