"""A full 2,500-event Calendar page, with the importer's real step and page sizes, is stored in
short transactions with the event loop running between them (issue 17.5: no write may hold the
loop more than 50 ms). Counted, never timed: commits, events per commit, and turns of a task
that runs beside the sync. The real emulator, client, engine and store.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from gcal_helpers import stored_ids, watch_commits

from tests.emulator.harness import timed_event
from trayapp.core.outcomes import OutcomeKind
from trayapp.patterns import gcalendar
from trayapp.patterns.gcalendar import CalendarImporter

GoogleHarness = Any
HarnessFactory = Any


@pytest.fixture
async def h(google_harness: HarnessFactory) -> GoogleHarness:
    return await google_harness(patterns=(CalendarImporter,))


async def test_a_full_page_is_stored_in_small_steps_with_the_loop_running_between(
    h: GoogleHarness,
) -> None:
    assert gcalendar.EVENTS_PAGE_SIZE == 2500 and gcalendar.APPLY_CHUNK <= 100
    ids = {
        str(h.emu.control.add_event(h.email, h.email, timed_event(
            f"e{i}", f"2026-12-{1 + i % 27:02d}T09:00:00Z", f"2026-12-{1 + i % 27:02d}T10:00:00Z")))
        for i in range(2600)
    }  # fmt: skip
    charm = h.add_charm("gcalendar-importer", {})
    events = h.collection(charm, "events")
    turns = 0  # how often a task beside the sync got the loop

    async def beside() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    steps: list[tuple[int, int]] = []  # (events stored after the commit, turns so far)

    def committed() -> None:
        if not steps or len(events) != steps[-1][0]:
            steps.append((len(events), turns))

    stop = watch_commits(h, committed)
    other = asyncio.create_task(beside())
    try:
        outcome = await h.sync(charm)
    finally:
        stop()
        other.cancel()
    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert stored_ids(h, charm, h.email) == ids
    sizes = [b[0] - a[0] for a, b in itertools.pairwise([(0, 0), *steps])]
    assert len(sizes) >= 26 and max(sizes) <= gcalendar.APPLY_CHUNK  # 2,500 + 100 events
    # Between any two steps of the page the other task ran: the loop was free.
    assert all(b[1] > a[1] for a, b in itertools.pairwise(steps))
