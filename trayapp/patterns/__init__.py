"""Built-in patterns, registered in code (third-party ones come through entry points).

Each module here imports only :mod:`trayapp.api` and third-party libraries, exactly as a plugin
would. To add a built-in, import its class here and append it to :data:`BUILTIN_PATTERNS`. The
app's start-up code builds the registry from it (:func:`trayapp.builtins.default_registry`) and
passes it to the Engine: ``trayapp.core`` knows no pattern.
"""

from __future__ import annotations

from typing import Any

from trayapp.api import Pattern
from trayapp.patterns.exec_importer import ExecImporter
from trayapp.patterns.feed import FeedImporter
from trayapp.patterns.gcalendar import CalendarImporter
from trayapp.patterns.gmail import GmailImporter

BUILTIN_PATTERNS: tuple[type[Pattern[Any]], ...] = (
    FeedImporter,
    GmailImporter,
    CalendarImporter,
    ExecImporter,
)

__all__ = ["BUILTIN_PATTERNS"]
