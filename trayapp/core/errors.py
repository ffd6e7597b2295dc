"""The exception hierarchy.

Two families:

* :class:`SyncError` and subclasses are raised *by patterns* (or the Google client on their
  behalf) to end a run with a specific :class:`~trayapp.core.outcomes.OutcomeKind`. Any other
  exception from a pattern is a ``bug``.
* :class:`TrayappError` and subclasses are user-facing errors of the app itself (bad settings,
  unknown charm, corrupt store...). Their message is one clear sentence saying what is wrong and
  what to do; the CLI prints it as a single line on stderr.

Messages never contain secrets: tokens are never interpolated into an exception.
"""

from __future__ import annotations

from datetime import datetime

from trayapp.core.outcomes import OutcomeKind


class TrayappError(Exception):
    """Base for user-facing errors: ``str(err)`` is the message to show."""


class ConfigError(TrayappError):
    """Bad settings or command-line input."""


class SettingsError(ConfigError):
    """A charm's settings failed validation; the message lists each problem by field."""


class ExportError(ConfigError):
    """An export that cannot be made as asked (unknown format, data not kept); says what to do."""


class ExportIncomplete(ExportError):
    """The export was written, but stored rows that could not be read are missing from it."""

    def __init__(self, count: int, unreadable: list[tuple[str, str]], dest: object) -> None:
        keys = ", ".join(key for _coll, key in unreadable[:5])
        more = f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        super().__init__(
            f"exported {count} item{'s' if count != 1 else ''} to {dest}, but "
            f"{len(unreadable)} stored item{'s' if len(unreadable) != 1 else ''} could not be "
            f"read and {'are' if len(unreadable) != 1 else 'is'} missing from it ({keys}{more}); "
            "the charm's stored data is damaged: reset the charm (tray: Reset and resync) or "
            "remove and add it again to fetch it anew"
        )
        self.count = count
        self.unreadable = unreadable


class NotFoundError(TrayappError):
    """An unknown charm, pattern, account or cell."""


class DamagedRecordError(TrayappError):
    """A stored record (a charm's definition) cannot be read; the rest of the store can."""


class ReadOnlyCellError(TrayappError):
    """A write through a derived (read-only) cell. Never silently ignored."""

    def __init__(self, cell_name: str) -> None:
        super().__init__(
            f"cell {cell_name!r} is read-only (it is derived from other cells); "
            "write to the writable cell it is computed from instead"
        )
        self.cell_name = cell_name


class BindingError(ConfigError):
    """A charm binding that cannot work, refused when the charm is created."""


class StoreError(TrayappError):
    """The database cannot be used."""


class StoreFullError(StoreError):
    """The disk holding the database is full: the change was rolled back, nothing was lost."""


class StoreCorruptError(StoreError):
    """The database file is damaged. It has been moved aside, never silently replaced."""


class SyncError(Exception):
    """Raised inside a run to end it with a specific outcome kind."""

    kind: OutcomeKind = OutcomeKind.SERVER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AuthRequired(SyncError):
    """The account cannot be used until the user signs in again (or fixes the client).

    ``charm_only``: the account works, but this charm needs a permission its grant lacks; only
    this charm waits (for the grant), its account's other charms keep syncing.
    """

    kind = OutcomeKind.AUTH_REQUIRED

    def __init__(
        self, message: str, *, account_id: str | None = None, charm_only: bool = False
    ) -> None:
        super().__init__(message)
        self.account_id = account_id
        self.charm_only = charm_only


class RateLimited(SyncError):
    """The server asked us to slow down; ``retry_after`` is when it said to come back."""

    kind = OutcomeKind.RATE_LIMITED

    def __init__(self, message: str, *, retry_after: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Offline(SyncError):
    """The network or the server could not be reached."""

    kind = OutcomeKind.OFFLINE


class ServerError(SyncError):
    """The server failed (5xx, or a malformed response)."""

    kind = OutcomeKind.SERVER_ERROR


class ConfigProblem(SyncError):
    """The charm's settings cannot work as they are (a URL that is not found or not a feed).

    The message says what is wrong and what the user should change; the run is retried slowly.
    """

    kind = OutcomeKind.CONFIG_ERROR


class RunTimedOut(SyncError):
    """The run went on past a deadline the pattern set itself (say an external program's
    timeout) and was stopped; recorded as ``timeout``, retried with backoff."""

    kind = OutcomeKind.TIMEOUT


class StorageProblem(SyncError):
    """The profile's disk is full or its database cannot be written; nothing was lost."""

    kind = OutcomeKind.STORAGE


STORAGE_FULL_MESSAGE = (
    "the disk holding the profile is full, so new data cannot be saved (nothing stored was "
    "lost); free some space and it will continue"
)
