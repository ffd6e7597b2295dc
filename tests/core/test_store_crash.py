"""Crash safety: a writer killed with SIGKILL at random points never leaves a partial commit."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from trayapp.core.store import Store

WRITER = Path(__file__).with_name("store_crash_writer.py")
ROOT = Path(__file__).resolve().parents[2]
SPAN = 50  # as in store_crash_writer


def _run_and_kill(db: Path, commits_before_kill: int) -> int:
    """Start the writer, wait for it to report ``commits_before_kill`` commits, kill -9 it.

    Returns the last commit it reported (durable before the kill).
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    last = -1
    try:
        for _ in range(commits_before_kill):
            line = proc.stdout.readline()  # blocks until the writer commits (or dies)
            if not line:
                raise AssertionError(f"writer exited early: {proc.wait(60)} {proc.stderr.read()}")
            last = int(line.split()[1])
        proc.send_signal(signal.SIGKILL)  # mid-transaction or between: wherever it is now
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return last


def _check(db: Path, reported: int) -> int:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    with Store.open(db) as store:
        cursor = store.cell("charm:crash:cursor", int, 0).get()
        items = store.collection("charm:crash:items")
        # Everything reported as committed survived the kill...
        assert cursor >= reported
        # ...and what is visible is exactly one whole transaction: its cursor with its items.
        expected = {str(i): {"n": cursor} for i in range(cursor % SPAN + 1)}
        assert dict(items.items()) == expected
        assert len(items) == len(expected)
    return cursor


def test_sigkill_never_leaves_a_partial_transaction(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    print(f"seed={seed}")  # shown by pytest if the test fails
    cursor = 0
    for _ in range(12):
        reported = _run_and_kill(db, rng.randint(1, 40))
        assert reported > cursor, f"seed={seed}: writer did not resume from the stored cursor"
        cursor = _check(db, reported)
