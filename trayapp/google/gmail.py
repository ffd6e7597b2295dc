"""Gmail v1: the handful of read methods the importer needs, typed and paginated.

Every method goes through :class:`~trayapp.google.client.GoogleApi` (auth, retries, quota). The
shapes follow Gmail's discovery document; all fields are optional there, so the TypedDicts are
``total=False`` and readers should use ``.get``. 64-bit numbers (``historyId``,
``internalDate``) stay strings, as Gmail sends them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast
from urllib.parse import quote

from trayapp.core.errors import SyncError
from trayapp.google.batch import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_PARALLEL_BATCHES,
    BatchCall,
    run_batched,
)
from trayapp.google.errors import GoogleRequestError, HistoryExpired, unreadable_response
from trayapp.google.wire import PageTokens, canonical, encode_params, json_list, json_str

if TYPE_CHECKING:
    from trayapp.google.wire import ServiceTransport

MessageFormat = Literal["minimal", "full", "raw", "metadata"]
HistoryType = Literal["messageAdded", "messageDeleted", "labelAdded", "labelRemoved"]
_FORMATS: tuple[MessageFormat, ...] = ("minimal", "full", "raw", "metadata")
_HISTORY_TYPES: tuple[HistoryType, ...] = (
    "messageAdded",
    "messageDeleted",
    "labelAdded",
    "labelRemoved",
)
MAX_PAGE_SIZE = 500


class MessageRef(TypedDict, total=False):
    id: str
    threadId: str


class Header(TypedDict):
    name: str
    value: str


class MessagePartBody(TypedDict, total=False):
    attachmentId: str
    data: str  # base64url, padded
    size: int


class MessagePart(TypedDict, total=False):
    partId: str
    mimeType: str
    filename: str
    headers: list[Header]
    body: MessagePartBody
    parts: list[MessagePart]


class Message(TypedDict, total=False):
    id: str
    threadId: str
    labelIds: list[str]
    snippet: str
    historyId: str
    internalDate: str  # epoch milliseconds, as a string
    payload: MessagePart
    sizeEstimate: int
    raw: str  # base64url, only with format="raw"


class Profile(TypedDict, total=False):
    emailAddress: str
    historyId: str
    messagesTotal: int
    threadsTotal: int


class Label(TypedDict, total=False):
    id: str
    name: str
    type: Literal["system", "user"]
    messageListVisibility: str
    labelListVisibility: str
    messagesTotal: int
    messagesUnread: int
    threadsTotal: int
    threadsUnread: int


class HistoryMessageChange(TypedDict, total=False):
    message: Message


class HistoryLabelChange(TypedDict, total=False):
    message: Message
    labelIds: list[str]


class History(TypedDict, total=False):
    id: str
    messages: list[Message]
    messagesAdded: list[HistoryMessageChange]
    messagesDeleted: list[HistoryMessageChange]
    labelsAdded: list[HistoryLabelChange]
    labelsRemoved: list[HistoryLabelChange]


@dataclass(frozen=True, slots=True)
class MessagePage:
    """One page of ``messages.list``: message and thread ids only."""

    messages: list[MessageRef]
    next_page_token: str | None
    result_size_estimate: int = 0


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of ``history.list``.

    ``history_id`` is the mailbox's current historyId as of this response; store it as the new
    cursor only after the *last* page (``is_last``) and every change before it are stored.
    A page may hold no records and still not be the last.
    """

    history: list[History]
    history_id: str
    next_page_token: str | None

    @property
    def is_last(self) -> bool:
        return self.next_page_token is None


@dataclass(frozen=True, slots=True)
class MessagesResult:
    """What ``get_messages`` fetched: messages by id, ids Gmail no longer has, other errors.

    ``messages`` keeps the order the ids were asked in. ``not_found`` are 404s (deleted between
    list and get): normal during a sync, not an error. ``errors`` are calls that still failed
    after retries (rate limits, server errors) or were refused; a caller that needs every
    message should end the run with one of them (``raise_first_error``) and not advance its
    cursor.
    """

    messages: dict[str, Message] = field(default_factory=dict)
    not_found: list[str] = field(default_factory=list)
    errors: dict[str, SyncError] = field(default_factory=dict)

    def raise_first_error(self) -> None:
        for error in self.errors.values():
            raise error


