"""The upcoming view: recurring series expanded from the store, exceptions applied.

The emulator tests compare ``upcoming()`` with Google's own ``singleEvents=true`` expansion of
the same window (ids, starts, ends, summaries); the unit tests cover the recurrence forms
Google writes that dateutil's ``rrulestr`` alone gets wrong.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from gcal_helpers import StoreSource, as_rows, events, truth, upcoming

from tests.emulator.harness import all_day_event, timed_event
from trayapp.core.outcomes import OutcomeKind
from trayapp.patterns.gcalendar import CalendarImporter
from trayapp.patterns.gcalendar_recurrence import expand

GoogleHarness = Any
HarnessFactory = Any

NY = "America/New_York"
WINDOW = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 15, tzinfo=UTC))


@pytest.fixture
async def h(google_harness: HarnessFactory) -> GoogleHarness:
    return await google_harness(patterns=(CalendarImporter,))


async def assert_upcoming_is_google(
    h: GoogleHarness, charm: str, calendar_id: str, start: datetime, end: datetime
) -> list[Any]:
    expected = await truth(h, calendar_id, start, end)
    mine = as_rows(upcoming(h, charm, start, end), calendar_id)
    assert mine == expected, (
        f"missing {sorted(set(expected) - set(mine))}\nextra {sorted(set(mine) - set(expected))}"
    )
    return mine


def seed_series(h: GoogleHarness, calendar_id: str) -> dict[str, str]:
    c = h.emu.control
    e = h.email
    weekly = c.add_event(
        e,
        calendar_id,
        timed_event(
            "standup",
            "2026-10-19T09:00:00-04:00",
            "2026-10-19T09:30:00-04:00",
            NY,
            recurrence=[
                "RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20261221T235959Z",
                "EXDATE;TZID=America/New_York:20261130T090000",
                "RDATE:20261202T150000Z",
            ],
        ),
    )
    # Across the end of daylight saving (Nov 1): 13:00Z before, 14:00Z after, 09:00 local.
    c.update_event(
        e,
        calendar_id,
        f"{weekly}_20261026T130000Z",
        {
            "start": {"dateTime": "2026-10-27T11:00:00-04:00", "timeZone": NY},
            "end": {"dateTime": "2026-10-27T12:00:00-04:00", "timeZone": NY},
        },
    )
    c.cancel_event(e, calendar_id, f"{weekly}_20261109T140000Z")
    c.update_event(e, calendar_id, f"{weekly}_20261116T140000Z", {"summary": "standup (demo)"})
    daily = c.add_event(
        e,
        calendar_id,
        all_day_event(
            "on call", "2026-12-01", "2026-12-02", recurrence=["RRULE:FREQ=DAILY;COUNT=10"]
        ),
    )
    c.cancel_event(e, calendar_id, f"{daily}_20261203")
    c.update_event(
        e,
        calendar_id,
        f"{daily}_20261205",
        {"start": {"date": "2026-12-06"}, "end": {"date": "2026-12-08"}, "summary": "long shift"},
    )
    endless = c.add_event(
        e,
        calendar_id,
        timed_event(
            "monthly review",
            "2025-01-15T16:00:00Z",
            "2025-01-15T17:00:00Z",
            recurrence=["RRULE:FREQ=MONTHLY;BYMONTHDAY=15"],
        ),
    )
    single = c.add_event(
        e, calendar_id, timed_event("dentist", "2026-12-03T08:00:00Z", "2026-12-03T09:00:00Z")
    )
    past = c.add_event(
        e, calendar_id, timed_event("old", "2026-01-03T08:00:00Z", "2026-01-03T09:00:00Z")
    )
    # Ends long after any window below ends: the view must still find it by its start.
    long = c.add_event(
        e, calendar_id, timed_event("sabbatical", "2026-11-20T00:00:00Z", "2026-12-30T00:00:00Z")
    )
    return {
        "weekly": weekly,
        "daily": daily,
        "endless": endless,
        "single": single,
        "past": past,
        "long": long,
    }


async def test_upcoming_matches_googles_expansion_with_moved_and_cancelled_occurrences(
    h: GoogleHarness,
) -> None:
    tokyo = h.emu.control.add_calendar(h.email, summary="Tokyo", timeZone="Asia/Tokyo")
    ids = seed_series(h, h.email)
    tokyo_ids = seed_series(h, tokyo)
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK

    rows = await assert_upcoming_is_google(h, charm, h.email, *WINDOW)
    await assert_upcoming_is_google(h, charm, tokyo, *WINDOW)
    # Spot checks of what the comparison covers.
    weekly = ids["weekly"]
    by_id = {r[0]: r for r in rows}
    assert by_id[f"{weekly}_20261019T130000Z"][1] == datetime(2026, 10, 19, 13, tzinfo=UTC)
    assert by_id[f"{weekly}_20261123T140000Z"][1] == datetime(2026, 11, 23, 14, tzinfo=UTC)
    assert f"{weekly}_20261109T140000Z" not in by_id  # cancelled occurrence
    assert f"{weekly}_20261130T140000Z" not in by_id  # EXDATE
    assert f"{weekly}_20261202T150000Z" in by_id  # RDATE
    assert by_id[f"{weekly}_20261026T130000Z"][1] == datetime(2026, 10, 27, 15, tzinfo=UTC)
    assert by_id[f"{weekly}_20261116T140000Z"][3] == "standup (demo)"
    daily = ids["daily"]
    assert f"{daily}_20261203" not in by_id
    assert by_id[f"{daily}_20261205"][1:3] == (date(2026, 12, 6), date(2026, 12, 8))
    assert ids["past"] not in by_id and ids["single"] in by_id and ids["long"] in by_id
    assert sum(1 for r in rows if r[0].startswith(ids["endless"])) == 3  # Oct, Nov, Dec 15
    assert tokyo_ids["daily"] != daily

    # A narrow window, cutting through occurrences at both ends.
    narrow = (datetime(2026, 12, 3, 14, 10, tzinfo=UTC), datetime(2026, 12, 7, 14, 5, tzinfo=UTC))
    narrow_rows = await assert_upcoming_is_google(h, charm, h.email, *narrow)
    assert ids["long"] in {r[0] for r in narrow_rows}
    await assert_upcoming_is_google(h, charm, tokyo, *narrow)


async def test_exceptions_that_arrive_incrementally(h: GoogleHarness) -> None:
    ids = seed_series(h, h.email)
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    weekly, daily = ids["weekly"], ids["daily"]
    c = h.emu.control
    c.cancel_event(h.email, h.email, f"{weekly}_20261214T140000Z")
    c.update_event(
        h.email,
        h.email,
        f"{weekly}_20261207T140000Z",
        {
            "start": {"dateTime": "2026-12-08T09:00:00-05:00", "timeZone": NY},
            "end": {"dateTime": "2026-12-08T09:45:00-05:00", "timeZone": NY},
            "summary": "moved standup",
        },
    )
    c.update_event(h.email, h.email, f"{daily}_20261205", {"summary": "short shift"})
    c.update_event(h.email, h.email, ids["endless"], {"summary": "monthly review v2"})
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    # Added: the moved occurrence; updated: the cancelled one, the renamed one and the series.
    assert (outcome.report.added, outcome.report.updated) == (1, 3)
    rows = await assert_upcoming_is_google(h, charm, h.email, *WINDOW)
    assert any(r[3] == "moved standup" for r in rows)
    assert all(r[3] == "monthly review v2" for r in rows if r[0].startswith(ids["endless"]))
    marker = events(h, charm)[f"{h.email}/{weekly}_20261214T140000Z"]
    assert marker["status"] == "cancelled" and marker["recurringEventId"] == weekly


async def test_occurrences_carry_calendar_name_and_colour(h: GoogleHarness) -> None:
    cal = h.emu.control.add_calendar(h.email, summary="Team", backgroundColor="#ff0000")
    h.emu.control.add_event(
        h.email, cal, timed_event("sync", "2026-12-03T08:00:00Z", "2026-12-03T09:00:00Z")
    )
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    (occ,) = upcoming(h, charm, *WINDOW)
    assert (occ.calendar_name, occ.color, occ.summary) == ("Team", "#ff0000", "sync")
    h.emu.control.update_calendar(h.email, cal, summaryOverride="My team", backgroundColor="#00f")
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    (occ,) = upcoming(h, charm, *WINDOW)
    assert (occ.calendar_name, occ.color) == ("My team", "#00f")
    assert occ.to_json()["start"] == "2026-12-03T08:00:00+00:00"


async def test_default_window_is_upcoming_days_from_now(h: GoogleHarness) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    soon = h.emu.control.add_event(
        h.email,
        h.email,
        timed_event(
            "soon",
            (now + timedelta(days=2)).isoformat(),
            (now + timedelta(days=2, hours=1)).isoformat(),
        ),
    )
    h.emu.control.add_event(
        h.email,
        h.email,
        timed_event(
            "later",
            (now + timedelta(days=9)).isoformat(),
            (now + timedelta(days=9, hours=1)).isoformat(),
        ),
    )
    charm = h.add_charm("gcalendar-importer", {"upcoming_days": 5})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert [o.event_id for o in CalendarImporter().upcoming(StoreSource(h, charm))] == [soon]


# ---- unit tests of the expansion ---------------------------------------------------------


def ev(event_id: str, start: dict[str, Any], end: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": event_id, "summary": event_id, "start": start, "end": end, **extra}


def starts(occurrences: list[Any]) -> list[Any]:
    return [
        (o.event_id, o.start.astimezone(UTC) if not o.all_day else o.start.date())
        for o in occurrences
    ]


UTC_TZ = ZoneInfo("UTC")


def test_rdate_with_tzid_until_date_and_date_exdate() -> None:
    master = ev(
        "series1",
        {"dateTime": "2026-03-02T09:00:00-05:00", "timeZone": NY},
        {"dateTime": "2026-03-02T10:00:00-05:00", "timeZone": NY},
        recurrence=[
            "RRULE:FREQ=WEEKLY;UNTIL=20260323",  # a date UNTIL on a timed series: whole day
            "RDATE;TZID=America/New_York:20260311T100000",
            "EXDATE;VALUE=DATE:20260316",
        ],
    )
    got = starts(
        expand(
            [master],
            "c",
            datetime(2026, 3, 1, tzinfo=UTC),
            datetime(2026, 4, 1, tzinfo=UTC),
            UTC_TZ,
        )
    )
    assert got == [
        ("series1_20260302T140000Z", datetime(2026, 3, 2, 14, tzinfo=UTC)),
        ("series1_20260309T130000Z", datetime(2026, 3, 9, 13, tzinfo=UTC)),  # DST began Mar 8
        ("series1_20260311T140000Z", datetime(2026, 3, 11, 14, tzinfo=UTC)),
        ("series1_20260323T130000Z", datetime(2026, 3, 23, 13, tzinfo=UTC)),
    ]


def test_all_day_series_with_utc_until_and_calendar_zone() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    master = ev(
        "allday1",
        {"date": "2026-03-01"},
        {"date": "2026-03-02"},
        recurrence=["RRULE:FREQ=DAILY;UNTIL=20260303T000000Z", "EXDATE;VALUE=DATE:20260302"],
    )
    occ = expand(
        [master], "c", datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), tokyo
    )
    assert [(o.event_id, o.all_day) for o in occ] == [
        ("allday1_20260301", True),
        ("allday1_20260303", True),
    ]
    assert occ[0].start == datetime(2026, 3, 1, tzinfo=tokyo)
    assert occ[0].end == datetime(2026, 3, 2, tzinfo=tokyo)


def test_exception_moved_into_the_window_and_occurrence_invitation_alone() -> None:
    master = ev(
        "weekly1",
        {"dateTime": "2026-03-02T09:00:00Z"},
        {"dateTime": "2026-03-02T10:00:00Z"},
        recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"],
    )
    moved_in = ev(
        "weekly1_20260302T090000Z",
        {"dateTime": "2026-03-20T09:00:00Z"},
        {"dateTime": "2026-03-20T10:00:00Z"},
        recurringEventId="weekly1",
        originalStartTime={"dateTime": "2026-03-02T09:00:00Z"},
    )
    not_an_occurrence = ev(
        "weekly1_20260303T090000Z",
        {"dateTime": "2026-03-21T09:00:00Z"},
        {"dateTime": "2026-03-21T10:00:00Z"},
        recurringEventId="weekly1",
        originalStartTime={"dateTime": "2026-03-03T09:00:00Z"},
    )
    invitation = ev(
        "other_20260318T120000Z",
        {"dateTime": "2026-03-18T12:00:00Z"},
        {"dateTime": "2026-03-18T13:00:00Z"},
        recurringEventId="other",
        originalStartTime={"dateTime": "2026-03-18T12:00:00Z"},
    )
    window = (datetime(2026, 3, 15, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    got = starts(expand([master, moved_in, not_an_occurrence, invitation], "c", *window, UTC_TZ))
    assert got == [
        ("weekly1_20260316T090000Z", datetime(2026, 3, 16, 9, tzinfo=UTC)),
        ("other_20260318T120000Z", datetime(2026, 3, 18, 12, tzinfo=UTC)),
        ("weekly1_20260302T090000Z", datetime(2026, 3, 20, 9, tzinfo=UTC)),
        ("weekly1_20260323T090000Z", datetime(2026, 3, 23, 9, tzinfo=UTC)),
    ]


def test_declined_occurrence_is_hidden_unless_kept() -> None:
    me = {"email": "me@example.com", "self": True}
    master = ev(
        "daily1",
        {"dateTime": "2026-03-02T09:00:00Z"},
        {"dateTime": "2026-03-02T10:00:00Z"},
        recurrence=["RRULE:FREQ=DAILY;COUNT=3"],
        attendees=[{**me, "responseStatus": "accepted"}],
    )
    declined = ev(
        "daily1_20260303T090000Z",
        {"dateTime": "2026-03-03T09:00:00Z"},
        {"dateTime": "2026-03-03T10:00:00Z"},
        recurringEventId="daily1",
        originalStartTime={"dateTime": "2026-03-03T09:00:00Z"},
        attendees=[{**me, "responseStatus": "declined"}],
    )
    window = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC))
    hidden = expand([master, declined], "c", *window, UTC_TZ, keep_declined=False)
    kept = expand([master, declined], "c", *window, UTC_TZ, keep_declined=True)
    assert [o.event_id for o in hidden] == ["daily1_20260302T090000Z", "daily1_20260304T090000Z"]
    assert len(kept) == 3


def test_window_edges_follow_googles_rule() -> None:
    at = ev("edge1", {"dateTime": "2026-03-02T09:00:00Z"}, {"dateTime": "2026-03-02T10:00:00Z"})
    instant = ev(
        "edge2", {"dateTime": "2026-03-02T10:00:00Z"}, {"dateTime": "2026-03-02T10:00:00Z"}
    )
    ten = datetime(2026, 3, 2, 10, tzinfo=UTC)
    # Ending exactly at the window's start is out; taking no time at its start is in.
    assert [
        o.event_id for o in expand([at, instant], "c", ten, ten + timedelta(hours=1), UTC_TZ)
    ] == ["edge2"]
    # Starting exactly at the window's end is out.
    assert expand([at], "c", ten - timedelta(hours=2), ten - timedelta(hours=1), UTC_TZ) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        expand([at], "c", datetime(2026, 3, 1), ten, UTC_TZ)


def test_unreadable_rules_do_not_break_the_view() -> None:
    bad = ev(
        "bad1",
        {"dateTime": "2026-03-02T09:00:00Z"},
        {"dateTime": "2026-03-02T10:00:00Z"},
        recurrence=["RRULE:FREQ=SOMETIMES", "EXDATE:notadate"],
    )
    good = ev("good1", {"dateTime": "2026-03-03T09:00:00Z"}, {"dateTime": "2026-03-03T10:00:00Z"})
    window = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC))
    # The series stands for its first occurrence; the other event is unaffected.
    assert [o.event_id for o in expand([bad, good], "c", *window, UTC_TZ)] == [
        "bad1_20260302T090000Z",
        "good1",
    ]


async def test_single_events_of_every_length_are_found_at_the_window_edges(
    h: GoogleHarness,
) -> None:
    """Short singles are read by start, longer ones by end (see gcalendar.SHORT_SPAN): each
    kind just inside and just outside a window, in calendars at both ends of the zones."""
    edge = datetime(2026, 12, 10, tzinfo=UTC)
    hour = timedelta(hours=1)

    def at(summary: str, start: datetime, length: timedelta) -> dict[str, Any]:
        return timed_event(summary, start.isoformat(), (start + length).isoformat())

    def seed(calendar_id: str) -> None:
        for ev in (
            at("ends at the edge", edge - 2 * hour, 2 * hour),
            at("crosses the edge", edge - hour, 2 * hour),
            at("70 h, short", edge - 69 * hour, 70 * hour),
            at("73 h, long", edge - 72 * hour, 73 * hour),
            at("73 h, ended", edge - 74 * hour, 73 * hour),
            at("conference", edge - 9 * 24 * hour, 10 * 24 * hour),
            at("takes no time, at the start", edge, timedelta(0)),
            at("takes no time, at the end", edge + 7 * 24 * hour, timedelta(0)),
            at("long, after the window", edge + 8 * 24 * hour, 5 * 24 * hour),
            at("a year, over", edge - 400 * 24 * hour, 365 * 24 * hour),
            all_day_event("the edge's day", "2026-12-10", "2026-12-11"),
            all_day_event("the day before", "2026-12-09", "2026-12-10"),
            all_day_event("two days", "2026-12-08", "2026-12-10"),
            all_day_event("a week, across", "2026-12-05", "2026-12-12"),
            all_day_event("the last day", "2026-12-16", "2026-12-17"),
            all_day_event("the day after", "2026-12-17", "2026-12-18"),
        ):
            h.emu.control.add_event(h.email, calendar_id, ev)

    calendars = [
        h.email,
        h.emu.control.add_calendar(h.email, summary="Kiritimati", timeZone="Pacific/Kiritimati"),
        h.emu.control.add_calendar(h.email, summary="Baker Island", timeZone="Etc/GMT+12"),
    ]
    for calendar_id in calendars:
        seed(calendar_id)
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK

    windows = [
        (edge, edge + 7 * 24 * hour),
        (edge + 10 * hour, edge + 12 * hour),
        (edge - 30 * 24 * hour, edge - 29 * 24 * hour),
    ]
    for calendar_id in calendars:
        for window in windows:
            await assert_upcoming_is_google(h, charm, calendar_id, *window)
    summaries = {o.summary for o in upcoming(h, charm, *windows[0])}
    assert {"crosses the edge", "70 h, short", "73 h, long", "conference"} <= summaries
    assert "ends at the edge" not in summaries and "73 h, ended" not in summaries
