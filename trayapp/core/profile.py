"""Where a profile lives: the directory holding the database, logs and anything else per user.

Resolution order, most specific first: an explicit directory (``--profile DIR``), the
``TRAYAPP_PROFILE`` environment variable, then the platformdirs user data dir for the app name
``trayapp`` (``~/.local/share/trayapp`` on Linux). Tests always pass a temporary directory, so
they never touch the user's real data.

The profile holds imported mail and events, the OAuth client and the account records, so it is
private: the folder is 0700 and every file in it 0600 (subfolders 0700), made so on creation
and fixed on every start for a profile made by an older version or loosened by hand (logged
once, when something was changed). One engine runs per profile: :meth:`Profile.lock_engine`
takes an ``fcntl`` lock on a file inside the profile, so the guarantee lives with the data, not
with the control socket in a shared folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from trayapp import APP_NAME
from trayapp.core.errors import TrayappError

if TYPE_CHECKING:
    from trayapp.core.store import Store

PROFILE_ENV = "TRAYAPP_PROFILE"
DB_FILENAME = "trayapp.db"
DB_MARKER = "trayapp.db.created"  # written once the database was opened healthy
LOCK_FILENAME = "engine.lock"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

log = logging.getLogger(__name__)

_user_umask: int | None = None


def use_private_umask() -> None:
    """Files this process creates are private (umask 077): the database, its WAL, logs,
    secrets. The user's own umask is kept for files written where the user chose
    (:func:`user_umask`)."""
    global _user_umask
    old = os.umask(0o077)
    if _user_umask is None:
        _user_umask = old


def user_umask() -> int:
    """The umask the process started with (before :func:`use_private_umask`)."""
    if _user_umask is not None:
        return _user_umask
    current = os.umask(0o077)
    os.umask(current)
    return current


class ProfileError(TrayappError):
    """The profile directory cannot be used (cannot be created, not a directory, not writable)."""


class ProfileBusy(ProfileError):
    """Another process runs an engine on this profile (see :meth:`Profile.lock_engine`)."""

    def __init__(self, message: str, pid: int | None, role: str) -> None:
        super().__init__(message)
        self.pid = pid
        self.role = role


@dataclass(frozen=True, slots=True)
class Profile:
    """A resolved, existing profile directory."""

    path: Path

    @property
    def db_path(self) -> Path:
        return self.path / DB_FILENAME

    def open_store(self, progress: Callable[[float], None] | None = None) -> Store:
        """The profile's database. Once it has been opened healthy a marker file says so, and
        a 0-byte database found later is treated as damage (moved aside, one clear message)
        instead of silently becoming an empty profile; a new profile has no marker.

        ``progress`` hears how far an upgrade of the database to this version's schema has
        come (0.0-1.0), when opening it needs one (see :meth:`upgrade_store`)."""
        from trayapp.core.store import Store

        marker = self.path / DB_MARKER
        store = Store.open(self.db_path, empty_is_damage=marker.exists(), progress=progress)
        if not marker.exists():
            with contextlib.suppress(OSError):
                fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
                os.close(fd)
        return store

    def upgrade_store(self, progress: Callable[[float], None]) -> bool:
        """Upgrade the database to this version's schema if it is older; True if it was.

        Seconds on a large profile (100k messages: ~8 s), so the app does it before its engine
        opens the store, on a worker thread, with ``progress`` (0.0-1.0, called on that thread)
        shown to the user. Crash safe: a killed upgrade starts over at the next start. The
        same errors as :meth:`open_store` (damaged file moved aside, disk full, newer schema).
        """
        from trayapp.core.store import needs_upgrade

        if not needs_upgrade(self.db_path):
            return False
        self.open_store(progress=progress).close()
        return True

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @classmethod
    def resolve(
        cls,
        explicit: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        *,
        private: bool = True,
    ) -> Profile:
        """Pick the profile directory and make sure it exists.

        A missing directory is created (a first run has none); one that cannot be created or is
        not a writable directory raises :class:`ProfileError` with one sentence saying which path
        and what to do, so the CLI never shows a traceback for it. ``private=False`` skips
        :meth:`make_private` (a walk over every file): the tray resolves its profile before its
        icon shows and tightens the modes right after it, when it opens the profile.
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
            path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ProfileError(
                f"cannot create {where}: {reason}; choose a directory you can write to"
            ) from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise ProfileError(f"{where} is not writable; fix its permissions or choose another")
        profile = cls(path.resolve())
        if private:
            profile.make_private()
        return profile

    def make_private(self) -> int:
        """Folder and subfolders 0700, files 0600; returns how many entries were changed.

        Symlinks are not followed (a link in the profile must not make us chmod its target) and
        entries we do not own are left alone. Says so in the log when it changed anything, which
        happens once: on the first start of a profile made before this rule.
        """
        home = Path.home().resolve()
        if self.path == home or self.path in home.parents:
            # A profile is a folder of its own; never chmod a whole home directory.
            log.warning("the profile %s is (or holds) your home folder; not changing modes", home)
            return 0
        changed = _tighten(str(self.path), PRIVATE_DIR_MODE)
        for root, dirs, files in os.walk(self.path, followlinks=False):
            changed += sum(_tighten(os.path.join(root, d), PRIVATE_DIR_MODE) for d in dirs)
            changed += sum(_tighten(os.path.join(root, f), PRIVATE_FILE_MODE) for f in files)
        if changed:
            log.warning(
                "made the profile %s private: %d file(s) or folder(s) were readable by other "
                "users and are now 0700/0600",
                self.path,
                changed,
            )
        return changed

    def lock_engine(self, role: str = "engine") -> ProfileLock:
        """Take the profile's engine lock, or raise :class:`ProfileBusy` saying who holds it.

        ``role`` says what holds it ("tray", "headless engine", "sync") for the message another
        process shows. Held until :meth:`ProfileLock.release` or the process ends (a crash or
        ``kill -9`` frees it: the kernel drops an ``fcntl`` lock with its process).
        """
        return ProfileLock.acquire(self, role)

    def engine_holder(self) -> tuple[int | None, str] | None:
        """(pid, role) of the process holding the engine lock, or None if it is free."""
        try:
            lock = ProfileLock.acquire(self, "probe")
        except ProfileBusy as busy:
            return busy.pid, busy.role
        lock.release()
        return None


