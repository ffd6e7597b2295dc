"""Benchmark: what the Google Calendar importer costs per run, against refetching a window.

Seeds the emulator with N calendars of M events each (spread over a year, every 20th a weekly
series), then runs the real importer (real SQLite store, real GoogleApi over HTTP) and counts,
at the client's transport, the requests and the bytes (headers + bodies, both directions) of:

    initial full sync     every calendar listed in full (first run)
    no-change sync        nothing changed: one calendarList call + one events call per calendar
    small change          one event edited, one added, one cancelled, in three calendars
    refetch window        what the importer we replace did every minute: every calendar's
                          events in a time window (singleEvents=true, every page)
    refetch everything    a full listing of every calendar (what a 410 on all of them costs)
    ... with fields=      the same listing with the importer's partial-response selection
                          (EVENT_FIELDS: only what it stores); the ratio of the two is printed
    upcoming view         the store-only expansion the tray shows (no requests), for 14 and
                          365 days from the middle of the seeded year
    export jsonl          every stored event written out (read with keyset pages)

Usage: PYTHONPATH=. .venv/bin/python bench/gcalendar.py [--calendars 10] [--events 2000]
       [--window-days 30]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.emulator.harness import EmulatorServer, StaticToken
from trayapp.api import UpdateContext
from trayapp.core.store import Store
from trayapp.google.client import GoogleApi
from trayapp.google.endpoints import GoogleEndpoints
from trayapp.patterns.gcalendar import (
    EVENT_FIELDS,
    CalendarImporter,
    CalendarSettings,
    upcoming,
)

EMAIL = "bench@example.com"
T = TypeVar("T")


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts requests and bytes on the wire (request line, headers and bodies)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests = 0
        self.bytes = 0

    def reset(self) -> None:
        self.requests = 0
        self.bytes = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        self.bytes += len(request.method) + len(str(request.url.raw_path)) + 12
        self.bytes += sum(len(k) + len(v) + 4 for k, v in request.headers.raw)
        self.bytes += len(request.content)
        response = await self.inner.handle_async_request(request)
        body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
        self.bytes += 17 + sum(len(k) + len(v) + 4 for k, v in response.headers.raw) + len(body)
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=request
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def seed(emu: EmulatorServer, calendars: int, per_calendar: int) -> list[str]:
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    ids = [EMAIL] + [
        emu.control.add_calendar(EMAIL, summary=f"Calendar {i}") for i in range(1, calendars)
    ]
    for c, cid in enumerate(ids):
        for n in range(per_calendar):
            when = start + timedelta(hours=(n * 4.37 + c) % (365 * 24))
            event: dict[str, Any] = {
                "summary": f"event {c}/{n}",
                "description": "Agenda and notes " * 4,
                "location": "Room 4",
                "start": {"dateTime": when.isoformat()},
                "end": {"dateTime": (when + timedelta(hours=1)).isoformat()},
                "attendees": [
                    {"email": EMAIL, "self": True, "responseStatus": "accepted"},
                    {"email": "bob@example.com", "responseStatus": "needsAction"},
                ],
            }
            if n % 20 == 0:
                event["recurrence"] = ["RRULE:FREQ=WEEKLY;COUNT=20"]
                # Google refuses a recurring event without a start time zone.
                event["start"]["timeZone"] = event["end"]["timeZone"] = "UTC"
            emu.control.add_event(EMAIL, cid, event)
    return ids


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calendars", type=int, default=10)
    parser.add_argument("--events", type=int, default=2000, help="events per calendar")
    parser.add_argument("--window-days", type=int, default=30)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows: list[tuple[str, int, int, float, str]] = []
    pattern = CalendarImporter()
    async with EmulatorServer(conformance=False) as emu:
        session = emu.quick_setup(EMAIL)
        t0 = time.monotonic()
        ids = seed(emu, args.calendars, args.events)
        print(f"seeded {args.calendars} x {args.events} events in {time.monotonic() - t0:.1f} s")
        transport = CountingTransport()
        api = GoogleApi(
            StaticToken(session.access_token),
            endpoints=GoogleEndpoints.for_base(emu.base_url),
            transport=transport,
        )
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.open(Path(tmp) / "bench.sqlite3")
            specs = {spec.name: spec for spec in pattern.cells}
            async with httpx.AsyncClient() as http, api:

                def context() -> UpdateContext[CalendarSettings]:
                    return UpdateContext(
                        charm_id="bench",
                        settings=CalendarSettings(),
                        account_id="bench",
                        store=store,
                        specs=specs,
                        bindings={name: f"charm:bench:{name}" for name in specs},
                        collections=pattern.collections,
                        http=http,
                        google=api,
                    )

                async def measure(label: str, note: str = "") -> None:
                    transport.reset()
                    start = time.monotonic()
                    report = await pattern.bg_updater(context())
                    elapsed = time.monotonic() - start
                    changes = f"+{report.added} ~{report.updated} -{report.removed}"
                    rows.append(
                        (label, transport.requests, transport.bytes, elapsed, note or changes)
                    )

                await measure("initial full sync")
                await measure("no-change sync")
                emu.control.update_event(
                    EMAIL, ids[1 % len(ids)], _first(emu, ids[1 % len(ids)]), {"summary": "edited"}
                )
                emu.control.add_event(
                    EMAIL,
                    ids[2 % len(ids)],
                    {
                        "summary": "new",
                        "start": {"dateTime": "2026-12-01T10:00:00Z"},
                        "end": {"dateTime": "2026-12-01T11:00:00Z"},
                    },
                )
                emu.control.cancel_event(EMAIL, ids[3 % len(ids)], _first(emu, ids[3 % len(ids)]))
                await measure("small change")

                window_start = datetime(2026, 6, 1, tzinfo=UTC)
                window_end = window_start + timedelta(days=args.window_days)
                transport.reset()
                start = time.monotonic()
                found = 0
                for cid in ids:
                    result = await api.calendar().list_events(
                        cid, single_events=True, time_min=window_start, time_max=window_end
                    )
                    found += len(result.items)
                rows.append(
                    (
                        f"refetch {args.window_days}-day window",
                        transport.requests,
                        transport.bytes,
                        time.monotonic() - start,
                        f"{found} occurrences",
                    )
                )
                transport.reset()
                start = time.monotonic()
                found = 0
                for cid in ids:
                    found += len((await api.calendar().list_events(cid, show_deleted=True)).items)
                rows.append(
                    (
                        "refetch everything",
                        transport.requests,
                        transport.bytes,
                        time.monotonic() - start,
                        f"{found} events",
                    )
                )
                whole = transport.bytes
                transport.reset()
                start = time.monotonic()
                found = 0
                for cid in ids:
                    listing = await api.calendar().list_events(
                        cid, show_deleted=True, fields=EVENT_FIELDS
                    )
                    found += len(listing.items)
                rows.append(
                    (
                        "... with fields=",
                        transport.requests,
                        transport.bytes,
                        time.monotonic() - start,
                        f"{found} events; {transport.bytes / whole:.2f} of the full bytes",
                    )
                )
                stored = len(store.collection("charm:bench:events"))
                # The upcoming view reads the store only (what the tray does on every refresh).
                source = context()
                for days in (14, 365):
                    window = (window_start, window_start + timedelta(days=days))
                    seconds, found_occ = _best_of(3, partial(upcoming, source, *window))
                    rows.append(
                        (
                            f"upcoming view, {days} days",
                            0,
                            0,
                            seconds,
                            f"{len(found_occ)} occurrences from the store (best of 3)",
                        )
                    )
                seconds, exported = _best_of(
                    3, lambda: pattern.export(source, "jsonl", Path(tmp) / "events.jsonl")
                )
                rows.append(("export jsonl", 0, 0, seconds, f"{exported} events (best of 3)"))
            store.close()

    print(
        f"\n{args.calendars} calendars x {args.events} events "
        f"({stored} stored; every 20th a weekly series)\n"
    )
    print(f"{'scenario':<26} {'requests':>9} {'bytes':>12} {'seconds':>8}  result")
    print("-" * 80)
    for label, requests, size, seconds, note in rows:
        print(f"{label:<26} {requests:>9} {size:>12,} {seconds:>8.2f}  {note}")


def _best_of(n: int, run: Callable[[], T]) -> tuple[float, T]:
    """The fastest of ``n`` runs (store reads are cached after the first) and its result."""
    best, result = float("inf"), None
    for _ in range(n):
        start = time.monotonic()
        result = run()
        best = min(best, time.monotonic() - start)
    assert result is not None
    return best, result


def _first(emu: EmulatorServer, calendar_id: str) -> str:
    """A plain (non-recurring) event of the calendar."""
    cal = emu.app.state.account(EMAIL).calendars.calendars[calendar_id]
    return next(eid for eid, ev in cal.events.items() if not ev.get("recurrence"))


if __name__ == "__main__":
    asyncio.run(main())
