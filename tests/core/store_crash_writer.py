"""Helper process for the kill -9 test: commits cursor + items transactions forever.

Each transaction sets the cursor cell to N and makes the collection hold exactly the keys
``0..N % 50`` with value ``{"n": N}``. After each commit it prints ``committed N`` (flushed), so the
test knows that N is durable. Run: ``python store_crash_writer.py <db path>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trayapp.core.store import Store

SPAN = 50


def main(path: Path) -> None:
    store = Store.open(path)
    cursor = store.cell("charm:crash:cursor", int, 0)
    items = store.collection("charm:crash:items")
    n = cursor.get()
    while True:
        n += 1
        with store.transaction():
            items.clear()
            items.upsert_many((str(i), {"n": n}, i) for i in range(n % SPAN + 1))
            cursor.set(n)
        print(f"committed {n}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
