"""The public API for pattern authors: everything a pattern may import from ``trayapp``.

Built-in patterns (``trayapp.patterns.*``) import only this package, exactly as a third-party
plugin does, so this surface is enough to write a real importer and anything beyond it is an
implementation detail that may change. Names here are stable; additions are backwards
compatible. Every name is importable from ``trayapp.api``; the submodules group them by concern:

* :mod:`trayapp.api.patterns`: :class:`Pattern`, :class:`UpdateContext`, :class:`CellSpec`,
  settings models (``BaseModel``, ``Field``, ...);
* :mod:`trayapp.api.cells`: :class:`Cell`, :class:`DerivedCell`, :class:`Collection`;
* :mod:`trayapp.api.outcomes`: :class:`RunReport` and the errors that end a run, export helpers;
* :mod:`trayapp.api.http`: what ``ctx.http`` is, :func:`raise_for_status` (HTTP status ->
  outcome), :func:`parse_retry_after`, :func:`poll_interval_hint`, :class:`BackoffPolicy`;
* :mod:`trayapp.api.credentials`: :class:`ApiToken`, :class:`OAuth2Provider` (a pattern's
  ``credential`` for a non-Google service) and :class:`Credential` (``ctx.credential``);
* :mod:`trayapp.api.testing`: :func:`run_pattern`, a pattern's run in a temporary profile;
* :mod:`trayapp.api.google`: ``ctx.google``'s typed clients (:class:`GmailClient`,
  :class:`CalendarClient`), their pages and errors.

A complete pattern::

    from datetime import timedelta

    import httpx
    from trayapp.api import (
        BaseModel, CellSpec, Field, HttpUrl, Offline, Pattern, RunReport, UpdateContext,
    )

    class PingSettings(BaseModel):
        url: HttpUrl = Field(description="Page to check")

    class Ping(Pattern[PingSettings]):
        id = "ping"
        title = "Ping"
        description = "Records the HTTP status of a page."
        Settings = PingSettings
        default_interval = timedelta(minutes=10)
        cells = (CellSpec("last", writes=True),)

        async def bg_updater(self, ctx: UpdateContext[PingSettings]) -> RunReport:
            try:
                resp = await ctx.http.get(str(ctx.settings.url))
            except httpx.TransportError as exc:
                raise Offline(f"cannot reach {ctx.settings.url.host}") from exc
            ctx.cell("last").set(resp.status_code)
            return RunReport(updated=1)

and in the plugin's ``pyproject.toml``::

    [project.entry-points."trayapp.patterns"]
    ping = "my_plugin:Ping"

How a run ends:

* return :class:`RunReport` (``added``/``updated``/``removed`` counts; ``partial`` names parts
  that failed while the rest worked) -> outcome ``ok``;
* raise :class:`AuthRequired` -> the account is parked until the user signs in again (for a
  pattern with a ``credential``: its account is marked "needs sign-in", a new token or the
  provider's sign-in brings it back);
* raise :class:`RateLimited` (with ``retry_after`` when the server said) /
  :class:`Offline` / :class:`ServerError` -> retried later with backoff, never disabled (a
  response in an unexpected shape is a :class:`ServerError`, not a crash);
* raise :class:`ConfigProblem` when the charm's settings cannot work (a URL that is not found
  or not a feed): shown as needing the user's attention, retried slowly;
* Google-backed patterns get their account's clients from ``ctx.google``
  (:class:`GoogleServices`: ``.gmail()``, ``.calendar()``); they raise the kinds above for
  them, plus :class:`HistoryExpired` (Gmail
  history 404: do a full sync) and :class:`SyncTokenExpired` (Calendar 410: clear and resync),
  both subclasses of :class:`GoogleRequestError` (a request Google refused);
* any other exception is a ``bug`` in the pattern: recorded with its traceback, retried with
  backoff, shown as failing.

Writes that belong together (items and the cursor that covers them) go in one
``with ctx.transaction():`` block, so a crash or a failed run never advances the cursor past
data that was not stored.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from trayapp.api.cells import Cell, Collection, DerivedCell, ReadOnlyCellError
from trayapp.api.credentials import ApiToken, Credential, CredentialAuth, OAuth2Provider
from trayapp.api.http import (
    HTTP_TIMEOUT,
    MAX_RETRY_AFTER,
    USER_AGENT,
    BackoffPolicy,
    cap_retry_at,
    error_for_response,
    outcome_for_status,
    parse_retry_after,
    poll_interval_hint,
    raise_for_status,
)
from trayapp.api.outcomes import (
    AuthRequired,
    ConfigProblem,
    ExportError,
    Offline,
    RateLimited,
    RunReport,
    RunTimedOut,
    ServerError,
    SyncError,
    atomic_output,
    write_jsonl,
)
from trayapp.api.patterns import (
    API_VERSION,
    AnyHttpUrl,
    BaseModel,
    CellSpec,
    Field,
    HttpUrl,
    NoSettings,
    Pattern,
    SecretStr,
    UpdateContext,
    field_validator,
)

if TYPE_CHECKING:
    from trayapp.api.google import (
        CalendarClient,
        CalendarListResult,
        EventsPage,
        EventsResult,
        GmailClient,
        GoogleApiError,
        GoogleRequestError,
        GoogleServices,
        HistoryExpired,
        HistoryPage,
        MessagePage,
        MessagesResult,
        SyncTokenExpired,
    )

# The Google client names load with their first use (PEP 562): a pattern that never talks to
# Google (a feed, a script, most plugins) does not import the Gmail and Calendar clients.
_GOOGLE_NAMES = frozenset(
    {
        "CalendarClient",
        "CalendarListResult",
        "EventsPage",
        "EventsResult",
        "GmailClient",
        "GoogleApiError",
        "GoogleRequestError",
        "GoogleServices",
        "HistoryExpired",
        "HistoryPage",
        "MessagePage",
        "MessagesResult",
        "SyncTokenExpired",
    }
)


def __getattr__(name: str) -> object:
    if name not in _GOOGLE_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value: object = getattr(importlib.import_module("trayapp.api.google"), name)
    globals()[name] = value
    return value


__all__ = [
    "API_VERSION",
    "HTTP_TIMEOUT",
    "MAX_RETRY_AFTER",
    "USER_AGENT",
    "AnyHttpUrl",
    "ApiToken",
    "AuthRequired",
    "BackoffPolicy",
    "BaseModel",
    "CalendarClient",
    "CalendarListResult",
    "Cell",
    "CellSpec",
    "Collection",
    "ConfigProblem",
    "Credential",
    "CredentialAuth",
    "DerivedCell",
    "EventsPage",
    "EventsResult",
    "ExportError",
    "Field",
    "GmailClient",
    "GoogleApiError",
    "GoogleRequestError",
    "GoogleServices",
    "HistoryExpired",
    "HistoryPage",
    "HttpUrl",
    "MessagePage",
    "MessagesResult",
    "NoSettings",
    "OAuth2Provider",
    "Offline",
    "Pattern",
    "RateLimited",
    "ReadOnlyCellError",
    "RunReport",
    "RunTimedOut",
    "SecretStr",
    "ServerError",
    "SyncError",
    "SyncTokenExpired",
    "UpdateContext",
    "atomic_output",
    "cap_retry_at",
    "error_for_response",
    "field_validator",
    "outcome_for_status",
    "parse_retry_after",
    "poll_interval_hint",
    "raise_for_status",
    "write_jsonl",
]
