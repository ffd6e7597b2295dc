"""Issue 17 in one run: the tray against a bare Qt tray floor, as ratios, 3 repetitions.

    .venv/bin/python bench/overview.py                  # 3 repetitions, 20 s idle windows
    .venv/bin/python bench/overview.py --reps 1 --idle 10 --no-strace   # quick look
    .venv/bin/python bench/overview.py --only bundle    # + the frozen bundle (packaging/build.sh)

Each repetition starts one throwaway desktop exactly as the e2e tests do (tests/e2e/desktop.py:
private D-Bus, Xvfb, trayer, dunst) and runs, one after the other on it:

* ``floor``: bench/floor_tray.py, a bare PySide6 + qasync ``QSystemTrayIcon``;
* ``feeds``: ``python -m trayapp.ui`` with 20 feed charms (a local feed server run by this
  script, nothing due during the idle window);
* ``bundle`` (only with ``--only bundle`` or ``--bundle PATH``): the frozen PyInstaller bundle's
  tray (``trayapp --profile``) on its own freshly seeded ``feeds`` profile, measured the same way.
  The bundle is the one packaging/build.sh leaves in out/pyinstaller/dist/trayapp/ unless
  ``--bundle`` names another (its ``trayapp`` executable, or a folder holding it or ``app/``);
  with none, that subject is skipped with a note saying how to build one;
* ``demo``: ``python -m trayapp.ui --demo`` (the demo's five charms, feeds + Google emulator).
  The emulator runs as the tray's child process (Google is another machine for a real user):
  RSS/PSS are the tray process's own; the child's are printed beside them (``child_*``).

The tray's bytecode is written first (bench/tray.py ``compile_app``), as an install has it.
For each: time from spawn to the icon shown (``TRAYAPP_ICON_SHOWN``) and to the engine ready
(``TRAYAPP_READY``), RSS and PSS (``/proc/<pid>/smaps_rollup``) after the first pass of syncs,
threads, and wake-ups over an idle window starting 35 s after spawn (past the one-shot
start-up timers: notification grace, D-Bus call timeouts): context switches of all threads
(``/proc/<pid>/task/*/status``), then (with strace) the poll/wait system calls made in a
second window of the same length. Timings are reported, never judged: the machine is shared,
which is why every figure is a ratio against the floor measured in the same repetition.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
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

WAIT_CALLS = "poll,ppoll,epoll_wait,epoll_pwait,select,pselect6,nanosleep,clock_nanosleep,futex"


def mem_kib(pid: int) -> tuple[int, int]:
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def children(pid: int) -> list[int]:
    """Direct child processes (the demo's Google emulator runs as one)."""
    kids: list[int] = []
    for tid in threads(pid):
        try:
            kids += [int(k) for k in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            continue
    return kids


def threads(pid: int) -> list[str]:
    return os.listdir(f"/proc/{pid}/task")


def ctx_switches(pid: int) -> dict[str, int]:
    """Context switches per thread (a thread that ends must not make the sum go down)."""
    total: dict[str, int] = {}
    for tid in threads(pid):
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                total[tid] = total.get(tid, 0) + int(line.split()[1])
    return total


def strace_calls(pid: int, seconds: float, out: Path) -> dict[str, int]:
    """System calls that wait (poll family, sleeps, futex) over ``seconds``, all threads."""
    proc = subprocess.Popen(
        ["strace", "-f", "-c", "-o", str(out), "-e", f"trace={WAIT_CALLS}", "-p", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    calls: dict[str, int] = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in WAIT_CALLS.split(",") and parts[3].isdigit():
            calls[parts[-1]] = int(parts[3])
    return calls


def measure(
    name: str, argv: list[str], desk: Desktop, work: Path, idle: float, use_strace: bool,
    runs: int, settle: float = 35.0,
) -> dict[str, float]:  # fmt: skip
    report = work / f"{name}.report"
    report.unlink(missing_ok=True)
    env = desk.env(
        TRAYAPP_TEST_REPORT=str(report), PYTHONPATH=str(REPO), QT_QPA_PLATFORM="xcb",
        TRAYAPP_TRAY_WAIT="10", PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )  # fmt: skip
    if argv[0] != sys.executable:
        del env["PYTHONPATH"]  # the frozen bundle imports only what it carries
    t0 = time.monotonic()
    proc = desk.spawn(argv, log=name, env=env)
    row: dict[str, float] = {}
    try:
        row["icon_ms"] = (tray_bench.wait_line(report, "TRAYAPP_ICON_SHOWN", 60) - t0) * 1000
        row["ready_ms"] = (tray_bench.wait_line(report, "TRAYAPP_READY", 60) - t0) * 1000
        if runs:
            try:
                limit = max(120.0, runs * 0.5)  # 1,000 charms: their first pass takes a while
                tray_bench.wait_line(report, "TRAYAPP_RUN_FINISHED", limit, count=runs)
            except TimeoutError:
                print(f"  ({name}: fewer than {runs} runs finished in time)", file=sys.stderr)
        # Let the first pass settle (status writes, GC, the notification grace period and
        # start-up D-Bus call timeouts, which are one-shot): idle means after all of that.
        # 35 s after spawn, and at least 30 s after the first pass ended (1,000 charms take
        # longer than 35 s): one-shot timers a run leaves (keep-alive expiry, D-Bus call
        # timeouts) are over before the idle window opens.
        time.sleep(max(30.0, settle - (time.monotonic() - t0)))
        rss, pss = mem_kib(proc.pid)
        row["rss_mib"], row["pss_mib"] = rss / 1024, pss / 1024
        kids = [mem_kib(k) for k in children(proc.pid)]
        if kids:  # reported beside the tray, never added to it (see docs/performance.md)
            row["child_rss_mib"] = sum(r for r, _p in kids) / 1024
            row["child_pss_mib"] = sum(p for _r, p in kids) / 1024
        row["threads"] = len(threads(proc.pid))
        c0, cpu0 = ctx_switches(proc.pid), tray_bench.cpu_seconds(proc.pid)
        time.sleep(idle)
        c1, cpu1 = ctx_switches(proc.pid), tray_bench.cpu_seconds(proc.pid)
        switched = sum(n - c0.get(tid, 0) for tid, n in c1.items())
        row["ctx_per_min"] = switched * 60 / idle
        row["idle_cpu_ms_per_min"] = (cpu1 - cpu0) * 1000 * 60 / idle
        if use_strace:
            calls = strace_calls(proc.pid, idle, work / f"{name}.strace")
            polls = sum(v for k, v in calls.items() if "poll" in k or "select" in k)
            row["polls_per_min"] = polls * 60 / idle
            row["waits_per_min"] = sum(calls.values()) * 60 / idle
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        desk.procs.remove(proc)
    return row


def find_bundle(given: Path | None) -> Path | None:
    """The frozen ``trayapp`` executable: ``given`` (the file, or a folder holding it or the
    release's ``app/``), else the one packaging/build.sh leaves in out/pyinstaller/dist/."""
    path = given or REPO / "out" / "pyinstaller" / "dist" / "trayapp"
    for exe in (path, path / "trayapp", path / "app" / "trayapp"):
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    return None


def one_rep(
    idle: float, use_strace: bool, subjects: set[str], bundle: Path | None
) -> dict[str, dict[str, float]]:
    work = Path(tempfile.mkdtemp(prefix="trayapp-overview-"))
    feeds = tray_bench.FeedThread()
    base = feeds.start()
    desk = Desktop(work)
    rows: dict[str, dict[str, float]] = {}
    # The 20-feed-charm tray, from source and frozen: each on a fresh profile (a synced one
    # would have nothing due, so no first pass to wait for).
    trays = {"feeds": [sys.executable, "-m", "trayapp.ui"], "bundle": [str(bundle)]}
    try:
        desk.start()
        rows["floor"] = measure(
            "floor", [sys.executable, str(REPO / "bench" / "floor_tray.py")],
            desk, work, idle, use_strace, 0,
        )  # fmt: skip
        for name, argv in trays.items():
            if name in subjects:
                profile = work / f"profile-{name}"
                tray_bench.seed_profile(profile, base, timedelta(hours=6))
                rows[name] = measure(
                    name, [*argv, "--profile", str(profile)],
                    desk, work, idle, use_strace, tray_bench.CHARMS,
                )  # fmt: skip
        if "demo" in subjects:
            rows["demo"] = measure(
                "demo", [sys.executable, "-m", "trayapp.ui", "--demo"],
                desk, work, idle, use_strace, 5,
            )  # fmt: skip
    finally:
        desk.stop()
        feeds.stop()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    lo, med, hi = min(values), statistics.median(values), max(values)
    return f"{lo:7.2f} {med:7.2f} {hi:7.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--idle", type=float, default=20, help="idle window, seconds (20)")
    p.add_argument("--no-strace", action="store_true", help="skip the strace window")
    p.add_argument("--charms", type=int, default=tray_bench.CHARMS, help="feed charms (20)")
    p.add_argument(
        "--only",
        choices=["floor", "feeds", "bundle", "demo"],
        action="append",
        help="measure only these subjects (repeatable; the floor always runs)",
    )
    p.add_argument(
        "--bundle", type=Path, metavar="PATH",
        help="an already built frozen bundle (its trayapp executable or folder): adds `bundle`",
    )  # fmt: skip
    args = p.parse_args()
    subjects = set(args.only or ("feeds", "demo"))
    if args.bundle:
        subjects.add("bundle")
    bundle = find_bundle(args.bundle) if "bundle" in subjects else None
    if "bundle" in subjects and bundle is None:
        where = args.bundle or "out/pyinstaller/dist/trayapp/"
        print(f"no frozen bundle in {where}: skipping `bundle`. Build one with "
              "`packaging/build.sh --no-deb` (a few minutes), or pass --bundle PATH to one "
              "(its trayapp executable or folder).", file=sys.stderr)  # fmt: skip
        subjects.discard("bundle")
    tray_bench.CHARMS = args.charms
    missing = missing_tools()
    if missing:
        sys.exit(f"needs {', '.join(missing)} (the e2e desktop)")
    use_strace = not args.no_strace and shutil.which("strace") is not None
    tray_bench.compile_app()  # the tray's bytecode, as installed (see bench/tray.py)
    reps = []
    loads = []
    for n in range(args.reps):
        print(f"repetition {n + 1}/{args.reps} ...", file=sys.stderr, flush=True)
        loads.append(os.getloadavg()[0])
        reps.append(one_rep(args.idle, use_strace, subjects, bundle))
    loads.append(os.getloadavg()[0])
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    print(f"machine: {os.cpu_count()} CPUs, 1-min load average at each repetition's start and "
          f"at the end: {' '.join(f'{x:.2f}' for x in loads)}; commit {commit or '?'}; "
          f"{args.reps} repetitions, idle window {args.idle:g} s; min median max")  # fmt: skip
    if bundle:
        print(f"bundle: {bundle}")
    keys = ["icon_ms", "ready_ms", "rss_mib", "pss_mib", "child_rss_mib", "child_pss_mib",
            "threads", "ctx_per_min",
            "idle_cpu_ms_per_min", "polls_per_min", "waits_per_min"]  # fmt: skip
    titles = {"floor": "floor", "feeds": f"feeds ({args.charms})",
              "bundle": f"bundle ({args.charms})", "demo": "demo (5)"}  # fmt: skip
    shown = [s for s in titles if s == "floor" or s in subjects]
    print(f"{'measure':<28}" + "".join(f"{titles[s]:>24}" for s in shown))
    for key in keys:
        cols = [fmt([r[s][key] for r in reps if key in r.get(s, {})]) for s in shown]
        print(f"{key:<28}" + "".join(f"{c:>24}" for c in cols))
    print("ratios against the floor of the same repetition:")
    for key in ("icon_ms", "rss_mib", "pss_mib"):
        for s in shown[1:]:
            ratios = [r[s][key] / r["floor"][key] for r in reps if r["floor"].get(key) and s in r]
            print(f"  {key} {s:<6} x {fmt(ratios)}")


if __name__ == "__main__":
    main()
