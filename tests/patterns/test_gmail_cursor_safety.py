"""The Gmail importer never moves its cursor past mail it did not store (issue 13, item 3).

Two ways mail used to vanish: a ``messages.list`` or ``history.list`` page whose entries name no
message (they were skipped, the run ended ``ok +0`` and the cursor advanced), and Gmail's search
index lagging behind the history (the per-day search check did not return the new message yet,
so it was taken as "does not match" for good). Both run against the emulator: the first with a
``body`` fault that answers a malformed page, the second with its search-lag fault.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import trayapp.patterns.gmail as gmail_pattern
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.retry import RetryPolicy
from trayapp.patterns.gmail import GmailImporter, GmailState

GoogleHarness = Any
HarnessFactory = Any

FAST_RETRY = RetryPolicy(base_delay=0.01, max_delay=0.05, max_wait=5.0)
LIST = "gmail.users.messages.list"
HISTORY = "gmail.users.history.list"
MALFORMED_LIST = {"messages": [{"id": 5}, {"id": None}], "resultSizeEstimate": 2}


@pytest.fixture
async def h(google_harness: HarnessFactory) -> GoogleHarness:
    return await google_harness(patterns=(GmailImporter,), retry=FAST_RETRY)


def state_of(h: GoogleHarness, charm: str) -> GmailState:
    value = h.engine.store.cell(f"charm:{charm}:state", GmailState, default=GmailState()).get()
    assert isinstance(value, GmailState)
    return value


async def synced(h: GoogleHarness, query: str = "in:inbox") -> str:
    h.add_mail("before")
    charm = h.add_charm("gmail-importer", {"query": query})
    outcome = await h.sync(charm)
    assert outcome.kind is OutcomeKind.OK, outcome.message
    return charm


async def test_a_malformed_list_page_in_the_full_sync_fails_the_run_and_lists_again(
    h: GoogleHarness,
) -> None:
    ids = [h.add_mail(f"m{n}") for n in range(5)]
    rule = h.emu.control.add_fault(kind="body", body=MALFORMED_LIST, endpoint=LIST, times=1)
    charm = h.add_charm("gmail-importer", {})

    failed = await h.sync(charm)

    assert failed.kind is OutcomeKind.SERVER_ERROR, failed.message
    assert "could not be read" in failed.message
    state = state_of(h, charm)
    assert state.history_id is None
    assert state.full_sync is not None and state.full_sync.listed == 0
    assert not h.items(charm)

    h.emu.control.clear_faults(rule)
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert set(h.items(charm)) == set(ids)


async def test_a_malformed_list_page_in_the_search_check_keeps_the_cursor(
    h: GoogleHarness,
) -> None:
    charm = await synced(h)
    cursor = state_of(h, charm).history_id
    new = [h.add_mail(f"new {n}") for n in range(3)]
    rule = h.emu.control.add_fault(kind="body", body=MALFORMED_LIST, endpoint=LIST, times=1)

    failed = await h.sync(charm)

    assert failed.kind is OutcomeKind.SERVER_ERROR, failed.message
    assert state_of(h, charm).history_id == cursor, "the cursor moved past unstored mail"
    assert not set(new) & set(h.items(charm))

    h.emu.control.clear_faults(rule)
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert set(new) <= set(h.items(charm))
    assert state_of(h, charm).history_id != cursor


@pytest.mark.parametrize(
    "history",
    [
        [{"id": "1", "messagesAdded": [{"message": {"id": 5}}]}],
        [{"id": "1", "messagesAdded": [{"message": {"id": None, "threadId": "t"}}]}],
        [{"id": "1", "labelsAdded": [{"message": {}, "labelIds": ["STARRED"]}]}],
        [{"id": "1", "messages": [{"threadId": "x"}]}],
        ["not a record"],
    ],
)
async def test_a_malformed_history_page_fails_the_run_and_keeps_the_cursor(
    h: GoogleHarness, history: list[Any]
) -> None:
    charm = await synced(h)
    cursor = state_of(h, charm).history_id
    new = h.add_mail("new")
    body = {"history": history, "historyId": str(int(cursor or 0) + 999)}
    rule = h.emu.control.add_fault(kind="body", body=body, endpoint=HISTORY, times=1)

    failed = await h.sync(charm)

    assert failed.kind is OutcomeKind.SERVER_ERROR, failed.message
    assert state_of(h, charm).history_id == cursor
    h.emu.control.clear_faults(rule)
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert new in h.items(charm)


async def test_mail_that_search_has_not_indexed_yet_is_stored_by_a_later_run(
    h: GoogleHarness,
) -> None:
    charm = await synced(h, "from:bob")
    h.emu.control.set_search_lag(h.email, 600)
    late = h.add_mail("indexed late")
    other = h.add_mail("not from bob", sender="Carol <carol@example.com>")

    first = await h.sync(charm)

    # The history already has the message; search does not return it yet.
    assert first.kind is OutcomeKind.OK, first.message
    assert late not in h.items(charm)
    state = state_of(h, charm)
    assert set(state.recheck) == {late, other}
    assert late not in await h.query_ids("from:bob")

    h.emu.control.advance_clock(601)
    assert late in await h.query_ids("from:bob")
    second = await h.sync(charm)

    assert second.kind is OutcomeKind.OK, second.message
    assert late in h.items(charm)
    assert other not in h.items(charm)
    # Stored now, so no longer rechecked; the non-match stays rechecked until its window ends.
    assert set(state_of(h, charm).recheck) == {other}
    assert set(h.items(charm)) == await h.query_ids("from:bob")


async def test_rechecks_end_after_the_window(h: GoogleHarness, monkeypatch: Any) -> None:
    charm = await synced(h, "from:bob")
    h.add_mail("never from bob", sender="Carol <carol@example.com>")
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert len(state_of(h, charm).recheck) == 1
    monkeypatch.setattr(gmail_pattern, "RECHECK_WINDOW", timedelta(seconds=0))
    h.emu.control.clear_log()

    assert (await h.sync(charm)).kind is OutcomeKind.OK

    assert state_of(h, charm).recheck == {}
    # Nothing changed and nothing is left to recheck: one history call, nothing else.
    assert [e.api_method for e in h.emu.control.requests()] == [HISTORY]
