"""``./dev demo`` twice: the second launch shows the first one's menu, never a second icon."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.desktop import Desktop, ReportLog, missing_tools
from tests.e2e.test_tray_desktop import REPO, app_module

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(bool(missing_tools()), reason="desktop tools missing"),
]


def test_a_second_demo_shows_the_first_instead_of_a_second_icon(tmp_path: Path) -> None:
    desktop = Desktop(tmp_path)
    try:
        desktop.start()
        env = {
            "QT_QPA_PLATFORM": "xcb",
            "PYTHONPATH": str(REPO),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        }
        first_report = ReportLog(tmp_path / "first.log")
        first = desktop.spawn(
            [sys.executable, "-m", app_module(), "--demo"],
            log="first",
            env=desktop.env(**env, TRAYAPP_TEST_REPORT=str(first_report.path)),
            cwd=str(REPO),
        )
        first_report.wait("TRAYAPP_TRAY_GEOMETRY", 60)
        profile = tmp_path / "run" / f"trayapp-demo-{os.getuid()}"
        assert profile.is_dir()  # the demo's profile: in the user's runtime folder
        second_report = ReportLog(tmp_path / "second.log")
        mark = first_report.mark()
        second = subprocess.run(
            [sys.executable, "-m", app_module(), "--demo"],
            env=desktop.env(**env, TRAYAPP_TEST_REPORT=str(second_report.path)),
            cwd=str(REPO),
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert second.returncode == 0, second.stderr
        assert b"already running" in second.stderr
        assert not [ln for ln in second_report.lines() if ln.startswith("TRAYAPP_ICON_SHOWN")]
        first_report.wait("TRAYAPP_MENU_SHOWN", 30, after=mark)  # the first one answered
        desktop.xdotool("key", "Escape")
        assert profile.is_dir(), "the second launch must not delete the running demo's profile"
        first.terminate()
        assert first.wait(timeout=60) == 0
        assert not profile.exists(), "the demo profile is removed when the demo quits"
    finally:
        desktop.stop()
