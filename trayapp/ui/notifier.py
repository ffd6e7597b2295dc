"""Delivering notices: the desktop's notification service first, the tray balloon as fallback.

desktop-notifier speaks freedesktop D-Bus on Linux (with action buttons), and the native APIs on
macOS and Windows, so we do not hand-write a D-Bus client. Its pitfalls are handled here: the
availability check is ``get_capabilities()`` (``send()`` only logs when no server exists), every
call is bounded by ``asyncio.wait_for`` (a server that owns the name but never answers would hang
``send()``), callbacks are plain functions, and the notifier is created on the running qasync loop.

The service is asked on the **first notice**, not at start: a tray whose charms are healthy never
notifies, and desktop-notifier with its D-Bus stack (dbus-fast: ~50 modules, ~3 MiB) then never
loads (issue 17). Notices that arrive while the question is out wait for its answer (at most
:data:`CALL_TIMEOUT_S`) and are then shown in order, by the service or else by the balloon.

Whatever happens, the notice goes into :class:`~trayapp.ui.notify_policy.RecentNotices` with how
it was shown, so nothing is lost when the desktop has no notification service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from trayapp import DISPLAY_NAME
from trayapp.ui.i18n import tr
from trayapp.ui.notify_policy import Notice, RecentNotice, RecentNotices

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 5.0


class Notifier:
    def __init__(
        self,
        on_action: Callable[[str], None],
        now: Callable[[], datetime],
        *,
        balloon: Callable[[Notice], bool] | None = None,
        icon: Path | None = None,
        report: Callable[[str], None] | None = None,
        use_desktop: bool = True,
    ) -> None:
        self._on_action = on_action
        self._now = now
        self._balloon = balloon
        self._icon = icon
        self._report = report or (lambda _line: None)
        self._use_desktop = use_desktop
        self._desktop: Any = None
        self.desktop_available = False
        self.recent = RecentNotices()
        self._sent: dict[str, str] = {}  # notice key -> desktop-notifier identifier
        # identifier -> the server's notification id, to close one desktop-notifier forgot
        self._server_ids: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners: list[Callable[[], None]] = []
        # The notification service is asked once, at the first notice; until it answers,
        # notices wait here with the time they came.
        self._chosen = not use_desktop
        self._choosing: asyncio.Task[None] | None = None
        self._waiting: list[tuple[Notice, datetime]] = []

    def on_change(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    async def _find_service(self) -> None:
        """Find out whether a notification service answers (bounded, never hangs)."""
        try:
            from desktop_notifier import DesktopNotifier, Icon

            app_icon = Icon(path=self._icon) if self._icon else None
            self._desktop = (
                DesktopNotifier(app_name=DISPLAY_NAME, app_icon=app_icon)
                if app_icon
                else DesktopNotifier(app_name=DISPLAY_NAME)
            )
            caps = await asyncio.wait_for(self._desktop.get_capabilities(), CALL_TIMEOUT_S)
            self.desktop_available = True
            log.debug("notification service capabilities: %s", caps)
        except Exception as exc:
            log.info("no desktop notification service (%s); using the tray balloon", exc)
            self._desktop = None
            self.desktop_available = False

    def deliver(self, notice: Notice) -> None:
        """Show a notice; it always gets a Recent-notifications entry.

        The first one asks for the desktop's notification service first: it and any notice
        delivered meanwhile are shown once that answer is in.
        """
        if self._chosen:
            self._show(notice, self._now())
            return
        self._waiting.append((notice, self._now()))
        if self._choosing is None:
            self._choosing = asyncio.get_running_loop().create_task(
                self._choose(), name="trayapp-notification-service"
            )

    async def _choose(self) -> None:
        await self._find_service()
        self._chosen = True
        waiting, self._waiting = self._waiting, []
        for notice, at in waiting:
            self._show(notice, at)

    def _show(self, notice: Notice, at: datetime) -> RecentNotice:
        if self._desktop is not None and self.desktop_available:
            shown_by = "desktop"
            task = asyncio.get_running_loop().create_task(self._send(notice))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif self._balloon is not None and self._balloon(notice):
            shown_by = "tray"
        else:
            shown_by = "none"
        entry = self.recent.add(notice, at, shown_by)
        self._report(f"TRAYAPP_NOTIFIED {shown_by} {notice.kind} {notice.title}")
        for cb in self._listeners:
            cb()
        return entry

    async def _send(self, notice: Notice) -> None:
        from desktop_notifier import Button, Urgency

        old = self._sent.pop(notice.key, None)
        if old is not None:
            # Replacing in place is not supported: close the old one, then send the new one.
            await self._close(old)
        action = notice.action
        buttons = []
        if notice.action_label and action:
            buttons.append(Button(title=notice.action_label, on_pressed=self._callback(action)))
        if notice.kind == "failing" and notice.key.startswith("charm:"):
            buttons.append(
                Button(
                    title=tr("Mute until it changes"),
                    on_pressed=self._callback(f"mute:{notice.key.split(':', 1)[1]}"),
                )
            )
        icon = None
        if notice.icon:
            from desktop_notifier import Icon

            from trayapp.ui.icons import state_icon_file
            from trayapp.ui.model import IconState

            path = state_icon_file(IconState(notice.icon))
            icon = Icon(path=path) if path is not None else None  # a Path: a str shows nothing
        try:
            identifier = await asyncio.wait_for(
                self._desktop.send(
                    title=notice.title,
                    message=notice.body,
                    icon=icon,
                    urgency=Urgency.Critical if notice.urgent else Urgency.Normal,
                    buttons=buttons,
                    on_clicked=self._callback(action) if action else None,
                ),
                CALL_TIMEOUT_S,
            )
            self._sent[notice.key] = identifier
            server_id = self._id_map().inverse.get(identifier) if self._id_map() else None
            if isinstance(server_id, int):
                self._server_ids[identifier] = server_id
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("the notification service did not take a notification", exc_info=True)

    def _id_map(self) -> Any:
        """desktop-notifier's D-Bus backend map (server id <-> identifier), if it has one."""
        backend = getattr(self._desktop, "_backend", None)
        return getattr(backend, "_platform_to_interface_notification_identifier", None)

    async def _close(self, identifier: str) -> None:
        """Take a notification we sent off the screen (bounded; a failure is only logged).

        desktop-notifier forgets a notification once one of its buttons was pressed, assuming
        the server closed it; dunst keeps a critical one on screen after its action ran, so the
        "Allow…" notice stayed after the permission was granted. We remember the server's id
        and hand it back to desktop-notifier's map before its public ``clear()``.
        """
        server_id = self._server_ids.pop(identifier, None)
        ids = self._id_map()
        try:
            if ids is not None and server_id is not None and identifier not in ids.inverse:
                ids[server_id] = identifier
            await asyncio.wait_for(self._desktop.clear(identifier), CALL_TIMEOUT_S)
            self._report(f"TRAYAPP_NOTIFICATION_CLOSED {identifier}")
        except Exception:
            log.debug("could not close an old notification", exc_info=True)

    def _callback(self, command: str) -> Callable[[], None]:
        # desktop-notifier calls plain functions on the loop thread; never pass a coroutine.
        def run() -> None:
            self._on_action(command)

        return run

    def run_recent(self, entry_id: int) -> None:
        """A click on a Recent-notifications entry runs its action (or opens Activity)."""
        entry = self.recent.get(entry_id)
        if entry is None:
            return
        self._on_action(entry.notice.action or "activity")

    async def stop(self) -> None:
        if self._choosing is not None and not self._choosing.done():
            self._tasks.add(self._choosing)  # cancelled with the sends below; waiting: dropped
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
