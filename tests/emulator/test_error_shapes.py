"""Error bodies and small shapes issue 13 found different from Google's (see docs/emulator.md)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.emulator.harness import EmulatorServer, Session, timed_event

from .conftest import bearer
from .mail import simple

G = "/gmail/v1/users/me"
CAL_LIST = "/calendar/v3/users/me/calendarList"


async def test_a_malformed_message_id_is_400_invalid_id_value(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    mid = emu.control.add_message(session.email, simple("m"))
    for bad in ("not-an-id", "zzzz", "1234567890abcdef0"):
        resp = await http.get(f"{G}/messages/{bad}", headers=bearer(session.access_token))
        assert resp.status_code == 400, bad
        assert resp.json() == {
            "error": {
                "code": 400,
                "message": "Invalid id value",
                "errors": [
                    {
                        "message": "Invalid id value",
                        "domain": "global",
                        "reason": "invalidArgument",
                    }
                ],
                "status": "INVALID_ARGUMENT",
            }
        }
    att = await http.get(f"{G}/messages/nope/attachments/x", headers=bearer(session.access_token))
    assert att.status_code == 400
    # A well-formed id that does not exist is still 404.
    gone = "0" * 16 if mid != "0" * 16 else "1" * 16
    missing = await http.get(f"{G}/messages/{gone}", headers=bearer(session.access_token))
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("path", "service", "method"),
    [
        (f"{G}/history?startHistoryId=1", "gmail.googleapis.com", "MailboxService.ListHistory"),
        (f"{G}/messages", "gmail.googleapis.com", "MailboxService.ListMessages"),
        (f"{G}/profile", "gmail.googleapis.com", "MailboxService.GetProfile"),
        (CAL_LIST, "calendar-json.googleapis.com", "calendar.v3.CalendarList.List"),
    ],
)
async def test_401_without_credentials_names_the_method(
    http: httpx.AsyncClient, path: str, service: str, method: str
) -> None:
    resp = await http.get(path)
    assert resp.status_code == 401
    detail = resp.json()["error"]["details"][0]
    assert detail["reason"] == "CREDENTIALS_MISSING"
    assert detail["metadata"]["service"] == service
    assert detail["metadata"]["method"].endswith(method)
    if service.startswith("gmail"):
        assert detail["metadata"]["method"] == f"caribou.api.proto.{method}"


async def test_a_deleted_calendar_list_entry_keeps_its_fields(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    cid = emu.control.add_calendar(session.email, summary="Team", accessRole="reader")
    first = (await http.get(CAL_LIST, headers=bearer(session.access_token))).json()
    emu.control.remove_calendar(session.email, cid)
    changes = (
        await http.get(
            CAL_LIST,
            params={"syncToken": first["nextSyncToken"]},
            headers=bearer(session.access_token),
        )
    ).json()
    [entry] = [e for e in changes["items"] if e["id"] == cid]
    assert entry["deleted"] is True
    assert entry["kind"] == "calendar#calendarListEntry" and entry["etag"]
    assert entry["summary"] == "Team" and entry["accessRole"] == "reader"


async def test_min_access_role_writer_without_private_access(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    roles = ("freeBusyReader", "reader", "writerWithoutPrivateAccess", "writer")
    ids = {role: emu.control.add_calendar(session.email, accessRole=role) for role in roles}
    resp = await http.get(
        CAL_LIST,
        params={"minAccessRole": "writerWithoutPrivateAccess"},
        headers=bearer(session.access_token),
    )
    assert resp.status_code == 200, resp.text
    listed = {e["id"] for e in resp.json()["items"]}
    assert ids["writerWithoutPrivateAccess"] in listed and ids["writer"] in listed
    assert ids["reader"] not in listed and ids["freeBusyReader"] not in listed
    assert session.email in listed  # the primary calendar: owner


def test_a_recurring_event_without_a_start_time_zone_is_refused(
    emu: EmulatorServer, session: Session
) -> None:
    body: dict[str, Any] = timed_event(
        "standup", "2026-03-02T09:00:00Z", "2026-03-02T09:15:00Z", recurrence=["RRULE:FREQ=DAILY"]
    )
    del body["start"]["timeZone"]
    with pytest.raises(ValueError, match=r"^Missing time zone definition for start time\.$"):
        emu.control.add_event(session.email, session.email, body)
    # A single event needs no zone; a recurring all-day event neither.
    emu.control.add_event(
        session.email,
        session.email,
        timed_event("once", "2026-03-02T09:00:00Z", "2026-03-02T09:15:00Z"),
    )
    emu.control.add_event(
        session.email,
        session.email,
        {
            "summary": "birthday",
            "start": {"date": "2026-03-02"},
            "end": {"date": "2026-03-03"},
            "recurrence": ["RRULE:FREQ=YEARLY"],
        },
    )
    series = emu.control.add_event(
        session.email,
        session.email,
        timed_event(
            "weekly",
            "2026-03-02T09:00:00Z",
            "2026-03-02T10:00:00Z",
            recurrence=["RRULE:FREQ=WEEKLY"],
        ),
    )
    with pytest.raises(ValueError, match="Missing time zone"):
        emu.control.update_event(
            session.email, session.email, series, {"start": {"dateTime": "2026-03-03T09:00:00Z"}}
        )
