"""Helpers for the Google Calendar importer tests: seeding, the store as a source, the truth.

The truth is always the emulator's own answer: its ``singleEvents=true`` expansion for the
upcoming view, and its ``singleEvents=false`` listing for what the store should hold.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from trayapp.auth.wiring import google_api_kwargs
from trayapp.core.store import Collection
from trayapp.google.client import GoogleApi
from trayapp.patterns.gcalendar import (
    CalendarImporter,
    CalendarRecord,
    CalendarSettings,
)
from trayapp.patterns.gcalendar_recurrence import Occurrence

GoogleHarness = Any


@dataclass
class StoreSource:
    """What ``CalendarImporter.export``/``upcoming`` read, over the engine's store."""

    h: GoogleHarness
    charm: str

    @property
    def settings(self) -> CalendarSettings:
        return CalendarSettings.model_validate(self.h.engine.charm(self.charm).settings)

    def collection(self, name: str) -> Collection:
        found: Collection = self.h.collection(self.charm, name)
        return found

    def cell(self, slot: str) -> Any:
        return self.h.engine.store.lookup(f"charm:{self.charm}:{slot}")

    def now(self) -> datetime:
        return datetime.now(UTC)


def upcoming(h: GoogleHarness, charm: str, start: datetime, end: datetime) -> list[Occurrence]:
    return CalendarImporter().upcoming(StoreSource(h, charm), start, end)


def events(h: GoogleHarness, charm: str) -> dict[str, dict[str, Any]]:
    return dict(h.collection(charm, "events").items())


def records(h: GoogleHarness, charm: str) -> dict[str, CalendarRecord]:
    return {
        k: CalendarRecord.model_validate(v) for k, v in h.collection(charm, "calendars").items()
    }


def stored_ids(h: GoogleHarness, charm: str, calendar_id: str) -> set[str]:
    """Event ids stored for a calendar (cancelled-occurrence markers left out)."""
    prefix = calendar_id + "/"
    return {
        v["id"]
        for k, v in events(h, charm).items()
        if k.startswith(prefix) and v.get("status") != "cancelled"
    }


async def google_ids(h: GoogleHarness, calendar_id: str) -> set[str]:
    """What Google (the emulator) lists for the calendar: every live event, series as one."""
    async with GoogleApi(**google_api_kwargs(h.accounts, h.account_id)) as api:
        result = await api.calendar().list_events(calendar_id)
    return {str(ev["id"]) for ev in result.items if ev.get("status") != "cancelled"}


def _instant(when: Mapping[str, Any]) -> datetime | date:
    if "dateTime" in when:
        return datetime.fromisoformat(when["dateTime"]).astimezone(UTC)
    return date.fromisoformat(when["date"])


async def truth(
    h: GoogleHarness, calendar_id: str, start: datetime, end: datetime
) -> list[tuple[str, Any, Any, str]]:
    """Google's own expansion (``singleEvents=true``) of the window: (id, start, end, summary)."""
    async with GoogleApi(**google_api_kwargs(h.accounts, h.account_id)) as api:
        result = await api.calendar().list_events(
            calendar_id, single_events=True, time_min=start, time_max=end
        )
    return sorted(
        (str(ev["id"]), _instant(ev["start"]), _instant(ev["end"]), str(ev.get("summary", "")))
        for ev in result.items
        if ev.get("status") != "cancelled"
    )


def as_rows(occurrences: list[Occurrence], calendar_id: str) -> list[tuple[str, Any, Any, str]]:
    rows = []
    for o in occurrences:
        if o.calendar_id != calendar_id:
            continue
        if o.all_day:
            rows.append((o.event_id, o.start.date(), o.end.date(), o.summary))
        else:
            rows.append((o.event_id, o.start.astimezone(UTC), o.end.astimezone(UTC), o.summary))
    return sorted(rows)


def watch_commits(h: GoogleHarness, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` after every commit of the engine's store; returns ``stop()``.

    The store's outermost transactions are watched by wrapping the instance's ``transaction``
    (every write goes through it: the importer's ``ctx.transaction()``, cells, collections).
    """
    store = h.engine.store
    original = store.transaction

    @contextlib.contextmanager
    def watched() -> Iterator[None]:
        outermost = not store.in_transaction
        with original():
            yield
        if outermost:  # committed
            callback()

    store.transaction = watched  # type: ignore[method-assign]

    def stop() -> None:
        if store.transaction is watched:
            del store.transaction

    return stop


def after_listed_pages(
    h: GoogleHarness, charm: str, calendar_id: str, pages: int, action: Callable[[], None]
) -> Callable[[], None]:
    """Call ``action`` once, right after the commit that stores page ``pages`` of a full sync.

    Commits are watched (:func:`watch_commits`): after each one the calendar's record is read,
    before the importer asks for the next page, so a fault added here hits exactly page
    ``pages + 1``. Returns the function that stops watching.
    """
    fired = False

    def check() -> None:
        nonlocal fired
        value = h.collection(charm, "calendars").get(calendar_id)
        full = value.get("full_sync") if isinstance(value, dict) else None
        if not fired and isinstance(full, dict) and full.get("pages") == pages:
            fired = True
            action()

    return watch_commits(h, check)
