"""The Gmail importer against the emulator: full and incremental sync, query and label filters.

Every test compares what the charm stored with what Gmail (the emulator) answers for the same
query, so "nothing lost, nothing extra" is checked against the server's own evaluation.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from trayapp.core.outcomes import OutcomeKind
from trayapp.patterns.gmail import GmailImporter, GmailState

# Fixtures come from tests/patterns/conftest.py (not importable by name: pytest owns it).
GoogleHarness = Any
HarnessFactory = Any


@pytest.fixture
async def h(google_harness: HarnessFactory) -> GoogleHarness:
    return await google_harness(patterns=(GmailImporter,))


def state_of(h: GoogleHarness, charm: str) -> GmailState:
    value = h.engine.store.cell(f"charm:{charm}:state", GmailState, default=GmailState()).get()
    assert isinstance(value, GmailState)
    return value


async def assert_matches_gmail(
    h: GoogleHarness, charm: str, query: str, labels: tuple[str, ...] = ()
) -> set[str]:
    expected = await h.query_ids(query, labels)
    stored = set(h.items(charm))
    assert stored == expected, (
        f"missing {sorted(expected - stored)}, extra {sorted(stored - expected)}"
    )
    return stored


async def test_full_sync_stores_the_query_result_with_headers_bodies_and_attachments(
    h: GoogleHarness,
) -> None:
    when = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    rich = h.add_mail(
        "Quarterly report",
        sender="Carol <carol@example.com>",
        body="Plain body ✓\n",
        html="<p>HTML body</p>",
        attachment=("report.pdf", b"%PDF-1.4 " + b"x" * 1000),
        when=when,
    )
    for n in range(7):
        h.add_mail(f"inbox {n}")
    outside = h.add_mail("archived", labels=("CATEGORY_UPDATES",))
    charm = h.add_charm("gmail-importer", {"query": "in:inbox", "parts": "text+html"})

    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert outcome.report.added == 8
    stored = await assert_matches_gmail(h, charm, "in:inbox")
    assert outside not in stored
    item = h.items(charm)[rich]
    assert item["subject"] == "Quarterly report"
    assert item["from"] == "Carol <carol@example.com>"
    assert item["to"] == h.email
    assert item["messageId"].startswith("<m")
    assert item["internalDate"] == int(when.timestamp() * 1000)
    assert item["text"].strip() == "Plain body ✓"
    assert item["html"].strip() == "<p>HTML body</p>"
    assert item["attachments"] == [
        {
            "partId": "1",
            "filename": "report.pdf",
            "mimeType": "application/octet-stream",
            "size": 1009,
        }
    ]
    assert sorted(item["labelIds"]) == ["INBOX", "UNREAD"]
    assert item["threadId"] and item["size"] > 1000 and item["snippet"]
    state = state_of(h, charm)
    assert state.full_sync is None and state.history_id is not None


@pytest.mark.parametrize(
    ("parts", "expected_format"),
    [("headers", "metadata"), ("text", "full"), ("text+html", "full"), ("raw", "raw")],
)
async def test_parts_setting_picks_the_cheapest_format_that_has_them(
    h: GoogleHarness, parts: str, expected_format: str
) -> None:
    mid = h.add_mail("hello", body="text body\n", html="<b>html</b>")
    charm = h.add_charm("gmail-importer", {"parts": parts})
    h.emu.control.clear_log()

    assert (await h.sync(charm)).kind is OutcomeKind.OK

    gets = h.emu.control.requests(api_method="gmail.users.messages.get")
    assert {e.query_values("format")[0] for e in gets} == {expected_format}
    if parts == "headers":
        assert set(gets[0].query_values("metadataHeaders")) == {
            "From",
            "To",
            "Cc",
            "Subject",
            "Date",
            "Message-ID",
        }
    item = h.items(charm)[mid]
    assert item["subject"] == "hello"
    assert (item["text"] is not None) == (parts != "headers")
    assert (item["html"] is not None) == (parts in ("text+html", "raw"))
    assert ("raw" in item) == (parts == "raw")


async def test_incremental_sync_applies_adds_deletes_and_label_moves_across_history_pages(
    h: GoogleHarness,
) -> None:
    keep = [h.add_mail(f"keep {n}") for n in range(5)]
    doomed = h.add_mail("to be deleted")
    to_archive = h.add_mail("to be archived")
    old_archived = h.add_mail("archived long ago", labels=("CATEGORY_UPDATES",))
    charm = h.add_charm("gmail-importer", {"query": "in:inbox"})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    await assert_matches_gmail(h, charm, "in:inbox")

    # More than 500 history records, so history.list answers in several pages.
    control = h.emu.control
    for _ in range(130):
        control.modify_labels(h.email, keep[0], remove=["UNREAD"])
        control.modify_labels(h.email, keep[0], add=["UNREAD"])
        control.modify_labels(h.email, keep[1], add=["STARRED"])
        control.modify_labels(h.email, keep[1], remove=["STARRED"])
    new = [h.add_mail(f"new {n}") for n in range(3)]
    new_elsewhere = h.add_mail("sent", labels=("SENT",))
    control.delete_message(h.email, doomed)
    control.modify_labels(h.email, to_archive, remove=["INBOX"])
    control.modify_labels(h.email, old_archived, add=["INBOX"])
    control.modify_labels(h.email, keep[2], add=["STARRED"])
    control.clear_log()

    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    history_calls = control.requests(api_method="gmail.users.history.list")
    assert len(history_calls) >= 2, "the history spans several pages"
    stored = await assert_matches_gmail(h, charm, "in:inbox")
    assert set(new) <= stored and old_archived in stored
    assert doomed not in stored and to_archive not in stored and new_elsewhere not in stored
    assert outcome.report.added == 4  # three new + the one moved into the inbox
    assert outcome.report.removed == 2  # deleted + archived
    assert "STARRED" in h.items(charm)[keep[2]]["labelIds"]
    assert state_of(h, charm).history_id == control.history_id(h.email)
    assert control.request_violations() == []  # every request fits Gmail's discovery document


async def test_query_is_honoured_in_incremental_mode(h: GoogleHarness) -> None:
    first = h.add_mail("invoice 1", sender="billing@shop.example")
    h.add_mail("newsletter", sender="news@list.example")
    query = "from:billing@shop.example"
    charm = h.add_charm("gmail-importer", {"query": query})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert set(h.items(charm)) == {first}

    second = h.add_mail("invoice 2", sender="billing@shop.example")
    h.add_mail("another newsletter", sender="news@list.example")
    h.add_mail("spam invoice", sender="billing@shop.example", labels=("SPAM",))
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert outcome.report.added == 1
    assert set(h.items(charm)) == {first, second}
    await assert_matches_gmail(h, charm, query)


async def test_relabelled_messages_cost_one_list_call_per_day_and_no_fetch(
    h: GoogleHarness,
) -> None:
    day = 24 * 3600 * 1000
    base = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp() * 1000)
    # Three messages on day 0 (minutes apart), one on day 10.
    ids = [h.add_mail(f"m{n}", internal_date_ms=base + n * 60_000) for n in range(3)]
    ids.append(h.add_mail("later", internal_date_ms=base + 10 * day))
    charm = h.add_charm("gmail-importer", {"query": "in:inbox"})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    for mid in ids:
        h.emu.control.modify_labels(h.email, mid, add=["STARRED"])
    h.emu.control.clear_log()

    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK and outcome.report.updated == 4
    methods = [e.api_method for e in h.emu.control.requests()]
    assert methods.count("gmail.users.messages.list") == 2  # one per day with changes
    assert "gmail.users.messages.get" not in methods and "gmail.batch" not in methods
    assert all("STARRED" in h.items(charm)[mid]["labelIds"] for mid in ids)


async def test_messages_that_cannot_match_cost_no_request(h: GoogleHarness) -> None:
    h.add_mail("first")
    charm = h.add_charm("gmail-importer", {"query": "in:inbox from:bob"})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    h.add_mail("sent by me", labels=("SENT",))
    h.add_mail("junk", labels=("SPAM",))
    h.emu.control.clear_log()

    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK and outcome.report.changed == 0
    assert [e.api_method for e in h.emu.control.requests()] == ["gmail.users.history.list"]


async def test_label_filter_in_both_modes_and_a_message_that_starts_matching_is_fetched(
    h: GoogleHarness,
) -> None:
    work = h.emu.control.create_label(h.email, "Work")
    tagged = h.add_mail("tagged", labels=("INBOX", work))
    untagged = h.add_mail("untagged")
    charm = h.add_charm("gmail-importer", {"query": "", "labels": ["work"]})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert set(h.items(charm)) == {tagged}

    h.emu.control.modify_labels(h.email, untagged, add=[work])
    h.emu.control.modify_labels(h.email, tagged, remove=[work])
    later = h.add_mail("new untagged")
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert set(h.items(charm)) == {untagged}
    assert later not in h.items(charm)
    await assert_matches_gmail(h, charm, "", (work,))


async def test_unknown_label_is_reported_with_what_to_fix(h: GoogleHarness) -> None:
    charm = h.add_charm("gmail-importer", {"labels": ["No Such Label"]})
    outcome = await h.sync(charm)
    assert outcome.kind is OutcomeKind.BUG
    assert "no label 'No Such Label'" in outcome.message
    assert "labels setting" in outcome.message


async def test_max_messages_keeps_the_newest_in_both_modes(h: GoogleHarness) -> None:
    base = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    ids = [h.add_mail(f"m{n}", internal_date_ms=base + n * 60_000) for n in range(8)]
    charm = h.add_charm("gmail-importer", {"max_messages": 3})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert set(h.items(charm)) == set(ids[-3:])

    newer = h.add_mail("newest", internal_date_ms=base + 100 * 60_000)
    outcome = await h.sync(charm)
    assert set(h.items(charm)) == {ids[-2], ids[-1], newer}
    assert outcome.report.added == 1 and outcome.report.removed == 1


async def test_since_date_bounds_the_import(h: GoogleHarness) -> None:
    old = h.add_mail("old", when=datetime(2025, 12, 31, 23, 59, tzinfo=UTC))
    midnight = h.add_mail("midnight", when=datetime(2026, 1, 1, 0, 0, tzinfo=UTC))
    recent = h.add_mail("recent", when=datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    charm = h.add_charm("gmail-importer", {"since": "2026-01-01"})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert set(h.items(charm)) == {midnight, recent}
    assert old not in h.items(charm)


async def test_no_change_incremental_sync_sends_exactly_one_request(h: GoogleHarness) -> None:
    for n in range(3):
        h.add_mail(f"m{n}")
    charm = h.add_charm("gmail-importer", {"labels": ["INBOX"]})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    h.emu.control.clear_log()

    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK
    assert outcome.report.changed == 0
    log = h.emu.control.requests()
    assert [e.api_method for e in log] == ["gmail.users.history.list"]


async def test_changing_the_query_resets_the_cursor_and_resyncs(h: GoogleHarness) -> None:
    starred = h.add_mail("starred", labels=("INBOX", "STARRED"))
    plain = h.add_mail("plain")
    charm = h.add_charm("gmail-importer", {"query": "in:inbox"})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert set(h.items(charm)) == {starred, plain}

    h.engine.update_charm(charm, settings={"query": "is:starred"})
    assert state_of(h, charm).history_id is None  # the cursor went with the old query
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK
    assert set(h.items(charm)) == {starred}
    await assert_matches_gmail(h, charm, "is:starred")


def test_settings_are_validated_with_clear_messages() -> None:
    pattern = GmailImporter()
    from trayapp.core.errors import SettingsError

    cases: list[tuple[dict[str, Any], str]] = [
        ({"parts": "everything"}, "parts: must be one of"),
        ({"max_messages": 0}, "max_messages: must be at least 1"),
        ({"since": "last week"}, "since: not a date; use YYYY-MM-DD"),
        ({"query": "in:inbox\nfrom:x"}, "one line"),
        ({"labels": ["Work", " "]}, "a label name is empty"),
        ({"qeury": "in:inbox"}, "qeury: unknown setting"),
    ]
    for settings, message in cases:
        with pytest.raises(SettingsError, match=message):
            pattern.validate_settings(settings)
    ok = pattern.validate_settings({"since": "2026-01-01", "labels": ["Work", "Work"]})
    assert ok.since == date(2026, 1, 1) and ok.labels == ["Work"]
    assert ok.query == "in:inbox" and ok.parts == "text"


def test_needs_reset_for_any_setting_that_shapes_the_data() -> None:
    pattern = GmailImporter()
    base = pattern.validate_settings({})
    for change in (
        {"query": "is:starred"},
        {"parts": "raw"},
        {"labels": ["X"]},
        {"max_messages": 10},
        {"since": "2026-01-01"},
    ):
        assert pattern.needs_reset(base, pattern.validate_settings(change)), change
    assert not pattern.needs_reset(base, pattern.validate_settings({"query": "in:inbox"}))


@pytest.mark.parametrize("parts", ["text+html", "raw"])
async def test_encoded_headers_and_non_utf8_bodies_are_decoded(
    h: GoogleHarness, parts: str
) -> None:
    raw = (
        b"From: =?utf-8?q?Ren=C3=A9e?= <renee@example.com>\r\n"
        b"To: a@example.com\r\nTo: b@example.com\r\n"
        b"Subject: =?iso-8859-1?q?caf=E9_cr=E8me?=\r\n"
        b"Message-ID: <enc@example.com>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nd=E9j=E0 vu\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>d\xc3\xa9j\xc3\xa0</p>\r\n"
        b"--b--\r\n"
    )
    mid = h.emu.control.add_message(h.email, raw, label_ids=["INBOX"])
    charm = h.add_charm("gmail-importer", {"parts": parts})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    item = h.items(charm)[mid]
    assert item["from"] == "Renée <renee@example.com>"
    assert item["subject"] == "café crème"
    assert item["to"] == "a@example.com, b@example.com"
    assert item["text"].strip() == "déjà vu"
    assert item["html"].strip() == "<p>déjà</p>"
    assert item["attachments"] == []


async def test_a_query_gmail_refuses_names_the_setting_to_fix(h: GoogleHarness) -> None:
    h.add_mail("m")
    charm = h.add_charm("gmail-importer", {"query": "nosuchoperator:x"})
    outcome = await h.sync(charm)
    assert outcome.kind is OutcomeKind.BUG
    assert "refused the search query 'nosuchoperator:x'" in outcome.message
    assert "fix the charm's query setting" in outcome.message
    assert state_of(h, charm).history_id is None


async def test_a_first_full_sync_fetches_and_stores_the_newest_mail_first(h: GoogleHarness) -> None:
    """messages.list answers newest first (Gmail's documented order, the emulator's too) and the
    importer fetches in list order, each batch committed as it arrives: the first batches a new
    user's sync stores are their most recent mail, whatever order the mailbox was filled in."""
    import random

    base = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    minutes = list(range(300))
    random.Random(3).shuffle(minutes)  # added in random order: the date decides, not the id
    by_date = {h.add_mail(f"m{n}", internal_date_ms=base + n * 60_000): n for n in minutes}
    newest_first = sorted(by_date, key=lambda mid: -by_date[mid])
    rank = {mid: i for i, mid in enumerate(newest_first)}
    charm = h.add_charm("gmail-importer", {})
    h.emu.control.clear_log()
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    gets = [
        e.path.rsplit("/", 1)[-1]
        for e in h.emu.control.requests()
        if e.api_method == "gmail.users.messages.get"
    ]
    assert sorted(gets, key=rank.__getitem__) == newest_first  # each message fetched once
    # A few batches of 50 run in parallel, so the i-th fetch is among the newest i + 150.
    late = [(i, rank[mid]) for i, mid in enumerate(gets) if rank[mid] >= i + 150]
    assert not late, f"fetched out of newest-first order: {late[:5]}"
    assert set(gets[:50]) <= set(newest_first[:150])
