"""Calendar model: calendarList entries, events with change counters, recurrence expansion.

Sync tokens and page tokens are opaque to clients but carry (calendar, change counter,
invalidation generation, parameter fingerprint), which is what lets the emulator enforce
Google's cursor rules: ``nextSyncToken`` only on the last page, the same ``syncToken`` with
``pageToken`` during a paginated incremental sync, and 410 ``fullSyncRequired`` once a token
is invalidated.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule

from trayapp.emulator.state import Clock

BASE32HEX = "0123456789abcdefghijklmnopqrstuv"
EVENT_ID_RE = re.compile(r"^[a-v0-9]{5,1024}$")
INSTANCE_ID_RE = re.compile(r"^(?P<base>[a-v0-9]{5,1024})_(?P<stamp>\d{8}(T\d{6}Z)?)$")
#: How far past "now" an unbounded recurring series is expanded, and the per-series cap.
EXPANSION_HORIZON = timedelta(days=730)
MAX_INSTANCES = 1000


def rfc3339_ms(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def zone(name: str | None, fallback: str = "UTC") -> ZoneInfo:
    try:
        return ZoneInfo(name or fallback)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_rfc3339(value: str) -> datetime | None:
    """Parse an RFC 3339 timestamp; None if it has no offset (Google requires one)."""
    try:
        dt = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else None


def event_bounds(ev: dict[str, Any], tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Start and end as aware datetimes (all-day dates at midnight in ``tz``)."""

    def one(t: dict[str, Any]) -> datetime:
        if "dateTime" in t:
            dt = datetime.fromisoformat(t["dateTime"])
            return dt if dt.tzinfo else dt.replace(tzinfo=zone(t.get("timeZone"), str(tz)))
        d = date.fromisoformat(t["date"])
        return datetime(d.year, d.month, d.day, tzinfo=tz)

    start = one(ev["start"])
    end = one(ev.get("end", ev["start"]))
    return start, end


@dataclass
class CalendarEntry:
    id: str
    fields: dict[str, Any]
    seq: int
    updated: float
    deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        etag = f'"{int(self.updated * 1_000_000)}"'
        entry = {"kind": "calendar#calendarListEntry", "etag": etag, "id": self.id, **self.fields}
        if self.deleted:
            # The entry stays whole with ``deleted: true`` (discovery: CalendarListEntry.deleted
            # "Whether this calendar list entry has been deleted from the calendar list"; unlike
            # cancelled events, nothing says its other fields are dropped; issue 13).
            entry["deleted"] = True
        return entry


@dataclass
class Calendar:
    entry: CalendarEntry
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: event id -> change counter at its last modification
    event_seq: dict[str, int] = field(default_factory=dict)
    counter: int = 1
    generation: int = 0
    #: event id -> virtual time it was cancelled, for the purge of deleted events.
    cancelled_at: dict[str, float] = field(default_factory=dict)
    #: The change counter of the newest purged event: sync tokens from before it answer 410,
    #: since a sync from them could no longer learn of that deletion.
    purged_through: int = 0
    #: The last events.list result (key, sorted items): see calendar_api.events_list.
    list_cache: tuple[Hashable, list[tuple[str, dict[str, Any]]]] | None = None

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.entry.fields.get("timeZone"))


