"""format=full part trees by Gmail's rules (issue 13), served over HTTP, and the importer's
one attachment model reading them the same way in ``full`` and ``raw`` mode."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from tests.emulator.harness import EmulatorServer, Session
from trayapp.patterns.gmail_message import to_item

from .conftest import bearer

G = "/gmail/v1/users/me"

# A forwarded message (message/rfc822) that carries its own signature.asc; an unnamed
# image; an empty text part; an ISO-2022-JP text part; a UTF-8 part with a byte-order mark;
# a PDF named with a quoted RFC 2231 value; an unnamed "attachment" text part; an RFC 2047 name.
TREE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.com\r\n"
    b"Subject: parts\r\n"
    b"Date: Mon, 05 Jan 2026 10:00:00 +0000\r\n"
    b"Message-ID: <tree@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"--outer\r\n"
    b"Content-Type: text/plain; charset=ISO-2022-JP\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"\r\n" + "日本語のテキスト\n".encode("iso-2022-jp") + b"\r\n--outer\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"\r\n--outer\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"\xef\xbb\xbf<p>BOM first</p>\r\n"
    b"--outer\r\n"
    b"Content-Type: image/png\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"iVBORw0KGgo=\r\n"
    b"--outer\r\n"
    b"Content-Type: application/pdf\r\n"
    b"Content-Disposition: attachment; filename*=\"UTF-8''XYZ%20A6-1.pdf\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--outer\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Disposition: attachment\r\n"
    b"\r\n"
    b"unnamed attached text\r\n"
    b"--outer\r\n"
    b'Content-Type: application/octet-stream; name="=?utf-8?b?w6lsw6g=?=.bin"\r\n'
    b"Content-Disposition: attachment\r\n"
    b"\r\n"
    b"xyz\r\n"
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: Carol <carol@example.com>\r\n"
    b"Subject: inner\r\n"
    b'Content-Type: multipart/signed; boundary="inner"; protocol="application/pgp-signature"\r\n'
    b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"inner text\r\n"
    b"--inner\r\n"
    b'Content-Type: application/pgp-signature; name="signature.asc"\r\n'
    b'Content-Disposition: attachment; filename="signature.asc"\r\n'
    b"\r\n"
    b"-----BEGIN PGP SIGNATURE-----\r\n"
    b"--inner--\r\n"
    b"\r\n--outer--\r\n"
)


async def fetch(http: httpx.AsyncClient, s: Session, mid: str, fmt: str) -> dict[str, Any]:
    resp = await http.get(
        f"{G}/messages/{mid}", params={"format": fmt}, headers=bearer(s.access_token)
    )
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def by_id(part: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {part["partId"]: part}
    for child in part.get("parts", []):
        out.update(by_id(child))
    return out


async def test_full_part_tree_follows_gmails_rules(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    mid = emu.control.add_message(session.email, TREE)
    parts = by_id((await fetch(http, session, mid, "full"))["payload"])

    # Text is re-encoded to UTF-8; size stays the original byte count.
    jp = parts["0"]["body"]
    original = "日本語のテキスト\n".encode("iso-2022-jp")
    assert base64.urlsafe_b64decode(jp["data"]).decode("utf-8").strip() == "日本語のテキスト"
    assert jp["size"] == len(original) != len(base64.urlsafe_b64decode(jp["data"]))
    # An empty text part.
    assert parts["1"]["body"] == {"size": 0, "data": ""}
    # A UTF-8 byte-order mark is dropped.
    assert base64.urlsafe_b64decode(parts["2"]["body"]["data"]).startswith(b"<p>BOM")
    # A non-text part without a filename: attachmentId, no inline data.
    png = parts["3"]
    assert png["filename"] == "" and "attachmentId" in png["body"] and "data" not in png["body"]
    # A quoted RFC 2231 name: Gmail reports an empty filename, the part is still there.
    pdf = parts["4"]
    assert pdf["filename"] == "" and pdf["body"]["size"] == 9 and "attachmentId" in pdf["body"]
    # An unnamed text part with Content-Disposition: attachment is still a text part.
    assert "data" in parts["5"]["body"]
    assert parts["6"]["filename"] == "élè.bin"
    # message/rfc822: {size: 0} and the enclosed message as its one part, walked on.
    fwd = parts["7"]
    assert fwd["mimeType"] == "message/rfc822" and fwd["body"] == {"size": 0}
    assert [p["partId"] for p in fwd["parts"]] == ["7.0"]
    inner = parts["7.0"]
    assert inner["mimeType"] == "multipart/signed" and inner["body"] == {"size": 0}
    assert {"name": "Subject", "value": "inner"} in inner["headers"]
    sig = parts["7.0.1"]
    assert sig["filename"] == "signature.asc" and "attachmentId" in sig["body"]
    got = await http.get(
        f"{G}/messages/{mid}/attachments/{sig['body']['attachmentId']}",
        headers=bearer(session.access_token),
    )
    assert base64.urlsafe_b64decode(got.json()["data"]).startswith(b"-----BEGIN PGP")


async def test_the_importer_reads_the_same_message_the_same_way_in_both_modes(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    mid = emu.control.add_message(session.email, TREE)
    full = to_item(await fetch(http, session, mid, "full"), "text+html")
    raw = to_item(await fetch(http, session, mid, "raw"), "raw")

    expected_attachments = [
        {"partId": "3", "filename": "", "mimeType": "image/png", "size": 8},
        {"partId": "4", "filename": "XYZ A6-1.pdf", "mimeType": "application/pdf", "size": 9},
        {"partId": "5", "filename": "", "mimeType": "text/plain", "size": 21},
        {"partId": "6", "filename": "élè.bin", "mimeType": "application/octet-stream", "size": 3},
        {
            "partId": "7.0.1",
            "filename": "signature.asc",
            "mimeType": "application/pgp-signature",
            "size": 29,
        },
    ]
    assert full["attachments"] == expected_attachments
    assert raw["attachments"] == expected_attachments
    for item in (full, raw):
        assert item["text"].split("\n")[0] == "日本語のテキスト", item["text"]
        assert "inner text" in item["text"]
        assert "\ufffd" not in item["text"]
        assert item["html"].startswith("<p>BOM first</p>")
        assert item["subject"] == "parts"
    assert full["text"].replace("\r\n", "\n") == raw["text"].replace("\r\n", "\n")
