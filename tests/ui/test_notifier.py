"""The notifier asks for the desktop's notification service at the first notice, not at start.

A real private D-Bus session bus with no notification service on it: the notices delivered
while the question is out are shown in order by the tray balloon once the answer is in.
(With a service, dunst in tests/e2e/test_tray_desktop.py, the same path ends in a Notify call.)
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.ui.conftest import QLoop, until
from trayapp.ui.notifier import Notifier
from trayapp.ui.notify_policy import Notice

pytestmark = pytest.mark.skipif(
    shutil.which("dbus-daemon") is None, reason="needs dbus-daemon for a private bus"
)


@pytest.fixture
def empty_session_bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    proc = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1", "--nopidfile"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().decode().strip()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
    yield address
    proc.terminate()
    proc.wait(10)


def notice(n: int) -> Notice:
    return Notice(f"charm:c{n}", "failing", f"Charm {n} stopped syncing", "it failed")


def test_first_notice_asks_for_the_service_then_all_waiting_ones_are_shown_in_order(
    qloop: QLoop, empty_session_bus: str
) -> None:
    balloons: list[str] = []
    lines: list[str] = []
    at = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    notifier = Notifier(
        lambda _cmd: None,
        lambda: at,
        balloon=lambda n: balloons.append(n.title) is None,
        report=lines.append,
    )

    async def body() -> None:
        notifier.deliver(notice(1))
        notifier.deliver(notice(2))
        # Nothing is shown before the service has answered (or failed to).
        assert balloons == [] and notifier.recent.items() == []
        await until(lambda: len(balloons) == 2)
        assert not notifier.desktop_available  # nobody owns org.freedesktop.Notifications
        notifier.deliver(notice(3))  # the answer is known now: shown at once
        assert balloons[-1] == "Charm 3 stopped syncing"
        await notifier.stop()

    qloop.run(body())
    assert balloons == [f"Charm {n} stopped syncing" for n in (1, 2, 3)]
    assert [e.notice.title for e in notifier.recent.items()] == balloons[::-1]
    assert all(e.shown_by == "tray" and e.at == at for e in notifier.recent.items())
    assert lines == [f"TRAYAPP_NOTIFIED tray failing Charm {n} stopped syncing" for n in (1, 2, 3)]


def test_without_desktop_notifications_the_balloon_shows_the_first_notice_at_once(
    qloop: QLoop,
) -> None:
    balloons: list[str] = []
    notifier = Notifier(
        lambda _cmd: None,
        lambda: datetime(2026, 3, 2, tzinfo=UTC),
        balloon=lambda n: balloons.append(n.title) is None,
        use_desktop=False,
    )
    notifier.deliver(notice(1))
    assert balloons == ["Charm 1 stopped syncing"]
    qloop.run(notifier.stop())


def test_stop_while_the_service_is_asked_drops_the_waiting_notices(
    qloop: QLoop, empty_session_bus: str
) -> None:
    balloons: list[str] = []
    notifier = Notifier(
        lambda _cmd: None,
        lambda: datetime(2026, 3, 2, tzinfo=UTC),
        balloon=lambda n: balloons.append(n.title) is None,
    )

    async def body() -> None:
        notifier.deliver(notice(1))
        await notifier.stop()  # the app quits: no balloon from a tray being torn down

    qloop.run(body())
    assert balloons == [] and notifier.recent.items() == []
