"""The app host: the one place that assembles a running app, for the tray and ``run --headless``.

Both ways of running the engine for a profile need the same set, built and torn down in the same
order: the profile lock (one engine per profile), the Engine, the control socket (so other
``trayapp`` processes talk to this engine instead of opening a second one), the Google accounts
wiring and the engine commands the CLI sends. :class:`AppHost` builds it once; the tray
(``trayapp.ui.app``) adds its window and icon on top, the headless runner only waits for a
signal. Qt-free.

Start-up order: lock (then the log file, ``<profile>/logs/trayapp.log``, see
:mod:`trayapp.core.logfile`), engine, accounts, control socket, engine commands. If any step fails,
everything already built is closed again and the error propagates (a
:class:`~trayapp.core.errors.TrayappError` is one clear line for the user). Shutdown order:
network watch, control socket (no new requests), engine (runs in progress end as
``cancelled`` before their Google clients close), accounts, store, log file, lock.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trayapp import DISPLAY_NAME, ipc
from trayapp.core.errors import TrayappError
from trayapp.core.logfile import close_log_file, setup_log_file
from trayapp.core.profile import Profile, ProfileBusy, ProfileLock, use_private_umask

if TYPE_CHECKING:
    from trayapp.auth.accounts import AccountManager
    from trayapp.auth.secrets import SecretVault
    from trayapp.auth.wiring import AccountsWiring
    from trayapp.core.engine import Engine
    from trayapp.core.heap import HeapKeeper
    from trayapp.core.network import NetworkMonitor

log = logging.getLogger(__name__)

ENGINE_ROLES = ("tray", "headless engine")  # what an AppHost's lock says; a sync is one-shot


class AlreadyServed(TrayappError):
    """Another engine (tray or headless) already runs for this profile."""

    def __init__(self, profile: Path, message: str) -> None:
        super().__init__(message)
        self.profile = profile


class ControlSocketError(TrayappError):
    """The control socket cannot be opened safely: the engine refuses to run without it."""


def already_running_message(profile: Path) -> str:
    return (
        f"{DISPLAY_NAME} is already running for the profile {profile}; stop it first, or talk "
        "to it with 'trayapp sync' and 'trayapp status'"
    )


LOOP_SWITCH_INTERVAL_S = 0.0005  # sys.setswitchinterval for the app's process (see AppHost.open)


class StderrUpgradeProgress:
    """Prints the store upgrade's progress on stderr: a line per 10% (a terminal sees one
    line rewritten in place), so a long upgrade never looks like a hung command."""

    def __init__(self) -> None:
        self._shown = -1
        self._tty = sys.stderr.isatty()

    def __call__(self, done: float) -> None:
        percent = int(done * 100)
        step = percent if self._tty else percent // 10 * 10
        if step == self._shown:
            return
        self._shown = step
        text = f"trayapp: upgrading your data for this version ({step}%)…"
        if self._tty:
            end = "\n" if percent >= 100 else ""
            print(f"\r{text}", end=end, file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)


@dataclass
class AppHost:
    """Engine + control socket + accounts for one profile; see the module docstring.

    ``role`` ("tray", "headless engine") is what another process is told holds the profile;
    ``vault`` overrides the secret store (the demo uses a file vault); ``engine_factory`` builds
    the Engine (tests pass a registry or clock through it).
    """

    profile: Profile
    role: str = "engine"
    vault: SecretVault | None = None
    engine_factory: Callable[[Profile], Engine] | None = None
    #: Told (on the loop thread) how far an upgrade of an older store has come, 0.0-1.0, while
    #: :meth:`open` runs it before the engine starts (the tray's "Upgrading your data (40%)…",
    #: the headless engine's stderr). Not called when there is nothing to upgrade.
    on_upgrade: Callable[[float], None] | None = None
    engine: Engine | None = None
    server: ipc.Server | None = None
    wiring: AccountsWiring | None = None
    network: NetworkMonitor | None = None
    heap: HeapKeeper | None = None
    _lock: ProfileLock | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def accounts(self) -> AccountManager | None:
        return self.wiring.manager if self.wiring is not None else None

    async def open(self) -> Engine:
        """Lock the profile, build the engine, wire accounts, serve the control socket.

        Raises :class:`AlreadyServed` when another engine holds the profile and
        :class:`ControlSocketError` when the control socket cannot be made safely. Does not
        start the schedule: call :meth:`start` once the caller's own parts are ready.
        """
        use_private_umask()  # the database, its WAL and the logs are created private
        # The event loop thread gives up the GIL on every SQLite statement and every select();
        # with a CPU-bound worker thread running (a MIME parse, an export) it then waited up to
        # the 5 ms switch interval to get it back, each time: a 50-message batch took 5 ms of
        # CPU and 45-110 ms of wall time on the loop. At 0.5 ms: 18-51 ms (issue 17.5). The
        # interval only matters while two threads want the GIL; an idle app is unaffected.
        sys.setswitchinterval(LOOP_SWITCH_INTERVAL_S)
        try:
            self._lock = self.profile.lock_engine(self.role)
        except ProfileBusy as busy:
            if busy.role in ENGINE_ROLES:
                message = already_running_message(self.profile.path)
                if busy.pid:
                    message += f" (the {busy.role} has pid {busy.pid})"
            else:
                message = str(busy)
            raise AlreadyServed(self.profile.path, message) from None
        # The one engine of this profile from here on writes its log file (tray and headless).
        try:
            setup_log_file(self.profile)
        except OSError as exc:  # syncing does not need it: say so on stderr and go on
            log.warning("cannot write the log file in %s (%s)", self.profile.logs_dir, exc)
        try:
            await self._upgrade_store()
            self.engine = self._make_engine()
            from trayapp.auth.wiring import AccountsWiring

            self.wiring = AccountsWiring(self.engine, vault=self.vault)
            try:
                self.server = await ipc.serve(self.engine, self.profile.path)
            except ipc.AlreadyRunning:
                raise AlreadyServed(
                    self.profile.path, already_running_message(self.profile.path)
                ) from None
            except ipc.SocketDirError as exc:
                raise ControlSocketError(str(exc)) from None
            except OSError as exc:
                raise ControlSocketError(
                    f"cannot open the control socket for this profile ({exc.strerror or exc}); "
                    f"{DISPLAY_NAME} does not run without it, because other trayapp commands "
                    "would then open the profile a second time"
                ) from None
            ipc.register_engine_commands(self.server, self.engine, self.wiring.manager)
        except BaseException:
            await self.close()
            raise
        return self.engine

    async def _upgrade_store(self) -> None:
        """Upgrade an older store on a worker thread before the engine opens it (issue 17.5).

        Seconds on a large profile: done here, with the profile locked and nothing else
        started, the event loop stays free (the tray's icon shows the progress and answers)
        instead of the engine's constructor holding it with no word to the user.
        """
        from trayapp.core.store import needs_upgrade

        if not needs_upgrade(self.profile.db_path):
            return
        loop = asyncio.get_running_loop()
        report = self.on_upgrade
        shown = -1

        def progress(done: float) -> None:  # on the worker thread
            nonlocal shown
            percent = int(done * 100)
            if report is not None and percent != shown:
                shown = percent
                loop.call_soon_threadsafe(report, done)

        log.info("upgrading the store of %s to this version's schema", self.profile.path)
        await asyncio.to_thread(self.profile.upgrade_store, progress)
        log.info("store upgraded")

    def _make_engine(self) -> Engine:
        if self.engine_factory is not None:
            return self.engine_factory(self.profile)
        from trayapp.builtins import default_registry
        from trayapp.core.engine import Engine

        return Engine(
            self.profile,
            patterns=default_registry(profile=self.profile.path),
            secrets=self.vault,  # plugins' secret settings live where the accounts' do
        )

    def on(self, cmd: str, handler: Callable[[dict[str, Any]], Any]) -> None:
        """Serve one more control command (the tray's ``activate``)."""
        if self.server is None:
            raise RuntimeError("AppHost.on() before open()")
        self.server.on(cmd, handler)

    async def start(self) -> None:
        """Start the engine's schedule (after :meth:`open`), and the network watch."""
        if self.engine is None:
            raise RuntimeError("AppHost.start() before open()")
        await self.engine.start()
        # The start-up heap out of the garbage collector's full collections, which stop the
        # event loop for as long as they walk it (trayapp.core.heap).
        from trayapp.core.heap import HeapKeeper

        self.heap = HeapKeeper(self.engine)
        self.heap.start()
        # Network back: offline charms retry within seconds (NetworkManager or a probe).
        from trayapp.core.network import NetworkMonitor

        self.network = NetworkMonitor(
            self.engine, extra_urls=self.wiring.api_urls if self.wiring is not None else None
        )
        await self.network.start()

    async def close(self) -> None:
        """Tear everything down in order; safe to call twice and after a failed :meth:`open`."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.network is not None:
                await self.network.stop()
            if self.server is not None:
                await self.server.close()
            if self.heap is not None:
                self.heap.stop()
            if self.engine is not None:
                await self.engine.stop()
            if self.wiring is not None:
                try:
                    await self.wiring.aclose()
                except Exception:
                    log.exception("closing the accounts failed")
            if self.engine is not None:
                self.engine.close()
        finally:
            if self._lock is not None:
                close_log_file(self.profile)
                self._lock.release()
                self._lock = None
