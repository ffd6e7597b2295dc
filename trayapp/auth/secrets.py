"""Where refresh and access tokens live: the OS keyring, or a flagged 0600 file.

Tokens never go into the SQLite store (anyone who can read the profile could read them, and a
reviewer greps every profile file for them). They go into:

* the **OS keyring**, through ``keyring`` with the backend chosen *explicitly* per platform
  (Secret Service on Linux, Keychain on macOS, Credential Locker on Windows). keyring's
  automatic choice is never used: it may pick a backend that prompts, or silently fall back to
  a plaintext store;
* where no keyring exists at all, a **0600 file in the profile**. That is weaker than a keyring
  (any process of the same user can read it), so it is flagged: :attr:`SecretVault.warning`
  says so, and status and the tray show it.

A keyring that exists but is locked, or whose daemon is not running yet (a session that is still
starting), is *not ready*: operations raise :class:`KeyringNotReady` and the account shows
"waiting for keyring". It never falls back to the file for a secret that lives in the keyring,
and never reads as "signed out".

Every operation here blocks (D-Bus round trips take ~100 ms); async callers run them in
``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from trayapp.core.errors import TrayappError

log = logging.getLogger(__name__)

SERVICE = "trayapp"
SECRETS_FILE = "secrets.json"
ENV_SECRET_STORE = "TRAYAPP_SECRET_STORE"  # keyring | file | auto (default)


class SecretStoreKind(StrEnum):
    KEYRING = "keyring"
    FILE = "file"


class KeyringNotReady(TrayappError):
    """The OS keyring exists but cannot be used right now (locked, or its daemon not running)."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            "The system keyring is locked or not running yet "
            f"({detail}); unlock it (log in to your desktop session) and Pattern Sync will retry"
        )
        self.detail = detail


class SecretStore(Protocol):
    """One place secrets can be kept. Methods block; ``get`` returns None for a missing key."""

    kind: SecretStoreKind

    @property
    def description(self) -> str: ...

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...


# --- the OS keyring ------------------------------------------------------------------------


def _platform_backend_class() -> Any | None:
    """The keyring backend class for this OS, imported explicitly, or None if there is none."""
    try:
        if sys.platform.startswith("linux") or "bsd" in sys.platform:
            from keyring.backends import SecretService

            return SecretService.Keyring
        if sys.platform == "darwin":
            from keyring.backends import macOS

            return macOS.Keyring
        if sys.platform == "win32":
            from keyring.backends import Windows

            return Windows.WinVaultKeyring
    except ImportError:  # secretstorage missing, or a stripped-down frozen build
        return None
    return None


