"""A plugin's token account on a real (virtual) desktop: a refused token asks once, the
notification's button opens the token dialog, a new token typed into it brings the charm back.

Xvfb + trayer + dunst on a private D-Bus session (tests/e2e/desktop.py); the example plugin is
installed with pip and its ``example-private-notifications`` charm syncs against a real local
server that answers 401 to a wrong token. The account and charm are set up with the CLI, as a
user would; the app is the real tray (xcb), clicked and typed into with xdotool. Screenshots go
to out/e2e/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.desktop import Desktop, ReportLog, missing_tools, wait_for
from tests.plugins.conftest import JsonServer
from tests.plugins.conftest import json_server as json_server  # the fixture, for this module
from tests.plugins.test_example_plugin import plugin_env
from tests.plugins.test_example_plugin import plugin_site as plugin_site  # module fixture

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        bool(missing_tools()), reason=f"desktop tools missing: {', '.join(missing_tools())}"
    ),
]

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "out" / "e2e"


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Desktop]:
    d = Desktop(tmp_path / "desktop")
    (tmp_path / "desktop").mkdir()
    try:
        d.start()
        yield d
    finally:
        d.stop()
        log = tmp_path / "desktop" / "app.log"
        if log.exists():
            sys.stderr.write(log.read_text(errors="replace")[-4000:])


def widgets(report: ReportLog, window: str, after: int) -> dict[str, tuple[int, int, int, int]]:
    report.wait(f"TRAYAPP_WIDGETS_DONE {window}", 30, after=after)
    out: dict[str, tuple[int, int, int, int]] = {}
    for line in report.since(after):
        parts = line.split()
        if parts[0] == "TRAYAPP_WIDGET" and parts[1] == window:
            out[parts[2]] = (int(parts[3]), int(parts[4]), int(parts[5]), int(parts[6]))
    return out


def test_refused_token_notice_opens_the_token_dialog_and_a_new_token_recovers(
    desktop: Desktop, plugin_site: Path, tmp_path: Path, json_server: JsonServer
) -> None:
    profile = tmp_path / "profile"
    json_server.documents["/p.json"] = [{"id": "a", "title": "Private"}]
    json_server.tokens["/p.json"] = "right-token-e2e"
    env = {**plugin_env(plugin_site), "TRAYAPP_SECRET_STORE": "file"}

    def cli(stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
            capture_output=True,
            text=True,
            env=env,
            input=stdin,
            timeout=60,
        )

    added = cli(
        "wrong-token-e2e\n", "accounts", "add", "--service", "example-notes", "--name", "work"
    )
    assert added.returncode == 0, added.stderr
    charm = cli(
        "",
        "charms",
        "add",
        "example-private-notifications",
        "--name",
        "Private",
        "--account",
        "work",
        "--set",
        f"url={json_server.url}/p.json",
        "--json",
    )
    assert charm.returncode == 0, charm.stderr
    charm_id = json.loads(charm.stdout)["charm"]["id"]
    account_id = json.loads(cli("", "accounts", "list", "--json").stdout)["accounts"][0]["id"]

    report = ReportLog(tmp_path / "report.log")
    app_env = desktop.env(
        QT_QPA_PLATFORM="xcb",
        TRAYAPP_TEST_REPORT=str(report.path),
        TRAYAPP_NOTIFY_GRACE="2",
        PYTHONPATH=env["PYTHONPATH"],
        TRAYAPP_SECRET_STORE="file",
    )
    app = desktop.spawn(
        [sys.executable, "-m", "trayapp", "--profile", str(profile)],
        log="app",
        env=app_env,
        cwd=str(REPO),
    )
    try:
        report.wait("TRAYAPP_TRAY_GEOMETRY", 60)
        # The charm is due at start: the server refuses the token -> the account needs sign-in.
        report.wait(f"TRAYAPP_RUN_FINISHED {charm_id} auth_required", 60)
        report.wait("TRAYAPP_ICON_STATE attention", 30)
        report.wait("TRAYAPP_NOTIFIED desktop sign_in Sign in again to Example Notes (work)", 30)
        calls = wait_for(lambda: desktop.notify_calls() or None, 30, "the Notify call on D-Bus")
        assert isinstance(calls, list)
        assert "Example Notes refused the token of work." in calls[-1]
        assert "Enter new token" in calls[-1]
        assert "trayapp" not in calls[-1].split("Sign in again", 1)[1].split("Enter new", 1)[0]
        OUT.mkdir(parents=True, exist_ok=True)
        desktop.screenshot(OUT / "token-needs-sign-in-notice.png")

        # The notification's button (as a user clicks it in dunst) opens the token dialog.
        mark = report.mark()
        subprocess.run(["dunstctl", "action", "0"], env=desktop.env(), check=True)
        report.wait(f"TRAYAPP_COMMAND signin:{account_id}", 30, after=mark)
        report.wait("TRAYAPP_WINDOW_SHOWN token_dialog", 30, after=mark)
        where = widgets(report, "token_dialog", mark)
        x, y, w, h = where["token_value"]
        desktop.click(x + w // 2, y + h // 2, 1)
        desktop.xdotool("type", "--delay", "20", "right-token-e2e")
        desktop.screenshot(OUT / "token-dialog.png")
        desktop.xdotool("key", "Return")
        report.wait(f"TRAYAPP_TOKEN_SAVED {account_id}", 30, after=mark)
        # The account works again: its parked charm runs at once and imports.
        report.wait(f"TRAYAPP_RUN_FINISHED {charm_id} ok", 60, after=mark)
        report.wait("TRAYAPP_NOTIFIED desktop recovered", 30, after=mark)
        report.wait("TRAYAPP_ICON_STATE ok", 30, after=mark)
        assert json_server.requests[-1][3] == "Bearer right-token-e2e"
    finally:
        if app.poll() is None:
            app.terminate()
            app.wait(timeout=30)
    listed = json.loads(cli("", "accounts", "list", "--json").stdout)
    assert listed["accounts"][0]["state"] == "signed_in"
    everything = b"".join(
        p.read_bytes() for p in profile.rglob("*") if p.is_file() and p.name != "secrets.json"
    )
    assert b"right-token-e2e" not in everything and b"wrong-token-e2e" not in everything
