"""The tray's own preferences (notifications), kept in ``ui.json`` in the profile directory.

They are UI-only choices the engine never reads, so they live beside the database rather than
in it; writes are atomic (temp file + rename) so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

PREFS_FILE = "ui.json"
MAX_GRACE_S = 3600  # a quiet period longer than an hour is a damaged or hand-edited file


@dataclass
class UiPrefs:
    notify_errors: bool = True  # failing / sign-in / recovered notices
    notify_new_items: bool = False  # the optional "N new items" summary: off, no spam
    grace_seconds: int = 15  # quiet period after start and after resume from sleep
    welcome_shown: bool = False  # the first-run welcome window opens on its own only once

    @classmethod
    def load(cls, profile_dir: Path) -> UiPrefs:
        path = profile_dir / PREFS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        known = {f.name for f in fields(cls)}
        prefs = cls()
        for k, v in data.items() if isinstance(data, dict) else ():
            if k in known and type(v) is type(getattr(prefs, k)):
                setattr(prefs, k, v)
        # A value out of range (hand-edited, damaged) must not stop the tray: clamp it.
        prefs.grace_seconds = min(max(prefs.grace_seconds, 0), MAX_GRACE_S)
        return prefs

    def save(self, profile_dir: Path) -> None:
        path = profile_dir / PREFS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        os.replace(tmp, path)
