"""Machine events the tray forwards to the engine: resume from sleep.

After a resume the engine should catch up at once (``notify_resumed_from_sleep``), and the tray
should not alert about failures caused by the network not being back yet (a fresh quiet
period). On Linux, logind announces sleep with the ``PrepareForSleep`` signal on the system bus
(argument False on resume); we listen with Qt's own D-Bus module (QtDBus: its library is loaded
by Qt anyway, the Python binding costs ~0.2 MiB, where dbus-fast cost ~4 MiB for this one
signal; issue 17). Where the QtDBus binding is left out (the frozen bundle's spec excludes it)
the watcher listens with dbus-fast, as before. Optional: without logind the engine simply
retries on its own schedule.

Network changes are not watched here: the app host's Qt-free ``core.network.NetworkMonitor``
(NetworkManager over D-Bus, else a probe while a charm is offline) serves the tray and the
headless engine alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import SLOT, QObject, Slot

if TYPE_CHECKING:
    from PySide6.QtDBus import QDBusConnection

log = logging.getLogger(__name__)

LOGIN1_PATH = "/org/freedesktop/login1"
LOGIN1_INTERFACE = "org.freedesktop.login1.Manager"
LOGIN1_RULE = (
    f"type='signal',interface='{LOGIN1_INTERFACE}',member='PrepareForSleep',path='{LOGIN1_PATH}'"
)
# A private connection's name for QDBusConnection (tests give a bus address).
_CONNECTION_NAME = "trayapp-sleep-watcher"
# Qt's "1name(args)" slot signature. PySide takes it as str (bytes are refused at run time);
# its type stubs say bytes, hence the two ignores below.
_SLOT = SLOT("prepare_for_sleep(bool)")


class _Receiver(QObject):
    def __init__(self, on_resume: Callable[[], None]) -> None:
        super().__init__()
        self._on_resume = on_resume

    @Slot(bool)
    def prepare_for_sleep(self, sleeping: bool) -> None:
        if sleeping is False:
            log.info("resumed from sleep")
            self._on_resume()


class SleepWatcher:
    """Calls ``on_resume`` when logind says the machine woke up."""

    def __init__(self, on_resume: Callable[[], None], *, bus_address: str | None = None) -> None:
        self._receiver = _Receiver(on_resume)
        self._bus_address = bus_address  # tests use a private bus; None = the system bus
        self._bus: QDBusConnection | None = None
        self._fast_bus: Any = None  # dbus-fast's MessageBus, where QtDBus is left out

    async def start(self) -> bool:
        try:
            from PySide6.QtDBus import QDBusConnection
        except ImportError:  # the binding is not there (the frozen bundle)
            return await self._start_dbus_fast()
        bus = (
            QDBusConnection.connectToBus(self._bus_address, _CONNECTION_NAME)
            if self._bus_address
            else QDBusConnection.systemBus()
        )
        if not bus.isConnected():  # no system bus (containers, macOS, Windows): optional
            log.debug("sleep/resume events unavailable: %s", bus.lastError().message())
            self._drop(bus)
            return False
        if not bus.connect(  # type: ignore[call-overload]
            "",
            LOGIN1_PATH,
            LOGIN1_INTERFACE,
            "PrepareForSleep",
            self._receiver,
            _SLOT,
        ):
            log.debug("sleep/resume events unavailable: %s", bus.lastError().message())
            self._drop(bus)
            return False
        self._bus = bus
        return True

    def _drop(self, bus: QDBusConnection) -> None:
        if self._bus_address:
            type(bus).disconnectFromBus(bus.name())

    async def _start_dbus_fast(self) -> bool:
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
                and msg.interface == LOGIN1_INTERFACE
                and msg.body
                and isinstance(msg.body[0], bool)
            ):
                self._receiver.prepare_for_sleep(msg.body[0])

        bus.add_message_handler(handler)
        self._fast_bus = bus
        return True

    def stop(self) -> None:
        if self._fast_bus is not None:
            self._fast_bus.disconnect()
            self._fast_bus = None
        if self._bus is not None:
            bus, self._bus = self._bus, None
            bus.disconnect(  # type: ignore[call-overload]
                "",
                LOGIN1_PATH,
                LOGIN1_INTERFACE,
                "PrepareForSleep",
                self._receiver,
                _SLOT,
            )
            self._drop(bus)
