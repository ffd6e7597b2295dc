"""What Python's ``email`` package says about raw message bytes: the oracle the Gmail tests
compare the importer's items with (Subject/From/To/Date, body text, attachments)."""

from __future__ import annotations

import email.header
import email.message
import email.parser
import email.policy
from typing import Any

PARSER = email.parser.BytesParser(policy=email.policy.default)


def header(msg: email.message.Message, name: str) -> str | None:
    try:
        values = msg.get_all(name)
    except (IndexError, ValueError, TypeError):
        return None
    return ", ".join(" ".join(str(v).split()) for v in values) if values else None


def filename(part: email.message.Message) -> str:
    try:
        name = part.get_filename()
    except (IndexError, ValueError, TypeError, LookupError):
        return ""
    return str(email.header.make_header(email.header.decode_header(name))).strip() if name else ""


def leaves(
    part: email.message.Message, part_id: str = ""
) -> list[tuple[str, email.message.Message]]:
    if part.is_multipart():
        out = []
        for i, child in enumerate(part.get_payload()):  # type: ignore[arg-type]
            out += leaves(child, f"{part_id}.{i}" if part_id else str(i))
        return out
    return [(part_id, part)]


def expected_attachments(raw: bytes) -> list[dict[str, Any]]:
    """Every leaf that is not body text (text/plain or text/html, unnamed, not an attachment)."""
    out = []
    for part_id, part in leaves(PARSER.parsebytes(raw)):
        mime = part.get_content_type()
        name = filename(part)
        try:
            disposition = part.get_content_disposition()
        except (IndexError, ValueError, TypeError):
            disposition = None
        if mime in ("text/plain", "text/html") and not name and disposition != "attachment":
            continue
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        if mime.startswith("multipart/") and not size:
            continue
        out.append({"partId": part_id, "filename": name, "mimeType": mime, "size": size})
    return out


def expected_text(raw: bytes) -> str:
    """The plain-text body parts, decoded by their declared charset (a mislabelled part comes
    out as garbage either way: Gmail decodes by the label too), BOM dropped, joined."""
    texts = []
    for _, part in leaves(PARSER.parsebytes(raw)):
        if part.get_content_type() != "text/plain" or filename(part):
            continue
        if part.get_content_disposition() == "attachment":
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        try:
            text = data.decode(part.get_content_charset() or "utf-8", "replace")
        except LookupError:
            text = data.decode("utf-8", "replace")
        texts.append(text.removeprefix("\ufeff"))
    return "\n".join(texts).replace("\r\n", "\n")
