"""The tray's start-up imports: a pattern's stack loads only when a charm of that kind needs it.

Issue 17: the tray imported ~750 modules at start, among them the Calendar stack (icalendar,
dateutil.rrule), feedparser, google-auth, cryptography (through keyring's Secret Service
backend) before any charm of those kinds ran. This starts the real tray (offscreen, in a child
process, tests/perf/tray_modules_child.py) on a profile with feed charms whose server does not
answer (they run and fail before anything is parsed) and counts what it imported once the
engine is ready. A count, never a timing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.desktop import Desktop, missing_tools
from trayapp.builtins import default_registry
from trayapp.core.engine import Engine

REPO = Path(__file__).resolve().parents[2]

# Loaded only when used: a Calendar charm expands a series or exports ICS (icalendar,
# dateutil), a feed is parsed (feedparser), a Google token is refreshed (google.auth), a secret
# is read from the keyring (keyring's backends -> secretstorage -> cryptography, jeepney), demo
# mode or a test serves the emulator (starlette, uvicorn); windows open when asked (offscreen
# there is no tray, so the status window and its module are legitimately loaded).
NOT_AT_START = (
    "icalendar",
    "dateutil",
    "feedparser",
    "google.auth",
    "google.oauth2",
    "cryptography",
    "secretstorage",
    "starlette",
    "uvicorn",
    "trayapp.emulator",
    "trayapp.ui.data_window",
    "trayapp.ui.about",
    # httpx's command-line client (trayapp/__init__.py keeps httpx from importing it).
    "click",
    "pygments",
    # The built-in patterns are registered by descriptor (trayapp/builtins.py): a pattern's
    # module and its Google clients load when a charm of it runs; sign-in and token refresh
    # when an account signs in or a charm of one runs.
    "trayapp.patterns.gmail",
    "trayapp.patterns.gcalendar",
    "trayapp.patterns.exec_importer",
    "trayapp.api.google",
    "trayapp.google.client",
    "trayapp.google.gmail",
    "trayapp.google.calendar",
    "trayapp.google.batch",
    "trayapp.auth.signin",
    "trayapp.auth.tokens",
    "trayapp.auth.service_tokens",
    "webbrowser",
)


# Not before the early icon: the engine, its store and HTTP stack, pydantic, the package
# metadata (trayapp.__version__ is read when first used), the demo module (its throwaway
# profile comes from trayapp.ui.demo_profile). Issue 17.2: nor asyncio and qasync (the loop is
# made after the icon; the single-instance check is trayapp.ipc_client, blocking sockets), the
# IPC server, the translations, and trayapp.ui.icons (the start-up icon is PNGs drawn ahead of
# time, trayapp.ui.early_icon: drawing it built PySide's enums of the whole Qt namespace).
NOT_BEFORE_ICON = (
    "importlib.metadata",
    "email",
    "pydantic",
    "httpx",
    "sqlite3",
    "trayapp.core.engine",
    "trayapp.ui.tray",
    "trayapp.ui.demo",
    "asyncio",
    "qasync",
    "concurrent.futures",
    "ssl",
    "json",
    "trayapp.ipc",
    "trayapp.host",
    "trayapp.ui.i18n",
    "trayapp.ui.icons",
    "trayapp.ui.qtloop",
    # the ``trayapp`` command reaches the tray without its full parser (trayapp/cli/tray.py)
    "trayapp.cli.parser",
    "trayapp.cli.run",
    "trayapp.core.aio",
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_tray(
    tmp_path: Path,
    profile: Path,
    *args: str,
    env: dict[str, str] | None = None,
    route: str = "ui",
) -> tuple[list[str], list[str]]:
    """Start the real tray in a child; its modules once ready, and its report lines."""
    report, out = tmp_path / "report.log", tmp_path / "modules.txt"
    env = {
        **(env if env is not None else os.environ),
        "QT_QPA_PLATFORM": "offscreen" if env is None else "xcb",
        "PYTHONPATH": str(REPO),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "TRAYAPP_SECRET_STORE": "auto",
        "TRAY_CHILD_ROUTE": route,
    }
    env.pop("PYTHON_KEYRING_BACKEND", None)
    child = REPO / "tests" / "perf" / "tray_modules_child.py"
    proc = subprocess.run(
        [sys.executable, str(child), str(profile), str(report), str(out), *args],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert out.exists(), f"the tray never reported ready: {proc.stderr[-2000:]}"
    return out.read_text().split(), report.read_text().splitlines()


# "ui": python -m trayapp.ui; "cli": the ``trayapp`` command (the desktop and autostart entries).
@pytest.mark.parametrize("route", ["ui", "cli"])
def test_tray_start_leaves_unused_stacks_unimported(tmp_path: Path, route: str) -> None:
    profile = tmp_path / "profile"
    engine = Engine(profile, patterns=default_registry())
    port = _closed_port()
    for n in range(3):
        engine.add_charm("feed-importer", {"url": f"http://127.0.0.1:{port}/f{n}.xml"})
    engine.close()
    modules, _report = _run_tray(tmp_path, profile, route=route)
    out = tmp_path / "modules.txt"
    assert "trayapp.core.engine" in modules and "PySide6.QtWidgets" in modules  # it did start
    loaded = sorted(
        m for m in modules if any(m == p or m.startswith(p + ".") for p in NOT_AT_START)
    )
    assert loaded == [], f"imported at tray start although unused: {loaded}"
    # PySide6's import hook read every later module's source through linecache, which kept it
    # (~390 files, ~15 MiB in the tray; trayapp/ui/pyside_sources.py). A traceback may still
    # cache the few files it shows.
    cached = out.with_suffix(".linecache").read_text().split()
    assert len(cached) <= 10, f"{len(cached)} module sources held in memory: {cached[:20]}"
    # Before the early icon (the engine's side starts right after it): nothing that can wait.
    early = out.with_suffix(".before_run").read_text().split()
    waited = sorted(
        m for m in early if any(m == p or m.startswith(p + ".") for p in NOT_BEFORE_ICON)
    )
    assert waited == [], f"imported before the icon although it can wait: {waited}"
    # Account and OAuth-client models are built when the first account or client is read.
    built = out.with_suffix(".models").read_text().split()
    assert "trayapp.patterns.feed.FeedSettings" in built  # the charms' own settings are
    unused = sorted(m for m in built if m.startswith(("trayapp.auth.",)))
    assert unused == [], f"models built with no account or client to read: {unused}"


def _before_icon(tmp_path: Path) -> list[str]:
    early = (tmp_path / "modules.before_run").read_text().split()
    return sorted(m for m in early if any(m == p or m.startswith(p + ".") for p in NOT_BEFORE_ICON))


@pytest.mark.e2e
@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {', '.join(missing_tools())}")
@pytest.mark.parametrize("route", ["ui", "cli"])
def test_on_a_desktop_the_icon_shows_before_the_engine_side_loads(
    tmp_path: Path, route: str
) -> None:
    """With a real tray (Xvfb + trayer), the start-up icon is shown from the shipped PNGs and
    nothing of NOT_BEFORE_ICON is imported before it (offscreen there is no icon to show)."""
    profile = tmp_path / "profile"
    engine = Engine(profile, patterns=default_registry())
    engine.add_charm("feed-importer", {"url": f"http://127.0.0.1:{_closed_port()}/f.xml"})
    engine.close()
    desk = Desktop(tmp_path / "desk")
    desk.workdir.mkdir()
    try:
        desk.start()
        _modules, report = _run_tray(tmp_path, profile, env=desk.env(TRAYAPP_TRAY_WAIT="10"))
    finally:
        desk.stop()
    assert "TRAYAPP_ICON_SHOWN" in report and "TRAYAPP_READY" in report, report
    assert report.index("TRAYAPP_ICON_SHOWN") < report.index("TRAYAPP_READY")
    early = (tmp_path / "modules.before_run").read_text().split()
    assert "trayapp.ui.early_icon" in early and "PySide6.QtWidgets" in early  # the icon path ran
    waited = _before_icon(tmp_path)
    assert waited == [], f"imported before the icon although it can wait: {waited}"


def test_demo_tray_runs_the_google_emulator_in_its_own_process(tmp_path: Path) -> None:
    """``--demo``: Google (the emulator and its 3,000 messages) lives in a child process.

    The tray process never imports the emulator's server stack; the child serves the demo
    account while the tray runs and is gone once the tray has stopped.
    """
    modules, report = _run_tray(tmp_path, tmp_path / "profile", "--demo")
    assert "trayapp.core.engine" in modules
    server_stack = ("starlette", "uvicorn", "trayapp.emulator")
    loaded = sorted(
        m for m in modules if any(m == p or m.startswith(p + ".") for p in server_stack)
    )
    assert loaded == [], f"the tray process imported the emulator: {loaded[:10]}"
    # The demo account's tokens are fresh: google-auth (and cryptography, ~60 modules) load
    # with the first refresh, not to use a stored token that is still valid; the script
    # importer has no demo charm.
    assert "trayapp.patterns.gmail" in modules  # the Google half did start
    unused = ("google.auth", "google.oauth2", "cryptography", "trayapp.patterns.exec_importer")
    loaded = sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in unused))
    assert loaded == [], f"the demo tray imported {loaded[:10]}"
    urls = [line.split()[1] for line in report if line.startswith("TRAYAPP_DEMO_EMULATOR ")]
    assert len(urls) == 1, report
    host, port = urls[0].removeprefix("http://").split(":")
    with socket.socket() as s:  # the tray has exited (SIGTERM): its emulator must be gone too
        assert s.connect_ex((host, int(port))) != 0, "the demo emulator outlived the tray"
