"""Store size against the JSON it holds (issue 17.5): ``dbstat`` per table and index, as ratios.

Run: ``PYTHONPATH=. .venv/bin/python bench/store_size.py [--messages 100000] [--events 20000]``.

Fills a fresh store through the real ``Collection.upsert_many`` (in pages, as the importers
write) with Gmail-importer-shaped messages (headers, snippet, a text body of 200-1,600 bytes,
labels; about 0.85 KB of JSON each, like the issue's 84 MB per 100k) and Calendar-shaped events
(about 1.2 KB each, attendees, a description, conference data), then reports:

* the JSON held (the bytes of the stored values, canonical encoding as the store writes them);
* the file on disk after a WAL checkpoint, and ``dbstat``'s pages per table and index, with the
  unused bytes inside them;
* ratios file/JSON for each kind of data (target <= 1.5).

``--legacy`` builds the store with the v2 schema (``WITHOUT ROWID`` items) first and then opens it
with the current code, which migrates it in place: the numbers after migration are the ones an
existing profile gets.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import string
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trayapp.core import store as store_module
from trayapp.core.store import Store

PAGE = 500  # items per transaction, like an importer's page


def words(rng: random.Random, n: int) -> str:
    return " ".join(
        "".join(rng.choices(string.ascii_lowercase, k=rng.randrange(2, 10))) for _ in range(n)
    )


def message(rng: random.Random, i: int) -> dict[str, Any]:
    body = words(rng, rng.randrange(30, 260))
    return {
        "id": f"{i:016x}",
        "threadId": f"{i // 3:016x}",
        "labelIds": rng.sample(["INBOX", "UNREAD", "IMPORTANT", "CATEGORY_UPDATES", "STARRED"], 2),
        "internalDate": 1_700_000_000_000 + i * 60_000,
        "historyId": str(100_000 + i),
        "sizeEstimate": len(body) + 900,
        "snippet": body[:140],
        "from": f"{words(rng, 2).title()} <s{i % 977}@example.com>",
        "to": "me@example.com",
        "subject": words(rng, rng.randrange(3, 12)),
        "date": "Mon, 7 Dec 2026 17:00:00 +0000",
        "text": body,
        "attachments": [],
    }


def event(rng: random.Random, i: int) -> dict[str, Any]:
    day = 1 + i % 28
    return {
        "calendarId": "primary@example.com",
        "id": f"evt{i:010d}",
        "status": "confirmed",
        "summary": words(rng, rng.randrange(2, 8)),
        "description": words(rng, rng.randrange(20, 120)),
        "location": words(rng, 3),
        "start": {"dateTime": f"2026-12-{day:02d}T09:00:00Z", "timeZone": "Europe/Paris"},
        "end": {"dateTime": f"2026-12-{day:02d}T10:00:00Z", "timeZone": "Europe/Paris"},
        "allDay": False,
        "created": "2026-11-01T10:00:00.000Z",
        "updated": f"2026-11-{1 + i % 28:02d}T10:00:00.000Z",
        "etag": f'"{3_000_000_000 + i}"',
        "htmlLink": f"https://www.google.com/calendar/event?eid={i:020d}",
        "iCalUID": f"evt{i:010d}@google.com",
        "organizer": {"email": "boss@example.com", "displayName": "The Boss"},
        "attendees": [
            {"email": f"p{j}@example.com", "responseStatus": "accepted"}
            for j in range(rng.randrange(1, 6))
        ],
        "conference": {"uri": f"https://meet.google.com/{words(rng, 1)}", "type": "hangoutsMeet"},
        "reminders": {"useDefault": True},
    }


def pages(kind: str, n: int, rng: random.Random) -> Iterator[list[tuple[str, Any, Any]]]:
    batch: list[tuple[str, Any, Any]] = []
    for i in range(n):
        if kind == "messages":
            v = message(rng, i)
            batch.append((v["id"], v, v["internalDate"]))
        else:
            v = event(rng, i)
            batch.append((f"primary@example.com/{v['id']}", v, v["start"]["dateTime"]))
        if len(batch) == PAGE:
            yield batch
            batch = []
    if batch:
        yield batch


def build(path: Path, kind: str, n: int, seed: int) -> tuple[int, float]:
    """Fill a store; returns the JSON bytes held and the seconds the writes took."""
    rng = random.Random(seed)
    store = Store.open(path)
    coll = store.collection(f"charm:bench:{kind}")
    held = 0
    spent = 0.0
    for batch in pages(kind, n, rng):
        held += sum(len(json.dumps(v, sort_keys=True, separators=(",", ":"))) for _, v, _s in batch)
        start = time.perf_counter()
        coll.upsert_many(batch)
        spent += time.perf_counter() - start
    store.close()
    return held, spent


def measure(path: Path) -> tuple[int, dict[str, tuple[int, int]]]:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = conn.execute(
            "SELECT name, SUM(pgsize), SUM(unused) FROM dbstat GROUP BY name ORDER BY 2 DESC"
        ).fetchall()
    finally:
        conn.close()
    return path.stat().st_size, {str(r[0]): (int(r[1]), int(r[2])) for r in rows}


def mb(n: float) -> str:
    return f"{n / 1e6:8.1f} MB"


def legacy_store(path: Path) -> None:
    """A v2 store (the schema before 17.5), as an existing profile has it."""
    conn = sqlite3.connect(path)
    for target, migration in enumerate(store_module.MIGRATIONS[:2], start=1):
        migration(conn)
        conn.execute(f"PRAGMA user_version={target}")
    conn.commit()
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


def report(kind: str, n: int, seed: int, legacy: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trayapp.db"
        migrate_s = 0.0
        if legacy:
            # Write through the v2 schema: pretend the current code does not exist yet.
            saved = store_module.MIGRATIONS
            store_module.MIGRATIONS = saved[:2]
            store_module.SCHEMA_VERSION = 2
            try:
                legacy_store(path)
                held, spent = build(path, kind, n, seed)
                before, _ = measure(path)
            finally:
                store_module.MIGRATIONS = saved
                store_module.SCHEMA_VERSION = len(saved)
            start = time.perf_counter()
            Store.open(path).close()  # migrates in place
            migrate_s = time.perf_counter() - start
        else:
            held, spent = build(path, kind, n, seed)
        size, tables = measure(path)
        ratio = size / held
        print(f"{n:,} {kind}: JSON held {mb(held)}; file {mb(size)}; ratio {ratio:.2f}"
              f"  (writes {spent:.1f} s)")  # fmt: skip
        if legacy:
            print(f"  before migration: {mb(before)} (ratio {before / held:.2f}); "
                  f"migrated in place in {migrate_s:.1f} s")  # fmt: skip
        for name, (pages_bytes, unused) in tables.items():
            if pages_bytes >= 1e5:
                print(f"  {name:<28} {mb(pages_bytes)}  unused {unused / pages_bytes:5.1%}")
        return ratio


def main() -> None:
    p = argparse.ArgumentParser(description="store size vs the JSON it holds")
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--legacy", action="store_true", help="build with v2 and migrate in place")
    args = p.parse_args()
    print(f"SQLite {sqlite3.sqlite_version}, store schema v{store_module.SCHEMA_VERSION}")
    ratios = [
        report("messages", args.messages, args.seed, args.legacy),
        report("events", args.events, args.seed, args.legacy),
    ]
    print(f"largest ratio {max(ratios):.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
