"""Noticing that the network is back, so charms that failed ``offline`` sync within seconds.

Without help, a charm that failed because the network was down waits out its backoff (up to an
hour) after the network returns. :class:`NetworkMonitor` tells the engine the moment
connectivity returns (``engine.notify_network_changed(True)``, which makes the scheduler retry
every charm whose last failure was ``offline``), from two sources:

* **NetworkManager over D-Bus** where it runs (most Linux desktops): its ``StateChanged`` signal
  on the system bus. Reaching ``NM_STATE_CONNECTED_GLOBAL`` (70) from a lower state is "back".
  While NetworkManager says the machine is not connected, nothing is probed: its signal will
  come. The monitor connects to the bus when the first charm goes offline (the signal matters
  only then), not at start: an app whose charms are healthy never loads dbus-fast (~4 MiB).
* **A cheap probe** otherwise, and also while NetworkManager says "connected" (the outage may be
  further away than the local link: a router, the ISP, the server itself): a TCP connect to the
  hosts the offline charms talk to, every :data:`PROBE_INTERVAL` seconds, **only while some
  charm is offline**. When every charm is healthy there is no timer at all: this module adds no
  wake-ups to an idle app. A successful connect after a failed one is "back" (edge-triggered: a
  charm that stays offline while its host answers is not retried every few seconds).

It is Qt-free and needs only the engine's public surface (subscribe, statuses, charms,
notify_network_changed), so the app host starts one for the headless engine and the tray alike::

    monitor = NetworkMonitor(engine, extra_urls=wiring.api_urls)
    await monitor.start()
    ...
    await monitor.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from trayapp.core.events import CharmStatusChanged, EngineEvent
from trayapp.core.outcomes import OutcomeKind

if TYPE_CHECKING:
    from trayapp.core.engine import Engine
    from trayapp.core.status import CharmStatus

log = logging.getLogger(__name__)

# How often the probe tries while some charm is offline: the network being back is noticed
# within this, and the offline charms start right after (the target is "within 5 s").
PROBE_INTERVAL = 2.0
# One TCP connect may take this long before it counts as a failure.
PROBE_TIMEOUT = 1.5

NM_SERVICE = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
NM_INTERFACE = "org.freedesktop.NetworkManager"
# NMState (https://networkmanager.dev/docs/api/latest/nm-dbus-types.html#NMState):
# 70 CONNECTED_GLOBAL is "has full network access"; below it the machine is not online.
NM_STATE_CONNECTED_GLOBAL = 70
NM_RULE = (
    f"type='signal',sender='{NM_SERVICE}',interface='{NM_INTERFACE}',"
    f"member='StateChanged',path='{NM_PATH}'"
)

Target = tuple[str, int]
Unsubscribe = Callable[[], None]


def is_offline(status: CharmStatus) -> bool:
    """The charm's last run failed because the network or its server could not be reached."""
    return (
        status.consecutive_failures > 0
        and status.last_error_kind is OutcomeKind.OFFLINE
        and not status.paused
    )


def url_target(url: str) -> Target | None:
    """``(host, port)`` of an http(s) URL, or None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def settings_targets(settings: Mapping[str, Any]) -> list[Target]:
    """Every http(s) URL in a charm's settings (a feed's ``url``, a third party's endpoint)."""
    found: list[Target] = []
    for value in settings.values():
        if isinstance(value, str):
            target = url_target(value)
            if target is not None:
                found.append(target)
    return found


