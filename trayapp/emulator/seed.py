"""The demo world: a realistic mailbox and calendars, generated deterministically.

Everything comes from one seeded RNG and an anchor day (today, by default), so two seeds with
the same anchor produce byte-identical mailboxes and calendars. Messages are written as raw
RFC 822 text (with RFC 2047 encoded non-ASCII headers, HTML alternatives, attachments and
reply threads) and go through the same ``add_message`` path as test data, so the demo exercises
exactly what the tests do. Seeding ~3,000 messages takes well under the 2 s budget because
messages are parsed lazily, on first read.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trayapp.emulator.control import Control

DEMO_EMAIL = "demo@example.com"
DEMO_NAME = "Demo User"
DEMO_CLIENT_ID = "100000000000-demo0000000000000000000000000000.apps.googleusercontent.com"
DEMO_CLIENT_SECRET = "GOCSPX-emulator-demo-client-secret"

SENDERS = [
    ("Renée Müller", "renee.mueller@example.de"),
    ("José Álvarez", "jose@example.es"),
    ("田中 太郎", "tanaka@example.jp"),
    ("Zoë O'Brien", "zoe@example.ie"),
    ("Ana Lívia", "ana@example.com.br"),
    ("Søren Kierkegaard", "soren@example.dk"),
    ("Priya Natarajan", "priya@example.in"),
    ("GitHub", "noreply@github.com"),
    ("Acme Billing", "billing@acme.example"),
    ("The Weekly Digest", "digest@news.example"),
    ("Alex Chen", "alex.chen@example.com"),
    ("Maria Rossi", "maria.rossi@example.it"),
]
TOPICS = [
    "Quarterly planning",
    "Réunion de lancement",
    "Déjà vu: the deploy again",
    "Straße closed on Friday",
    "会議の議事録",
    "Your invoice #{n}",
    "Trip to Zürich ✈️",
    "Lunch tomorrow?",
    "[repo] Pull request #{n} merged",
    "Weekly digest: {n} new posts",
    "Photos from the weekend 📷",
    "Re-org & next steps",
    "Budget <draft> for review",
    'Can you review my "final" slides?',
]
BODIES = [
    "Hi,\n\nhere's the update we talked about. Let me know what you think — "
    "I'd like to wrap it up by Friday.\n\nThanks!",
    "Bonjour,\n\nVoici le compte rendu de la réunion. À bientôt !",
    "Hallo zusammen,\n\ndie Straße ist am Freitag gesperrt. Bitte plant mehr Zeit ein.\n\nGrüße",
    "こんにちは。\n\n会議の議事録を添付します。よろしくお願いします。",
    "Your payment of $42.00 was received. Thank you for being a customer & friend.",
    "New posts this week: <tips>, tricks, and a 5-minute read on sync engines.",
]
LABELS = ["Work", "Family", "Receipts", "Travel/2026", "Newsletters", "GitHub"]
ATTACHMENTS = [
    ("report.pdf", "application/pdf", b"%PDF-1.4\n% demo report\n" + bytes(range(256)) * 4),
    ("photo.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8),
    ("invite.ics", "text/calendar", b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"),
    (
        "Übersicht.xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        b"PK\x03\x04" + bytes(200),
    ),
]


@dataclass(frozen=True)
class DemoInfo:
    email: str
    name: str
    client_id: str
    client_secret: str
    message_count: int
    calendar_ids: tuple[str, ...]


def _addr(name: str, email_address: str) -> str:
    if name.isascii():
        return (
            f'"{name}" <{email_address}>'
            if "'" in name or "," in name
            else f"{name} <{email_address}>"
        )
    return f"{Header(name, 'utf-8').encode()} <{email_address}>"


def _subject(text: str) -> str:
    return text if text.isascii() else Header(text, "utf-8").encode()


def _b64_lines(data: bytes) -> str:
    encoded = base64.b64encode(data).decode()
    return "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


def build_message(
    rng: random.Random,
    *,
    sender: tuple[str, str],
    to: tuple[str, str],
    subject: str,
    body: str,
    when: datetime,
    message_id: str,
    in_reply_to: str | None,
    attachment: tuple[str, str, bytes] | None,
    html: bool,
) -> bytes:
    headers = [
        f"From: {_addr(*sender)}",
        f"To: {_addr(*to)}",
        f"Subject: {_subject(subject)}",
        f"Date: {format_datetime(when)}",
        f"Message-ID: {message_id}",
    ]
    if in_reply_to:
        headers += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
    headers.append("MIME-Version: 1.0")
    text_part = (
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + _b64_lines(body.encode())
    )
    if html:
        html_body = (
            "<html><body>"
            + "".join(f"<p>{line}</p>" for line in body.split("\n") if line)
            + "</body></html>"
        )
        alt = "alt" + str(rng.randrange(10**9))
        text_part = (
            f'Content-Type: multipart/alternative; boundary="{alt}"\r\n\r\n'
            f"--{alt}\r\n{text_part}\r\n"
            f"--{alt}\r\nContent-Type: text/html; charset=utf-8\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n"
            f"{_b64_lines(html_body.encode())}\r\n--{alt}--"
        )
    if attachment is None:
        return ("\r\n".join(headers) + "\r\n" + text_part + "\r\n").encode()
    name, mime, data = attachment
    mixed = "mix" + str(rng.randrange(10**9))
    fname = name if name.isascii() else f"=?utf-8?b?{base64.b64encode(name.encode()).decode()}?="
    return (
        "\r\n".join(headers)
        + f'\r\nContent-Type: multipart/mixed; boundary="{mixed}"\r\n\r\n'
        + f"--{mixed}\r\n{text_part}\r\n"
        + f'--{mixed}\r\nContent-Type: {mime}; name="{fname}"\r\n'
        + f'Content-Disposition: attachment; filename="{fname}"\r\n'
        + "Content-Transfer-Encoding: base64\r\n\r\n"
        + f"{_b64_lines(data)}\r\n--{mixed}--\r\n"
    ).encode()


def seed_demo(
    control: Control,
    email: str = DEMO_EMAIL,
    *,
    messages: int = 3000,
    seed: int = 20260105,
    anchor: datetime | None = None,
) -> DemoInfo:
    """Create the demo account, client, mailbox and calendars; deterministic per anchor day."""
    rng = random.Random(seed)
    now = anchor or datetime.fromtimestamp(control.now(), UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    control.create_account(email, name=DEMO_NAME)
    control.create_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    control.set_consent(default_account=email)
    label_ids = {name: control.create_label(email, name) for name in LABELS}
    me = (DEMO_NAME, email)

    threads: list[tuple[str, str, tuple[str, str]]] = []  # (message-id, subject, correspondent)
    count = 0
    for i in range(messages):
        when = today - timedelta(seconds=rng.randrange(0, 365 * 86400)) + timedelta(hours=9)
        if threads and rng.random() < 0.3:
            parent_id, subj, other = rng.choice(threads)
            subject = subj if subj.startswith("Re: ") else "Re: " + subj
            reply_to: str | None = parent_id
        else:
            other = rng.choice(SENDERS)
            subject = rng.choice(TOPICS).format(n=rng.randrange(100, 9999))
            reply_to = None
        outgoing = rng.random() < 0.12
        sender, to = (me, other) if outgoing else (other, me)
        msg_id = f"<demo-{i}-{rng.randrange(10**12)}@{sender[1].partition('@')[2]}>"
        attachment = rng.choice(ATTACHMENTS) if rng.random() < 0.1 else None
        raw = build_message(
            rng,
            sender=sender,
            to=to,
            subject=subject,
            body=rng.choice(BODIES),
            when=when,
            message_id=msg_id,
            in_reply_to=reply_to,
            attachment=attachment,
            html=rng.random() < 0.5,
        )
        labels = _labels_for(rng, outgoing, sender[1], subject, when, today, label_ids)
        control.add_message(
            email, raw, label_ids=labels, internal_date=int(when.timestamp() * 1000)
        )
        threads.append((msg_id, subject, other))
        if len(threads) > 200:
            threads.pop(0)
        count += 1

    calendar_ids = _seed_calendars(control, email, rng, today)
    return DemoInfo(email, DEMO_NAME, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, count, calendar_ids)


def _labels_for(
    rng: random.Random,
    outgoing: bool,
    sender: str,
    subject: str,
    when: datetime,
    today: datetime,
    label_ids: dict[str, str],
) -> list[str]:
    if outgoing:
        return ["SENT"]
    r = rng.random()
    if r < 0.02:
        return ["SPAM"]
    if r < 0.04:
        return ["TRASH"]
    labels = ["INBOX"] if rng.random() < 0.7 else []
    if when > today - timedelta(days=14) and rng.random() < 0.6:
        labels.append("UNREAD")
    if rng.random() < 0.05:
        labels.append("STARRED")
    if rng.random() < 0.2:
        labels.append("IMPORTANT")
    if "github" in sender:
        labels += [label_ids["GitHub"], "CATEGORY_UPDATES"]
    elif "digest" in sender:
        labels += [label_ids["Newsletters"], "CATEGORY_PROMOTIONS"]
    elif "billing" in sender:
        labels += [label_ids["Receipts"], "CATEGORY_UPDATES"]
    else:
        labels.append("CATEGORY_PERSONAL")
        if "Zürich" in subject:
            labels.append(label_ids["Travel/2026"])
        elif rng.random() < 0.3:
            labels.append(label_ids["Work"] if rng.random() < 0.7 else label_ids["Family"])
    return labels


def _id(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789abcdefghijklmnopqrstuv") for _ in range(26))


def _seed_calendars(
    control: Control, email: str, rng: random.Random, today: datetime
) -> tuple[str, ...]:
    control.update_calendar(email, email, timeZone="Europe/Berlin")
    work = control.add_calendar(
        email,
        f"{_id(rng)}@group.calendar.google.com",
        summary="Work",
        timeZone="Europe/Berlin",
        backgroundColor="#4986e7",
    )
    family = control.add_calendar(
        email,
        f"{_id(rng)}@group.calendar.google.com",
        summary="Family",
        timeZone="Europe/Berlin",
        backgroundColor="#f691b2",
    )
    birthdays = control.add_calendar(
        email,
        "#contacts@group.v.calendar.google.com",
        summary="Birthdays",
        timeZone="Europe/Berlin",
        accessRole="reader",
    )
    holidays = control.add_calendar(
        email,
        "en.usa#holiday@group.v.calendar.google.com",
        summary="Holidays in United States",
        timeZone="America/New_York",
        accessRole="reader",
    )
    monday = today - timedelta(days=today.weekday() + 28)

    def at(day: datetime, hour: int, minute: int = 0) -> str:
        return day.strftime("%Y-%m-%d") + f"T{hour:02d}:{minute:02d}:00+01:00"

    tz = "Europe/Berlin"
    standup = control.add_event(
        email,
        work,
        {
            "id": _id(rng),
            "summary": "Daily standup",
            "start": {"dateTime": at(monday, 9, 30), "timeZone": tz},
            "end": {"dateTime": at(monday, 9, 45), "timeZone": tz},
            "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"],
        },
    )
    occurrences = [
        e for e in _instances(control, email, work, standup) if e >= monday + timedelta(days=7)
    ]
    moved, cancelled = occurrences[2], occurrences[6]
    control.update_event(
        email,
        work,
        f"{standup}_{moved.strftime('%Y%m%dT%H%M%SZ')}",
        {
            "summary": "Daily standup (moved: all-hands)",
            "start": {"dateTime": (moved + timedelta(hours=2)).isoformat(), "timeZone": tz},
            "end": {
                "dateTime": (moved + timedelta(hours=2, minutes=15)).isoformat(),
                "timeZone": tz,
            },
        },
    )
    control.cancel_event(email, work, f"{standup}_{cancelled.strftime('%Y%m%dT%H%M%SZ')}")
    control.add_event(
        email,
        work,
        {
            "id": _id(rng),
            "summary": "1:1 with Renée",
            "start": {"dateTime": at(monday + timedelta(days=1), 14), "timeZone": tz},
            "end": {"dateTime": at(monday + timedelta(days=1), 14, 30), "timeZone": tz},
            "recurrence": ["RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TU"],
            "attendees": [
                {"email": email, "self": True, "responseStatus": "accepted"},
                {
                    "email": "renee.mueller@example.de",
                    "displayName": "Renée Müller",
                    "responseStatus": "accepted",
                },
            ],
        },
    )
    control.add_event(
        email,
        work,
        {
            "id": _id(rng),
            "summary": "Monthly review",
            "location": "Raum Zürich, 3. OG",
            "start": {"dateTime": at(monday, 16), "timeZone": tz},
            "end": {"dateTime": at(monday, 17), "timeZone": tz},
            "recurrence": ["RRULE:FREQ=MONTHLY;BYDAY=1MO;COUNT=12"],
        },
    )
    control.add_event(
        email,
        family,
        {
            "id": _id(rng),
            "summary": "Gym 🏋️",
            "start": {"dateTime": at(monday, 7), "timeZone": tz},
            "end": {"dateTime": at(monday, 8), "timeZone": tz},
            "recurrence": [
                "RRULE:FREQ=WEEKLY;BYDAY=MO,TH;"
                f"UNTIL={(today + timedelta(days=90)).strftime('%Y%m%d')}T000000Z"
            ],
        },
    )
    for name in ("Renée Müller", "José Álvarez", "田中 太郎", "Zoë O'Brien"):
        day = today + timedelta(days=rng.randrange(-180, 180))
        control.add_event(
            email,
            birthdays,
            {
                "id": _id(rng),
                "summary": f"{name}'s birthday",
                "start": {"date": day.strftime("%Y-%m-%d")},
                "end": {"date": (day + timedelta(days=1)).strftime("%Y-%m-%d")},
                "recurrence": ["RRULE:FREQ=YEARLY"],
                "eventType": "birthday",
                "transparency": "transparent",
            },
        )
    for title, month, day_of_month in (
        ("New Year's Day", 1, 1),
        ("Independence Day", 7, 4),
        ("Christmas Day", 12, 25),
    ):
        for year in (today.year, today.year + 1):
            control.add_event(
                email,
                holidays,
                {
                    "id": _id(rng),
                    "summary": title,
                    "start": {"date": f"{year}-{month:02d}-{day_of_month:02d}"},
                    "end": {
                        "date": (datetime(year, month, day_of_month) + timedelta(days=1)).strftime(
                            "%Y-%m-%d"
                        )
                    },
                    "transparency": "transparent",
                },
            )
    for _ in range(120):
        day = today + timedelta(days=rng.randrange(-90, 90))
        hour = rng.randrange(8, 18)
        cal = rng.choice([email, work, family])
        control.add_event(
            email,
            cal,
            {
                "id": _id(rng),
                "summary": rng.choice(
                    [
                        "Dentist",
                        "Coffee with Alex",
                        "Design review",
                        "Kita pick-up",
                        "Flight to Zürich ✈️",
                        "Call with José",
                        "Team lunch",
                    ]
                ),
                "start": {"dateTime": at(day, hour), "timeZone": tz},
                "end": {"dateTime": at(day, hour + 1), "timeZone": tz},
            },
        )
    return (email, work, family, birthdays, holidays)


def _instances(control: Control, email: str, calendar_id: str, event_id: str) -> list[datetime]:
    store = control.state.account(email).calendars
    cal = store.calendars[calendar_id]
    return [
        datetime.strptime(inst["id"].rsplit("_", 1)[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        for inst in store.expand(cal, cal.events[event_id], None, None)[:40]
    ]
