"""Tray cost: start-up to icon, idle CPU and RSS with 20 charms, memory over simulated days.

    .venv/bin/python bench/tray.py                 # full run (60 s idle, 24 simulated hours)
    .venv/bin/python bench/tray.py --idle 10 --hours 2   # quick

Start-up and idle run the real app (``python -m trayapp.ui``) as a separate process, on a virtual
desktop (Xvfb + trayer) when those are installed, else offscreen. 20 feed charms point at a local
feed server run by this script. "Simulated hours" drive the same Engine + TrayController in a child
process (offscreen) through one sync of every charm per simulated 5 minutes, back to back, and
sample RSS: a leak shows as growth between the first and last quarter.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHARMS = 20
SLUGS = ("project-news", "release-notes", "team-blog")


def compile_app() -> None:
    """Write the bytecode of trayapp/ as an install does (pip compiles at install; the bundle
    ships it). A source tree run with PYTHONDONTWRITEBYTECODE=1 (this machine's shells) has none,
    so every start of the tray compiled its own modules again: ~15 before its icon, hundreds
    before ready, none of which an installed copy does (issue 17.2)."""
    import compileall

    compileall.compile_dir(str(REPO / "trayapp"), quiet=1)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sqlite_mib() -> float:
    """Bytes SQLite holds in this process (page cache, statements), from libsqlite3 itself."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
    except OSError:
        return float("nan")
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used()) / (1024 * 1024)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def wait_line(path: Path, prefix: str, timeout: float, count: int = 1) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            hits = [ln for ln in path.read_text().splitlines() if ln.startswith(prefix)]
            if len(hits) >= count:
                return time.monotonic()
        time.sleep(0.01)
    raise TimeoutError(f"no {prefix!r} x{count} in {path} after {timeout} s")


class FeedThread:
    """The demo feed server on its own loop in a thread, for the app process to fetch from."""

    def __init__(self) -> None:
        from trayapp.ui.demo import DemoFeedServer

        self.server = DemoFeedServer()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self.ready.set()
        self.loop.run_forever()

    def start(self) -> str:
        self.thread.start()
        self.ready.wait(10)
        return self.server.base_url

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def seed_profile(profile: Path, base_url: str, interval: timedelta) -> None:
    from trayapp.builtins import default_registry
    from trayapp.core.engine import Engine

    engine = Engine(profile, patterns=default_registry())
    for n in range(CHARMS):
        slug = SLUGS[n % len(SLUGS)]
        engine.add_charm(
            "feed-importer", {"url": f"{base_url}/{slug}.xml"}, name=f"Feed {n + 1}",
            interval=interval,
        )  # fmt: skip
    engine.close()


