"""Export of the Google Calendar importer's events: JSON lines and iCalendar.

The .ics file is read back with icalendar and its recurring series re-expanded with dateutil;
the result must be what the upcoming view (itself checked against Google's expansion) shows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import icalendar
import pytest
from dateutil import rrule
from gcal_helpers import StoreSource, events, upcoming

from tests.emulator.harness import all_day_event, timed_event
from trayapp.api import ExportError
from trayapp.auth.wiring import google_api_kwargs
from trayapp.core.outcomes import OutcomeKind
from trayapp.google.client import GoogleApi
from trayapp.patterns.gcalendar import EVENT_FIELDS, CalendarImporter, event_key, stored_event

GoogleHarness = Any
HarnessFactory = Any

NY = "America/New_York"
WINDOW = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


@pytest.fixture
async def h(google_harness: HarnessFactory) -> GoogleHarness:
    return await google_harness(patterns=(CalendarImporter,))


@pytest.fixture
async def synced(h: GoogleHarness) -> tuple[GoogleHarness, str, dict[str, str]]:
    c, e = h.emu.control, h.email
    weekly = c.add_event(
        e,
        e,
        timed_event(
            "standup",
            "2026-10-19T09:00:00-04:00",
            "2026-10-19T09:30:00-04:00",
            NY,
            recurrence=[
                "RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=8",
                "EXDATE;TZID=America/New_York:20261130T090000",
            ],
        ),
    )
    c.update_event(
        e,
        e,
        f"{weekly}_20261026T130000Z",
        {
            "start": {"dateTime": "2026-10-27T11:00:00-04:00", "timeZone": NY},
            "end": {"dateTime": "2026-10-27T12:00:00-04:00", "timeZone": NY},
            "summary": "standup (moved)",
        },
    )
    c.cancel_event(e, e, f"{weekly}_20261109T140000Z")
    meeting = c.add_event(
        e,
        e,
        timed_event(
            "planning",
            "2026-11-03T15:00:00Z",
            "2026-11-03T16:00:00Z",
            description="Agenda: everything",
            location="Room 1",
            attendees=[
                {"email": e, "self": True, "responseStatus": "accepted"},
                {"email": "bob@example.com", "displayName": "Bob", "responseStatus": "tentative"},
            ],
            conferenceData={
                "conferenceSolution": {"name": "Google Meet"},
                "entryPoints": [{"entryPointType": "video", "uri": "https://meet.google.com/x"}],
            },
        ),
    )
    holiday = c.add_event(e, e, all_day_event("holiday", "2026-12-24", "2026-12-26"))
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    return h, charm, {"weekly": weekly, "meeting": meeting, "holiday": holiday}


def test_unknown_format_and_directory_are_refused(tmp_path: Path) -> None:
    pattern = CalendarImporter()
    with pytest.raises(ExportError, match="exports jsonl or ics"):
        pattern.export(object(), "csv", tmp_path / "x.csv")  # type: ignore[arg-type]


async def test_jsonl_has_every_event_once_ordered_by_start(
    synced: tuple[GoogleHarness, str, dict[str, str]], tmp_path: Path
) -> None:
    h, charm, ids = synced
    dest = tmp_path / "out" / "events.jsonl"
    count = CalendarImporter().export(StoreSource(h, charm), "jsonl", dest)

    lines = [json.loads(line) for line in dest.read_text("utf-8").splitlines()]
    live = [v for v in events(h, charm).values() if v.get("status") != "cancelled"]
    assert count == len(lines) == len(live) == 4  # series, moved occurrence, meeting, holiday
    assert lines[0]["id"] == ids["weekly"]
    assert lines[-1]["id"] == ids["holiday"] and lines[-1]["allDay"] is True
    meeting = next(ev for ev in lines if ev["id"] == ids["meeting"])
    assert meeting["conference"]["uri"] == "https://meet.google.com/x"
    assert meeting["attendees"][1] == {
        "email": "bob@example.com",
        "displayName": "Bob",
        "responseStatus": "tentative",
    }
    with pytest.raises(ExportError, match="is a directory"):
        CalendarImporter().export(StoreSource(h, charm), "jsonl", tmp_path)


def _ics_occurrences(cal: Any, start: datetime, end: datetime) -> list[Any]:
    """Expand the exported file the way a calendar program would (RRULE, EXDATE, RECURRENCE-ID)."""
    out: list[tuple[datetime, datetime]] = []
    overrides: dict[tuple[str, Any], Any] = {}
    for ve in cal.walk("VEVENT"):
        if "RECURRENCE-ID" in ve:
            overrides[(str(ve["UID"]), ve["RECURRENCE-ID"].dt)] = ve
    for ve in cal.walk("VEVENT"):
        if "RECURRENCE-ID" in ve:
            continue
        dtstart = ve["DTSTART"].dt
        if not isinstance(dtstart, datetime):
            continue  # the all-day holiday: checked separately
        duration = ve["DTEND"].dt - dtstart
        if "RRULE" not in ve:
            out.append((dtstart.astimezone(UTC), (dtstart + duration).astimezone(UTC)))
            continue
        rules = rrule.rruleset()
        rule = rrule.rrulestr(ve["RRULE"].to_ical().decode(), dtstart=dtstart)
        assert isinstance(rule, rrule.rrule)
        rules.rrule(rule)
        exdates = ve.get("EXDATE")
        for group in exdates if isinstance(exdates, list) else [exdates] if exdates else []:
            for d in group.dts:
                rules.exdate(d.dt)
        for occ in rules:
            override = overrides.get((str(ve["UID"]), occ))
            if override is not None:
                s, e = override["DTSTART"].dt, override["DTEND"].dt
            else:
                s, e = occ, occ + duration
            out.append((s.astimezone(UTC), e.astimezone(UTC)))
    return sorted(o for o in out if o[1] > start and o[0] < end)


async def test_ics_round_trips_series_exceptions_and_attendees(
    synced: tuple[GoogleHarness, str, dict[str, str]], tmp_path: Path
) -> None:
    h, charm, _ids = synced
    dest = tmp_path / "calendar.ics"
    count = CalendarImporter().export(StoreSource(h, charm), "ics", dest)

    cal: Any = icalendar.Calendar.from_ical(dest.read_bytes())
    vevents: list[Any] = list(cal.walk("VEVENT"))
    assert count == len(vevents) == 4
    assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == [NY]
    master = next(v for v in vevents if "RRULE" in v)
    moved = next(v for v in vevents if "RECURRENCE-ID" in v)
    assert str(moved["UID"]) == str(master["UID"])
    assert moved["RECURRENCE-ID"].dt == datetime(2026, 10, 26, 13, tzinfo=UTC)
    assert str(moved["SUMMARY"]) == "standup (moved)"
    meeting = next(v for v in vevents if str(v["SUMMARY"]) == "planning")
    attendees = {str(a): a.params["PARTSTAT"] for a in meeting["ATTENDEE"]}
    assert attendees == {f"mailto:{h.email}": "ACCEPTED", "mailto:bob@example.com": "TENTATIVE"}
    assert str(meeting["LOCATION"]) == "Room 1"
    holiday = next(v for v in vevents if str(v["SUMMARY"]) == "holiday")
    assert (holiday["DTSTART"].dt.isoformat(), holiday["DTEND"].dt.isoformat()) == (
        "2026-12-24",
        "2026-12-26",
    )

    timed_view = [
        (o.start.astimezone(UTC), o.end.astimezone(UTC))
        for o in upcoming(h, charm, *WINDOW)
        if not o.all_day
    ]
    assert _ics_occurrences(cal, *WINDOW) == sorted(timed_view)
    assert len(timed_view) == 7  # 8 Mondays, one cancelled, one EXDATE, plus the meeting


async def test_a_declined_occurrence_is_left_out_unless_declined_events_are_kept(
    h: GoogleHarness, tmp_path: Path
) -> None:
    me = {"email": h.email, "self": True}
    series = h.emu.control.add_event(
        h.email,
        h.email,
        timed_event(
            "daily",
            "2026-12-01T09:00:00Z",
            "2026-12-01T10:00:00Z",
            recurrence=["RRULE:FREQ=DAILY;COUNT=3"],
            attendees=[{**me, "responseStatus": "accepted"}],
        ),
    )
    h.emu.control.update_event(
        h.email,
        h.email,
        f"{series}_20261202T090000Z",
        {"attendees": [{**me, "responseStatus": "declined"}]},
    )
    dropping = h.add_charm("gcalendar-importer", {}, name="drop")
    keeping = h.add_charm("gcalendar-importer", {"keep_declined": True}, name="keep")
    for charm in (dropping, keeping):
        assert (await h.sync(charm)).kind is OutcomeKind.OK

    exported: dict[str, Any] = {}
    for charm in (dropping, keeping):
        dest = tmp_path / f"{charm}.ics"
        CalendarImporter().export(StoreSource(h, charm), "ics", dest)
        exported[charm] = icalendar.Calendar.from_ical(dest.read_bytes())
        lines = tmp_path / f"{charm}.jsonl"
        n = CalendarImporter().export(StoreSource(h, charm), "jsonl", lines)
        assert n == (1 if charm == dropping else 2)

    declined = datetime(2026, 12, 2, 9, tzinfo=UTC)
    window = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    dropped = _ics_occurrences(exported[dropping], *window)
    kept = _ics_occurrences(exported[keeping], *window)
    assert [s for s, _ in dropped] == [datetime(2026, 12, d, 9, tzinfo=UTC) for d in (1, 3)]
    assert declined in [s for s, _ in kept] and len(kept) == 3
    assert [o.start for o in upcoming(h, dropping, *window)] == [s for s, _ in dropped]


async def test_events_are_asked_for_with_only_the_stored_fields_and_nothing_is_lost(
    synced: tuple[GoogleHarness, str, dict[str, str]],
) -> None:
    """The importer's events.list requests carry a partial-response ``fields`` selection, and
    what it stores is exactly what it would store from the full events."""
    h, charm, _ = synced
    listed = [e for e in h.emu.control.requests() if e.api_method == "calendar.events.list"]
    assert listed
    for entry in listed:
        assert dict(entry.query).get("fields", "").startswith("items(id,status,summary")
    async with GoogleApi(**google_api_kwargs(h.accounts, h.account_id)) as api:
        full = await api.calendar().list_events(h.email, show_deleted=True)
    stored = events(h, charm)
    live = [ev for ev in full.items if ev.get("status") != "cancelled"]
    assert len(live) == 4
    for ev in live:
        assert stored[event_key(h.email, ev["id"])] == stored_event(ev, h.email)
    assert any("attendees" in ev and "conferenceData" in ev for ev in live)


async def test_a_partial_response_is_smaller_and_keeps_the_page_fields(h: GoogleHarness) -> None:
    c, e = h.emu.control, h.email
    for n in range(30):
        c.add_event(
            e,
            e,
            timed_event(
                f"e{n}",
                f"2026-11-{n % 28 + 1:02d}T10:00:00Z",
                f"2026-11-{n % 28 + 1:02d}T11:00:00Z",
            ),
        )
    async with GoogleApi(**google_api_kwargs(h.accounts, h.account_id)) as api:
        cal = api.calendar()
        full = [p async for p in cal.iter_event_pages(e, max_results=10)]
        part = [p async for p in cal.iter_event_pages(e, max_results=10, fields=EVENT_FIELDS)]
    assert [len(p.items) for p in part] == [len(p.items) for p in full] == [10, 10, 10]
    assert part[-1].next_sync_token and part[-1].time_zone == full[-1].time_zone
    assert [stored_event(ev, e) for p in part for ev in p.items] == [
        stored_event(ev, e) for p in full for ev in p.items
    ]
    assert all("kind" not in ev and "creator" not in ev for p in part for ev in p.items)
    assert all("kind" in ev for p in full for ev in p.items)
