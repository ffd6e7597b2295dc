"""CharmStatus.resting_state: the one rule the scheduler and the engine share."""

from __future__ import annotations

import pytest

from trayapp.core.outcomes import OutcomeKind
from trayapp.core.status import CharmState, CharmStatus


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
    status = CharmStatus("a", state=CharmState.RUNNING).with_(**changes)
    assert status.resting_state() is expected
