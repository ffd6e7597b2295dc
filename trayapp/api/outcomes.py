"""How a run ends: a :class:`RunReport`, or one of the errors that name the outcome.

* return :class:`RunReport` -> ``ok`` (``partial`` names parts that failed while the rest worked);
* raise :class:`AuthRequired` -> the account is parked until the user signs in again;
* raise :class:`RateLimited` (with ``retry_after`` when the server said), :class:`Offline` or
  :class:`ServerError` -> retried later with backoff, never disabled;
* raise :class:`ConfigProblem` when the charm's settings cannot work -> shown as needing the
  user's attention, retried slowly;
* raise :class:`RunTimedOut` when a deadline of the pattern's own passed (an external program
  that ran too long and was stopped) -> ``timeout``, retried with backoff;
* any other exception is a ``bug`` in the pattern, recorded with its traceback.

:class:`SyncError` is their common base. :class:`ExportError` is what ``Pattern.export`` raises for
a request that cannot be met; :func:`atomic_output` and :func:`write_jsonl` write an export file
so that a failed export never leaves half a file behind.
"""

from __future__ import annotations

from trayapp.core.errors import (
    AuthRequired,
    ConfigProblem,
    ExportError,
    Offline,
    RateLimited,
    RunTimedOut,
    ServerError,
    SyncError,
)
from trayapp.core.export import atomic_output, write_jsonl
from trayapp.core.outcomes import RunReport

__all__ = [
    "AuthRequired",
    "ConfigProblem",
    "ExportError",
    "Offline",
    "RateLimited",
    "RunReport",
    "RunTimedOut",
    "ServerError",
    "SyncError",
    "atomic_output",
    "write_jsonl",
]
