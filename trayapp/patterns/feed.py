"""Feed importer: an RSS or Atom feed into the charm's ``items`` collection.

Fetching is ours (through ``ctx.http``, the engine's shared httpx client) and parsing is
feedparser's: feedparser's own fetching would bypass the shared client's timeouts, User-Agent,
transport injection in tests and our error mapping. Each run:

1. sends a conditional GET (``If-None-Match`` / ``If-Modified-Since`` from the last 200), so an
   unchanged feed costs one request and writes nothing;
2. upserts every entry keyed by its guid/id (else its link, else a hash of title + date), so a
   re-run counts only what really changed;
3. commits the items, the retention trim and the new validators in one transaction.

Like every built-in pattern it imports only :mod:`trayapp.api` and third-party libraries.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from trayapp.api import (
    BaseModel,
    CellSpec,
    ConfigProblem,
    Field,
    HttpUrl,
    Offline,
    Pattern,
    RateLimited,
    RunReport,
    ServerError,
    UpdateContext,
    parse_retry_after,
    write_jsonl,
)


# Bozo flags that say nothing about the feed: the HTTP charset or content type disagreed with
# the document (``text/xml`` without a charset means us-ascii by RFC 3023, yet servers send it
# for UTF-8 feeds all the time) and feedparser used the document's own declaration.
# feedparser is imported when a feed is parsed, not with the pattern (issue 17: the tray
# imports every pattern at start; a stack loads only when a charm of its kind runs).
def _harmless_bozo() -> tuple[type[Exception], ...]:
    import feedparser

    return (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)


# A feed is text: anything this large is not one, and we should not hold it all in memory.
MAX_FEED_BYTES = 20 * 1024 * 1024
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.1"
)


class FeedSettings(BaseModel):
    url: HttpUrl = Field(description="Address of the RSS or Atom feed (http or https)")
    max_items: int | None = Field(
        default=None, ge=1, description="Keep only the newest N items (unset: keep everything)"
    )


class FeedState(BaseModel):
    """What the importer remembers between runs (the charm's ``state`` cell)."""

    url: str | None = None  # the URL the validators below belong to
    etag: str | None = None
    last_modified: str | None = None
    title: str | None = None
    link: str | None = None


class FeedImporter(Pattern[FeedSettings]):
    id = "feed-importer"
    title = "Feed Importer"
    description = "Imports the items of an RSS or Atom feed, fetching only when it changed."
    Settings = FeedSettings
    default_interval = timedelta(minutes=30)
    timeout = timedelta(minutes=2)
    cells = (CellSpec("state", writes=True, default=FeedState(), type=FeedState),)
    collections = ("items",)
    export_formats = ("jsonl",)

    def export(self, source: UpdateContext[FeedSettings], fmt: str, dest: Path) -> int:
        """``jsonl``: one item per line, newest first, as stored."""
        return write_jsonl(
            (value for _key, value in source.collection("items").items(newest_first=True)), dest
        )

    def needs_reset(self, old: FeedSettings, new: FeedSettings) -> bool:
        # Another feed's items do not belong with the old ones, nor do its validators.
        return str(old.url) != str(new.url)

    async def bg_updater(self, ctx: UpdateContext[FeedSettings]) -> RunReport:
        url = str(ctx.settings.url)
        host = ctx.settings.url.host or url
        state_cell = ctx.cell("state")
        state: FeedState = state_cell.get()
        headers = {"Accept": ACCEPT}
        if state.url == url:
            if state.etag:
                headers["If-None-Match"] = state.etag
            if state.last_modified:
                headers["If-Modified-Since"] = state.last_modified

        status, resp_headers, body, final_url = await _fetch(ctx, url, host, headers)
        if status == 304:
            ctx.log.debug("feed not modified")
            return RunReport(message="not modified")
        _raise_for_status(status, resp_headers, host, ctx.now())

        # Parsing is CPU work (a large feed takes a while): off the event loop, so other
        # charms keep running and the loop-lag watchdog has nothing to report.
        import feedparser

        parsed = await asyncio.to_thread(
            feedparser.parse,
            # A stream, never bytes or str: feedparser treats a str as a URL to fetch or a
            # file name to open, which would bypass ctx.http.
            io.BytesIO(body),
            response_headers={
                "content-type": resp_headers.get("content-type", "application/xml"),
                "content-location": final_url,
            },
        )
        if not parsed.get("version"):
            if _is_web_page(resp_headers, body):
                # A web page where the feed should be: the URL is the page, not its feed. Only
                # the user can fix that; a damaged XML body may be a passing server fault.
                raise ConfigProblem(_not_a_feed_message(parsed, resp_headers, host))
            raise ServerError(_not_a_feed_message(parsed, resp_headers, host))
        message = ""
        problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
        if problem is not None and not isinstance(problem, _harmless_bozo()):
            # feedparser's loose parser recovered a readable feed from imperfect XML (common in
            # the wild: undeclared entities, bad encodings). Import it, but say so.
            message = f"feed from {host} is not well-formed; imported what could be read"
            ctx.log.warning("%s (%s)", message, problem)

        items = ctx.collection("items")
        now = ctx.now()
        added = updated = removed = 0
        seen: set[str] = set()
        with ctx.transaction():
            for index, entry in enumerate(parsed.entries):
                key = entry_key(entry)
                if key in seen:  # the same item twice in one document: the first one wins
                    continue
                seen.add(key)
                existing = items.get(key)
                value = _item_value(entry, key, existing, now, index)
                result = items.upsert(key, value, sort_key=_sort_key(value))
                if result == "added":
                    added += 1
                elif result == "updated":
                    updated += 1
            if ctx.settings.max_items is not None:
                removed = items.trim(keep=ctx.settings.max_items)
            feed = parsed.get("feed", {})
            state_cell.set(
                FeedState(
                    url=url,
                    etag=resp_headers.get("etag"),
                    last_modified=resp_headers.get("last-modified"),
                    title=feed.get("title"),
                    link=feed.get("link"),
                )
            )
        return RunReport(added=added, updated=updated, removed=removed, message=message)


async def _fetch(
    ctx: UpdateContext[FeedSettings], url: str, host: str, headers: dict[str, str]
) -> tuple[int, httpx.Headers, bytes, str]:
    """GET the feed, mapping transport failures to outcomes; the body is capped in size."""
    try:
        async with ctx.http.stream("GET", url, headers=headers, follow_redirects=True) as resp:
            if resp.status_code != 200:
                return resp.status_code, resp.headers, b"", str(resp.url)
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_FEED_BYTES:
                raise ConfigProblem(_too_large(host))
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > MAX_FEED_BYTES:
                    raise ConfigProblem(_too_large(host))
                chunks.append(chunk)
            return resp.status_code, resp.headers, b"".join(chunks), str(resp.url)
    except httpx.TimeoutException as exc:
        raise Offline(f"timed out fetching the feed from {host}") from exc
    except httpx.NetworkError as exc:
        # The URL is never put in messages: private feeds often carry a key in it.
        raise Offline(f"cannot reach {host} ({_reason(exc)})") from exc
    except httpx.TooManyRedirects as exc:
        raise ServerError(f"the feed at {host} redirects in a loop") from exc
    except httpx.HTTPError as exc:
        raise ServerError(f"fetching the feed from {host} failed ({_reason(exc)})") from exc


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _too_large(host: str) -> str:
    limit = MAX_FEED_BYTES // (1024 * 1024)
    return f"the response from {host} is larger than {limit} MB; it is not a feed"


def _raise_for_status(status: int, headers: httpx.Headers, host: str, now: datetime) -> None:
    if status == 200:
        return
    if status == 429:
        retry_after = parse_retry_after(headers.get("retry-after"), now)
        when = f"; it asked to wait until {retry_after:%H:%M:%S} UTC" if retry_after else ""
        raise RateLimited(
            f"{host} is rate limiting requests (HTTP 429){when}", retry_after=retry_after
        )
    if status >= 500 or status == 408:
        raise ServerError(f"{host} had a server error (HTTP {status}); will retry later")
    # The other 4xx say the request itself is wrong: the URL (or a feed behind a login). Retrying
    # soon cannot help, so these are configuration problems the user must fix (retried slowly).
    if status in (404, 410):
        gone = "no longer exists" if status == 410 else "was not found"
        raise ConfigProblem(
            f"the feed {gone} at {host} (HTTP {status}); check the charm's url setting"
        )
    if status in (401, 403):
        raise ConfigProblem(
            f"{host} refused access to the feed (HTTP {status}); feeds that need a login "
            "are not supported: check the charm's url setting"
        )
    if 400 <= status < 500:
        raise ConfigProblem(
            f"{host} answered HTTP {status} instead of the feed; check the charm's url setting"
        )
    raise ServerError(f"{host} answered HTTP {status} instead of the feed")


def _is_web_page(headers: httpx.Headers, body: bytes) -> bool:
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("text/html", "application/xhtml+xml"):
        return True
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _not_a_feed_message(parsed: Any, headers: httpx.Headers, host: str) -> str:
    ctype = headers.get("content-type", "").split(";")[0].strip() or "no content type"
    problem = parsed.get("bozo_exception")
    detail = f": {problem}" if problem else ""
    return (
        f"the response from {host} is not an RSS or Atom feed ({ctype}{detail}); "
        "check the charm's url setting"
    )


def entry_key(entry: Any) -> str:
    """A stable key: the guid/id, else the link, else a hash of title and date."""
    for field in ("id", "link"):
        value = entry.get(field)
        if isinstance(value, str) and value.strip():
            return value.strip()
    basis = "\x1f".join(str(_raw(entry, f) or "") for f in ("title", "published", "updated"))
    if not basis.strip("\x1f"):
        basis = str(entry.get("summary") or "")
    return "sha256:" + hashlib.sha256(basis.encode()).hexdigest()


def _raw(entry: Any, key: str) -> Any:
    """``entry[key]`` without feedparser's deprecated updated<->published fallback mapping."""
    return dict.get(entry, key) if isinstance(entry, dict) else None


def _when(entry: Any, field: str) -> datetime | None:
    parsed = _raw(entry, f"{field}_parsed")
    if not isinstance(parsed, time.struct_time):
        return None
    # feedparser normalises dates to UTC struct_time.
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC)


def _item_value(entry: Any, key: str, existing: Any, now: datetime, index: int) -> dict[str, Any]:
    published = _when(entry, "published")
    updated = _when(entry, "updated")
    if isinstance(existing, dict) and isinstance(existing.get("first_seen"), str):
        first_seen = existing["first_seen"]
    else:
        # Feeds list newest first; undated entries keep that order by being "seen" a
        # microsecond apart, earlier in the document meaning newer.
        first_seen = (now - timedelta(microseconds=index)).isoformat()
    content = entry.get("content") or []
    return {
        "key": key,
        "guid": entry.get("id"),
        "title": entry.get("title"),
        "link": entry.get("link"),
        "author": entry.get("author"),
        "published": published.isoformat() if published else None,
        "updated": updated.isoformat() if updated else None,
        "summary": entry.get("summary"),
        "content": content[0].get("value") if content else None,
        "tags": [t.get("term") for t in entry.get("tags") or [] if t.get("term")],
        "first_seen": first_seen,
    }


def _sort_key(value: dict[str, Any]) -> float:
    """Epoch seconds of the item's date (published, else updated, else first seen)."""
    stamp = value["published"] or value["updated"] or value["first_seen"]
    return datetime.fromisoformat(stamp).timestamp()
