"""Large Gmail writes are made in short steps with the event loop running between them (issue
17.5: no write may hold the loop more than 50 ms), without giving up what the importer
promises: no message lost, the cursor never past what was stored, a stopped run finished by the
next one. Counted, never timed: commits, rows per commit, turns of a task that runs beside the
sync, and the stored set against the emulator's own answer. The real emulator, client, engine
and store; the step sizes are made small so that a few hundred messages take many steps.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from gcal_helpers import watch_commits

from trayapp.core.outcomes import OutcomeKind
from trayapp.core.store import Collection
from trayapp.patterns import gmail
from trayapp.patterns.gmail import GmailImporter, GmailState

GoogleHarness = Any
HarnessFactory = Any


@pytest.fixture
async def h(google_harness: HarnessFactory) -> GoogleHarness:
    return await google_harness(patterns=(GmailImporter,))


def state_of(h: GoogleHarness, charm: str) -> GmailState:
    value = h.engine.store.cell(f"charm:{charm}:state", GmailState, default=GmailState()).get()
    assert isinstance(value, GmailState)
    return value


async def matches_gmail(h: GoogleHarness, charm: str) -> None:
    expected = await h.query_ids("in:inbox")
    stored = set(h.items(charm))
    assert stored == expected, f"missing {expected - stored}, extra {stored - expected}"


class Commits:
    """Every commit of the engine's store while a sync runs: (stored messages, history id,
    turns of a task beside the sync so far)."""

    def __init__(self, h: GoogleHarness, charm: str) -> None:
        self.h, self.charm = h, charm
        self.turns = 0
        self.seen: list[tuple[int, str | None, int]] = []

    def committed(self) -> None:
        self.seen.append(
            (
                len(self.h.collection(self.charm, "messages")),
                state_of(self.h, self.charm).history_id,
                self.turns,
            )
        )

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        async def beside() -> None:
            while True:
                await asyncio.sleep(0)
                self.turns += 1

        stop = watch_commits(self.h, self.committed)
        other = asyncio.create_task(beside())
        try:
            yield
        finally:
            stop()
            other.cancel()


def failing_on_call(
    monkeypatch: pytest.MonkeyPatch, collection: Collection, name: str, call: int
) -> list[int]:
    """Make ``collection.<name>`` raise on its ``call``-th call (1-based); returns the calls."""
    real: Callable[..., Any] = getattr(collection, name)
    calls: list[int] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == call:
            raise OSError("simulated crash between two steps")
        return real(*args, **kwargs)

    monkeypatch.setattr(collection, name, wrapper)
    return calls


async def test_a_resync_prunes_in_steps_with_the_loop_running_between(
    h: GoogleHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gmail, "PRUNE_STEP", 20)
    ids = [h.add_mail(f"m{n}") for n in range(150)]
    charm = h.add_charm("gmail-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    control = h.emu.control
    for mid in ids[10:100]:  # 90 stale after the resync
        control.delete_message(h.email, mid)
    control.set_history_floor(h.email)  # the cursor answers 404: a full resync

    commits = Commits(h, charm)
    async with commits.watching():
        outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert outcome.report.removed == 90
    await matches_gmail(h, charm)
    # The prune's commits: each removed at most PRUNE_STEP messages, the other task ran
    # between any two of them, and the cursor moved only after the last of them.
    counts = [(150, None, 0), *commits.seen]
    prune = [
        (b, a[0] - b[0])
        for a, b in itertools.pairwise(counts)
        if b[0] < a[0]  # messages went
    ]
    assert len(prune) >= 90 // 20 and max(n for _, n in prune) <= 20
    assert all(b[2] > a[2] for (a, _), (b, _) in itertools.pairwise(prune))
    old_cursor = prune[0][0][1]
    assert all(step[1] == old_cursor for step, _ in prune)  # not moved during the prune
    assert state_of(h, charm).history_id != old_cursor
    assert len(h.collection(charm, "sweep")) == 0  # emptied after the cursor, in steps too


async def test_a_resync_stopped_in_its_prune_is_finished_by_the_next_run(
    h: GoogleHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gmail, "PRUNE_STEP", 20)
    ids = [h.add_mail(f"m{n}") for n in range(100)]
    charm = h.add_charm("gmail-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    control = h.emu.control
    for mid in ids[:70]:
        control.delete_message(h.email, mid)
    control.set_history_floor(h.email)
    messages = h.collection(charm, "messages")
    calls = failing_on_call(monkeypatch, messages, "delete_many", call=2)

    stopped = await h.sync(charm)

    assert stopped.kind is not OutcomeKind.OK and len(calls) == 2
    assert 30 < len(messages) < 100  # the first step went, the rest stayed
    state = state_of(h, charm)
    assert state.full_sync is not None and state.full_sync.listing_done  # cursor not moved
    monkeypatch.undo()

    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    await matches_gmail(h, charm)
    assert state_of(h, charm).full_sync is None
    assert len(h.collection(charm, "sweep")) == 0


async def test_a_large_incremental_sync_is_stored_in_steps_with_the_cursor_in_the_last(
    h: GoogleHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gmail, "APPLY_STEP", 10)
    ids = [h.add_mail(f"m{n}") for n in range(40)]
    charm = h.add_charm("gmail-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    cursor = state_of(h, charm).history_id
    control = h.emu.control
    new = [h.add_mail(f"new {n}") for n in range(25)]
    for mid in ids[:15]:
        control.modify_labels(h.email, mid, remove=["INBOX"])  # no longer matches
    for mid in ids[15:20]:
        control.delete_message(h.email, mid)
    for mid in ids[20:30]:
        control.modify_labels(h.email, mid, add=["STARRED"])  # stays, relabelled

    commits = Commits(h, charm)
    messages = h.collection(charm, "messages")
    steps: list[int] = []  # turns of the other task when each step began to write
    real = messages.upsert_many

    def counted(*args: Any, **kwargs: Any) -> tuple[int, int]:
        steps.append(commits.turns)
        return real(*args, **kwargs)

    monkeypatch.setattr(messages, "upsert_many", counted)
    async with commits.watching():
        outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    report = outcome.report
    assert (report.added, report.updated, report.removed) == (25, 10, 20)
    await matches_gmail(h, charm)
    assert set(new) <= set(h.items(charm))
    assert "STARRED" in h.items(charm)[ids[25]]["labelIds"]
    # 55 writes in steps of 10: six steps, the other task ran between them, and every commit
    # before the last step kept the old cursor.
    assert len(steps) == 6 and all(b > a for a, b in itertools.pairwise(steps))
    before_last = [c for c in commits.seen if c[2] < steps[-1]]
    assert len(before_last) >= 5 and {c[1] for c in before_last} == {cursor}
    assert state_of(h, charm).history_id == h.emu.control.history_id(h.email) != cursor


async def test_an_incremental_sync_stopped_between_steps_is_replayed_to_the_same_result(
    h: GoogleHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gmail, "APPLY_STEP", 10)
    ids = [h.add_mail(f"m{n}") for n in range(40)]
    charm = h.add_charm("gmail-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    cursor = state_of(h, charm).history_id
    control = h.emu.control
    for n in range(15):
        h.add_mail(f"new {n}")
    for mid in ids[:10]:
        control.modify_labels(h.email, mid, remove=["INBOX"])
    for mid in ids[10:20]:
        control.modify_labels(h.email, mid, add=["STARRED"], remove=["UNREAD"])
    messages = h.collection(charm, "messages")
    calls = failing_on_call(monkeypatch, messages, "upsert_many", call=3)

    stopped = await h.sync(charm)

    assert stopped.kind is not OutcomeKind.OK and len(calls) == 3
    assert state_of(h, charm).history_id == cursor  # the steps before did not move it
    monkeypatch.undo()
    monkeypatch.setattr(gmail, "APPLY_STEP", 10)

    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    await matches_gmail(h, charm)
    stored = h.items(charm)
    for mid in ids[10:20]:
        assert "STARRED" in stored[mid]["labelIds"] and "UNREAD" not in stored[mid]["labelIds"]
    assert state_of(h, charm).history_id == control.history_id(h.email)
