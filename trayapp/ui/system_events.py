"""Machine events the tray forwards to the engine: resume from sleep.

After a resume the engine should catch up at once (``notify_resumed_from_sleep``), and the tray
should not alert about failures caused by the network not being back yet (a fresh quiet
period). On Linux, logind announces sleep with the ``PrepareForSleep`` signal on the system bus
(argument False on resume); we listen with dbus-fast, the asyncio D-Bus library desktop-notifier
already brings. Optional: without logind the engine simply retries on its own schedule.

Network changes are not watched here: the app host's Qt-free ``core.network.NetworkMonitor``
(NetworkManager over D-Bus, else a probe while a charm is offline) serves the tray and the
headless engine alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

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