def start_desktop(work: Path) -> tuple[dict[str, str], list[subprocess.Popen[bytes]]]:
    env = dict(os.environ)
    if not (shutil.which("Xvfb") and shutil.which("trayer")):
        env["QT_QPA_PLATFORM"] = "offscreen"
        return env, []
    rfd, wfd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(wfd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(wfd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(wfd)
    with os.fdopen(rfd) as r:
        env["DISPLAY"] = ":" + r.readline().strip()
    tray = subprocess.Popen(
        ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request",
         "--height", "32", "--SetDockType", "true", "--transparent", "false"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    env["QT_QPA_PLATFORM"] = "xcb"
    env["TRAYAPP_TRAY_WAIT"] = "10"
    return env, [tray, xvfb]


def bench_app(idle_s: float) -> dict[str, str]:
    work = Path(tempfile.mkdtemp(prefix="trayapp-bench-"))
    feeds = FeedThread()
    base = feeds.start()
    seed_profile(work / "profile", base, timedelta(hours=6))  # nothing due while idle
    env, desktop = start_desktop(work)
    report = work / "report.log"
    env.update(
        TRAYAPP_TEST_REPORT=str(report),
        PYTHONPATH=str(REPO),
        XDG_RUNTIME_DIR=str(work),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    kind = "Xvfb + trayer" if desktop else "offscreen"
    t0 = time.monotonic()
    app = subprocess.Popen(
        [sys.executable, "-m", "trayapp.ui", "--profile", str(work / "profile")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        shown = wait_line(report, "TRAYAPP_ICON_SHOWN" if desktop else "TRAYAPP_READY", 60) - t0
        ready = wait_line(report, "TRAYAPP_READY", 60) - t0
        wait_line(report, "TRAYAPP_RUN_FINISHED", 120, count=CHARMS)
        # Let the first pass settle (status writes, GC) before measuring idle.
        time.sleep(2)
        rss0, cpu0 = rss_mib(app.pid), cpu_seconds(app.pid)
        time.sleep(idle_s)
        rss1, cpu1 = rss_mib(app.pid), cpu_seconds(app.pid)
    finally:
        app.send_signal(signal.SIGTERM)
        rc = app.wait(30)
        for p in desktop:
            p.terminate()
            p.wait(10)
        feeds.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        f"start-up to icon shown ({kind})": f"{shown * 1000:.0f} ms",
        "start-up to engine running and menu built": f"{ready * 1000:.0f} ms",
        f"idle CPU over {idle_s:.0f} s, {CHARMS} charms": f"{cpu1 - cpu0:.2f} s "
        f"({(cpu1 - cpu0) / idle_s * 100:.2f} %)",
        "idle RSS": f"{rss1:.1f} MiB (start of idle {rss0:.1f} MiB)",
        "exit code after SIGTERM": str(rc),
    }


def soak_child(hours: float, freeze: bool = True) -> None:
    """Run in a child process: one sync of every charm per simulated 5 min; print RSS samples.

    ``freeze``: the heap is frozen after start-up as the app's process does (HeapKeeper)."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtWidgets import QApplication

    from trayapp.builtins import default_registry
    from trayapp.core.engine import Engine
    from trayapp.ui.demo import DemoFeedServer
    from trayapp.ui.notify_policy import NotificationPolicy
    from trayapp.ui.qtloop import QtLoop
    from trayapp.ui.tray import TrayController

    app = QApplication([])
    app.setQuitOnLastWindowClosed(False)
    loop = QtLoop(app)  # the app's own loop
    asyncio.set_event_loop(loop)
    rounds = int(hours * 12)

    async def main() -> None:
        feeds = DemoFeedServer()
        base = await feeds.start()
        profile = Path(tempfile.mkdtemp(prefix="trayapp-soak-"))
        seed_profile(profile, base, timedelta(hours=6))
        engine = Engine(profile, patterns=default_registry())
        ctl = TrayController(
            engine, policy=NotificationPolicy(grace=timedelta(0)),
            use_desktop_notifications=False, use_tray=True, report=lambda _l: None,
        )  # fmt: skip
        await engine.start()
        await ctl.start()
        keeper = None
        if freeze:  # as AppHost.start does in the app's process (issue 17.5)
            from trayapp.core.heap import HeapKeeper

            keeper = HeapKeeper(engine)
            keeper.start()
        ids = [c.id for c in engine.charms()]
        for r in range(rounds):
            done = asyncio.Event()
            pending = set(ids)

            def on_event(
                ev: object, pending: set[str] = pending, done: asyncio.Event = done
            ) -> None:
                rec = getattr(ev, "record", None)
                if rec is not None:
                    pending.discard(rec.charm_id)
                    if not pending:
                        done.set()

            unsub = engine.subscribe(on_event)
            engine.sync_now(None)
            await asyncio.wait_for(done.wait(), 120)
            unsub()
            # The demo server records every request path for its tests; over a soak that list
            # is the bench's own growth (one string per run), not the app's.
            feeds.requests.clear()
            ctl.refresh()
            if r % max(1, rounds // 16) == 0 or r == rounds - 1:
                # One line per sample, flushed: a slow machine still yields a partial answer.
                # Beside RSS, what tells a leak from a cache: live Python objects, SQLite's own
                # heap (its page cache is capped by cache_size) and the scheduler's timer heap.
                scheduler = engine._scheduler
                backlog = scheduler.timer_backlog if scheduler is not None else 0
                # Objects: the collector's generations plus the frozen ones (gc.get_objects()
                # leaves those out).
                objects = len(gc.get_objects()) + gc.get_freeze_count()
                print(
                    f"SAMPLE {(r + 1) * len(ids)} {rss_mib(os.getpid()):.1f} "
                    f"{objects} {sqlite_mib():.2f} {backlog}",
                    flush=True,
                )
        if keeper is not None:
            keeper.stop()
        await ctl.stop()
        await engine.stop()
        engine.close()
        await feeds.stop()
        shutil.rmtree(profile, ignore_errors=True)

    with loop:
        loop.run_until_complete(main())


def bench_soak(hours: float, budget_s: float, freeze: bool = True) -> dict[str, str]:
    t0 = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, __file__, "--soak-child", str(hours),
         *([] if freeze else ["--no-freeze"])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    samples: list[tuple[int, float]] = []
    extra: list[list[str]] = []
    assert child.stdout is not None
    timer = threading.Timer(budget_s, child.kill)  # a partial answer beats none
    timer.start()
    for line in child.stdout:
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "SAMPLE":
            samples.append((int(parts[1]), float(parts[2])))
            extra.append(parts[3:])
    timer.cancel()
    complete = child.wait() == 0
    if len(samples) < 2:
        return {f"{hours:g} simulated hours": "no result (the machine was too slow)"}
    runs = samples[-1][0]
    simulated = runs / CHARMS * 5 / 60
    rss = [s for _, s in samples]
    quarter = max(1, len(rss) // 4)
    first, last = sum(rss[:quarter]) / quarter, sum(rss[-quarter:]) / quarter
    label = f"{hours:g} simulated hours"
    if not complete:
        label = f"{simulated:.1f} of {label} (budget reached)"
    rows = {
        f"{label} ({runs} runs, {time.monotonic() - t0:.0f} s)": (
            f"RSS {rss[0]:.1f} -> {rss[-1]:.1f} MiB; "
            f"first vs last quarter {first:.1f} -> {last:.1f} MiB ({last - first:+.1f})"
        ),
    }
    if len(extra[0]) == 3 and len(extra[-1]) == 3:
        (objs0, sql0, heap0), (objs1, sql1, heap1) = extra[0], extra[-1]
        rows["  Python objects / SQLite heap / timer heap"] = (
            f"{objs0} -> {objs1}; {sql0} -> {sql1} MiB; {heap0} -> {heap1} entries"
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--idle", type=float, default=60, help="idle window in seconds (default 60)")
    p.add_argument("--hours", type=float, default=24, help="simulated hours of syncing (24)")
    p.add_argument("--budget", type=float, default=1800, help="seconds for the soak (1800)")
    p.add_argument("--soak-only", action="store_true", help="only the simulated hours")
    p.add_argument("--soak-child", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--no-freeze",
        action="store_true",
        help="soak without freezing the heap after start-up (the app freezes it)",
    )
    args = p.parse_args()
    if args.soak_child is not None:
        soak_child(args.soak_child, freeze=not args.no_freeze)
        return
    rows = {} if args.soak_only else bench_app(args.idle)
    rows.update(bench_soak(args.hours, args.budget, freeze=not args.no_freeze))
    width = max(len(k) for k in rows)
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for k, v in rows.items():
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
