"""The log file: ``<profile>/logs/trayapp.log``, rotated, INFO and up, secrets redacted.

The app host calls :func:`setup_log_file` once for the tray and for ``run --headless`` alike
(one-shot CLI commands print their results and write no log file). What it guarantees:

* **Where**: ``Profile.logs_dir`` (created 0700), file ``trayapp.log``, 0600 from the first
  byte (the file is created with that mode, never chmod-ed after the fact), rotated copies
  ``trayapp.log.1`` ... ``.5`` too.
* **How much**: rotated at 1 MiB, five old files kept: at most 6 MiB per profile, enough for
  days of normal syncing and still small enough to attach to a bug report.
* **What**: INFO and above from every logger, whatever ``-v``/``-q`` set for stderr (the stderr
  handler keeps its own level); ``httpx``/``httpcore`` stay at WARNING because their INFO lines
  carry whole URLs. Every record passes through :class:`~trayapp.core.redact.RedactingFilter`
  on this handler, so a registered token or secret never reaches the file.

Qt-free: the tray host and the headless host share it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import os
from pathlib import Path

from trayapp.core.logfiles import LOG_NAME
from trayapp.core.profile import Profile
from trayapp.core.redact import RedactingFilter

LOG_FILENAME = LOG_NAME  # the name core/logfiles.py (``trayapp logs``, About) looks for
MAX_BYTES = 1024 * 1024
BACKUP_COUNT = 5
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A :class:`~logging.handlers.RotatingFileHandler` whose files are created 0600."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with contextlib.suppress(OSError):  # an older file made with a looser mode: tighten it
            os.fchmod(fd, 0o600)
        return open(fd, "a", encoding=self.encoding or "utf-8", errors=self.errors)


def log_file_path(profile: Profile) -> Path:
    """Where :func:`setup_log_file` writes for ``profile`` (``trayapp logs`` shows this)."""
    return profile.logs_dir / LOG_FILENAME


def setup_log_file(profile: Profile, *, level: int = logging.INFO) -> Path:
    """Log to ``<profile>/logs/trayapp.log`` from now on; returns the file's path.

    Idempotent per path: a second call (a host restarted in the same process, a test) adds no
    second handler. The root logger is opened to ``level`` if it was stricter; handlers that
    were already there keep what they showed before (they get the old root level as their own).
    """
    path = log_file_path(profile)
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, PrivateRotatingFileHandler) and Path(handler.baseFilename) == path:
            return path
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    handler = PrivateRotatingFileHandler(
        path, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8"
    )
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())
    if root.level == logging.NOTSET or root.level > level:
        previous = root.level if root.level != logging.NOTSET else logging.WARNING
        for other in root.handlers:
            if other.level == logging.NOTSET:
                other.setLevel(previous)
        root.setLevel(level)
    root.addHandler(handler)
    for noisy in ("httpx", "httpcore"):
        named = logging.getLogger(noisy)
        if named.level == logging.NOTSET or named.level < logging.WARNING:
            named.setLevel(logging.WARNING)
    return path


def close_log_file(profile: Profile) -> None:
    """Detach and close the handler :func:`setup_log_file` added for ``profile`` (if any)."""
    path = log_file_path(profile)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, PrivateRotatingFileHandler) and Path(handler.baseFilename) == path:
            root.removeHandler(handler)
            handler.close()
