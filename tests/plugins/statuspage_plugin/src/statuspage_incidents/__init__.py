"""A status-page incidents importer, written from docs/plugins.md alone (issue 16's check).

A secret setting (the API key), a validated setting (the minimum severity), a conditional GET
with the ETag in a cell, items in a collection, progress, ctx.log lines and a jsonl export.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from trayapp.api import (
    BaseModel,
    CellSpec,
    ExportError,
    Field,
    HttpUrl,
    Offline,
    Pattern,
    RunReport,
    SecretStr,
    ServerError,
    UpdateContext,
    field_validator,
    poll_interval_hint,
    raise_for_status,
    write_jsonl,
)

SEVERITIES = ("minor", "major", "critical")


class IncidentsSettings(BaseModel):
    url: HttpUrl = Field(description="The address of the status page's incidents JSON")
    api_key: SecretStr = Field(description="API key of the status page")
    min_severity: str = Field("minor", description="Import incidents of at least this severity")
    max_items: int = Field(200, ge=1, le=5000, description="Keep at most this many incidents")

    @field_validator("min_severity")
    @classmethod
    def _known_severity(cls, value: str) -> str:
        if value not in SEVERITIES:
            raise ValueError("must be one of minor, major, critical")
        return value

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, value: HttpUrl) -> HttpUrl:
        if value.username or value.password:
            raise ValueError("must not contain a user name or password")
        return value


class Incidents(Pattern[IncidentsSettings]):
    id = "outsider-incidents"
    title = "Status page incidents"
    description = "Imports the incidents of a status page's JSON API."
    Settings = IncidentsSettings
    default_interval = timedelta(minutes=10)
    timeout = timedelta(minutes=2)
    requires_api = 1
    cells = (CellSpec("state", writes=True, default={}),)
    collections = ("incidents",)

    export_formats = ("jsonl",)

    def needs_reset(self, old: IncidentsSettings, new: IncidentsSettings) -> bool:
        # The ETag covers the whole answer: a new filter must fetch it again, not get a 304.
        return (str(old.url), old.min_severity, old.max_items) != (
            str(new.url),
            new.min_severity,
            new.max_items,
        )

    def export(self, source: UpdateContext[IncidentsSettings], fmt: str, dest: Path) -> int:
        if fmt != "jsonl":
            raise ExportError(f"cannot export {fmt!r}; use jsonl")
        return write_jsonl((value for _key, value in source.collection("incidents").items()), dest)

    async def bg_updater(self, ctx: UpdateContext[IncidentsSettings]) -> RunReport:
        settings = ctx.settings
        host = settings.url.host or "the status page"
        state = ctx.cell("state").get() or {}
        headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
        if state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        ctx.log.info("asking %s for incidents (conditional: %s)", host, "etag" in state)
        try:
            resp = await ctx.http.get(str(settings.url), headers=headers)
        except httpx.TimeoutException as exc:
            raise Offline(f"{host} did not answer in time") from exc
        except httpx.TransportError as exc:
            raise Offline(f"cannot reach {host}") from exc
        raise_for_status(resp, ctx.now(), what=host)
        if resp.status_code == 304:
            ctx.log.info("not modified")
            return RunReport(message="not modified", next_poll=poll_interval_hint(resp))
        try:
            body: Any = resp.json()
            incidents = body["incidents"]
            if not isinstance(incidents, list):
                raise TypeError("incidents is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            raise ServerError(f"{host} answered something that is not an incidents list") from exc
        wanted = SEVERITIES[SEVERITIES.index(settings.min_severity) :]
        kept = [i for i in incidents if isinstance(i, dict) and i.get("severity") in wanted]
        kept = kept[: settings.max_items]
        coll = ctx.collection("incidents")
        added = updated = removed = 0
        seen: set[str] = set()
        with ctx.transaction():
            for n, inc in enumerate(kept, start=1):
                key = str(inc["id"])
                seen.add(key)
                result = coll.upsert(key, inc, sort_key=str(inc.get("started_at", "")))
                added += result == "added"
                updated += result == "updated"
                if n % 50 == 0:
                    ctx.progress(n, total=len(kept), unit="incidents")
            for key in list(coll.keys()):
                if key not in seen:
                    coll.delete(key)
                    removed += 1
            ctx.cell("state").set({"etag": resp.headers.get("ETag")})
        ctx.progress(len(kept), total=len(kept), unit="incidents")
        ctx.log.info("stored %d incidents (%d new)", len(kept), added)
        return RunReport(
            added=added,
            updated=updated,
            removed=removed,
            message=f"{len(kept)} incidents",
            next_poll=poll_interval_hint(resp),
        )
