"""Gmail ``Message`` resources turned into the JSON items the Gmail importer stores.

Three shapes come back from ``messages.get`` depending on what the charm keeps:

* ``metadata`` (headers only): the requested headers, no body and no part tree, so no
  attachment list either (``attachments`` is ``None``: unknown, not "none");
* ``full`` (text, text + HTML): Gmail's parsed part tree; bodies come as base64url ``data`` in
  the part's own charset, attachments as parts with a ``filename``;
* ``raw`` (raw, for ``.eml`` export): only the RFC 822 bytes, parsed here with the standard
  library's ``email`` package (which knows MIME, RFC 2047 headers and charsets far better than
  hand-written code would).

Every item has the same keys whatever the shape, so consumers never need to know the setting.
"""

from __future__ import annotations

import base64
import binascii
import email.message
import email.parser
import email.policy
import html
from collections.abc import Iterator, Mapping
from typing import Any, Literal

Parts = Literal["headers", "text", "text+html", "raw"]

#: Headers kept on every item (and requested as ``metadataHeaders`` for headers-only).
HEADERS: dict[str, str] = {
    "From": "from",
    "To": "to",
    "Cc": "cc",
    "Subject": "subject",
    "Date": "date",
    "Message-ID": "messageId",
}
HEADER_NAMES: tuple[str, ...] = tuple(HEADERS)

_PARSER = email.parser.BytesParser(policy=email.policy.default)


def api_format(parts: Parts) -> Literal["metadata", "full", "raw"]:
    """The ``messages.get`` format that gives what ``parts`` keeps, and nothing more."""
    if parts == "headers":
        return "metadata"
    if parts == "raw":
        return "raw"
    return "full"


def to_item(message: Mapping[str, Any], parts: Parts) -> dict[str, Any]:
    """The stored item for a ``messages.get`` result fetched in ``api_format(parts)``."""
    item: dict[str, Any] = {
        "id": str(message.get("id", "")),
        "threadId": str(message.get("threadId", "")),
        "labelIds": sorted(str(label) for label in message.get("labelIds") or []),
        "internalDate": internal_date(message),
        "snippet": html.unescape(str(message.get("snippet") or "")),
        "size": _int(message.get("sizeEstimate")),
    }
    for key in HEADERS.values():
        item[key] = None
    item["text"] = None
    item["html"] = None
    item["attachments"] = None
    if parts == "raw":
        raw = message.get("raw")
        if not isinstance(raw, str):
            raise ValueError(f"Gmail sent message {item['id']} without its raw form")
        data = decode_b64url(raw)
        _fill_from_raw(item, data)
        item["raw"] = raw
        return item
    payload = message.get("payload")
    if isinstance(payload, Mapping):
        _fill_headers(item, payload.get("headers"))
        if parts != "headers":
            _fill_from_payload(item, payload, keep_html=parts == "text+html")
    return item


def with_labels(item: Mapping[str, Any], label_ids: list[str]) -> dict[str, Any]:
    """A stored item with new labels (the only part of a Gmail message that ever changes)."""
    return {**item, "labelIds": sorted(label_ids)}


def internal_date(message: Mapping[str, Any]) -> int:
    """``internalDate`` (epoch milliseconds, sent as a string) as an int; 0 when missing."""
    return _int(message.get("internalDate"))


def decode_b64url(data: str) -> bytes:
    """Gmail's base64url, with or without its ``=`` padding."""
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("Gmail sent data that is not base64url") from exc


# ---- full format --------------------------------------------------------------------------


def _fill_headers(item: dict[str, Any], headers: Any) -> None:
    if not isinstance(headers, list):
        return
    wanted = {name.lower(): key for name, key in HEADERS.items()}
    for header in headers:
        if not isinstance(header, Mapping):
            continue
        key = wanted.get(str(header.get("name", "")).lower())
        value = header.get("value")
        if key is None or not isinstance(value, str):
            continue
        # A repeated header (two To: lines) is one list of addresses to a reader.
        item[key] = value if item[key] is None else f"{item[key]}, {value}"


def _walk(part: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield part
    for child in part.get("parts") or []:
        if isinstance(child, Mapping):
            yield from _walk(child)


def _fill_from_payload(
    item: dict[str, Any], payload: Mapping[str, Any], *, keep_html: bool
) -> None:
    texts: list[str] = []
    htmls: list[str] = []
    attachments: list[dict[str, Any]] = []
    for part in _walk(payload):
        mime = str(part.get("mimeType") or "").lower()
        body = part.get("body") if isinstance(part.get("body"), Mapping) else {}
        assert isinstance(body, Mapping)
        filename = str(part.get("filename") or "")
        if filename:
            attachments.append(
                {"filename": filename, "mimeType": mime, "size": _int(body.get("size"))}
            )
            continue
        if mime not in ("text/plain", "text/html"):
            continue
        data = body.get("data")
        if not isinstance(data, str) or _is_attachment(part.get("headers")):
            continue
        text = decode_b64url(data).decode(_charset(part.get("headers")), "replace")
        (texts if mime == "text/plain" else htmls).append(text)
    item["text"] = "\n".join(texts) if texts else None
    item["html"] = ("\n".join(htmls) if htmls else None) if keep_html else None
    item["attachments"] = attachments


def _header_value(headers: Any, name: str) -> str:
    if isinstance(headers, list):
        for header in headers:
            if isinstance(header, Mapping) and str(header.get("name", "")).lower() == name:
                return str(header.get("value") or "")
    return ""


def _is_attachment(headers: Any) -> bool:
    return _header_value(headers, "content-disposition").strip().lower().startswith("attachment")


def _charset(headers: Any) -> str:
    """The part's declared charset if Python knows it, else UTF-8 (decoded with replacement)."""
    content_type = _header_value(headers, "content-type")
    msg = email.message.Message()
    msg["Content-Type"] = content_type or "text/plain"
    charset = msg.get_content_charset() or "utf-8"
    try:
        "".encode(charset)
    except LookupError:
        return "utf-8"
    return charset


# ---- raw format ---------------------------------------------------------------------------


def _fill_from_raw(item: dict[str, Any], data: bytes) -> None:
    msg = _PARSER.parsebytes(data)
    for name, key in HEADERS.items():
        values = msg.get_all(name)
        if values:
            item[key] = ", ".join(" ".join(str(v).split()) for v in values)
    texts: list[str] = []
    htmls: list[str] = []
    attachments: list[dict[str, Any]] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        mime = part.get_content_type()
        filename = part.get_filename()
        if filename or part.get_content_disposition() == "attachment":
            payload = part.get_payload(decode=True)
            size = len(payload) if isinstance(payload, bytes) else 0
            attachments.append({"filename": filename or "", "mimeType": mime, "size": size})
            continue
        if mime in ("text/plain", "text/html"):
            (texts if mime == "text/plain" else htmls).append(_part_text(part))
    item["text"] = "\n".join(texts) if texts else None
    item["html"] = "\n".join(htmls) if htmls else None
    item["attachments"] = attachments


def _part_text(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
