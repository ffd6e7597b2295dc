"""Calendar v3: calendarList and events.list cursor rules, recurrence expansion, time bounds."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.emulator.harness import EmulatorServer, Session, timed_event

from .conftest import bearer

FULL_SYNC_410 = {
    "error": {
        "code": 410,
        "message": "Sync token is no longer valid, a full sync is required.",
        "errors": [
            {
                "message": "Sync token is no longer valid, a full sync is required.",
                "domain": "calendar",
                "reason": "fullSyncRequired",
                "locationType": "parameter",
                "location": "syncToken",
            }
        ],
    }
}


def events_path(calendar_id: str) -> str:
    return f"/calendar/v3/calendars/{quote(calendar_id, safe='')}/events"


async def get(http: httpx.AsyncClient, s: Session, path: str, **params: Any) -> httpx.Response:
    return await http.get(path, params=params, headers=bearer(s.access_token))


async def all_pages(
    http: httpx.AsyncClient, s: Session, path: str, **params: Any
) -> tuple[list[dict[str, Any]], str, int]:
    """Follow nextPageToken; check the page invariants; return items, nextSyncToken, pages."""
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        resp = await get(http, s, path, **params)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        pages += 1
        # Exactly one of nextPageToken / nextSyncToken on every page.
        assert ("nextPageToken" in page) != ("nextSyncToken" in page)
        items += page["items"]
        if "nextSyncToken" in page:
            return items, page["nextSyncToken"], pages
        params["pageToken"] = page["nextPageToken"]


async def test_calendar_list_pagination_and_incremental_sync(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    e = session.email
    ids = [emu.control.add_calendar(e, summary=f"Cal {i}") for i in range(4)]
    hidden = emu.control.add_calendar(e, summary="Hidden", hidden=True)
    items, token, pages = await all_pages(
        http, session, "/calendar/v3/users/me/calendarList", maxResults=2
    )
    assert pages == 3
    assert items[0]["id"] == e and items[0]["primary"] is True
    assert {c["id"] for c in items} == {e, *ids}
    with_hidden, _, _ = await all_pages(
        http, session, "/calendar/v3/users/me/calendarList", showHidden="true"
    )
    assert hidden in {c["id"] for c in with_hidden}

    empty = (await get(http, session, "/calendar/v3/users/me/calendarList", syncToken=token)).json()
    assert empty["items"] == [] and "nextSyncToken" in empty
    emu.control.update_calendar(e, ids[0], summary="Renamed")
    emu.control.remove_calendar(e, ids[1])
    emu.control.update_calendar(e, hidden, summary="Still hidden")
    changed, token2, _ = await all_pages(
        http, session, "/calendar/v3/users/me/calendarList", syncToken=token
    )
    by_id = {c["id"]: c for c in changed}
    assert set(by_id) == {ids[0], ids[1], hidden}  # deleted and hidden entries always returned
    assert by_id[ids[0]]["summary"] == "Renamed"
    assert by_id[ids[1]]["deleted"] is True
    bad = await get(
        http, session, "/calendar/v3/users/me/calendarList", syncToken=token2, minAccessRole="owner"
    )
    assert bad.status_code == 400
    emu.control.invalidate_sync_tokens(e)
    gone = await get(http, session, "/calendar/v3/users/me/calendarList", syncToken=token2)
    assert gone.status_code == 410 and gone.json() == FULL_SYNC_410


async def test_calendar_list_max_results_capped_at_250(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    for i in range(260):
        emu.control.add_calendar(session.email, summary=f"c{i}")
    page = (await get(http, session, "/calendar/v3/users/me/calendarList", maxResults=1000)).json()
    assert len(page["items"]) == 250 and "nextPageToken" in page


async def test_events_full_then_paginated_incremental_sync(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    e = session.email
    ids = [
        emu.control.add_event(
            e,
            e,
            timed_event(
                f"E{i}", f"2026-02-{i + 1:02d}T10:00:00Z", f"2026-02-{i + 1:02d}T11:00:00Z"
            ),
        )
        for i in range(7)
    ]
    items, token, pages = await all_pages(http, session, events_path(e), maxResults=3)
    assert pages == 3 and sorted(i["id"] for i in items) == sorted(ids)

    emu.control.update_event(e, e, ids[0], {"summary": "E0 changed"})
    emu.control.cancel_event(e, e, ids[1])
    new = [
        emu.control.add_event(
            e, e, timed_event(f"N{i}", "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z")
        )
        for i in range(3)
    ]
    # Paginated incremental sync: the same syncToken with each pageToken.
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"syncToken": token, "maxResults": 2}
    while True:
        page = (await get(http, session, events_path(e), **params)).json()
        seen += page["items"]
        if "nextSyncToken" in page:
            assert "nextPageToken" not in page
            next_token = page["nextSyncToken"]
            break
        assert "nextSyncToken" not in page
        params["pageToken"] = page["nextPageToken"]
    by_id = {i["id"]: i for i in seen}
    assert set(by_id) == {ids[0], ids[1], *new}
    assert by_id[ids[0]]["summary"] == "E0 changed"
    assert by_id[ids[1]] == {
        "kind": "calendar#event",
        "etag": by_id[ids[1]]["etag"],
        "id": ids[1],
        "status": "cancelled",
    }
    after = (await get(http, session, events_path(e), syncToken=next_token)).json()
    assert after["items"] == []
    # Full sync hides cancelled events unless showDeleted.
    full, _, _ = await all_pages(http, session, events_path(e))
    assert ids[1] not in {i["id"] for i in full}
    deleted, _, _ = await all_pages(http, session, events_path(e), showDeleted="true")
    assert ids[1] in {i["id"] for i in deleted}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("iCalUID", "x@google.com"),
        ("orderBy", "updated"),
        ("privateExtendedProperty", "a=b"),
        ("q", "x"),
        ("sharedExtendedProperty", "a=b"),
        ("timeMin", "2026-01-01T00:00:00Z"),
        ("timeMax", "2026-01-01T00:00:00Z"),
        ("updatedMin", "2026-01-01T00:00:00Z"),
        ("showDeleted", "false"),
    ],
)
async def test_sync_token_forbidden_combinations(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session, name: str, value: str
) -> None:
    token = (await get(http, session, events_path("primary"))).json()["nextSyncToken"]
    resp = await get(http, session, events_path("primary"), syncToken=token, **{name: value})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == 400


async def test_sync_token_410_cases(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    e = session.email
    emu.control.add_event(e, e, timed_event("a", "2026-02-01T10:00:00Z", "2026-02-01T11:00:00Z"))
    token = (await get(http, session, events_path(e))).json()["nextSyncToken"]
    assert (await get(http, session, events_path(e), syncToken=token)).status_code == 200
    garbage = await get(http, session, events_path(e), syncToken="not-a-token")
    assert garbage.status_code == 410
    other_params = await get(http, session, events_path(e), syncToken=token, singleEvents="true")
    assert other_params.status_code == 410
    other = emu.control.add_calendar(e, summary="Other")
    assert (await get(http, session, events_path(other), syncToken=token)).status_code == 410
    emu.control.invalidate_sync_tokens(e, e)
    resp = await get(http, session, events_path(e), syncToken=token)
    assert resp.status_code == 410
    assert resp.json() == FULL_SYNC_410
    assert resp.headers["content-type"] == "application/json; charset=UTF-8"
    # The other calendar's tokens survive a per-calendar invalidation.
    tok_other = (await get(http, session, events_path(other))).json()["nextSyncToken"]
    emu.control.invalidate_sync_tokens(e, e)
    assert (await get(http, session, events_path(other), syncToken=tok_other)).status_code == 200


async def test_single_events_expansion_with_exceptions(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    e = session.email
    master = emu.control.add_event(
        e,
        e,
        timed_event(
            "Standup",
            "2026-03-02T09:00:00-05:00",
            "2026-03-02T09:15:00-05:00",
            "America/New_York",
            recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"],
        ),
    )
    # 2026-03-08 is the US DST switch: occurrences stay at 09:00 local.
    moved = f"{master}_20260309T130000Z"
    cancelled = f"{master}_20260316T130000Z"
    emu.control.update_event(
        e,
        e,
        moved,
        {
            "summary": "Standup (moved)",
            "start": {"dateTime": "2026-03-09T10:00:00-04:00", "timeZone": "America/New_York"},
            "end": {"dateTime": "2026-03-09T10:15:00-04:00", "timeZone": "America/New_York"},
        },
    )
    emu.control.cancel_event(e, e, cancelled)
    items, token, _ = await all_pages(
        http, session, events_path(e), singleEvents="true", orderBy="startTime"
    )
    assert [i["id"] for i in items] == [
        f"{master}_20260302T140000Z",
        moved,
        f"{master}_20260323T130000Z",
    ]
    assert [i["start"]["dateTime"] for i in items] == [
        "2026-03-02T09:00:00-05:00",
        "2026-03-09T10:00:00-04:00",
        "2026-03-23T09:00:00-04:00",
    ]
    assert all(i["recurringEventId"] == master for i in items)
    assert items[1]["originalStartTime"] == {
        "dateTime": "2026-03-09T09:00:00-04:00",
        "timeZone": "America/New_York",
    }
    assert "recurrence" not in items[0]
    # singleEvents=false: the master plus its exceptions, the cancelled one included even
    # without showDeleted ("Cancelled instances of recurring events (but not the underlying
    # recurring event) will still be included if showDeleted and singleEvents are both False").
    raw, _, _ = await all_pages(http, session, events_path(e))
    assert {i["id"] for i in raw} == {master, moved, cancelled}
    assert next(i for i in raw if i["id"] == cancelled)["status"] == "cancelled"
    assert next(i for i in raw if i["id"] == master)["recurrence"] == ["RRULE:FREQ=WEEKLY;COUNT=4"]
    # Incremental: a cancelled occurrence carries id, recurringEventId and originalStartTime.
    emu.control.cancel_event(e, e, f"{master}_20260323T130000Z")
    changed = (
        await get(http, session, events_path(e), singleEvents="true", syncToken=token)
    ).json()["items"]
    assert changed == [
        {
            "kind": "calendar#event",
            "etag": changed[0]["etag"],
            "id": f"{master}_20260323T130000Z",
            "status": "cancelled",
            "recurringEventId": master,
            "originalStartTime": {
                "dateTime": "2026-03-23T09:00:00-04:00",
                "timeZone": "America/New_York",
            },
        }
    ]


def weekly(summary: str, count: int = 4) -> dict[str, Any]:
    """A series every Monday 09:00-10:00 UTC from 2026-03-02."""
    return timed_event(
        summary,
        "2026-03-02T09:00:00Z",
        "2026-03-02T10:00:00Z",
        recurrence=[f"RRULE:FREQ=WEEKLY;COUNT={count}"],
    )


async def test_show_deleted_rules_for_cancelled_occurrences(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    """Google's showDeleted doc: cancelled occurrences are listed when showDeleted and
    singleEvents are both false; with singleEvents=true only showDeleted=true lists them, and
    never the series itself; a deleted single event needs showDeleted=true."""
    e = session.email
    master = emu.control.add_event(e, e, weekly("Series"))
    gone = f"{master}_20260309T090000Z"
    emu.control.cancel_event(e, e, gone)
    single = emu.control.add_event(
        e, e, timed_event("One", "2026-03-04T09:00:00Z", "2026-03-04T10:00:00Z")
    )
    emu.control.cancel_event(e, e, single)

    async def ids(**params: str) -> set[str]:
        items, _, _ = await all_pages(http, session, events_path(e), **params)
        return {i["id"] for i in items}

    assert await ids() == {master, gone}
    assert await ids(showDeleted="true") == {master, gone, single}
    live = {
        f"{master}_20260302T090000Z",
        f"{master}_20260316T090000Z",
        f"{master}_20260323T090000Z",
    }
    assert await ids(singleEvents="true") == live
    assert await ids(singleEvents="true", showDeleted="true") == live | {gone, single}


async def test_cancelling_a_series_cancels_its_exceptions(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    e = session.email
    master = emu.control.add_event(e, e, weekly("Series"))
    moved = f"{master}_20260309T090000Z"
    emu.control.update_event(e, e, moved, {"summary": "Series (moved)"})
    _, token, _ = await all_pages(http, session, events_path(e))
    _, single_token, _ = await all_pages(http, session, events_path(e), singleEvents="true")
    emu.control.cancel_event(e, e, master)

    for params in ({}, {"singleEvents": "true"}):
        items, _, _ = await all_pages(http, session, events_path(e), **params)
        assert items == [], params
    items, _, _ = await all_pages(http, session, events_path(e), showDeleted="true")
    assert {(i["id"], i["status"]) for i in items} == {(master, "cancelled"), (moved, "cancelled")}
    # Both syncs learn that the modified occurrence is gone, not only the series.
    for tok, params in ((token, {}), (single_token, {"singleEvents": "true"})):
        changed, _, _ = await all_pages(http, session, events_path(e), syncToken=tok, **params)
        assert {(i["id"], i["status"]) for i in changed} == {
            (master, "cancelled"),
            (moved, "cancelled"),
        }


async def test_single_events_window_follows_moved_occurrences(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    """An occurrence moved into the window from outside it is listed; one moved out is not."""
    e = session.email
    master = emu.control.add_event(e, e, weekly("Series"))
    into = f"{master}_20260302T090000Z"  # week 1 -> Wednesday of week 3
    out_of = f"{master}_20260316T090000Z"  # week 3 -> Wednesday of week 1
    emu.control.update_event(
        e,
        e,
        into,
        {
            "start": {"dateTime": "2026-03-18T09:00:00Z"},
            "end": {"dateTime": "2026-03-18T10:00:00Z"},
        },
    )
    emu.control.update_event(
        e,
        e,
        out_of,
        {
            "start": {"dateTime": "2026-03-04T09:00:00Z"},
            "end": {"dateTime": "2026-03-04T10:00:00Z"},
        },
    )
    week3, _, _ = await all_pages(
        http,
        session,
        events_path(e),
        singleEvents="true",
        orderBy="startTime",
        timeMin="2026-03-15T00:00:00Z",
        timeMax="2026-03-22T00:00:00Z",
    )
    assert [i["id"] for i in week3] == [into]
    # The series has a start time zone (Google requires one on a recurring event): its
    # occurrences' originalStartTime carries it.
    assert week3[0]["originalStartTime"] == {
        "dateTime": "2026-03-02T09:00:00+00:00",
        "timeZone": "UTC",
    }
    week1, _, _ = await all_pages(
        http,
        session,
        events_path(e),
        singleEvents="true",
        orderBy="startTime",
        timeMin="2026-03-01T00:00:00Z",
        timeMax="2026-03-08T00:00:00Z",
    )
    assert [i["id"] for i in week1] == [out_of]


async def test_time_bounds_are_exclusive_and_need_offsets(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    e = session.email
    a = emu.control.add_event(
        e, e, timed_event("a", "2026-04-01T10:00:00Z", "2026-04-01T11:00:00Z")
    )
    b = emu.control.add_event(
        e, e, timed_event("b", "2026-04-01T11:00:00Z", "2026-04-01T12:00:00Z")
    )
    day = emu.control.add_event(
        e, e, {"summary": "all day", "start": {"date": "2026-04-02"}, "end": {"date": "2026-04-03"}}
    )
    daily = emu.control.add_event(
        e,
        e,
        {
            "summary": "daily",
            "start": {"date": "2026-04-01"},
            "end": {"date": "2026-04-02"},
            "recurrence": ["RRULE:FREQ=DAILY"],
        },
    )

    async def ids(**params: Any) -> set[str]:
        items, _, _ = await all_pages(http, session, events_path(e), singleEvents="true", **params)
        return {i["id"] for i in items}

    # timeMin bounds end time (exclusive), timeMax bounds start time (exclusive).
    assert await ids(timeMin="2026-04-01T11:00:00Z", timeMax="2026-04-01T12:00:00Z") == {
        b,
        f"{daily}_20260401",
    }
    assert await ids(timeMin="2026-04-01T09:00:00Z", timeMax="2026-04-01T11:00:00Z") == {
        a,
        f"{daily}_20260401",
    }
    assert await ids(timeMin="2026-04-02T00:00:00Z", timeMax="2026-04-04T00:00:00Z") == {
        day,
        f"{daily}_20260402",
        f"{daily}_20260403",
    }
    assert await ids(timeMin="2026-04-01T12:00:00+02:00", timeMax="2026-04-01T13:00:00+02:00") == {
        a,
        f"{daily}_20260401",
    }
    no_offset = await get(http, session, events_path(e), timeMin="2026-04-01T10:00:00")
    assert no_offset.status_code == 400
    empty = await get(
        http,
        session,
        events_path(e),
        timeMin="2026-04-02T00:00:00Z",
        timeMax="2026-04-01T00:00:00Z",
    )
    assert empty.status_code == 400
    assert empty.json()["error"]["errors"][0]["reason"] == "timeRangeEmpty"
    bad_order = await get(http, session, events_path(e), orderBy="startTime")
    assert bad_order.status_code == 400
    # An unbounded daily series is expanded up to a horizon, not forever.
    unbounded = (
        await get(http, session, events_path(e), singleEvents="true", maxResults=2500)
    ).json()
    assert 100 < len(unbounded["items"]) <= 2500


async def test_events_max_results_capped_at_2500(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    e = session.email
    emu.control.add_event(
        e,
        e,
        {
            "summary": "d",
            "start": {"date": "2020-01-01"},
            "end": {"date": "2020-01-02"},
            "recurrence": ["RRULE:FREQ=DAILY;COUNT=3000"],
        },
    )
    emu.control.set_quota(enabled=False)
    page = (await get(http, session, events_path(e), singleEvents="true", maxResults=5000)).json()
    assert len(page["items"]) == 1000  # the per-series expansion cap
    for i in range(2600):
        emu.control.add_event(
            e, e, timed_event(f"x{i}", "2026-05-01T10:00:00Z", "2026-05-01T11:00:00Z")
        )
    page = (await get(http, session, events_path(e), maxResults=5000)).json()
    assert len(page["items"]) == 2500 and "nextPageToken" in page
    default = (await get(http, session, events_path(e))).json()
    assert len(default["items"]) == 250


async def test_percent_encoded_calendar_ids_and_primary(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    e = session.email
    cid = emu.control.add_calendar(
        e, "#contacts@group.v.calendar.google.com", summary="Birthdays", accessRole="reader"
    )
    ev = emu.control.add_event(
        e, cid, {"summary": "Bday", "start": {"date": "2026-06-01"}, "end": {"date": "2026-06-02"}}
    )
    resp = await http.get(
        "/calendar/v3/calendars/%23contacts%40group.v.calendar.google.com/events",
        headers=bearer(session.access_token),
    )
    assert resp.status_code == 200
    page = resp.json()
    assert [i["id"] for i in page["items"]] == [ev]
    assert page["accessRole"] == "reader" and page["summary"] == "Birthdays"
    primary = (await get(http, session, events_path("primary"))).json()
    assert primary["summary"] == e
    missing = await get(http, session, events_path("nope@group.calendar.google.com"))
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "code": 404,
            "message": "Not Found",
            "errors": [{"message": "Not Found", "domain": "global", "reason": "notFound"}],
        }
    }
    one = (await get(http, session, f"{events_path(cid)}/{ev}")).json()
    assert one["id"] == ev


async def test_calendar_scope_required(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    gmail_only = emu.control.issue_tokens(
        session.email, session.client.id, ["https://www.googleapis.com/auth/gmail.readonly"]
    )
    resp = await http.get(events_path("primary"), headers=bearer(gmail_only["access_token"]))
    assert resp.status_code == 403
    assert resp.json()["error"]["status"] == "PERMISSION_DENIED"


async def test_calendar_batch_and_fields(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    from .test_gmail import batch_body, parse_batch

    e = session.email
    cid = emu.control.add_calendar(e, "#contacts@group.v.calendar.google.com", summary="Birthdays")
    emu.control.add_event(e, e, timed_event("a", "2026-02-01T10:00:00Z", "2026-02-01T11:00:00Z"))
    reqs = [
        ("list", "GET /calendar/v3/users/me/calendarList?fields=items(id)"),
        ("primary", f"GET {events_path(e)}?fields=items(id,summary),nextSyncToken"),
        ("contacts", f"GET {events_path(cid)}"),
    ]
    resp = await http.post(
        "/batch/calendar/v3",
        content=batch_body("c", reqs),
        headers={"content-type": "multipart/mixed; boundary=c", **bearer(session.access_token)},
    )
    parts = parse_batch(resp)
    assert parts["response-list"] == (200, {"items": [{"id": e}, {"id": cid}]})
    status, primary = parts["response-primary"]
    assert status == 200 and set(primary) == {"items", "nextSyncToken"}
    assert parts["response-contacts"][0] == 200


async def test_sync_tokens_expire_after_configured_ttl(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    emu.control.set_sync_token_ttl(7 * 24 * 3600)
    events_token = (await get(http, session, events_path("primary"))).json()["nextSyncToken"]
    list_token = (await get(http, session, "/calendar/v3/users/me/calendarList")).json()[
        "nextSyncToken"
    ]
    emu.control.advance_clock(6 * 24 * 3600)
    scopes = list(session.scopes)
    session.access_token = emu.control.issue_tokens(session.email, session.client.id, scopes)[
        "access_token"
    ]
    assert (
        await get(http, session, events_path("primary"), syncToken=events_token)
    ).status_code == 200
    emu.control.advance_clock(2 * 24 * 3600)
    session.access_token = emu.control.issue_tokens(session.email, session.client.id, scopes)[
        "access_token"
    ]
    expired = await get(http, session, events_path("primary"), syncToken=events_token)
    assert expired.status_code == 410 and expired.json() == FULL_SYNC_410
    assert (
        await get(http, session, "/calendar/v3/users/me/calendarList", syncToken=list_token)
    ).status_code == 410


@pytest.mark.parametrize(
    ("start", "rule", "expected"),
    [
        # Timed series with a date-only or floating UNTIL, all-day series with a UTC UNTIL.
        (
            {"dateTime": "2026-01-05T09:00:00+01:00", "timeZone": "Europe/Berlin"},
            "RRULE:FREQ=DAILY;UNTIL=20260107",
            3,
        ),
        (
            {"dateTime": "2026-01-05T09:00:00+01:00", "timeZone": "Europe/Berlin"},
            "RRULE:FREQ=DAILY;UNTIL=20260107T090000",
            3,
        ),
        (
            {"dateTime": "2026-01-05T09:00:00+01:00", "timeZone": "Europe/Berlin"},
            "RRULE:FREQ=DAILY;UNTIL=20260107T075959Z",
            2,
        ),
        ({"date": "2026-01-05"}, "RRULE:FREQ=DAILY;UNTIL=20260107T000000Z", 3),
    ],
)
async def test_until_forms_google_accepts(
    emu: EmulatorServer,
    http: httpx.AsyncClient,
    session: Session,
    start: dict[str, str],
    rule: str,
    expected: int,
) -> None:
    end = dict(start)
    if "date" in start:
        end["date"] = "2026-01-06"
    else:
        end["dateTime"] = "2026-01-05T10:00:00+01:00"
    emu.control.add_event(
        session.email,
        session.email,
        {"summary": "s", "start": start, "end": end, "recurrence": [rule]},
    )
    items, _, _ = await all_pages(http, session, events_path("primary"), singleEvents="true")
    assert len(items) == expected


async def test_updated_min_too_long_ago(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    from datetime import UTC, datetime, timedelta

    emu.control.set_updated_min_limit(30 * 24 * 3600)
    now = datetime.fromtimestamp(emu.control.now(), UTC)
    recent = (now - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = (now - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (await get(http, session, events_path("primary"), updatedMin=recent)).status_code == 200
    resp = await get(http, session, events_path("primary"), updatedMin=old)
    assert resp.status_code == 410
    assert resp.json()["error"]["errors"][0]["reason"] == "updatedMinTooLongAgo"


async def test_cancelled_events_are_forgotten_after_a_ttl(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    """Google forgets deleted events after a while; a sync token from before a forgotten
    deletion can no longer report it, so it answers 410 (a newer one keeps working)."""
    e = session.email
    eid = emu.control.add_event(
        e, e, timed_event("x", "2026-03-04T09:00:00Z", "2026-03-04T10:00:00Z")
    )
    _, before, _ = await all_pages(http, session, events_path(e))
    emu.control.cancel_event(e, e, eid)
    changed, after, _ = await all_pages(http, session, events_path(e), syncToken=before)
    assert [(i["id"], i["status"]) for i in changed] == [(eid, "cancelled")]
    emu.control.set_cancelled_event_ttl(600)
    emu.control.advance_clock(500)
    listed, _, _ = await all_pages(http, session, events_path(e), showDeleted="true")
    assert [i["id"] for i in listed] == [eid]  # not yet
    emu.control.advance_clock(101)
    listed, _, _ = await all_pages(http, session, events_path(e), showDeleted="true")
    assert listed == []
    resp = await get(http, session, events_path(e), syncToken=before)
    assert resp.status_code == 410 and resp.json() == FULL_SYNC_410
    changed, _, _ = await all_pages(http, session, events_path(e), syncToken=after)
    assert changed == []


async def test_page_token_survives_a_new_access_token_in_the_query(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    """A page token is bound to the method's parameters, not to global ones such as
    ``oauth_token`` (a client may refresh its token between pages) or ``fields``."""
    e = session.email
    for day in range(1, 4):
        emu.control.add_event(
            e, e, timed_event(f"d{day}", f"2026-03-0{day}T09:00:00Z", f"2026-03-0{day}T10:00:00Z")
        )
    first = (await get(http, session, events_path(e), maxResults=2)).json()
    fresh = emu.control.issue_tokens(e, session.client.client_id, session.scopes)["access_token"]
    resp = await http.get(
        events_path(e),
        params={
            "maxResults": 2,
            "pageToken": first["nextPageToken"],
            "oauth_token": fresh,
            "fields": "items(id),nextSyncToken",
        },
    )
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["items"]) == 1 and "nextSyncToken" in resp.json()


async def test_event_pages_see_changes_made_between_them(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    """Pages are served from one evaluation of the query while the calendar is unchanged, so
    changes between pages must show on the next page."""
    e = session.email

    def day(n: int) -> dict[str, Any]:
        return timed_event(f"d{n}", f"2026-03-0{n}T09:00:00Z", f"2026-03-0{n}T10:00:00Z")

    ids = [emu.control.add_event(e, e, day(n)) for n in (1, 2, 3, 4)]
    first = (await get(http, session, events_path(e), maxResults=2)).json()
    assert [i["id"] for i in first["items"]] == ids[:2]
    emu.control.cancel_event(e, e, ids[2])
    added = emu.control.add_event(e, e, day(5))
    rest, _, _ = await all_pages(
        http, session, events_path(e), maxResults=2, pageToken=first["nextPageToken"]
    )
    assert [i["id"] for i in rest] == [ids[3], added]
