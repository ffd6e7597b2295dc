"""Store micro-benchmark: what an incremental sync and a restart cost at 100k items.

Run: ``PYTHONPATH=. .venv/bin/python bench/store.py [items]``. Prints timings; asserts nothing
(the tests assert costs by counting SQLite VM steps instead).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from trayapp.core.store import Store


def timed(label: str, fn: Callable[[], object], repeat: int = 1) -> None:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    per = (time.perf_counter() - start) / repeat
    unit, scale = ("ms", 1e3) if per >= 1e-3 else ("µs", 1e6)
    print(f"{label:<46} {per * scale:10.1f} {unit}" + (f"  (x{repeat})" if repeat > 1 else ""))


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.db"
        store = Store.open(path)
        items = store.collection("charm:bench:items")
        cursor = store.cell("charm:bench:cursor", int, 0)
        body = {"subject": "hello", "from": "a@example.com", "snippet": "x" * 200}
        timed(
            f"initial sync: upsert_many {n} items",
            lambda: items.upsert_many((f"m{i:07}", body, i) for i in range(n)),
        )
        counter = iter(range(10**9))

        def incremental() -> None:
            i = next(counter)
            with store.transaction():
                items.upsert(f"m{i % n:07}", {**body, "labels": [i]}, i % n)
                items.delete(f"new{i}")
                cursor.set(i)

        timed("incremental sync: 1 upsert + 1 delete + cursor", incremental, repeat=1000)
        timed("get one item", lambda: items.get(f"m{n // 2:07}"), repeat=1000)
        timed("len(collection)", lambda: len(items), repeat=1000)
        timed("newest 50 items (a UI page)", lambda: items.items(limit=50, newest_first=True), 200)
        timed("unchanged upsert (no write)", lambda: items.upsert("m0000001", body, 1), 1000)
        store.close()
        print(f"{'database size':<46} {path.stat().st_size / 1e6:10.1f} MB")
        timed("reopen (incl. PRAGMA quick_check)", lambda: Store.open(path).close(), repeat=3)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
