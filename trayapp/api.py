"""The public API for pattern authors: everything a pattern may import from ``trayapp``.

Built-in patterns (``trayapp.patterns.*``) import only this module, exactly as a third-party
plugin does, so this surface is enough to write a real importer and anything beyond it is an
implementation detail that may change. Names here are stable; additions are backwards
compatible.

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
* raise :class:`AuthRequired` -> the account is parked until the user signs in again;
* raise :class:`RateLimited` (with ``retry_after`` when the server said) /
  :class:`Offline` / :class:`ServerError` -> retried later with backoff, never disabled (a
  response in an unexpected shape is a :class:`ServerError`, not a crash);
* raise :class:`ConfigProblem` when the charm's settings cannot work (a URL that is not found
  or not a feed): shown as needing the user's attention, retried slowly;
* Google-backed patterns get their account's clients from ``ctx.google`` (``.gmail()``,
  ``.calendar()``); they raise the kinds above for them, plus :class:`HistoryExpired` (Gmail
  history 404: do a full sync) and :class:`SyncTokenExpired` (Calendar 410: clear and resync),
  both subclasses of :class:`GoogleRequestError` (a request Google refused);
* any other exception is a ``bug`` in the pattern: recorded with its traceback, retried with
  backoff, shown as failing.

Writes that belong together (items and the cursor that covers them) go in one
``with ctx.transaction():`` block, so a crash or a failed run never advances the cursor past
data that was not stored.
"""

from __future__ import annotations

from pydantic import AnyHttpUrl, BaseModel, Field, HttpUrl, field_validator

from trayapp.core.cells import Cell, DerivedCell
from trayapp.core.errors import (
    AuthRequired,
    ConfigProblem,
    ExportError,
    Offline,
    RateLimited,
    ReadOnlyCellError,
    ServerError,
    SyncError,
)
from trayapp.core.export import atomic_output, write_jsonl
from trayapp.core.outcomes import RunReport
from trayapp.core.patterns import CellSpec, NoSettings, Pattern, UpdateContext
from trayapp.core.store import Collection
from trayapp.google.errors import GoogleRequestError, HistoryExpired, SyncTokenExpired

__all__ = [
    "AnyHttpUrl",
    "AuthRequired",
    "BaseModel",
    "Cell",
    "CellSpec",
    "Collection",
    "ConfigProblem",
    "DerivedCell",
    "ExportError",
    "Field",
    "GoogleRequestError",
    "HistoryExpired",
    "HttpUrl",
    "NoSettings",
    "Offline",
    "Pattern",
    "RateLimited",
    "ReadOnlyCellError",
    "RunReport",
    "ServerError",
    "SyncError",
    "SyncTokenExpired",
    "UpdateContext",
    "atomic_output",
    "field_validator",
    "write_jsonl",
]
