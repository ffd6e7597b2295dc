"""Google services: the typed clients a Google-backed pattern gets as ``ctx.google``.

A pattern that declares Google ``scopes`` runs with an account; ``ctx.google`` is then that
account's :class:`GoogleServices` (``ctx.google.gmail()`` -> :class:`GmailClient`,
``ctx.google.calendar()`` -> :class:`CalendarClient`), sharing the account's quota budget,
token refresh and in-run retries. Their methods return the typed pages below and fail with:

* the outcome errors of :mod:`trayapp.api.outcomes` (auth, rate limit, offline, server), which a
  pattern normally lets through;
* :class:`GoogleRequestError` for a request Google refused (4xx); its ``api_error``
  (:class:`GoogleApiError`) carries the status, reason and message;
* its subclasses :class:`HistoryExpired` (Gmail history 404: do a full sync) and
  :class:`SyncTokenExpired` (Calendar 410: clear and resync).
"""

from __future__ import annotations

from trayapp.google.calendar import (
    CalendarClient,
    CalendarListEntry,
    CalendarListResult,
    Event,
    EventsPage,
    EventsResult,
)
from trayapp.google.errors import (
    GoogleApiError,
    GoogleRequestError,
    HistoryExpired,
    SyncTokenExpired,
)
from trayapp.google.gmail import (
    GmailClient,
    History,
    HistoryPage,
    Label,
    Message,
    MessagePage,
    MessagesResult,
)
from trayapp.google.services import GoogleServices

__all__ = [
    "CalendarClient",
    "CalendarListEntry",
    "CalendarListResult",
    "Event",
    "EventsPage",
    "EventsResult",
    "GmailClient",
    "GoogleApiError",
    "GoogleRequestError",
    "GoogleServices",
    "History",
    "HistoryExpired",
    "HistoryPage",
    "Label",
    "Message",
    "MessagePage",
    "MessagesResult",
    "SyncTokenExpired",
]
