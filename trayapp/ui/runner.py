"""The tray after its start-up icon: the asyncio loop, the engine's side, the one shutdown path.

:func:`run` is called by :func:`trayapp.ui.app.main` once the icon shows (or right away without
a tray): everything here can wait for the icon (asyncio, qasync, translations, the engine's
modules), so none of it is imported before (issue 17).

Shutdown is one path whatever starts it (Quit, SIGTERM/SIGINT, the session ending): a quit
request sets an asyncio event; the main coroutine then stops the tray, the IPC server and the
engine (runs in progress are recorded as cancelled) and returns 0. ``aboutToQuit`` feeds the
same event, and if Qt's loop has already ended by then the shutdown coroutine is finished on a
fresh pass of the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject

from trayapp import DISPLAY_NAME
from trayapp.core.errors import TrayappError
from trayapp.ipc_client import try_send
from trayapp.ui.qtapp import TrayApplication, refused_quit

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication, QSystemTrayIcon

    from trayapp.core.engine import Engine
    from trayapp.host import AppHost

log = logging.getLogger(__name__)


def run(
    app: QApplication, ns: argparse.Namespace, profile_dir: Path, early_tray: QSystemTrayIcon | None
) -> int:
    """Run the tray on ``app`` until it quits; returns the exit code.

    ``early_tray``: the start-up icon already shown (None without a tray or with --no-tray);
    the tray controller adopts it.
    """
    from trayapp.ui.i18n import install as install_translations
    from trayapp.ui.qtloop import QtLoop

    install_translations()  # a .qm for the user's locale, when one is installed
    loop = QtLoop(app)  # qasync, with cancelled timers that stop (no idle wake-ups)
    asyncio.set_event_loop(loop)
    runner = AppRunner(ns, profile_dir)
    runner.early_tray = early_tray
    app.aboutToQuit.connect(runner.request_quit)
    # Set before the loop runs (quit requests arrive while it runs), after the icon: the first
    # quit check makes PySide build its Python enum of QEvent types (~180 members, tens of
    # milliseconds), which the icon need not wait for.
    if isinstance(app, TrayApplication):
        app.on_quit = runner.request_quit
    else:  # a QApplication made by someone else (tests): filter all of its events instead
        guard = QuitGuard(runner.request_quit)
        app.installEventFilter(guard)
    from trayapp.host import AlreadyServed  # the engine's side loads from here

    try:
        with loop:
            try:
                rc: int = loop.run_until_complete(runner.run())
                return rc
            except RuntimeError as exc:
                if "stopped before Future completed" not in str(exc):
                    raise
                # Qt's loop ended underneath us (session end): finish the shutdown properly.
                rc = loop.run_until_complete(runner.shutdown())
                return rc
    except AlreadyServed as busy:
        # It started between our activate request and now: ask it to show itself.
        if try_send(profile_dir, {"cmd": "activate"}, timeout=10.0) is not None:
            print(
                f"{DISPLAY_NAME} is already running for this profile; showing it.", file=sys.stderr
            )
            return 0
        print(f"trayapp: {' '.join(str(busy).split())}", file=sys.stderr)
        return 1
    except TrayappError as exc:
        # The profile is held by a one-shot command, or the control socket cannot be made
        # safely: one line, no tray.
        print(f"trayapp: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


class QuitGuard(QObject):
    """:class:`~trayapp.ui.qtapp.TrayApplication`'s quit handling for a QApplication made
    elsewhere (tests): an application-wide event filter, which sees every event of the app
    (costly: see trayapp/ui/qtapp.py), hence only where the application object is not ours."""

    def __init__(self, on_quit: Callable[[], None]) -> None:
        super().__init__()
        self._on_quit = on_quit

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        return refused_quit(event, self._on_quit)


class UpgradeShown:
    """Shows the store upgrade's progress while the engine waits for it (issue 17.5): the start-up
    icon's tooltip and a one-line menu say "Upgrading your data (40%)…", so a long upgrade of a
    large profile never looks like an app that hangs. Without an icon (--no-tray, no panel) the
    progress goes to stderr as for the CLI. The tray controller replaces the menu once it
    adopts the icon."""

    def __init__(self, tray: Any, report: Callable[[str], None]) -> None:
        self.tray = tray
        self.report = report
        self.menu: Any = None
        self.line: Any = None
        self.stderr: Callable[[float], None] | None = None

    @staticmethod
    def text(done: float) -> str:
        return f"Upgrading your data ({int(done * 100)}%)…"

    def __call__(self, done: float) -> None:
        self.report(f"TRAYAPP_UPGRADE {int(done * 100)}")
        if self.tray is None:
            if self.stderr is None:
                from trayapp.host import StderrUpgradeProgress

                self.stderr = StderrUpgradeProgress()
            self.stderr(done)
            return
        if self.menu is None:
            from PySide6.QtWidgets import QMenu

            self.menu = QMenu()
            self.line = self.menu.addAction(self.text(done))
            self.line.setEnabled(False)
            self.tray.setContextMenu(self.menu)
        self.line.setText(self.text(done))
        self.tray.setToolTip(f"{DISPLAY_NAME}: upgrading your data ({int(done * 100)}%)…")


class AppRunner:
    """The tray on top of :class:`trayapp.host.AppHost` (engine, control socket, accounts)."""

    def __init__(self, ns: argparse.Namespace, profile_dir: Path) -> None:
        self.ns = ns
        self.profile_dir = profile_dir
        self._quit = asyncio.Event()
        self._stopped = False
        # Made by run(), after the early icon: the host's modules are the engine's side.
        self.host: AppHost | None = None
        self.engine: Engine | None = None
        self.controller: Any = None
        self.demo: Any = None
        self.demo_google: Any = None
        self._demo_google_task: asyncio.Task[None] | None = None
        self.early_tray: Any = None  # the icon shown while the engine starts; the tray adopts it
        self._signal_socks: tuple[socket.socket, socket.socket] | None = None

    def _demo_vault(self) -> Any:
        if not self.ns.demo:
            return None
        # Demo tokens belong to a throwaway profile: never put them in the user's keychain.
        from trayapp.auth.secrets import SecretVault

        return SecretVault(self.profile_dir, mode="file")

    def request_quit(self) -> None:
        self._quit.set()

    async def run(self) -> int:
        from trayapp.core.profile import Profile
        from trayapp.host import AppHost
        from trayapp.ui.accounts import AuthAccounts
        from trayapp.ui.prefs import UiPrefs
        from trayapp.ui.tray import TestReporter, TrayController

        report = TestReporter(os.environ.get("TRAYAPP_TEST_REPORT"))
        profile = Profile.resolve(self.profile_dir)
        self.host = host = AppHost(profile, role="tray", vault=self._demo_vault())
        host.on_upgrade = UpgradeShown(self.early_tray, report)
        if self.ns.demo:
            from trayapp.ui.demo import spawn_demo_emulator

            # Its own process, started first: it seeds its mailbox while the engine opens;
            # shutdown() stops it whatever happens from here on.
            self.demo_google = spawn_demo_emulator(self.profile_dir)
        try:
            self.engine = engine = await host.open()
        except BaseException:
            if self.demo_google is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.demo_google.stop)
            raise
        manager = host.accounts
        accounts = AuthAccounts(manager) if manager is not None else None
        try:
            if self.ns.demo:
                from trayapp.ui.demo import DemoFeedServer, seed_demo_charms

                self.demo = DemoFeedServer(
                    on_request=lambda path: report(f"TRAYAPP_DEMO_REQUEST GET {path}")
                )
                base = await self.demo.start()
                report(f"TRAYAPP_DEMO_FEEDS {base}")
                seed_demo_charms(engine, base)
            prefs = UiPrefs.load(self.profile_dir)
            from datetime import timedelta

            from trayapp.ui.notify_policy import NotificationPolicy

            grace = float(os.environ.get("TRAYAPP_NOTIFY_GRACE", prefs.grace_seconds))
            policy = NotificationPolicy(
                grace=timedelta(seconds=grace),
                new_items_summary=prefs.notify_new_items,
                errors_enabled=prefs.notify_errors,
            )
            self.controller = TrayController(
                engine,
                accounts,
                on_quit=self.request_quit,
                policy=policy,
                force_status_window=self.ns.no_tray,
                watch_system=True,
                report=report,
                tray=self.early_tray,
            )
            host.on("activate", lambda _req: self._activate())
            # Icon first, then the engine: the user sees the app at once, syncing follows.
            await self.controller.start()
            await host.start()
            if self.demo_google is not None:
                # The demo's Gmail and Calendar charms join once its emulator answers: the
                # tray is ready (icon, menu, feed charms syncing) without waiting for another
                # Python to start and seed 3,000 messages.
                self._demo_google_task = asyncio.create_task(
                    self._connect_demo_google(engine, manager, report)
                )
            self.controller.maybe_first_run()  # the welcome window, on a first start only
            self._install_signal_handlers()
            report(f"TRAYAPP_PROFILE {self.profile_dir}")
            await self._quit.wait()
        finally:
            await self.shutdown()
        return 0

    async def _connect_demo_google(
        self, engine: Engine, manager: Any, report: Callable[[str], None]
    ) -> None:
        from trayapp.ui.demo import start_demo_google

        google = self.demo_google
        assert google is not None
        try:
            if await start_demo_google(engine, manager, google, self.profile_dir):
                report(f"TRAYAPP_DEMO_EMULATOR {google.base_url}")
        except Exception as exc:  # the feed half of the demo goes on without it
            log.warning("the demo's Google account could not be set up: %s", exc)

    def _activate(self) -> dict[str, Any]:
        if self.controller is not None:
            self.controller.activate()
        return {"shown": True}

    async def shutdown(self) -> int:
        if self._stopped:
            return 0
        self._stopped = True
        task = self._demo_google_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.controller is not None:
            with contextlib.suppress(Exception):
                await self.controller.stop()
        if self.host is not None:
            await self.host.close()
        if self.demo is not None:
            await self.demo.stop()
        if self.demo_google is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.demo_google.stop)
        self._remove_signal_handlers()
        if self.ns.demo:
            from trayapp.ui.demo_profile import remove_demo_profile

            remove_demo_profile(self.profile_dir)  # only a profile this process made for it
        return 0

    def _install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT end the app cleanly even while Qt sits in C code.

        Python runs signal handlers only between bytecodes, which may be never while Qt waits;
        ``set_wakeup_fd`` makes the signal write a byte to a socket the loop watches
        (a QSocketNotifier under qasync), so no polling timer is needed.
        """
        if sys.platform == "win32":
            return
        rsock, wsock = socket.socketpair()
        rsock.setblocking(False)
        wsock.setblocking(False)
        self._signal_socks = (rsock, wsock)
        signal.set_wakeup_fd(wsock.fileno())
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_a: None)

        quit_on = {int(signal.SIGTERM), int(signal.SIGINT)}

        def readable() -> None:
            # The wake-up fd gets one byte per signal, the signal's number, for every signal
            # with a Python handler: the watchdog's rescue signal (core/watchdog.py) too, which
            # must not quit the app.
            data = b""
            with contextlib.suppress(OSError):
                data = rsock.recv(64)
            if quit_on.intersection(data):
                self.request_quit()

        asyncio.get_running_loop().add_reader(rsock.fileno(), readable)

    def _remove_signal_handlers(self) -> None:
        if self._signal_socks is None:
            return
        rsock, wsock = self._signal_socks
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(rsock.fileno())
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        rsock.close()
        wsock.close()
        self._signal_socks = None
