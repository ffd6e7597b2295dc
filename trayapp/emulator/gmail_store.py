"""Gmail mailbox model: messages kept as RFC 822 bytes, labels, and an append-only history.

Every API representation is derived from the stored bytes by one MIME walker that follows what
real Gmail exports show (reference section 1.2): the top-level ``partId`` is ``""``, children
``"0"``, ``"1"``, grandchildren ``"0.1"``; multipart containers have ``body == {"size": 0}``;
parts with a filename carry ``body.attachmentId`` and never inline data; ``data``/``raw`` are
base64url *with* padding; ``sizeEstimate`` is the raw length; the snippet is HTML-escaped.
"""

from __future__ import annotations

import base64
import bisect
import email.errors
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import hashlib
import html
import random
import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from trayapp.emulator.state import Clock

#: System labels as labels.list returns them (visibility fields only where Google sends them).
SYSTEM_LABELS: list[dict[str, str]] = [
    {"id": "CHAT", "messageListVisibility": "hide", "labelListVisibility": "labelHide"},
    {"id": "SENT"},
    {"id": "INBOX"},
    {"id": "IMPORTANT", "messageListVisibility": "hide", "labelListVisibility": "labelHide"},
    {"id": "TRASH", "messageListVisibility": "hide", "labelListVisibility": "labelHide"},
    {"id": "DRAFT"},
    {"id": "SPAM", "messageListVisibility": "hide", "labelListVisibility": "labelHide"},
    {"id": "CATEGORY_FORUMS"},
    {"id": "CATEGORY_UPDATES"},
    {"id": "CATEGORY_PERSONAL"},
    {"id": "CATEGORY_PROMOTIONS"},
    {"id": "CATEGORY_SOCIAL"},
    {"id": "STARRED", "labelListVisibility": "labelHide"},
    {"id": "UNREAD"},
]

SNIPPET_LENGTH = 200
_PARSER = email.parser.BytesParser(policy=email.policy.compat32)


def b64url(data: bytes) -> str:
    """base64url with '=' padding, as Gmail sends ``data`` and ``raw``."""
    return base64.urlsafe_b64encode(data).decode("ascii")


def escape_snippet(text: str) -> str:
    """Gmail's snippet escaping: &, <, >, " and ' as entities (apostrophe as &#39;)."""
    return html.escape(text, quote=True).replace("&#x27;", "&#39;")


def header_as_sent(value: str) -> str:
    """A header value with raw 8-bit bytes read as UTF-8 (``email`` keeps them escaped)."""
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


#: Headers holding addresses: decoded the way ``email``'s default policy shows them, which
#: keeps a display name quoted when decoding reveals specials ("Doe, John" <j@x>), as in
#: real captures (a decoded name inside quotes: aaira-a/gocd2gmail2slack's fixture).
ADDRESS_HEADERS = frozenset(
    ("from", "to", "cc", "bcc", "reply-to", "sender", "resent-from", "resent-to", "resent-cc")
)


def display_header(name: str, value: str) -> str:
    """A header value as Gmail's ``payload.headers`` shows it: unfolded, RFC 2047 decoded."""
    if name.lower() in ADDRESS_HEADERS and "=?" in value:
        plain = re.sub(r"\r?\n[ \t]*", " ", header_as_sent(value))
        try:
            return str(email.policy.default.header_factory(name, plain))
        except (IndexError, ValueError, TypeError, LookupError, email.errors.HeaderParseError):
            pass  # an address list email cannot read: decoded as plain text below
    return decode_header_value(value)


