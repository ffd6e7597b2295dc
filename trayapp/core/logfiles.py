"""Finding the profile's log file (written by the app host's rotating handler) to show or tail.

The file lives in ``Profile.logs_dir``; rotation renames it to ``trayapp.log.1`` and so on, so
the current file is ``trayapp.log`` when it exists, else the newest ``*.log`` there.
"""

from __future__ import annotations

from pathlib import Path

LOG_NAME = "trayapp.log"


def log_dir(profile_path: Path) -> Path:
    """The profile's logs folder (``Profile.logs_dir``), from the profile's path."""
    return Path(profile_path) / "logs"


def newest_log(profile_path: Path) -> Path | None:
    """The log file being written now, or None when the app has not written one yet."""
    folder = log_dir(profile_path)
    current = folder / LOG_NAME
    if current.is_file():
        return current
    try:
        logs = [p for p in folder.glob("*.log") if p.is_file()]
    except OSError:
        return None
    return max(logs, key=lambda p: p.stat().st_mtime, default=None)
