"""The importer's OR-query path against the emulator (issue 13, item 5).

A query with alternatives is sent grouped: ``(from:a OR from:b) after:... before:...`` for the
per-day search check of an incremental sync. The stored set after full and incremental runs must
equal what a full scan of the query returns.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trayapp.core.outcomes import OutcomeKind
from trayapp.core.retry import RetryPolicy
from trayapp.patterns.gmail import GmailImporter

GoogleHarness = Any
HarnessFactory = Any
LIST = "gmail.users.messages.list"


@pytest.fixture
async def h(google_harness: HarnessFactory) -> GoogleHarness:
    return await google_harness(
        patterns=(GmailImporter,), retry=RetryPolicy(base_delay=0.01, max_delay=0.05)
    )


SENDERS = ("Alice <alice@example.com>", "Bob <bob@example.com>", "Carol <carol@example.com>")


@pytest.mark.parametrize(
    "query",
    [
        "from:alice OR from:bob",
        "from:(alice OR bob)",
        "{from:alice from:bob} in:inbox",
        "in:inbox (from:alice OR subject:lunch) -subject:skip",
    ],
)
async def test_or_queries_store_what_a_full_scan_returns(h: GoogleHarness, query: str) -> None:
    start = datetime(2026, 2, 1, 9, tzinfo=UTC)
    for n in range(12):
        h.add_mail(
            ["lunch", "skip", "report"][n % 3],
            sender=SENDERS[n % 3],
            when=start + timedelta(hours=7 * n),
            labels=("INBOX",) if n % 4 else ("SENT",),
        )
    charm = h.add_charm("gmail-importer", {"query": query})
    first = await h.sync(charm)
    assert first.kind is OutcomeKind.OK, first.message
    assert set(h.items(charm)) == await h.query_ids(query)
    assert h.items(charm), "the query matched nothing: the test would prove nothing"

    # New mail over several days: the incremental run checks each day through search with
    # the grouped query narrowed by after:/before:.
    h.emu.control.clear_log()
    later = datetime.now(UTC) - timedelta(days=3)
    for n in range(9):
        h.add_mail(
            ["lunch", "skip", "report"][n % 3],
            sender=SENDERS[(n + 1) % 3],
            when=later + timedelta(hours=9 * n),
        )
    second = await h.sync(charm)

    assert second.kind is OutcomeKind.OK, second.message
    checks = [
        dict(e.query).get("q", "")
        for e in h.emu.control.requests(api_method=LIST)
        if not e.batch_part
    ]
    assert checks and all(
        q.startswith(f"({query})") and "after:" in q and "before:" in q for q in checks
    ), checks
    assert all(e.status == 200 for e in h.emu.control.requests(api_method=LIST))
    assert set(h.items(charm)) == await h.query_ids(query)
