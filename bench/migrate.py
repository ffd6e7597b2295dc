"""The v2 -> v3 store migration (issue 17.5) on a large existing profile: time and progress.

Run: ``PYTHONPATH=. .venv/bin/python bench/migrate.py [--messages 100000] [--reps 3]``.

Builds a v2 store (the schema before issue 17.5: ``WITHOUT ROWID`` items) of ``--messages``
Gmail-like messages once, then per repetition copies it and opens the copy with
:meth:`Store.open`, which migrates it in place (and compacts it). Prints the seconds, min /
median / max, the progress reports the migration made (when the tree reports progress), and the
file size before and after.
"""

from __future__ import annotations

import argparse
import inspect
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import store_size
from trayapp.core import store as store_module
from trayapp.core.store import Store


def build_v2(path: Path, messages: int) -> None:
    saved = store_module.MIGRATIONS
    store_module.MIGRATIONS = saved[:2]
    store_module.SCHEMA_VERSION = 2
    try:
        store_size.legacy_store(path)
        store_size.build(path, "messages", messages, 1)
    finally:
        store_module.MIGRATIONS = saved
        store_module.SCHEMA_VERSION = len(saved)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--cache", type=Path, help="keep the built v2 store here (reused if present)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = args.cache or Path(tmp) / "v2.db"
        if not source.exists():
            start = time.perf_counter()
            build_v2(source, args.messages)
            print(f"built a v2 store of {args.messages:,} messages in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
        times: list[float] = []
        takes_progress = "progress" in inspect.signature(Store.open).parameters
        for rep in range(args.reps):
            path = Path(tmp) / f"rep{rep}.db"
            shutil.copyfile(source, path)
            before = path.stat().st_size
            reports: list[float] = []
            kwargs = {"progress": reports.append} if takes_progress else {}
            start = time.perf_counter()
            Store.open(path, **kwargs).close()  # type: ignore[arg-type]
            times.append(time.perf_counter() - start)
            after = path.stat().st_size
            shown = ", ".join(f"{r:.0%}" for r in reports[:: max(1, len(reports) // 12)])
            print(f"rep {rep + 1}: {times[-1]:.1f} s, {before / 1e6:.1f} MB -> "
                  f"{after / 1e6:.1f} MB; progress reports: {len(reports)} ({shown})",
                  flush=True)  # fmt: skip
            path.unlink()
        print(f"migration of {args.messages:,} messages, s (min / median / max): "
              f"{min(times):.1f} / {statistics.median(times):.1f} / {max(times):.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
