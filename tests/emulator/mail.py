"""RFC 822 messages used by the Gmail tests."""

from __future__ import annotations

import base64

MULTIPART = (
    b"From: =?utf-8?q?Ren=C3=A9e_M=C3=BCller?= <renee@example.com>\r\n"
    b"To: Alice <alice@example.com>\r\n"
    b"Cc: carol@example.org\r\n"
    b"Subject: =?utf-8?b?UsOpdW5pb24=?= it's\r\n"
    b" <today>\r\n"
    b"Date: Mon, 05 Jan 2026 10:00:00 +0000\r\n"
    b"Message-ID: <m1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b'Content-Type: multipart/alternative; boundary="b2"\r\n'
    b"\r\n"
    b"--b2\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Hello it's caf=C3=A9 & <b>friends</b>\r\n"
    b"--b2\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Hello it's caf\xc3\xa9</p>\r\n"
    b"--b2--\r\n"
    b"--b1\r\n"
    b'Content-Type: application/pdf; name="report.pdf"\r\n'
    b'Content-Disposition: attachment; filename="report.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQKJcOkw7zDtsOfCg==\r\n"
    b"--b1--\r\n"
)

PDF_BYTES = base64.b64decode(b"JVBERi0xLjQKJcOkw7zDtsOfCg==")


def simple(
    subject: str,
    *,
    sender: str = "bob@example.com",
    to: str = "alice@example.com",
    date: str = "Tue, 06 Jan 2026 09:00:00 +0000",
    body: str = "Plain body.",
    message_id: str | None = None,
    in_reply_to: str | None = None,
) -> bytes:
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}", f"Date: {date}"]
    if message_id:
        lines.append(f"Message-ID: {message_id}")
    if in_reply_to:
        lines += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
    lines += ["Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode()
