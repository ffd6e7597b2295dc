"""An example Pattern Sync plugin: a JSON notifications importer (see docs/plugins.md).

It fetches a JSON list of objects (``[{"id": "1", "title": "...", "created": "..."}]``) from a
URL, keeps them in the ``items`` collection by ``id``, and asks the server "has it changed?"
with a conditional GET (``If-None-Match``), so a no-change sync transfers no body.

:class:`PrivateNotifications` is the same for a list behind an API token: it declares the
credential it needs (``ApiToken``), so its charms belong to an account of that service
(``trayapp accounts add --service example-notes``); the token lives in the keyring and a 401
makes the account "need sign-in" until a new token is entered.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from trayapp.api import (
    ApiToken,
    BaseModel,
    CellSpec,
    Field,
    HttpUrl,
    Offline,
    Pattern,
    RunReport,
    ServerError,
    UpdateContext,
    field_validator,
    poll_interval_hint,
    raise_for_status,
)

__version__ = "1.0.0"


class NotificationsSettings(BaseModel):
    url: HttpUrl = Field(description="The address of the JSON list of notifications")
    max_items: int = Field(
        500, ge=1, le=10_000, description="Keep at most this many notifications per sync"
    )

    @field_validator("url")
    @classmethod
    def no_credentials_in_url(cls, value: HttpUrl) -> HttpUrl:
        if value.username or value.password:
            raise ValueError("must not contain a user name or password")
        return value


class Notifications(Pattern[NotificationsSettings]):
    id = "example-notifications"
    title = "Notifications (example)"
    description = "Imports a JSON list of notifications from a web address."
    Settings = NotificationsSettings
    default_interval = timedelta(minutes=15)
    timeout = timedelta(minutes=2)
    requires_api = 1  # the trayapp.api version whose names this uses (API_VERSION)
    cells = (CellSpec("state", writes=True, default={}, description="ETag of the last answer"),)
    collections = ("items",)

    def needs_reset(self, old: NotificationsSettings, new: NotificationsSettings) -> bool:
        return old.url != new.url  # another list: forget the old one

    async def bg_updater(self, ctx: UpdateContext[NotificationsSettings]) -> RunReport:
        return await sync_list(ctx, {})


class PrivateNotifications(Notifications):
    """The same importer for a list that needs an API token (``Authorization: Bearer ...``)."""

    id = "example-private-notifications"
    title = "Private notifications (example)"
    description = "Imports a JSON list of notifications that needs an API token."
    requires_api = 2  # ApiToken and ctx.credential came with API 2
    credential = ApiToken(
        service="example-notes",
        title="Example Notes",
        help_url="https://example.org/settings/tokens",
    )

    async def bg_updater(self, ctx: UpdateContext[NotificationsSettings]) -> RunReport:
        assert ctx.credential is not None  # always set for a pattern with a credential
        # A 401 for a refused token becomes AuthRequired in sync_list (raise_for_status): the
        # account then shows "needs sign-in" and its charms wait for a new token.
        return await sync_list(ctx, await ctx.credential.auth_headers())


async def sync_list(ctx: UpdateContext[NotificationsSettings], auth: dict[str, str]) -> RunReport:
    url = str(ctx.settings.url)
    state: dict[str, Any] = ctx.cell("state").get() or {}
    headers = {"If-None-Match": state["etag"]} if state.get("etag") else {}
    try:
        resp = await ctx.http.get(url, headers={**headers, **auth})
    except httpx.TransportError as exc:
        raise Offline(f"cannot reach {ctx.settings.url.host}") from exc
    raise_for_status(resp, ctx.now(), what=ctx.settings.url.host)
    if resp.status_code == 304:
        ctx.log.info("not modified")
        return RunReport(message="not modified", next_poll=poll_interval_hint(resp))
    try:
        entries = resp.json()
    except ValueError:
        raise ServerError(f"{ctx.settings.url.host} did not answer JSON") from None
    if not isinstance(entries, list):
        raise ServerError(f"{ctx.settings.url.host} answered JSON that is not a list")
    items = ctx.collection("items")
    added = updated = 0
    with ctx.transaction():  # the items and the ETag that covers them, or neither
        for entry in entries[: ctx.settings.max_items]:
            if not isinstance(entry, dict) or "id" not in entry:
                continue
            created = entry.get("created")
            result = items.upsert(
                str(entry["id"]), entry, sort_key=created if isinstance(created, str) else None
            )
            added += result == "added"
            updated += result == "updated"
        ctx.cell("state").set({"etag": resp.headers.get("etag")})
    ctx.progress(len(entries), len(entries), "notifications")
    ctx.log.info("%d new, %d changed notifications", added, updated)
    return RunReport(added=added, updated=updated, next_poll=poll_interval_hint(resp))
