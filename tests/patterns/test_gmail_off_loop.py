"""The MIME parse of fetched Gmail messages runs off the event loop (issue 17.5).

With ``parts=raw`` every message goes through the stdlib email parser (2-3 ms of CPU each), so
a 50-message batch parsed on the loop thread held it for 100-500 ms. Counted here: every
message of a full and of an incremental sync is turned into its stored item on a thread other
than the loop's, and the store is written on the loop thread only (it refuses other threads).
The real emulator, client, engine and store.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from trayapp.core.outcomes import OutcomeKind
from trayapp.google.quota import QuotaConfig
from trayapp.patterns import gmail
from trayapp.patterns.gmail import GmailImporter

GoogleHarness = Any
HarnessFactory = Any


@pytest.fixture
async def h(google_harness: HarnessFactory) -> GoogleHarness:
    return await google_harness(patterns=(GmailImporter,))


async def test_raw_messages_are_parsed_off_the_loop_thread(
    h: GoogleHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed_on: list[int] = []
    real = gmail.to_item

    def to_item(message: Any, parts: Any) -> dict[str, Any]:
        parsed_on.append(threading.get_ident())
        return real(message, parts)

    monkeypatch.setattr(gmail, "to_item", to_item)
    loop_thread = threading.get_ident()
    ids = [h.add_mail(f"subject {n}", body=f"body {n}\n" * 20) for n in range(120)]  # 3 batches
    charm = h.add_charm("gmail-importer", {"parts": "raw"})
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    stored = h.items(charm)
    assert sorted(stored) == sorted(ids)
    assert stored[ids[7]]["subject"] == "subject 7" and "body 7" in stored[ids[7]]["text"]
    assert len(parsed_on) == 120
    assert loop_thread not in parsed_on

    parsed_on.clear()
    new = [h.add_mail(f"later {n}") for n in range(3)]
    assert (await h.sync(charm)).kind is OutcomeKind.OK  # incremental: history + fetch
    assert set(new) <= set(h.items(charm))
    assert len(parsed_on) == 3 and loop_thread not in parsed_on


async def test_one_batch_is_parsed_at_a_time_across_charms(
    google_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parses in parallel threads finish no sooner under the GIL, and every extra thread that
    wants it makes the loop thread wait for the GIL after each SQLite statement (issue 17.5:
    three parallel parses made storing a batch hold the loop 50-150 ms). So one parse at a
    time in the app, with two charms full-syncing at once and three batches in flight each."""
    busy = 0
    most = 0
    lock = threading.Lock()
    real = gmail.to_item

    def to_item(message: Any, parts: Any) -> dict[str, Any]:
        nonlocal busy, most
        with lock:
            busy += 1
            most = max(most, busy)
        try:
            threading.Event().wait(0.002)  # a parse takes a few ms: let batches overlap
            return real(message, parts)
        finally:
            with lock:
                busy -= 1

    monkeypatch.setattr(gmail, "to_item", to_item)
    # Quota x100: batches arrive as fast as the emulator answers, so parses would overlap.
    h = await google_harness(patterns=(GmailImporter,), quota=QuotaConfig().scaled(100))
    h.emu.control.set_quota(enabled=False)
    ids = [h.add_mail(f"subject {n}", body=f"body {n}\n" * 5) for n in range(200)]  # 4 batches
    first = h.add_charm("gmail-importer", {"parts": "raw"}, name="first")
    second = h.add_charm("gmail-importer", {"parts": "text"}, name="second")
    outcomes = await h.engine.sync([first, second])
    assert all(o.kind is OutcomeKind.OK for o in outcomes.values()), outcomes
    assert sorted(h.items(first)) == sorted(ids) == sorted(h.items(second))
    assert most == 1
