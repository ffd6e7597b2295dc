"""Time to the tray icon, the floor against the tray, with CPU-side evidence (issue 17.2).

    PYTHONPATH=. .venv/bin/python bench/icon_start.py --reps 10        # wall + CPU, interleaved
    PYTHONPATH=. .venv/bin/python bench/icon_start.py --profile out/   # cProfile up to the icon
    PYTHONPATH=. .venv/bin/python bench/icon_start.py --imports        # modules before the icon
    PYTHONPATH=. .venv/bin/python bench/icon_start.py --strace out/    # strace -f -c to the icon

One throwaway desktop (tests/e2e/desktop.py: private D-Bus, Xvfb, trayer, dunst) and the same
20-feed-charm profile as bench/overview.py. Each subject (``floor`` = bench/floor_tray.py,
``feeds`` = ``python -m trayapp.ui --profile <20 feed charms>``, ``demo`` = ``--demo``;
``cli`` = the ``trayapp`` command as the desktop entry starts it, with the feeds profile: only
with ``--only cli``) is
started and **ended the moment it reports ``TRAYAPP_ICON_SHOWN``** (bench/icon_child.py for the
tray; the floor with ``BENCH_EXIT_AT_ICON=1``), the subjects interleaved repetition by
repetition. Per subject: wall time from spawn to that report, and from ``wait4``'s resource
usage of the process that ended there: the CPU it spent (user + system: far less noisy than the
wall time on a shared machine), voluntary context switches (each is a wait: a socket, a D-Bus
round trip, a disk read) and page faults. Ratios are against the floor of the same repetition.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import tray as tray_bench  # noqa: E402  (bench/tray.py: feed server, profile seeding)

from tests.e2e.desktop import Desktop, missing_tools  # noqa: E402

SUBJECTS = ("floor", "feeds", "demo", "cli")


def command(subject: str, profile: Path, mode: str, out: Path) -> list[str]:
    if subject == "floor" and mode == "plain":
        return [sys.executable, str(REPO / "bench" / "floor_tray.py")]
    tray_args = {
        "floor": ["--floor"],
        "feeds": ["--profile", str(profile)],
        "demo": ["--demo"],
        "cli": ["--cli", "--profile", str(profile)],  # the ``trayapp`` command, same profile
    }[subject]
    child = str(REPO / "bench" / "icon_child.py")
    return [sys.executable, child, mode, str(out), "--", *tray_args]


def run_one(
    subject: str,
    desk: Desktop,
    work: Path,
    mode: str = "plain",
    prefix: list[str] | None = None,
    until: str = "TRAYAPP_ICON_SHOWN",
) -> dict[str, float]:
    report = work / f"{subject}.report"
    report.unlink(missing_ok=True)
    out = work / f"{subject}.{mode}"
    env = desk.env(
        TRAYAPP_TEST_REPORT=str(report), PYTHONPATH=str(REPO), QT_QPA_PLATFORM="xcb",
        TRAYAPP_TRAY_WAIT="10", PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        BENCH_EXIT_AT_ICON="1", BENCH_EXIT_AT=until,
    )  # fmt: skip
    args = [*(prefix or []), *command(subject, work / "profile", mode, out)]
    log = (work / f"{subject}.log").open("ab")
    t0 = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=log)
    icon = None
    while True:
        if icon is None and report.exists() and "TRAYAPP_ICON_SHOWN" in report.read_text():
            icon = time.monotonic()
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.002)
    end = time.monotonic()
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    if proc.returncode != 0 or icon is None:
        tail = (work / f"{subject}.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{subject}: no icon (exit {proc.returncode}):\n{tail}")
    return {
        "icon_ms": (icon - t0) * 1000,
        "exit_ms": (end - t0) * 1000,  # spawn to the process's end (its own report + exit)
        "cpu_ms": (usage.ru_utime + usage.ru_stime) * 1000,  # up to where it ended itself
        "user_ms": usage.ru_utime * 1000,
        "sys_ms": usage.ru_stime * 1000,
        "vol_ctx": usage.ru_nvcsw,
        "invol_ctx": usage.ru_nivcsw,
        "minflt": usage.ru_minflt,
        "majflt": usage.ru_majflt,
    }


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    lo, med, hi = min(values), statistics.median(values), max(values)
    return f"{lo:8.1f} {med:8.1f} {hi:8.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--only", choices=SUBJECTS, action="append", help="subjects (floor always)")
    p.add_argument("--profile", type=Path, help="write a cProfile per tray subject here")
    p.add_argument("--imports", action="store_true", help="modules imported before the icon")
    p.add_argument("--strace", type=Path, help="write strace -f -c per subject here")
    p.add_argument("--top", type=int, default=40, help="profile lines to print")
    p.add_argument(
        "--ready",
        action="store_true",
        help="end each tray at TRAYAPP_READY instead (the floor is ready at its icon)",
    )
    args = p.parse_args()
    missing = missing_tools()
    if missing:
        sys.exit(f"needs {', '.join(missing)} (the e2e desktop)")
    subjects = ["floor", *[s for s in SUBJECTS[1:] if s in (args.only or SUBJECTS[:3])]]
    tray_bench.compile_app()  # the tray's bytecode, as installed (see bench/tray.py)
    work = Path(tempfile.mkdtemp(prefix="trayapp-icon-"))
    feeds = tray_bench.FeedThread()
    base = feeds.start()
    desk = Desktop(work)
    try:
        desk.start()
        tray_bench.seed_profile(work / "profile", base, timedelta(hours=6))
        for s in subjects:  # warm the page cache and the bytecode caches once, not measured
            run_one(s, desk, work)
        if args.profile or args.imports or args.strace:
            evidence(args, subjects, desk, work)
            return
        rows: list[dict[str, dict[str, float]]] = []
        loads = []
        for n in range(args.reps):
            loads.append(os.getloadavg()[0])
            until = "TRAYAPP_READY" if args.ready else "TRAYAPP_ICON_SHOWN"
            rows.append({s: run_one(s, desk, work, until=until) for s in subjects})
            print(f"repetition {n + 1}/{args.reps}", file=sys.stderr, flush=True)
        loads.append(os.getloadavg()[0])
    finally:
        desk.stop()
        feeds.stop()
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    print(
        f"machine: {os.cpu_count()} CPUs; 1-min load at each repetition's start and at the end: "
        f"{' '.join(f'{x:.2f}' for x in loads)}; commit {commit or '?'}; {args.reps} "
        f"repetitions; ended at {'ready' if args.ready else 'the icon'}; min median max"
    )
    print(f"{'measure':<12}" + "".join(f"{s:>27}" for s in subjects))
    keys = ("icon_ms", "exit_ms", "cpu_ms", "user_ms", "sys_ms", "vol_ctx", "invol_ctx", "minflt",
            "majflt")  # fmt: skip
    for key in keys:
        print(f"{key:<12}" + "".join(f"{fmt([r[s][key] for r in rows]):>27}" for s in subjects))
    print("ratios against the floor of the same repetition:")
    for key in ("icon_ms", "cpu_ms"):
        for s in subjects[1:]:
            ratios = [r[s][key] / r["floor"][key] for r in rows]
            print(f"  {key:<7} {s:<6} x {fmt(ratios)}")
    shutil.rmtree(work, ignore_errors=True)


def evidence(args: argparse.Namespace, subjects: list[str], desk: Desktop, work: Path) -> None:
    if args.imports:
        floor: set[str] = set()
        for s in subjects:
            run_one(s, desk, work, "imports")
            mods = set((work / f"{s}.imports").read_text().split())
            floor = floor or mods
            extra = sorted(mods - floor)
            print(f"{s}: {len(mods)} modules imported before the icon, {len(extra)} more than "
                  f"the floor: {' '.join(extra)}\n")  # fmt: skip
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        for s in subjects:
            run_one(s, desk, work, "profile")
            dest = args.profile / f"icon-{s}.prof"
            shutil.copy(work / f"{s}.profile", dest)
            print(f"== {s}: cProfile up to the icon -> {dest}")
            stats = pstats.Stats(str(dest))
            stats.sort_stats("cumulative").print_stats(args.top)
    if args.strace and shutil.which("strace"):
        args.strace.mkdir(parents=True, exist_ok=True)
        for s in subjects:
            dest = args.strace / f"icon-{s}.strace"
            run_one(s, desk, work, prefix=["strace", "-f", "-c", "-o", str(dest)])
            print(f"== {s}: strace -f -c up to the icon -> {dest}")
            print(dest.read_text())


if __name__ == "__main__":
    main()
