"""A plugin that blocks the tray's event loop, on a real (virtual) desktop.

The plugin (tests/plugins/hangplugin) is built into a wheel and installed with ``trayapp plugins
install``; its charms call ``time.sleep(600)`` and spin in a busy loop on the event loop, beside
a feed charm that behaves. The tray runs on Xvfb with trayer and dunst (tests/e2e/desktop.py).
Each stuck run is interrupted at its 1 s timeout (plus the watchdog's grace), far before its
600 s sleep could end: the tray then answers its menu and the CLI over IPC, ``status --json``
shows the ``froze`` outcome, the third freeze in a row parks the charm, and ``charms resume``
brings it back. Waits are on report lines and command answers, never on fixed sleeps.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.desktop import Desktop, ReportLog, missing_tools
from tests.plugins.hang_wheel import build_hang_wheel

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(400),
    pytest.mark.skipif(
        bool(missing_tools()), reason=f"desktop tools missing: {', '.join(missing_tools())}"
    ),
]

REPO = Path(__file__).resolve().parents[2]
FEEDS = REPO / "tests" / "data" / "feeds"
OUT = REPO / "out" / "e2e"
WAIT = 90.0


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def feed_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(FEEDS)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/rss2-guid.xml"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_plugin_that_blocks_the_tray_is_stopped_and_the_tray_answers(
    tmp_path: Path, feed_url: str
) -> None:
    work = tmp_path
    desktop = Desktop(work)
    profile = work / "profile"
    report = ReportLog(work / "report.log")
    release = work / "release-sleepy"
    app: subprocess.Popen[bytes] | None = None

    def cli(*args: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
            capture_output=True,
            text=True,
            env=desktop.env(PYTHONPATH=str(REPO), PIP_NO_INDEX="1"),
            cwd=str(REPO),
            timeout=timeout,
        )

    def status() -> dict[str, dict[str, Any]]:
        done = cli("status", "--json")
        assert done.returncode == 0, done.stderr
        return {c["id"]: c["status"] for c in json.loads(done.stdout)["charms"]}

    try:
        desktop.start()
        wheel = build_hang_wheel(work)
        done = cli("plugins", "install", str(wheel))
        assert done.returncode == 0, done.stderr
        assert "hang-sleep" in done.stdout and "hang-busy" in done.stdout
        for args in (
            ("hang-sleep", "--name", "Sleepy", "--set", f"release_file={release}"),
            ("hang-busy", "--name", "Busy"),
            ("feed-importer", "--name", "News", "--set", f"url={feed_url}"),
        ):
            done = cli("charms", "add", *args)
            assert done.returncode == 0, done.stderr

        app = desktop.spawn(
            [sys.executable, "-m", "trayapp", "--profile", str(profile)],
            log="app",
            env=desktop.env(
                QT_QPA_PLATFORM="xcb",
                TRAYAPP_TEST_REPORT=str(report.path),
                TRAYAPP_NOTIFY_GRACE="2",
                PYTHONPATH=str(REPO),
                PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
            ),
            cwd=str(REPO),
        )
        geo = report.wait("TRAYAPP_TRAY_GEOMETRY", WAIT)[0].split()[1:]
        x, y, w, h = (int(v) for v in geo)
        icon = (x + w // 2, y + h // 2)
        # The first pass at start: both blocking charms are interrupted (each would otherwise
        # hold the tray for 600 s or for ever); the feed charm syncs.
        report.wait("TRAYAPP_RUN_FINISHED sleepy froze", WAIT)
        report.wait("TRAYAPP_RUN_FINISHED busy froze", WAIT)
        report.wait("TRAYAPP_RUN_FINISHED news ok", WAIT)
        assert app.poll() is None  # the rescue signal did not end the app

        # The tray answers: its menu opens on a right click, the CLI gets answers over IPC.
        mark = report.mark()
        desktop.click(*icon, 3)
        report.wait("TRAYAPP_MENU_SHOWN", WAIT, after=mark)
        desktop.screenshot(OUT / "hang-menu-froze.png")
        desktop.xdotool("key", "Escape")
        report.wait("TRAYAPP_MENU_HIDDEN", WAIT, after=mark)

        charms = status()
        sleepy = charms["sleepy"]
        assert sleepy["last_outcome"] == "froze" and sleepy["freezes"] == 1
        assert sleepy["last_error"].startswith("stopped: it blocked Pattern Sync for ")
        assert sleepy["last_error"].endswith("; the plugin must not call blocking code")
        assert sleepy["state"] == "backing_off" and not sleepy["parked"]
        assert charms["busy"]["last_outcome"] == "froze"
        assert charms["news"]["last_outcome"] == "ok" and charms["news"]["healthy"]

        # Two more freezes in a row (syncs asked over IPC): parked until resumed.
        for _ in range(2):
            done = cli("sync", "sleepy", "--json")
            assert done.returncode != 0
            (result,) = json.loads(done.stdout)["results"]
            assert result["outcome"] == "froze"
        sleepy = status()["sleepy"]
        assert sleepy["state"] == "parked" and sleepy["parked_frozen"]
        assert sleepy["freezes"] == 3 and sleepy["next_due_at"] is None
        assert "will not try again until you resume it" in sleepy["last_error"]
        report.wait("TRAYAPP_NOTIFIED desktop failing Sleepy stopped syncing", WAIT)
        report.wait("TRAYAPP_ICON_STATE attention", WAIT)
        mark = report.mark()
        desktop.click(*icon, 3)
        report.wait("TRAYAPP_MENU_SHOWN", WAIT, after=mark)
        desktop.screenshot(OUT / "hang-menu-parked.png")
        desktop.xdotool("key", "Escape")
        report.wait("TRAYAPP_MENU_HIDDEN", WAIT, after=mark)

        # The plugin is fixed (here: told to stop blocking) and the user resumes the charm.
        release.touch()
        mark = report.mark()
        done = cli("charms", "resume", "sleepy")
        assert done.returncode == 0, done.stderr
        report.wait("TRAYAPP_RUN_FINISHED sleepy ok", WAIT, after=mark)
        sleepy = status()["sleepy"]
        assert sleepy["healthy"] and sleepy["freezes"] == 0 and not sleepy["parked"]

        # The app's log file has the plugin's stack for each freeze.
        log = (profile / "logs" / "trayapp.log").read_text(encoding="utf-8")
        assert "charm sleepy blocked the app" in log and "hang_plugin.py" in log
        assert "time.sleep(600)" in log

        app.terminate()
        assert app.wait(timeout=60) == 0
    finally:
        if app is not None and app.poll() is None:
            app.kill()
        desktop.stop()
        log_file = work / "app.log"
        if log_file.exists():
            sys.stderr.write(log_file.read_text(errors="replace")[-4000:])