def _tighten(entry: str, mode: int) -> int:
    """chmod ``entry`` to ``mode`` if others can reach it; 1 if it changed, else 0."""
    try:
        st = os.lstat(entry)
    except OSError:
        return 0
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.getuid() or not st.st_mode & 0o077:
        return 0
    try:
        os.chmod(entry, mode)
    except OSError as exc:
        log.warning("cannot make %s private: %s", entry, exc.strerror)
        return 0
    return 1


@dataclass
class ProfileLock:
    """An exclusive ``fcntl`` lock on ``engine.lock`` in the profile; see
    :meth:`Profile.lock_engine`. The file records the holder's pid and role."""

    path: Path
    fd: int | None = field(default=None, repr=False)

    @classmethod
    def acquire(cls, profile: Profile, role: str) -> ProfileLock:
        path = profile.path / LOCK_FILENAME
        if sys.platform == "win32":  # untested here: the IPC port file guards Windows
            return cls(path)
        import fcntl

        try:
            fd = os.open(
                path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE_MODE
            )
        except OSError as exc:
            raise ProfileError(
                f"cannot open the lock file {path} ({exc.strerror}); remove it if it is a link "
                "or a folder, and make the profile writable"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid, held_by = _read_holder(fd)
            os.close(fd)
            who = f"{held_by} (pid {pid})" if pid else held_by
            raise ProfileBusy(
                f"another {who} is already using the profile {profile.path}; "
                "wait for it to finish or stop it",
                pid,
                held_by,
            ) from None
        if role != "probe":
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n{role}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None


def _read_holder(fd: int) -> tuple[int | None, str]:
    try:
        text = os.pread(fd, 256, 0).decode("utf-8", "replace").split("\n")
    except OSError:
        return None, "trayapp process"
    pid = int(text[0]) if text and text[0].strip().isdigit() else None
    role = text[1].strip() if len(text) > 1 and text[1].strip() else "trayapp process"
    return pid, role
