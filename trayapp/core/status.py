"""Per-charm status and run history: the data the tray, the CLI and ``--json`` all show.

These are plain, Qt-free values. The scheduler is their one writer: it changes a status only
through the pure transitions at the end of this module. The store persists the facts
(``to_record``, so they survive restarts); ``state`` is never stored but computed from them
(:func:`charm_state`), so no crash can leave a stale one behind. Observers (the tray, ``trayapp
status``) read snapshots. ``to_json`` is the stable, documented shape of ``trayapp status
--json`` (see docs/cli.md); add fields, never rename.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from trayapp.core import slots
from trayapp.core.outcomes import OutcomeKind, RunOutcome, RunReport
from trayapp.core.retry import MAX_RETRY_AFTER


class CharmState(StrEnum):
    """What the scheduler is doing with a charm right now: never stored, always computed from
    the facts in :class:`CharmStatus` (see :func:`charm_state`)."""

    SCHEDULED = "scheduled"  # waiting for its next due time; healthy or not, see last_outcome
    RUNNING = "running"
    PAUSED = "paused"  # by the user, until resumed or until paused_until
    # Its account needs the user (sign in again): runs once the account is usable. Or
    # (``parked_frozen``) it blocked the app too often: runs once the user resumes it.
    PARKED = "parked"
    BACKING_OFF = "backing_off"  # after a transient failure, waiting longer than its interval


def _dt(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Counts:
    added: int = 0
    updated: int = 0
    removed: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.added + other.added, self.updated + other.updated, self.removed + other.removed
        )

    def to_json(self) -> dict[str, int]:
        return {"added": self.added, "updated": self.updated, "removed": self.removed}

    @classmethod
    def from_json(cls, data: Any) -> Counts:
        if not isinstance(data, dict):
            return cls()
        return cls(
            int(data.get("added", 0)), int(data.get("updated", 0)), int(data.get("removed", 0))
        )


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a running charm is, as its updater last said (``ctx.progress``)."""

    done: int
    total: int | None = None  # None: not known yet
    unit: str = "items"

    def to_json(self) -> dict[str, Any]:
        return {"done": self.done, "total": self.total, "unit": self.unit}

    @classmethod
    def from_json(cls, data: Any) -> Progress | None:
        if not isinstance(data, dict) or not isinstance(data.get("done"), int):
            return None
        total = data.get("total")
        return cls(
            int(data["done"]),
            int(total) if isinstance(total, int) else None,
            str(data.get("unit") or "items"),
        )


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One finished run, kept in the charm's history (the last 50 are persisted)."""

    charm_id: str
    started_at: datetime
    finished_at: datetime
    outcome: OutcomeKind
    counts: Counts = field(default_factory=Counts)
    message: str = ""
    traceback: str | None = None
    partial: tuple[str, ...] = ()
    trigger: str = "schedule"  # schedule | manual | resume | account

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @classmethod
    def from_outcome(
        cls,
        charm_id: str,
        started_at: datetime,
        finished_at: datetime,
        outcome: RunOutcome,
        trigger: str = "schedule",
    ) -> RunRecord:
        r = outcome.report
        # Field order of the class (built without __init__: one per run, see core/slots.py).
        record: RunRecord = _build_record(
            charm_id,
            started_at,
            finished_at,
            outcome.kind,
            counts_of(r),
            outcome.message or r.message,
            outcome.traceback,
            r.partial,
            trigger,
        )
        return record

    def to_json(self) -> dict[str, Any]:
        return {
            "charm_id": self.charm_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_s": round(self.duration_s, 3),
            "outcome": self.outcome.value,
            "counts": self.counts.to_json(),
            "message": self.message,
            "traceback": self.traceback,
            "partial": list(self.partial),
            "trigger": self.trigger,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        started = _parse_dt(data["started_at"])
        finished = _parse_dt(data["finished_at"])
        assert started is not None and finished is not None
        return cls(
            charm_id=str(data["charm_id"]),
            started_at=started,
            finished_at=finished,
            outcome=OutcomeKind(data["outcome"]),
            counts=Counts.from_json(data.get("counts")),
            message=str(data.get("message", "")),
            traceback=data.get("traceback"),
            partial=tuple(data.get("partial", ())),
            trigger=str(data.get("trigger", "schedule")),
        )


@dataclass(frozen=True, slots=True)
class CharmStatus:
    """Everything the user may want to know about one charm, at a glance."""

    charm_id: str
    # A run of it executes now. Set and cleared by the scheduler that runs it; a status read
    # from the store says running only while the process that wrote it is alive
    # (StoreStatusRepo), so a crash never leaves "running" behind.
    running: bool = False
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    next_due_at: datetime | None = None
    consecutive_failures: int = 0
    last_outcome: OutcomeKind | None = None
    last_error_kind: OutcomeKind | None = None
    last_error: str | None = None
    last_counts: Counts = field(default_factory=Counts)
    totals: Counts = field(default_factory=Counts)
    paused: bool = False
    paused_until: datetime | None = None  # None while paused means "until resumed"
    # Set by the loop-lag watchdog: this charm's updater blocked the event loop.
    blocked_loop: str | None = None
    # Its account needs the user (sign in again): no scheduled runs until the account is usable.
    # The one place parking lives: a charm can be parked and paused at once (``state`` shows one
    # of them), and parking survives a restart in either case.
    parked: bool = False
    # Parked for a permission only this charm needs and its account has not granted: the
    # account works, so its other charms keep syncing and a charm added later does not wait.
    parked_alone: bool = False
    # Runs in a row that blocked the app past their deadline and were interrupted (``froze``);
    # any other end of a run (but cancelled) resets it.
    freezes: int = 0
    # Parked because it froze too often (also ``parked_alone``: its account is fine): only the
    # user's resume unparks it, not a sign-in.
    parked_frozen: bool = False
    # While RUNNING: what the updater last reported through ``ctx.progress`` (None otherwise).
    progress: Progress | None = None
    # The last run was rate_limited and the server said when to try again (capped at a day):
    # no run before then, not even one the user asks for (docs/plugins.md). None otherwise.
    retry_after: datetime | None = None

    def waiting_until(self, now: datetime) -> datetime | None:
        """When the server allows the next request, if that is still ahead of ``now``."""
        when = self.retry_after
        if when is None or self.last_outcome is not OutcomeKind.RATE_LIMITED or when <= now:
            return None
        return when

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures == 0 and self.last_outcome in (None, OutcomeKind.OK)

    @property
    def state(self) -> CharmState:
        """Computed from the facts, never stored: see :func:`charm_state`."""
        return charm_state(self)

    def with_(self, **changes: Any) -> CharmStatus:
        return _evolve(self, changes)

    def resting_state(self) -> CharmState:
        """The state of this charm while no run of it executes (see :func:`charm_state`)."""
        return charm_state(_evolve(self, {"running": False}))

    def to_json(self) -> dict[str, Any]:
        """The ``status --json`` shape: the stored facts plus the derived ``state``/``healthy``."""
        return {
            "charm_id": self.charm_id,
            "state": self.state.value,
            "healthy": self.healthy,
            **self.to_record(),
        }

    def to_record(self) -> dict[str, Any]:
        """The facts only, as the store keeps them (no ``state``: it is computed on read)."""
        return {
            "charm_id": self.charm_id,
            "running": self.running,
            "last_run_at": _dt(self.last_run_at),
            "last_success_at": _dt(self.last_success_at),
            "next_due_at": _dt(self.next_due_at),
            "consecutive_failures": self.consecutive_failures,
            "last_outcome": self.last_outcome.value if self.last_outcome else None,
            "last_error_kind": self.last_error_kind.value if self.last_error_kind else None,
            "last_error": self.last_error,
            "last_counts": self.last_counts.to_json(),
            "totals": self.totals.to_json(),
            "paused": self.paused,
            "paused_until": _dt(self.paused_until),
            "blocked_loop": self.blocked_loop,
            "parked": self.parked,
            "parked_alone": self.parked_alone,
            "freezes": self.freezes,
            "parked_frozen": self.parked_frozen,
            "progress": self.progress.to_json() if self.progress is not None else None,
            "retry_after": _dt(self.retry_after),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CharmStatus:
        def kind(v: Any) -> OutcomeKind | None:
            return OutcomeKind(v) if v else None

        parked = data.get("parked")
        if parked is None:
            # Saved before ``parked`` existed: parking was implied by the state or by the last
            # outcome (a parked charm that was also paused showed only "paused").
            parked = data.get("state") == CharmState.PARKED.value or (
                data.get("last_outcome") == OutcomeKind.AUTH_REQUIRED.value
            )
        # A stored ``state`` (written by older versions) is ignored: it is derived from the facts.
        return cls(
            charm_id=str(data["charm_id"]),
            running=data.get("running") is True,
            last_run_at=_parse_dt(data.get("last_run_at")),
            last_success_at=_parse_dt(data.get("last_success_at")),
            next_due_at=_parse_dt(data.get("next_due_at")),
            consecutive_failures=int(data.get("consecutive_failures", 0)),
            last_outcome=kind(data.get("last_outcome")),
            last_error_kind=kind(data.get("last_error_kind")),
            last_error=data.get("last_error"),
            last_counts=Counts.from_json(data.get("last_counts")),
            totals=Counts.from_json(data.get("totals")),
            paused=bool(data.get("paused", False)),
            paused_until=_parse_dt(data.get("paused_until")),
            blocked_loop=data.get("blocked_loop"),
            parked=bool(parked),
            parked_alone=bool(parked) and data.get("parked_alone") is True,
            freezes=int(data.get("freezes") or 0),
            parked_frozen=bool(parked) and data.get("parked_frozen") is True,
            progress=Progress.from_json(data.get("progress")),
            retry_after=_parse_dt(data.get("retry_after")),
        )


# ---------------------------------------------------------------------------------------------
# The state rule and the transitions: pure functions, the scheduler is their only caller.


def charm_state(status: CharmStatus) -> CharmState:
    """The one rule from facts to state. Running shows over everything (the user sees work
    happen); paused over parked (the user's own action is what they look for); a failure that
    backs off shows as backing off; anything else waits for its next due time."""
    if status.running:
        return CharmState.RUNNING
    if status.paused:
        return CharmState.PAUSED
    if status.parked:
        return CharmState.PARKED
    kind = status.last_error_kind
    if status.consecutive_failures > 0 and kind is not None and kind.backs_off:
        return CharmState.BACKING_OFF
    return CharmState.SCHEDULED


# A copy of a status with some fields changed, for the transitions below. dataclasses.replace
# checks every field's kind and goes through the frozen __init__ (one object.__setattr__ per
# field); the scheduler makes two copies per run, so at 10k charms that showed up in the
# per-run profile (issue 17.6). CharmStatus has slots, no __post_init__ and no init=False
# fields, so setting the slots directly builds exactly what replace() would
# (trayapp.core.slots). The transitions pass their own literal field names and skip the check.
_SLOT_NAMES = frozenset(f.name for f in fields(CharmStatus))
_copy_status = slots.copier(CharmStatus)
_build_record = slots.builder(RunRecord)
_build_counts = slots.builder(Counts)
NO_COUNTS = Counts()  # shared: most runs change nothing, and Counts is immutable


def counts_of(report: RunReport) -> Counts:
    """A report's counts; the shared :data:`NO_COUNTS` when it changed nothing."""
    added, updated, removed = report.added, report.updated, report.removed
    if not (added or updated or removed):
        return NO_COUNTS
    return _build_counts(added, updated, removed)


def _evolve(status: CharmStatus, changes: dict[str, Any]) -> CharmStatus:
    if not changes.keys() <= _SLOT_NAMES:
        unknown = sorted(changes.keys() - _SLOT_NAMES)
        raise TypeError(f"CharmStatus has no field {unknown[0]!r}")
    return _copy_status(status, changes)


# The two transitions of every run, as fixed-field copies (no dictionary per run).
_start = slots.replacer(CharmStatus, "running", "progress")
_end_ok = slots.replacer(
    CharmStatus,
    "running",
    "progress",
    "last_run_at",
    "last_outcome",
    "next_due_at",
    "last_success_at",
    "consecutive_failures",
    "last_error_kind",
    "last_error",
    "last_counts",
    "totals",
    "parked",
    "parked_alone",
    "retry_after",
    "freezes",
    "blocked_loop",
)


def started(status: CharmStatus) -> CharmStatus:
    """A run of the charm began."""
    return _start(status, True, None)


def finished(
    status: CharmStatus,
    outcome: RunOutcome,
    ended: datetime,
    *,
    next_due_at: datetime | None,
    unpark: bool,
    blocked: str | None,
) -> CharmStatus:
    """A run ended with ``outcome``. The caller (the scheduler) decides the timing
    (``next_due_at``: interval, backoff or Retry-After) and whether a success unparks; the rest
    of what changes follows from the outcome kind alone."""
    kind = outcome.kind
    if kind is OutcomeKind.OK:  # most runs: the same fields as below, set without a dict
        counts = counts_of(outcome.report)
        return _end_ok(
            status,
            False,  # running
            None,  # progress
            ended,  # last_run_at
            kind,  # last_outcome
            next_due_at,
            ended,  # last_success_at
            0,  # consecutive_failures
            None,  # last_error_kind
            None,  # last_error
            counts,  # last_counts
            status.totals if counts is NO_COUNTS else status.totals + counts,
            False if unpark else status.parked,
            False if unpark else status.parked_alone,
            None,  # retry_after: only a rate limit carries one
            0,  # freezes
            blocked,  # blocked_loop: a clean run clears an old stall
        )
    changes: dict[str, Any] = {
        "running": False,
        "progress": None,
        "last_run_at": ended,
        "last_outcome": kind,
        "next_due_at": next_due_at,
    }
    if kind.is_failure:
        changes.update(
            consecutive_failures=status.consecutive_failures + 1,
            last_error_kind=kind,
            last_error=outcome.message or kind.value,
        )
    if kind is not OutcomeKind.CANCELLED:
        # Only a rate limit carries the server's wait; any other end forgets an older one.
        wait = outcome.retry_after if kind is OutcomeKind.RATE_LIMITED else None
        if wait is not None and wait - ended > MAX_RETRY_AFTER:
            wait = ended + MAX_RETRY_AFTER
        changes["retry_after"] = wait
    if kind is OutcomeKind.AUTH_REQUIRED:
        changes["parked"] = True
        changes["next_due_at"] = None
    if kind is OutcomeKind.FROZE:
        changes["freezes"] = status.freezes + 1
    elif kind is not OutcomeKind.CANCELLED:
        changes["freezes"] = 0
    if kind is not OutcomeKind.CANCELLED:
        changes["blocked_loop"] = blocked  # a clean run clears an old stall
    return _copy_status(status, changes)


def paused(status: CharmStatus, until: datetime | None) -> CharmStatus:
    """The user paused it, until resumed (``until`` None) or until ``until``."""
    return _evolve(status, {"paused": True, "paused_until": until})


def resumed(status: CharmStatus) -> CharmStatus:
    return _evolve(status, {"paused": False, "paused_until": None})


def parked(status: CharmStatus, *, alone: bool = False, frozen: bool = False) -> CharmStatus:
    """Its account needs the user: no scheduled runs until the account is usable. ``alone``:
    only this charm lacks a permission; its account works (see ``CharmStatus.parked_alone``).
    ``frozen``: it blocked the app too often; parked alone until the user resumes it."""
    return _evolve(
        status, {"parked": True, "parked_alone": alone or frozen, "parked_frozen": frozen}
    )


def unparked(status: CharmStatus) -> CharmStatus:
    return _evolve(status, {"parked": False, "parked_alone": False, "parked_frozen": False})


def due(status: CharmStatus, at: datetime | None) -> CharmStatus:
    """Its next run is due at ``at`` (None: parked, no scheduled run)."""
    return _evolve(status, {"next_due_at": at})


def loaded(status: CharmStatus, now: datetime) -> CharmStatus:
    """A saved status as a scheduler takes it over: a pause that ended while the app was off is
    over, and no run of it is executing in this scheduler yet."""
    if status.paused and status.paused_until is not None and status.paused_until <= now:
        status = resumed(status)
    return _evolve(status, {"running": False, "progress": None})