class GmailClient:
    """Gmail v1 for one account (``userId`` ``me``). Get one from ``GoogleApi.gmail()``."""

    def __init__(self, api: ServiceTransport, user_id: str = "me") -> None:
        self.api = api
        self.user_id = user_id

    def _path(self, *parts: str) -> str:
        segments = "/".join(quote(p, safe="") for p in parts)
        return f"gmail/v1/users/{quote(self.user_id, safe='')}/{segments}"

    async def get_profile(self) -> Profile:
        data = await self.api.get_json("gmail", "gmail.users.getProfile", self._path("profile"))
        return cast(Profile, data)

    async def list_labels(self) -> list[Label]:
        data = await self.api.get_json("gmail", "gmail.users.labels.list", self._path("labels"))
        return cast(list[Label], json_list("Gmail", data, "labels"))

    async def list_message_ids(
        self,
        q: str | None = None,
        label_ids: Sequence[str] = (),
        max_results: int = MAX_PAGE_SIZE,
        page_token: str | None = None,
        include_spam_trash: bool | None = None,
    ) -> MessagePage:
        """One page of message ids matching ``q`` and carrying *all* of ``label_ids``."""
        _check_page_size(max_results)
        data = await self.api.get_json(
            "gmail",
            "gmail.users.messages.list",
            self._path("messages"),
            {
                "q": q or None,
                "labelIds": list(label_ids),
                "maxResults": max_results,
                "pageToken": page_token,
                "includeSpamTrash": include_spam_trash,
            },
        )
        estimate = data.get("resultSizeEstimate")
        return MessagePage(
            messages=_message_refs(json_list("Gmail", data, "messages"), "messages.list"),
            next_page_token=json_str(data, "nextPageToken"),
            result_size_estimate=estimate if isinstance(estimate, int) else 0,
        )

    async def iter_message_pages(
        self,
        q: str | None = None,
        label_ids: Sequence[str] = (),
        max_results: int = MAX_PAGE_SIZE,
        page_token: str | None = None,
        include_spam_trash: bool | None = None,
    ) -> AsyncIterator[MessagePage]:
        """Every page from ``page_token`` on (pass a saved token to resume a full sync)."""
        pages = PageTokens("Gmail")
        while True:
            page = await self.list_message_ids(
                q, label_ids, max_results, page_token, include_spam_trash
            )
            yield page
            page_token = pages.follow(page.next_page_token)
            if page_token is None:
                return

    async def get_message(
        self,
        message_id: str,
        format: MessageFormat = "full",
        metadata_headers: Sequence[str] = (),
    ) -> Message:
        """One message (raises ``GoogleRequestError`` with status 404 if it is gone)."""
        data = await self.api.get_json(
            "gmail",
            "gmail.users.messages.get",
            self._path("messages", message_id),
            _get_params(format, metadata_headers),
        )
        return cast(Message, data)

    async def get_messages(
        self,
        ids: Iterable[str],
        format: MessageFormat = "metadata",
        metadata_headers: Sequence[str] = (),
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        parallel: int = DEFAULT_PARALLEL_BATCHES,
    ) -> MessagesResult:
        """Fetch many messages in batches of ``batch_size`` (parts that fail are retried alone).

        Up to ``parallel`` batches are in flight at once (the account's quota paces them), so a
        slow round trip does not leave the quota unused.
        """
        unique = list(dict.fromkeys(ids))
        params = encode_params(_get_params(format, metadata_headers))
        calls = [
            BatchCall("gmail.users.messages.get", self._path("messages", mid), params)
            for mid in unique
        ]
        results = await run_batched(
            self.api, "gmail", calls, batch_size=batch_size, parallel=parallel
        )
        out = MessagesResult()
        for mid, result in zip(unique, results, strict=True):
            if result.data is not None:
                out.messages[mid] = cast(Message, result.data)
            elif isinstance(result.error, GoogleRequestError) and result.error.status == 404:
                out.not_found.append(mid)
            elif result.error is not None:
                out.errors[mid] = result.error
        return out

    async def list_history(
        self,
        start_history_id: str | int,
        history_types: Sequence[HistoryType] = (),
        label_id: str | None = None,
        max_results: int = MAX_PAGE_SIZE,
        page_token: str | None = None,
    ) -> AsyncIterator[HistoryPage]:
        """Every page of changes since ``start_history_id``; raises ``HistoryExpired`` on 404.

        Follow it to the end: the cursor to store is the last page's ``history_id``.
        """
        start = str(start_history_id)
        if not start.isdigit():
            raise ValueError(f"start_history_id must be a decimal number, got {start!r}")
        _check_page_size(max_results)
        types = [canonical(t, _HISTORY_TYPES, "history type") for t in history_types]
        pages = PageTokens("Gmail")
        while True:
            try:
                data = await self.api.get_json(
                    "gmail",
                    "gmail.users.history.list",
                    self._path("history"),
                    {
                        "startHistoryId": start,
                        "historyTypes": types,
                        "labelId": label_id,
                        "maxResults": max_results,
                        "pageToken": page_token,
                    },
                )
            except GoogleRequestError as exc:
                if exc.status == 404:
                    raise HistoryExpired(
                        "Gmail no longer has the change history this sync started from; "
                        "a full sync is needed.",
                        api_error=exc.api_error,
                    ) from exc
                raise
            history_id = data.get("historyId")
            if not isinstance(history_id, str | int) or not str(history_id).isdigit():
                raise unreadable_response("Gmail", 200, "history page without a historyId")
            page = HistoryPage(
                history=_history_records(json_list("Gmail", data, "history")),
                history_id=str(history_id),
                next_page_token=json_str(data, "nextPageToken"),
            )
            yield page
            page_token = pages.follow(page.next_page_token)
            if page_token is None:
                return