class NetworkMonitor:
    """Calls ``engine.notify_network_changed(True)`` when connectivity returns. See the module.

    ``extra_urls()`` names the hosts charms with a Google account talk to (the API roots; the
    emulator's in tests and demo mode). ``bus_address`` is a D-Bus address (tests run a private
    bus with a fake NetworkManager); None means the system bus; ``use_dbus=False`` skips D-Bus.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        extra_urls: Callable[[], Iterable[str]] | None = None,
        bus_address: str | None = None,
        use_dbus: bool = True,
        probe_interval: float = PROBE_INTERVAL,
        probe_timeout: float = PROBE_TIMEOUT,
    ) -> None:
        self._engine = engine
        self._extra_urls = extra_urls
        self._bus_address = bus_address
        self._use_dbus = use_dbus
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self._offline: set[str] = set()
        self._unsubscribe: Unsubscribe | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._bus: Any = None
        self._nm_state: int | None = None  # None: NetworkManager not available
        # Connecting to NetworkManager: once, when the first charm goes offline.
        self._nm_task: asyncio.Task[None] | None = None
        self._stopped = False
        self._reachable = False  # within a probe session: the last probe got through
        self.probes = 0  # connect attempts made (tests and the idle benchmark read it)
        self.notified = 0  # times the engine was told the network is back

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._unsubscribe = self._engine.subscribe(self._on_event)
        for charm_id, status in self._engine.statuses().items():
            if is_offline(status):
                self._offline.add(charm_id)
        self._update_probe()

    async def stop(self) -> None:
        self._stopped = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for task in (self._probe_task, self._nm_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._probe_task = self._nm_task = None
        if self._bus is not None:
            bus, self._bus = self._bus, None
            bus.disconnect()

    @property
    def network_manager(self) -> bool:
        """NetworkManager's state is being followed over D-Bus."""
        return self._nm_state is not None

    @property
    def probing(self) -> bool:
        return self._probe_task is not None and not self._probe_task.done()

    # ---- engine events ------------------------------------------------------------------

    def _on_event(self, event: EngineEvent) -> None:
        if not isinstance(event, CharmStatusChanged):
            return
        if is_offline(event.status):
            self._offline.add(event.charm_id)
        else:
            self._offline.discard(event.charm_id)
        self._update_probe()

    def _update_probe(self) -> None:
        """Probe exactly while some charm is offline and NetworkManager does not say "down".

        The first offline charm connects to NetworkManager first (bounded: a few seconds at
        most), then probes if it says "connected" or is not there.
        """
        if self._offline and self._use_dbus and self._nm_task is None and not self._stopped:
            self._nm_task = asyncio.get_running_loop().create_task(
                self._follow_network_manager(), name="trayapp-network-manager"
            )
        connecting = self._nm_task is not None and not self._nm_task.done()
        nm_down = self._nm_state is not None and self._nm_state < NM_STATE_CONNECTED_GLOBAL
        wanted = bool(self._offline) and not nm_down and not self._stopped and not connecting
        if wanted and not self.probing:
            self._probe_task = asyncio.get_running_loop().create_task(
                self._probe_loop(), name="trayapp-network-probe"
            )
        elif not wanted and self._probe_task is not None:
            self._probe_task.cancel()
            self._probe_task = None

    # ---- the probe ----------------------------------------------------------------------

    def targets(self) -> list[Target]:
        """The hosts the offline charms talk to, deduplicated, in a stable order."""
        by_id = {c.id: c for c in self._engine.charms()}
        found: dict[Target, None] = {}
        google = False
        for charm_id in sorted(self._offline):
            info = by_id.get(charm_id)
            if info is None:
                continue
            for target in settings_targets(info.settings):
                found.setdefault(target)
            google = google or info.account_id is not None
        if google and self._extra_urls is not None:
            try:
                urls = list(self._extra_urls())
            except Exception as exc:  # no client configured yet: nothing to probe for Google
                log.debug("no Google endpoints to probe: %s", exc)
                urls = []
            for url in urls:
                api = url_target(url)
                if api is not None:
                    found.setdefault(api)
        return list(found)

    async def _probe_loop(self) -> None:
        """One session: from the first offline charm until none is offline."""
        self._reachable = False  # the charms failed: assume down until a connect succeeds
        while True:
            await asyncio.sleep(self.probe_interval)
            targets = self.targets()
            if not targets:
                continue
            ok = await self._reach_any(targets)
            if ok and not self._reachable:
                log.info("the network is reachable again; retrying charms that were offline")
                self._notify()
            self._reachable = ok

    async def _reach_any(self, targets: list[Target]) -> bool:
        attempts = [asyncio.ensure_future(self._reach(host, port)) for host, port in targets]
        try:
            for done in asyncio.as_completed(attempts):
                if await done:
                    return True
            return False
        finally:
            for attempt in attempts:
                attempt.cancel()
            await asyncio.gather(*attempts, return_exceptions=True)

    async def _reach(self, host: str, port: int) -> bool:
        self.probes += 1
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self.probe_timeout
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _notify(self) -> None:
        self.notified += 1
        try:
            self._engine.notify_network_changed(True)
        except Exception:
            log.exception("telling the engine the network is back failed")

    # ---- NetworkManager -----------------------------------------------------------------

    async def _follow_network_manager(self) -> None:
        try:
            await self._connect_network_manager()
        finally:
            if not self._stopped:
                asyncio.get_running_loop().call_soon(self._update_probe)

    async def _connect_network_manager(self) -> None:
        try:
            from dbus_fast import BusType, Message, MessageType, Variant
            from dbus_fast.aio import MessageBus

            bus = (
                MessageBus(bus_address=self._bus_address)
                if self._bus_address
                else MessageBus(bus_type=BusType.SYSTEM)
            )
            await asyncio.wait_for(bus.connect(), 5)
        except Exception as exc:  # no system bus (containers, macOS, Windows): probe only
            log.debug("NetworkManager unavailable (no D-Bus): %s", exc)
            return
        try:
            match = await bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="AddMatch",
                    signature="s",
                    body=[NM_RULE],
                )
            )
            # Subscribe before reading the state, so no change falls between the two.
            bus.add_message_handler(self._on_dbus_message)
            reply = await asyncio.wait_for(
                bus.call(
                    Message(
                        destination=NM_SERVICE,
                        path=NM_PATH,
                        interface="org.freedesktop.DBus.Properties",
                        member="Get",
                        signature="ss",
                        body=[NM_INTERFACE, "State"],
                    )
                ),
                5,
            )
        except Exception as exc:
            log.debug("NetworkManager unavailable: %s", exc)
            bus.disconnect()
            return
        if (
            match is None
            or match.message_type is MessageType.ERROR
            or reply is None
            or reply.message_type is MessageType.ERROR
            or not reply.body
            or not isinstance(reply.body[0], Variant)
        ):
            log.debug("NetworkManager is not running; probing hosts while offline instead")
            bus.disconnect()
            return
        self._bus = bus
        if self._nm_state is None:  # a StateChanged may have arrived first: it is newer
            self._nm_state = int(reply.body[0].value)
        log.info("following NetworkManager (state %d) for network changes", self._nm_state)

    def _on_dbus_message(self, msg: Any) -> None:
        if (
            msg.member != "StateChanged"
            or msg.interface != NM_INTERFACE
            or not msg.body
            or not isinstance(msg.body[0], int)
        ):
            return
        state = int(msg.body[0])
        before, self._nm_state = self._nm_state, state
        log.debug("NetworkManager state %s -> %d", before, state)
        if (
            state >= NM_STATE_CONNECTED_GLOBAL
            and before is not None
            and before < NM_STATE_CONNECTED_GLOBAL
        ):
            log.info("NetworkManager says the network is back")
            self._reachable = True  # the probe need not say it again
            self._notify()
        self._update_probe()
