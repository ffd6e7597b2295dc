"""Google Calendar importer: every event of the chosen calendars, kept in sync incrementally.

What a run does:

1. **Calendar list** (``calendarList.list``, every page, its own ``syncToken``). Every entry is
   remembered in the ``calendars`` collection, wanted or not, so switching the ``calendars``
   setting needs no refetch. Renames and colour changes update the entry; a calendar that is
   deleted, unsubscribed, unticked (with ``calendars: selected``) or no longer listed loses its
   events and sync state in one transaction. A 410 on the list refetches it whole.
2. **Events, per calendar, in parallel, each isolated from the others.** The first sync of a
   calendar lists every event (every page, ``showDeleted=true`` so cancelled occurrences of
   recurring series come too); every page commits together with the ``nextPageToken`` that
   continues the listing, so a run cut short (killed, timed out, a failing request) continues
   in the next run at the page after the last one stored, not at the first; only the last
   page's ``nextSyncToken`` is stored, in the transaction that stores that page. If Google no
   longer accepts the saved page token (400 or 410), the listing starts over, once, from the
   first page, and then removes at its end what it did not see again. Later
   runs send the stored ``syncToken`` (the client sends the same token with every
   ``pageToken``) and apply all pages of changes together with the new token in one
   transaction: a run that fails half way stores nothing and the next run starts from the same
   token. Cancelled events are deleted (with the exceptions of a cancelled series); a cancelled
   *occurrence* of a series is kept as a small marker, because it is what hides that
   occurrence in the upcoming view.
3. **410 fullSyncRequired** on a calendar: a full resync of that calendar, in the same run. The
   old events stay visible until it completes; every event it sees is marked in ``sweep``, and
   the last page's transaction removes the calendar's events it did not see. The resync is
   recorded as soon as it starts, so an interrupted one continues in the next run at its saved
   page (the marks of the pages before it were committed with them) and the dead token is
   never sent again. A page token continues one listing, so the sync token of its last page is
   taken to cover the changes made since its first page (the emulator models it so; Google
   does not document it either way): an event changed behind the place a listing stopped at
   comes in the next incremental sync. **Loop breaker**: a 410 right after
   a resync (no incremental sync
   succeeded in between), or during the resync itself, means resyncing again at once would only
   loop (lieer's "full sync forever"); the calendar is reported as a partial failure and its
   next resync waits (1 h, doubling, at most a day), keeping its events meanwhile.
4. **Isolation**: a calendar whose requests fail keeps its events and token and is named in
   ``RunReport.partial``; the others sync normally. An auth failure ends the run (it concerns
   the account), and so does a failing calendar list (nothing is changed then); if every
   calendar fails, the first calendar's error ends the run so the scheduler backs off.

Cost of a run with no changes: one ``calendarList.list`` plus one ``events.list`` per synced
calendar (``bench/gcalendar.py`` measures it against refetching a window).

Collections: ``events`` (key ``<calendar id>/<event id>``; the sort key puts a single event
by its start, a long one by its end and recurring series on top, see ``SHORT_SPAN``),
``calendars`` (:class:`CalendarRecord` per calendar: list entry and sync state) and ``sweep``
(what a full sync has seen, and the cancelled series it saw). The ``state`` cell holds the
calendar list's token.

The ``upcoming`` view (:func:`upcoming`) reads the store only, with three sort-key range
queries (the window's events, no more); recurring series are expanded with their exceptions
by :mod:`trayapp.patterns.gcalendar_recurrence`. ``export`` writes JSON lines or an
iCalendar file.

Like every built-in pattern it imports only :mod:`trayapp.api` and third-party libraries; the
Google client arrives as ``ctx.google`` and is used through the small protocols below.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import ValidationInfo

from trayapp.api import (
    AuthRequired,
    BackoffPolicy,
    BaseModel,
    CalendarClient,
    CellSpec,
    Collection,
    ExportError,
    Field,
    GoogleRequestError,
    Pattern,
    RunReport,
    ServerError,
    SyncError,
    SyncTokenExpired,
    UpdateContext,
    atomic_output,
    field_validator,
    write_jsonl,
)
from trayapp.patterns.gcalendar_recurrence import (
    Occurrence,
    content_line,
    date_list,
    event_bounds,
    expand,
    parse_when,
    self_declined,
    zone,
)

if TYPE_CHECKING:
    import icalendar

CALENDAR_READONLY = "https://www.googleapis.com/auth/calendar.readonly"

#: Calendars synced at the same time: enough to hide latency, few enough to stay polite.
PARALLEL_CALENDARS = 4
#: The ``events`` collection's sort keys make three regions, so that the upcoming view reads
#: each with one range query and touches only the events that may be in its window:
#:
#: * a single event spanning at most ``SHORT_SPAN`` (nearly all of them): its earliest start,
#:   in epoch seconds; the view reads ``[window start - SHORT_SPAN, window end)``;
#: * a longer single event: ``LONG_BASE`` + its latest end; the view reads from the window's
#:   start on (the long events still to end: few);
#: * recurring masters, modified and cancelled occurrences: ``SERIES_SORT_KEY``, always read
#:   (a series that started years ago still recurs), as are events whose times are unreadable.
#:
#: Epoch seconds stay below 2.6e11 (the year 9999), under both bases. Times are widened for
#: all-day events, whose real start and end depend on the calendar's zone (UTC-12 to UTC+14).
SHORT_SPAN = 3 * 86400
LONG_BASE = 1e12
SERIES_SORT_KEY = 1e13
UNKNOWN_SORT_KEY = SERIES_SORT_KEY
#: Page sizes: Google's maxima, so a calendar of 2,000 events is one request (tests lower them).
EVENTS_PAGE_SIZE = 2500
# Events stored per transaction: a full page is written in steps this size, the event loop
# running between them (a 2,500-event page in one transaction held it for 60-300 ms; steps of
# 250 still 50-150 ms on a loaded 2-core machine; 100 keeps a step near 10 ms).
APPLY_CHUNK = 100
CALENDARS_PAGE_SIZE = 250
RESYNC_BACKOFF = BackoffPolicy(base=3600, factor=2, cap=86400, jitter=0)
#: ``sweep`` values: an event a full listing saw, and a cancelled series it saw.
_SEEN = 1
_CANCELLED_SERIES = 2
_UTC = zone("UTC")

# ---- settings and state ---------------------------------------------------------------------


class CalendarSettings(BaseModel):
    """Which calendars to import, and how the upcoming view looks."""

    calendars: Literal["selected", "all", "listed"] = Field(
        default="selected",
        description="Which calendars to import: 'selected' (those ticked in Google Calendar), "
        "'all' (every calendar in your list, hidden ones included) or 'listed' (the ids in "
        "calendar_ids)",
    )
    calendar_ids: list[str] = Field(
        default_factory=list,
        validate_default=True,
        description="With calendars 'listed': the calendar ids to import (as shown in Google "
        "Calendar's settings, e.g. 'team@group.calendar.google.com'; 'primary' is your own)",
    )
    upcoming_days: int = Field(
        default=14,
        ge=1,
        le=366,
        description="How many days ahead 'Your data' shows upcoming events",
    )
    keep_declined: bool = Field(
        default=False, description="Keep events you declined (off: they are not imported)"
    )

    @field_validator("calendar_ids")
    @classmethod
    def _ids_match_mode(cls, value: list[str], info: ValidationInfo) -> list[str]:
        cleaned = [v.strip() for v in value]
        if any(not v for v in cleaned):
            raise ValueError("a calendar id is empty; remove it or give the calendar's id")
        if any(any(ch.isspace() for ch in v) for v in cleaned):
            raise ValueError(
                "calendar ids have no spaces; copy the id from the calendar's settings "
                "in Google Calendar (Integrate calendar > Calendar ID)"
            )
        mode = info.data.get("calendars")
        if mode == "listed" and not cleaned:
            raise ValueError("give at least one calendar id, or set calendars to 'selected'")
        if mode in ("selected", "all") and cleaned:
            raise ValueError(f"only used with calendars 'listed' (calendars is {mode!r})")
        return list(dict.fromkeys(cleaned))


class FullSync(BaseModel):
    """A full (re)sync of one calendar in progress; committed with every page it stores."""

    reason: Literal["initial", "expired"] = "initial"
    prune: bool = False  # at the end, remove the calendar's events the listing did not see
    pages: int = 0
    started: datetime | None = None
    #: Where the listing continues: the ``nextPageToken`` of the last page stored.
    page_token: str | None = None


class CalendarRecord(BaseModel):
    """One calendar: its list entry and its sync state (the ``calendars`` collection)."""

    id: str
    summary: str = ""
    summary_override: str | None = None
    description: str = ""
    time_zone: str | None = None
    background_color: str | None = None
    foreground_color: str | None = None
    color_id: str | None = None
    access_role: str | None = None
    primary: bool = False
    selected: bool = False
    hidden: bool = False
    in_list: bool = True  # in the user's calendar list (a 'listed' id need not be)
    # sync state
    synced: bool = False  # events of it may be stored
    sync_token: str | None = None
    full_sync: FullSync | None = None
    expiries: int = 0  # 410s since the last incremental sync that worked
    resync_after: datetime | None = None
    last_sync: datetime | None = None
    last_error: str | None = None

    @property
    def name(self) -> str:
        return self.summary_override or self.summary or self.id


class CalendarState(BaseModel):
    """The ``state`` cell: the calendar list's cursor and what the stored events assume."""

    list_sync_token: str | None = None
    fingerprint: str | None = None


