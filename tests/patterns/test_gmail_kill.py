"""Killing the Gmail importer at random points never loses or duplicates a message.

The sync runs in a real subprocess on a real profile (this file, run as a script, is the
worker). The test SIGKILLs it after it reports progress (a stored batch of a full sync) or at a
random moment of an incremental sync, changes the mailbox between runs, restarts it, and when a
run finally completes compares the stored set with the emulator's own answer to the query.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
from pathlib import Path
from typing import Any

from trayapp.core.outcomes import OutcomeKind
from trayapp.patterns.gmail import GmailImporter

# Fixtures come from tests/patterns/conftest.py (not importable by name: pytest owns it).
GoogleHarness = Any
HarnessFactory = Any

QUERY = "in:inbox"
REPO = str(Path(__file__).resolve().parents[2])
WAIT = 60.0  # generous: a loaded 2-core machine


async def spawn(h: GoogleHarness, charm: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        str(h.engine.profile.path),
        h.account_id,
        charm,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": REPO},
    )


async def run_worker(
    h: GoogleHarness, charm: str, *, kill_after_lines: int | None, kill_after_s: float | None
) -> str | None:
    """Run one worker; kill it at the given point. Returns its final outcome line, if any."""
    proc = await spawn(h, charm)
    assert proc.stdout is not None
    stored_lines = 0
    killed = False
    killer: asyncio.TimerHandle | None = None

    def kill() -> None:
        nonlocal killed
        killed = True
        proc.kill()

    output: list[str] = []
    try:
        async with asyncio.timeout(WAIT):
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    break
                line = raw.decode(errors="replace").rstrip()
                output.append(line)
                if line.startswith("DONE "):
                    await proc.wait()
                    return line
                if line == "RUN" and kill_after_s is not None:
                    killer = asyncio.get_running_loop().call_later(kill_after_s, kill)
                if "full sync: stored" in line:
                    stored_lines += 1
                    if kill_after_lines is not None and stored_lines >= kill_after_lines:
                        kill()
    finally:
        if killer is not None:
            killer.cancel()
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    # After a kill any status is fine (asyncio may report 255 if the child was reaped early).
    if not killed and proc.returncode != 0:
        raise AssertionError("worker failed:\n" + "\n".join(output[-30:]))
    return None


def mutate(h: GoogleHarness, rng: random.Random) -> None:
    """Adds, deletes and label moves (into and out of the query) on random messages."""
    control = h.emu.control
    for n in range(rng.randint(5, 25)):
        labels = ("INBOX", "UNREAD") if rng.random() < 0.8 else ("CATEGORY_UPDATES",)
        h.add_mail(f"added {rng.random():.6f} {n}", labels=labels)
    ids = control.message_ids(h.email)
    for mid in rng.sample(ids, k=min(len(ids), rng.randint(2, 10))):
        control.delete_message(h.email, mid)
    ids = control.message_ids(h.email)
    for mid in rng.sample(ids, k=min(len(ids), rng.randint(2, 15))):
        if rng.random() < 0.5:
            control.modify_labels(h.email, mid, remove=["INBOX"])
        else:
            control.modify_labels(h.email, mid, add=["INBOX"], remove=["UNREAD"])


async def test_killed_syncs_resume_without_losing_or_duplicating_messages(
    google_harness: HarnessFactory,
) -> None:
    # Reproducible by default; set TRAYAPP_KILL_SEED to explore other kill points and churn.
    rng = random.Random(int(os.environ.get("TRAYAPP_KILL_SEED", "20261126")))
    h = await google_harness(patterns=(GmailImporter,))
    control = h.emu.control
    control.set_quota(enabled=False)  # this test is about kills; quota has its own tests
    # Latency per HTTP request (not per batch part) so a sync lasts long enough to be hit.
    control.add_fault(kind="latency", latency_ms=25, batch_parts=False)
    for n in range(500):
        h.add_mail(f"seed {n}", labels=("INBOX",) if n % 5 else ("CATEGORY_SOCIAL",))
    charm = h.add_charm("gmail-importer", {"query": QUERY, "parts": "headers"})

    kills = 0
    # Killed early, often before its first commit (profile read, first page listed or not).
    done = await run_worker(h, charm, kill_after_lines=None, kill_after_s=rng.uniform(0, 0.05))
    kills += done is None
    # A full sync killed after 1-3 stored batches, several times, with the mailbox changing.
    for _ in range(3):
        done = await run_worker(h, charm, kill_after_lines=rng.randint(1, 3), kill_after_s=None)
        assert done is None, "the full sync should still have been running"
        kills += 1
        mutate(h, rng)
    done = await run_worker(h, charm, kill_after_lines=None, kill_after_s=None)
    assert done is not None and done.startswith("DONE ok"), done
    await assert_store_matches(h, charm)

    # Incremental syncs killed at random moments, each followed by one that completes.
    for _ in range(3):
        mutate(h, rng)
        done = await run_worker(
            h, charm, kill_after_lines=None, kill_after_s=rng.uniform(0.02, 0.1)
        )
        kills += done is None
        done = await run_worker(h, charm, kill_after_lines=None, kill_after_s=None)
        assert done is not None and done.startswith("DONE ok"), done
        await assert_store_matches(h, charm)
    assert kills >= 5, "the early kill or an incremental kill landed mid-run"


async def assert_store_matches(h: GoogleHarness, charm: str) -> None:
    expected = await h.query_ids(QUERY)
    items = h.collection(charm, "messages").items()
    keys = [k for k, _ in items]
    assert len(keys) == len(set(keys))
    assert all(value["id"] == key for key, value in items)
    stored = set(keys)
    assert stored == expected, (
        f"missing {sorted(expected - stored)[:5]}, extra {sorted(stored - expected)[:5]}"
    )


# ---- the worker (this file run as a script) -----------------------------------------------


async def _worker(profile: str, account_id: str, charm: str) -> None:
    from conftest import open_engine  # script mode: this directory is on sys.path

    from trayapp.auth.wiring import google_api_kwargs
    from trayapp.google.client import GoogleApi
    from trayapp.google.quota import QuotaConfig

    engine, manager, quota = await open_engine(
        Path(profile), (GmailImporter,), quota=QuotaConfig().scaled(100)
    )
    apis: list[GoogleApi] = []

    def google(acct: str) -> GoogleApi:
        api = GoogleApi(**google_api_kwargs(manager, acct), quota=quota)
        apis.append(api)
        return api

    engine.google_factory = google
    try:
        print("RUN", flush=True)
        outcome = (await engine.sync([charm]))[charm]
        report = outcome.report
        print(
            f"DONE {outcome.kind.value} +{report.added} ~{report.updated} -{report.removed} "
            f"{outcome.message}",
            flush=True,
        )
        if outcome.kind is not OutcomeKind.OK:
            sys.exit(1)
    finally:
        await engine.stop()
        for api in apis:
            await api.aclose()
        await manager.aclose()
        engine.close()


if __name__ == "__main__":
    # StreamHandler flushes after every record, so the test sees progress as it happens.
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    asyncio.run(_worker(*sys.argv[1:4]))