class CalendarStore:
    def __init__(self, email: str, name: str, clock: Clock, rng: random.Random) -> None:
        self.email = email
        self.name = name
        self.clock = clock
        self.rng = rng
        self.calendars: dict[str, Calendar] = {}
        self.list_counter = 1
        self.list_generation = 0
        self.add_calendar(
            email,
            {
                "summary": email,
                "timeZone": "UTC",
                "primary": True,
                "colorId": "14",
                "backgroundColor": "#9fe1e7",
                "foregroundColor": "#000000",
            },
        )

    # ---- calendarList ----

    def resolve(self, calendar_id: str) -> Calendar | None:
        cid = self.email if calendar_id == "primary" else calendar_id
        cal = self.calendars.get(cid)
        if cal is None or cal.entry.deleted:
            return None
        return cal

    def _bump_list(self) -> int:
        self.list_counter += 1
        return self.list_counter

    def add_calendar(self, calendar_id: str | None, fields: dict[str, Any]) -> str:
        cid = calendar_id or (
            "".join(self.rng.choice(BASE32HEX) for _ in range(26)) + "@group.calendar.google.com"
        )
        if cid in self.calendars and not self.calendars[cid].entry.deleted:
            raise ValueError(f"calendar {cid!r} already exists")
        data: dict[str, Any] = {
            "summary": fields.pop("summary", cid),
            "timeZone": fields.pop("timeZone", "UTC"),
            "colorId": "7",
            "backgroundColor": "#42d692",
            "foregroundColor": "#000000",
            "selected": True,
            "accessRole": "owner",
            "defaultReminders": [{"method": "popup", "minutes": 10}]
            if fields.get("accessRole", "owner") == "owner"
            else [],
            "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
        }
        data.update(fields)
        entry = CalendarEntry(cid, data, self._bump_list(), self.clock.now())
        self.calendars[cid] = Calendar(entry)
        return cid

    def update_calendar(self, calendar_id: str, fields: dict[str, Any]) -> None:
        cal = self.resolve(calendar_id)
        if cal is None:
            raise KeyError(f"no calendar {calendar_id!r} for {self.email}")
        cal.entry.fields.update(fields)
        for key in [k for k, v in fields.items() if v is None]:
            del cal.entry.fields[key]
        cal.entry.seq = self._bump_list()
        cal.entry.updated = self.clock.now()

    def remove_calendar(self, calendar_id: str) -> None:
        cal = self.resolve(calendar_id)
        if cal is None:
            raise KeyError(f"no calendar {calendar_id!r} for {self.email}")
        cal.entry.deleted = True
        cal.entry.seq = self._bump_list()
        cal.entry.updated = self.clock.now()

    def invalidate(self, calendar_id: str | None) -> None:
        if calendar_id is None:
            self.list_generation += 1
            for each in self.calendars.values():
                each.generation += 1
            return
        cal = self.resolve(calendar_id)
        if cal is None:
            raise KeyError(f"no calendar {calendar_id!r} for {self.email}")
        cal.generation += 1

    # ---- events ----

    def _cal(self, calendar_id: str) -> Calendar:
        cal = self.resolve(calendar_id)
        if cal is None:
            raise KeyError(f"no calendar {calendar_id!r} for {self.email}")
        return cal

    def _touch(self, cal: Calendar, ev: dict[str, Any]) -> None:
        cal.counter += 1
        now = self.clock.now()
        ev["updated"] = rfc3339_ms(now)
        ev["etag"] = f'"{int(now * 1_000_000) * 10 + cal.counter % 10}"'
        cal.event_seq[ev["id"]] = cal.counter

    def add_event(self, calendar_id: str, event: dict[str, Any]) -> str:
        cal = self._cal(calendar_id)
        ev = copy.deepcopy(event)
        eid = ev.get("id") or "".join(self.rng.choice(BASE32HEX) for _ in range(26))
        if not EVENT_ID_RE.match(eid) and not INSTANCE_ID_RE.match(eid):
            raise ValueError(f"event id {eid!r} is not base32hex (a-v, 0-9), 5-1024 characters")
        if eid in cal.events:
            raise ValueError(f"event {eid!r} already exists in {calendar_id!r}")
        if "start" not in ev or "end" not in ev:
            raise ValueError("an event needs start and end ({'dateTime': ...} or {'date': ...})")
        _check_recurring_time_zone(ev)
        now = self.clock.now()
        base: dict[str, Any] = {
            "kind": "calendar#event",
            "etag": "",
            "id": eid,
            "status": "confirmed",
            "htmlLink": f"https://www.google.com/calendar/event?eid={eid}",
            "created": rfc3339_ms(now),
            "updated": rfc3339_ms(now),
            "creator": {"email": self.email, "self": True},
            "organizer": {"email": cal.entry.id, "self": True},
            "iCalUID": f"{eid}@google.com",
            "sequence": 0,
            "reminders": {"useDefault": True},
            "eventType": "default",
        }
        if cal.entry.id != self.email:
            base["organizer"] = {
                "email": cal.entry.id,
                "displayName": cal.entry.fields.get("summary", ""),
                "self": True,
            }
        base.update(ev)
        cal.events[eid] = base
        self._touch(cal, base)
        return eid

    def occurrence(self, cal: Calendar, instance_id: str) -> dict[str, Any]:
        """One occurrence of a recurring series as an event (the seed of an exception).

        Raises KeyError when ``instance_id`` is not ``<master>_<start>`` of a stored series.
        """
        m = INSTANCE_ID_RE.match(instance_id)
        master = cal.events.get(m.group("base")) if m else None
        if m is None or master is None or not master.get("recurrence"):
            raise KeyError(f"no event {instance_id!r}")
        for inst in self.expand(cal, master, None, None):
            if inst["id"] == instance_id:
                ev = {k: v for k, v in inst.items() if k not in ("etag", "updated")}
                ev["created"] = master["created"]
                return ev
        raise KeyError(f"{instance_id!r} is not an occurrence of {master['id']!r}")

    def update_event(self, calendar_id: str, event_id: str, fields: dict[str, Any]) -> None:
        cal = self._cal(calendar_id)
        ev = cal.events.get(event_id)
        current = ev if ev is not None else self.occurrence(cal, event_id)
        merged = {**current, **fields}
        _check_recurring_time_zone({k: v for k, v in merged.items() if v is not None})
        if ev is None:
            ev = current
            cal.events[event_id] = ev
        else:
            ev["sequence"] = int(ev.get("sequence", 0)) + 1
        for k, v in copy.deepcopy(fields).items():
            if v is None:
                ev.pop(k, None)
            else:
                ev[k] = v
        self._touch(cal, ev)

    def cancel_event(self, calendar_id: str, event_id: str) -> None:
        cal = self._cal(calendar_id)
        ev = cal.events.get(event_id)
        if ev is None:
            ev = self.occurrence(cal, event_id)
            cal.events[event_id] = ev
        ev["status"] = "cancelled"
        self._touch(cal, ev)
        cal.cancelled_at[event_id] = self.clock.now()
        if ev.get("recurrence"):
            # Deleting a series deletes its modified occurrences too: Google lists them as
            # cancelled (and a sync reports them) instead of leaving them live.
            for exc in cal.events.values():
                if exc.get("recurringEventId") == event_id and exc.get("status") != "cancelled":
                    exc["status"] = "cancelled"
                    self._touch(cal, exc)
                    cal.cancelled_at[exc["id"]] = self.clock.now()

    def purge_cancelled(self, cal: Calendar, ttl: float) -> None:
        """Forget events cancelled more than ``ttl`` seconds ago, as Google eventually does."""
        horizon = self.clock.now() - ttl
        for eid in [e for e, at in cal.cancelled_at.items() if at < horizon]:
            del cal.cancelled_at[eid]
            if cal.events.get(eid, {}).get("status") == "cancelled":
                del cal.events[eid]
                cal.purged_through = max(cal.purged_through, cal.event_seq.pop(eid, 0))

    def event_json(self, calendar_id: str, event_id: str) -> dict[str, Any]:
        cal = self._cal(calendar_id)
        ev = cal.events.get(event_id)
        if ev is None:
            return self.occurrence(cal, event_id)
        return render_event(ev)

    # ---- recurrence ----

    def expand(
        self,
        cal: Calendar,
        master: dict[str, Any],
        time_min: datetime | None,
        time_max: datetime | None,
    ) -> list[dict[str, Any]]:
        """Occurrences of a recurring master (without exceptions applied)."""
        tz = cal.tz
        start, end = event_bounds(master, tz)
        all_day = "date" in master["start"]
        ev_tz = zone(master["start"].get("timeZone"), str(tz))
        dtstart = start.astimezone(ev_tz)
        if all_day:
            dtstart = dtstart.replace(tzinfo=None)
        duration = end - start
        lines = [
            _normalize_until(ln, all_day, ev_tz)
            for ln in master.get("recurrence", [])
            if ln.split(":", 1)[0].split(";")[0] in ("RRULE", "EXRULE", "RDATE", "EXDATE")
        ]
        try:
            rset = rrule.rrulestr("\n".join(lines), dtstart=dtstart, forceset=True)
        except (ValueError, TypeError):
            return []
        horizon = time_max or (datetime.fromtimestamp(self.clock.now(), UTC) + EXPANSION_HORIZON)
        out: list[dict[str, Any]] = []
        for occ in rset:
            occ_aware = occ.replace(tzinfo=tz) if all_day else occ
            if occ_aware >= horizon or len(out) >= MAX_INSTANCES:
                break
            if time_min is not None and occ_aware + duration <= time_min:
                continue
            out.append(self._instance(master, occ, duration, all_day, ev_tz))
        return out

    def _instance(
        self,
        master: dict[str, Any],
        occ: datetime,
        duration: timedelta,
        all_day: bool,
        ev_tz: ZoneInfo,
    ) -> dict[str, Any]:
        inst = {k: copy.deepcopy(v) for k, v in master.items() if k != "recurrence"}
        if all_day:
            stamp = occ.strftime("%Y%m%d")
            inst["start"] = {"date": occ.date().isoformat()}
            inst["end"] = {"date": (occ + duration).date().isoformat()}
            inst["originalStartTime"] = {"date": occ.date().isoformat()}
        else:
            stamp = occ.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            tzname = master["start"].get("timeZone")
            local = occ.astimezone(ev_tz)
            inst["start"] = {"dateTime": local.isoformat()}
            inst["end"] = {"dateTime": (local + duration).isoformat()}
            inst["originalStartTime"] = {"dateTime": local.isoformat()}
            if tzname:
                for key in ("start", "end", "originalStartTime"):
                    inst[key]["timeZone"] = tzname
        inst["id"] = f"{master['id']}_{stamp}"
        inst["recurringEventId"] = master["id"]
        return inst


