"""Machine events the tray forwards to the engine: resume from sleep and network changes.

After a resume the engine should catch up at once (``notify_resumed_from_sleep``), and the tray
should not alert about failures caused by the network not being back yet (a fresh quiet
period). On Linux, logind announces sleep with the ``PrepareForSleep`` signal on the system bus
(argument False on resume); we listen with dbus-fast, the asyncio D-Bus library desktop-notifier
already brings. Network reachability comes from Qt's QNetworkInformation where a backend exists
(NetworkManager on Linux, native on macOS/Windows). Both are optional: without them the engine
simply retries on its own schedule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtNetwork import QNetworkInformation

log = logging.getLogger(__name__)

LOGIN1_RULE = (
    "type='signal',interface='org.freedesktop.login1.Manager',member='PrepareForSleep',"
    "path='/org/freedesktop/login1'"
)


class SleepWatcher:
    """Calls ``on_resume`` when logind says the machine woke up."""

    def __init__(self, on_resume: Callable[[], None], *, bus_address: str | None = None) -> None:
        self._on_resume = on_resume
        self._bus_address = bus_address  # tests use a private bus; None = the system bus
        self._bus: Any = None

    async def start(self) -> bool:
        try:
            from dbus_fast import BusType, Message, MessageType
            from dbus_fast.aio import MessageBus

            bus = (
                MessageBus(bus_address=self._bus_address)
                if self._bus_address
                else MessageBus(bus_type=BusType.SYSTEM)
            )
            await bus.connect()
            reply = await bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="AddMatch",
                    signature="s",
                    body=[LOGIN1_RULE],
                )
            )
            if reply is None or reply.message_type is MessageType.ERROR:
                bus.disconnect()
                return False
        except Exception as exc:  # no system bus (containers, macOS, Windows): optional
            log.debug("sleep/resume events unavailable: %s", exc)
            return False

        def handler(msg: Any) -> None:
            if (
                msg.member == "PrepareForSleep"
                and msg.interface == "org.freedesktop.login1.Manager"
                and msg.body
                and msg.body[0] is False
            ):
                log.info("resumed from sleep")
                self._on_resume()

        bus.add_message_handler(handler)
        self._bus = bus
        return True

    def stop(self) -> None:
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None


class NetworkWatcher:
    """Calls ``on_change(online)`` when Qt's network reachability changes."""

    def __init__(self, on_change: Callable[[bool], None]) -> None:
        self._on_change = on_change
        self._info: QNetworkInformation | None = None

    def start(self) -> bool:
        try:
            if not QNetworkInformation.loadDefaultBackend():
                return False
        except Exception as exc:
            log.debug("network reachability unavailable: %s", exc)
            return False
        info = QNetworkInformation.instance()
        if info is None:
            return False
        self._info = info
        info.reachabilityChanged.connect(self._changed)
        return True

    def _changed(self, reachability: QNetworkInformation.Reachability) -> None:
        online = reachability in (
            QNetworkInformation.Reachability.Online,
            QNetworkInformation.Reachability.Site,
        )
        self._on_change(online)

    def stop(self) -> None:
        if self._info is not None:
            self._info.reachabilityChanged.disconnect(self._changed)
            self._info = None
