"""Gmail importer: the messages matching a search query, kept in sync without losing any.

How a run decides what to do (the ``state`` cell holds everything between runs):

* **No cursor yet, or a full sync in progress** -> full sync. The profile's ``historyId`` is
  read *first* (so any change made while we list and fetch shows up in the history after it),
  then ``messages.list`` for the query is followed page by page and the ids are fetched in
  batches of 50, a few batches in flight so the account's shared quota budget, not latency, sets
  the pace. Every stored batch commits together with the progress (the next page token and the
  ids listed but not stored yet), so a killed full sync resumes where it stopped. Only when the
  last id is stored does the start ``historyId`` become the cursor, right after a *re*sync
  removed what it no longer found (in short steps, the event loop free between them; a killed
  run prunes the rest at its next run, the cursor moves only after the prune); the same run
  then catches up through the history from that cursor with whatever changed while it listed
  and fetched.
* **A cursor** -> incremental sync. ``history.list`` from the cursor, following *every* page
  (the importer we replace stored the first page's historyId and lost the rest), collecting per
  message whether it was added, deleted or relabelled. Candidates are then checked against the
  query (below); matches are stored, messages that no longer match or no longer exist are
  removed, and the new ``historyId`` is written in the same transaction as the last of it. A
  run that fails anywhere before its writes start stores nothing, and the next run starts from
  the same cursor. Up to ``APPLY_STEP`` changed messages are written in one transaction with
  the cursor; more (thousands after a day offline or a bulk relabel) in steps of
  ``APPLY_STEP``, the event loop free between them, the cursor in the last: a run stopped
  between steps leaves the cursor where it was, and the next run replays the same history over
  the messages already written, which gives the same result (each message's new labels and
  match are worked out from the history and Gmail again; writing or deleting twice is a no-op).
* **History 404** (``startHistoryId`` too old) -> a resumable full resync, in the same run. If
  Gmail refuses the history again before any incremental sync has worked since (the resync's
  own catch-up is the first try), a resync cannot help (lieer's "full sync forever" loop): the
  run ends with a ``server_error`` that says so, and later runs only retry the one cheap
  history call until Gmail accepts it again, or the user resets the charm.

**Which added or relabelled messages match the query.** Gmail's search language (``from:``,
``has:attachment``, ``older_than:``, ``{a b}``, ``OR``...) cannot be evaluated faithfully on our
side, so Gmail evaluates it: the candidates are fetched first (they are needed anyway if they
match, and their ``internalDate`` comes with them), grouped into clusters of at most a day
of ``internalDate`` values, and for each cluster ``messages.list`` runs with the user's query
narrowed by ``after:``/``before:`` to the cluster's time span; the matches are the candidates
that come back. Cost per incremental sync with changes: one ``messages.get`` (5 units) per
candidate that is not stored yet (relabelled stored messages need no fetch: the history record
carries their labels) plus one ``messages.list`` page (5 units) per cluster, where a page holds
up to 500 ids of the query within the cluster's span (new mail: one cluster). The alternatives cost
more: listing the whole query every run is O(mailbox) and ``rfc822msgid:`` needs one list call
per candidate. Necessary label conditions are checked locally first (the ``labels`` setting,
``in:inbox``-style terms of a purely ANDed query, SPAM/TRASH exclusion), so candidates that
cannot match, such as sent mail under the default ``in:inbox``, cost no request at all.
Relative dates (``newer_than:7d``) are evaluated when a message arrives or changes; a stored
message that merely ages out of such a query stays until the next full sync (no history
record says it changed).

**Search can lag behind history.** A message can appear in ``history.list`` before Gmail's
search index returns it for the query. So a new message that Gmail's search did not return is
not forgotten: its id stays in ``GmailState.recheck`` and is checked again on every run for
``RECHECK_WINDOW`` after it was first seen (then it is taken as not matching). And a page of
``messages.list`` or ``history.list`` with an entry that names no message fails the whole run
as a server error, so the cursor never moves past mail that was not stored.

Like every built-in pattern it imports only :mod:`trayapp.api` and third-party libraries; the
account's typed Gmail client arrives as ``ctx.google.gmail()``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

from trayapp.api import (
    BaseModel,
    CellSpec,
    Collection,
    ExportError,
    Field,
    GmailClient,
    GoogleRequestError,
    HistoryExpired,
    MessagePage,
    MessagesResult,
    Pattern,
    RunReport,
    ServerError,
    SyncError,
    UpdateContext,
    atomic_output,
    field_validator,
    write_jsonl,
)
from trayapp.patterns.gmail_message import (
    HEADER_NAMES,
    Parts,
    api_format,
    decode_b64url,
    to_item,
    with_labels,
)

GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"

BATCH_SIZE = 50  # Google: "sending batches larger than 50 requests is not recommended"
PARALLEL_BATCHES = 3  # enough to keep the quota budget busy through 50-100 ms of latency
LIST_PAGE_SIZE = 500  # messages.list maximum: fewest list calls per id
# Candidates received within one day of the earliest of them share one messages.list check.
CLUSTER_SPAN_MS = 24 * 3600 * 1000
PARALLEL_CHECKS = 4
# A full sync stops taking new work after this long in one run and continues at the next run,
# so a large mailbox never meets the run's deadline (``GmailImporter.timeout``) mid-batch.
FULL_SYNC_STRETCH = timedelta(minutes=20)
# How long a new message that Gmail's search did not return for the query is checked again
# (search indexing can lag the history), and at most how many such messages are remembered.
RECHECK_WINDOW = timedelta(hours=1)
RECHECK_LIMIT = 2000
# A resync's prune walks the stored keys and deletes the stale ones this many at a time, the
# event loop free between steps.
PRUNE_STEP = 500
# An incremental sync with more changes than this stores them in steps of this many, the event
# loop free between steps: as many as a full sync's batch (100 raw messages, ~1.2 MB of JSON,
# took 60-190 ms of encoding, SQLite and COMMIT on a loaded machine).
APPLY_STEP = BATCH_SIZE


# ---- settings and state ---------------------------------------------------------------------


class GmailSettings(BaseModel):
    """What to import. Changing any of it resets the cursor and resyncs (``needs_reset``)."""

    query: str = Field(
        default="in:inbox",
        max_length=1000,
        description="Gmail search query, as typed in Gmail's search box (empty: all mail "
        "except spam and trash)",
    )
    max_messages: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Keep only the newest N matching messages (unset: no limit)",
    )
    since: date | None = Field(
        default=None,
        description="Import only messages received on or after this date (YYYY-MM-DD, UTC)",
    )
    parts: Parts = Field(
        default="text",
        description="What to keep of each message: 'headers' only, 'text' body, 'text+html' "
        "bodies, or 'raw' (everything, plus the original message for .eml export)",
    )
    labels: list[str] = Field(
        default_factory=list,
        description="Only messages carrying all of these labels (names or ids, e.g. "
        "'STARRED' or 'Work/Projects')",
    )

    @field_validator("query")
    @classmethod
    def _one_line_query(cls, value: str) -> str:
        value = value.strip()
        if any(ch in value for ch in "\r\n\t\x00"):
            raise ValueError("the query must be one line of text, as typed in Gmail's search box")
        return value

    @field_validator("since", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                raise ValueError("not a date; use YYYY-MM-DD, e.g. 2024-01-31") from None
        return value

    @field_validator("labels")
    @classmethod
    def _clean_labels(cls, value: list[str]) -> list[str]:
        cleaned = [label.strip() for label in value]
        if any(not label for label in cleaned):
            raise ValueError("a label name is empty; remove it or give the label's name")
        return list(dict.fromkeys(cleaned))


class FullSync(BaseModel):
    """A full sync in progress, committed with every stored batch so a killed one resumes."""

    start_history_id: str
    page_token: str | None = None
    listing_done: bool = False
    pending: list[str] = Field(default_factory=list)  # listed, not stored yet (in list order)
    listed: int = 0
    prune: bool = False  # a resync: remove what the listing no longer finds
    reason: Literal["initial", "expired", "settings"] = "initial"


class GmailState(BaseModel):
    """What the importer remembers between runs (the charm's ``state`` cell)."""

    history_id: str | None = None  # the cursor; set only once a full sync has completed
    fingerprint: str | None = None  # the settings the cursor and the messages belong to
    label_ids: list[str] = Field(
        default_factory=list
    )  # the label filter resolved to ids when the full sync began
    full_sync: FullSync | None = None
    # History 404s since the last incremental sync that worked: a second one means the resync
    # did not give Gmail a cursor it accepts, and resyncing again would only loop.
    expiries: int = 0
    last_full_sync: datetime | None = None
    # New messages that Gmail's search did not return for the query yet, with the time
    # (epoch seconds) they were first seen: checked again until RECHECK_WINDOW has passed.
    recheck: dict[str, float] = Field(default_factory=dict)


class HistoryLoop(ServerError):
    """Gmail refused the history again right after a full resync: resyncing would loop."""


class QueryRejected(ValueError):
    """Gmail answered 400 to the charm's search query: a setting to fix, not a server fault."""


class LabelNotFound(ValueError):
    """A label in the charm's ``labels`` setting does not exist in the mailbox."""


# ---- the pattern ----------------------------------------------------------------------------


class GmailImporter(Pattern[GmailSettings]):
    id = "gmail-importer"
    title = "Gmail Importer"
    description = (
        "Imports the Gmail messages that match a search query and keeps them in sync, "
        "incrementally, without losing a message when a run is interrupted."
    )
    Settings = GmailSettings
    scopes = (GMAIL_READONLY,)
    default_interval = timedelta(minutes=5)
    # A first full sync of a large mailbox runs at Gmail's quota (~47 messages/s); it resumes
    # where it stopped if the deadline cuts it, so the deadline only bounds one stretch of it.
    timeout = timedelta(minutes=30)
    cells = (CellSpec("state", writes=True, default=GmailState(), type=GmailState),)
    collections = ("messages", "sweep")
    export_formats: ClassVar[tuple[str, ...]] = ("jsonl", "eml")

    def needs_reset(self, old: GmailSettings, new: GmailSettings) -> bool:
        # Every setting shapes which messages are kept or what is kept of them.
        return fingerprint(old) != fingerprint(new)

    async def bg_updater(self, ctx: UpdateContext[GmailSettings]) -> RunReport:
        if ctx.google is None:
            raise ServerError(
                "the Gmail importer has no Google account to use; add it again with an account"
            )
        gmail: GmailClient = ctx.google.gmail()
        sync = _Sync(ctx, gmail)
        return await sync.run()

    # ---- export -------------------------------------------------------------------------

    def export(self, source: UpdateContext[GmailSettings], fmt: str, dest: Path) -> int:
        """Write the charm's messages to ``dest``; returns how many were written.

        ``jsonl``: ``dest`` is a file, one message per line, oldest first (the ``raw`` field is
        left out: ``eml`` is its export). ``eml``: ``dest`` is a directory that receives one
        ``<id>.eml`` per message; it needs the ``raw`` parts setting.
        """
        if fmt not in self.export_formats:
            raise ExportError(
                f"unknown export format {fmt!r}; the Gmail importer exports "
                + " or ".join(self.export_formats)
            )
        messages = source.collection("messages")
        dest = Path(dest)
        if fmt == "jsonl":
            return _export_jsonl(messages, dest)
        parts = source.settings.parts
        if parts != "raw":
            raise ExportError(
                f"this charm keeps {parts!r} parts, not the raw "
                "messages .eml files are made of; set its parts setting to 'raw' (the charm "
                "resyncs), then export again"
            )
        return _export_eml(messages, dest)


def fingerprint(settings: GmailSettings) -> str:
    """A short digest of the settings that decide what the cursor and the messages mean."""
    data = settings.model_dump(mode="json")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def effective_query(settings: GmailSettings) -> str:
    """The user's query plus the ``since`` bound, as sent to messages.list."""
    terms = []
    if settings.query:
        terms.append(_grouped(settings.query))
    if settings.since is not None:
        start = datetime(settings.since.year, settings.since.month, settings.since.day, tzinfo=UTC)
        # Epoch seconds, not a date: Gmail reads after:YYYY/MM/DD in Pacific time.
        terms.append(f"after:{int(start.timestamp())}")
    return " ".join(terms)


def _grouped(query: str) -> str:
    """The query with ``OR`` alternatives kept together when terms are ANDed to it.

    Gmail binds ``OR`` (and ``{}``) tighter than the implicit AND of juxtaposed terms, so a
    plain conjunction needs no parentheses; one with alternatives gets them to be safe.
    """
    tokens = query.split()
    alternatives = "OR" in tokens or "{" in query or "|" in tokens
    return f"({query})" if alternatives else query


# ---- one run ------------------------------------------------------------------------------


@dataclass
class _Change:
    """What the history says happened to one message since the cursor."""

    added: bool = False
    deleted: bool = False
    labels: list[str] | None = None  # its labels after the last change seen, when known
    added_labels: set[str] = field(default_factory=set)
    removed_labels: set[str] = field(default_factory=set)


class _Sync:
    def __init__(self, ctx: UpdateContext[GmailSettings], gmail: GmailClient) -> None:
        self.ctx = ctx
        self.gmail = gmail
        self.settings = ctx.settings
        self.cell = ctx.cell("state")
        self.messages = ctx.collection("messages")
        self.sweep = ctx.collection("sweep")
        self.parts: Parts = ctx.settings.parts
        self.format = api_format(self.parts)
        self.headers = HEADER_NAMES if self.format == "metadata" else ()
        self.query = effective_query(ctx.settings)
        self.fingerprint = fingerprint(ctx.settings)
        self.added = self.updated = 0  # by this run
        self.batches_stored = 0

    @property
    def state(self) -> GmailState:
        value = self.cell.get()
        return value if isinstance(value, GmailState) else GmailState.model_validate(value)

    def save(self, state: GmailState) -> None:
        self.cell.set(state)

    async def run(self) -> RunReport:
        state = self.state
        if state.fingerprint != self.fingerprint and (state.history_id or state.full_sync):
            # Settings changed under a cursor (the engine normally resets the charm first):
            # the cursor and the stored messages describe other settings.
            self.ctx.log.info("settings changed since the last sync; starting a full resync")
            state = await self.begin_full_sync(state, "settings")
        if state.full_sync is None and state.history_id is None:
            state = await self.begin_full_sync(state, "initial")
        if state.full_sync is not None:
            return await self.full_sync(state)
        return await self.incremental(state)

    # ---- full sync ----------------------------------------------------------------------

    async def begin_full_sync(
        self, state: GmailState, reason: Literal["initial", "expired", "settings"]
    ) -> GmailState:
        profile = await self.gmail.get_profile()
        start = str(profile.get("historyId") or "")
        if not start.isdigit():
            raise ServerError("Gmail's profile has no historyId; the sync will be retried")
        label_ids = await self.resolve_labels() if self.settings.labels else []
        new = state.model_copy(
            update={
                "fingerprint": self.fingerprint,
                "label_ids": label_ids,
                "full_sync": FullSync(
                    start_history_id=start,
                    prune=len(self.messages) > 0,
                    reason=reason,
                ),
            }
        )
        with self.ctx.transaction():
            self.sweep.clear()
            self.save(new)
        self.ctx.log.info("full sync started (%s) at historyId %s", reason, start)
        return new

    async def resolve_labels(self) -> list[str]:
        labels = await self.gmail.list_labels()
        by_id = {str(lbl.get("id")): str(lbl.get("id")) for lbl in labels}
        by_name = {str(lbl.get("name", "")).lower(): str(lbl.get("id")) for lbl in labels}
        resolved: list[str] = []
        for wanted in self.settings.labels:
            label_id = by_id.get(wanted) or by_id.get(wanted.upper()) or by_name.get(wanted.lower())
            if label_id is None:
                raise LabelNotFound(
                    f"the mailbox has no label {wanted!r}; fix the charm's labels setting "
                    "(label names as shown in Gmail, or ids such as STARRED)"
                )
            resolved.append(label_id)
        return resolved

    async def full_sync(self, state: GmailState) -> RunReport:
        progress = state.full_sync
        assert progress is not None
        queue: deque[str] = deque(progress.pending)  # stored by no run yet: fetch first
        in_flight: dict[asyncio.Future[Any], list[str]] = {}
        lister: asyncio.Future[Any] | None = None
        stop_at = time.monotonic() + FULL_SYNC_STRETCH.total_seconds()
        try:
            while True:
                more = self.batches_stored == 0 or time.monotonic() < stop_at
                while (
                    more
                    and len(in_flight) < PARALLEL_BATCHES
                    and queue
                    and (len(queue) >= BATCH_SIZE or self.state_progress().listing_done)
                ):
                    chunk = [queue.popleft() for _ in range(min(BATCH_SIZE, len(queue)))]
                    in_flight[asyncio.ensure_future(self.fetch(chunk))] = chunk
                current = self.state_progress()
                if (
                    more
                    and lister is None
                    and not current.listing_done
                    and len(queue) < BATCH_SIZE * PARALLEL_BATCHES
                ):
                    lister = asyncio.ensure_future(
                        self.list_ids(self.query, self.page_size(current), current.page_token)
                    )
                waiting: set[asyncio.Future[Any]] = set(in_flight)
                if lister is not None:
                    waiting.add(lister)
                if not waiting:
                    break
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                errors: list[BaseException] = []
                # Store everything that arrived before raising anything, so no fetched batch
                # is thrown away because another one failed.
                for finished in done:
                    fetched_ids = in_flight.pop(finished, None)
                    if fetched_ids is None:
                        lister = None
                    problem = finished.exception()
                    if problem is not None:
                        errors.append(problem)
                    elif fetched_ids is None:
                        queue.extend(self.store_page(finished.result()))
                    else:
                        errors.extend(self.store_fetched(fetched_ids, finished.result()))
                shown = self.state_progress()  # for the tray and status --json
                total = shown.listed if shown.listing_done else None
                self.ctx.progress(shown.listed - len(shown.pending), total, "messages")
                if errors:
                    raise errors[0]
        finally:
            leftovers = [*in_flight, *([lister] if lister is not None else [])]
            for leftover in leftovers:
                leftover.cancel()
            if leftovers:
                await asyncio.gather(*leftovers, return_exceptions=True)
        progress = self.state_progress()
        if progress.pending or not progress.listing_done:
            return RunReport(
                added=self.added,
                updated=self.updated,
                message=f"full sync in progress: {len(self.messages)} messages so far; "
                "it continues at the next run",
            )
        summary = await self.finish_full_sync()
        # Catch up at once with what changed while we listed and fetched (it is all in the
        # history after the start historyId), so the run ends with the store matching the
        # mailbox, not the mailbox as it was when the sync began. This is also the first use
        # of the new cursor: if Gmail refuses it, the loop breaker fires now.
        caught_up = await self.incremental(self.state)
        return RunReport(
            added=summary.added + caught_up.added,
            updated=summary.updated + caught_up.updated,
            removed=summary.removed + caught_up.removed,
            message=summary.message,
        )

    async def list_ids(self, query: str, size: int, token: str | None) -> MessagePage:
        """One messages.list page; a query Gmail refuses is reported as the setting to fix."""
        try:
            return await self.gmail.list_message_ids(
                query or None, self.state.label_ids, size, token
            )
        except GoogleRequestError as exc:
            if exc.status != 400:
                raise
            reason = exc.api_error.message or exc.message
            raise QueryRejected(
                f"Gmail refused the search query {self.settings.query!r} ({reason}); "
                "fix the charm's query setting (it takes Gmail search box syntax)"
            ) from exc

    def state_progress(self) -> FullSync:
        progress = self.state.full_sync
        assert progress is not None
        return progress

    def page_size(self, progress: FullSync) -> int:
        if self.settings.max_messages is None:
            return LIST_PAGE_SIZE
        return max(1, min(LIST_PAGE_SIZE, self.settings.max_messages - progress.listed))

    def store_page(self, page: MessagePage) -> list[str]:
        """Commit a listed page as pending work; returns the ids to fetch."""
        state = self.state
        progress = state.full_sync
        assert progress is not None
        pending = set(progress.pending)
        ids: list[str] = []
        for ref in page.messages:
            mid = _ref_id(ref, "messages.list")
            if mid not in pending:
                pending.add(mid)
                ids.append(mid)
        limit = self.settings.max_messages
        if limit is not None:
            ids = ids[: max(0, limit - progress.listed)]
        listed = progress.listed + len(ids)
        done = page.next_page_token is None or (limit is not None and listed >= limit)
        updated = progress.model_copy(
            update={
                "pending": [*progress.pending, *ids],
                "page_token": None if done else page.next_page_token,
                "listing_done": done,
                "listed": listed,
            }
        )
        with self.ctx.transaction():
            if progress.prune:
                self.sweep.upsert_many((mid, 1) for mid in ids)
            self.save(state.model_copy(update={"full_sync": updated}))
        self.ctx.log.info("full sync: listed %d messages%s", listed, "" if not done else " (all)")
        return ids

    async def fetch(self, ids: list[str]) -> tuple[MessagesResult, dict[str, dict[str, Any]]]:
        """One batch fetched and turned into stored items (parsed off the event loop)."""
        fetched = await self.gmail.get_messages(ids, self.format, self.headers)
        return fetched, await _items_of(fetched.messages, self.parts)

    def store_fetched(
        self, chunk: list[str], fetched_items: tuple[MessagesResult, dict[str, dict[str, Any]]]
    ) -> list[SyncError]:
        """Store one fetched batch with the progress that no longer lists it as pending.

        One short transaction: the items were parsed on a worker thread by :meth:`fetch`, so
        what holds the event loop here is only the SQLite writes of at most one batch.
        """
        fetched, items = fetched_items
        state = self.state
        progress = state.full_sync
        assert progress is not None
        done = set(fetched.messages) | set(fetched.not_found)
        self.batches_stored += 1
        with self.ctx.transaction():
            added, updated = self.messages.upsert_many(
                (mid, items[mid], items[mid]["internalDate"]) for mid in chunk if mid in items
            )
            remaining = [mid for mid in progress.pending if mid not in done]
            self.save(
                state.model_copy(
                    update={"full_sync": progress.model_copy(update={"pending": remaining})}
                )
            )
        self.added += added
        self.updated += updated
        self.ctx.log.info(
            "full sync: stored %d messages (%d to go in listed pages)",
            len(fetched.messages),
            len(remaining),
        )
        if fetched.not_found:
            self.ctx.log.debug(
                "%d messages were deleted before they could be fetched", len(fetched.not_found)
            )
        # What was stored stays stored; the ids that failed stay pending for the next run.
        return list(fetched.errors.values())

    async def finish_full_sync(self) -> RunReport:
        state = self.state
        progress = state.full_sync
        assert progress is not None
        removed = await self.prune() if progress.prune else 0
        self.save(
            state.model_copy(
                update={
                    "history_id": progress.start_history_id,
                    "full_sync": None,
                    "last_full_sync": self.ctx.now(),
                }
            )
        )
        if progress.prune:
            await self.clear_sweep()
        self.ctx.log.info(
            "full sync done: %d messages, cursor historyId %s",
            len(self.messages),
            progress.start_history_id,
        )
        what = {
            "initial": "full sync",
            "expired": "full resync (history expired)",
            "settings": "full resync (settings changed)",
        }[progress.reason]
        return RunReport(
            added=self.added,
            updated=self.updated,
            removed=removed,
            message=f"{what}: {len(self.messages)} messages",
        )

    async def prune(self) -> int:
        """A resync's end: remove the stored messages its listing did not find (not in
        ``sweep``). Returns how many went.

        Both collections are walked in key order side by side, ``PRUNE_STEP`` keys at a time,
        and the stale ones deleted ``PRUNE_STEP`` at a time, each step its own short
        transaction with the event loop free in between (issue 17.5: in one go, a 100k-message
        resync held the loop for the whole walk). Safe to stop anywhere: what a step deleted
        is gone from the mailbox's listing for good, the sweep and the full sync state stay
        until :meth:`finish_full_sync` commits the cursor, so a killed run prunes the rest
        at its next run.
        """
        removed = 0
        swept = self.sweep.iter_keys(PRUNE_STEP)
        found = next(swept, None)
        stale: list[str] = []
        for seen, key in enumerate(self.messages.iter_keys(PRUNE_STEP), start=1):
            while found is not None and found < key:
                found = next(swept, None)
            if found != key:
                stale.append(key)
            if len(stale) >= PRUNE_STEP:
                removed += self.messages.delete_many(stale)
                stale.clear()
                await asyncio.sleep(0)
            elif seen % PRUNE_STEP == 0:
                await asyncio.sleep(0)
        if stale:
            removed += self.messages.delete_many(stale)
        return removed

    async def clear_sweep(self) -> None:
        """Empty the sweep after a resync, ``PRUNE_STEP`` keys per step, the event loop free
        between steps. Only after the cursor is saved: from then on the sweep means nothing
        (the next resync clears it first), so a run stopped halfway loses nothing."""
        while keys := list(itertools.islice(self.sweep.iter_keys(PRUNE_STEP), PRUNE_STEP)):
            self.sweep.delete_many(keys)
            await asyncio.sleep(0)

    # ---- incremental sync ---------------------------------------------------------------

    async def incremental(self, state: GmailState) -> RunReport:
        assert state.history_id is not None
        changes: dict[str, _Change] = {}
        cursor = state.history_id
        pages = 0
        try:
            async for page in self.gmail.list_history(state.history_id):
                pages += 1
                for record in page.history:
                    _apply_record(changes, record)
                cursor = page.history_id
        except HistoryExpired as exc:
            return await self.history_expired(state, exc)
        if pages > 1:
            self.ctx.log.info("history: %d pages, %d messages changed", pages, len(changes))
        recheck = self.live_rechecks(state)
        for mid in recheck:
            if mid not in changes:
                changes[mid] = _Change(added=True)
        if not changes:
            if cursor != state.history_id or state.expiries or recheck != state.recheck:
                self.save(
                    state.model_copy(
                        update={"history_id": cursor, "expiries": 0, "recheck": recheck}
                    )
                )
            return RunReport()
        return await self.apply_changes(state, changes, cursor, recheck)

    def live_rechecks(self, state: GmailState) -> dict[str, float]:
        """The remembered unmatched new messages still inside ``RECHECK_WINDOW``."""
        oldest = self.ctx.now().timestamp() - RECHECK_WINDOW.total_seconds()
        return {mid: seen for mid, seen in state.recheck.items() if seen >= oldest}

    async def history_expired(self, state: GmailState, exc: SyncError) -> RunReport:
        if state.expiries >= 1:
            raise HistoryLoop(
                "Gmail refused the change history again right after a full resync, so another "
                "resync would not help; automatic resyncs are stopped to avoid a loop. Later "
                "runs retry the history; to force a full sync now, reset the charm."
            ) from exc
        self.ctx.log.warning("Gmail history from %s has expired; resyncing", state.history_id)
        state = state.model_copy(update={"expiries": state.expiries + 1})
        state = await self.begin_full_sync(state, "expired")
        return await self.full_sync(state)

    async def apply_changes(
        self,
        state: GmailState,
        changes: dict[str, _Change],
        cursor: str,
        recheck: Mapping[str, float] | None = None,
    ) -> RunReport:
        possible = _LabelCheck(set(state.label_ids), self.settings.query)
        gone = {mid for mid, ch in changes.items() if ch.deleted}
        stored: dict[str, dict[str, Any]] = {}
        to_fetch: list[str] = []
        for read, (mid, ch) in enumerate(changes.items(), start=1):
            if read % APPLY_STEP == 0:
                await asyncio.sleep(0)  # thousands of relabelled messages are read and decoded
            if ch.deleted:
                continue
            current = self.messages.get(mid)
            if current is not None:
                labels = _labels_after(ch, current.get("labelIds") or [])
                # Checked even when the labels look unchanged: a full sync may have fetched it
                # *after* this change, so what is stored says nothing about the query match.
                stored[mid] = with_labels(current, labels)
            elif ch.labels is None or possible(_labels_after(ch, ch.labels)):
                to_fetch.append(mid)
        fetched_items: dict[str, dict[str, Any]] = {}
        if to_fetch:
            fetched = await self.gmail.get_messages(to_fetch, self.format, self.headers)
            for error in fetched.errors.values():
                raise error  # nothing is committed: the next run starts from the same cursor
            gone |= set(fetched.not_found)
            fetched_items = await _items_of(fetched.messages, self.parts)
        candidates = {**stored, **fetched_items}
        local = {mid for mid, item in candidates.items() if possible(item["labelIds"])}
        matching = await self.matching(local, candidates)
        # New mail that could match but that search did not return may not be indexed yet:
        # remember it (with when it was first seen) and ask again on the next runs.
        now = self.ctx.now().timestamp()
        earlier = dict(recheck or {})
        again = {
            mid: earlier.get(mid, now)
            for mid in local - matching
            if (changes[mid].added or mid in earlier)
            and mid not in gone
            and mid not in stored  # (fetched: it was not stored)
        }
        if len(again) > RECHECK_LIMIT:
            again = dict(sorted(again.items(), key=lambda kv: kv[1])[-RECHECK_LIMIT:])

        # What to write: None deletes. Up to APPLY_STEP of it commits with the cursor in one
        # transaction; more is written in steps of APPLY_STEP, the event loop free between
        # them, and the cursor moves with the last step (see the module docstring).
        rows: list[tuple[str, dict[str, Any] | None]] = [(mid, None) for mid in gone]
        rows += [(mid, item if mid in matching else None) for mid, item in candidates.items()]
        added = updated = removed = 0
        for start in range(0, max(len(rows), 1), APPLY_STEP):
            step = rows[start : start + APPLY_STEP]
            last = start + APPLY_STEP >= len(rows)
            with self.ctx.transaction():
                removed += self.messages.delete_many(mid for mid, item in step if item is None)
                new, changed = self.messages.upsert_many(
                    (mid, item, item["internalDate"]) for mid, item in step if item is not None
                )
                added += new
                updated += changed
                if last:
                    if self.settings.max_messages is not None:
                        removed += self.messages.trim(self.settings.max_messages)
                    self.save(
                        state.model_copy(
                            update={"history_id": cursor, "expiries": 0, "recheck": again}
                        )
                    )
            if not last:
                await asyncio.sleep(0)
        return RunReport(added=added, updated=updated, removed=removed)

    async def matching(self, ids: set[str], items: Mapping[str, Mapping[str, Any]]) -> set[str]:
        """The ``ids`` that Gmail's search for the query returns (see the module docstring)."""
        if not ids:
            return set()
        ordered = sorted(ids, key=lambda mid: (items[mid]["internalDate"], mid))
        clusters: list[list[str]] = [[ordered[0]]]
        for mid in ordered[1:]:
            first = items[clusters[-1][0]]["internalDate"]
            if items[mid]["internalDate"] - first <= CLUSTER_SPAN_MS:
                clusters[-1].append(mid)
            else:
                clusters.append([mid])
        gate = asyncio.Semaphore(PARALLEL_CHECKS)

        async def check(cluster: list[str]) -> set[str]:
            low = items[cluster[0]]["internalDate"] // 1000 - 1
            high = -(-items[cluster[-1]]["internalDate"] // 1000) + 1
            query = " ".join(
                t
                # ``self.query`` is ``effective_query``: alternatives already grouped.
                for t in (self.query, f"after:{low}", f"before:{high}")
                if t
            )
            wanted = set(cluster)
            found: set[str] = set()
            token: str | None = None
            async with gate:
                while True:
                    page = await self.list_ids(query, LIST_PAGE_SIZE, token)
                    found |= {_ref_id(ref, "messages.list") for ref in page.messages} & wanted
                    token = page.next_page_token
                    if token is None or found == wanted:
                        return found

        results = await _gather_or_cancel([check(cluster) for cluster in clusters])
        return set().union(*results)


# Query terms that hold only for messages carrying a system label. In a query made only of
# ANDed terms (no OR, braces, parentheses or negation) each such term is a necessary condition.
_LABEL_TERMS: dict[str, str] = {
    "in:inbox": "INBOX",
    "in:sent": "SENT",
    "in:drafts": "DRAFT",
    "in:spam": "SPAM",
    "in:trash": "TRASH",
    "is:starred": "STARRED",
    "is:unread": "UNREAD",
    "is:important": "IMPORTANT",
    "label:inbox": "INBOX",
    "label:starred": "STARRED",
    "label:unread": "UNREAD",
}
_SPAM_TRASH_TERMS = (
    "in:spam",
    "in:trash",
    "in:anywhere",
    "label:spam",
    "label:trash",
    "is:spam",
    "is:trash",
)


class _LabelCheck:
    """Whether a message with given labels *can* match, decided without asking Gmail.

    Only exact necessary conditions: the required labels of the ``labels`` setting, the system
    labels a purely conjunctive query demands (``in:inbox`` needs INBOX), and the rule that
    messages.list leaves out SPAM and TRASH unless the query asks for them. Messages that pass
    are still checked by Gmail; those that fail cost no request at all (sent mail under the
    default ``in:inbox`` query is the common case).
    """

    def __init__(self, required: set[str], query: str) -> None:
        self.required = set(required)
        terms = query.lower().split()
        conjunctive = not any(
            t == "or" or t.startswith("-") or any(ch in t for ch in "{}()") for t in terms
        )
        if conjunctive:
            self.required |= {_LABEL_TERMS[t] for t in terms if t in _LABEL_TERMS}
        self.spam_trash_ok = any(term in query.lower() for term in _SPAM_TRASH_TERMS)

    def __call__(self, labels: Iterable[str]) -> bool:
        have = set(labels)
        if not self.spam_trash_ok and have & {"SPAM", "TRASH"}:
            return False
        return self.required <= have


# What reading a response in an unexpected shape raises (a list where an object belongs, an
# object where a string belongs). Google's answer is at fault, not this code: ``server_error``.
_MALFORMED = (AttributeError, TypeError, KeyError, ValueError, IndexError)


def _malformed(what: str) -> ServerError:
    return ServerError(f"Gmail sent {what} in an unexpected shape; the sync will be retried")


def _item_of(message: Mapping[str, Any], parts: Parts) -> dict[str, Any]:
    try:
        return to_item(message, parts)
    except _MALFORMED as exc:
        raise _malformed("a message") from exc


async def _items_of(
    messages: Mapping[str, Mapping[str, Any]], parts: Parts
) -> dict[str, dict[str, Any]]:
    """Fetched messages as stored items, built on a worker thread, one batch at a time.

    With ``parts=raw`` every message goes through the stdlib MIME parser (2-3 ms of CPU each),
    so a 50-message batch parsed on the loop held it 100-500 ms (issue 17.5). The parse is pure
    (no store, no context), so it runs in the loop's default executor; the loop thread keeps
    serving the tray and the other charms meanwhile, and writes the items afterwards.

    Only one batch is parsed at a time in the whole app (:func:`_parse_gate`): parsing is
    CPU-bound Python, so parallel parses finish no sooner under the GIL, but every extra thread
    that wants the GIL makes the loop thread wait for it again after each SQLite statement.
    With the three batches of a full sync parsed at once, storing one batch held the loop
    50-150 ms; with one parse thread, a few ms.
    """
    if not messages:
        return {}
    batch = dict(messages)
    async with _parse_gate():
        return await asyncio.to_thread(
            lambda: {mid: _item_of(m, parts) for mid, m in batch.items()}
        )


# One lock per event loop (tests run many loops in one process; an asyncio.Lock belongs to one).
_parse_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _parse_gate() -> asyncio.Lock:
    """The running loop's lock that lets one batch of messages be parsed at a time."""
    loop = asyncio.get_running_loop()
    gate = _parse_gates.get(loop)
    if gate is None:
        gate = _parse_gates[loop] = asyncio.Lock()
    return gate


def _apply_record(changes: dict[str, _Change], record: Mapping[str, Any]) -> None:
    """Fold one history record into ``changes``; a malformed record is a server error."""
    try:
        _fold_record(changes, record)
    except _MALFORMED as exc:
        raise _malformed("a change history record") from exc


def _ref_id(ref: Any, where: str) -> str:
    """The message id of a list or history entry; an entry without one fails the run.

    Skipping it would let the run advance the cursor past a message it never stored, so the
    run ends as a server error (retried later from the same cursor) instead.
    """
    mid = ref.get("id") if isinstance(ref, Mapping) else None
    if not isinstance(mid, str) or not mid:
        raise ServerError(
            f"Gmail sent a {where} entry without a message id ({ref!r}); nothing was "
            "stored from this run and the sync will be retried"
        )
    return mid


def _fold_record(changes: dict[str, _Change], record: Mapping[str, Any]) -> None:
    if not isinstance(record, Mapping):
        raise ServerError(
            f"Gmail sent a history record that is not an object ({record!r}); nothing was "
            "stored from this run and the sync will be retried"
        )

    def refs(key: str) -> Iterable[Mapping[str, Any]]:
        for entry in record.get(key) or []:
            message = entry.get("message") if isinstance(entry, Mapping) else None
            _ref_id(message, f"history {key}")
            yield entry

    for entry in refs("messagesAdded"):
        ch = changes.setdefault(entry["message"]["id"], _Change())
        ch.added = True
        _note_labels(ch, entry["message"])
    for entry in refs("messagesDeleted"):
        changes.setdefault(entry["message"]["id"], _Change()).deleted = True
    for key, added in (("labelsAdded", True), ("labelsRemoved", False)):
        for entry in refs(key):
            ch = changes.setdefault(entry["message"]["id"], _Change())
            delta = {str(x) for x in entry.get("labelIds") or []}
            if added:
                ch.added_labels |= delta
                ch.removed_labels -= delta
            else:
                ch.removed_labels |= delta
                ch.added_labels -= delta
            _note_labels(ch, entry["message"])


def _note_labels(ch: _Change, message: Mapping[str, Any]) -> None:
    labels = message.get("labelIds")
    if isinstance(labels, list):
        # Labels as of this record: later deltas apply on top of them.
        ch.labels = [str(x) for x in labels]
        ch.added_labels.clear()
        ch.removed_labels.clear()


def _labels_after(ch: _Change, stored: Sequence[str]) -> list[str]:
    base = set(ch.labels) if ch.labels is not None else set(stored)
    return sorted((base | ch.added_labels) - ch.removed_labels)


async def _gather_or_cancel(jobs: Sequence[Any]) -> list[Any]:
    """``gather`` that cancels the siblings of a failing job and raises that job's error."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# ---- export -------------------------------------------------------------------------------


def _export_jsonl(messages: Collection, dest: Path) -> int:
    # Oldest first, a chunk at a time (a mailbox may not fit in memory twice); ``raw`` is
    # left out: it is what the eml export is for.
    return write_jsonl(
        (
            {k: v for k, v in value.items() if k != "raw"} if isinstance(value, dict) else value
            for _key, value in messages.iter_items()
        ),
        dest,
    )


def _export_eml(messages: Collection, dest: Path) -> int:
    if dest.exists() and not dest.is_dir():
        raise ExportError(
            f"{dest} is a file; .eml export writes one file per message into a "
            "directory, so give a directory"
        )
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    for key, value in messages.iter_items():
        raw = value.get("raw") if isinstance(value, dict) else None
        if not isinstance(raw, str):
            raise ExportError(
                f"message {key} was stored without its raw form; reset the charm so it "
                "resyncs with the raw parts setting, then export again"
            )
        with atomic_output(dest / f"{_safe_name(key)}.eml") as out:
            out.write(decode_b64url(raw))
        count += 1
    return count


def _safe_name(key: str) -> str:
    return "".join(ch for ch in key if ch.isalnum() or ch in "-_") or "message"