def _not_ready_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "keyring present but not usable now"."""
    from keyring.errors import InitError, KeyringError, KeyringLocked

    errors: list[type[BaseException]] = [KeyringLocked, InitError, KeyringError, OSError]
    try:
        from secretstorage.exceptions import SecretStorageException

        errors.append(SecretStorageException)
    except ImportError:
        pass
    try:
        from jeepney.wrappers import DBusErrorResponse

        errors.append(DBusErrorResponse)
    except ImportError:
        pass
    return tuple(errors)


class KeyringSecretStore:
    """Secrets in the OS keyring, through an explicitly chosen ``keyring`` backend."""

    kind = SecretStoreKind.KEYRING

    def __init__(self, backend: Any | None = None) -> None:
        # ``backend`` is a keyring backend *instance*; tests may pass one. None: this OS's own.
        self._backend = backend
        # The backend class (keyring -> secretstorage -> cryptography, jeepney) is imported on
        # first use, not when the vault is made at start (issue 17).
        self._class_known = backend is not None
        self._class: Any | None = type(backend) if backend is not None else None

    @property
    def _backend_class(self) -> Any | None:
        if not self._class_known:
            self._class = _platform_backend_class()
            self._class_known = True
        return self._class

    @property
    def description(self) -> str:
        name = self._backend_class.__module__ if self._backend_class else "none"
        return f"system keyring ({name.rsplit('.', 1)[-1]})"

    def available(self) -> tuple[bool, str]:
        """Whether the keyring answers now, and why not if it does not.

        keyring's backends report this through their ``priority``, which raises with a reason
        when the backend cannot work here (e.g. "The Secret Service daemon is neither running
        nor activatable through D-Bus").
        """
        if self._backend_class is None:
            return False, "no keyring backend exists for this platform"
        try:
            self._backend_class.priority  # noqa: B018 - the property performs the check
        except Exception as exc:
            return False, str(exc) or type(exc).__name__
        return True, ""

    def _instance(self) -> Any:
        if self._backend is None:
            ok, why = self.available()
            if not ok:
                raise KeyringNotReady(why)
            self._backend = self._backend_class()  # type: ignore[misc]
        return self._backend

    def _call(self, op: str, *args: str) -> Any:
        try:
            backend = self._instance()
            return getattr(backend, op)(SERVICE, *args)
        except KeyringNotReady:
            raise
        except _not_ready_errors() as exc:
            from keyring.errors import PasswordDeleteError

            if isinstance(exc, PasswordDeleteError):
                return None
            # Only the exception type and its text (D-Bus errors name the object, never the
            # secret) go into the message.
            raise KeyringNotReady(f"{type(exc).__name__}: {exc}") from None

    def get(self, key: str) -> str | None:
        value = self._call("get_password", key)
        return value if isinstance(value, str) else None

    def set(self, key: str, value: str) -> None:
        self._call("set_password", key, value)

    def delete(self, key: str) -> None:
        self._call("delete_password", key)


# --- the 0600 file fallback --------------------------------------------------------------


class FileSecretStore:
    """Secrets in a JSON file readable only by the user (0600), in the profile.

    Written atomically (temp file created 0600, fsync, rename) so a crash mid-write never
    leaves a torn file or a moment where the file is world-readable.
    """

    kind = SecretStoreKind.FILE

    def __init__(self, profile_dir: Path) -> None:
        self.path = Path(profile_dir) / SECRETS_FILE
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"file {self.path} (0600; no system keyring was found)"

    def _read(self) -> dict[str, str]:
        try:
            mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            return {}
        if mode & 0o077 and sys.platform != "win32":
            log.warning("secrets file %s had mode %o; restricting it to 0600", self.path, mode)
            os.chmod(self.path, 0o600)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TrayappError(
                f"the secrets file {self.path} cannot be read ({type(exc).__name__}); "
                "sign the accounts in again to recreate it"
            ) from None
        if not isinstance(data, dict):
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def _write(self, data: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".secrets-", dir=self.path.parent)  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._read().get(key)

    def set(self, key: str, value: str) -> None:
        with self._lock:
            data = self._read()
            data[key] = value
            self._write(data)

    def delete(self, key: str) -> None:
        with self._lock:
            data = self._read()
            if data.pop(key, None) is not None:
                self._write(data)

    def has_any(self) -> bool:
        with self._lock:
            return bool(self._read())


# --- the vault: which store a secret goes to ----------------------------------------------


FILE_WARNING = (
    "No system keyring was found: sign-in tokens are kept in a file readable only by you "
    "({path}). Install and unlock a keyring (e.g. GNOME Keyring or KWallet) for better protection."
)


class SecretVault:
    """Routes each account's secret to the keyring or the file, and remembers the choice.

    New secrets go to the keyring when it is usable; when there is *no* keyring at all (not
    "locked"), they go to the file, and :attr:`warning` becomes visible. An account whose
    secret was stored in one place is always read from that place, so a keyring that is slow
    to start never makes an account look signed out.

    ``mode`` forces a choice: ``"keyring"`` (never the file), ``"file"`` (never the keyring, for
    machines without one and for tests), ``"auto"`` (default; ``$TRAYAPP_SECRET_STORE`` overrides
    it).
    """

    def __init__(
        self,
        profile_dir: Path,
        *,
        mode: str | None = None,
        keyring_store: KeyringSecretStore | None = None,
    ) -> None:
        mode = mode or os.environ.get(ENV_SECRET_STORE, "auto")
        if mode not in ("auto", "keyring", "file"):
            raise TrayappError(
                f"unknown secret store {mode!r} (from ${ENV_SECRET_STORE}); "
                "use 'keyring', 'file' or 'auto'"
            )
        self.mode = mode
        self.keyring = keyring_store or KeyringSecretStore()
        self.file = FileSecretStore(profile_dir)

    def store(self, kind: SecretStoreKind | str) -> SecretStore:
        return self.file if SecretStoreKind(kind) is SecretStoreKind.FILE else self.keyring

    def store_for_new_secret(self) -> SecretStore:
        """Where a freshly signed-in account's secret goes. Raises KeyringNotReady.

        With mode auto: the keyring if it answers; the file only if this OS has no keyring
        backend or its service does not exist on this session bus. A keyring that exists but is
        locked raises, so the user unlocks it rather than getting a weaker store by accident.
        """
        if self.mode == "file":
            return self.file
        ok, why = self.keyring.available()
        if ok or self.mode == "keyring":
            if not ok:
                raise KeyringNotReady(why)
            return self.keyring
        log.warning("no system keyring (%s); storing tokens in a 0600 file", why)
        return self.file

    @property
    def warning(self) -> str | None:
        """A user-facing warning while any secret is in the file fallback, else None."""
        try:
            in_file = self.file.has_any()
        except TrayappError:
            in_file = True
        if in_file or self.mode == "file":
            return FILE_WARNING.format(path=self.file.path)
        return None
