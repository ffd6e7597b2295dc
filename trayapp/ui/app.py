"""The tray's entry point: what runs before its icon shows, and nothing that can wait.

:func:`main` parses the arguments, picks the profile folder, asks an instance already serving
that profile to show itself (single instance), makes the ``QApplication`` and shows the
start-up icon ("syncing", tooltip "starting…"); then :func:`trayapp.ui.runner.run` takes over:
asyncio and qasync, translations, the engine's side, the tray controller that adopts the icon,
and the one shutdown path. Issue 17: the icon within 1.3x the time of a bare PySide6 + qasync
tray; tests/perf/test_start_imports.py counts what is imported before the icon.

Profile problems found before the icon (the folder is a file, cannot be made, is not writable)
print one line and exit 2 with no icon; an instance already serving the profile shows its menu
and this start exits 0 with no icon. Problems only opening the profile can find (a one-shot
command holds it, a damaged store, an unsafe socket folder) come after the icon, from the
runner, as one line and exit 1, as in session 3.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trayapp import DISPLAY_NAME
from trayapp.ipc_client import try_send

TRAY_WAIT_ENV = "TRAYAPP_TRAY_WAIT"  # seconds to wait for a panel at login (default 10)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="trayapp", description=f"{DISPLAY_NAME} tray")
    p.add_argument("--profile", default=None, help="profile directory")
    p.add_argument("--demo", action="store_true", help="run with demo charms")
    p.add_argument(
        "--no-tray", action="store_true", help="show the status window instead of a tray icon"
    )
    return p.parse_args(list(argv) if argv is not None else None)


def _namespace(args: Any) -> argparse.Namespace:
    if args is None or isinstance(args, (list, tuple)):
        return parse_args(args)
    return argparse.Namespace(
        profile=getattr(args, "profile", None),
        demo=bool(getattr(args, "demo", False)),
        no_tray=bool(getattr(args, "no_tray", False)),
    )


def _profile_dir(ns: argparse.Namespace) -> Path:
    if ns.demo and not ns.profile:
        from trayapp.ui.demo_profile import make_demo_profile

        # A demo must never touch the user's real profile.
        return make_demo_profile()
    from trayapp.core.profile import Profile

    # Made and checked now (a bad folder is said before any icon); its modes are tightened by
    # the runner after the icon (a walk over every file of the profile, plugins included).
    return Profile.resolve(ns.profile, private=False).path


def main(args: Any = None) -> int:
    """Entry point used by ``trayapp`` with no subcommand (``args``: the CLI's namespace)."""
    ns = _namespace(args)
    try:
        profile_dir = _profile_dir(ns)
    except Exception as exc:  # ProfileError is user-facing: one line, no traceback
        print(f"trayapp: {exc}", file=sys.stderr)
        return 2
    # Single instance: a running app for this profile shows its menu instead.
    reply = try_send(profile_dir, {"cmd": "activate"}, timeout=3.0)
    if reply is not None:
        print(f"{DISPLAY_NAME} is already running for this profile; showing it.", file=sys.stderr)
        return 0

    os.environ.setdefault("QT_QPA_PLATFORMTHEME", "")
    # The first import of Qt, so that PySide6's import hook never caches the sources of the
    # modules imported after it (see the module).
    import trayapp.ui.pyside_sources  # noqa: F401

    # isort: split
    from PySide6.QtWidgets import QApplication, QSystemTrayIcon

    from trayapp.ui.qtapp import TrayApplication

    app = QApplication.instance() or TrayApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName(DISPLAY_NAME)
    # Wayland compositors and task bars match the app to its menu entry and icon by this name.
    app.setDesktopFileName("trayapp")
    app.setQuitOnLastWindowClosed(False)
    early_tray = None
    if _wait_for_tray(app, QSystemTrayIcon, ns.no_tray):
        # Show the icon before importing and opening the engine (about a second on a slow
        # machine): at login the user sees the app at once, in its "syncing" state.
        from trayapp.ui.early_icon import starting_icon
        from trayapp.ui.report import TestReporter

        early_tray = QSystemTrayIcon(starting_icon())
        early_tray.setToolTip(f"{DISPLAY_NAME}: starting…")
        early_tray.show()
        TestReporter(os.environ.get("TRAYAPP_TEST_REPORT"))("TRAYAPP_ICON_SHOWN")
    from trayapp.ui.runner import run  # after the icon: asyncio, qasync, the engine's side

    return run(app, ns, profile_dir, early_tray)


def _wait_for_tray(app: Any, tray_cls: Any, no_tray: bool) -> bool:
    """Whether there is a tray to show the icon in (``no_tray``: never).

    At login the app may start before the panel: give the tray a few seconds to appear. Each
    ``isSystemTrayAvailable()`` is a D-Bus round trip (is a StatusNotifierWatcher there?) and
    an X one, so a tray that is there is asked once.
    """
    if no_tray:
        return False
    if tray_cls.isSystemTrayAvailable():
        return True
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        return False
    deadline = time.monotonic() + float(os.environ.get(TRAY_WAIT_ENV, "10"))
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.25)
        if tray_cls.isSystemTrayAvailable():
            return True
    return False