def fingerprint(settings: CalendarSettings) -> str:
    """The settings that decide what is stored for a calendar (not which calendars)."""
    data = {"keep_declined": settings.keep_declined}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class ResyncLoop(ServerError):
    """Google refused a calendar's sync again right after (or during) a full resync."""


# ---- the pattern ----------------------------------------------------------------------------


class CalendarImporter(Pattern[CalendarSettings]):
    id = "gcalendar-importer"
    title = "Google Calendar Importer"
    description = (
        "Imports the events of your Google calendars and keeps them in sync incrementally; "
        "shows what is coming up, recurring events included."
    )
    Settings = CalendarSettings
    scopes = (CALENDAR_READONLY,)
    default_interval = timedelta(minutes=10)
    # A first sync of many large calendars; each page commits, so a cut run loses little.
    timeout = timedelta(minutes=15)
    cells = (CellSpec("state", writes=True, default=CalendarState(), type=CalendarState),)
    collections = ("events", "calendars", "sweep")
    export_formats: ClassVar[tuple[str, ...]] = ("jsonl", "ics")

    def needs_reset(self, old: CalendarSettings, new: CalendarSettings) -> bool:
        # Which calendars are synced is handled per calendar by the run; only what is kept of
        # each calendar's events needs a refetch.
        return fingerprint(old) != fingerprint(new)

    async def bg_updater(self, ctx: UpdateContext[CalendarSettings]) -> RunReport:
        if ctx.google is None:
            raise ServerError(
                "the Google Calendar importer has no Google account to use; "
                "add it again with an account"
            )
        api: CalendarClient = ctx.google.calendar()
        return await _Sync(ctx, api).run()

    def upcoming(
        self,
        source: UpdateContext[CalendarSettings],
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[Occurrence]:
        """See :func:`upcoming`."""
        return upcoming(source, start, end)

    def export(self, source: UpdateContext[CalendarSettings], fmt: str, dest: Path) -> int:
        """Write the charm's events to ``dest`` (a file); returns how many events were written.

        ``jsonl``: one stored event per line (cancelled-occurrence markers left out), ordered by
        start. ``ics``: one iCalendar file; a recurring series is one VEVENT with its RRULE,
        EXDATE (cancelled occurrences included) and RDATE, and each modified occurrence a VEVENT
        with its RECURRENCE-ID, so other calendar programs show what Google shows.
        """
        if fmt not in self.export_formats:
            raise ExportError(
                f"unknown export format {fmt!r}; the Google Calendar importer exports "
                + " or ".join(self.export_formats)
            )
        dest = Path(dest)
        events = [v for _k, v in source.collection("events").iter_items() if isinstance(v, dict)]
        if not _settings(source).keep_declined:
            events = _without_declined(events)
        calendars = _records(source.collection("calendars"))
        if fmt == "jsonl":
            return _export_jsonl(events, dest)
        return _export_ics(events, calendars, dest)


# ---- the upcoming view ----------------------------------------------------------------------


def upcoming(
    source: UpdateContext[CalendarSettings],
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[Occurrence]:
    """Occurrences overlapping ``[start, end)`` from the store, recurring series expanded.

    Defaults: from now for the charm's ``upcoming_days``. Reads no network. Events the user
    declined are left out unless the charm keeps them. Sorted by start. Each occurrence carries
    its calendar's current name and colour.
    """
    settings = _settings(source)
    if start is None:
        start = source.now()
    if end is None:
        end = start + timedelta(days=settings.upcoming_days)
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("upcoming() needs timezone-aware start and end")
    records = _records(source.collection("calendars"))
    stored = source.collection("events")
    by_calendar: dict[str, list[dict[str, Any]]] = {}
    first, last = start.timestamp(), end.timestamp()
    candidates = itertools.chain(
        stored.items(min_sort_key=first - SHORT_SPAN, max_sort_key=last),
        stored.items(min_sort_key=LONG_BASE + first, max_sort_key=SERIES_SORT_KEY),
        stored.items(min_sort_key=SERIES_SORT_KEY),
    )
    for key, value in candidates:
        if isinstance(value, dict):
            by_calendar.setdefault(_calendar_of(key, value), []).append(value)
    out: list[Occurrence] = []
    for calendar_id, events in by_calendar.items():
        record = records.get(calendar_id)
        tz = zone(record.time_zone if record else None)
        for occ in expand(
            events, calendar_id, start, end, tz, keep_declined=settings.keep_declined
        ):
            if record is not None:
                occ = _with_calendar(occ, record)
            out.append(occ)
    out.sort(key=lambda o: (o.start, o.end, o.calendar_id, o.event_id))
    return out


def _with_calendar(occ: Occurrence, record: CalendarRecord) -> Occurrence:
    return replace(occ, calendar_name=record.name, color=record.background_color or "")


def _settings(source: UpdateContext[CalendarSettings]) -> CalendarSettings:
    return source.settings


def _records(calendars: Collection) -> dict[str, CalendarRecord]:
    out: dict[str, CalendarRecord] = {}
    for key, value in calendars.items():
        with contextlib.suppress(ValueError):
            out[key] = CalendarRecord.model_validate(value)
    return out


# ---- stored form ----------------------------------------------------------------------------


def event_key(calendar_id: str, event_id: str) -> str:
    """``<calendar id>/<event id>``: event ids are base32hex, so the last ``/`` splits them."""
    return f"{calendar_id}/{event_id}"


def _calendar_of(key: str, value: Mapping[str, Any]) -> str:
    cid = value.get("calendarId")
    return cid if isinstance(cid, str) else key.rsplit("/", 1)[0]


def _is_series(ev: Mapping[str, Any]) -> bool:
    return bool(ev.get("recurrence") or ev.get("recurringEventId"))


def _sort_key(ev: Mapping[str, Any]) -> float:
    """The ``events`` collection's sort key (see ``SHORT_SPAN`` for the three regions)."""
    if _is_series(ev):
        return SERIES_SORT_KEY
    bounds = event_bounds(ev, _UTC)
    if bounds is None:
        return UNKNOWN_SORT_KEY
    start, end, all_day = bounds
    earliest_start = start.timestamp() - (14 * 3600 if all_day else 0)
    latest_end = end.timestamp() + (12 * 3600 if all_day else 0)
    if latest_end - earliest_start <= SHORT_SPAN:
        return earliest_start
    return LONG_BASE + latest_end


_KEPT = (
    "id",
    "status",
    "summary",
    "description",
    "location",
    "start",
    "end",
    "recurrence",
    "recurringEventId",
    "originalStartTime",
    "organizer",
    "htmlLink",
    "hangoutLink",
    "updated",
    "created",
    "etag",
    "iCalUID",
    "sequence",
    "transparency",
    "visibility",
    "eventType",
)
_ATTENDEE_KEPT = (
    "email",
    "displayName",
    "responseStatus",
    "optional",
    "organizer",
    "self",
    "resource",
)


# The partial response the importer asks for (Google's "fields" syntax): exactly what
# stored_event, _conference, _cancel_marker and self_declined read, so nothing else crosses the
# wire. Google: "Partial response ... lets you request only the fields you need", cutting
# bandwidth (developers.google.com/workspace/calendar/api/guides/performance#partial-response);
# gcal-sync asks for events the same way.
EVENT_FIELDS = (
    "items("
    + ",".join(_KEPT)
    + ",attendees("
    + ",".join(_ATTENDEE_KEPT)
    + "),conferenceData(entryPoints(entryPointType,uri,label),conferenceSolution/name))"
)


def stored_event(ev: Mapping[str, Any], calendar_id: str) -> dict[str, Any]:
    """What is kept of a Google event: Google's field names, plus ``calendarId``/``allDay``."""
    out: dict[str, Any] = {"calendarId": calendar_id}
    for name in _KEPT:
        value = ev.get(name)
        if value is not None and value != "" and value != []:
            out[name] = value
    start = ev.get("start")
    out["allDay"] = isinstance(start, Mapping) and "date" in start and "dateTime" not in start
    attendees = ev.get("attendees")
    if isinstance(attendees, list):
        out["attendees"] = [
            {k: a[k] for k in _ATTENDEE_KEPT if k in a} for a in attendees if isinstance(a, dict)
        ]
    conference = _conference(ev)
    if conference is not None:
        out["conference"] = conference
    out.setdefault("status", "confirmed")
    return out


def _conference(ev: Mapping[str, Any]) -> dict[str, Any] | None:
    """The join link and entry points of ``conferenceData`` (or the legacy ``hangoutLink``)."""
    data = ev.get("conferenceData")
    if isinstance(data, Mapping):
        points = [
            {k: p[k] for k in ("entryPointType", "uri", "label") if k in p}
            for p in data.get("entryPoints") or ()
            if isinstance(p, Mapping)
        ]
        video = next((p for p in points if p.get("entryPointType") == "video"), None)
        solution = data.get("conferenceSolution")
        name = solution.get("name") if isinstance(solution, Mapping) else None
        uri = (video or (points[0] if points else {})).get("uri") or ev.get("hangoutLink")
        return {"uri": uri or "", "solution": name or "", "entryPoints": points}
    link = ev.get("hangoutLink")
    if isinstance(link, str) and link:
        return {"uri": link, "solution": "Google Meet", "entryPoints": []}
    return None


def _cancel_marker(ev: Mapping[str, Any], calendar_id: str) -> dict[str, Any]:
    """A cancelled occurrence of a series: what hides it in the upcoming view and in .ics."""
    out: dict[str, Any] = {
        "calendarId": calendar_id,
        "id": ev["id"],
        "status": "cancelled",
        "recurringEventId": ev["recurringEventId"],
    }
    for name in ("originalStartTime", "etag", "updated"):
        if name in ev:
            out[name] = ev[name]
    return out


# ---- one run --------------------------------------------------------------------------------


@dataclass
class _Counts:
    added: int = 0
    updated: int = 0
    removed: int = 0

    def add(self, other: _Counts) -> None:
        self.added += other.added
        self.updated += other.updated
        self.removed += other.removed


@dataclass
class _Outcome:
    record: CalendarRecord
    counts: _Counts = field(default_factory=_Counts)
    error: SyncError | None = None
    note: str = ""


class _Sync:
    def __init__(self, ctx: UpdateContext[CalendarSettings], api: CalendarClient) -> None:
        self.ctx = ctx
        self.api = api
        self.settings = ctx.settings
        self.cell = ctx.cell("state")
        self.events = ctx.collection("events")
        self.calendars = ctx.collection("calendars")
        self.sweep = ctx.collection("sweep")
        self.fingerprint = fingerprint(ctx.settings)
        self.keep_declined = ctx.settings.keep_declined

    # -- state --

    @property
    def state(self) -> CalendarState:
        value = self.cell.get()
        return value if isinstance(value, CalendarState) else CalendarState.model_validate(value)

    def record(self, calendar_id: str) -> CalendarRecord | None:
        value = self.calendars.get(calendar_id)
        return None if value is None else CalendarRecord.model_validate(value)

    def save(self, record: CalendarRecord) -> None:
        self.calendars.upsert(record.id, record.model_dump(mode="json"))

    # -- the run --

    async def run(self) -> RunReport:
        state = self.state
        counts = _Counts()
        if state.fingerprint not in (None, self.fingerprint):
            # Settings changed under stored events (the engine normally resets the charm).
            self.ctx.log.info("settings changed since the last sync; resyncing every calendar")
            counts.removed += self.forget_all_events()
        state = await self.sync_list(state)
        wanted = self.wanted()
        for record in self.all_records():
            if record.id not in wanted and (record.synced or not record.in_list):
                counts.removed += self.drop_calendar(record)
        semaphore = asyncio.Semaphore(PARALLEL_CALENDARS)

        async def one(record: CalendarRecord) -> _Outcome:
            async with semaphore:
                return await self.sync_calendar(record)

        outcomes = await asyncio.gather(*(one(r) for r in wanted.values()))
        failed: list[_Outcome] = [o for o in outcomes if o.error is not None]
        for outcome in outcomes:
            counts.add(outcome.counts)
        if failed and len(failed) == len(outcomes):
            first = failed[0].error
            assert first is not None
            raise first
        partial = tuple(o.record.name for o in failed)
        notes = [f"{o.record.name}: {o.error.message}" for o in failed if o.error is not None]
        message = f"{len(outcomes) - len(failed)} of {len(outcomes)} calendars synced" + (
            f"; failed: {'; '.join(notes)}" if notes else ""
        )
        return RunReport(
            added=counts.added,
            updated=counts.updated,
            removed=counts.removed,
            partial=partial,
            message=message,
        )

    # -- calendar list --

    async def sync_list(self, state: CalendarState) -> CalendarState:
        token = state.list_sync_token
        try:
            result = await self.api.list_calendars(
                token, show_hidden=None if token else True, max_results=CALENDARS_PAGE_SIZE
            )
        except SyncTokenExpired:
            if token is None:
                raise
            self.ctx.log.info("the calendar list's sync token expired; listing it again")
            token = None
            result = await self.api.list_calendars(
                None, show_hidden=True, max_results=CALENDARS_PAGE_SIZE
            )
        full = token is None
        seen: set[str] = set()
        with self.ctx.transaction():
            for entry in result.items:
                if not isinstance(entry, Mapping):
                    raise ServerError(
                        "Google Calendar sent a calendar list entry in an unexpected shape; "
                        "the sync will be retried"
                    )
                cid = entry.get("id")
                if not isinstance(cid, str) or not cid:
                    continue
                seen.add(cid)
                record = self.record(cid) or CalendarRecord(id=cid)
                if entry.get("deleted"):
                    record = record.model_copy(update={"in_list": False})
                else:
                    record = _with_entry(record, entry)
                self.save(record)
            if full:
                for record in self.all_records():
                    if record.id not in seen and record.in_list:
                        self.save(record.model_copy(update={"in_list": False}))
            new = state.model_copy(
                update={"list_sync_token": result.next_sync_token, "fingerprint": self.fingerprint}
            )
            self.cell.set(new)
        return new

    def all_records(self) -> list[CalendarRecord]:
        return list(_records(self.calendars).values())

    def wanted(self) -> dict[str, CalendarRecord]:
        """The calendars to sync now, by id."""
        records = _records(self.calendars)
        mode = self.settings.calendars
        if mode == "selected":
            return {r.id: r for r in records.values() if r.in_list and r.selected}
        if mode == "all":
            return {r.id: r for r in records.values() if r.in_list}
        primary = next((r.id for r in records.values() if r.primary and r.in_list), None)
        out: dict[str, CalendarRecord] = {}
        for cid in self.settings.calendar_ids:
            if cid == "primary" and primary is not None:
                cid = primary
            record = records.get(cid)
            if record is None or not record.in_list:
                # Not subscribed: a public calendar may still be readable by its id.
                record = record or CalendarRecord(id=cid, summary=cid, in_list=False)
            out[cid] = record
        return out

    def drop_calendar(self, record: CalendarRecord) -> int:
        """Remove a calendar's events and sync state (deleted, unselected or unlisted)."""
        removed = 0
        with self.ctx.transaction():
            if record.synced:
                removed = self.events.delete_many(self.keys_of(self.events, record.id))
                self.sweep.delete_many(self.keys_of(self.sweep, record.id))
            if record.in_list:
                cleared = record.model_copy(
                    update={
                        "synced": False,
                        "sync_token": None,
                        "full_sync": None,
                        "expiries": 0,
                        "resync_after": None,
                        "last_error": None,
                    }
                )
                self.save(cleared)
            else:
                self.calendars.delete(record.id)
        if removed:
            self.ctx.log.info("removed %d events of calendar %s", removed, record.name)
        return removed

    def forget_all_events(self) -> int:
        with self.ctx.transaction():
            removed = self.events.clear()
            self.sweep.clear()
            for record in self.all_records():
                self.save(
                    record.model_copy(update={"sync_token": None, "full_sync": None, "expiries": 0})
                )
        return removed

    @staticmethod
    def keys_of(collection: Collection, calendar_id: str) -> list[str]:
        """The calendar's keys: a key-prefix range (not ``a/b``'s keys when asked for ``a``)."""
        prefix = calendar_id + "/"
        return [k for k in collection.keys(prefix) if "/" not in k[len(prefix) :]]

    # -- one calendar --

    async def sync_calendar(self, record: CalendarRecord) -> _Outcome:
        outcome = _Outcome(record)
        try:
            if record.full_sync is None and record.sync_token is None:
                record = self.begin_full_sync(record, "initial")
            if record.full_sync is None:
                record = await self.incremental(record, outcome)
            if record.full_sync is not None:
                record = await self.full_sync(record, outcome)
        except AuthRequired:
            raise
        except SyncError as exc:
            outcome.error = exc
            self.ctx.log.warning("calendar %s not synced: %s", record.name, exc.message)
            current = self.record(record.id) or record
            self.save(current.model_copy(update={"last_error": exc.message}))
        outcome.record = record
        return outcome

    def begin_full_sync(
        self, record: CalendarRecord, reason: Literal["initial", "expired"]
    ) -> CalendarRecord:
        prune = record.synced
        with self.ctx.transaction():
            if prune:
                self.sweep.delete_many(self.keys_of(self.sweep, record.id))
            record = record.model_copy(
                update={
                    "synced": True,
                    "sync_token": None,
                    "full_sync": FullSync(reason=reason, prune=prune, started=self.ctx.now()),
                }
            )
            self.save(record)
        self.ctx.log.info("full sync of calendar %s started (%s)", record.name, reason)
        return record

    async def incremental(self, record: CalendarRecord, outcome: _Outcome) -> CalendarRecord:
        assert record.sync_token is not None
        try:
            result = await self.api.list_events(
                record.id,
                sync_token=record.sync_token,
                show_deleted=True,
                max_results=EVENTS_PAGE_SIZE,
                fields=EVENT_FIELDS,
            )
        except SyncTokenExpired:
            return self.expired(record, "the sync token expired")
        if result.next_sync_token is None:
            raise ServerError(
                f"Google Calendar sent no sync token for {record.name}; the sync will be retried"
            )
        token, time_zone = result.next_sync_token, result.time_zone

        def finish() -> None:
            nonlocal record
            record = record.model_copy(
                update={
                    "sync_token": token,
                    "time_zone": time_zone or record.time_zone,
                    "expiries": 0,
                    "resync_after": None,
                    "last_sync": self.ctx.now(),
                    "last_error": None,
                }
            )
            self.save(record)

        outcome.counts.add(
            await self.apply_page(record.id, result.items, sweep=False, finish=finish)
        )
        return record

    def expired(self, record: CalendarRecord, what: str) -> CalendarRecord:
        """A 410: resync now, unless that would loop (see the module docstring)."""
        expiries = record.expiries + 1
        if expiries == 1:
            self.ctx.log.info("calendar %s: %s (410); resyncing it", record.name, what)
            record = record.model_copy(update={"expiries": expiries})
            return self.begin_full_sync(record, "expired")
        wait = timedelta(seconds=RESYNC_BACKOFF.delay(expiries - 1))
        when = self.ctx.now() + wait
        record = record.model_copy(update={"expiries": expiries, "resync_after": when})
        if record.full_sync is None:
            record = self.begin_full_sync(record, "expired")
        self.save(record)
        raise ResyncLoop(
            f"Google Calendar keeps refusing the sync of {record.name} (410: {what}, "
            f"{expiries} times without a successful sync in between); its events are kept "
            f"and it resyncs again after {when.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        )

    async def full_sync(self, record: CalendarRecord, outcome: _Outcome) -> CalendarRecord:
        """Run the pending full sync; a 410 during it restarts it once (then ``expired`` stops)."""
        while True:
            try:
                return await self.list_all(record, outcome)
            except SyncTokenExpired:
                current = self.record(record.id) or record
                record = self.expired(current, "Google refused the full sync")

    async def list_all(self, record: CalendarRecord, outcome: _Outcome) -> CalendarRecord:
        """List the calendar from where its full sync stands; each page commits with its place.

        A listing that Google no longer continues from the saved page (it refuses the page token)
        starts over from the first page, once; a 410 then is a real one.
        """
        assert record.full_sync is not None
        if record.resync_after is not None and self.ctx.now() < record.resync_after:
            raise ResyncLoop(
                f"the resync of {record.name} waits until "
                f"{record.resync_after.astimezone(UTC):%Y-%m-%d %H:%M} UTC after Google "
                "refused it repeatedly (410); its events are kept meanwhile"
            )
        if record.full_sync.pages and record.full_sync.page_token is None:
            # Stored pages but no place to continue from (a listing of an older version).
            record = self.restart_listing(record)
        while True:
            resumed_at = record.full_sync.page_token if record.full_sync else None
            try:
                return await self.list_pages(record, outcome)
            except GoogleRequestError as exc:
                current = self.record(record.id) or record
                stuck = current.full_sync is not None and current.full_sync.page_token == resumed_at
                if resumed_at is None or not stuck or exc.status not in (400, 410):
                    raise
                self.ctx.log.info(
                    "calendar %s: Google no longer continues the listing from its saved page "
                    "(%d); listing it from the first page",
                    record.name,
                    exc.status,
                )
                record = self.restart_listing(current)

    def restart_listing(self, record: CalendarRecord) -> CalendarRecord:
        """Forget where the listing stood; what it stored is now checked by the sweep."""
        fs = record.full_sync
        assert fs is not None
        with self.ctx.transaction():
            self.sweep.delete_many(self.keys_of(self.sweep, record.id))
            # Pages already stored may hold events Google deleted since: prune at the end.
            fs = fs.model_copy(update={"pages": 0, "page_token": None, "prune": True})
            record = record.model_copy(update={"full_sync": fs})
            self.save(record)
        return record

    async def list_pages(self, record: CalendarRecord, outcome: _Outcome) -> CalendarRecord:
        fs = record.full_sync
        assert fs is not None
        pages = self.api.iter_event_pages(
            record.id,
            show_deleted=True,
            max_results=EVENTS_PAGE_SIZE,
            page_token=fs.page_token,
            fields=EVENT_FIELDS,
        )
        async for page in pages:

            def finish(page: Any = page) -> None:
                nonlocal fs, record
                assert fs is not None
                fs = fs.model_copy(
                    update={"pages": fs.pages + 1, "page_token": page.next_page_token}
                )
                update: dict[str, Any] = {"full_sync": fs}
                if page.is_last:
                    if page.next_sync_token is None:
                        raise ServerError(
                            f"Google Calendar sent no sync token for {record.name}; "
                            "the sync will be retried"
                        )
                    if fs.prune:
                        outcome.counts.removed += self.prune(record.id)
                    else:
                        self.sweep.delete_many(self.keys_of(self.sweep, record.id))
                    update = {
                        "full_sync": None,
                        "sync_token": page.next_sync_token,
                        "time_zone": page.time_zone or record.time_zone,
                        "resync_after": None,
                        "last_sync": self.ctx.now(),
                        "last_error": None,
                    }
                record = record.model_copy(update=update)
                self.save(record)

            outcome.counts.add(
                await self.apply_page(
                    record.id, page.items, sweep=fs.prune, listing=True, finish=finish
                )
            )
        self.ctx.log.info("full sync of calendar %s done (%d pages)", record.name, fs.pages)
        return record

    def prune(self, calendar_id: str) -> int:
        """End of a resync: remove the calendar's events it did not see; clear the marks."""
        seen = set(self.keys_of(self.sweep, calendar_id))
        gone = [k for k in self.keys_of(self.events, calendar_id) if k not in seen]
        removed = self.events.delete_many(gone)
        self.sweep.delete_many(seen)
        return removed

    # -- applying changes --

    async def apply_page(
        self,
        calendar_id: str,
        items: Iterable[Mapping[str, Any]],
        *,
        sweep: bool,
        listing: bool = False,
        finish: Callable[[], None],
    ) -> _Counts:
        """Store one page of Google's events in steps of :data:`APPLY_CHUNK`, then ``finish()``.

        A page holds up to 2,500 events; written in one transaction it would hold the event loop
        for a long moment (issue 17.5: no write may block it more than 50 ms). Each step is its
        own short transaction and the loop runs between them. Only the last step runs
        ``finish`` (which advances the page token or sync token), so a run killed between steps
        fetches the page again and re-applies it: every step is idempotent (upserts, deletes,
        sweep marks), and the cursor never passes an event that was not stored. The shape of
        the whole page is checked before the first step, so a malformed page stores nothing.
        """
        batch = list(items)
        cancelled = self.cancelled_series(batch)
        counts = _Counts()
        chunks = [batch[i : i + APPLY_CHUNK] for i in range(0, len(batch), APPLY_CHUNK)] or [[]]
        for n, chunk in enumerate(chunks):
            last = n == len(chunks) - 1
            with self.ctx.transaction():
                step = self.apply(
                    calendar_id, chunk, sweep=sweep, listing=listing, cancelled_series=cancelled
                )
                counts.add(step)
                if last:
                    finish()
            if not last:
                await asyncio.sleep(0)
        return counts

    @staticmethod
    def cancelled_series(batch: list[Mapping[str, Any]]) -> set[Any]:
        """Ids of the series the batch cancels; checks that every item is an event object.

        Cancelling a series cancels its modified occurrences too, and Google reports those as
        cancelled occurrences; they hide nothing once the series is gone, so none is kept.
        """
        try:
            return {
                ev.get("id")
                for ev in batch
                if ev.get("status") == "cancelled" and not ev.get("recurringEventId")
            }
        except (AttributeError, TypeError) as exc:
            raise ServerError(
                "Google Calendar sent an event in an unexpected shape; the sync will be retried"
            ) from exc

    def apply(
        self,
        calendar_id: str,
        items: Iterable[Mapping[str, Any]],
        *,
        sweep: bool,
        listing: bool = False,
        cancelled_series: set[Any] | None = None,
    ) -> _Counts:
        """:meth:`apply_batch`; an event in an unexpected shape is Google's fault: server_error.

        Called inside a transaction, so nothing of a malformed batch is stored.
        """
        try:
            return self.apply_batch(
                calendar_id, items, sweep=sweep, listing=listing, cancelled_series=cancelled_series
            )
        except (AttributeError, TypeError, KeyError, ValueError, IndexError) as exc:
            raise ServerError(
                "Google Calendar sent an event in an unexpected shape; the sync will be retried"
            ) from exc

    def apply_batch(
        self,
        calendar_id: str,
        items: Iterable[Mapping[str, Any]],
        *,
        sweep: bool,
        listing: bool = False,
        cancelled_series: set[Any] | None = None,
    ) -> _Counts:
        """Store one batch of Google's events (a page of a listing, or a run's changes).

        ``sweep``: mark every event seen (a resync prunes the rest at its end). ``listing``: the
        batch is a page of a full listing, whose cancelled series are remembered in ``sweep``
        until it ends, so that their cancelled occurrences on later pages are not kept.
        ``cancelled_series``: those of the whole page when the batch is one step of it.
        """
        counts = _Counts()
        batch = list(items)
        if cancelled_series is None:
            cancelled_series = self.cancelled_series(batch)
        series_index: dict[str, list[str]] | None = None
        for ev in batch:
            eid = ev.get("id")
            if not isinstance(eid, str) or not eid:
                continue
            key = event_key(calendar_id, eid)
            is_cancelled = ev.get("status") == "cancelled"
            if is_cancelled and eid in cancelled_series and (sweep or listing):
                self.sweep.upsert(key, _CANCELLED_SERIES)
            elif sweep:
                self.sweep.upsert(key, _SEEN)
            if is_cancelled:
                series = ev.get("recurringEventId")
                if isinstance(series, str) and series and ev.get("originalStartTime"):
                    if series in cancelled_series or (
                        listing
                        and self.sweep.get(event_key(calendar_id, series)) == _CANCELLED_SERIES
                    ):
                        counts.removed += self.remove(key)
                        continue
                    # One occurrence cancelled: keep the marker that hides it.
                    result = self.put(key, _cancel_marker(ev, calendar_id))
                    counts.updated += result != "unchanged"
                    continue
                if self.remove(key):
                    counts.removed += 1
                if series_index is None:
                    series_index = self.series_index(calendar_id)
                exception_keys = series_index.pop(eid, [])
                counts.removed += self.events.delete_many(exception_keys)
                continue
            if not self.keep_declined and self_declined(ev) and not ev.get("recurringEventId"):
                # Declined: not kept (an occurrence is, so that it hides the series' one).
                counts.removed += self.remove(key)
                continue
            value = stored_event(ev, calendar_id)
            result = self.put(key, value)
            if result == "added":
                counts.added += 1
            elif result == "updated":
                counts.updated += 1
        return counts

    def put(self, key: str, value: dict[str, Any]) -> str:
        """Store an event under its sort key; returns the upsert result."""
        return self.events.upsert(key, value, sort_key=_sort_key(value))

    def remove(self, key: str) -> bool:
        return self.events.delete(key)

    def series_index(self, calendar_id: str) -> dict[str, list[str]]:
        """Exception keys by series id for one calendar (read from the series region)."""
        index: dict[str, list[str]] = {}
        region = self.events.items(min_sort_key=SERIES_SORT_KEY, key_prefix=calendar_id + "/")
        for key, value in region:
            series = value.get("recurringEventId") if isinstance(value, dict) else None
            if isinstance(series, str) and "/" not in key[len(calendar_id) + 1 :]:
                index.setdefault(series, []).append(key)
        return index


def _with_entry(record: CalendarRecord, entry: Mapping[str, Any]) -> CalendarRecord:
    """A record updated from a calendarList entry (sync state untouched)."""

    def text(name: str) -> str | None:
        value = entry.get(name)
        return value if isinstance(value, str) and value else None

    return record.model_copy(
        update={
            "summary": text("summary") or record.id,
            "summary_override": text("summaryOverride"),
            "description": text("description") or "",
            "time_zone": text("timeZone") or record.time_zone,
            "background_color": text("backgroundColor"),
            "foreground_color": text("foregroundColor"),
            "color_id": text("colorId"),
            "access_role": text("accessRole"),
            "primary": bool(entry.get("primary")),
            "selected": bool(entry.get("selected")),
            "hidden": bool(entry.get("hidden")),
            "in_list": True,
        }
    )


# ---- export ---------------------------------------------------------------------------------


def _start_order(ev: Mapping[str, Any]) -> tuple[str, str, str]:
    start = parse_when(ev.get("start"), zone(None)) or parse_when(
        ev.get("originalStartTime"), zone(None)
    )
    stamp = start[0].astimezone(UTC).isoformat() if start else "9999"
    return stamp, str(ev.get("calendarId", "")), str(ev.get("id", ""))


def _without_declined(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events as the upcoming view shows them: a declined occurrence hides its series' one."""
    out = []
    for ev in events:
        if ev.get("status") != "cancelled" and self_declined(ev):
            if ev.get("recurringEventId") and ev.get("originalStartTime"):
                out.append(_cancel_marker(ev, str(ev.get("calendarId", ""))))
            continue
        out.append(ev)
    return out


def _export_jsonl(events: list[dict[str, Any]], dest: Path) -> int:
    return write_jsonl(
        (ev for ev in sorted(events, key=_start_order) if ev.get("status") != "cancelled"), dest
    )


_PARTSTAT = {
    "accepted": "ACCEPTED",
    "declined": "DECLINED",
    "tentative": "TENTATIVE",
    "needsAction": "NEEDS-ACTION",
}


def _ics_when(when: Mapping[str, Any] | None, tz: Any) -> date | datetime | None:
    parsed = parse_when(when, tz)
    if parsed is None:
        return None
    moment, is_date = parsed
    if is_date:
        return moment.date()
    name = when.get("timeZone") if isinstance(when, Mapping) else None
    return moment.astimezone(zone(name, tz)) if name else moment.astimezone(UTC)


def _export_ics(
    events: list[dict[str, Any]], calendars: Mapping[str, CalendarRecord], dest: Path
) -> int:
    import icalendar  # the ICS stack loads for an ICS export only

    cal = icalendar.Calendar()
    cal.add("prodid", "-//Pattern Sync//trayapp Google Calendar importer//EN")
    cal.add("version", "2.0")
    synced = [r for r in calendars.values() if r.synced]
    if len(synced) == 1:
        cal.add("x-wr-calname", synced[0].name)
    masters = {
        (ev.get("calendarId"), ev.get("id")): ev
        for ev in events
        if ev.get("recurrence") and ev.get("status") != "cancelled"
    }
    cancelled: dict[tuple[Any, Any], list[Mapping[str, Any]]] = {}
    for ev in events:
        if ev.get("status") == "cancelled" and ev.get("recurringEventId"):
            cancelled.setdefault((ev.get("calendarId"), ev["recurringEventId"]), []).append(
                ev.get("originalStartTime") or {}
            )
    now = datetime.now(UTC)
    count = 0
    # Streamed: each VEVENT is serialized as soon as it is built and only its bytes are kept
    # (bytes are not tracked by the garbage collector). A Calendar holding 20,000 VEVENTs
    # was millions of live objects, and a full garbage collection over them stopped every
    # thread of the app, the event loop's included, for up to 1.7 s (issue 17.5). One VEVENT
    # per time zone is kept to build the VTIMEZONEs from at the end.
    body: list[bytes] = []
    probe = icalendar.Calendar()
    zone_samples: dict[str, icalendar.Event] = {}
    for ev in sorted(events, key=_start_order):
        if ev.get("status") == "cancelled":
            continue
        record = calendars.get(str(ev.get("calendarId")))
        tz = zone(record.time_zone if record else None)
        start = _ics_when(ev.get("start"), tz)
        end = _ics_when(ev.get("end"), tz)
        if start is None:
            continue
        vevent = icalendar.Event()
        series = (ev.get("calendarId"), ev.get("recurringEventId"))
        master = masters.get(series) if ev.get("recurringEventId") else None
        uid = (master or ev).get("iCalUID") or f"{(master or ev).get('id')}@google.com"
        vevent.add("uid", uid)
        vevent.add("dtstamp", now)
        vevent.add("dtstart", start)
        if end is not None:
            vevent.add("dtend", end)
        for name, prop in (("summary", "summary"), ("description", "description")):
            if ev.get(name):
                vevent.add(prop, ev[name])
        if ev.get("location"):
            vevent.add("location", ev["location"])
        vevent.add("status", "TENTATIVE" if ev.get("status") == "tentative" else "CONFIRMED")
        if isinstance(ev.get("sequence"), int):
            vevent.add("sequence", ev["sequence"])
        if ev.get("htmlLink"):
            vevent.add("url", ev["htmlLink"])
        if ev.get("updated"):
            with contextlib.suppress(ValueError):
                vevent.add("last-modified", datetime.fromisoformat(ev["updated"]))
        if record is not None:
            vevent.add("categories", [record.name])
        organizer = ev.get("organizer")
        if isinstance(organizer, Mapping) and organizer.get("email"):
            params = {"CN": organizer["displayName"]} if organizer.get("displayName") else {}
            vevent.add("organizer", f"mailto:{organizer['email']}", parameters=params)
        for attendee in ev.get("attendees") or ():
            if not attendee.get("email"):
                continue
            params = {"PARTSTAT": _PARTSTAT.get(attendee.get("responseStatus", ""), "NEEDS-ACTION")}
            if attendee.get("displayName"):
                params["CN"] = attendee["displayName"]
            if attendee.get("optional"):
                params["ROLE"] = "OPT-PARTICIPANT"
            vevent.add("attendee", f"mailto:{attendee['email']}", parameters=params)
        if ev.get("recurringEventId"):
            original = _ics_when(ev.get("originalStartTime"), tz)
            if original is not None and master is not None:
                vevent.add("recurrence-id", original)
        for line in ev.get("recurrence") or ():
            _ics_recurrence(vevent, line)
        for when in cancelled.get((ev.get("calendarId"), ev.get("id")), ()):
            moment = _ics_when(when, tz)
            if moment is not None:
                vevent.add("exdate", moment)
        probe.subcomponents = [vevent]
        for tzid in probe.get_used_tzids() - zone_samples.keys():
            zone_samples[tzid] = vevent
        body.append(vevent.to_ical())
        count += 1
    # VTIMEZONEs first (add_missing_timezones puts them before the events), then the events.
    cal.subcomponents = list({id(v): v for v in zone_samples.values()}.values())
    cal.add_missing_timezones()
    cal.subcomponents = list(cal.timezones)
    head = cal.to_ical()
    footer = b"END:VCALENDAR\r\n"
    assert head.endswith(footer)
    with atomic_output(dest) as out:
        out.write(head[: -len(footer)])
        for chunk in body:
            out.write(chunk)
        out.write(footer)
    return count


def _ics_recurrence(vevent: icalendar.Event, line: str) -> None:
    """Copy one of Google's recurrence lines onto the VEVENT (unreadable ones are skipped)."""
    from icalendar.prop import vRecur

    try:
        name, params, value = content_line(line)
        if name in ("RRULE", "EXRULE"):
            vevent.add(name.lower(), vRecur.from_ical(value))
        elif name in ("RDATE", "EXDATE"):
            moments = [
                v[0] if isinstance(v, tuple) else v for v in date_list(value, params.get("TZID"))
            ]
            if moments:
                vevent.add(name.lower(), moments)
    except (ValueError, TypeError, KeyError):
        return
