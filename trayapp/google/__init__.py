"""httpx clients for Gmail v1 and Calendar v3: auth, retries, quota shaping and error kinds.

Start from :class:`GoogleApi` (one per account)::

    api = GoogleApi(token_source, endpoints=GoogleEndpoints.for_base(url), quota=...)
    gmail = api.gmail()
    async for page in gmail.list_history(cursor): ...

Errors end a run with the right outcome kind (see :mod:`trayapp.google.errors`).

The package imports none of its modules by itself (PEP 562): ``trayapp.google.services`` or
``trayapp.google.endpoints`` alone is what the engine and the accounts need at start, and a
profile without a Google account never loads the clients (issue 17). The names below are
imported from their module when first read.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trayapp.core.retry import RetryPolicy
    from trayapp.google.batch import BatchCall, CallResult, run_batched
    from trayapp.google.calendar import (
        CalendarClient,
        CalendarListEntry,
        CalendarListResult,
        Event,
        EventsPage,
        EventsResult,
    )
    from trayapp.google.client import GoogleApi
    from trayapp.google.endpoints import GoogleEndpoints
    from trayapp.google.errors import (
        GoogleApiError,
        GoogleAuthRequired,
        GoogleRateLimited,
        GoogleRequestError,
        GoogleServerError,
        HistoryExpired,
        SyncTokenExpired,
        classify,
        parse_error,
    )
    from trayapp.google.gmail import (
        GmailClient,
        History,
        HistoryPage,
        Label,
        Message,
        MessagePage,
        MessagesResult,
        Profile,
    )
    from trayapp.google.quota import AccountQuota, QuotaConfig, RateBudget
    from trayapp.google.tokens import TokenSource
    from trayapp.google.wire import encode_params

_WHERE: dict[str, str] = {
    "AccountQuota": "trayapp.google.quota",
    "BatchCall": "trayapp.google.batch",
    "CalendarClient": "trayapp.google.calendar",
    "CalendarListEntry": "trayapp.google.calendar",
    "CalendarListResult": "trayapp.google.calendar",
    "CallResult": "trayapp.google.batch",
    "Event": "trayapp.google.calendar",
    "EventsPage": "trayapp.google.calendar",
    "EventsResult": "trayapp.google.calendar",
    "GmailClient": "trayapp.google.gmail",
    "GoogleApi": "trayapp.google.client",
    "GoogleApiError": "trayapp.google.errors",
    "GoogleAuthRequired": "trayapp.google.errors",
    "GoogleEndpoints": "trayapp.google.endpoints",
    "GoogleRateLimited": "trayapp.google.errors",
    "GoogleRequestError": "trayapp.google.errors",
    "GoogleServerError": "trayapp.google.errors",
    "History": "trayapp.google.gmail",
    "HistoryExpired": "trayapp.google.errors",
    "HistoryPage": "trayapp.google.gmail",
    "Label": "trayapp.google.gmail",
    "Message": "trayapp.google.gmail",
    "MessagePage": "trayapp.google.gmail",
    "MessagesResult": "trayapp.google.gmail",
    "Profile": "trayapp.google.gmail",
    "QuotaConfig": "trayapp.google.quota",
    "RateBudget": "trayapp.google.quota",
    "RetryPolicy": "trayapp.core.retry",
    "SyncTokenExpired": "trayapp.google.errors",
    "TokenSource": "trayapp.google.tokens",
    "classify": "trayapp.google.errors",
    "encode_params": "trayapp.google.wire",
    "parse_error": "trayapp.google.errors",
    "run_batched": "trayapp.google.batch",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value: object = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AccountQuota",
    "BatchCall",
    "CalendarClient",
    "CalendarListEntry",
    "CalendarListResult",
    "CallResult",
    "Event",
    "EventsPage",
    "EventsResult",
    "GmailClient",
    "GoogleApi",
    "GoogleApiError",
    "GoogleAuthRequired",
    "GoogleEndpoints",
    "GoogleRateLimited",
    "GoogleRequestError",
    "GoogleServerError",
    "History",
    "HistoryExpired",
    "HistoryPage",
    "Label",
    "Message",
    "MessagePage",
    "MessagesResult",
    "Profile",
    "QuotaConfig",
    "RateBudget",
    "RetryPolicy",
    "SyncTokenExpired",
    "TokenSource",
    "classify",
    "encode_params",
    "parse_error",
    "run_batched",
]
