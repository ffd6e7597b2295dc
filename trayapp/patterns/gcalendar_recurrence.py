"""Occurrences of stored Google Calendar events in a time window.

The importer stores events the way Google's ``singleEvents=false`` sync returns them: a recurring
series is one *master* event with ``recurrence`` lines (RRULE/EXRULE/RDATE/EXDATE), and each
occurrence that was moved, edited or cancelled is an *exception* event carrying
``recurringEventId`` and ``originalStartTime``. This module turns that back into what a calendar
shows (what Google's ``singleEvents=true`` answers):

* a master's occurrences come from :mod:`dateutil.rrule`, expanded in the event's own time zone
  (so a 09:00 meeting stays at 09:00 local across daylight-saving changes), all-day series as
  dates in the calendar's time zone;
* an exception replaces the occurrence whose original start it names (the key is
  ``recurringEventId`` + ``originalStartTime``); a cancelled one removes it; a moved one shows
  at its new time, also when it moved into the window from outside it;
* an exception whose series is not stored (an invitation to one occurrence only) shows alone.

Occurrence ids follow Google's instance ids (``<series id>_<UTC start>`` such as
``abc_20260105T090000Z``, or ``abc_20260105`` for all-day series), so they can be compared with
Google's own expansion and used to open the event.

Why not ``rrulestr`` for every line: dateutil rejects ``RDATE;TZID=...``, an ``UNTIL`` date on a
timed series, and compares ``EXDATE;VALUE=DATE`` with aware datetimes (TypeError); Google
produces all of these. Only RRULE/EXRULE lines go to dateutil (``UNTIL`` normalised first), and
RDATE/EXDATE values are parsed by :mod:`icalendar`, whose property parsers handle every form.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# dateutil's rrule and icalendar load when a series is first expanded (the upcoming view, an
# ICS export), not when the pattern is registered at start (issue 17).
if TYPE_CHECKING:
    from dateutil import rrule

log = logging.getLogger(__name__)

#: Occurrences produced per series per query, at most: a FREQ=MINUTELY rule over a long window
#: must not freeze the tray.
MAX_OCCURRENCES_PER_SERIES = 5000

_UNTIL_RE = re.compile(r"(?i)(?<=UNTIL=)([0-9]{8}(?:T[0-9]{6}Z?)?)")

Event = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One event (or one occurrence of a recurring series) as a calendar shows it.

    ``start``/``end`` are timezone-aware; for an all-day event they are midnight in the
    calendar's time zone and ``all_day`` is set (``start.date()`` is the day).
    """

    calendar_id: str
    event_id: str
    summary: str
    start: datetime
    end: datetime
    all_day: bool
    status: str = "confirmed"
    series_id: str | None = None
    original_start: datetime | None = None
    location: str = ""
    description: str = ""
    html_link: str = ""
    conference_uri: str = ""
    calendar_name: str = ""
    color: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "calendarId": self.calendar_id,
            "calendarName": self.calendar_name,
            "color": self.color,
            "id": self.event_id,
            "seriesId": self.series_id,
            "summary": self.summary,
            "allDay": self.all_day,
            "start": self.start.date().isoformat() if self.all_day else self.start.isoformat(),
            "end": self.end.date().isoformat() if self.all_day else self.end.isoformat(),
            "status": self.status,
            "location": self.location,
            "htmlLink": self.html_link,
            "conferenceUri": self.conference_uri,
        }
        if self.original_start is not None:
            out["originalStart"] = (
                self.original_start.date().isoformat()
                if self.all_day
                else self.original_start.isoformat()
            )
        return out


# ---- times ----------------------------------------------------------------------------------


