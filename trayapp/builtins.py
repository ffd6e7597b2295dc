"""The registry the app starts with: the built-in patterns plus the installed plugins'.

Start-up code (the CLI, the tray, the headless host) calls :func:`default_registry` and passes
the result to :class:`~trayapp.core.engine.Engine`; the engine itself knows no pattern, so
``trayapp.core`` never imports ``trayapp.patterns`` (which imports ``trayapp.api``, which
imports ``trayapp.core``).

The built-ins are registered by descriptor (:class:`~trayapp.core.patterns.PatternMeta`): a
pattern's module, and the libraries it needs, are imported when a charm of it first runs or
its settings are first needed, so a profile of feed charms never loads the Gmail, Calendar or
script importers (issue 17). Each descriptor must match its class (checked when the class is
loaded, and for every built-in by tests/core/test_builtin_registry.py).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from trayapp.core.patterns import PatternMeta, PatternRegistry
from trayapp.plugins import activate, plugins_dir

BUILTIN_PATTERNS: tuple[PatternMeta, ...] = (
    PatternMeta(
        id="feed-importer",
        title="Feed Importer",
        target="trayapp.patterns.feed:FeedImporter",
        timeout=timedelta(minutes=2),
    ),
    PatternMeta(
        id="gmail-importer",
        title="Gmail Importer",
        target="trayapp.patterns.gmail:GmailImporter",
        scopes=("https://www.googleapis.com/auth/gmail.readonly",),
        timeout=timedelta(minutes=30),
    ),
    PatternMeta(
        id="gcalendar-importer",
        title="Google Calendar Importer",
        target="trayapp.patterns.gcalendar:CalendarImporter",
        scopes=("https://www.googleapis.com/auth/calendar.readonly",),
        timeout=timedelta(minutes=15),
    ),
    PatternMeta(
        id="exec-importer",
        title="Script Importer",
        target="trayapp.patterns.exec_importer:ExecImporter",
        timeout=timedelta(minutes=61),  # its longest script timeout plus a minute
    ),
)


def default_registry(*, plugins: bool = True, profile: Path | None = None) -> PatternRegistry:
    """The built-in patterns plus (with ``plugins``) every installed plugin's.

    With ``profile`` (its folder), the plugins ``trayapp plugins install`` put in its plugins
    folder are found too.
    """
    if plugins and profile is not None:
        activate(plugins_dir(profile))
    return PatternRegistry.with_patterns(BUILTIN_PATTERNS, plugins=plugins)


__all__ = ["BUILTIN_PATTERNS", "default_registry"]