def decode_header_value(value: str) -> str:
    """Unfold and decode RFC 2047 encoded words, as Gmail's ``payload.headers`` shows them."""
    unfolded = re.sub(r"\r?\n[ \t]+", " ", header_as_sent(value))
    unfolded = re.sub(r"\r?\n", "", unfolded)
    if "=?" not in unfolded:
        return unfolded
    try:
        return str(email.header.make_header(email.header.decode_header(unfolded)))
    except (email.errors.HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
        return unfolded


def _charset_of(part: email.message.Message) -> str:
    charset = part.get_content_charset() or "utf-8"
    try:
        "".encode(charset)
    except LookupError:
        return "utf-8"
    return charset


def gmail_text(part: email.message.Message, decoded: bytes) -> bytes:
    """A text part's bytes as Gmail serves them in format=full: re-encoded to UTF-8 from the
    part's declared charset, a UTF-8 byte-order mark dropped (issue 13: measured on real
    exports; e.g. an ISO-2022-JP part arrives as UTF-8 while ``size`` stays the original)."""
    text = decoded.decode(_charset_of(part), "replace")
    return text.removeprefix("\ufeff").encode("utf-8")


#: ``filename*="UTF-8''name.pdf"``: an RFC 2231 value in quotes (RFC 2231 says it must not be
#: quoted). Gmail reports such a part with an empty ``filename`` in format=full (issue 13).
_QUOTED_2231 = re.compile(r"""(?:^|;)\s*(?:file)?name\*(?:0\*?)?\s*=\s*"[^"']*'""", re.I)


def _strip_html(text: str) -> str:
    text = re.sub(r"(?is)<(script|style).*?</\1>", " ", text)
    text = re.sub(r"(?s)<[^>]+>", " ", text)
    return html.unescape(text)


@dataclass
class Parsed:
    """Everything derived from the raw bytes, computed once per message."""

    payload: dict[str, Any]
    snippet: str
    attachments: dict[str, bytes]
    header_index: dict[str, list[str]]
    text: str
    has_attachment: bool
    #: Every attachment's file name (search's ``filename:``), as the raw headers give it.
    filenames: list[str] = field(default_factory=list)
    #: The words (lower case) that bare search words look in: subject, From, To, Cc, text
    #: bodies and attachment names.
    words: list[str] = field(default_factory=list)


_PARAMS = email.parser.Parser(policy=email.policy.default)
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _filename_of(headers: list[tuple[str, str]]) -> str:
    """The part's file name (RFC 2231 and RFC 2047 decoded), from its headers as sent."""
    # Unfolding removes only the line breaks (RFC 5322 section 2.2.3): whitespace inside a
    # quoted file name ("X  X.txt") is part of the name and must stay.
    block = "".join(
        f"{name}: {_FOLD.sub('', value).strip()}\n"
        for name, value in headers
        if name.lower() in ("content-type", "content-disposition")
    )
    try:
        name = _PARAMS.parsestr(block + "\n", headersonly=True).get_filename()
    except (IndexError, ValueError, TypeError, LookupError):
        return ""
    return decode_header_value(name).strip() if name else ""


def _attachment_id(msg_id: str, part_id: str) -> str:
    digest = hashlib.sha256(f"{msg_id}/{part_id}".encode()).digest() * 3
    return "ANGjdJ" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def parse_message(msg_id: str, raw: bytes) -> Parsed:
    """The format=full part tree by Gmail's rules (docs/emulator.md, "Part trees"):

    * multipart containers: ``body {"size": 0}`` and ``parts``;
    * ``message/rfc822``: ``body {"size": 0}`` and one child, the enclosed message as a part
      (its own headers, partId ``<id>.0``), walked like the top level;
    * text parts without a filename: inline ``data``, re-encoded to UTF-8, ``size`` of the
      original bytes; an empty one is ``{"size": 0, "data": ""}``;
    * every other leaf (a filename, or not text): ``body {attachmentId, size}``, no data;
    * a quoted RFC 2231 file name is reported as ``filename: ""``.
    """
    msg = _PARSER.parsebytes(raw)
    attachments: dict[str, bytes] = {}
    texts: list[tuple[str, str]] = []
    filenames: list[str] = []
    named = False

    def walk(part: email.message.Message, part_id: str) -> dict[str, Any]:
        nonlocal named
        sent = [(k, header_as_sent(str(v))) for k, v in part.raw_items()]
        headers = [{"name": k, "value": display_header(k, v)} for k, v in sent]
        mime = part.get_content_type()
        raw_name = _filename_of(sent)
        filename = raw_name
        if filename:
            filenames.append(filename)
        disposition = str(part.get("Content-Disposition", ""))
        content_type = str(part.get("Content-Type", ""))
        if _QUOTED_2231.search(disposition) or _QUOTED_2231.search(content_type):
            filename = ""
        out: dict[str, Any] = {
            "partId": part_id,
            "mimeType": mime,
            "filename": filename,
            "headers": headers,
        }
        if mime == "message/rfc822":
            inner = part.get_payload()
            first = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(first, email.message.Message):
                out["body"] = {"size": 0}
                out["parts"] = [walk(first, f"{part_id}.0" if part_id else "0")]
                return out
        elif part.is_multipart():
            subparts = part.get_payload()
            assert isinstance(subparts, list)
            out["body"] = {"size": 0}
            out["parts"] = [
                walk(sub, f"{part_id}.{i}" if part_id else str(i)) for i, sub in enumerate(subparts)
            ]
            return out
        decoded = part.get_payload(decode=True)
        data = decoded if isinstance(decoded, bytes) else b""
        if not filename and part.get_content_maintype() == "text":
            utf8 = gmail_text(part, data)
            out["body"] = {"size": len(data), "data": b64url(utf8)}
            if mime in ("text/plain", "text/html") and not raw_name:
                texts.append((mime, utf8.decode("utf-8")))
            return out
        named = named or bool(raw_name)
        aid = _attachment_id(msg_id, part_id)
        attachments[aid] = data
        out["body"] = {"attachmentId": aid, "size": len(data)}
        return out

    payload = walk(msg, "")
    plain = next((t for m, t in texts if m == "text/plain"), None)
    if plain is None:
        plain = next((_strip_html(t) for m, t in texts if m == "text/html"), "")
    collapsed = " ".join(plain.split())
    snippet = escape_snippet(collapsed[:SNIPPET_LENGTH].rstrip())
    index: dict[str, list[str]] = {}
    for h in payload["headers"]:
        index.setdefault(h["name"].lower(), []).append(h["value"])
    text = " ".join(t for _, t in texts)
    searchable = [
        text,
        *(v for name in ("subject", "from", "to", "cc") for v in index.get(name, [])),
        *filenames,
    ]
    words = re.findall(r"\w+", " ".join(searchable).lower())
    return Parsed(payload, snippet, attachments, index, text, named, filenames, words)


@dataclass
class Label:
    id: str
    name: str
    type: str
    message_list_visibility: str | None = None
    label_list_visibility: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.message_list_visibility:
            out["messageListVisibility"] = self.message_list_visibility
        if self.label_list_visibility:
            out["labelListVisibility"] = self.label_list_visibility
        out["type"] = self.type
        return out


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    label_ids: list[str]
    internal_date: int
    history_id: int
    #: Emulator clock time from which ``messages.list?q=`` can return it (search lag fault).
    searchable_at: float = 0.0
    _parsed: Parsed | None = field(default=None, repr=False)

    @property
    def parsed(self) -> Parsed:
        if self._parsed is None:
            self._parsed = parse_message(self.id, self.raw)
        return self._parsed

    def ref(self) -> dict[str, str]:
        return {"id": self.id, "threadId": self.thread_id}

    def base(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "threadId": self.thread_id,
            "labelIds": list(self.label_ids),
            "snippet": self.parsed.snippet,
            "sizeEstimate": len(self.raw),
            "historyId": str(self.history_id),
            "internalDate": str(self.internal_date),
        }

    def render(self, fmt: str, metadata_headers: list[str] | None = None) -> dict[str, Any]:
        out = self.base()
        if fmt == "minimal":
            return out
        if fmt == "raw":
            out["raw"] = b64url(self.raw)
            return out
        payload = self.parsed.payload
        if fmt == "metadata":
            wanted = {h.lower() for h in metadata_headers or []}
            headers = [h for h in payload["headers"] if not wanted or h["name"].lower() in wanted]
            # The exact metadata payload shape is unverified (reference section 6): Google
            # documents "ID, labels, and email headers", so no body and no parts.
            out["payload"] = {
                "partId": "",
                "mimeType": payload["mimeType"],
                "filename": "",
                "headers": headers,
            }
            return out
        out["payload"] = payload
        return out


@dataclass
class HistoryRecord:
    id: int
    kind: str  # messageAdded | messageDeleted | labelAdded | labelRemoved
    message_id: str
    thread_id: str
    message_labels: list[str]
    changed_labels: list[str]
    at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        ref = {"id": self.message_id, "threadId": self.thread_id}
        out: dict[str, Any] = {"id": str(self.id), "messages": [ref]}
        if self.kind == "messageAdded":
            out["messagesAdded"] = [{"message": {**ref, "labelIds": list(self.message_labels)}}]
        elif self.kind == "messageDeleted":
            out["messagesDeleted"] = [{"message": ref}]
        elif self.kind == "labelAdded":
            out["labelsAdded"] = [
                {
                    "message": {**ref, "labelIds": list(self.message_labels)},
                    "labelIds": list(self.changed_labels),
                }
            ]
        else:
            out["labelsRemoved"] = [
                {
                    "message": {**ref, "labelIds": list(self.message_labels)},
                    "labelIds": list(self.changed_labels),
                }
            ]
        return out


class Mailbox:
    def __init__(self, email_address: str, clock: Clock, rng: random.Random) -> None:
        self.email = email_address
        self.clock = clock
        self.rng = rng
        self.messages: dict[str, StoredMessage] = {}
        self.labels: dict[str, Label] = {
            d["id"]: Label(
                d["id"],
                d["id"],
                "system",
                d.get("messageListVisibility"),
                d.get("labelListVisibility"),
            )
            for d in SYSTEM_LABELS
        }
        self.history: list[HistoryRecord] = []
        #: The records' ids, in step with ``history``, for binary search by history.list.
        self._history_ids: list[int] = []
        self.history_id = rng.randrange(1000, 90_000)
        self.floor = 0
        #: Seconds a new message stays invisible to ``messages.list?q=`` after it is added
        #: (and in the history): the search index lagging behind, a fault (``set_search_lag``).
        self.search_lag = 0.0
        self._next_label = 1
        self._id_counter = rng.randrange(0, 1 << 12)
        self._thread_by_message_id: dict[str, str] = {}
        self._sorted: list[StoredMessage] | None = None
        #: The last messages.list result (key, matches), so paging through a large mailbox
        #: evaluates the query once instead of once per page (quadratic otherwise).
        self.list_cache: tuple[Hashable, list[StoredMessage]] | None = None

    # ---- history ----

    def _bump(self) -> int:
        # History ids increase with random gaps, as Google's do (reference section 1.2).
        self.history_id += self.rng.randint(1, 50)
        return self.history_id

    def _record(self, kind: str, msg: StoredMessage, changed: list[str] | None = None) -> None:
        hid = self._bump()
        msg.history_id = hid
        self.history.append(
            HistoryRecord(
                hid,
                kind,
                msg.id,
                msg.thread_id,
                list(msg.label_ids),
                changed or [],
                self.clock.now(),
            )
        )
        self._history_ids.append(hid)

    def records_after(self, after: int, limit: int) -> list[HistoryRecord]:
        """Up to ``limit`` records with an id above ``after``, oldest first."""
        start = bisect.bisect_right(self._history_ids, after)
        return self.history[start : start + limit]

    def effective_floor(self, retention: float | None) -> int:
        """The explicit floor, raised past records older than ``retention`` seconds."""
        floor = self.floor
        if retention is not None:
            cutoff = self.clock.now() - retention
            for rec in self.history:
                if rec.at >= cutoff:
                    break
                floor = max(floor, rec.id)  # changes after rec.id are all still kept
        return floor

    def set_floor(self, history_id: int | None) -> int:
        self.floor = self.history_id if history_id is None else history_id
        return self.floor

    # ---- messages ----

    def _new_id(self, internal_date: int) -> str:
        self._id_counter = (self._id_counter + self.rng.randint(1, 64)) & 0xFFFFF
        value = ((max(internal_date, 0) & ((1 << 43) - 1)) << 20) | self._id_counter
        candidate = f"{value:016x}"
        while candidate in self.messages:
            value += 1
            candidate = f"{value:016x}"
        return candidate

    def _check_labels(self, label_ids: list[str]) -> None:
        for lid in label_ids:
            if lid not in self.labels:
                raise ValueError(f"unknown label id {lid!r}; create it with create_label first")

    def add_message(
        self,
        raw: bytes,
        label_ids: list[str],
        *,
        internal_date: int | None = None,
        thread_id: str | None = None,
    ) -> str:
        self._check_labels(label_ids)
        headers = _PARSER.parsebytes(raw, headersonly=True)
        if internal_date is None:
            date = headers.get("Date")
            parsed_date = None
            if date:
                try:
                    parsed_date = email.utils.parsedate_to_datetime(str(date))
                except (TypeError, ValueError):
                    parsed_date = None
            if parsed_date is not None and parsed_date.tzinfo is not None:
                internal_date = int(parsed_date.timestamp() * 1000)
            else:
                internal_date = int(self.clock.now() * 1000)
        msg_id = self._new_id(internal_date)
        if thread_id is None:
            refs = " ".join(str(headers.get(h, "")) for h in ("In-Reply-To", "References"))
            for ref in reversed(re.findall(r"<[^>]+>", refs)):
                if ref in self._thread_by_message_id:
                    thread_id = self._thread_by_message_id[ref]
                    break
        msg = StoredMessage(
            msg_id,
            thread_id or msg_id,
            raw,
            list(dict.fromkeys(label_ids)),
            internal_date,
            0,
            searchable_at=self.clock.now() + self.search_lag,
        )
        own = str(headers.get("Message-ID", "")).strip()
        if own:
            self._thread_by_message_id[own] = msg.thread_id
        self.messages[msg_id] = msg
        self._sorted = None
        self._record("messageAdded", msg)
        return msg_id

    def get(self, msg_id: str) -> StoredMessage:
        try:
            return self.messages[msg_id]
        except KeyError:
            raise KeyError(f"no message {msg_id!r} in {self.email}") from None

    def modify_labels(self, msg_id: str, add: list[str], remove: list[str]) -> list[str]:
        msg = self.get(msg_id)
        self._check_labels(add + remove)
        added = [lid for lid in dict.fromkeys(add) if lid not in msg.label_ids]
        removed = [
            lid for lid in dict.fromkeys(remove) if lid in msg.label_ids and lid not in added
        ]
        if added:
            msg.label_ids.extend(added)
            self._record("labelAdded", msg, added)
        if removed:
            msg.label_ids = [lid for lid in msg.label_ids if lid not in removed]
            self._record("labelRemoved", msg, removed)
        return list(msg.label_ids)

    def delete_message(self, msg_id: str) -> None:
        msg = self.get(msg_id)
        del self.messages[msg_id]
        self._sorted = None
        self._record("messageDeleted", msg)

    def sorted_messages(self) -> list[StoredMessage]:
        """Newest first, as messages.list orders them."""
        if self._sorted is None:
            self._sorted = sorted(
                self.messages.values(), key=lambda m: (m.internal_date, m.id), reverse=True
            )
        return self._sorted

    # ---- labels ----

    def create_label(self, name: str, label_id: str | None = None) -> str:
        for lbl in self.labels.values():
            if lbl.name.lower() == name.lower():
                raise ValueError(f"a label named {name!r} already exists")
        if label_id is None:
            label_id = f"Label_{self._next_label}"
            self._next_label += 1
        self.labels[label_id] = Label(label_id, name, "user", "show", "labelShow")
        return label_id

    def delete_label(self, label_id: str) -> None:
        lbl = self.labels.get(label_id)
        if lbl is None or lbl.type == "system":
            raise ValueError(f"{label_id!r} is not a user label of {self.email}")
        for msg in self.messages.values():
            if label_id in msg.label_ids:
                msg.label_ids.remove(label_id)
                self._record("labelRemoved", msg, [label_id])
        del self.labels[label_id]

    def label_by_name(self, name: str) -> Label | None:
        wanted = name.lower().replace("-", " ").replace("/", " ")
        for lbl in self.labels.values():
            if (
                lbl.id.lower() == name.lower()
                or lbl.name.lower().replace("-", " ").replace("/", " ") == wanted
            ):
                return lbl
        return None

    def label_counts(self, label_id: str) -> dict[str, int]:
        msgs = [m for m in self.messages.values() if label_id in m.label_ids]
        unread = [m for m in msgs if "UNREAD" in m.label_ids]
        return {
            "messagesTotal": len(msgs),
            "messagesUnread": len(unread),
            "threadsTotal": len({m.thread_id for m in msgs}),
            "threadsUnread": len({m.thread_id for m in unread}),
        }
