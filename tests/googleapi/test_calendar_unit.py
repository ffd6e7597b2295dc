"""CalendarClient's sync rules, checked on the requests it builds (MockTransport).

The same flows run against the emulator in ``test_calendar_emulator.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from trayapp.core.errors import ServerError
from trayapp.google.errors import SyncTokenExpired

from .bodies import BODIES
from .helpers import make_api, ok

CONTACTS = "#contacts@group.v.calendar.google.com"


def paged(pages: list[dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
    """Serve ``pages`` in order, keyed by the pageToken the client sends."""

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("pageToken")
        index = 0 if token is None else int(token.removeprefix("p"))
        return ok(pages[index])

    return handler


PAGES: list[dict[str, Any]] = [
    {"items": [{"id": "e1"}], "nextPageToken": "p1"},
    {"items": [], "nextPageToken": "p2"},
    {"items": [{"id": "e2", "status": "cancelled"}], "nextSyncToken": "S2", "timeZone": "UTC"},
]


async def test_incremental_sync_sends_the_same_sync_token_with_every_page() -> None:
    api, rec, _, _ = make_api(paged(PAGES))
    async with api:
        result = await api.calendar().list_events("primary", sync_token="S1", single_events=True)
    assert [e["id"] for e in result.items] == ["e1", "e2"]
    assert result.next_sync_token == "S2"
    assert [r.url.params.get_list("syncToken") for r in rec.requests] == [["S1"]] * 3
    assert [r.url.params.get("pageToken") for r in rec.requests] == [None, "p1", "p2"]
    assert all(r.url.params["singleEvents"] == "true" for r in rec.requests)


async def test_only_the_last_pages_sync_token_counts() -> None:
    pages = [{**PAGES[0], "nextSyncToken": "EARLY"}, PAGES[1], PAGES[2]]
    api, _, _, _ = make_api(paged(pages))
    async with api:
        result = await api.calendar().list_events("primary")
    assert result.next_sync_token == "S2"


async def test_calendar_id_is_percent_encoded_in_the_path() -> None:
    api, rec, _, _ = make_api([ok({"items": [], "nextSyncToken": "S"})])
    async with api:
        await api.calendar().list_events(CONTACTS)
    raw = rec.requests[0].url.raw_path.decode()
    assert raw.startswith("/calendar/v3/calendars/%23contacts%40group.v.calendar.google.com/events")


async def test_full_sync_params_are_encoded_googles_way() -> None:
    api, rec, _, _ = make_api([ok({"items": [], "nextSyncToken": "S"})])
    when = datetime(2026, 1, 1, tzinfo=UTC)
    async with api:
        order: Any = "UPDATED"  # any case is accepted; discovery's spelling is sent
        await api.calendar().list_events(
            "primary", time_min=when, single_events=False, order_by=order, show_deleted=True
        )
    params = rec.requests[0].url.params
    assert params["timeMin"] == "2026-01-01T00:00:00+00:00"
    assert params["singleEvents"] == "false" and params["showDeleted"] == "true"
    assert params["orderBy"] == "updated"
    assert "syncToken" not in params


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time_min": datetime(2026, 1, 1, tzinfo=UTC)},
        {"time_max": datetime(2026, 1, 1, tzinfo=UTC)},
        {"updated_min": datetime(2026, 1, 1, tzinfo=UTC)},
        {"q": "lunch"},
        {"order_by": "startTime"},
        {"i_cal_uid": "x@y"},
        {"show_deleted": False},
    ],
)
async def test_sync_token_is_never_combined_with_forbidden_params(
    kwargs: dict[str, object],
) -> None:
    api, rec, _, _ = make_api([])
    async with api:
        with pytest.raises(ValueError, match="sync token"):
            await api.calendar().list_events("primary", sync_token="S", **kwargs)  # type: ignore[arg-type]
    assert rec.requests == []


async def test_calendar_list_sync_token_rules() -> None:
    api, rec, _, _ = make_api(
        [
            ok({"items": [{"id": "a"}], "nextPageToken": "x"}),
            ok({"items": [{"id": "b"}], "nextSyncToken": "C2"}),
        ]
    )
    async with api:
        with pytest.raises(ValueError):
            await api.calendar().list_calendars("C1", min_access_role="reader")
        result = await api.calendar().list_calendars("C1")
    assert [c["id"] for c in result.items] == ["a", "b"] and result.next_sync_token == "C2"
    assert [r.url.params.get("syncToken") for r in rec.requests] == ["C1", "C1"]


async def test_410_is_sync_token_expired() -> None:
    status, headers, body = BODIES["410-fullSyncRequired"]
    api, rec, clock, _ = make_api(lambda r: httpx.Response(status, headers=headers, content=body))
    async with api:
        with pytest.raises(SyncTokenExpired) as info:
            await api.calendar().list_events("primary", sync_token="OLD")
    assert len(rec.requests) == 1 and clock.waits == []
    assert info.value.api_error.reason == "fullSyncRequired"
    assert "full sync" in info.value.message


async def test_a_page_token_loop_is_refused() -> None:
    api, _, _, _ = make_api(lambda r: ok({"items": [], "nextPageToken": "same"}))
    async with api:
        with pytest.raises(ServerError, match="same page token"):
            await api.calendar().list_events("primary")


async def test_a_listing_can_start_at_a_page_token() -> None:
    api, rec, _, _ = make_api(paged(PAGES))
    async with api:
        calendar = api.calendar()
        pages = [p async for p in calendar.iter_event_pages("primary", "S1", page_token="p1")]
        result = await calendar.list_events("primary", page_token="p2")
        with pytest.raises(ValueError, match="page_token is empty"):
            await calendar.list_events("primary", page_token="")
    assert [p.items for p in pages] == [[], [{"id": "e2", "status": "cancelled"}]]
    assert pages[-1].next_sync_token == "S2"
    assert [r.url.params.get("pageToken") for r in rec.requests] == ["p1", "p2", "p2"]
    assert [r.url.params.get_list("syncToken") for r in rec.requests] == [["S1"], ["S1"], []]
    assert [e["id"] for e in result.items] == ["e2"] and result.next_sync_token == "S2"


async def test_a_server_sending_back_the_starting_page_token_is_refused() -> None:
    api, _, _, _ = make_api(lambda r: ok({"items": [], "nextPageToken": "start"}))
    async with api:
        with pytest.raises(ServerError, match="same page token"):
            await api.calendar().list_events("primary", page_token="start")
