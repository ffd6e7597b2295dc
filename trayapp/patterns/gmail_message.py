"""Gmail ``Message`` resources turned into the JSON items the Gmail importer stores.

Three shapes come back from ``messages.get`` depending on what the charm keeps:

* ``metadata`` (headers only): the requested headers, no body and no part tree, so no
  attachment list either (``attachments`` is ``None``: unknown, not "none");
* ``full`` (text, text + HTML): Gmail's parsed part tree. Gmail serves the ``data`` of text
  parts re-encoded as UTF-8 whatever charset the part declares (``size`` stays the original
  byte count) and without a UTF-8 byte-order mark, so it is decoded as UTF-8 here;
* ``raw`` (raw, for ``.eml`` export): only the RFC 822 bytes, parsed here with the standard
  library's ``email`` package (which knows MIME, RFC 2047 headers and charsets far better than
  hand-written code would).

Both part trees are read by one model, so a charm lists the same body text and the same
attachments in ``full`` and ``raw`` mode:

* parts are numbered as Gmail numbers them (``""``, ``"0"``, ``"0.1"``...), and an enclosed
  ``message/rfc822`` is walked like the top level (Gmail expands it into its parts);
* a leaf is body text when it is ``text/plain`` or ``text/html`` with no file name and no
  ``Content-Disposition: attachment``; every other leaf is an attachment, named or not, so no
  part the raw bytes have is lost;
* an attachment is ``{"partId", "filename", "mimeType", "size"}``; the name comes from the
  part's own headers through ``email`` (RFC 2231, also the quoted ``filename*="UTF-8''..."`` that
  Gmail reports as an empty ``filename``, and RFC 2047), ``size`` is the decoded byte count.

Every item has the same keys whatever the shape, so consumers never need to know the setting.
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.header
import email.message
import email.parser
import email.policy
import html
from collections.abc import Mapping
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
        if parts == "headers":
            _fill_headers(item, _headers_message(payload.get("headers")))
        else:
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


# ---- one model for both part trees ----------------------------------------------------------

_HEADER_PARSER = email.parser.Parser(policy=email.policy.default)


def _fill_headers(item: dict[str, Any], msg: email.message.Message) -> None:
    for name, key in HEADERS.items():
        try:
            values = msg.get_all(name)
        except (IndexError, ValueError, TypeError):  # a header email cannot make sense of
            values = None
        if values:
            item[key] = ", ".join(" ".join(_header_text(v).split()) for v in values)


def _header_text(value: Any) -> str:
    text = str(value)
    if "=?" in text:  # an encoded word left undecoded (Gmail's headers may carry them as sent)
        try:
            return str(email.header.make_header(email.header.decode_header(text)))
        except (email.errors.HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
            return text
    return text


def _headers_message(headers: Any) -> email.message.Message:
    """Gmail's ``headers`` list as an ``email`` message (headers only) read by ``email``."""
    lines: list[str] = []
    if isinstance(headers, list):
        for header in headers:
            if not isinstance(header, Mapping):
                continue
            name = str(header.get("name") or "")
            value = " ".join(str(header.get("value") or "").split())
            if name and all(33 <= ord(ch) <= 126 and ch != ":" for ch in name):
                lines.append(f"{name}: {value}")
    return _HEADER_PARSER.parsestr("\n".join(lines) + "\n\n", headersonly=True)


def _filename(part: email.message.Message) -> str:
    try:
        name = part.get_filename()
    except (IndexError, ValueError, TypeError, LookupError):
        return ""
    return _header_text(name).strip() if name else ""


def _disposition(part: email.message.Message) -> str:
    try:
        return part.get_content_disposition() or ""
    except (IndexError, ValueError, TypeError):
        return ""


def _is_body_text(mime: str, filename: str, disposition: str) -> bool:
    return mime in ("text/plain", "text/html") and not filename and disposition != "attachment"


def _finish(
    item: dict[str, Any],
    texts: list[str],
    htmls: list[str],
    attachments: list[dict[str, Any]],
    *,
    keep_html: bool,
) -> None:
    item["text"] = "\n".join(texts) if texts else None
    item["html"] = ("\n".join(htmls) if htmls else None) if keep_html else None
    item["attachments"] = attachments


def _child_id(part_id: str, index: int) -> str:
    return f"{part_id}.{index}" if part_id else str(index)


# ---- full format --------------------------------------------------------------------------


def _fill_from_payload(
    item: dict[str, Any], payload: Mapping[str, Any], *, keep_html: bool
) -> None:
    _fill_headers(item, _headers_message(payload.get("headers")))
    texts: list[str] = []
    htmls: list[str] = []
    attachments: list[dict[str, Any]] = []

    def walk(part: Mapping[str, Any], part_id: str) -> None:
        children = part.get("parts")
        if isinstance(children, list) and children:
            for index, child in enumerate(children):
                if isinstance(child, Mapping):
                    walk(child, str(child.get("partId") or _child_id(part_id, index)))
            return
        mime = str(part.get("mimeType") or "").lower()
        raw_body = part.get("body")
        body: Mapping[str, Any] = raw_body if isinstance(raw_body, Mapping) else {}
        if mime.startswith("multipart/") and not _int(body.get("size")):
            return  # an empty container
        headers = _headers_message(part.get("headers"))
        # Gmail's own ``filename`` is empty for a quoted RFC 2231 name: read the headers then.
        filename = str(part.get("filename") or "").strip() or _filename(headers)
        data = body.get("data")
        if _is_body_text(mime, filename, _disposition(headers)) and isinstance(data, str):
            text = decode_b64url(data).decode("utf-8", "replace").removeprefix("\ufeff")
            (texts if mime == "text/plain" else htmls).append(text)
            return
        attachments.append(
            {
                "partId": part_id,
                "filename": filename,
                "mimeType": mime,
                "size": _int(body.get("size")),
            }
        )

    walk(payload, str(payload.get("partId") or ""))
    _finish(item, texts, htmls, attachments, keep_html=keep_html)


# ---- raw format ---------------------------------------------------------------------------


def _fill_from_raw(item: dict[str, Any], data: bytes) -> None:
    msg = _PARSER.parsebytes(data)
    _fill_headers(item, msg)
    texts: list[str] = []
    htmls: list[str] = []
    attachments: list[dict[str, Any]] = []

    def walk(part: email.message.Message, part_id: str) -> None:
        mime = part.get_content_type()
        if part.is_multipart():  # multipart/* and a parsed message/rfc822 (one child)
            children = part.get_payload()
            if isinstance(children, list):
                for index, child in enumerate(children):
                    if isinstance(child, email.message.Message):
                        walk(child, _child_id(part_id, index))
            return
        filename = _filename(part)
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        if mime.startswith("multipart/") and not content:
            return  # an empty container (one email could not split is kept, as its bytes)
        if _is_body_text(mime, filename, _disposition(part)):
            (texts if mime == "text/plain" else htmls).append(_part_text(part, content))
            return
        attachments.append(
            {"partId": part_id, "filename": filename, "mimeType": mime, "size": len(content)}
        )

    walk(msg, "")
    _finish(item, texts, htmls, attachments, keep_html=True)


def _part_text(part: email.message.Message, content: bytes) -> str:
    charset = part.get_content_charset() or "utf-8"
    try:
        text = content.decode(charset, "replace")
    except LookupError:
        text = content.decode("utf-8", "replace")
    return text.removeprefix("\ufeff")


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
