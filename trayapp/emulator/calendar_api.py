"""Calendar v3 handlers: calendarList.list and events.list/get with Google's sync rules."""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trayapp.emulator import errors
from trayapp.emulator.calendar_store import (
    Calendar,
    CalendarStore,
    event_bounds,
    parse_rfc3339,
    render_event,
    rfc3339_ms,
)
from trayapp.emulator.common import (
    JSONResponseGoogle,
    authorize,
    decode_token,
    emu_state,
    encode_token,
    error_response,
    partial_response,
    query_fingerprint,
)

#: Parameters that cannot be combined with syncToken (reference section 1.3).
EVENTS_SYNC_FORBIDDEN = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)
T = TypeVar("T")
#: Access roles, least first (discovery: minAccessRole's enum and CalendarListEntry.accessRole,
#: where writerWithoutPrivateAccess sits between reader and writer).
ROLE_RANK = {
    "freeBusyReader": 0,
    "reader": 1,
    "writerWithoutPrivateAccess": 2,
    "writer": 3,
    "owner": 4,
}


def _handler(
    method_id: str,
) -> Callable[[Callable[[Request, CalendarStore], Any]], Callable[[Request], Any]]:
    def deco(fn: Callable[[Request, CalendarStore], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                acct = authorize(request, method_id)
                result = partial_response(request, fn(request, acct.calendars))
            except errors.ApiError as err:
                return error_response(err)
            return JSONResponseGoogle(result)

        endpoint.__name__ = fn.__name__
        return endpoint

    return deco


def _bool(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise errors.calendar_bad_request(f"Invalid boolean value: '{raw}'.", name)
    return raw == "true"


def _int(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.calendar_bad_request(
            f"Invalid value '{raw}'. Values must match the following regular expression: '-?\\d+'",
            name,
        ) from None
    if value < 1:
        raise errors.calendar_bad_request(
            f"Invalid value '{raw}'. Values must be greater than or equal to 1.", name
        )
    return min(value, maximum)


def _time(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    dt = parse_rfc3339(raw)
    if dt is None:
        raise errors.calendar_bad_request("Bad Request", name)
    return dt


def _fp(parts: list[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(sorted(parts)).encode()).hexdigest()[:16]


def _sync_fingerprint(request: Request, cal_id: str, keys: tuple[str, ...]) -> str:
    """Parameters that must stay the same between the initial and the incremental syncs."""
    return _fp(
        [(k, v) for k, v in request.query_params.multi_items() if k in keys] + [("cal", cal_id)]
    )


def _expired(request: Request, token: dict[str, Any]) -> bool:
    """Sync tokens older than the configured lifetime (``set_sync_token_ttl``) are gone."""
    ttl = emu_state(request).sync_token_ttl
    return ttl is not None and emu_state(request).clock.now() - float(token.get("t", 0)) > ttl


def _read_cursors(
    request: Request, fp_sync: str, generation: int, current: int, purged_through: int = 0
) -> tuple[int | None, int, str | None]:
    """Decode ``syncToken`` and ``pageToken``: (the change counter an incremental sync starts
    after, or None for a full listing; the counter snapshot being paged; the last key served).

    A sync token answers 410 once invalidated, expired, or older than a purged deletion; a
    page token is bound to the parameters it was issued for (400 otherwise).
    """
    qp = request.query_params
    since: int | None = None
    sync = qp.get("syncToken")
    if sync is not None:
        tok = decode_token(sync, fp_sync)
        if (
            tok is None
            or tok.get("g") != generation
            or _expired(request, tok)
            or int(tok["n"]) < purged_through
        ):
            raise errors.full_sync_required()
        since = int(tok["n"])
    page_token = qp.get("pageToken")
    if not page_token:
        return since, current, None
    ptok = decode_token(page_token, query_fingerprint(request))
    if ptok is None:
        raise errors.calendar_bad_request("Invalid page token value.", "pageToken")
    if ptok.get("g") != generation:
        raise errors.full_sync_required()
    return since, int(ptok["s"]), str(ptok["k"])


def _page(
    request: Request,
    keyed: list[tuple[str, T]],
    max_results: int,
    snapshot: int,
    generation: int,
    fp_sync: str,
    now: float,
) -> tuple[list[tuple[str, T]], dict[str, str]]:
    """One page of ``keyed`` (sorted, already past the page token) and its cursor: a
    ``nextPageToken`` while more remain, else the ``nextSyncToken`` (only on the last page,
    and always there: reference section 1.3)."""
    page = keyed[:max_results]
    if len(keyed) > max_results:
        token = {"s": snapshot, "k": page[-1][0], "g": generation, "f": query_fingerprint(request)}
        return page, {"nextPageToken": encode_token(token)}
    sync = {"n": snapshot, "g": generation, "t": round(now), "f": fp_sync}
    return page, {"nextSyncToken": encode_token(sync)}


def _etag(counter: int, gen: int) -> str:
    return f'"p3{counter:012d}{gen:04d}g"'


# ---- calendarList.list ----


@_handler("calendar.calendarList.list")
def calendar_list(request: Request, store: CalendarStore) -> dict[str, Any]:
    qp = request.query_params
    now = store.clock.now()
    sync = qp.get("syncToken")
    if sync is not None and qp.get("minAccessRole") is not None:
        raise errors.calendar_bad_request(
            "The minAccessRole parameter cannot be used together with syncToken.", "minAccessRole"
        )
    max_results = _int(request, "maxResults", 100, 250)
    show_deleted = bool(_bool(request, "showDeleted"))
    show_hidden = bool(_bool(request, "showHidden"))
    min_role = qp.get("minAccessRole")
    if min_role is not None and min_role not in ROLE_RANK:
        raise errors.calendar_bad_request(
            f"Invalid value for minAccessRole: {min_role}", "minAccessRole"
        )
    fp_sync = _fp([("list", store.email)])
    since, snapshot, after = _read_cursors(
        request, fp_sync, store.list_generation, store.list_counter
    )
    entries = sorted(
        store.calendars.values(), key=lambda c: (not c.entry.fields.get("primary"), c.entry.id)
    )
    items = []
    for cal in entries:
        e = cal.entry
        if since is not None:
            if e.seq <= since:
                continue
        else:
            if e.deleted and not show_deleted:
                continue
            if e.fields.get("hidden") and not show_hidden:
                continue
            if (
                min_role is not None
                and ROLE_RANK.get(e.fields.get("accessRole", "reader"), 0) < ROLE_RANK[min_role]
            ):
                continue
        items.append(cal)
    keyed = [(f"{int(not c.entry.fields.get('primary'))}:{c.entry.id}", c) for c in items]
    if after is not None:
        keyed = [(k, c) for k, c in keyed if k > after]
    page, cursor = _page(request, keyed, max_results, snapshot, store.list_generation, fp_sync, now)
    return {
        "kind": "calendar#calendarList",
        "etag": _etag(snapshot, store.list_generation),
        **cursor,
        "items": [c.entry.to_json() for _, c in page],
    }


# ---- events.list ----

SYNC_KEYS = ("singleEvents", "eventTypes", "showHiddenInvitations")


def _start_key(ev: dict[str, Any], cal: Calendar) -> str:
    try:
        start, _ = event_bounds(ev, cal.tz)
    except (KeyError, ValueError):
        return "9999"
    return start.astimezone(UTC).strftime("%Y%m%dT%H%M%S")


@_handler("calendar.events.list")
def events_list(request: Request, store: CalendarStore) -> dict[str, Any]:
    qp = request.query_params
    now = store.clock.now()
    cal = store.resolve(request.path_params["calendarId"])
    if cal is None:
        raise errors.calendar_not_found()
    sync = qp.get("syncToken")
    show_deleted = _bool(request, "showDeleted")
    single = bool(_bool(request, "singleEvents"))
    if sync is not None:
        for name in EVENTS_SYNC_FORBIDDEN:
            if name in qp:
                raise errors.calendar_bad_request(
                    f"The parameter {name} cannot be used together with syncToken.", name
                )
        if show_deleted is False:
            raise errors.calendar_bad_request(
                "showDeleted=false cannot be used together with syncToken.", "showDeleted"
            )
    max_results = _int(request, "maxResults", 250, 2500)
    time_min, time_max = _time(request, "timeMin"), _time(request, "timeMax")
    updated_min = _time(request, "updatedMin")
    limit = emu_state(request).updated_min_limit
    if updated_min is not None and limit is not None and now - updated_min.timestamp() > limit:
        raise errors.updated_min_too_long_ago()
    if time_min is not None and time_max is not None and time_min >= time_max:
        raise errors.time_range_empty()
    order_by = qp.get("orderBy")
    if order_by is not None and order_by not in ("startTime", "updated"):
        raise errors.calendar_bad_request(f"Invalid value for orderBy: {order_by}", "orderBy")
    if order_by == "startTime" and not single:
        raise errors.calendar_bad_request(
            "The requested ordering is not available for the particular query.", "orderBy"
        )
    ttl = emu_state(request).cancelled_event_ttl
    if ttl is not None:
        store.purge_cancelled(cal, ttl)
    fp_sync = _sync_fingerprint(request, cal.entry.id, SYNC_KEYS)
    since, snapshot, after = _read_cursors(
        request, fp_sync, cal.generation, cal.counter, cal.purged_through
    )
    # One evaluation of the query serves every page while the calendar is unchanged: paging
    # through 20,000 events re-collected and re-sorted all of them for each page otherwise.
    key = (
        query_fingerprint(request),
        since,
        cal.counter,
        cal.generation,
        cal.entry.seq,  # the calendar's time zone places all-day events
        len(cal.events),  # a purge removes events without a change counter
        int(now),  # the expansion horizon of open-ended series
    )
    if cal.list_cache is not None and cal.list_cache[0] == key:
        keyed = cal.list_cache[1]
    else:
        items = _collect(store, cal, since, single, bool(show_deleted), time_min, time_max)
        keyed = _filter_and_sort(request, cal, items, updated_min, order_by)
        cal.list_cache = (key, keyed)
    if after is not None:
        keyed = keyed[bisect.bisect_right(keyed, after, key=lambda kv: kv[0]) :]
    page, cursor = _page(request, keyed, max_results, snapshot, cal.generation, fp_sync, now)
    rendered = [render_event(ev) for _, ev in page]
    f = cal.entry.fields
    out: dict[str, Any] = {
        "kind": "calendar#events",
        "etag": _etag(snapshot, cal.generation),
        "summary": f.get("summaryOverride", f.get("summary", cal.entry.id)),
        "description": f.get("description", ""),
        "updated": max(
            [ev.get("updated", "") for ev in rendered] + [rfc3339_ms(cal.entry.updated)]
        ),
        "timeZone": qp.get("timeZone") or f.get("timeZone", "UTC"),
        "accessRole": f.get("accessRole", "owner"),
        "defaultReminders": f.get("defaultReminders", []),
        **cursor,
        "items": rendered,
    }
    return out


def _filter_and_sort(
    request: Request,
    cal: Calendar,
    items: list[dict[str, Any]],
    updated_min: datetime | None,
    order_by: str | None,
) -> list[tuple[str, dict[str, Any]]]:
    """Apply ``q``, ``iCalUID``, ``eventTypes`` and ``updatedMin``; key by the sort order
    (keys are unique, so page tokens can carry the last one served)."""
    qp = request.query_params
    q = (qp.get("q") or "").lower()
    ical = qp.get("iCalUID")
    types = set(qp.getlist("eventTypes"))
    upd = rfc3339_ms(updated_min.timestamp()) if updated_min is not None else None

    def keep(ev: dict[str, Any]) -> bool:
        if q and not any(
            q in str(ev.get(f, "")).lower() for f in ("summary", "description", "location")
        ):
            return False
        if ical is not None and ev.get("iCalUID") != ical:
            return False
        if types and ev.get("eventType", "default") not in types:
            return False
        return upd is None or ev.get("updated", "") >= upd

    kept = [ev for ev in items if keep(ev)]
    if order_by == "updated":
        keyed = [(f"{ev.get('updated', '')}|{ev['id']}", ev) for ev in kept]
    else:
        keyed = [(f"{_start_key(ev, cal)}|{ev['id']}", ev) for ev in kept]
    keyed.sort(key=lambda kv: kv[0])
    return keyed


def _overlaps(
    ev: dict[str, Any], cal: Calendar, time_min: datetime | None, time_max: datetime | None
) -> bool:
    if time_min is None and time_max is None:
        return True
    try:
        start, end = event_bounds(ev, cal.tz)
    except (KeyError, ValueError):
        return True
    if end <= start:
        end = start
    if time_min is not None and end <= time_min and not (start == end and start >= time_min):
        return False
    return not (time_max is not None and start >= time_max)


def _collect(
    store: CalendarStore,
    cal: Calendar,
    since: int | None,
    single: bool,
    show_deleted: bool,
    time_min: datetime | None,
    time_max: datetime | None,
) -> list[dict[str, Any]]:
    if since is not None:
        return _changes(store, cal, since, single)
    return _listing(store, cal, single, show_deleted, time_min, time_max)


def _changes(store: CalendarStore, cal: Calendar, since: int, single: bool) -> list[dict[str, Any]]:
    """An incremental sync: every event changed after ``since``, cancelled ones included; with
    ``singleEvents`` a changed live series comes back as all its occurrences."""
    events = cal.events
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for eid, ev in events.items():
        if cal.event_seq.get(eid, 0) <= since:
            continue
        if single and ev.get("recurrence") and ev.get("status") != "cancelled":
            for inst in store.expand(cal, ev, None, None):
                exc = events.get(inst["id"])
                if exc is not None:
                    if cal.event_seq.get(inst["id"], 0) > since:
                        continue  # a changed exception is reported on its own
                    inst = exc
                if inst["id"] not in seen:
                    seen.add(inst["id"])
                    out.append(inst)
        elif eid not in seen:
            seen.add(eid)
            out.append(ev)
    return out


def _listing(
    store: CalendarStore,
    cal: Calendar,
    single: bool,
    show_deleted: bool,
    time_min: datetime | None,
    time_max: datetime | None,
) -> list[dict[str, Any]]:
    """A full listing. Google's ``showDeleted`` rules: cancelled events only with
    ``showDeleted=true``, except that cancelled occurrences of a live series are listed anyway
    when ``singleEvents`` is false too; with ``singleEvents=true`` the series themselves are
    never listed (deleted or not), only their occurrences."""
    events = cal.events
    live_series = {
        eid
        for eid, ev in events.items()
        if ev.get("recurrence") and ev.get("status") != "cancelled"
    }
    out: list[dict[str, Any]] = []
    # Series and single events first; then the exceptions (modified or cancelled occurrences),
    # each judged by its own times, so one moved into the window from outside it is listed
    # and one moved out of it is not.
    for ev in events.values():
        if "recurringEventId" in ev:
            continue
        if ev.get("status") == "cancelled":
            if show_deleted and not (single and ev.get("recurrence")):
                out.append(ev)
        elif not ev.get("recurrence"):
            if _overlaps(ev, cal, time_min, time_max):
                out.append(ev)
        elif not single:
            if store.expand(cal, ev, time_min, time_max):
                out.append(ev)
        else:
            out += [
                inst
                for inst in store.expand(cal, ev, time_min, time_max)
                if inst["id"] not in events and _overlaps(inst, cal, time_min, time_max)
            ]
    for ev in events.values():
        if "recurringEventId" not in ev:
            continue
        if ev.get("status") == "cancelled":
            series_live = ev["recurringEventId"] in live_series
            if not (show_deleted or (series_live and not single)):
                continue
        if _overlaps(ev, cal, time_min, time_max):
            out.append(ev)
    return out


@_handler("calendar.events.get")
def events_get(request: Request, store: CalendarStore) -> dict[str, Any]:
    cal = store.resolve(request.path_params["calendarId"])
    if cal is None:
        raise errors.calendar_not_found()
    eid = request.path_params["eventId"]
    ev = cal.events.get(eid)
    if ev is None:
        try:
            ev = store.occurrence(cal, eid)
        except KeyError:
            raise errors.calendar_not_found() from None
        ev = {
            **ev,
            "etag": cal.events[ev["recurringEventId"]]["etag"],
            "updated": cal.events[ev["recurringEventId"]]["updated"],
        }
    return ev


def routes() -> list[Route]:
    return [
        Route(
            "/calendar/v3/users/me/calendarList",
            calendar_list,
            methods=["GET"],
            name="calendar.calendarList.list",
        ),
        Route(
            "/calendar/v3/calendars/{calendarId}/events",
            events_list,
            methods=["GET"],
            name="calendar.events.list",
        ),
        Route(
            "/calendar/v3/calendars/{calendarId}/events/{eventId}",
            events_get,
            methods=["GET"],
            name="calendar.events.get",
        ),
    ]