def _normalize_until(line: str, all_day: bool, ev_tz: ZoneInfo) -> str:
    """Make UNTIL agree with DTSTART as RFC 5545 requires (dateutil refuses a mismatch).

    Google accepts ``UNTIL=20260301`` on timed series and ``UNTIL=20260301T000000Z`` on all-day
    ones; dateutil needs UTC for an aware DTSTART and a floating value for a naive one.
    """
    m = re.search(r"UNTIL=(\d{8})(T(\d{6})(Z?))?", line)
    if m is None or not line.startswith("RRULE"):
        return line
    day, time_part, utc = m.group(1), m.group(3), m.group(4)
    if all_day:
        value = day
    elif time_part is None:
        value = f"{day}T235959Z"
    elif utc:
        return line
    else:
        local = datetime.strptime(day + time_part, "%Y%m%d%H%M%S").replace(tzinfo=ev_tz)
        value = local.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return line[: m.start()] + f"UNTIL={value}" + line[m.end() :]


def render_event(ev: dict[str, Any]) -> dict[str, Any]:
    """Cancelled events carry only id (+ recurringEventId/originalStartTime for exceptions)."""
    if ev.get("status") != "cancelled":
        return ev
    out = {"kind": "calendar#event", "etag": ev["etag"], "id": ev["id"], "status": "cancelled"}
    if "recurringEventId" in ev:
        out["recurringEventId"] = ev["recurringEventId"]
        out["originalStartTime"] = ev["originalStartTime"]
    return out


def _check_recurring_time_zone(ev: dict[str, Any]) -> None:
    """Google refuses a recurring event whose timed start has no ``timeZone``: 400 "Missing
    time zone definition for start time." (discovery, EventDateTime.timeZone: "For recurring
    events this field is required and specifies the time zone in which the recurrence is
    expanded"; the wording as Google answers events.insert, issue 13)."""
    start = ev.get("start")
    if (
        ev.get("recurrence")
        and isinstance(start, dict)
        and start.get("dateTime")
        and not start.get("timeZone")
    ):
        raise ValueError("Missing time zone definition for start time.")
