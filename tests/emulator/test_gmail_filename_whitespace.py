"""Header unfolding in the emulator's part tree keeps a file name's own whitespace.

RFC 5322 section 2.2.3: unfolding removes the line break before the folding whitespace and
nothing else. A quoted name with two spaces (found by the MIME property test) stays as sent;
a long name folded across lines comes back whole. Python's ``email`` on the raw bytes is the
oracle, as in the corpus tests.
"""

from __future__ import annotations

import email
import email.message
import email.policy

import pytest

from trayapp.emulator.gmail_store import parse_message

NAMES = [
    "X  X.txt",
    "tab\tinside.txt",
    "a very long file name that is folded across lines when the header is written out.pdf",
]


@pytest.mark.parametrize("name", NAMES)
def test_the_full_format_file_name_is_the_one_the_raw_bytes_carry(name: str) -> None:
    msg = email.message.EmailMessage()
    msg["Subject"] = "names"
    msg["From"] = "a@example.com"
    msg.set_content("body")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename=name)
    raw = msg.as_bytes()
    oracle = [
        part.get_filename()
        for part in email.message_from_bytes(raw, policy=email.policy.default).walk()
        if part.get_filename()
    ]
    assert oracle == [name]
    assert parse_message("m1", raw).filenames == oracle
