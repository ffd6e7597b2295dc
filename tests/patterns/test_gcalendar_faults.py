"""The Google Calendar importer when Google fails: 410 recovery (resumable, with a loop
breaker), one failing calendar isolated from the others, every calendar failing.

Faults are the emulator's own rules (a 410, 500 or 503 on one calendar's events path), so the
client, the retries and the store are all real.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from gcal_helpers import after_listed_pages, events, google_ids, records, stored_ids

from tests.emulator.harness import timed_event
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.retry import RetryPolicy
from trayapp.patterns import gcalendar
from trayapp.patterns.gcalendar import CalendarImporter, CalendarRecord

GoogleHarness = Any
HarnessFactory = Any

QUICK_RETRY = RetryPolicy(max_attempts=2, transport_attempts=1, base_delay=0.01, max_delay=0.02)


@pytest.fixture
async def h(google_harness: HarnessFactory) -> GoogleHarness:
    return await google_harness(patterns=(CalendarImporter,), retry=QUICK_RETRY)


def add(h: GoogleHarness, calendar_id: str, summary: str, day: int = 1) -> str:
    return str(
        h.emu.control.add_event(
            h.email,
            calendar_id,
            timed_event(summary, f"2026-12-{day:02d}T09:00:00Z", f"2026-12-{day:02d}T10:00:00Z"),
        )
    )


def events_path(calendar_id: str) -> str:
    return f"/calendar/v3/calendars/{calendar_id}/events"


def calendar_requests(h: GoogleHarness, calendar_id: str) -> list[Any]:
    return [
        r
        for r in h.emu.control.requests(api_method="calendar.events.list")
        if r.path == events_path(calendar_id)
    ]


def forget_on_google(h: GoogleHarness, calendar_id: str, event_id: str) -> None:
    """Google purges old cancelled events; a resync no longer hears of such an event at all."""
    h.emu.app.state.account(h.email).calendars.calendars[calendar_id].events.pop(event_id)


def set_record(h: GoogleHarness, charm: str, calendar_id: str, **changes: Any) -> None:
    coll = h.collection(charm, "calendars")
    record = CalendarRecord.model_validate(coll.get(calendar_id))
    coll.upsert(calendar_id, record.model_copy(update=changes).model_dump(mode="json"))


async def assert_store_is_google(h: GoogleHarness, charm: str, calendar_id: str) -> None:
    expected = await google_ids(h, calendar_id)
    assert stored_ids(h, charm, calendar_id) == expected


async def test_410_resyncs_that_calendar_and_removes_what_google_forgot(
    h: GoogleHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gcalendar, "EVENTS_PAGE_SIZE", 3)
    other = h.emu.control.add_calendar(h.email, summary="Other")
    ids = [add(h, h.email, f"e{i}", 1 + i) for i in range(7)]
    add(h, other, "other")
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK

    h.emu.control.invalidate_sync_tokens(h.email, h.email)
    forget_on_google(h, h.email, ids[0])
    h.emu.control.update_event(h.email, h.email, ids[1], {"summary": "changed"})
    new = add(h, h.email, "new", 20)
    h.emu.control.clear_log()
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert (outcome.report.added, outcome.report.updated, outcome.report.removed) == (1, 1, 1)
    sent = calendar_requests(h, h.email)
    assert sent[0].status == 410 and sent[0].query_values("syncToken")
    assert [r.query_values("syncToken") for r in sent[1:]] == [[], [], []]  # 7 events, 3 a page
    assert len(calendar_requests(h, other)) == 1  # the other calendar: one incremental call
    await assert_store_is_google(h, charm, h.email)
    assert new in stored_ids(h, charm, h.email) and ids[0] not in stored_ids(h, charm, h.email)
    assert events(h, charm)[f"{h.email}/{ids[1]}"]["summary"] == "changed"
    record = records(h, charm)[h.email]
    assert record.full_sync is None and record.expiries == 1 and record.sync_token
    assert h.collection(charm, "sweep").keys() == []

    # The next incremental sync works, so the loop breaker's count starts over.
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert records(h, charm)[h.email].expiries == 0


async def test_an_interrupted_resync_keeps_the_events_and_resumes_without_the_dead_token(
    h: GoogleHarness,
) -> None:
    ids = [add(h, h.email, f"e{i}", 1 + i) for i in range(4)]
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    dead = records(h, charm)[h.email].sync_token

    h.emu.control.add_fault(kind="status", status="410", path=events_path(h.email), times=1)
    h.emu.control.add_fault(kind="status", status="503", path=events_path(h.email))
    forget_on_google(h, h.email, ids[3])
    outcome = await h.sync(charm)

    # The only calendar failed: the run fails (and backs off), nothing was lost.
    assert outcome.kind is OutcomeKind.SERVER_ERROR, outcome.message
    assert stored_ids(h, charm, h.email) == set(ids)
    record = records(h, charm)[h.email]
    assert record.full_sync is not None and record.full_sync.prune and record.sync_token is None

    h.emu.control.clear_faults()
    h.emu.control.clear_log()
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert outcome.report.removed == 1
    sent = calendar_requests(h, h.email)
    assert len(sent) == 1 and sent[0].query_values("syncToken") == []
    assert dead not in [v for r in sent for v in r.query_values("syncToken")]
    await assert_store_is_google(h, charm, h.email)


async def test_a_resync_that_keeps_getting_410_is_reported_not_looped(h: GoogleHarness) -> None:
    other = h.emu.control.add_calendar(h.email, summary="Other")
    mine = [add(h, h.email, f"e{i}", 1 + i) for i in range(3)]
    add(h, other, "o1")
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK

    h.emu.control.add_fault(kind="status", status="410", path=events_path(h.email))
    later = add(h, other, "o2", 5)
    h.emu.control.clear_log()
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert outcome.report.partial == (h.email,)
    assert "keeps refusing" in outcome.report.message
    # One incremental call, one resync attempt; then it stopped.
    assert [r.status for r in calendar_requests(h, h.email)] == [410, 410]
    assert stored_ids(h, charm, h.email) == set(mine)  # kept
    assert later in stored_ids(h, charm, other)  # the other calendar synced normally
    record = records(h, charm)[h.email]
    assert record.expiries == 2 and record.resync_after is not None
    assert record.resync_after > datetime.now(UTC) + timedelta(minutes=50)
    assert record.last_error and "410" in record.last_error

    h.emu.control.clear_log()
    outcome = await h.sync(charm)
    assert outcome.report.partial == (h.email,) and "waits until" in outcome.report.message
    assert calendar_requests(h, h.email) == []  # no request while it waits
    assert stored_ids(h, charm, h.email) == set(mine)

    # Once the wait is over and Google accepts the sync again, it recovers by itself.
    h.emu.control.clear_faults()
    set_record(h, charm, h.email, resync_after=datetime.now(UTC) - timedelta(seconds=1))
    outcome = await h.sync(charm)
    assert outcome.kind is OutcomeKind.OK and outcome.report.partial == ()
    await assert_store_is_google(h, charm, h.email)
    assert (await h.sync(charm)).report.partial == ()
    assert records(h, charm)[h.email].expiries == 0


async def test_a_failing_calendar_keeps_its_events_and_is_named_while_others_sync(
    h: GoogleHarness,
) -> None:
    team = h.emu.control.add_calendar(h.email, summary="Team")
    home = h.emu.control.add_calendar(h.email, summary="Home")
    team_ids = {add(h, team, "t1"), add(h, team, "t2", 2)}
    add(h, home, "h1")
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    token = records(h, charm)[team].sync_token

    h.emu.control.add_fault(kind="status", status="500", path=events_path(team))
    h.emu.control.cancel_event(h.email, team, next(iter(team_ids)))
    add(h, team, "t3", 3)
    fresh = add(h, home, "h2", 4)
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert outcome.report.partial == ("Team",)
    assert outcome.report.message.startswith("2 of 3 calendars synced; failed: Team:")
    assert outcome.report.added == 1  # the Home event
    assert stored_ids(h, charm, team) == team_ids  # previous events kept, nothing half-applied
    assert records(h, charm)[team].sync_token == token
    assert fresh in stored_ids(h, charm, home)
    await assert_store_is_google(h, charm, home)

    h.emu.control.clear_faults()
    outcome = await h.sync(charm)
    assert outcome.report.partial == () and outcome.report.changed == 2
    await assert_store_is_google(h, charm, team)


@pytest.mark.parametrize(
    ("status", "kind"),
    [("503", OutcomeKind.SERVER_ERROR), ("429", OutcomeKind.RATE_LIMITED)],
)
async def test_every_calendar_failing_the_same_way_fails_the_run(
    h: GoogleHarness, status: str, kind: OutcomeKind
) -> None:
    other = h.emu.control.add_calendar(h.email, summary="Other")
    add(h, h.email, "a")
    add(h, other, "b")
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    before = events(h, charm)

    h.emu.control.add_fault(kind="status", status=status, endpoint="calendar.events.list")
    add(h, other, "c", 3)
    outcome = await h.sync(charm)

    assert outcome.kind is kind, outcome.message
    assert events(h, charm) == before


async def test_an_expired_calendar_list_token_relists_and_every_calendar_resyncs(
    h: GoogleHarness,
) -> None:
    cals = [h.emu.control.add_calendar(h.email, summary=f"C{i}") for i in range(2)]
    for cid in cals:
        add(h, cid, "x")
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK

    h.emu.control.invalidate_sync_tokens(h.email)  # the list's and every calendar's
    h.emu.control.remove_calendar(h.email, cals[0])
    add(h, cals[1], "y", 2)
    h.emu.control.clear_log()
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    listing = h.emu.control.requests(api_method="calendar.calendarList.list")
    assert [r.status for r in listing] == [410, 200] and listing[1].query_values("syncToken") == []
    assert stored_ids(h, charm, cals[0]) == set() and cals[0] not in records(h, charm)
    await assert_store_is_google(h, charm, cals[1])
    await assert_store_is_google(h, charm, h.email)


async def test_a_resync_cut_after_two_pages_continues_at_the_third(
    h: GoogleHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gcalendar, "EVENTS_PAGE_SIZE", 3)
    ids = [add(h, h.email, f"e{i}", 1 + i) for i in range(10)]  # 4 pages, in start order
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK

    h.emu.control.invalidate_sync_tokens(h.email, h.email)
    forget_on_google(h, h.email, ids[0])  # gone before the resync: on no page
    forget_on_google(h, h.email, ids[9])
    h.emu.control.update_event(h.email, h.email, ids[4], {"summary": "changed"})
    # The connection drops while the third page is asked for.
    after_listed_pages(
        h,
        charm,
        h.email,
        2,
        lambda: h.emu.control.add_fault(kind="reset", path=events_path(h.email)),
    )
    h.emu.control.clear_log()
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OFFLINE, outcome.message  # a reset looks like that
    listed = [r for r in calendar_requests(h, h.email) if r.status == 200]
    assert len(listed) == 2 and not any(r.query_values("syncToken") for r in listed)
    record = records(h, charm)[h.email]
    assert record.full_sync is not None and record.full_sync.prune
    assert record.full_sync.pages == 2 and record.full_sync.page_token
    saved = record.full_sync.page_token
    # Nothing is removed before the listing ends; what the two pages brought is stored.
    assert set(ids) <= stored_ids(h, charm, h.email)
    assert events(h, charm)[f"{h.email}/{ids[4]}"]["summary"] == "changed"

    # Between the runs: a change behind the place the listing stopped at, and one ahead of it.
    h.emu.control.cancel_event(h.email, h.email, ids[1])
    new = add(h, h.email, "new", 28)
    h.emu.control.clear_faults()
    h.emu.control.clear_log()
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    sent = calendar_requests(h, h.email)
    # It continued at the saved page: no request for the first pages, none with a sync token.
    assert sent and sent[0].query_values("pageToken") == [saved]
    assert all(r.query_values("pageToken") and not r.query_values("syncToken") for r in sent)
    assert len(sent) == 1  # e7, e8 and "new": the rest of the listing (pages 1-2 had e1-e6)
    record = records(h, charm)[h.email]
    assert record.full_sync is None and record.sync_token
    assert h.collection(charm, "sweep").keys() == []
    assert outcome.report.removed == 2  # e0 and e9, which the listing never saw
    assert stored_ids(h, charm, h.email) == await google_ids(h, h.email) | {ids[1]}
    assert new in stored_ids(h, charm, h.email)

    # The change behind the cut comes with the listing's sync token, in one request.
    h.emu.control.clear_log()
    outcome = await h.sync(charm)
    assert outcome.kind is OutcomeKind.OK and outcome.report.removed == 1
    assert len(calendar_requests(h, h.email)) == 1
    await assert_store_is_google(h, charm, h.email)


async def test_a_first_sync_stopped_by_quitting_continues_at_its_page(
    h: GoogleHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gcalendar, "EVENTS_PAGE_SIZE", 2)
    for i in range(9):  # 5 pages
        add(h, h.email, f"e{i}", 1 + i)
    charm = h.add_charm("gcalendar-importer", {})
    third_page_stored = asyncio.Event()

    def slow_fourth_page() -> None:
        # The request for page 4 is still in flight when the engine stops, however loaded
        # the machine: quitting cancels it, so exactly three pages are stored.
        h.emu.control.add_fault(
            kind="latency", latency_ms=30_000, path=events_path(h.email), times=1
        )
        third_page_stored.set()

    after_listed_pages(h, charm, h.email, 3, slow_fourth_page)
    await h.engine.start()
    run = asyncio.ensure_future(h.sync(charm))
    async with asyncio.timeout(60):
        await third_page_stored.wait()
    await h.engine.stop()  # the user quits: the run in progress is cancelled
    assert (await run).kind is OutcomeKind.CANCELLED
    record = records(h, charm)[h.email]
    assert record.full_sync is not None and record.full_sync.pages == 3
    assert not record.full_sync.prune and len(stored_ids(h, charm, h.email)) == 6
    saved = record.full_sync.page_token

    h.emu.control.clear_log()
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert outcome.report.added == 3
    sent = calendar_requests(h, h.email)
    assert [r.query_values("pageToken") for r in sent][:1] == [[saved]]
    assert len(sent) == 2 and all(r.query_values("pageToken") for r in sent)
    await assert_store_is_google(h, charm, h.email)


async def test_a_page_token_google_refuses_restarts_the_listing_and_prunes(
    h: GoogleHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gcalendar, "EVENTS_PAGE_SIZE", 2)
    ids = [add(h, h.email, f"e{i}", 1 + i) for i in range(5)]
    charm = h.add_charm("gcalendar-importer", {})
    after_listed_pages(
        h,
        charm,
        h.email,
        1,
        lambda: h.emu.control.add_fault(kind="status", status="503", path=events_path(h.email)),
    )
    assert (await h.sync(charm)).kind is OutcomeKind.SERVER_ERROR
    assert records(h, charm)[h.email].full_sync is not None
    assert stored_ids(h, charm, h.email) == set(ids[:2])

    # Google no longer takes the saved token; e1, stored by the cut listing, is gone since.
    set_record(
        h,
        charm,
        h.email,
        full_sync=records(h, charm)[h.email].full_sync.model_copy(  # type: ignore[union-attr]
            update={"page_token": "expired-page-token"}
        ),
    )
    forget_on_google(h, h.email, ids[1])
    h.emu.control.clear_faults()
    h.emu.control.clear_log()
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    sent = calendar_requests(h, h.email)
    assert sent[0].query_values("pageToken") == ["expired-page-token"] and sent[0].status == 400
    assert sent[1].query_values("pageToken") == []  # the listing started over
    assert len(sent) == 3  # the refused page, then the 4 events 2 a page
    assert outcome.report.removed == 1
    await assert_store_is_google(h, charm, h.email)
    assert h.collection(charm, "sweep").keys() == []
