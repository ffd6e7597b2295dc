"""Gmail's search language in messages.list?q= (issue 13): a real parser, Gmail's operators,
Pacific-time dates, and 400 for what cannot be parsed."""

from __future__ import annotations

import email.message
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.emulator.harness import EmulatorServer, Session

from .conftest import bearer

G = "/gmail/v1/users/me"
PACIFIC = ZoneInfo("America/Los_Angeles")


def mail(
    subject: str,
    *,
    sender: str = "Bob <bob@example.com>",
    to: str = "alice@example.com",
    cc: str | None = None,
    bcc: str | None = None,
    body: str = "Plain body.",
    extra: dict[str, str] | None = None,
    attachment: tuple[str, bytes] | None = None,
) -> bytes:
    msg = email.message.EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    if bcc:
        msg["Bcc"] = bcc
    msg["Subject"] = subject
    for name, value in (extra or {}).items():
        msg[name] = value
    msg.set_content(body)
    if attachment:
        msg.add_attachment(
            attachment[1], maintype="application", subtype="octet-stream", filename=attachment[0]
        )
    return msg.as_bytes()


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


@pytest.fixture
async def box(emu: EmulatorServer, session: Session) -> dict[str, str]:
    """Names -> ids of a small mailbox with one message per property the operators test."""
    add = emu.control.add_message
    e = session.email
    work = emu.control.create_label(e, "Work")
    day = datetime(2026, 3, 10, 12, 0, tzinfo=PACIFIC)
    ids = {
        "report": add(
            e,
            mail("Quarterly report", body="the quarterly numbers are in"),
            ["INBOX", "UNREAD", "CATEGORY_PERSONAL"],
            ms(day),
        ),
        "alice": add(
            e,
            mail("Lunch", sender="Alice <alice@example.org>", cc="carol@example.com"),
            ["INBOX", "CATEGORY_SOCIAL", work],
            ms(day.replace(day=11)),
        ),
        "list": add(
            e,
            mail(
                "Digest",
                sender="list@lists.example.net",
                extra={"List-Id": "Dev list <dev.lists.example.net>", "Delivered-To": "me@x.io"},
                body="see https://docs.google.com/document/d/1 and youtube.com/watch?v=1",
            ),
            ["INBOX", "CATEGORY_FORUMS"],
            ms(day.replace(day=12)),
        ),
        "pdf": add(
            e,
            mail("Invoice", bcc="dave@example.com", attachment=("invoice-2026.pdf", b"x" * 5000)),
            ["INBOX", "STARRED", "IMPORTANT", "CATEGORY_UPDATES"],
            ms(day.replace(day=13)),
        ),
        "spam": add(e, mail("Win money"), ["SPAM"], ms(day.replace(day=14))),
        "sent": add(
            e,
            mail("report draft", sender="alice@example.com", to="bob@example.com"),
            ["SENT"],
            ms(day.replace(day=15)),
        ),
    }
    return ids


async def search(http: httpx.AsyncClient, s: Session, q: str) -> httpx.Response:
    return await http.get(f"{G}/messages", params={"q": q}, headers=bearer(s.access_token))


