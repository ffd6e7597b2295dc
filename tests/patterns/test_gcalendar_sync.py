"""The Google Calendar importer against the emulator: full and incremental sync, pagination,
cancellations, calendar list changes, percent-encoded ids and the cost of a no-change sync.

Every check compares the store with what Google (the emulator) answers.
"""

from __future__ import annotations

from typing import Any

import pytest
from gcal_helpers import events, google_ids, records, stored_ids

from tests.emulator.harness import all_day_event, timed_event
from trayapp.core.errors import SettingsError
from trayapp.core.outcomes import OutcomeKind
from trayapp.patterns import gcalendar
from trayapp.patterns.gcalendar import CalendarImporter

GoogleHarness = Any
HarnessFactory = Any

CONTACTS = "#contacts@group.v.calendar.google.com"


@pytest.fixture
async def h(google_harness: HarnessFactory) -> GoogleHarness:
    return await google_harness(patterns=(CalendarImporter,))


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 4 events and 2 calendars, so a handful of items spans several pages."""
    monkeypatch.setattr(gcalendar, "EVENTS_PAGE_SIZE", 4)
    monkeypatch.setattr(gcalendar, "CALENDARS_PAGE_SIZE", 2)


def seed(h: GoogleHarness, calendar_id: str, n: int, prefix: str = "ev") -> list[str]:
    return [
        h.emu.control.add_event(
            h.email,
            calendar_id,
            timed_event(
                f"{prefix} {i}",
                f"2026-12-{1 + i % 28:02d}T09:00:00Z",
                f"2026-12-{1 + i % 28:02d}T10:00:00Z",
            ),
        )
        for i in range(n)
    ]


async def assert_store_is_google(h: GoogleHarness, charm: str, calendar_id: str) -> set[str]:
    expected = await google_ids(h, calendar_id)
    stored = stored_ids(h, charm, calendar_id)
    assert stored == expected, f"missing {expected - stored}, extra {stored - expected}"
    return stored


def events_requests(h: GoogleHarness) -> list[Any]:
    found: list[Any] = h.emu.control.requests(api_method="calendar.events.list")
    return found


async def test_full_then_incremental_sync_follow_every_page(
    h: GoogleHarness, small_pages: None
) -> None:
    work = h.emu.control.add_calendar(h.email, summary="Work", timeZone="Europe/Paris")
    for i in range(4):
        h.emu.control.add_calendar(h.email, summary=f"Other {i}", selected=False)
    seed(h, h.email, 9, "mine")
    ids = seed(h, work, 10, "work")
    charm = h.add_charm("gcalendar-importer", {})

    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert outcome.report.added == 19 and outcome.report.partial == ()
    # 6 calendars at 2 a page: three calendarList pages; 10 events at 4 a page: three pages.
    assert len(h.emu.control.requests(api_method="calendar.calendarList.list")) == 3
    work_pages = [r for r in events_requests(h) if work in r.path]
    assert len(work_pages) == 3
    assert all(r.query_values("showDeleted") == ["true"] for r in work_pages)
    await assert_store_is_google(h, charm, h.email)
    await assert_store_is_google(h, charm, work)
    recs = records(h, charm)
    assert set(recs) >= {h.email, work} and len(recs) == 6
    assert recs[work].sync_token and recs[work].full_sync is None
    assert recs[work].time_zone == "Europe/Paris"
    stored = events(h, charm)[f"{work}/{ids[0]}"]
    assert stored["summary"] == "work 0" and stored["calendarId"] == work
    assert stored["start"] == {"dateTime": "2026-12-01T09:00:00Z"} and stored["allDay"] is False
    assert stored["etag"] and stored["updated"] and stored["htmlLink"]

    # Incremental: more changes than a page, so the same syncToken goes with every pageToken.
    h.emu.control.clear_log()
    token = recs[work].sync_token
    added = seed(h, work, 6, "new")
    h.emu.control.update_event(h.email, work, ids[1], {"summary": "renamed"})
    h.emu.control.cancel_event(h.email, work, ids[2])
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert (outcome.report.added, outcome.report.updated, outcome.report.removed) == (6, 1, 1)
    work_pages = [r for r in events_requests(h) if work in r.path]
    assert len(work_pages) == 2
    assert [r.query_values("syncToken") for r in work_pages] == [[token], [token]]
    assert work_pages[1].query_values("pageToken")
    stored_now = await assert_store_is_google(h, charm, work)
    assert set(added) <= stored_now and ids[2] not in stored_now
    assert events(h, charm)[f"{work}/{ids[1]}"]["summary"] == "renamed"
    assert records(h, charm)[work].sync_token not in (None, token)
    assert h.emu.control.request_violations() == []


async def test_no_change_sync_sends_one_request_per_calendar_plus_the_list(
    h: GoogleHarness,
) -> None:
    cals = [h.emu.control.add_calendar(h.email, summary=f"Cal {i}") for i in range(3)]
    h.emu.control.add_calendar(h.email, summary="Unticked", selected=False)
    for cid in [h.email, *cals]:
        seed(h, cid, 5)
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK

    h.emu.control.clear_log()
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK and outcome.report.changed == 0
    api_calls = [r for r in h.emu.control.requests() if r.api_method.startswith("calendar.")]
    methods = sorted(r.api_method for r in api_calls)
    assert methods == ["calendar.calendarList.list"] + ["calendar.events.list"] * 4
    assert all(r.query_values("syncToken") for r in api_calls)


async def test_cancelled_events_and_series_are_deleted(h: GoogleHarness) -> None:
    single = h.emu.control.add_event(
        h.email, h.email, timed_event("single", "2026-12-01T09:00:00Z", "2026-12-01T10:00:00Z")
    )
    series = h.emu.control.add_event(
        h.email,
        h.email,
        timed_event(
            "weekly",
            "2026-12-07T09:00:00Z",
            "2026-12-07T10:00:00Z",
            recurrence=["RRULE:FREQ=WEEKLY;COUNT=5"],
        ),
    )
    h.emu.control.update_event(h.email, h.email, f"{series}_20261214T090000Z", {"summary": "x"})
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert {single, series, f"{series}_20261214T090000Z"} <= stored_ids(h, charm, h.email)

    h.emu.control.cancel_event(h.email, h.email, single)
    h.emu.control.cancel_event(h.email, h.email, series)
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert outcome.report.removed == 3  # the single, the series and its modified occurrence
    # Google cancels a series' modified occurrences with it and reports them as cancelled
    # occurrences: no marker is kept for them (they would hide nothing).
    assert events(h, charm) == {}
    await assert_store_is_google(h, charm, h.email)


@pytest.mark.parametrize("order", ["series first", "occurrences first"])
async def test_a_listing_keeps_no_marker_of_a_cancelled_series_across_pages(
    h: GoogleHarness, monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    """A full listing may report a cancelled series and its cancelled occurrences on
    different pages, in either order (Google does not promise one)."""
    monkeypatch.setattr(gcalendar, "EVENTS_PAGE_SIZE", 1)
    series = h.emu.control.add_event(
        h.email,
        h.email,
        timed_event(
            "weekly",
            "2026-12-07T09:00:00Z",
            "2026-12-07T10:00:00Z",
            recurrence=["RRULE:FREQ=WEEKLY;COUNT=5"],
        ),
    )
    kept = h.emu.control.add_event(
        h.email,
        h.email,
        timed_event(
            "daily",
            "2026-12-01T08:00:00Z",
            "2026-12-01T08:30:00Z",
            recurrence=["RRULE:FREQ=DAILY;COUNT=3"],
        ),
    )
    for when in ("20261214T090000Z", "20261221T090000Z"):
        h.emu.control.update_event(h.email, h.email, f"{series}_{when}", {"summary": "moved"})
    h.emu.control.cancel_event(h.email, h.email, f"{kept}_20261202T080000Z")
    h.emu.control.cancel_event(h.email, h.email, series)
    if order == "occurrences first":
        # Same events, listed the other way round: the series' start moves after them.
        h.emu.control.update_event(
            h.email,
            h.email,
            series,
            {
                "start": {"dateTime": "2027-01-04T09:00:00Z", "timeZone": "UTC"},
                "end": {"dateTime": "2027-01-04T10:00:00Z", "timeZone": "UTC"},
            },
        )
    charm = h.add_charm("gcalendar-importer", {})

    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert set(events(h, charm)) == {
        f"{h.email}/{kept}",
        f"{h.email}/{kept}_20261202T080000Z",  # a live series' cancelled occurrence: kept
    }
    assert h.collection(charm, "sweep").keys() == []
    await assert_store_is_google(h, charm, h.email)


async def test_calendar_list_changes_rename_recolour_unselect_and_remove(
    h: GoogleHarness,
) -> None:
    keep = h.emu.control.add_calendar(h.email, summary="Keep", backgroundColor="#111111")
    gone = h.emu.control.add_calendar(h.email, summary="Gone")
    untick = h.emu.control.add_calendar(h.email, summary="Untick")
    for cid in (keep, gone, untick):
        seed(h, cid, 3)
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert all(stored_ids(h, charm, c) for c in (keep, gone, untick))

    h.emu.control.update_calendar(h.email, keep, summary="Kept", backgroundColor="#222222")
    h.emu.control.remove_calendar(h.email, gone)
    h.emu.control.update_calendar(h.email, untick, selected=False)
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert outcome.report.removed == 6
    assert stored_ids(h, charm, gone) == set() and stored_ids(h, charm, untick) == set()
    await assert_store_is_google(h, charm, keep)
    recs = records(h, charm)
    assert recs[keep].name == "Kept" and recs[keep].background_color == "#222222"
    assert gone not in recs  # deleted from the list: forgotten
    assert recs[untick].synced is False and recs[untick].sync_token is None

    # Ticking it again brings its events back with a full sync.
    h.emu.control.update_calendar(h.email, untick, selected=True)
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    await assert_store_is_google(h, charm, untick)


async def test_percent_encoded_calendar_ids(h: GoogleHarness) -> None:
    h.emu.control.add_calendar(h.email, CONTACTS, summary="Birthdays")
    holiday = "en.usa#holiday@group.v.calendar.google.com"
    h.emu.control.add_calendar(h.email, holiday, summary="Holidays", accessRole="reader")
    bday = h.emu.control.add_event(
        h.email, CONTACTS, all_day_event("Ada's birthday", "2026-12-10", "2026-12-11")
    )
    h.emu.control.add_event(h.email, holiday, all_day_event("Holiday", "2026-12-25", "2026-12-26"))
    charm = h.add_charm(
        "gcalendar-importer", {"calendars": "listed", "calendar_ids": [CONTACTS, holiday]}
    )

    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert stored_ids(h, charm, CONTACTS) == {bday}
    assert events(h, charm)[f"{CONTACTS}/{bday}"]["allDay"] is True
    await assert_store_is_google(h, charm, holiday)
    assert stored_ids(h, charm, h.email) == set()  # not listed

    h.emu.control.add_event(h.email, CONTACTS, all_day_event("Bob", "2026-12-12", "2026-12-13"))
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    await assert_store_is_google(h, charm, CONTACTS)
    assert h.emu.control.request_violations() == []


async def test_declined_events_are_dropped_unless_kept(h: GoogleHarness) -> None:
    me = {"email": h.email, "self": True}
    declined = h.emu.control.add_event(
        h.email,
        h.email,
        timed_event(
            "declined",
            "2026-12-01T09:00:00Z",
            "2026-12-01T10:00:00Z",
            attendees=[{**me, "responseStatus": "declined"}, {"email": "b@example.com"}],
        ),
    )
    accepted = h.emu.control.add_event(
        h.email,
        h.email,
        timed_event(
            "accepted",
            "2026-12-02T09:00:00Z",
            "2026-12-02T10:00:00Z",
            attendees=[{**me, "responseStatus": "accepted"}],
        ),
    )
    dropping = h.add_charm("gcalendar-importer", {}, name="drop")
    keeping = h.add_charm("gcalendar-importer", {"keep_declined": True}, name="keep")
    assert (await h.sync(dropping)).kind is OutcomeKind.OK
    assert (await h.sync(keeping)).kind is OutcomeKind.OK

    assert stored_ids(h, dropping, h.email) == {accepted}
    assert stored_ids(h, keeping, h.email) == {accepted, declined}
    attendees = events(h, keeping)[f"{h.email}/{declined}"]["attendees"]
    assert attendees[0] == {"email": h.email, "self": True, "responseStatus": "declined"}

    # Declining later removes it from the charm that drops declined events.
    h.emu.control.update_event(
        h.email, h.email, accepted, {"attendees": [{**me, "responseStatus": "declined"}]}
    )
    outcome = await h.sync(dropping)
    assert outcome.report.removed == 1 and stored_ids(h, dropping, h.email) == set()


def test_settings_are_validated_with_clear_messages() -> None:
    pattern = CalendarImporter()
    assert pattern.validate_settings({}).calendars == "selected"
    ok = pattern.validate_settings({"calendars": "listed", "calendar_ids": [" primary ", CONTACTS]})
    assert ok.calendar_ids == ["primary", CONTACTS]
    cases: dict[str, dict[str, Any]] = {
        "calendar_ids: give at least one calendar id": {"calendars": "listed"},
        "calendar_ids: only used with calendars 'listed'": {"calendar_ids": ["a@b.c"]},
        "calendar_ids: a calendar id is empty": {"calendars": "listed", "calendar_ids": [""]},
        "calendar_ids: calendar ids have no spaces": {
            "calendars": "listed",
            "calendar_ids": ["my calendar"],
        },
        "calendars: must be one of": {"calendars": "some"},
        "upcoming_days: must be at least 1": {"upcoming_days": 0},
        "upcoming_days: must be at most 366": {"upcoming_days": 999},
        "keep_declined: not true or false": {"keep_declined": "maybe"},
        "calendar: unknown setting": {"calendar": "all"},
    }
    for expected, settings in cases.items():
        with pytest.raises(SettingsError) as info:
            pattern.validate_settings(settings)
        assert expected in str(info.value), (settings, str(info.value))


def test_only_keeping_declined_events_needs_a_resync() -> None:
    pattern = CalendarImporter()
    base = pattern.validate_settings({})
    assert pattern.needs_reset(base, pattern.validate_settings({"keep_declined": True}))
    assert not pattern.needs_reset(base, pattern.validate_settings({"calendars": "all"}))
    assert not pattern.needs_reset(base, pattern.validate_settings({"upcoming_days": 3}))
