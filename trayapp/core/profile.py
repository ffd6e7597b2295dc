"""Where a profile lives: the directory holding the database, logs and anything else per user.

Resolution order, most specific first: an explicit directory (``--profile DIR``), the
``TRAYAPP_PROFILE`` environment variable, then the platformdirs user data dir for the app name
``trayapp`` (``~/.local/share/trayapp`` on Linux). Tests always pass a temporary directory, so
they never touch the user's real data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from trayapp import APP_NAME
from trayapp.core.errors import TrayappError

PROFILE_ENV = "TRAYAPP_PROFILE"
DB_FILENAME = "trayapp.db"


class ProfileError(TrayappError):
    """The profile directory cannot be used (cannot be created, not a directory, not writable)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """A resolved, existing profile directory."""

    path: Path

    @property
    def db_path(self) -> Path:
        return self.path / DB_FILENAME

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @classmethod
    def resolve(
        cls, explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
    ) -> Profile:
        """Pick the profile directory and make sure it exists.

        A missing directory is created (a first run has none); one that cannot be created or is
        not a writable directory raises :class:`ProfileError` with one sentence saying which path
        and what to do, so the CLI never shows a traceback for it.
        """
        environ = os.environ if env is None else env
        if explicit is not None and str(explicit) != "":
            raw, source = Path(explicit), "--profile"
        elif environ.get(PROFILE_ENV):
            raw, source = Path(environ[PROFILE_ENV]), PROFILE_ENV
        else:
            raw, source = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)), "default"
        path = raw.expanduser()
        where = f"profile directory {str(path)!r}" + (
            f" (from {source})" if source != "default" else ""
        )
        if path.exists() and not path.is_dir():
            raise ProfileError(f"{where} is a file, not a directory; choose another directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ProfileError(
                f"cannot create {where}: {reason}; choose a directory you can write to"
            ) from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise ProfileError(f"{where} is not writable; fix its permissions or choose another")
        return cls(path.resolve())
