"""Google answers 200 with JSON in an unexpected shape: the run is ``server_error``, never ``bug``.

A ``bug`` means a programming error in the pattern (the tray notifies at once); a malformed
answer is the server's fault and is retried with backoff like any other server error. Nothing
of the malformed answer is stored and the cursor does not move, so the next good answer
completes the sync. The answers come from the real emulator through a transport that rewrites
the JSON of one API path, the way a broken proxy or a server bug would.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from gcal_helpers import google_ids, stored_ids

from tests.emulator.harness import timed_event
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.retry import RetryPolicy
from trayapp.patterns.gcalendar import CalendarImporter
from trayapp.patterns.gmail import GmailImporter, GmailState

GoogleHarness = Any
HarnessFactory = Any

QUICK_RETRY = RetryPolicy(max_attempts=2, transport_attempts=1, base_delay=0.01, max_delay=0.02)

Mangle = Callable[[dict[str, Any]], None]


class MangleTransport(httpx.AsyncBaseTransport):
    """Passes every request to the emulator; rewrites the JSON body of answers for one path."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.rules: dict[str, Mangle] = {}  # path suffix -> edit of the decoded body
        self.hits = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        rule = next((f for s, f in self.rules.items() if request.url.path.endswith(s)), None)
        if rule is None or response.status_code != 200:
            return response
        body = await response.aread()
        await response.aclose()
        data = json.loads(body)
        rule(data)
        self.hits += 1
        headers = [
            (k, v)
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")
        ]
        return httpx.Response(200, headers=headers, content=json.dumps(data).encode())

    async def aclose(self) -> None:
        await self._inner.aclose()


def replace_list(key: str, value: Any) -> Mangle:
    def edit(data: dict[str, Any]) -> None:
        data[key] = value

    return edit


# ---- Gmail: history records ---------------------------------------------------------------


@pytest.mark.parametrize(
    "history",
    [
        ["not a record"],
        [{"id": "1", "messagesAdded": 5}],
        [{"id": "1", "labelsAdded": [{"message": {"id": "m1"}, "labelIds": 7}]}],
    ],
    ids=["string-record", "number-list", "number-labels"],
)
async def test_a_malformed_history_record_is_a_server_error_and_moves_no_cursor(
    google_harness: HarnessFactory, history: list[Any]
) -> None:
    h = await google_harness(patterns=(GmailImporter,), retry=QUICK_RETRY)
    mangler = MangleTransport()
    h.api_options["transport"] = mangler
    first = [h.add_mail(f"m{n}") for n in range(3)]
    charm = h.add_charm("gmail-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    cursor = h.engine.store.cell(f"charm:{charm}:state", GmailState, default=GmailState()).get()
    assert isinstance(cursor, GmailState) and cursor.history_id is not None

    later = h.add_mail("later")
    mangler.rules["/history"] = replace_list("history", history)
    outcome = await h.sync(charm)

    assert mangler.hits >= 1
    assert outcome.kind is OutcomeKind.SERVER_ERROR, outcome.message
    assert "sync will be retried" in outcome.message and outcome.traceback is None
    state = h.engine.store.cell(f"charm:{charm}:state", GmailState, default=GmailState()).get()
    assert isinstance(state, GmailState) and state.history_id == cursor.history_id
    assert set(h.items(charm)) == set(first)

    mangler.rules.clear()
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert set(h.items(charm)) == {*first, later}


# ---- Calendar: event items and calendar list entries --------------------------------------


def add_event(h: GoogleHarness, summary: str, day: int) -> str:
    return str(
        h.emu.control.add_event(
            h.email,
            h.email,
            timed_event(summary, f"2026-12-{day:02d}T09:00:00Z", f"2026-12-{day:02d}T10:00:00Z"),
        )
    )


@pytest.mark.parametrize(
    "items",
    [["not an event"], [{"id": {"nested": 1}, "status": "cancelled"}]],
    ids=["string-item", "object-id"],
)
async def test_a_malformed_calendar_item_is_a_server_error_and_stores_nothing(
    google_harness: HarnessFactory, items: list[Any]
) -> None:
    h = await google_harness(patterns=(CalendarImporter,), retry=QUICK_RETRY)
    mangler = MangleTransport()
    h.api_options["transport"] = mangler
    add_event(h, "first", 1)
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    before = stored_ids(h, charm, h.email)

    add_event(h, "second", 2)
    mangler.rules["/events"] = replace_list("items", items)
    outcome = await h.sync(charm)

    assert mangler.hits >= 1
    assert outcome.kind is OutcomeKind.SERVER_ERROR, outcome.message
    assert "unexpected shape" in outcome.message and outcome.traceback is None
    assert stored_ids(h, charm, h.email) == before

    mangler.rules.clear()
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert stored_ids(h, charm, h.email) == await google_ids(h, h.email)


async def test_a_malformed_calendar_list_entry_is_a_server_error(
    google_harness: HarnessFactory,
) -> None:
    h = await google_harness(patterns=(CalendarImporter,), retry=QUICK_RETRY)
    mangler = MangleTransport()
    h.api_options["transport"] = mangler
    add_event(h, "first", 1)
    mangler.rules["/calendarList"] = replace_list("items", [42])
    charm = h.add_charm("gcalendar-importer", {})

    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.SERVER_ERROR, outcome.message
    assert "unexpected shape" in outcome.message
    mangler.rules.clear()
    assert (await h.sync(charm)).kind is OutcomeKind.OK