def _message_refs(entries: list[Any], where: str) -> list[MessageRef]:
    """``entries`` if every one names a message by a non-empty string id.

    A page with an entry we cannot read fails as a whole (a server fault, retried by a later
    run): skipping the entry would let the caller advance its cursor past mail it never stored.
    """
    for entry in entries:
        mid = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(mid, str) or not mid:
            raise unreadable_response(
                "Gmail", 200, f"{where} entry without a message id: {entry!r}"
            )
    return cast(list[MessageRef], entries)


_HISTORY_KEYS = ("messagesAdded", "messagesDeleted", "labelsAdded", "labelsRemoved")


def _history_records(records: list[Any]) -> list[History]:
    """``records`` if each is a History whose change entries all name a message (see above)."""
    for record in records:
        if not isinstance(record, dict):
            raise unreadable_response("Gmail", 200, f"history record is not an object: {record!r}")
        _message_refs(json_list("Gmail", record, "messages"), "history.messages")
        for key in _HISTORY_KEYS:
            for change in json_list("Gmail", record, key):
                message = change.get("message") if isinstance(change, dict) else None
                _message_refs([message], f"history.{key}")
                labels = change.get("labelIds") if isinstance(change, dict) else None
                if labels is not None and not (
                    isinstance(labels, list) and all(isinstance(x, str) for x in labels)
                ):
                    raise unreadable_response(
                        "Gmail", 200, f"history.{key} entry with unreadable labelIds: {labels!r}"
                    )
    return cast(list[History], records)


def _get_params(format: str, metadata_headers: Sequence[str]) -> dict[str, Any]:
    fmt = canonical(format, _FORMATS, "message format")
    if metadata_headers and fmt != "metadata":
        raise ValueError("metadata_headers only applies to format='metadata'")
    return {"format": fmt, "metadataHeaders": list(metadata_headers) or None}


def _check_page_size(max_results: int) -> None:
    if not 1 <= max_results <= MAX_PAGE_SIZE:
        raise ValueError(f"max_results must be between 1 and {MAX_PAGE_SIZE}")
