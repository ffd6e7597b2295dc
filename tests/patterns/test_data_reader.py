"""The "Your data" reader against what a real sync stored from the emulator.

It lists what Gmail (the emulator) holds, opens a message as .eml, expands recurring events as
Google does, exports through the pattern, and reads through a connection that cannot write,
even while the engine holds a write transaction open.
"""

from __future__ import annotations

import email
import email.policy
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from gcal_helpers import truth

from tests.emulator.harness import timed_event
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.store import StoreError
from trayapp.patterns.gcalendar import CalendarImporter
from trayapp.patterns.gmail import GmailImporter
from trayapp.ui.data_reader import DataReader

GoogleHarness = Any
HarnessFactory = Any


@pytest.fixture
async def h(google_harness: HarnessFactory) -> GoogleHarness:
    return await google_harness(patterns=(GmailImporter, CalendarImporter))


async def test_mail_rows_match_the_mailbox_and_open_as_eml(
    h: GoogleHarness, tmp_path: Path
) -> None:
    ids = [
        h.add_mail(f"Invoice {n}", sender=f"Shop {n} <shop{n}@example.com>",
                   internal_date_ms=1_700_000_000_000 + n * 1000)
        for n in range(5)
    ]  # fmt: skip
    h.add_mail("Lunch?", labels=("INBOX", "STARRED"), internal_date_ms=1_700_000_100_000)
    charm = h.add_charm("gmail-importer", {"parts": "text"})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    info = h.engine.charm(charm)
    reader = DataReader(h.engine.profile.db_path, h.engine.patterns)
    try:
        rows = await reader.mail(info)
        assert len(rows) == len(await h.query_ids(None)) == 6
        assert rows[0].subject == "Lunch?" and "STARRED" in rows[0].labels  # newest first
        assert {r.key for r in rows} >= set(ids)
        invoice = next(r for r in rows if r.subject == "Invoice 3")
        assert invoice.sender == "Shop 3"
        assert invoice.date == datetime.fromtimestamp(1_700_000_003, UTC)
        found = await reader.mail(info, "shop3")
        assert [r.subject for r in found] == ["Invoice 3"]
        assert [r.subject for r in await reader.mail(info, "starred lunch")] == ["Lunch?"]
        data = await reader.eml(info, invoice.key)
        assert data is not None
        msg = email.message_from_bytes(data, policy=email.policy.default)
        assert msg["Subject"] == "Invoice 3" and "shop3@example.com" in str(msg["From"])
        assert "Body of message" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert await reader.count(info, "messages") == 6
        n = await reader.export(info, "jsonl", tmp_path / "mail.jsonl")
        assert n == 6 and len((tmp_path / "mail.jsonl").read_text().splitlines()) == 6
    finally:
        reader.close()


async def test_events_are_expanded_as_google_does(h: GoogleHarness) -> None:
    c = h.emu.control
    cal = "primary"
    c.add_event(
        h.email,
        cal,
        timed_event(
            "standup",
            "2026-10-19T09:00:00Z",
            "2026-10-19T09:30:00Z",
            recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"],
        ),
    )
    c.add_event(
        h.email, cal, timed_event("dentist", "2026-10-21T08:00:00Z", "2026-10-21T09:00:00Z")
    )
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    start, end = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    reader = DataReader(h.engine.profile.db_path, h.engine.patterns)
    try:
        rows = await reader.events(h.engine.charm(charm), start, end)
    finally:
        reader.close()
    google = await truth(h, cal, start, end)
    assert [(r.start, r.summary) for r in rows] == sorted((g[1], g[3]) for g in google)
    assert [r.summary for r in rows].count("standup") == 4
    assert all(r.recurring for r in rows if r.summary == "standup")


async def test_the_reader_cannot_write_and_is_not_blocked_by_a_write(h: GoogleHarness) -> None:
    h.add_mail("one")
    charm = h.add_charm("gmail-importer", {"parts": "headers"})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    info = h.engine.charm(charm)
    reader = DataReader(h.engine.profile.db_path, h.engine.patterns)
    try:
        with h.engine.store.transaction():  # the engine is writing (uncommitted)
            h.collection(charm, "messages").upsert("x-new", {"subject": "not committed"})
            rows = await reader.mail(info)  # WAL: the reader sees the last commit, at once
            assert [r.subject for r in rows] == ["one"]

        def write(store: Any) -> None:
            store.collection(f"charm:{charm}:messages").upsert("x", {"subject": "nope"})

        with pytest.raises((StoreError, sqlite3.Error), match=r"(?i)read"):
            await reader._run(write)
    finally:
        reader.close()
    assert "x" not in dict(h.collection(charm, "messages").items())


async def test_the_trays_ics_export_runs_off_the_loop_on_its_own_connection(
    h: GoogleHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17.5: an export (20,000 events took 22-43 s) never runs on the event loop thread,
    nor through the engine's connection: counted by where the pattern's export was called."""
    for n in range(30):
        day = f"2026-11-{1 + n % 28:02d}"
        event = timed_event(f"e{n}", f"{day}T09:00:00Z", f"{day}T10:00:00Z")
        h.emu.control.add_event(h.email, "primary", event)
    charm = h.add_charm("gcalendar-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    calls: list[tuple[int, Any]] = []
    real = CalendarImporter.export

    def export(self: Any, source: Any, fmt: str, dest: Path) -> int:
        calls.append((threading.get_ident(), source.collection("events")._store))
        return real(self, source, fmt, dest)

    monkeypatch.setattr(CalendarImporter, "export", export)
    reader = DataReader(h.engine.profile.db_path, h.engine.patterns)
    try:
        n = await reader.export(h.engine.charm(charm), "ics", tmp_path / "cal.ics")
    finally:
        reader.close()
    assert n == 30 and (tmp_path / "cal.ics").read_bytes().count(b"BEGIN:VEVENT") == 30
    assert len(calls) == 1
    thread, store = calls[0]
    assert thread != threading.get_ident() and store is not h.engine.store