async def names(http: httpx.AsyncClient, s: Session, box: dict[str, str], q: str) -> set[str]:
    resp = await search(http, s, q)
    assert resp.status_code == 200, f"{q!r}: {resp.text}"
    found = {m["id"] for m in resp.json().get("messages", [])}
    return {name for name, mid in box.items() if mid in found}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        # OR, braces, parentheses, negation, AND
        ("from:alice OR from:bob", {"report", "alice", "pdf", "sent"}),
        ("from:(alice OR list)", {"alice", "list", "sent"}),
        ("from:{alice list}", {"alice", "list", "sent"}),
        ("{subject:lunch subject:digest}", {"alice", "list"}),
        ("(from:alice OR from:list) in:inbox", {"alice", "list"}),
        ("in:inbox -from:bob", {"alice", "list"}),
        ("-(from:bob OR from:list) in:inbox", {"alice"}),
        ("from:bob AND subject:invoice", {"pdf"}),
        # OR binds tighter than the implicit AND
        ("in:inbox subject:lunch OR subject:digest", {"alice", "list"}),
        # operators on groups and phrases
        ("subject:(quarterly report)", {"report"}),
        ("subject:(report quarterly)", {"report"}),
        ('subject:"quarterly report"', {"report"}),
        ('"quarterly numbers"', {"report"}),
        ('"numbers quarterly"', set()),
        ("+quarterly", {"report"}),
        # whole words: a plain word also finds longer forms of itself, not other words
        ("port", set()),
        ("quarter", {"report"}),
        ("+quarter", set()),
        ('"quarter numbers"', set()),
        ("subject:rep", {"report", "sent"}),
        ("from:example.org", {"alice"}),
        ("from:ample", set()),
        ("quarterly AROUND 2 in", {"report"}),
        # header operators
        ("cc:carol", {"alice"}),
        ("bcc:dave", {"pdf"}),
        ("to:carol", {"alice"}),
        ("deliveredto:me@x.io", {"list"}),
        ("list:dev@lists.example.net", {"list"}),
        ("list:dev.lists.example.net", {"list"}),
        # attachments and sizes
        ("filename:pdf", {"pdf"}),
        ("filename:invoice-2026.pdf", {"pdf"}),
        ("has:attachment", {"pdf"}),
        ("larger:4K", {"pdf"}),
        ("smaller:4K in:inbox", {"report", "alice", "list"}),
        ("size:4000", {"pdf"}),
        # labels, categories, flags
        ("category:primary", {"report"}),
        ("category:social", {"alice"}),
        ("category:forums", {"list"}),
        ("category:updates", {"pdf"}),
        ("category:purchases", set()),
        ("has:userlabels", {"alice"}),
        ("has:nouserlabels in:inbox", {"report", "list", "pdf"}),
        ("label:work", {"alice"}),
        ("in:sent", {"sent"}),
        ("in:spam", {"spam"}),
        ("in:anywhere subject:win", {"spam"}),
        ("subject:win", set()),
        ("is:starred", {"pdf"}),
        ("is:unstarred in:inbox", {"report", "alice", "list"}),
        ("is:important", {"pdf"}),
        ("is:unread", {"report"}),
        ("is:read in:inbox", {"alice", "list", "pdf"}),
        ("is:snoozed", set()),
        ("has:yellow-star", {"pdf"}),
        ("has:document", {"list"}),
        ("has:youtube", {"list"}),
        # dates: calendar dates are midnight Pacific; seconds are exact
        ("after:2026/03/11 before:2026/03/13", {"alice", "list"}),
        ("after:03/11/2026 before:03/13/2026", {"alice", "list"}),
        ("newer:2026/03/14", {"sent"}),
        ("older:2026/03/11", {"report"}),
        (
            f"after:{int(datetime(2026, 3, 11, 12, tzinfo=PACIFIC).timestamp())} "
            f"before:{int(datetime(2026, 3, 11, 12, tzinfo=PACIFIC).timestamp()) + 1}",
            {"alice"},
        ),
        ("", {"report", "alice", "list", "pdf", "sent"}),
    ],
)
async def test_gmail_search_operators(
    http: httpx.AsyncClient, session: Session, box: dict[str, str], q: str, expected: set[str]
) -> None:
    assert await names(http, session, box, q) == expected


async def test_calendar_dates_are_pacific_midnights(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    # 2026-03-11 05:00 UTC is still 2026-03-10 in California (22:00 PDT).
    late = emu.control.add_message(
        session.email,
        mail("late"),
        internal_date=ms(datetime(2026, 3, 11, 5, tzinfo=ZoneInfo("UTC"))),
    )
    on_the_10th = await search(http, session, "after:2026/03/10 before:2026/03/11")
    assert [m["id"] for m in on_the_10th.json()["messages"]] == [late]
    assert "messages" not in (await search(http, session, "after:2026/03/11")).json()


@pytest.mark.parametrize(
    "q",
    [
        "(from:alice",
        "from:alice)",
        "{from:alice",
        '"unclosed phrase',
        "from:alice OR",
        "OR from:alice",
        "from:",
        "()",
        "after:2026/13/45",
        "larger:big",
        "newer_than:3w",
        "is:purple",
        "category:nonsense",
        "has:magic",
        "nosuchoperator:x",
        "a AROUND b",
    ],
)
async def test_what_cannot_be_parsed_answers_400(
    http: httpx.AsyncClient, session: Session, q: str
) -> None:
    resp = await search(http, session, q)
    assert resp.status_code == 400, q
    body: dict[str, Any] = resp.json()
    assert body["error"]["message"].startswith("Invalid query")
