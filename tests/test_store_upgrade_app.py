"""An existing profile's older store is upgraded before the engine starts, with progress shown
(issue 17.5): the CLI prints it on stderr, the app host reports it on the loop thread while the
loop stays free (the tray turns it into "Upgrading your data (40%)…"; tests/ui test that part).

Profiles are made with the current code (a real charm through the CLI) and then rewritten into
the v2 schema, as a profile of the previous version has them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from trayapp.core import store as store_module
from trayapp.core.profile import DB_FILENAME, Profile
from trayapp.core.store import MIGRATIONS, needs_upgrade
from trayapp.host import AppHost

ROOT = Path(__file__).resolve().parents[1]
WAIT = 120.0


def _trayapp(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAYAPP_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
        capture_output=True, text=True, env=env, timeout=WAIT, cwd=ROOT,
    )  # fmt: skip


def _v2_profile(profile: Path, extra_items: int) -> str:
    """A profile with one feed charm (and ``extra_items`` stored items), its store in v2."""
    add = _trayapp(profile, "charms", "add", "feed-importer", "--name", "news",
                   "--set", "url=http://127.0.0.1:9/feed.xml")  # fmt: skip
    assert add.returncode == 0, add.stderr
    db = profile / DB_FILENAME
    conn = sqlite3.connect(db)
    cells = conn.execute("SELECT name, value FROM cells").fetchall()
    items = conn.execute("SELECT coll, key, sort_key, value FROM items").fetchall()
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(db, isolation_level=None)
    for target, migration in enumerate(MIGRATIONS[:2], start=1):
        migration(conn)
        conn.execute(f"PRAGMA user_version={target}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO cells VALUES (?, ?)", cells)
    conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?)", items)
    conn.executemany(
        "INSERT INTO items VALUES ('charm:news:items', ?, ?, ?)",
        [(f"i{n:06}", n, json.dumps({"title": f"item {n}", "body": "x" * 400}))
         for n in range(extra_items)],
    )  # fmt: skip
    conn.execute("COMMIT")
    conn.close()
    assert needs_upgrade(db)
    return "news"


def _version_and_items(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        count = conn.execute("SELECT COUNT(*) FROM items WHERE coll = 'charm:news:items'")
        return version, count.fetchone()[0]
    finally:
        conn.close()


def test_the_cli_upgrades_an_older_store_first_with_progress_on_stderr(tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    _v2_profile(profile, extra_items=5000)  # three steps of 2,000
    listed = _trayapp(profile, "charms", "list")
    assert listed.returncode == 0, listed.stderr
    assert "news" in listed.stdout
    lines = listed.stderr.strip().splitlines()
    assert lines[0] == "trayapp: upgrading your data for this version (0%)…"
    assert lines[-1] == "trayapp: upgrading your data for this version (100%)…"
    assert len(lines) >= 4 and "Traceback" not in listed.stderr
    assert _version_and_items(profile / DB_FILENAME) == (3, 5000)
    again = _trayapp(profile, "charms", "list")  # nothing left to upgrade: nothing said
    assert again.returncode == 0 and again.stderr == ""


async def test_the_host_upgrades_before_the_engine_with_the_loop_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = tmp_path / "profile"
    charm = _v2_profile(profile, extra_items=3000)
    monkeypatch.setattr(store_module, "UPGRADE_CHUNK", 100)
    loop_thread = threading.get_ident()
    reports: list[tuple[float, int, int]] = []  # (done, thread, ticks so far)
    ticks = 0

    async def beside() -> None:  # another task: it runs only while the loop is free
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    host = AppHost(Profile.resolve(profile), role="headless engine")
    host.on_upgrade = lambda done: reports.append((done, threading.get_ident(), ticks))
    other = asyncio.create_task(beside())
    try:
        engine = await host.open()
        assert [c.id for c in engine.charms()] == [charm]
        assert len(engine.store.collection("charm:news:items")) == 3000
    finally:
        other.cancel()
        await host.close()
    done = [r[0] for r in reports]
    assert done == sorted(done) and done[0] == 0.0 and done[-1] == 1.0 and len(done) >= 10
    assert {r[1] for r in reports} == {loop_thread}  # told on the loop thread
    assert reports[-1][2] > reports[0][2]  # the other task ran while the upgrade did
    assert _version_and_items(profile / DB_FILENAME) == (3, 3000)
    # The app's process favours the loop thread when a worker thread holds the GIL.
    assert sys.getswitchinterval() <= 0.001
