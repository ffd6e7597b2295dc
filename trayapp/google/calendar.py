"""Calendar v3: the calendar list and events, with full and syncToken incremental sync.

The sync rules come straight from Google's sync guide and discovery document, and this module
enforces them so a pattern cannot get them wrong:

* Every page is followed. ``nextSyncToken`` is only on the last page, and only it is returned.
* A paginated incremental sync sends the **same** ``syncToken`` with every ``pageToken``.
* ``syncToken`` cannot be combined with ``iCalUID, orderBy, privateExtendedProperty, q,
  sharedExtendedProperty, timeMin, timeMax, updatedMin`` (events) or ``minAccessRole,
  showOwnOrganizationOnly`` (calendar list), nor with ``showDeleted=false``: asking for that
  raises ``ValueError`` here rather than a 400 from Google.
* A 410 raises :class:`~trayapp.google.errors.SyncTokenExpired`: clear and do a full sync.
* Calendar ids go into the path percent-encoded (``#contacts@group.v.calendar.google.com``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast
from urllib.parse import quote

from trayapp.google.wire import PageTokens, canonical, json_list, json_str

if TYPE_CHECKING:
    from trayapp.google.wire import Params, ServiceTransport

TITLE = "Google Calendar"
OrderBy = Literal["startTime", "updated"]
AccessRole = Literal["freeBusyReader", "reader", "writerWithoutPrivateAccess", "writer", "owner"]
_ORDER_BY: tuple[OrderBy, ...] = ("startTime", "updated")
_ACCESS_ROLES: tuple[AccessRole, ...] = (
    "freeBusyReader",
    "reader",
    "writerWithoutPrivateAccess",
    "writer",
    "owner",
)
MAX_EVENTS_PAGE = 2500
# What iter_event_pages reads of a page, added to every partial-response ``fields`` selection.
_PAGE_FIELDS = "nextPageToken,nextSyncToken,timeZone"
MAX_CALENDARS_PAGE = 250


class EventDateTime(TypedDict, total=False):
    date: str  # all-day events: yyyy-mm-dd
    dateTime: str  # RFC 3339
    timeZone: str


class EventAttendee(TypedDict, total=False):
    email: str
    displayName: str
    responseStatus: str
    optional: bool
    organizer: bool
    self: bool
    resource: bool


class EventPerson(TypedDict, total=False):
    email: str
    displayName: str
    self: bool


class Event(TypedDict, total=False):
    id: str
    status: Literal["confirmed", "tentative", "cancelled"]
    summary: str
    description: str
    location: str
    start: EventDateTime
    end: EventDateTime
    recurrence: list[str]
    recurringEventId: str
    originalStartTime: EventDateTime
    attendees: list[EventAttendee]
    organizer: EventPerson
    htmlLink: str
    hangoutLink: str
    conferenceData: dict[str, Any]
    updated: str
    created: str
    etag: str
    iCalUID: str
    sequence: int
    eventType: str
    transparency: str
    visibility: str


class CalendarListEntry(TypedDict, total=False):
    id: str
    summary: str
    summaryOverride: str
    description: str
    timeZone: str
    accessRole: AccessRole
    primary: bool
    selected: bool
    hidden: bool
    deleted: bool
    backgroundColor: str
    foregroundColor: str
    colorId: str
    etag: str


@dataclass(frozen=True, slots=True)
class EventsPage:
    """One page of ``events.list``; ``next_sync_token`` is set on the last page only."""

    items: list[Event]
    next_page_token: str | None
    next_sync_token: str | None
    time_zone: str | None = None

    @property
    def is_last(self) -> bool:
        return self.next_page_token is None


@dataclass(frozen=True, slots=True)
class EventsResult:
    """Every event of a (full or incremental) sync and the token for the next one."""

    items: list[Event]
    next_sync_token: str | None
    time_zone: str | None = None


@dataclass(frozen=True, slots=True)
class CalendarListResult:
    items: list[CalendarListEntry]
    next_sync_token: str | None


_EVENT_SYNC_FORBIDDEN = {
    "iCalUID": "i_cal_uid",
    "orderBy": "order_by",
    "privateExtendedProperty": "private_extended_property",
    "q": "q",
    "sharedExtendedProperty": "shared_extended_property",
    "timeMin": "time_min",
    "timeMax": "time_max",
    "updatedMin": "updated_min",
}
_CALENDAR_SYNC_FORBIDDEN = {
    "minAccessRole": "min_access_role",
    "showOwnOrganizationOnly": "show_own_organization_only",
}


class CalendarClient:
    """Calendar v3 for one account. Get one from ``GoogleApi.calendar()``."""

    def __init__(self, api: ServiceTransport) -> None:
        self.api = api

    # ---- calendar list ----------------------------------------------------------------------

    async def iter_calendar_pages(
        self,
        sync_token: str | None = None,
        *,
        min_access_role: AccessRole | None = None,
        show_deleted: bool | None = None,
        show_hidden: bool | None = None,
        max_results: int = MAX_CALENDARS_PAGE,
    ) -> AsyncIterator[tuple[list[CalendarListEntry], str | None]]:
        """Pages of ``calendarList.list`` as ``(items, next_sync_token)`` (token on the last)."""
        _check_range("max_results", max_results, MAX_CALENDARS_PAGE)
        params: dict[str, Any] = {
            "minAccessRole": (
                canonical(min_access_role, _ACCESS_ROLES, "access role")
                if min_access_role
                else None
            ),
            "showDeleted": show_deleted,
            "showHidden": show_hidden,
            "maxResults": max_results,
        }
        _check_sync_params(sync_token, params, _CALENDAR_SYNC_FORBIDDEN)
        async for data in self._pages(
            "calendar.calendarList.list", "calendar/v3/users/me/calendarList", params, sync_token
        ):
            items = cast(list[CalendarListEntry], json_list(TITLE, data, "items"))
            yield items, json_str(data, "nextSyncToken")

    async def list_calendars(
        self,
        sync_token: str | None = None,
        *,
        min_access_role: AccessRole | None = None,
        show_deleted: bool | None = None,
        show_hidden: bool | None = None,
        max_results: int = MAX_CALENDARS_PAGE,
    ) -> CalendarListResult:
        """Every calendar-list entry (or every change since ``sync_token``) and the next token.

        With a sync token, deleted and hidden entries are always included (Google's rule).
        """
        items: list[CalendarListEntry] = []
        next_sync: str | None = None
        async for page_items, page_sync in self.iter_calendar_pages(
            sync_token,
            min_access_role=min_access_role,
            show_deleted=show_deleted,
            show_hidden=show_hidden,
            max_results=max_results,
        ):
            items.extend(page_items)
            next_sync = page_sync
        return CalendarListResult(items=items, next_sync_token=next_sync)

    # ---- events -----------------------------------------------------------------------------

    async def iter_event_pages(
        self,
        calendar_id: str,
        sync_token: str | None = None,
        *,
        time_min: datetime | None = None,
        time_max: datetime | None = None,
        updated_min: datetime | None = None,
        q: str | None = None,
        order_by: OrderBy | None = None,
        i_cal_uid: str | None = None,
        single_events: bool | None = None,
        show_deleted: bool | None = None,
        event_types: Sequence[str] = (),
        time_zone: str | None = None,
        max_results: int = MAX_EVENTS_PAGE,
        page_token: str | None = None,
        fields: str | None = None,
    ) -> AsyncGenerator[EventsPage, None]:
        """Every page of ``events.list`` for ``calendar_id`` (see :meth:`list_events`).

        ``page_token``: start at that page, a ``next_page_token`` of an earlier listing with the
        same arguments (``max_results`` may differ), so a listing cut short can continue where it
        stopped instead of from the first page. The listing (and the sync token on its last page)
        is the one the token belongs to. Google refuses a token it no longer accepts (a 400 or a
        410): start again without one.

        ``fields``: a partial response (Google's ``fields`` syntax, e.g. ``items(id,summary)``),
        so only what the caller keeps crosses the wire. The page fields this method reads
        (``nextPageToken``, ``nextSyncToken``, ``timeZone``) are always added to it.
        """
        _check_range("max_results", max_results, MAX_EVENTS_PAGE)
        params: dict[str, Any] = {
            "timeMin": time_min,
            "timeMax": time_max,
            "updatedMin": updated_min,
            "q": q,
            "orderBy": canonical(order_by, _ORDER_BY, "order") if order_by else None,
            "iCalUID": i_cal_uid,
            "singleEvents": single_events,
            "showDeleted": show_deleted,
            "eventTypes": list(event_types) or None,
            "timeZone": time_zone,
            "maxResults": max_results,
        }
        _check_sync_params(sync_token, params, _EVENT_SYNC_FORBIDDEN)
        if fields is not None:
            params["fields"] = f"{fields},{_PAGE_FIELDS}"
        if sync_token is not None and show_deleted is False:
            raise ValueError(
                "show_deleted=False cannot be used with a sync token: "
                "an incremental sync always returns deleted events"
            )
        path = f"calendar/v3/calendars/{quote(calendar_id, safe='')}/events"
        async for data in self._pages("calendar.events.list", path, params, sync_token, page_token):
            yield EventsPage(
                items=cast(list[Event], json_list(TITLE, data, "items")),
                next_page_token=json_str(data, "nextPageToken"),
                next_sync_token=json_str(data, "nextSyncToken"),
                time_zone=json_str(data, "timeZone"),
            )

    async def list_events(
        self,
        calendar_id: str,
        sync_token: str | None = None,
        *,
        time_min: datetime | None = None,
        time_max: datetime | None = None,
        updated_min: datetime | None = None,
        q: str | None = None,
        order_by: OrderBy | None = None,
        i_cal_uid: str | None = None,
        single_events: bool | None = None,
        show_deleted: bool | None = None,
        event_types: Sequence[str] = (),
        time_zone: str | None = None,
        max_results: int = MAX_EVENTS_PAGE,
        page_token: str | None = None,
        fields: str | None = None,
    ) -> EventsResult:
        """All events of a full sync (no ``sync_token``) or the changes since ``sync_token``.

        For an incremental sync pass the same non-forbidden parameters (``single_events``,
        ``event_types``...) as the full sync that produced the token. Cancelled events come back
        with ``status == "cancelled"`` (often with only ``id``). Raises ``SyncTokenExpired`` on
        410: clear this calendar's events and call again without a token. ``page_token``: the
        rest of a listing, from that page (see :meth:`iter_event_pages`).
        """
        items: list[Event] = []
        last: EventsPage | None = None
        async for page in self.iter_event_pages(
            calendar_id,
            sync_token,
            time_min=time_min,
            time_max=time_max,
            updated_min=updated_min,
            q=q,
            order_by=order_by,
            i_cal_uid=i_cal_uid,
            single_events=single_events,
            show_deleted=show_deleted,
            event_types=event_types,
            time_zone=time_zone,
            max_results=max_results,
            page_token=page_token,
            fields=fields,
        ):
            items.extend(page.items)
            last = page
        assert last is not None  # _pages yields at least one page or raises
        return EventsResult(
            items=items, next_sync_token=last.next_sync_token, time_zone=last.time_zone
        )

    # ---- shared -----------------------------------------------------------------------------

    async def _pages(
        self,
        method_id: str,
        path: str,
        params: Params,
        sync_token: str | None,
        page_token: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Raw pages from ``page_token`` on, sending ``sync_token`` unchanged with every one."""
        if page_token is not None and not page_token:
            raise ValueError("page_token is empty; pass None to start at the first page")
        guard = PageTokens(TITLE)
        guard.follow(page_token)
        while True:
            data = await self.api.get_json(
                "calendar",
                method_id,
                path,
                {**params, "syncToken": sync_token, "pageToken": page_token},
            )
            yield data
            page_token = guard.follow(json_str(data, "nextPageToken"))
            if page_token is None:
                return


def _check_sync_params(
    sync_token: str | None, params: Mapping[str, Any], forbidden: Mapping[str, str]
) -> None:
    if sync_token is None:
        return
    clash = [arg for name, arg in forbidden.items() if params.get(name) is not None]
    if clash:
        raise ValueError(
            f"{', '.join(clash)} cannot be combined with a sync token (Google rejects it); "
            "pass them only for the full sync"
        )


def _check_range(name: str, value: int, highest: int) -> None:
    if not 1 <= value <= highest:
        raise ValueError(f"{name} must be between 1 and {highest}")
