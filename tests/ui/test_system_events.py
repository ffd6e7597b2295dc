"""Resume from sleep over D-Bus: a logind-style PrepareForSleep(false) starts a quiet period."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.ui.conftest import QLoop, until
from trayapp.builtins import default_registry
from trayapp.ui.system_events import SleepWatcher
from trayapp.ui.tray import TrayController

pytestmark = pytest.mark.skipif(
    shutil.which("dbus-daemon") is None or shutil.which("dbus-send") is None,
    reason="needs dbus-daemon and dbus-send",
)


@pytest.fixture
def private_bus() -> Iterator[str]:
    proc = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1", "--nopidfile"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().decode().strip()
    yield address
    proc.terminate()
    proc.wait(10)


def emit(address: str, sleeping: bool) -> None:
    subprocess.run(
        [
            "dbus-send", f"--bus={address}", "--type=signal", "/org/freedesktop/login1",
            "org.freedesktop.login1.Manager.PrepareForSleep", f"boolean:{str(sleeping).lower()}",
        ],
        check=True,
    )  # fmt: skip


@pytest.mark.parametrize("library", ["qtdbus", "dbus-fast"])
def test_resume_signal_reaches_the_watcher(
    qloop: QLoop, private_bus: str, library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QtDBus where its binding is there; dbus-fast where it is left out (the frozen bundle)."""
    if library == "dbus-fast":
        monkeypatch.setitem(sys.modules, "PySide6.QtDBus", None)  # import raises ImportError
    resumed: list[bool] = []

    async def body() -> None:
        watcher = SleepWatcher(lambda: resumed.append(True), bus_address=private_bus)
        assert await watcher.start()
        try:
            emit(private_bus, True)  # going to sleep: nothing to do
            emit(private_bus, False)  # woke up
            await until(lambda: bool(resumed))
            assert (watcher._fast_bus is not None) is (library == "dbus-fast")
        finally:
            watcher.stop()

    qloop.run(body())
    assert resumed == [True]


def test_resume_starts_a_quiet_period_and_wakes_the_engine(qloop: QLoop, profile_dir: Path) -> None:
    from trayapp.core.engine import Engine

    engine = Engine(profile_dir, patterns=default_registry())
    now = [datetime(2026, 3, 2, 12, 0, tzinfo=UTC)]
    ctl = TrayController(
        engine, now=lambda: now[0], use_desktop_notifications=False, use_tray=False,
        report=lambda _l: None,
    )  # fmt: skip
    try:
        now[0] += timedelta(hours=5)
        ctl.resumed_from_sleep()
        assert ctl.policy.in_quiet_period(now[0] + timedelta(seconds=10))
        assert not ctl.policy.in_quiet_period(now[0] + timedelta(seconds=16))
    finally:
        ctl.dispose()
        engine.close()


def test_no_system_bus_is_not_an_error(qloop: QLoop, tmp_path: Path) -> None:
    watcher = SleepWatcher(lambda: None, bus_address=f"unix:path={tmp_path}/nothing")
    assert qloop.run(watcher.start()) is False
