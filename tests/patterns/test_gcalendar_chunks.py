"""A large Calendar page is stored in short steps (issue 17.5), and a run stopped between two
steps loses nothing: the cursor moves only with the last step of a page.

The real emulator, client, engine and store; only the step size and the page size are made
small so that a handful of events spans several steps and pages.
"""

from __future__ import annotations

from typing import Any

import pytest
from gcal_helpers import google_ids, records, stored_ids, watch_commits

from tests.emulator.harness import timed_event
from trayapp.core.errors import ServerError
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.retry import RetryPolicy
from trayapp.patterns import gcalendar
from trayapp.patterns.gcalendar import CalendarImporter

GoogleHarness = Any
HarnessFactory = Any

QUICK_RETRY = RetryPolicy(max_attempts=2, transport_attempts=1, base_delay=0.01, max_delay=0.02)


@pytest.fixture
async def h(google_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch) -> GoogleHarness:
    monkeypatch.setattr(gcalendar, "APPLY_CHUNK", 3)
    monkeypatch.setattr(gcalendar, "EVENTS_PAGE_SIZE", 10)
    return await google_harness(patterns=(CalendarImporter,), retry=QUICK_RETRY)


def add(h: GoogleHarness, n: int) -> list[str]:
    return [
        str(
            h.emu.control.add_event(
                h.email,
                h.email,
                timed_event(f"e{i}", f"2026-12-{1 + i % 27:02d}T09:00:00Z",
                            f"2026-12-{1 + i % 27:02d}T10:00:00Z"),
            )
        )
        for i in range(n)
    ]  # fmt: skip


async def test_a_page_is_stored_in_steps_each_its_own_commit(h: GoogleHarness) -> None:
    ids = add(h, 14)  # pages of 10 + 4 events; steps of 3: 4 + 2 commits
    charm = h.add_charm("gcalendar-importer", {})
    commits: list[int] = []
    events = h.collection(charm, "events")

    last = len(events)

    def committed() -> None:  # the events stored, after each commit that changed how many
        nonlocal last
        if len(events) != last:
            last = len(events)
            commits.append(last)

    stop = watch_commits(h, committed)
    try:
        outcome = await h.sync(charm)
    finally:
        stop()
    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert commits == [3, 6, 9, 10, 13, 14]  # every step committed on its own, in order
    assert stored_ids(h, charm, h.email) == set(ids)


async def test_a_run_stopped_between_steps_keeps_the_cursor_and_the_next_run_completes(
    h: GoogleHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    add(h, 14)
    charm = h.add_charm("gcalendar-importer", {})
    calls = 0
    real_apply = gcalendar._Sync.apply

    def failing_apply(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:  # the third step of the first page: two steps are already committed
            raise ServerError("the connection dropped")
        return real_apply(self, *args, **kwargs)

    monkeypatch.setattr(gcalendar._Sync, "apply", failing_apply)
    outcome = await h.sync(charm)
    assert outcome.kind is OutcomeKind.SERVER_ERROR
    record = records(h, charm)[h.email]
    assert record.sync_token is None and record.full_sync is not None
    assert record.full_sync.page_token is None and record.full_sync.pages == 0  # not advanced
    assert len(stored_ids(h, charm, h.email)) == 6  # what the two steps stored stays

    # Google changes meanwhile: a stored event is deleted before the listing starts again.
    h.emu.control.cancel_event(h.email, h.email, sorted(stored_ids(h, charm, h.email))[0])
    monkeypatch.setattr(gcalendar._Sync, "apply", real_apply)
    outcome = await h.sync(charm)
    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert stored_ids(h, charm, h.email) == await google_ids(h, h.email)
