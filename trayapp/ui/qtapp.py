"""The app's QApplication: Qt's quit requests become the app's orderly shutdown.

In Qt 6 ``quit()`` (a session end, ``app.quit()``) sends ``QEvent.Quit`` to the application
object, which may refuse it. Refusing it and asking for our own shutdown instead lets the engine
stop (runs recorded as cancelled) while the qasync loop still runs; the loop then ends when the
main coroutine returns (trayapp/ui/runner.py).

:class:`TrayApplication` sees only the events sent to the application object itself (a handful:
quit, application state, palette and font changes). An application-wide event filter, which did
this before, saw every event of every widget, timer and socket notifier: each one crossed into
Python, and on the way PySide built the Python types of ~60 ``QEvent`` subclasses and their
methods, about 4-5 MiB of the tray's memory (issue 17). Imported before the start-up icon: light
(no enum is touched here until a quit handler is set, after the icon).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QApplication


def refused_quit(event: QEvent, on_quit: Callable[[], None]) -> bool:
    """If ``event`` is Qt's ``QEvent.Quit``: refuse it, call ``on_quit``, return True."""
    if event.type() != QEvent.Type.Quit:
        return False
    event.ignore()
    on_quit()
    return True


class TrayApplication(QApplication):
    """The tray's QApplication; ``on_quit`` (set once the loop is about to run) gets Qt's quits."""

    on_quit: Callable[[], None] | None = None

    def event(self, event: QEvent) -> bool:
        if self.on_quit is not None and refused_quit(event, self.on_quit):
            return True
        return super().event(event)
