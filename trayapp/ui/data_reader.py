"""What the "Your data" window reads: the charms' imported items, through a read-only connection.

Qt-free, so it is tested without a display. Every query runs on one worker thread that owns its
own read-only SQLite connection (``mode=ro``): the event loop (and so the sync) never waits for
the window, and the window can never write to the profile. SQLite's WAL mode lets this reader
and the engine's writer work at the same time; a read sees the last committed state.

Rows are small plain values for the window's tables; the full stored item is fetched on demand
(open a message as .eml).
"""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol, TypeVar

from trayapp.core.patterns import Pattern, PatternRegistry
from trayapp.core.store import Collection, Store

T = TypeVar("T")

MAIL_PATTERNS = ("gmail-importer",)
CALENDAR_PATTERNS = ("gcalendar-importer",)
FEED_PATTERNS = ("feed-importer",)
MAX_ROWS = 2000  # a window lists the newest rows; search reaches further back (SCAN_LIMIT)
SCAN_LIMIT = 20000


class CharmRef(Protocol):
    """The fields of a charm the reader needs (``trayapp.core.charms.CharmInfo`` has them)."""

    @property
    def id(self) -> str: ...
    @property
    def pattern_id(self) -> str: ...
    @property
    def settings(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class MailRow:
    key: str
    sender: str
    subject: str
    date: datetime | None
    labels: tuple[str, ...]
    snippet: str


@dataclass(frozen=True, slots=True)
class EventRow:
    start: datetime
    end: datetime
    all_day: bool
    summary: str
    calendar: str
    location: str
    link: str
    recurring: bool


@dataclass(frozen=True, slots=True)
class FeedRow:
    key: str
    title: str
    link: str
    published: datetime | None
    author: str


class _Source:
    """A read-only stand-in for the update context: what ``export`` and ``upcoming`` read."""

    def __init__(self, store: Store, charm_id: str, settings: Any) -> None:
        self._store = store
        self._charm_id = charm_id
        self.settings = settings

    def collection(self, name: str) -> Collection:
        return self._store.collection(f"charm:{self._charm_id}:{name}")

    def cell(self, slot: str) -> Any:
        raise KeyError(f"the data window reads no cells (asked for {slot!r})")

    def now(self) -> datetime:
        return datetime.now(UTC)


class DataReader:
    """Reads one profile's database from a worker thread; ``close()`` when the window closes."""

    def __init__(self, db_path: Path, patterns: PatternRegistry) -> None:
        self._path = Path(db_path)
        self._patterns = patterns
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trayapp-data")
        self._store: Store | None = None  # created and used on the worker thread only

    # -- plumbing --------------------------------------------------------------------------

    def _open(self) -> Store:
        if self._store is None:
            uri = self._path.resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5.0)
            conn.execute("PRAGMA query_only=ON")
            self._store = Store(self._path, conn)  # reads only; made on this (worker) thread
        return self._store

    async def _run(self, fn: Callable[[Store], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(self._open()))

    def _source(self, store: Store, charm: CharmRef) -> tuple[Pattern[Any], _Source]:
        pattern = self._patterns.get(charm.pattern_id)
        settings = pattern.validate_settings(dict(charm.settings))
        return pattern, _Source(store, charm.id, settings)

    def close(self) -> None:
        def shut() -> None:
            if self._store is not None:
                self._store.close()
                self._store = None

        self._pool.submit(shut)
        self._pool.shutdown(wait=True)

    # -- queries ---------------------------------------------------------------------------

    async def count(self, charm: CharmRef, collection: str) -> int:
        return await self._run(lambda s: len(s.collection(f"charm:{charm.id}:{collection}")))

    async def mail(self, charm: CharmRef, search: str = "") -> list[MailRow]:
        """The newest messages, or those whose sender, subject, snippet or labels match."""
        words = search.lower().split()

        def read(store: Store) -> list[MailRow]:
            coll = store.collection(f"charm:{charm.id}:messages")
            out: list[MailRow] = []
            scanned = 0
            for key, value in coll.iter_items(newest_first=True):
                scanned += 1
                if scanned > SCAN_LIMIT or len(out) >= MAX_ROWS:
                    break
                if not isinstance(value, dict):
                    continue
                row = _mail_row(key, value)
                if words:
                    text = " ".join(
                        (_text(value.get("from")), row.subject, row.snippet, " ".join(row.labels))
                    ).lower()
                    if not all(w in text for w in words):
                        continue
                out.append(row)
            out.sort(key=lambda r: r.date or datetime.min.replace(tzinfo=UTC), reverse=True)
            return out

        return await self._run(read)

    async def eml(self, charm: CharmRef, key: str) -> bytes | None:
        """One message as an .eml file's bytes: the raw message when stored, else rebuilt from
        the stored headers and text (what this charm keeps)."""

        def read(store: Store) -> bytes | None:
            value = store.collection(f"charm:{charm.id}:messages").get(key)
            return _eml_bytes(value) if isinstance(value, dict) else None

        return await self._run(read)

    async def events(
        self, charm: CharmRef, start: datetime | None = None, end: datetime | None = None
    ) -> list[EventRow]:
        """Upcoming occurrences (recurring series expanded), as the Calendar pattern sees them."""

        def read(store: Store) -> list[EventRow]:
            pattern, source = self._source(store, charm)
            upcoming = getattr(pattern, "upcoming", None)
            if not callable(upcoming):
                return []
            rows: list[EventRow] = []
            for occ in upcoming(source, start, end)[:MAX_ROWS]:
                rows.append(
                    EventRow(
                        start=occ.start,
                        end=occ.end,
                        all_day=occ.all_day,
                        summary=occ.summary or "(no title)",
                        calendar=occ.calendar_name or occ.calendar_id,
                        location=occ.location,
                        link=occ.html_link,
                        recurring=occ.series_id is not None,
                    )
                )
            return rows

        return await self._run(read)

    async def feed_items(self, charm: CharmRef, search: str = "") -> list[FeedRow]:
        words = search.lower().split()

        def read(store: Store) -> list[FeedRow]:
            coll = store.collection(f"charm:{charm.id}:items")
            out: list[FeedRow] = []
            for key, value in coll.iter_items(newest_first=True):
                if len(out) >= MAX_ROWS:
                    break
                if not isinstance(value, dict):
                    continue
                row = FeedRow(
                    key=key,
                    title=_text(value.get("title")) or "(untitled)",
                    link=_text(value.get("link")),
                    published=_iso(value.get("published") or value.get("updated")),
                    author=_text(value.get("author")),
                )
                if words and not all(w in f"{row.title} {row.author}".lower() for w in words):
                    continue
                out.append(row)
            return out

        return await self._run(read)

    async def export(self, charm: CharmRef, fmt: str, dest: Path) -> int:
        """The pattern's own export (as ``trayapp export``), reading through this connection."""

        def write(store: Store) -> int:
            pattern, source = self._source(store, charm)
            return pattern.export(source, fmt, dest)  # type: ignore[arg-type]

        return await self._run(write)

    def export_formats(self, charm: CharmRef) -> Sequence[str]:
        return self._patterns.get(charm.pattern_id).export_formats


def kind_of(pattern_id: str) -> str:
    """ "mail" | "events" | "feed" | "" (a pattern the window does not know how to show)."""
    if pattern_id in MAIL_PATTERNS:
        return "mail"
    if pattern_id in CALENDAR_PATTERNS:
        return "events"
    if pattern_id in FEED_PATTERNS:
        return "feed"
    return ""


# ---- helpers ---------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _mail_row(key: str, value: Mapping[str, Any]) -> MailRow:
    internal = value.get("internalDate")
    date = (
        datetime.fromtimestamp(internal / 1000, UTC)
        if isinstance(internal, int) and internal > 0
        else None
    )
    if date is None and isinstance(value.get("date"), str):
        try:
            date = email.utils.parsedate_to_datetime(value["date"])
        except (TypeError, ValueError):
            date = None
    sender = _text(value.get("from"))
    name, addr = email.utils.parseaddr(sender)
    labels = tuple(str(x) for x in value.get("labelIds") or ())
    return MailRow(
        key=key,
        sender=name or addr or sender,
        subject=_text(value.get("subject")) or "(no subject)",
        date=date,
        labels=labels,
        snippet=_text(value.get("snippet")),
    )


def _eml_bytes(value: Mapping[str, Any]) -> bytes:
    raw = value.get("raw")
    if isinstance(raw, str):
        from trayapp.patterns.gmail_message import decode_b64url

        return decode_b64url(raw)
    msg = EmailMessage(policy=email.policy.default)
    for header, field in (
        ("From", "from"),
        ("To", "to"),
        ("Cc", "cc"),
        ("Subject", "subject"),
        ("Date", "date"),
        ("Message-ID", "messageId"),
    ):
        text = value.get(field)
        if isinstance(text, str) and text:
            try:
                msg[header] = text
            except (ValueError, TypeError):
                msg[header] = text.encode("ascii", "replace").decode()
    body = value.get("text") if isinstance(value.get("text"), str) else None
    html = value.get("html") if isinstance(value.get("html"), str) else None
    if body is None and html is None:
        body = _text(value.get("snippet"))
    msg.set_content(body or "")
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes()
