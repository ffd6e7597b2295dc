"""Property-based tests (hypothesis) for the Gmail parsers (issue 13, item 4).

* Generated MIME trees (nested multiparts, message/rfc822, text in several charsets with
  base64 / quoted-printable / 8bit, BOMs, named and unnamed attachments, RFC 2231 names) go
  through the emulator's format=full and raw renderings and the importer's model: both modes
  give the same item, which matches Python's ``email`` package on the raw bytes.
* Responses generated from Gmail's discovery document (every field optional, any shape the
  schema allows) never make the parsers fail in any way but the documented one.
"""

from __future__ import annotations

import base64
import email.message
import email.utils
import importlib.resources
import json
import random
from functools import cache
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mime_oracle import expected_attachments, expected_text, header

from trayapp.core.errors import SyncError
from trayapp.emulator.gmail_store import Mailbox
from trayapp.emulator.state import Clock
from trayapp.google.errors import GoogleServerError
from trayapp.google.gmail import _history_records, _message_refs
from trayapp.patterns.gmail import _apply_record, _Change
from trayapp.patterns.gmail_message import HEADERS, to_item

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- MIME trees ------------------------------------------------------------------------------

ALPHABETS = {
    "utf-8": "abcXYZ éßü日本語😀 \n.,'<>&",
    "iso-8859-1": "abcXYZ éèüßñ \n.,",
    "windows-1252": "abcXYZ éü€ \n.,",
    "koi8-r": "abc абвгдеж \n.,",
    "iso-2022-jp": "abc 日本語のテキスト \n",
    "gb2312": "abc 你好中文 \n",
    "us-ascii": "abcXYZ 0123 \n.,;:!",
}
NAMES = st.text(alphabet="abcXYZ éü日本 -_", min_size=1, max_size=12).map(str.strip).filter(bool)

Spec = tuple[Any, ...]


@st.composite
def text_leaf(draw: st.DrawFn) -> Spec:
    charset = draw(st.sampled_from(sorted(ALPHABETS)))
    text = draw(st.text(alphabet=ALPHABETS[charset], max_size=60))
    bom = charset == "utf-8" and draw(st.booleans())
    subtype = draw(st.sampled_from(["plain", "plain", "html"]))
    cte = draw(st.sampled_from([None, "base64", "quoted-printable"]))
    attached = draw(st.sampled_from([None, None, "attachment"]))
    name = draw(st.none() | NAMES.map(lambda n: n + ".txt"))
    return ("text", text, charset, bom, subtype, cte, attached, name)


@st.composite
def binary_leaf(draw: st.DrawFn) -> Spec:
    data = draw(st.binary(max_size=64))
    mime = draw(st.sampled_from(["application/pdf", "image/png", "application/octet-stream"]))
    name = draw(st.none() | NAMES.map(lambda n: n + ".bin"))
    disposition = draw(st.sampled_from([None, "attachment", "inline"]))
    return ("binary", data, mime, name, disposition)


def trees() -> st.SearchStrategy[Spec]:
    leaves = text_leaf() | binary_leaf()
    return st.recursive(
        leaves,
        lambda children: (
            st.tuples(
                st.just("multipart"),
                st.sampled_from(["mixed", "alternative", "related"]),
                st.lists(children, min_size=1, max_size=3),
            )
            | st.tuples(st.just("rfc822"), st.text(alphabet="abc é", max_size=10), children)
        ),
        max_leaves=6,
    )


def fill(part: email.message.MIMEPart, spec: Spec) -> None:
    kind = spec[0]
    if kind == "text":
        _, text, charset, bom, subtype, cte, attached, name = spec
        extra: dict[str, Any] = {}
        if cte is not None:
            extra["cte"] = cte
        if attached or name:
            extra["disposition"] = attached or "attachment"
        if name:
            extra["filename"] = name
        body = ("\ufeff" if bom else "") + text
        if charset in ("iso-2022-jp",) and cte is None:
            extra["cte"] = "7bit"
        part.set_content(body, subtype=subtype, charset=charset, **extra)
    elif kind == "binary":
        _, data, mime, name, disposition = spec
        maintype, subtype = mime.split("/")
        kwargs: dict[str, Any] = {}
        if name:
            kwargs["filename"] = name
        if disposition:
            kwargs["disposition"] = disposition
        part.set_content(data, maintype=maintype, subtype=subtype, **kwargs)
    elif kind == "multipart":
        _, subtype, children = spec
        {"mixed": part.make_mixed, "alternative": part.make_alternative}.get(
            subtype, part.make_related
        )()
        for child_spec in children:
            child = email.message.MIMEPart()
            fill(child, child_spec)
            part.attach(child)
    else:
        _, subject, child_spec = spec
        inner = email.message.EmailMessage()
        inner["From"] = "Inner <inner@example.com>"
        inner["Subject"] = subject or "inner"
        fill(inner, child_spec)
        part.set_content(inner)


def message_bytes(spec: Spec, subject: str, sender: str) -> bytes:
    msg = email.message.EmailMessage()
    msg["From"] = email.utils.formataddr((sender, "sender@example.com"))
    msg["To"] = "alice@example.com"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 05 Jan 2026 10:00:00 +0000"
    fill(msg, spec)
    return msg.as_bytes()


@cache
def _box() -> Mailbox:
    return Mailbox("me@example.com", Clock(), random.Random(7))


def body_texts(spec: Spec) -> list[str]:
    """The text/plain bodies a reader must find (not attachments)."""
    if spec[0] == "text":
        _, text, _charset, _bom, subtype, _cte, attached, name = spec
        return [text] if subtype == "plain" and not attached and not name else []
    if spec[0] == "multipart":
        return [t for child in spec[2] for t in body_texts(child)]
    if spec[0] == "rfc822":
        return body_texts(spec[2])
    return []