def zone(name: str | None, fallback: ZoneInfo | None = None) -> ZoneInfo:
    """The IANA zone ``name``; ``fallback`` (else UTC) when it is missing or unknown."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            log.debug("unknown time zone %r; using %s", name, fallback or "UTC")
    return fallback or ZoneInfo("UTC")


def parse_when(when: Mapping[str, Any] | None, tz: ZoneInfo) -> tuple[datetime, bool] | None:
    """``(aware datetime, is_date)`` for Google's ``{date}`` / ``{dateTime, timeZone}``.

    A date is midnight in ``tz`` (the calendar's zone, as Google interprets all-day events). A
    ``dateTime`` without an offset is read in its ``timeZone`` (else ``tz``). None if unreadable.
    """
    if not isinstance(when, Mapping):
        return None
    raw = when.get("dateTime")
    if isinstance(raw, str):
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=zone(when.get("timeZone"), tz))
        return dt, False
    raw = when.get("date")
    if isinstance(raw, str):
        try:
            d = date.fromisoformat(raw)
        except ValueError:
            return None
        return datetime.combine(d, time(), tzinfo=tz), True
    return None


def event_bounds(ev: Event, tz: ZoneInfo) -> tuple[datetime, datetime, bool] | None:
    """``(start, end, all_day)`` of a stored event; an event without end lasts no time."""
    start = parse_when(ev.get("start"), tz)
    if start is None:
        return None
    end = parse_when(ev.get("end"), tz)
    end_dt = end[0] if end is not None else start[0]
    return start[0], max(end_dt, start[0]), start[1]


def overlaps(start: datetime, end: datetime, window_start: datetime, window_end: datetime) -> bool:
    """Google's ``timeMin``/``timeMax`` rule: end after the window's start, start before its end.

    An event that takes no time counts when it starts inside the window.
    """
    if start >= window_end:
        return False
    return end > window_start or (start == end and start >= window_start)


def self_declined(ev: Event) -> bool:
    """Whether the signed-in user declined this event (their attendee entry says so)."""
    attendees = ev.get("attendees")
    if not isinstance(attendees, list):
        return False
    return any(
        isinstance(a, Mapping) and a.get("self") and a.get("responseStatus") == "declined"
        for a in attendees
    )


# ---- recurrence -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    """A master event ready to expand."""

    event: Event
    rules: rrule.rruleset
    dtstart: datetime  # aware in the event's zone; naive midnight for all-day series
    duration: timedelta
    all_day: bool
    cal_tz: ZoneInfo

    @classmethod
    def build(cls, ev: Event, cal_tz: ZoneInfo) -> Series | None:
        """The series of a master event, or None if its times or rules cannot be read."""
        bounds = event_bounds(ev, cal_tz)
        if bounds is None:
            return None
        start, end, all_day = bounds
        if all_day:
            dtstart = start.replace(tzinfo=None)
        else:
            start_when = ev.get("start") or {}
            dtstart = start.astimezone(zone(start_when.get("timeZone"), cal_tz))
        from dateutil import rrule

        rules = rrule.rruleset()
        has_rule = False
        for line in ev.get("recurrence") or ():
            if not isinstance(line, str):
                continue
            try:
                has_rule |= _add_line(rules, line, dtstart)
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("ignoring unreadable recurrence line of %s: %s", ev.get("id"), exc)
        if not has_rule:
            # No usable RRULE/RDATE: the master stands for its own first occurrence.
            rules.rdate(dtstart)
        return cls(ev, rules, dtstart, end - start, all_day, cal_tz)

    def _local(self, moment: datetime) -> datetime:
        """A window bound in the terms dateutil compares with (naive for all-day series)."""
        if self.all_day:
            return moment.astimezone(self.cal_tz).replace(tzinfo=None)
        return moment

    def occurrence_times(self, occ: datetime) -> tuple[datetime, datetime]:
        if self.all_day:
            start = occ.replace(tzinfo=self.cal_tz)
            # Whole days: the end date, not 24 h later (a DST day has 23 or 25 hours).
            end_day = (occ + self.duration).replace(tzinfo=self.cal_tz)
            return start, end_day
        # Wall-clock arithmetic in the event's zone, as Google does: 09:00-10:00 stays so.
        return occ, occ + self.duration

    def starts(self, window_start: datetime, window_end: datetime) -> Iterable[datetime]:
        """Original starts of occurrences that may overlap the window (checked by the caller)."""
        lo = self._local(window_start) - self.duration
        hi = self._local(window_end)
        for count, occ in enumerate(self.rules.xafter(lo, inc=True), 1):
            if occ >= hi:
                return
            if count > MAX_OCCURRENCES_PER_SERIES:
                log.warning(
                    "series %s has more than %d occurrences in the window; showing the first",
                    self.event.get("id"),
                    MAX_OCCURRENCES_PER_SERIES,
                )
                return
            yield occ

    def has_start(self, original: datetime) -> bool:
        """Whether ``original`` (an exception's ``originalStartTime``) is one of its starts."""
        probe = self._local(original) if self.all_day else original
        return probe in self.rules

    def key(self, occ: datetime) -> datetime | date:
        return occ.date() if self.all_day else occ.astimezone(UTC)

    def instance_id(self, occ: datetime) -> str:
        master = str(self.event.get("id", ""))
        if self.all_day:
            return f"{master}_{occ.strftime('%Y%m%d')}"
        return f"{master}_{occ.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def content_line(line: str) -> tuple[str, dict[str, str], str]:
    """``(NAME, params, value)`` of one iCalendar content line such as ``EXDATE;TZID=X:...``."""
    head, colon, rest = line.strip().partition(":")
    if colon and ";" not in head:
        # No parameters (``RRULE:FREQ=...``, most lines): icalendar's full parser, which
        # handles quoted parameter values, costs 20x more and the upcoming view runs it often.
        return head.upper(), {}, rest
    from icalendar.parser import Contentline

    name, params, value = Contentline(line.strip()).parts()  # type: ignore[no-untyped-call]
    return str(name).upper(), {str(k).upper(): str(v) for k, v in params.items()}, str(value)


def date_list(value: str, tzid: str | None) -> list[Any]:
    """The dates, datetimes or periods of an RDATE/EXDATE value (icalendar's parser)."""
    from icalendar.prop import vDDDLists

    return list(vDDDLists.from_ical(value, timezone=tzid))  # type: ignore[no-untyped-call]


def _add_line(rules: rrule.rruleset, line: str, dtstart: datetime) -> bool:
    """Add one recurrence line; True if it can produce occurrences (RRULE or RDATE)."""
    name, params, value = content_line(line)
    if name in ("RRULE", "EXRULE"):
        from dateutil import rrule

        rule = rrule.rrulestr(_normalise_until(value, dtstart), dtstart=dtstart)
        assert isinstance(rule, rrule.rrule)
        if name == "RRULE":
            rules.rrule(rule)
            return True
        rules.exrule(rule)
        return False
    if name in ("RDATE", "EXDATE"):
        tzid = params.get("TZID")
        moments = [_as_start(v, dtstart) for v in date_list(value, tzid)]
        for moment in moments:
            if name == "RDATE":
                rules.rdate(moment)
            else:
                rules.exdate(moment)
        return name == "RDATE" and bool(moments)
    return False


def _as_start(value: Any, dtstart: datetime) -> datetime:
    """An RDATE/EXDATE value in the same terms as ``dtstart`` (so rruleset can compare them)."""
    if isinstance(value, tuple):  # PERIOD: (start, end or duration)
        value = value[0]
    if dtstart.tzinfo is None:  # all-day series: naive midnights
        if isinstance(value, datetime):
            return datetime.combine(value.date(), time())
        return datetime.combine(value, time())
    if isinstance(value, datetime):
        if value.tzinfo is None:  # floating: the series' own zone
            return value.replace(tzinfo=dtstart.tzinfo)
        return value.astimezone(dtstart.tzinfo)
    # A date on a timed series: that day at the series' time of day.
    return datetime.combine(value, dtstart.timetz())


def _normalise_until(rule: str, dtstart: datetime) -> str:
    """Make ``UNTIL`` the kind dateutil accepts for this ``dtstart``.

    dateutil wants UTC (``...Z``) with an aware start and a naive value with a naive one; Google
    writes ``UNTIL=20260131`` on timed series too. A date bound includes that whole day in the
    series' zone (RFC 5545: UNTIL is inclusive).
    """
    match = _UNTIL_RE.search(rule)
    if match is None:
        return rule
    raw = match.group(1)
    if len(raw) == 8:
        day = date(int(raw[:4]), int(raw[4:6]), int(raw[6:8]))
        until = datetime.combine(day, time(23, 59, 59))
        utc = False
    else:
        until = datetime.strptime(raw[:15], "%Y%m%dT%H%M%S")
        utc = raw.endswith("Z")
    if dtstart.tzinfo is not None:
        aware = until.replace(tzinfo=UTC) if utc else until.replace(tzinfo=dtstart.tzinfo)
        text = aware.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    else:
        text = until.strftime("%Y%m%dT%H%M%S")
    return rule[: match.start(1)] + text + rule[match.end(1) :]


# ---- expansion ------------------------------------------------------------------------------


def _text(ev: Event, key: str) -> str:
    value = ev.get(key)
    return value if isinstance(value, str) else ""


def _occurrence(
    ev: Event,
    calendar_id: str,
    start: datetime,
    end: datetime,
    all_day: bool,
    *,
    event_id: str | None = None,
    series_id: str | None = None,
    original_start: datetime | None = None,
) -> Occurrence:
    conference = ev.get("conference")
    return Occurrence(
        calendar_id=calendar_id,
        event_id=event_id or _text(ev, "id"),
        summary=_text(ev, "summary"),
        start=start,
        end=end,
        all_day=all_day,
        status=_text(ev, "status") or "confirmed",
        series_id=series_id,
        original_start=original_start,
        location=_text(ev, "location"),
        description=_text(ev, "description"),
        html_link=_text(ev, "htmlLink"),
        conference_uri=(
            str(conference.get("uri") or "")
            if isinstance(conference, Mapping)
            else _text(ev, "hangoutLink")
        ),
    )


def original_key(ev: Event, cal_tz: ZoneInfo) -> datetime | date | None:
    """The occurrence an exception replaces: a UTC instant, or a date for all-day series."""
    parsed = parse_when(ev.get("originalStartTime"), cal_tz)
    if parsed is None:
        return None
    moment, is_date = parsed
    return moment.date() if is_date else moment.astimezone(UTC)


def expand(
    events: Iterable[Event],
    calendar_id: str,
    window_start: datetime,
    window_end: datetime,
    cal_tz: ZoneInfo,
    *,
    keep_declined: bool = True,
) -> list[Occurrence]:
    """The occurrences of one calendar's stored events that overlap the window.

    ``events`` may hold anything the importer stored for the calendar (singles, masters,
    exceptions, cancelled exception markers); reading more than the window needs is harmless.
    Declined events and occurrences are left out unless ``keep_declined``.
    """
    if window_start.tzinfo is None or window_end.tzinfo is None:
        raise ValueError("the window needs timezone-aware start and end")
    masters: dict[str, Event] = {}
    exceptions: dict[str, list[Event]] = {}
    singles: list[Event] = []
    for ev in events:
        if ev.get("recurringEventId"):
            exceptions.setdefault(str(ev["recurringEventId"]), []).append(ev)
        elif ev.get("status") == "cancelled":
            continue
        elif ev.get("recurrence"):
            masters[str(ev.get("id"))] = ev
        else:
            singles.append(ev)

    out: list[Occurrence] = []

    def hidden(ev: Event) -> bool:
        return ev.get("status") == "cancelled" or (not keep_declined and self_declined(ev))

    def add_plain(ev: Event, series_id: str | None = None) -> None:
        bounds = event_bounds(ev, cal_tz)
        if bounds is None or hidden(ev):
            return
        start, end, all_day = bounds
        if overlaps(start, end, window_start, window_end):
            original = parse_when(ev.get("originalStartTime"), cal_tz)
            out.append(
                _occurrence(
                    ev,
                    calendar_id,
                    start,
                    end,
                    all_day,
                    series_id=series_id,
                    original_start=original[0] if original else None,
                )
            )

    for ev in singles:
        add_plain(ev)

    for series_id, excs in exceptions.items():
        master = masters.get(series_id)
        if master is None:
            # Only this occurrence is visible to us (or its series was removed): show it alone.
            for exc in excs:
                add_plain(exc, series_id)

    for series_id, master in masters.items():
        series = Series.build(master, cal_tz)
        if series is None:
            continue
        replaced: set[datetime | date] = set()
        for exc in exceptions.get(series_id, ()):
            orig = original_key(exc, cal_tz)
            if orig is None:
                continue
            replaced.add(orig)
            original = parse_when(exc.get("originalStartTime"), cal_tz)
            if hidden(exc) or original is None:
                continue
            # A moved occurrence shows at its new time, wherever it came from, as long as the
            # series still has the occurrence it replaces.
            bounds = event_bounds(exc, cal_tz)
            if bounds is None:
                continue
            start, end, all_day = bounds
            if overlaps(start, end, window_start, window_end) and series.has_start(original[0]):
                out.append(
                    _occurrence(
                        exc,
                        calendar_id,
                        start,
                        end,
                        all_day,
                        series_id=series_id,
                        original_start=original[0],
                    )
                )
        if not keep_declined and self_declined(master):
            continue
        for occ in series.starts(window_start, window_end):
            if series.key(occ) in replaced:
                continue
            start, end = series.occurrence_times(occ)
            if overlaps(start, end, window_start, window_end):
                out.append(
                    _occurrence(
                        master,
                        calendar_id,
                        start,
                        end,
                        series.all_day,
                        event_id=series.instance_id(occ),
                        series_id=series_id,
                        original_start=start,
                    )
                )
    out.sort(key=lambda o: (o.start, o.end, o.event_id))
    return out
