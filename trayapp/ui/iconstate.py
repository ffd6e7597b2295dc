"""The tray's overall states (one icon each), in a module of its own.

Kept apart from :mod:`trayapp.ui.model` (which re-exports it) so the start-up icon can be drawn
before the model's imports (core status, accounts, pydantic) are loaded: the icon is the first
thing the user sees (issue 17: no work before the icon that can wait).
"""

from __future__ import annotations

from enum import StrEnum


class IconState(StrEnum):
    OK = "ok"
    SYNCING = "syncing"
    ATTENTION = "attention"
    ERROR = "error"
    PAUSED = "paused"
    OFFLINE = "offline"
