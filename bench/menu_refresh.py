"""Tray menu refresh at scale: snapshot + menu model + QMenu update, at 20 and 200 charms.

    PYTHONPATH=. .venv/bin/python bench/menu_refresh.py              # 20 and 200 charms, 30 reps
    PYTHONPATH=. .venv/bin/python bench/menu_refresh.py --charms 500 --reps 50

The real Engine (SQLite profile, started scheduler) with N feed charms against a local feed
server, and the real TrayController with its QMenu (offscreen Qt, the app's QtLoop). After one
pass of syncs, each repetition changes ONE charm's status through the engine (pause, then
resume: a real ``CharmStatusChanged``), lets the controller's coalescing timer run the refresh
the app would run, and times that refresh (snapshot + icon/tooltip + menu model + binder apply +
notification policy). Also timed: a refresh with nothing changed (what the 15 s menu tick does),
and the parts of one refresh. Counts beside the times (SQL statements per refresh, charm rows
rebuilt, menu items the binder had to look at, Qt property writes) are the ones the tests in
tests/ui/test_menu_refresh.py hold; the times are for reading, never pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def stats(samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return f"{min(ms):7.2f} / {statistics.median(ms):7.2f} / {max(ms):7.2f}"


def count_sql(engine: Any, fn: Callable[[], object]) -> int:
    """SQL statements the store's connection ran during ``fn()``."""
    conn = engine.store._db()
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        fn()
    finally:
        conn.set_trace_callback(None)
    return len(seen)


