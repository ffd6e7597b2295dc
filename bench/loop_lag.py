"""How long the event loop is held while a Gmail and a Calendar full sync store their pages.

Run: ``PYTHONPATH=. .venv/bin/python bench/loop_lag.py [--messages 2000] [--events 10000]``.

The emulator runs in its own process (``python -m trayapp.emulator``); the engine runs here,
with the real accounts wiring, Google client and store, and syncs one Gmail importer and one
Calendar importer (all events in one calendar, so its pages are Google's full 2,500 events).
Beside them a probe task sleeps 5 ms at a time and records how late each wake-up is: the
longest lateness is the longest time something held the loop (the issue's target: 50 ms).
Prints the lateness distribution and what the store wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.soak_kill import EMAIL, Emulator, Source, make_profile
from trayapp.auth.secrets import SecretVault
from trayapp.auth.wiring import AccountsWiring
from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.core.profile import Profile

PROBE_S = 0.005


async def probe(lateness: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(PROBE_S)
        lateness.append(loop.time() - start - PROBE_S)


async def measure(profile: Path, ids: tuple[str, str]) -> tuple[list[float], dict[str, str], float]:
    engine = Engine(Profile.resolve(profile), patterns=default_registry())
    wiring = AccountsWiring(engine, vault=SecretVault(engine.profile.path, mode="file"))
    lateness: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(probe(lateness, stop))
    start = time.perf_counter()
    try:
        outcomes = await engine.sync(list(ids))
    finally:
        elapsed = time.perf_counter() - start
        stop.set()
        await task
        await engine.stop()
        await wiring.aclose()
        engine.close()
    return (
        lateness,
        {k: f"{v.kind.value} {v.report.added} added" for k, v in outcomes.items()},
        elapsed,
    )


def main() -> int:
    p = argparse.ArgumentParser(description="event loop lateness during full syncs")
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--events", type=int, default=10000)
    args = p.parse_args()
    import random

    emu = Emulator(latency_ms=0)
    try:
        emu.op("create_account", email=EMAIL, name="Lag")
        source = Source(emu, random.Random(1), calendars=[EMAIL])
        for _ in range(args.messages):
            source.add_mail()
        for _ in range(args.events):
            source.add_event(EMAIL)
        with tempfile.TemporaryDirectory() as tmp:
            profile = Path(tmp) / "profile"
            ids = asyncio.run(make_profile(profile, emu))
            lateness, outcomes, elapsed = asyncio.run(measure(profile, ids))
    finally:
        emu.close()
    ms = sorted(x * 1000 for x in lateness)
    q = statistics.quantiles(ms, n=100)
    print(f"{args.messages} messages + {args.events} events synced in {elapsed:.1f} s: {outcomes}")
    print(f"probe wake-ups {len(ms)}; lateness ms: median {statistics.median(ms):.1f}, "
          f"p99 {q[98]:.1f}, max {ms[-1]:.1f}; over 50 ms: {sum(x > 50 for x in ms)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
