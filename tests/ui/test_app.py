"""The app shell end to end in-process: demo profile, engine, tray; Qt's quit() exits cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.core.outcomes import OutcomeKind
from trayapp.ipc import try_send
from trayapp.ui.app import main

REPO = Path(__file__).resolve().parents[2]


def test_session_end_quit_stops_the_engine_and_returns_0(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = tmp_path / "report.log"
    monkeypatch.setenv("TRAYAPP_TEST_REPORT", str(report))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    profile = tmp_path / "profile"

    def lines() -> list[str]:
        return report.read_text().splitlines() if report.exists() else []

    # Once the demo's first pass is done, the CLI talks to the tray (from a thread: try_send
    # blocks, and the tray serves it on this thread's loop); then end the session the way a
    # desktop does: app.quit().
    poll = QTimer()
    poll.setInterval(20)
    replies: dict[str, Any] = {}

    def cli() -> None:
        for cmd in (
            {"cmd": "pause", "charm": "team-blog"},
            {"cmd": "account-changed", "account": "nope"},
        ):
            replies[str(cmd["cmd"])] = try_send(profile, cmd, 20.0)

    talker = threading.Thread(target=cli, daemon=True)

    def check() -> None:
        feeds = ("project-news", "release-notes", "team-blog")
        if not talker.is_alive() and len(replies) == 2:
            poll.stop()
            qapp.quit()
        elif not talker.is_alive() and all(
            f"TRAYAPP_RUN_FINISHED {f} ok" in lines() for f in feeds
        ):
            talker.start()

    poll.timeout.connect(check)
    poll.start()
    rc = main(["--demo", "--profile", str(profile)])
    poll.stop()
    assert rc == 0
    assert "TRAYAPP_READY" in lines()
    # The tray serves the CLI's commands, the same set as `run --headless`, with its accounts.
    assert replies == {"pause": {"ok": True}, "account-changed": {"ok": True, "usable": False}}
    # the store was closed cleanly and reopens
    engine = Engine(profile, patterns=default_registry())
    try:
        statuses = engine.statuses()
        for feed in ("project-news", "release-notes", "team-blog"):
            assert statuses[feed].last_outcome is OutcomeKind.OK
        assert statuses["team-blog"].paused
        # Demo Gmail/Calendar (when installed) may have been mid-run: recorded, not lost.
        for s in statuses.values():
            assert s.last_outcome in (OutcomeKind.OK, OutcomeKind.CANCELLED, None)
            assert s.state.value != "running"
    finally:
        engine.close()
    assert not list(tmp_path.glob("trayapp/*.sock"))  # the IPC socket is gone
    # The tray writes the log file the docs promise, as `run --headless` does.
    log_file = profile / "logs" / "trayapp.log"
    assert "engine started with" in log_file.read_text(encoding="utf-8")
    assert log_file.stat().st_mode & 0o777 == 0o600


def test_absurd_ui_prefs_do_not_stop_the_tray(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = tmp_path / "report.log"
    monkeypatch.setenv("TRAYAPP_TEST_REPORT", str(report))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "ui.json").write_text('{"grace_seconds": 100000000000000000000000000000}')
    poll = QTimer()
    poll.setInterval(20)

    def check() -> None:
        if report.exists() and "TRAYAPP_READY" in report.read_text().splitlines():
            poll.stop()
            qapp.quit()

    poll.timeout.connect(check)
    poll.start()
    rc = main(["--profile", str(profile)])
    poll.stop()
    assert rc == 0 and "TRAYAPP_READY" in report.read_text().splitlines()


def test_a_tray_on_a_profile_held_by_another_process_says_why(
    qapp: QApplication,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from trayapp.core.profile import Profile

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    profile = Profile.resolve(tmp_path / "profile")
    lock = profile.lock_engine("trayapp sync")
    try:
        rc = main(["--profile", str(profile.path)])
    finally:
        lock.release()
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "another trayapp sync" in err[0], err


def test_the_app_object_turns_qt_quit_into_the_orderly_shutdown(tmp_path: Path) -> None:
    """``TrayApplication`` (the app's own QApplication) refuses ``QEvent.Quit`` and asks for the
    orderly shutdown instead, seeing only the application object's own events: no application-
    wide event filter (each event of every widget crossed into Python: ~4-5 MiB, issue 17).
    A fresh process: this test process already has its QApplication (pytest-qt)."""
    script = (
        "import sys\n"
        "from PySide6.QtCore import QTimer\n"
        "from trayapp.ui.qtapp import TrayApplication\n"
        "app = TrayApplication([])\n"
        "asked = []\n"
        "def on_quit():\n"
        "    asked.append(1)\n"
        "    QTimer.singleShot(0, lambda: app.exit(7))\n"
        "app.on_quit = on_quit\n"
        "QTimer.singleShot(0, app.quit)\n"
        "rc = app.exec()\n"
        "print(rc, len(asked))\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    # exec() ends with our code (7), not Qt's 0: the quit went to on_quit and was refused.
    assert proc.stdout.split()[:2] == ["7", "1"], proc.stderr[-2000:]