@SETTINGS
@given(
    trees(),
    st.text(alphabet="abc XYZ éü日本 ", max_size=30),
    st.text(alphabet="abc éü日本, ", max_size=20),
)
def test_generated_mime_trees_read_the_same_in_both_modes_and_as_email_does(
    spec: Spec, subject: str, sender: str
) -> None:
    raw = message_bytes(spec, subject, sender)
    box = _box()
    stored = box.get(box.add_message(raw, ["INBOX"]))
    full_json = stored.render("full")
    full = to_item(full_json, "text+html")
    from_raw = to_item(stored.render("raw"), "raw")

    oracle = email.message_from_bytes(raw, policy=email.policy.default)
    attachments = expected_attachments(raw)
    assert full["attachments"] == attachments
    assert from_raw["attachments"] == attachments
    for item in (full, from_raw):
        for name in HEADERS.values():
            if name in ("subject", "from", "to", "date"):
                wanted = header(
                    oracle, {"subject": "Subject", "from": "From", "to": "To"}.get(name, "Date")
                )
                assert item[name] == wanted, name
        assert (item["text"] or "").replace("\r\n", "\n") == expected_text(raw)
        for text in body_texts(spec):
            for line in text.replace("\ufeff", "").split("\n"):
                assert line.strip() in (item["text"] or "")

    # Gmail's rules for the full tree: text leaves inline as UTF-8 without a BOM, the size of
    # the original bytes; anything named or not text has an attachmentId and no data.
    def check(part: dict[str, Any]) -> None:
        body = part["body"]
        if part.get("parts"):
            assert body == {"size": 0}
            for child in part["parts"]:
                check(child)
            return
        if part["mimeType"].startswith("text/") and not part["filename"]:
            data = base64.urlsafe_b64decode(body["data"])
            assert not data.startswith(b"\xef\xbb\xbf")
            data.decode("utf-8")  # valid UTF-8 whatever the charset
        elif part["mimeType"] != "message/rfc822":
            assert "data" not in body and "attachmentId" in body

    check(full_json["payload"])


# ---- discovery-valid responses ---------------------------------------------------------------


@cache
def gmail_schemas() -> dict[str, Any]:
    doc = json.loads(
        (
            importlib.resources.files("googleapiclient") / "discovery_cache/documents/gmail.v1.json"
        ).read_text("utf-8")
    )
    schemas: dict[str, Any] = doc["schemas"]
    return schemas


def from_discovery(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Any JSON value the discovery schema allows (every property optional, as in discovery)."""
    if "$ref" in schema:
        if depth > 3:
            return st.just({})
        return st.deferred(lambda: from_discovery(gmail_schemas()[schema["$ref"]], depth + 1))
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") or {}
        return st.fixed_dictionaries(
            {}, optional={k: from_discovery(v, depth) for k, v in props.items()}
        )
    if kind == "array":
        return st.lists(from_discovery(schema.get("items", {}), depth), max_size=3)
    if kind == "string":
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        fmt = schema.get("format")
        if fmt in ("int64", "uint64"):
            return st.integers(0, 2**63 - 1).map(str)
        if fmt == "byte":
            return st.binary(max_size=48).map(lambda b: base64.urlsafe_b64encode(b).decode())
        return st.text(max_size=20)
    if kind == "integer":
        return st.integers(-(2**31), 2**31 - 1)
    if kind == "boolean":
        return st.booleans()
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    return st.none()


def schema(name: str) -> st.SearchStrategy[Any]:
    return from_discovery({"$ref": name})


@SETTINGS
@given(schema("Message"), st.sampled_from(["headers", "text", "text+html", "raw"]))
def test_any_discovery_valid_message_becomes_an_item_or_a_clear_error(
    message: dict[str, Any], parts: Any
) -> None:
    try:
        item = to_item(message, parts)
    except ValueError as exc:
        # The one documented failure: raw mode without a usable raw form.
        assert parts == "raw" and "raw" in str(exc)
        return
    assert set(HEADERS.values()) <= set(item)
    if parts == "headers" or (parts != "raw" and not isinstance(message.get("payload"), dict)):
        assert item["attachments"] is None  # unknown: no part tree to read
    else:
        assert isinstance(item["attachments"], list)
        for att in item["attachments"]:
            assert set(att) == {"partId", "filename", "mimeType", "size"}
            assert isinstance(att["size"], int) and isinstance(att["filename"], str)


def _has_id(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("id"), str) and bool(entry["id"])


@SETTINGS
@given(schema("ListMessagesResponse"))
def test_a_message_page_is_accepted_exactly_when_every_entry_names_a_message(
    page: dict[str, Any],
) -> None:
    entries = page.get("messages", [])
    try:
        refs = _message_refs(entries, "messages.list")
    except GoogleServerError:
        assert not all(_has_id(e) for e in entries)
        return
    assert all(_has_id(e) for e in refs)


@SETTINGS
@given(schema("ListHistoryResponse"))
def test_a_history_page_is_accepted_only_when_every_change_names_a_message(
    page: dict[str, Any],
) -> None:
    records = page.get("history", [])
    try:
        accepted = _history_records(records)
    except GoogleServerError as exc:
        assert isinstance(exc, SyncError)
        return
    changes: dict[str, _Change] = {}
    for record in accepted:
        _apply_record(changes, record)  # never raises on an accepted page
    named = {
        change["message"]["id"]
        for record in accepted
        for key in ("messagesAdded", "messagesDeleted", "labelsAdded", "labelsRemoved")
        for change in record.get(key, [])
    }
    assert set(changes) == named
