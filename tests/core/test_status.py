"""CharmStatus.resting_state: the one rule the scheduler and the engine share."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from trayapp.core import slots
from trayapp.core.outcomes import OutcomeKind, RunOutcome, RunReport
from trayapp.core.status import CharmState, CharmStatus, Counts, Progress, finished, started


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, CharmState.SCHEDULED),
        ({"paused": True}, CharmState.PAUSED),
        ({"parked": True}, CharmState.PARKED),
        ({"paused": True, "parked": True}, CharmState.PAUSED),  # the user's action shows
        (
            {"consecutive_failures": 2, "last_error_kind": OutcomeKind.OFFLINE},
            CharmState.BACKING_OFF,
        ),
        (
            {"consecutive_failures": 1, "last_error_kind": OutcomeKind.AUTH_REQUIRED},
            CharmState.SCHEDULED,  # auth failures park (the flag), they do not back off
        ),
        (
            {"parked": True, "consecutive_failures": 1, "last_error_kind": OutcomeKind.BUG},
            CharmState.PARKED,
        ),
        ({"last_error_kind": OutcomeKind.SERVER_ERROR}, CharmState.SCHEDULED),  # 0 failures
    ],
)
def test_resting_state(changes: dict[str, object], expected: CharmState) -> None:
    # A stale saved ``state`` (RUNNING, from a crash) never leaks into the derived one.
    status = CharmStatus.from_json({"charm_id": "a", "state": "running"}).with_(**changes)
    assert status.resting_state() is expected


def test_an_outcome_round_trips_through_json() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    outcomes = [
        RunOutcome(OutcomeKind.OK, report=RunReport(added=2, updated=1, partial=("work",))),
        RunOutcome(OutcomeKind.RATE_LIMITED, message="slow down", retry_after=when),
        RunOutcome(OutcomeKind.BUG, message="KeyError: 'x'", traceback="Traceback ...\n"),
    ]
    for outcome in outcomes:
        data = json.loads(json.dumps(outcome.to_json()))
        assert RunOutcome.from_json(data) == outcome
    # The report's own message (an ok run's "not modified") is the effective message.
    quiet = RunOutcome(OutcomeKind.OK, report=RunReport(message="not modified"))
    back = RunOutcome.from_json(quiet.to_json())
    assert back.kind is OutcomeKind.OK and (back.message or back.report.message) == "not modified"


@pytest.mark.parametrize(
    "data",
    [
        {"outcome": "exploded"},
        {"outcome": "ok", "counts": {"added": "many"}},
        {"outcome": "ok", "counts": {"added": -1}},
        {"outcome": "ok", "partial": "work"},
        {"outcome": "rate_limited", "retry_after": "tomorrow"},
    ],
)
def test_a_malformed_outcome_is_a_value_error(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RunOutcome.from_json(data)


def test_status_copies_are_exactly_what_dataclasses_replace_builds() -> None:
    """The transitions copy statuses without dataclasses.replace (per-run cost, issue 17.6):
    every field must carry over, changed ones take the new value, unknown names are refused."""
    import dataclasses

    from trayapp.core.status import Counts, Progress

    at = datetime(2026, 12, 1, tzinfo=UTC)
    base = CharmStatus(
        "c1",
        running=True,
        last_run_at=at,
        last_success_at=at,
        next_due_at=at,
        consecutive_failures=3,
        last_outcome=OutcomeKind.OFFLINE,
        last_error_kind=OutcomeKind.OFFLINE,
        last_error="x",
        last_counts=Counts(1, 2, 3),
        totals=Counts(4, 5, 6),
        paused=True,
        paused_until=at,
        blocked_loop="b",
        parked=True,
        progress=Progress(1, 2, "items"),
    )
    for f in dataclasses.fields(CharmStatus):
        assert base.with_() == base and getattr(base.with_(), f.name) == getattr(base, f.name)
    changed = base.with_(running=False, paused_until=None, totals=Counts())
    assert changed == dataclasses.replace(base, running=False, paused_until=None, totals=Counts())
    assert base.running is True  # the original is untouched
    with pytest.raises(TypeError, match="no field 'bogus'"):
        base.with_(bogus=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.running = True  # type: ignore[misc]


@pytest.mark.parametrize("unpark", [True, False])
@pytest.mark.parametrize("added", [0, 3])
def test_a_successful_run_changes_what_replace_would(unpark: bool, added: int) -> None:
    """The OK transition sets its fields without a dict (slots.replacer); it must build exactly
    the status dataclasses.replace would, every other field kept."""
    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    before = CharmStatus(
        "c",
        running=True,
        last_run_at=t0,
        consecutive_failures=2,
        last_outcome=OutcomeKind.OFFLINE,
        last_error_kind=OutcomeKind.OFFLINE,
        last_error="offline",
        totals=Counts(5, 1, 0),
        paused=True,
        paused_until=t1,
        blocked_loop="old stall",
        parked=True,
        parked_alone=True,
        freezes=1,
        progress=Progress(3, 10),
        retry_after=t1,
    )
    outcome = RunOutcome(OutcomeKind.OK, RunReport(added=added))
    after = finished(before, outcome, t1, next_due_at=t1, unpark=unpark, blocked=None)
    counts = Counts(added, 0, 0)
    assert after == dataclasses.replace(
        before,
        running=False,
        progress=None,
        last_run_at=t1,
        last_outcome=OutcomeKind.OK,
        next_due_at=t1,
        last_success_at=t1,
        consecutive_failures=0,
        last_error_kind=None,
        last_error=None,
        last_counts=counts,
        totals=before.totals + counts,
        parked=before.parked and not unpark,
        parked_alone=before.parked_alone and not unpark,
        retry_after=None,
        freezes=0,
        blocked_loop=None,
    )
    assert started(after) == dataclasses.replace(after, running=True, progress=None)


def test_replacer_checks_its_field_names() -> None:
    with pytest.raises(TypeError, match="no field 'nope'"):
        slots.replacer(CharmStatus, "running", "nope")
    with pytest.raises(TypeError, match="named twice"):
        slots.replacer(CharmStatus, "running", "running")