async def measure(n: int, reps: int, base: str) -> dict[str, str]:
    from trayapp.builtins import default_registry
    from trayapp.core.engine import Engine
    from trayapp.ui.model import build_menu
    from trayapp.ui.notify_policy import NotificationPolicy
    from trayapp.ui.tray import TrayController

    profile = Path(tempfile.mkdtemp(prefix="trayapp-menu-bench-"))
    engine = Engine(profile, patterns=default_registry())
    slugs = ("project-news", "release-notes", "team-blog")
    for i in range(n):
        engine.add_charm(
            "feed-importer", {"url": f"{base}/{slugs[i % 3]}.xml"}, name=f"Feed {i + 1}",
            interval=timedelta(hours=6),
        )  # fmt: skip
    ctl = TrayController(
        engine, policy=NotificationPolicy(grace=timedelta(0)),
        use_desktop_notifications=False, use_tray=True, report=lambda _l: None,
    )  # fmt: skip
    await engine.start()
    await ctl.start()
    try:
        deadline = time.monotonic() + 300
        while not all(s.last_success_at for s in engine.statuses().values()):
            if time.monotonic() > deadline:
                raise TimeoutError("the first pass of syncs did not finish in 300 s")
            await asyncio.sleep(0.05)
        # Let the last events' refresh run, then start from a quiet tray.
        await asyncio.sleep(0.3)
        ids = [c.id for c in engine.charms()]

        refresh = ctl.refresh
        timed: list[float] = []

        def timed_refresh() -> None:
            t0 = time.perf_counter()
            refresh()
            timed.append(time.perf_counter() - t0)

        ctl.refresh = timed_refresh  # type: ignore[method-assign]  # the timer's slot too
        ctl._refresh_timer.timeout.disconnect()
        ctl._refresh_timer.timeout.connect(timed_refresh)

        one_change: list[float] = []
        refreshes_per_change: list[int] = []
        for r in range(reps):
            cid = ids[(r * 7) % len(ids)]
            for step in (engine.pause, engine.resume):
                timed.clear()
                step(cid)
                while ctl._refresh_timer.isActive():  # noqa: ASYNC110  # a Qt timer: no event
                    await asyncio.sleep(0.005)
                await asyncio.sleep(0.01)
                refreshes_per_change.append(len(timed))
                one_change.extend(timed)

        no_change: list[float] = []
        for _ in range(reps):
            timed.clear()
            timed_refresh()
            no_change.extend(timed)

        # The parts of one refresh after a single change. (A tree from before issue 17.6 has
        # no MenuBuilder: the bench then times build_menu, which that tray called.)
        builder = getattr(ctl, "menu_builder", None)
        build = builder.build if builder is not None else build_menu
        snap_t: list[float] = []
        build_t: list[float] = []
        apply_t: list[float] = []
        for r in range(reps):
            engine.pause(ids[r % len(ids)])
            t0 = time.perf_counter()
            snap = ctl.snapshot()
            t1 = time.perf_counter()
            model = build(snap)
            t2 = time.perf_counter()
            ctl.binder.apply(model)
            t3 = time.perf_counter()
            engine.resume(ids[r % len(ids)])
            refresh()
            snap_t.append(t1 - t0)
            build_t.append(t2 - t1)
            apply_t.append(t3 - t2)

        # Counts for one refresh after one change.
        engine.pause(ids[0])
        sql = count_sql(engine, refresh)
        visited0 = getattr(ctl.binder, "visited", None)
        writes0 = getattr(ctl.binder, "writes", None)
        rows0 = getattr(getattr(ctl, "menu_builder", None), "rows_built", None)
        engine.resume(ids[0])
        refresh()
        counts = {
            "SQL statements": str(sql),
            "menu items looked at": "n/a"
            if visited0 is None
            else str(ctl.binder.visited - visited0),  # type: ignore[attr-defined]
            "Qt property writes": "n/a" if writes0 is None else str(ctl.binder.writes - writes0),  # type: ignore[attr-defined]
            "charm rows rebuilt": "n/a"
            if rows0 is None
            else str(ctl.menu_builder.rows_built - rows0),
        }

        # A burst: every charm synced at once; how many refreshes did the controller run?
        timed.clear()
        pending = set(ids)
        done = asyncio.Event()

        def on_event(ev: object) -> None:
            rec = getattr(ev, "record", None)
            if rec is not None:
                pending.discard(rec.charm_id)
                if not pending:
                    done.set()

        unsub = engine.subscribe(on_event)
        engine.sync_now(None)
        await asyncio.wait_for(done.wait(), 300)
        unsub()
        await asyncio.sleep(0.3)
        burst_refreshes = len(timed)
    finally:
        await ctl.stop()
        await engine.stop()
        engine.close()
        shutil.rmtree(profile, ignore_errors=True)
    sizes = f"{n} charms"
    return {
        f"{sizes}: refresh after one status change, ms": stats(one_change),
        f"{sizes}:   refreshes run per change": f"{min(refreshes_per_change)}"
        f"-{max(refreshes_per_change)}",
        f"{sizes}: refresh with nothing changed (tick), ms": stats(no_change),
        f"{sizes}:   snapshot, ms": stats(snap_t),
        f"{sizes}:   menu model (MenuBuilder.build), ms": stats(build_t),
        f"{sizes}:   binder apply, ms": stats(apply_t),
        **{f"{sizes}:   per one-change refresh: {k}": v for k, v in counts.items()},
        f"{sizes}: refreshes for a sync of all {n} ({3 * n} events and more)": str(burst_refreshes),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--charms", type=int, nargs="*", default=[20, 200])
    p.add_argument("--reps", type=int, default=30)
    args = p.parse_args()

    from PySide6.QtWidgets import QApplication

    from trayapp.ui.demo import DemoFeedServer
    from trayapp.ui.qtloop import QtLoop

    app = QApplication([])
    app.setQuitOnLastWindowClosed(False)
    loop = QtLoop(app, already_running=False)
    asyncio.set_event_loop(loop)
    rows: dict[str, str] = {}

    async def run() -> None:
        feeds = DemoFeedServer()
        base = await feeds.start()
        try:
            for n in args.charms:
                rows.update(await measure(n, args.reps, base))
        finally:
            await feeds.stop()

    with loop:
        loop.run_until_complete(run())
    width = max(len(k) for k in rows)
    print(f"{'measure (min / median / max)':<{width}}  value")
    print(f"{'-' * width}  {'-' * 28}")
    for k, v in rows.items():
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
