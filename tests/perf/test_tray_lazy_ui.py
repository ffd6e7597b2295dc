"""The tray on a real desktop loads no window, dialog or D-Bus stack it has not used yet.

Issue 17 (memory): the real tray (tests/perf/tray_modules_child.py) under Xvfb with a tray host
(trayer), a notification daemon (dunst) and a private session bus (tests/e2e/desktop.py), on a
profile with two healthy feed charms served from 127.0.0.1. Once the engine is ready and the
first pass has run, it counts what was imported (counts, never timings):

* windows and dialogs load when opened: Settings, Accounts, About, the data window, the Connect
  Google wizard, the welcome window, the token dialog, the status/Activity window;
* desktop-notifier and dbus-fast (~50 modules, ~4 MiB) load at the first notification or the
  first offline charm, and here there is neither (resume-from-sleep uses Qt's own D-Bus);
* the app's QApplication is ``TrayApplication`` (no application-wide event filter), and a
  session end's ``QApplication.quit()`` still ends the app through the orderly shutdown.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.desktop import Desktop, missing_tools
from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.core.outcomes import OutcomeKind

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(bool(missing_tools()), reason=f"needs {', '.join(missing_tools())}"),
]

# Loaded when the user opens them (or, for the D-Bus stack, when first needed).
NOT_AT_START = (
    "trayapp.ui.settings",
    "trayapp.ui.windows",
    "trayapp.ui.accounts_window",
    "trayapp.ui.about",
    "trayapp.ui.data_window",
    "trayapp.ui.data_reader",
    "trayapp.ui.connect_wizard",
    "trayapp.ui.welcome",
    "trayapp.ui.token_dialog",
    "trayapp.ui.schema_form",
    "trayapp.ui.keyring_choice",
    "trayapp.ui.demo",
    "desktop_notifier",
    "dbus_fast",
)

FEED = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>News</title><link>http://example.org/</link>
<description>d</description>
<item><title>One</title><link>http://example.org/1</link><guid>1</guid></item>
</channel></rss>
"""


@pytest.fixture
def feed_server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "feed.xml").write_text(FEED)
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *_a: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
    server.shutdown()
    server.server_close()


def test_tray_start_on_a_desktop_leaves_windows_and_dbus_unloaded(
    tmp_path: Path, feed_server: str
) -> None:
    profile = tmp_path / "profile"
    engine = Engine(profile, patterns=default_registry())
    charms = [engine.add_charm("feed-importer", {"url": f"{feed_server}?n={n}"}).id for n in (1, 2)]
    engine.close()
    work = tmp_path / "desk"
    work.mkdir()
    desk = Desktop(work)
    report, out = tmp_path / "report.log", tmp_path / "modules.txt"
    try:
        desk.start()
        env = desk.env(
            QT_QPA_PLATFORM="xcb",
            PYTHONPATH=str(REPO),
            PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
            TRAY_END="quit",  # end it as a session end does: QApplication.quit()
            SETTLE="2",  # past the first pass of both charms
        )
        child = REPO / "tests" / "perf" / "tray_modules_child.py"
        proc = desk.spawn(
            [sys.executable, str(child), str(profile), str(report), str(out)], log="tray", env=env
        )
        rc = proc.wait(180)
    finally:
        desk.stop()
    log = (work / "tray.log").read_text(errors="replace")[-3000:]
    assert out.exists(), f"the tray never reported ready: {log}"
    lines = report.read_text().splitlines()
    assert "TRAYAPP_ICON_SHOWN" in lines and "TRAYAPP_STATUS_WINDOW" not in lines  # a real tray
    modules = out.read_text().split()
    loaded = sorted(
        m for m in modules if any(m == p or m.startswith(p + ".") for p in NOT_AT_START)
    )
    assert loaded == [], f"imported at start although not used yet: {loaded}"
    assert out.with_suffix(".app").read_text().split() == ["TrayApplication"]
    # The quit went through the orderly shutdown: exit code 0, the first pass recorded, no
    # charm left "running", the control socket removed.
    assert rc == 0, log
    engine = Engine(profile, patterns=default_registry())
    try:
        statuses = engine.statuses()
        for charm in charms:
            assert statuses[charm].last_outcome is OutcomeKind.OK, statuses[charm]
            assert statuses[charm].state.value != "running"
    finally:
        engine.close()
    assert not list((work / "run").rglob("*.sock"))
