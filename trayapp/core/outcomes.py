"""How a run ends: the typed outcome kinds and the report a pattern returns.

Every run of a charm's ``bg_updater`` ends in exactly one :class:`OutcomeKind`. The scheduler
decides what happens next from the kind alone (back off, park the account, reset failures), so
patterns never need to know about scheduling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class OutcomeKind(StrEnum):
    """The closed set of ways a run can end. Values are stable: they appear in ``--json``."""

    OK = "ok"
    AUTH_REQUIRED = "auth_required"
    RATE_LIMITED = "rate_limited"
    OFFLINE = "offline"
    SERVER_ERROR = "server_error"
    BUG = "bug"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    # The charm's configuration is wrong (a feed URL that answers 404 or serves a web page): only
    # the user can fix it, so it is retried slowly and shown as needing attention.
    CONFIG_ERROR = "config_error"
    # The profile's disk is full or its store cannot be written: the user must free space.
    STORAGE = "storage"
    # The updater blocked the app (the event loop) past its deadline and was interrupted by the
    # watchdog: retried with backoff; parked after a few in a row (scheduler.FREEZE_LIMIT).
    FROZE = "froze"

    @property
    def is_failure(self) -> bool:
        """Counts toward consecutive failures (not cancelled: the user or shutdown did that)."""
        return self not in _NOT_FAILURES

    @property
    def backs_off(self) -> bool:
        """Transient or repeated failures that reschedule with exponential backoff.

        ``auth_required`` is not here: it parks the charm until its account is usable again.
        """
        return self in _BACKS_OFF

    @property
    def retries_slowly(self) -> bool:
        """Retried on a slow fixed schedule (the backoff cap), not every few seconds.

        Retrying sooner cannot help: nothing changes until the user acts. The slow retry still
        notices a fix made outside the app (the site put the feed back).
        """
        return self is OutcomeKind.CONFIG_ERROR

    @property
    def needs_user(self) -> bool:
        """Only the user can fix it: shown as needing attention and notified at once."""
        return self in _NEEDS_USER


# The kinds behind the properties above, as sets: the scheduler asks them on every run, and a
# tuple of members built per call cost more than the rest of the question (issue 17.6).
_NOT_FAILURES = frozenset({OutcomeKind.OK, OutcomeKind.CANCELLED})
_BACKS_OFF = frozenset(
    {
        OutcomeKind.RATE_LIMITED,
        OutcomeKind.OFFLINE,
        OutcomeKind.SERVER_ERROR,
        OutcomeKind.BUG,
        OutcomeKind.TIMEOUT,
        OutcomeKind.STORAGE,
        OutcomeKind.FROZE,
    }
)
_NEEDS_USER = frozenset({OutcomeKind.AUTH_REQUIRED, OutcomeKind.CONFIG_ERROR, OutcomeKind.STORAGE})


@dataclass(frozen=True, slots=True)
class RunReport:
    """What a pattern's ``bg_updater`` returns on success.

    ``partial`` names the parts that failed while the rest succeeded (for example one calendar of
    several); a report with ``partial`` set is still an ``ok`` outcome but is shown as a warning.

    ``next_poll`` asks for a *later* next run than the charm's interval (a server's
    ``X-Poll-Interval``, see :func:`trayapp.api.http.poll_interval_hint`): the scheduler waits
    at least that long, at most a day (``MAX_RETRY_AFTER``); a value shorter than the interval
    changes nothing.
    """

    added: int = 0
    updated: int = 0
    removed: int = 0
    partial: tuple[str, ...] = ()
    message: str = ""
    next_poll: timedelta | None = None

    def __post_init__(self) -> None:
        for name in ("added", "updated", "removed"):
            if getattr(self, name) < 0:
                raise ValueError(f"RunReport.{name} must be >= 0")
        if self.next_poll is not None and (
            not isinstance(self.next_poll, timedelta) or self.next_poll < timedelta(0)
        ):
            raise ValueError("RunReport.next_poll must be a timedelta >= 0 (or None)")

    @property
    def changed(self) -> int:
        return self.added + self.updated + self.removed


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """The recorded end of one run, whatever happened."""

    kind: OutcomeKind
    report: RunReport = field(default_factory=RunReport)
    message: str = ""
    traceback: str | None = None
    # For rate_limited: the earliest time the server said to try again, if it said one.
    retry_after: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.OK

    def to_json(self) -> dict[str, Any]:
        """The outcome as ``trayapp sync --json`` shows it (docs/cli.md) and IPC carries it.

        ``message`` is the effective message: the outcome's own, else the report's (an ``ok``
        run's "not modified"). :meth:`from_json` reads it back.
        """
        report = self.report
        return {
            "outcome": self.kind.value,
            "ok": self.ok,
            "counts": {"added": report.added, "updated": report.updated, "removed": report.removed},
            "message": self.message or report.message,
            "partial": list(report.partial),
            "retry_after": self.retry_after.isoformat() if self.retry_after else None,
            "traceback": self.traceback,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunOutcome:
        """The inverse of :meth:`to_json`; raises ValueError naming what is malformed."""
        try:
            kind = OutcomeKind(str(data.get("outcome")))
        except ValueError:
            raise ValueError(f"unknown outcome {data.get('outcome')!r}") from None
        counts = data.get("counts") or {}
        partial = data.get("partial") or ()
        retry_after = data.get("retry_after")
        traceback = data.get("traceback")
        if not isinstance(counts, Mapping) or not isinstance(partial, list | tuple):
            raise ValueError("malformed counts or partial in an outcome")
        try:
            report = RunReport(
                added=int(counts.get("added") or 0),
                updated=int(counts.get("updated") or 0),
                removed=int(counts.get("removed") or 0),
                partial=tuple(str(p) for p in partial),
            )
            when = datetime.fromisoformat(retry_after) if isinstance(retry_after, str) else None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed outcome: {exc}") from None
        return cls(
            kind,
            report=report,
            message=str(data.get("message") or ""),
            traceback=traceback if isinstance(traceback, str) else None,
            retry_after=when,
        )


WAITING_PREFIX = "the server asked to wait"


def waiting_outcome(until: datetime) -> RunOutcome:
    """What a manual sync of a charm waiting for the server's Retry-After answers: it did not
    run (``rate_limited``, ``retry_after`` = ``until``), and says when the next try is."""
    local = until.astimezone()
    today = datetime.now(local.tzinfo).date()
    at = local.strftime("%H:%M") if local.date() == today else local.strftime("%a %H:%M")
    return RunOutcome(
        OutcomeKind.RATE_LIMITED, message=f"{WAITING_PREFIX}; next try at {at}", retry_after=until
    )
