"""httpx clients for Gmail v1 and Calendar v3: auth, retries, quota shaping and error kinds.

Start from :class:`GoogleApi` (one per account)::

    api = GoogleApi(token_source, endpoints=GoogleEndpoints.for_base(url), quota=...)
    gmail = api.gmail()
    async for page in gmail.list_history(cursor): ...

Errors end a run with the right outcome kind (see :mod:`trayapp.google.errors`).
"""

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
