"""Upgrading an existing (v2) store to v3 (issue 17.5): progress, every row kept, kill -9 safe.

A real SQLite file in the v2 schema, upgraded by :meth:`Store.open`; the kill test kills a real
subprocess with SIGKILL at known points of the upgrade and opens the store again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trayapp.core import store as store_module
from trayapp.core.store import MIGRATIONS, SCHEMA_VERSION, UPGRADE_SUFFIX, Store, needs_upgrade

VICTIM = Path(__file__).with_name("store_upgrade_victim.py")
ROOT = Path(__file__).resolve().parents[2]

Row = tuple[str, str, Any, str]


def _v2_store(db: Path, messages: int = 1200) -> list[Row]:
    """A v2 store as an existing profile has it: messages with numeric sort keys, events with
    text ones, feed items without any, cells. Returns its item rows."""
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db, isolation_level=None)
    for target, migration in enumerate(MIGRATIONS[:2], start=1):
        migration(conn)
        conn.execute(f"PRAGMA user_version={target}")
    conn.execute("PRAGMA journal_mode=WAL")
    rows: list[Row] = []
    for i in range(messages):
        body = {"id": f"m{i}", "snippet": "x" * (200 + i % 900), "labelIds": ["INBOX"]}
        rows.append(("charm:g:messages", f"m{i:06}", 1_700_000_000_000 + (i * 7919) % messages,
                     json.dumps(body, sort_keys=True, separators=(",", ":"))))  # fmt: skip
    for i in range(300):
        rows.append(("charm:c:events", f"cal/e{i:04}", f"2026-12-{1 + i % 28:02d}T09:00",
                     json.dumps({"n": i})))  # fmt: skip
    for i in range(250):
        rows.append(("charm:f:items", f"item{i:04}", None, json.dumps({"title": f"t{i}"})))
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?)", rows)
    conn.execute("INSERT INTO cells VALUES ('charm:g:state', '{\"history_id\":\"41\"}')")
    conn.execute("COMMIT")
    conn.close()  # the last connection: the WAL is checkpointed into the file
    return rows


def _rows(db: Path) -> tuple[int, set[Row], dict[str, int], dict[str, str]]:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        items = set(conn.execute("SELECT coll, key, sort_key, value FROM items"))
        counts = dict(conn.execute("SELECT name, count FROM collections"))
        cells = dict(conn.execute("SELECT name, value FROM cells"))
    finally:
        conn.close()
    return version, items, counts, cells


def test_upgrade_reports_progress_and_keeps_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "p" / "store.db"
    rows = _v2_store(db)
    _, before, counts_before, cells_before = _rows(db)
    assert needs_upgrade(db) and not needs_upgrade(tmp_path / "missing.db")
    monkeypatch.setattr(store_module, "UPGRADE_CHUNK", 100)
    reports: list[float] = []
    with Store.open(db, progress=reports.append) as store:
        conn = store._db()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 8192
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        # Rows sit in (coll, sort_key, key) order, as the in-place migration wrote them.
        by_id = [
            tuple(r) for r in conn.execute("SELECT coll, sort_key, key FROM items ORDER BY id")
        ]
        assert by_id == sorted(by_id, key=lambda r: (r[0], r[1] is not None, r[1] or 0, r[2]))
        messages = store.collection("charm:g:messages")
        assert len(messages) == 1200 and len(store.collection("charm:f:items")) == 250
        # Writes after the upgrade keep keys unique and counts exact (indexes and triggers).
        assert messages.upsert("m000042", {"changed": True}) == "updated"
        assert messages.upsert("new", {"n": 1}, 10**15) == "added"
        assert messages.delete("m000000")
        assert len(messages) == 1200
        assert messages.items(limit=1, newest_first=True)[0][0] == "new"
    # Progress: one report per step of 100 rows and a few for the phases after, never back.
    assert len(reports) >= len(rows) // 100 + 3
    assert reports == sorted(reports) and reports[0] == 0.0 and reports[-1] == 1.0
    assert not needs_upgrade(db)
    assert sorted(p.name for p in db.parent.iterdir() if UPGRADE_SUFFIX in p.name) == []
    # Every row, count and cell as before (the three changes above aside).
    version, after, counts, cells = _rows(db)
    assert version == 3 and cells == cells_before
    changed = {r for r in before if r[1] in ("m000042", "m000000")}
    assert before - changed <= after and len(after) == len(before) + 1 - 1
    assert counts == counts_before


def test_upgrade_of_a_file_another_program_holds_open_is_done_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The new file cannot replace one that another connection still uses: the old way."""
    caplog.set_level("INFO", logger="trayapp.core.store")
    db = tmp_path / "p" / "store.db"
    _v2_store(db, messages=300)
    _, before, counts_before, _ = _rows(db)
    other = sqlite3.connect(db)
    try:
        assert other.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 1  # open, idle
        reports: list[float] = []
        with Store.open(db, progress=reports.append) as store:
            assert store._db().execute("PRAGMA user_version").fetchone()[0] == 3
            assert len(store.collection("charm:g:messages")) == 300
    finally:
        other.close()
    assert "in use elsewhere; migrating it in place" in caplog.text
    version, after, counts, _ = _rows(db)
    assert version == 3 and after == before and counts == counts_before
    assert not [p for p in db.parent.iterdir() if UPGRADE_SUFFIX in p.name]


def _kill_during_upgrade(db: Path, fraction: float) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(VICTIM), str(db), str(fraction)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        while True:
            line = proc.stdout.readline()  # blocks until the next progress report
            if not line:
                raise AssertionError(f"victim exited: {proc.wait(60)} {proc.stderr.read()}")
            if line.startswith("frozen"):
                frozen = float(line.split()[1])
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return frozen


@pytest.mark.parametrize("fraction", [0.3, 0.9, 0.95])  # copying; indexes; new file complete
def test_sigkill_mid_upgrade_loses_nothing_and_the_next_start_upgrades(
    tmp_path: Path, fraction: float
) -> None:
    db = tmp_path / "p" / "store.db"
    _v2_store(db)
    _, before, counts_before, cells_before = _rows(db)
    frozen = _kill_during_upgrade(db, fraction)
    assert fraction <= frozen < 1.0
    # Killed before the new file took the old one's place: the old store, whole and as it was.
    version, items, counts, cells = _rows(db)
    assert (version, items, counts, cells) == (2, before, counts_before, cells_before)
    assert needs_upgrade(db)
    # The next start removes the partial new file and upgrades from the start.
    reports: list[float] = []
    Store.open(db, progress=reports.append).close()
    assert reports[0] == 0.0 and reports[-1] == 1.0
    version, items, counts, cells = _rows(db)
    assert (version, items, counts, cells) == (3, before, counts_before, cells_before)
    assert not [p for p in db.parent.iterdir() if UPGRADE_SUFFIX in p.name]
