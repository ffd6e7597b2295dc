"""Gmail v1 handlers: profile, labels, messages.list/get, attachments.get, history.list.

Parameters are read the way Google's front end reads them: repeated parameters
(``labelIds``, ``metadataHeaders``, ``historyTypes``) may repeat, enums fold case, bad numbers
answer 400, and page tokens are opaque and bound to the query that produced them.
"""

from __future__ import annotations

import base64
import bisect
import re
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trayapp.emulator import errors
from trayapp.emulator.common import (
    JSONResponseGoogle,
    authorize,
    decode_token,
    emu_state,
    encode_token,
    error_response,
    partial_response,
    query_fingerprint,
    token_scopes,
)
from trayapp.emulator.gmail_search import Matcher, compile_query
from trayapp.emulator.gmail_store import Mailbox, StoredMessage
from trayapp.emulator.scopes import GMAIL_METADATA

FORMATS = ("minimal", "full", "raw", "metadata")
HISTORY_TYPES = {
    "messageadded": "messageAdded",
    "messagedeleted": "messageDeleted",
    "labeladded": "labelAdded",
    "labelremoved": "labelRemoved",
}


def _handler(
    method_id: str,
) -> Callable[[Callable[[Request, Mailbox], Any]], Callable[[Request], Any]]:
    """Wrap a handler with auth/scope/quota checks and error rendering."""

    def deco(fn: Callable[[Request, Mailbox], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                acct = authorize(request, method_id, request.path_params.get("userId"))
                result = partial_response(request, fn(request, acct.mailbox))
            except errors.ApiError as err:
                return error_response(err)
            return result if isinstance(result, Response) else JSONResponseGoogle(result)

        endpoint.__name__ = fn.__name__
        return endpoint

    return deco


def _metadata_only(request: Request) -> bool:
    """Whether the token carries gmail.metadata, which restricts formats and ``q``.

    Others report that the restriction holds even when gmail.readonly is granted too (a
    public Gmail client's issue #726: "refuse the q search parameter (and full-body reads)
    even when gmail.readonly is also granted"), so a token with the metadata scope is
    restricted whatever else it has.
    """
    return GMAIL_METADATA in token_scopes(request)


def _uint(request: Request, name: str, default: int, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
        if value < 0:
            raise ValueError
    except ValueError:
        raise errors.invalid_argument(f"Invalid value at '{name}' ({raw})") from None
    return min(value, maximum) if maximum is not None else value


def _bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw.lower() not in ("true", "false"):
        raise errors.invalid_argument(f"Invalid value at '{name}' ({raw})")
    return raw.lower() == "true"


# ---- handlers ----


@_handler("gmail.users.getProfile")
def get_profile(request: Request, box: Mailbox) -> dict[str, Any]:
    return {
        "emailAddress": box.email,
        "messagesTotal": len(box.messages),
        "threadsTotal": len({m.thread_id for m in box.messages.values()}),
        "historyId": str(box.history_id),
    }


@_handler("gmail.users.labels.list")
def labels_list(request: Request, box: Mailbox) -> dict[str, Any]:
    return {"labels": [lbl.to_json() for lbl in box.labels.values()]}


@_handler("gmail.users.labels.get")
def labels_get(request: Request, box: Mailbox) -> dict[str, Any]:
    lbl = box.labels.get(request.path_params["id"])
    if lbl is None:
        raise errors.gmail_not_found()
    return {**lbl.to_json(), **box.label_counts(lbl.id)}


@_handler("gmail.users.messages.get")
def messages_get(request: Request, box: Mailbox) -> dict[str, Any]:
    fmt = (request.query_params.get("format") or "full").lower()
    if fmt not in FORMATS:
        raise errors.invalid_argument(
            f"Invalid value at 'format' ({request.query_params.get('format')})"
        )
    if fmt in ("full", "raw") and _metadata_only(request):
        raise errors.ApiError(
            403,
            f"Metadata scope doesn't allow format {fmt.upper()}",
            [
                {
                    "message": f"Metadata scope doesn't allow format {fmt.upper()}",
                    "domain": "global",
                    "reason": "forbidden",
                }
            ],
            "PERMISSION_DENIED",
        )
    msg = box.messages.get(_message_id(request.path_params["id"]))
    if msg is None:
        raise errors.gmail_not_found()
    return msg.render(fmt, request.query_params.getlist("metadataHeaders"))


def _message_id(value: str) -> str:
    """A message id as Gmail checks it: hexadecimal (64 bits at most); anything else is 400
    "Invalid id value" before any lookup (Gmail's answer to a malformed id, issue 13, as public
    clients quote it: "Invalid id value")."""
    if not re.fullmatch(r"[0-9a-fA-F]{1,16}", value):
        raise errors.invalid_argument("Invalid id value")
    return value


@_handler("gmail.users.messages.attachments.get")
def attachments_get(request: Request, box: Mailbox) -> dict[str, Any]:
    msg = box.messages.get(_message_id(request.path_params["messageId"]))
    if msg is None:
        raise errors.gmail_not_found()
    data = msg.parsed.attachments.get(request.path_params["id"])
    if data is None:
        raise errors.invalid_argument("Invalid attachment token")
    return {
        "attachmentId": request.path_params["id"],
        "size": len(data),
        "data": base64.urlsafe_b64encode(data).decode(),
    }


@_handler("gmail.users.messages.list")
def messages_list(request: Request, box: Mailbox) -> dict[str, Any]:
    max_results = _uint(request, "maxResults", 100, 500) or 100
    include_spam_trash = _bool(request, "includeSpamTrash")
    label_ids = request.query_params.getlist("labelIds")
    q = request.query_params.get("q")
    if q is not None and _metadata_only(request):
        raise errors.ApiError(
            403,
            "Metadata scope does not support 'q' parameter",
            [
                {
                    "message": "Metadata scope does not support 'q' parameter",
                    "domain": "global",
                    "reason": "forbidden",
                }
            ],
            "PERMISSION_DENIED",
        )
    now = box.clock.now()
    fp = query_fingerprint(request)
    start_after: tuple[int, str] | None = None
    token = request.query_params.get("pageToken")
    if token:
        payload = decode_token(token, fp)
        if payload is None:
            raise errors.invalid_argument("Invalid pageToken")
        start_after = (int(payload["d"]), str(payload["i"]))
    # Valid while the mailbox (history id), its label names and the second (relative dates
    # such as newer_than:) stay the same.
    key = (fp, box.history_id, tuple((lbl.id, lbl.name) for lbl in box.labels.values()), int(now))
    if box.list_cache is not None and box.list_cache[0] == key:
        matched = box.list_cache[1]
    else:
        matched = _matching(box, compile_query(q or "", box, now), label_ids, include_spam_trash)
        if q and q.strip():
            # The search-lag fault: search does not find what it has not indexed yet.
            matched = [m for m in matched if m.searchable_at <= now]
        box.list_cache = (key, matched)
    first = 0
    if start_after is not None:
        # ``matched`` is newest first, so "older than the token's message" is False...True.
        after = start_after
        first = bisect.bisect_left(matched, True, key=lambda m: (m.internal_date, m.id) < after)
    page = matched[first : first + max_results]
    out: dict[str, Any] = {}
    if page:
        out["messages"] = [m.ref() for m in page]
    if len(matched) - first > max_results:
        last = page[-1]
        out["nextPageToken"] = encode_token({"d": last.internal_date, "i": last.id, "f": fp})
    out["resultSizeEstimate"] = len(matched)
    return out


def _matching(
    box: Mailbox, matcher: Matcher, label_ids: list[str], include_spam_trash: bool
) -> list[StoredMessage]:
    skip_spam_trash = not include_spam_trash and not matcher.mentions_spam_trash
    return [
        msg
        for msg in box.sorted_messages()
        if not (skip_spam_trash and ("SPAM" in msg.label_ids or "TRASH" in msg.label_ids))
        and all(lid in msg.label_ids for lid in label_ids)
        and matcher(msg)
    ]


@_handler("gmail.users.history.list")
def history_list(request: Request, box: Mailbox) -> dict[str, Any]:
    raw_start = request.query_params.get("startHistoryId")
    if raw_start is None or not raw_start.isdigit():
        raise errors.bad_start_history_id()
    start = int(raw_start)
    if start < box.effective_floor(emu_state(request).history_retention):
        raise errors.gmail_not_found()
    max_results = _uint(request, "maxResults", 100, 500) or 100
    types: set[str] = set()
    for t in request.query_params.getlist("historyTypes"):
        key = HISTORY_TYPES.get(t.lower())
        if key is None:
            raise errors.invalid_argument(f"Invalid value at 'history_types' ({t})")
        types.add(key)
    label_id = request.query_params.get("labelId")
    fp = query_fingerprint(request)
    after = start
    token = request.query_params.get("pageToken")
    if token:
        payload = decode_token(token, fp)
        if payload is None:
            raise errors.invalid_argument("Invalid pageToken")
        after = int(payload["h"])
    # Like Google, a page scans a window of raw records and then filters, so a filtered
    # page can be empty and still carry a nextPageToken (reference: lieer#22/#24).
    window = box.records_after(after, max_results + 1)
    scanned = window[:max_results]
    records = [
        r
        for r in scanned
        if (not types or r.kind in types)
        and (label_id is None or label_id in r.message_labels or label_id in r.changed_labels)
    ]
    out: dict[str, Any] = {}
    if records:
        out["history"] = [r.to_json() for r in records]
    if len(window) > max_results:
        out["nextPageToken"] = encode_token({"h": scanned[-1].id, "f": fp})
    out["historyId"] = str(box.history_id)
    return out


def routes() -> list[Route]:
    base = "/gmail/v1/users/{userId}"
    return [
        Route(f"{base}/profile", get_profile, methods=["GET"], name="gmail.users.getProfile"),
        Route(f"{base}/labels", labels_list, methods=["GET"], name="gmail.users.labels.list"),
        Route(f"{base}/labels/{{id}}", labels_get, methods=["GET"], name="gmail.users.labels.get"),
        Route(f"{base}/messages", messages_list, methods=["GET"], name="gmail.users.messages.list"),
        Route(
            f"{base}/messages/{{id}}",
            messages_get,
            methods=["GET"],
            name="gmail.users.messages.get",
        ),
        Route(
            f"{base}/messages/{{messageId}}/attachments/{{id}}",
            attachments_get,
            methods=["GET"],
            name="gmail.users.messages.attachments.get",
        ),
        Route(f"{base}/history", history_list, methods=["GET"], name="gmail.users.history.list"),
    ]
