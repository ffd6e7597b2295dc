"""The Gmail importer when things go wrong: failing batch parts, messages deleted between list
and get, expired history, a resync that cannot help, and a tight quota.

After every scenario the stored set is compared with the emulator's own answer to the query.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from trayapp.core.outcomes import OutcomeKind
from trayapp.core.retry import RetryPolicy
from trayapp.google.quota import QuotaConfig
from trayapp.patterns.gmail import GmailImporter, GmailState

# Fixtures come from tests/patterns/conftest.py (not importable by name: pytest owns it).
GoogleHarness = Any
HarnessFactory = Any

# Backoff in milliseconds: the tests exercise the retry paths, not the waiting.
FAST_RETRY = RetryPolicy(base_delay=0.01, max_delay=0.05, max_wait=5.0)
GET = "gmail.users.messages.get"


@pytest.fixture
async def h(google_harness: HarnessFactory) -> GoogleHarness:
    return await google_harness(patterns=(GmailImporter,), retry=FAST_RETRY)


def state_of(h: GoogleHarness, charm: str) -> GmailState:
    value = h.engine.store.cell(f"charm:{charm}:state", GmailState, default=GmailState()).get()
    assert isinstance(value, GmailState)
    return value


async def assert_matches_gmail(h: GoogleHarness, charm: str, query: str = "in:inbox") -> None:
    expected = await h.query_ids(query)
    stored = set(h.items(charm))
    assert stored == expected, (
        f"missing {sorted(expected - stored)}, extra {sorted(stored - expected)}"
    )


def message_path(mid: str) -> str:
    return f"/gmail/v1/users/*/messages/{mid}"


async def test_failed_batch_parts_are_retried_alone_and_nothing_is_lost(h: GoogleHarness) -> None:
    ids = [h.add_mail(f"m{n}") for n in range(120)]
    for status in ("503", "429", "500"):
        h.emu.control.add_fault(kind="status", status=status, endpoint=GET, times=4)
    charm = h.add_charm("gmail-importer", {})

    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert set(h.items(charm)) == set(ids)
    parts = [e for e in h.emu.control.requests(api_method=GET) if e.batch_part]
    assert sum(1 for e in parts if e.fault) == 12
    # Only the 12 failed calls were sent again, not their whole batches.
    assert len(parts) == len(ids) + 12


async def test_a_part_that_keeps_failing_ends_the_run_and_the_next_run_completes(
    h: GoogleHarness,
) -> None:
    ids = [h.add_mail(f"m{n}") for n in range(60)]
    stuck = ids[30]
    rule = h.emu.control.add_fault(kind="status", status="503", path=message_path(stuck))
    charm = h.add_charm("gmail-importer", {})

    failed = await h.sync(charm)

    assert failed.kind is OutcomeKind.SERVER_ERROR
    state = state_of(h, charm)
    assert state.history_id is None, "the cursor must not advance past a message not stored"
    assert state.full_sync is not None and state.full_sync.pending == [stuck]
    assert set(h.items(charm)) == set(ids) - {stuck}  # the rest was kept

    h.emu.control.clear_faults(rule)
    h.emu.control.clear_log()
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert set(h.items(charm)) == set(ids)
    # The resumed run fetched only what was missing and did not list again.
    assert len(h.emu.control.requests(api_method=GET)) == 1
    assert not h.emu.control.requests(api_method="gmail.users.messages.list")
    assert state_of(h, charm).history_id is not None


async def test_messages_deleted_between_list_and_get_are_skipped(h: GoogleHarness) -> None:
    ids = [h.add_mail(f"m{n}") for n in range(40)]
    # Every batch fails until the rule is lifted: the run lists, then stops with ids pending.
    rule = h.emu.control.add_fault(kind="status", status="503", endpoint="gmail.batch")
    charm = h.add_charm("gmail-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.SERVER_ERROR
    pending = state_of(h, charm).full_sync
    assert pending is not None and len(pending.pending) == 40

    deleted = ids[::7]
    for mid in deleted:
        h.emu.control.delete_message(h.email, mid)
    h.emu.control.clear_faults(rule)
    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert set(h.items(charm)) == set(ids) - set(deleted)
    await assert_matches_gmail(h, charm)


async def test_a_failed_fetch_in_incremental_mode_keeps_the_cursor(h: GoogleHarness) -> None:
    h.add_mail("first")
    charm = h.add_charm("gmail-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    cursor = state_of(h, charm).history_id
    new = [h.add_mail(f"new {n}") for n in range(3)]
    rule = h.emu.control.add_fault(kind="status", status="503", path=message_path(new[1]))

    failed = await h.sync(charm)

    assert failed.kind is OutcomeKind.SERVER_ERROR
    assert state_of(h, charm).history_id == cursor
    h.emu.control.clear_faults(rule)
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert set(new) <= set(h.items(charm))
    await assert_matches_gmail(h, charm)


async def test_expired_history_starts_a_full_resync_that_prunes_what_is_gone(
    h: GoogleHarness,
) -> None:
    ids = [h.add_mail(f"m{n}") for n in range(10)]
    charm = h.add_charm("gmail-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    control = h.emu.control
    control.delete_message(h.email, ids[0])
    control.modify_labels(h.email, ids[1], remove=["INBOX"])
    added = h.add_mail("new")
    control.set_history_floor(h.email)  # every older startHistoryId now answers 404

    outcome = await h.sync(charm)

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert "history expired" in outcome.report.message
    assert outcome.report.removed == 2 and outcome.report.added == 1
    assert added in h.items(charm)
    await assert_matches_gmail(h, charm)
    state = state_of(h, charm)
    # The resync's catch-up used the new cursor successfully, which re-arms the loop breaker.
    assert state.history_id == control.history_id(h.email) and state.expiries == 0

    later = h.add_mail("later")
    control.clear_log()
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert later in h.items(charm)
    assert not control.requests(api_method="gmail.users.getProfile")


async def test_a_resync_that_does_not_advance_the_cursor_is_reported_not_looped(
    h: GoogleHarness,
) -> None:
    for n in range(5):
        h.add_mail(f"m{n}")
    charm = h.add_charm("gmail-importer", {})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    control = h.emu.control
    # Gmail refuses every history id we could get, even the profile's current one.
    control.set_history_floor(h.email, int(control.history_id(h.email)) + 10**9)

    # The first 404: one full resync is worth trying; its catch-up is refused too, so the run
    # reports that resyncing does not help instead of starting another one.
    control.clear_log()
    resync = await h.sync(charm)
    assert resync.kind is OutcomeKind.SERVER_ERROR
    assert "would not help" in resync.message and "reset the charm" in resync.message
    assert len(control.requests(api_method="gmail.users.getProfile")) == 1
    assert len(h.items(charm)) == 5  # the resync itself stored everything

    control.clear_log()
    outcomes = [await h.sync(charm) for _ in range(3)]
    assert [o.kind for o in outcomes] == [OutcomeKind.SERVER_ERROR] * 3
    # No further full sync: each run only retried the one cheap history call.
    assert [e.api_method for e in control.requests()] == ["gmail.users.history.list"] * 3

    # Once Gmail accepts the history again, incremental sync simply resumes.
    control.set_history_floor(h.email, 0)
    new = h.add_mail("after recovery")
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    assert new in h.items(charm) and state_of(h, charm).expiries == 0


async def test_full_sync_under_a_tight_quota_gets_at_most_a_handful_of_429s(
    google_harness: HarnessFactory, time_warp: Any
) -> None:
    # One virtual minute of quota every 3 real seconds, on both sides of the wire.
    warp = time_warp(20.0)
    scale = 0.2  # 3,000 units a minute: the 700 messages below need more than a minute of it
    # The production retry policy: a rare 429 (scheduling jitter, magnified 20 times by the
    # warp, can push one batch into the next minute's window) is waited out, as it would be.
    # The budget's window slack covers timing jitter between client and Google; the warp
    # magnifies real jitter 20 times, so a loaded machine's ~150 ms becomes 3 virtual seconds.
    # Without it the budget's default 0.2 s (4 ms real) drew 14 answers once under load.
    quota = dataclasses.replace(QuotaConfig().scaled(scale), window_slack=3.0)
    h = await google_harness(patterns=(GmailImporter,), quota=quota, warp=warp)
    h.emu.control.set_quota(gmail_units_per_minute=int(15_000 * scale), enabled=True)
    ids = [h.add_mail(f"m{n}") for n in range(700)]
    charm = h.add_charm("gmail-importer", {"parts": "headers"})
    h.emu.control.clear_log()

    start = warp.monotonic()
    outcome = await h.sync(charm)
    elapsed = warp.monotonic() - start

    assert outcome.kind is OutcomeKind.OK, outcome.message
    assert set(h.items(charm)) == set(ids)
    statuses = [e.status for e in h.emu.control.requests()]
    limited = sum(1 for s in statuses if s in (429, 403))
    assert limited <= 3, f"{limited} rate-limit answers"
    units = 700 * 5 + 2 * 5 + 1
    floor = units / (15_000 * scale / 60)
    assert elapsed >= floor * 0.9, "faster than the quota allows: the budget is not pacing"


async def test_a_long_full_sync_stops_between_batches_and_continues_next_run(
    h: GoogleHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    import trayapp.patterns.gmail as gmail_module

    # Every run may work for "no time at all": it stores what is already in flight, then stops.
    monkeypatch.setattr(gmail_module, "FULL_SYNC_STRETCH", timedelta(0))
    ids = [h.add_mail(f"m{n}") for n in range(300)]
    charm = h.add_charm("gmail-importer", {})

    first = await h.sync(charm)

    assert first.kind is OutcomeKind.OK
    assert "full sync in progress" in first.report.message
    assert 0 < first.report.added < 300 and state_of(h, charm).history_id is None
    runs = 1
    while state_of(h, charm).history_id is None:
        assert (await h.sync(charm)).kind is OutcomeKind.OK
        runs += 1
        assert runs < 10
    assert set(h.items(charm)) == set(ids)
    gets = h.emu.control.requests(api_method=GET)
    assert len([e for e in gets if e.batch_part]) == 300, "no message fetched twice"


async def test_outcomes_map_to_the_engine_kinds(h: GoogleHarness) -> None:
    h.add_mail("m")
    charm = h.add_charm("gmail-importer", {})
    control = h.emu.control

    # Gmail asks to come back in 15 minutes: the run ends rate_limited, with that time.
    rule = control.add_fault(kind="status", status="429-userRateLimitExceeded-retry-after")
    limited = await h.sync(charm)
    assert limited.kind is OutcomeKind.RATE_LIMITED
    assert limited.retry_after is not None
    control.clear_faults(rule)
    # Within those 15 minutes not even a manual sync asks Gmail again (docs/plugins.md).
    before = len(control.requests())
    waiting = await h.sync(charm)
    assert waiting.kind is OutcomeKind.RATE_LIMITED and waiting.retry_after == limited.retry_after
    assert len(control.requests()) == before

    # The user revoked access: auth_required, and nothing was stored. (Another charm of the
    # account: the first one waits out Gmail's 15 minutes.)
    other = h.add_charm("gmail-importer", {}, name="other")
    control.revoke_refresh_token(h.email)
    denied = await h.sync(other)
    assert denied.kind is OutcomeKind.AUTH_REQUIRED
    assert h.items(other) == {} and state_of(h, other).history_id is None


@pytest.mark.parametrize("query", ["in:inbox", "label:work"])
async def test_a_message_fetched_after_it_stopped_matching_is_removed_by_the_catch_up(
    h: GoogleHarness, query: str
) -> None:
    # Found by the SIGKILL test: a resumed full sync fetches a listed message *after* it left
    # the query; the stored copy already carries the new labels, so "labels unchanged" must not
    # be read as "still matches".
    work = h.emu.control.create_label(h.email, "Work")
    ids = [h.add_mail(f"m{n}", labels=("INBOX", work)) for n in range(30)]
    rule = h.emu.control.add_fault(kind="status", status="503", endpoint="gmail.batch")
    charm = h.add_charm("gmail-importer", {"query": query})
    assert (await h.sync(charm)).kind is OutcomeKind.SERVER_ERROR  # listed, nothing fetched
    left = ids[::4]
    for mid in left:
        h.emu.control.modify_labels(h.email, mid, remove=["INBOX", work])
    h.emu.control.clear_faults(rule)

    assert (await h.sync(charm)).kind is OutcomeKind.OK

    assert set(h.items(charm)) == set(ids) - set(left)
    await assert_matches_gmail(h, charm, query)
