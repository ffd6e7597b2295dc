"""Where the tray's memory goes: RSS per imported package, pymalloc arenas, mappings, caches.

    PYTHONPATH=. .venv/bin/python bench/tray_memory.py            # 20 feed charms
    PYTHONPATH=. .venv/bin/python bench/tray_memory.py --demo     # the demo's five charms

Runs the real tray (``trayapp.ui.app.main``) on the e2e tests' throwaway desktop (Xvfb, trayer,
dunst, private D-Bus: tests/e2e/desktop.py) with an import hook that reads RSS before and after
each module's body runs, so every module gets its *own* cost (its children's subtracted). Once
the engine is ready and the first pass has settled it prints: RSS at the icon, at ready and
settled; the top packages by RSS; pymalloc's arenas (``sys._debugmallocstats``: Python's small
objects); the largest mappings (``/proc/self/smaps``: [heap] is malloc's main arena, [anon]
holds pymalloc's arenas); how many sources :mod:`linecache` holds; CA-store loads; threads.
It is how issue 17's numbers in docs/performance.md were found. The hook itself costs about
1 MiB and slows start-up: read the RSS figures as shares, not as the tray's absolute size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

CHILD = r"""
import importlib.abc, json, os, ssl, sys, threading, time

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

stack, own, marks, ca_loads = [], {}, [], []

class Timed(importlib.abc.Loader):
    def __init__(self, inner): self.inner = inner
    def create_module(self, spec): return self.inner.create_module(spec)
    def exec_module(self, module):
        stack.append([module.__name__, rss(), 0])
        try:
            self.inner.exec_module(module)
        finally:
            name, start, children = stack.pop()
            total = rss() - start
            own[name] = own.get(name, 0) + total - children
            if stack:
                stack[-1][2] += total
    def __getattr__(self, attr): return getattr(self.inner, attr)

class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = Timed(spec.loader)
                return spec
        return None

sys.meta_path.insert(0, Finder())
real_load = ssl.SSLContext.load_verify_locations
def counting_load(self, *a, **k):
    ca_loads.append(1)
    return real_load(self, *a, **k)
ssl.SSLContext.load_verify_locations = counting_load

def mallocstats():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 2)
        sys._debugmallocstats()
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    text = b""
    while chunk := os.read(r, 65536):
        text += chunk
    lines = text.decode(errors="replace").splitlines()
    return [ln for ln in lines if "arenas allocated current" in ln or "allocated blocks" in ln]

def mappings():
    current, sizes = "[anon]", {}
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and not parts[0].endswith(":"):
                current = parts[5] if len(parts) > 5 else "[anon]"
            elif parts[0] == "Rss:":
                sizes[current] = sizes.get(current, 0) + int(parts[1])
    return sorted(sizes.items(), key=lambda kv: -kv[1])[:12]

def watch(report, out, settle):
    seen = set()
    while True:
        text = open(report).read() if os.path.exists(report) else ""
        for key in ("TRAYAPP_ICON_SHOWN", "TRAYAPP_READY"):
            if key in text and key not in seen:
                seen.add(key)
                marks.append((key, rss()))
        if "TRAYAPP_READY" in seen:
            time.sleep(settle)
            marks.append(("settled", rss()))
            import linecache
            packages = {}
            for name, kib in own.items():
                parts = name.split(".")
                key = ".".join(parts[:2]) if parts[0] in ("trayapp", "PySide6") else parts[0]
                packages[key] = packages.get(key, 0) + kib
            json.dump({
                "marks": marks,
                "packages": sorted(packages.items(), key=lambda kv: -kv[1])[:30],
                "modules": len([m for m in sys.modules.values() if m is not None]),
                "pymalloc": mallocstats(),
                "mappings": mappings(),
                "linecache": len(linecache.cache),
                "ca_loads": len(ca_loads),
                "threads": sorted(t.name for t in threading.enumerate()),
            }, open(out, "w"))
            os.kill(os.getpid(), signal.SIGTERM)
            return
        time.sleep(0.05)

import signal
threading.Thread(
    target=watch, args=(os.environ["TRAYAPP_TEST_REPORT"], sys.argv[1], float(sys.argv[2])),
    daemon=True, name="memory-probe",
).start()
marks.append(("interpreter", rss()))
from trayapp.ui.app import main
sys.exit(main(sys.argv[3:]))
"""


def main() -> None:
    import tray as tray_bench  # bench/tray.py: feed server, profile seeding

    from tests.e2e.desktop import Desktop, missing_tools

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo", action="store_true", help="the demo instead of 20 feed charms")
    p.add_argument("--settle", type=float, default=15, help="seconds after ready (15)")
    args = p.parse_args()
    if missing_tools():
        sys.exit(f"needs {', '.join(missing_tools())} (the e2e desktop)")
    work = Path(tempfile.mkdtemp(prefix="trayapp-memory-"))
    feeds = tray_bench.FeedThread()
    base = feeds.start()
    desk = Desktop(work)
    try:
        desk.start()
        tray_bench.seed_profile(work / "profile", base, timedelta(hours=6))
        out = work / "memory.json"
        env = desk.env(
            TRAYAPP_TEST_REPORT=str(work / "report.log"), PYTHONPATH=str(REPO),
            QT_QPA_PLATFORM="xcb", PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        )  # fmt: skip
        tray_args = ["--demo"] if args.demo else ["--profile", str(work / "profile")]
        child = [sys.executable, "-c", CHILD, str(out), str(args.settle), *tray_args]
        proc = desk.spawn(child, log="tray", env=env)
        try:
            proc.wait(240)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
        desk.procs.remove(proc)
        if not out.exists():
            sys.exit(f"no result; the tray's output: {(work / 'tray.log').read_text()[-2000:]}")
        data = json.loads(out.read_text())
    finally:
        desk.stop()
        feeds.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("RSS: " + ", ".join(f"{k} {v / 1024:.1f} MiB" for k, v in data["marks"]))
    print(f"modules {data['modules']}; sources held by linecache {data['linecache']}; "
          f"CA-store loads {data['ca_loads']}; threads {data['threads']}")  # fmt: skip
    print("pymalloc: " + "; ".join(" ".join(s.split()) for s in data["pymalloc"]))
    print("own RSS of the modules' bodies, by package (MiB):")
    for name, kib in data["packages"]:
        print(f"  {kib / 1024:6.2f}  {name}")
    print("largest mappings (MiB):")
    for name, kib in data["mappings"]:
        print(f"  {kib / 1024:6.2f}  {name}")


if __name__ == "__main__":
    main()
