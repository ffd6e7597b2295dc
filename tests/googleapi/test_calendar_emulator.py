"""CalendarClient against the emulator: pagination, incremental sync, 410, encoded ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trayapp.core.errors import RateLimited
from trayapp.google.errors import GoogleRequestError, SyncTokenExpired

from .conftest import EMAIL, Rig

CONTACTS = "#contacts@group.v.calendar.google.com"
HOLIDAYS = "en.usa#holiday@group.v.calendar.google.com"
DAY = datetime(2026, 12, 1, 9, tzinfo=UTC)


def event(n: int, **extra: Any) -> dict[str, Any]:
    start = DAY + timedelta(days=n)
    return {
        "summary": f"Event {n}",
        "start": {"dateTime": start.isoformat()},
        "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
        **extra,
    }


def primary(rig: Rig) -> str:
    """The primary calendar's id is the account's address."""
    return EMAIL


async def test_calendar_list_full_then_incremental(rig: Rig) -> None:
    control = rig.emu.control
    control.add_calendar(EMAIL, CONTACTS, summary="Birthdays")
    control.add_calendar(EMAIL, HOLIDAYS, summary="Holidays")
    calendar = rig.api.calendar()
    full = await calendar.list_calendars(max_results=1)
    ids = {c["id"] for c in full.items}
    assert {CONTACTS, HOLIDAYS} <= ids and full.next_sync_token
    assert len(rig.emu.control.requests(api_method="calendar.calendarList.list")) == len(ids)

    control.update_calendar(EMAIL, CONTACTS, summary="Contacts' birthdays")
    control.remove_calendar(EMAIL, HOLIDAYS)
    changes = await calendar.list_calendars(full.next_sync_token, max_results=1)
    by_id = {c["id"]: c for c in changes.items}
    assert by_id[CONTACTS]["summary"] == "Contacts' birthdays"
    assert by_id[HOLIDAYS].get("deleted") is True
    assert changes.next_sync_token and changes.next_sync_token != full.next_sync_token


async def test_events_full_sync_follows_every_page(rig: Rig) -> None:
    ids = [rig.emu.control.add_event(EMAIL, primary(rig), event(n)) for n in range(8)]
    result = await rig.api.calendar().list_events(primary(rig), max_results=3, single_events=True)
    assert sorted(e["id"] for e in result.items) == sorted(ids)
    assert result.next_sync_token
    calls = rig.emu.control.requests(api_method="calendar.events.list")
    assert len(calls) == 3
    assert [c.query_values("pageToken") != [] for c in calls] == [False, True, True]


async def test_paginated_incremental_sync_uses_the_same_sync_token(rig: Rig) -> None:
    control = rig.emu.control
    ids = [control.add_event(EMAIL, primary(rig), event(n)) for n in range(4)]
    calendar = rig.api.calendar()
    full = await calendar.list_events(primary(rig), single_events=True)
    assert full.next_sync_token
    control.clear_log()

    new = [control.add_event(EMAIL, primary(rig), event(10 + n)) for n in range(3)]
    control.update_event(EMAIL, primary(rig), ids[0], {"summary": "Moved"})
    control.cancel_event(EMAIL, primary(rig), ids[1])
    changes = await calendar.list_events(
        primary(rig), full.next_sync_token, single_events=True, max_results=2
    )
    by_id = {e["id"]: e for e in changes.items}
    assert set(by_id) == {*new, ids[0], ids[1]}
    assert by_id[ids[0]]["summary"] == "Moved"
    assert by_id[ids[1]]["status"] == "cancelled"
    calls = control.requests(api_method="calendar.events.list")
    assert len(calls) == 3  # 5 changes, 2 per page
    assert [c.query_values("syncToken") for c in calls] == [[full.next_sync_token]] * 3
    assert changes.next_sync_token and changes.next_sync_token != full.next_sync_token

    # Nothing changed since: one request, no items, a token to keep using.
    control.clear_log()
    again = await calendar.list_events(primary(rig), changes.next_sync_token, single_events=True)
    assert again.items == [] and again.next_sync_token
    assert len(control.requests(api_method="calendar.events.list")) == 1


async def test_invalidated_sync_token_is_sync_token_expired(rig: Rig) -> None:
    rig.emu.control.add_event(EMAIL, primary(rig), event(1))
    calendar = rig.api.calendar()
    full = await calendar.list_events(primary(rig))
    assert full.next_sync_token
    rig.emu.control.invalidate_sync_tokens(EMAIL, primary(rig))
    rig.emu.control.clear_log()
    with pytest.raises(SyncTokenExpired):
        await calendar.list_events(primary(rig), full.next_sync_token)
    assert len(rig.emu.control.requests(api_method="calendar.events.list")) == 1
    assert rig.clock.waits == []
    # The documented remedy works: a full sync without the token.
    assert len((await calendar.list_events(primary(rig))).items) == 1


async def test_percent_encoded_calendar_ids(rig: Rig) -> None:
    control = rig.emu.control
    control.add_calendar(EMAIL, CONTACTS, summary="Birthdays")
    control.add_calendar(EMAIL, HOLIDAYS, summary="Holidays")
    birthday = control.add_event(EMAIL, CONTACTS, event(1, summary="Ada's birthday"))
    holiday = control.add_event(EMAIL, HOLIDAYS, event(2, summary="Holiday"))
    calendar = rig.api.calendar()
    contacts = await calendar.list_events(CONTACTS)
    holidays = await calendar.list_events(HOLIDAYS)
    assert [e["id"] for e in contacts.items] == [birthday]
    assert [e["id"] for e in holidays.items] == [holiday]
    # The emulator logs decoded paths: the whole id arrived (an unencoded "#" would have cut
    # the URL there, as a fragment).
    paths = [c.path for c in control.requests(api_method="calendar.events.list")]
    assert paths == [
        f"/calendar/v3/calendars/{CONTACTS}/events",
        f"/calendar/v3/calendars/{HOLIDAYS}/events",
    ]


async def test_calendar_rate_limit_is_retried_then_reported(rig: Rig) -> None:
    rig.emu.control.add_fault(
        kind="status", status="403-calendarRateLimit", endpoint="calendar.events.list", times=2
    )
    await rig.api.calendar().list_events(primary(rig))
    assert len(rig.emu.control.requests(api_method="calendar.events.list")) == 3
    rig.emu.control.add_fault(
        kind="status", status="429-calendarRateLimit", endpoint="calendar.events.list"
    )
    with pytest.raises(RateLimited):
        await rig.api.calendar().list_events(primary(rig))


async def test_a_cut_listing_continues_at_its_page_token(rig: Rig) -> None:
    control = rig.emu.control
    ids = [control.add_event(EMAIL, primary(rig), event(n)) for n in range(7)]
    calendar = rig.api.calendar()
    pages = calendar.iter_event_pages(primary(rig), show_deleted=True, max_results=3)
    first = await anext(pages)
    await pages.aclose()  # the run stopped after one page
    assert first.next_page_token and first.next_sync_token is None

    changed = ids[-1]  # not listed yet: the rest of the listing shows the change
    control.update_event(EMAIL, primary(rig), changed, {"summary": "Changed"})
    control.clear_log()
    rest = await calendar.list_events(
        primary(rig), show_deleted=True, max_results=2, page_token=first.next_page_token
    )
    assert sorted(e["id"] for e in [*first.items, *rest.items]) == sorted(ids)
    sent = control.requests(api_method="calendar.events.list")
    assert [c.query_values("pageToken") != [] for c in sent] == [True, True]  # no first page
    assert sent[0].query_values("pageToken") == [first.next_page_token]
    assert rest.next_sync_token

    # The listing's sync token works like any other.
    late = control.add_event(EMAIL, primary(rig), event(20))
    changes = await calendar.list_events(primary(rig), rest.next_sync_token)
    assert late in {e["id"] for e in changes.items}


async def test_a_page_token_of_other_arguments_is_refused(rig: Rig) -> None:
    for n in range(3):
        rig.emu.control.add_event(EMAIL, primary(rig), event(n))
    calendar = rig.api.calendar()
    first = await anext(calendar.iter_event_pages(primary(rig), max_results=1))
    assert first.next_page_token
    with pytest.raises(GoogleRequestError) as info:
        await calendar.list_events(
            primary(rig), show_deleted=True, page_token=first.next_page_token
        )
    assert info.value.status == 400 and not isinstance(info.value, SyncTokenExpired)


async def test_list_calendars_accepts_writer_without_private_access(rig: Rig) -> None:
    control = rig.emu.control
    shared = control.add_calendar(EMAIL, accessRole="writerWithoutPrivateAccess")
    reader = control.add_calendar(EMAIL, accessRole="reader")

    result = await rig.api.calendar().list_calendars(min_access_role="writerWithoutPrivateAccess")

    ids = {entry["id"] for entry in result.items}
    assert shared in ids and reader not in ids
