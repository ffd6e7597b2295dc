"""Benchmark: how close the Google client gets to Gmail's per-user quota ceiling.

Fetches every message of a seeded emulator mailbox (list + batched messages.get) in real time,
with the emulator enforcing a per-user quota of Google's shape (scaled up so a run takes
seconds) and a round-trip latency. Prints one row per configuration:

    ratio   = quota floor / elapsed  (floor = units spent / quota rate; 1.0 is the ceiling)
    429s    = rate-limit answers the emulator gave (the pacer's job is to keep this ~0)

The emulator applies its latency to every inner call of a batch, one after the other, so with
latency the ratio depends on how many batches are in flight (see the report in the commit).

Usage: PYTHONPATH=. .venv/bin/python bench/google_client.py [--messages 1000] [--scale 2]
       [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from tests.emulator.harness import EmulatorServer, StaticToken
from trayapp.google.client import GoogleApi
from trayapp.google.endpoints import GoogleEndpoints
from trayapp.google.quota import AccountQuota, QuotaConfig

EMAIL = "bench@example.com"


async def run(
    emu: EmulatorServer, token: str, config: QuotaConfig, parallel: int, limit: float
) -> tuple[float, float, int, int]:
    emu.control.clear_log()
    api = GoogleApi(
        StaticToken(token),
        endpoints=GoogleEndpoints.for_base(emu.base_url),
        quota=AccountQuota.create(config),
    )
    async with api:
        # Start each run with the emulator's window empty, as after a quiet minute.
        emu.control.advance_clock(61)
        gmail = api.gmail()
        start = time.monotonic()
        ids = [m["id"] async for page in gmail.iter_message_pages() for m in page.messages]
        result = await gmail.get_messages(ids, format="minimal", parallel=parallel)
        elapsed = time.monotonic() - start
        assert len(result.messages) + len(result.errors) == len(ids)
    units = api.quota.gmail.spent
    floor = units / (limit / 60)
    limited = sum(1 for e in emu.control.requests() if e.status in (403, 429))
    return elapsed, floor / elapsed, limited, len(result.errors)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--scale", type=float, default=2.0, help="quota multiplier vs Google")
    parser.add_argument("--latency-ms", type=int, default=50)
    args = parser.parse_args()
    limit = 15_000 * args.scale
    config = QuotaConfig().scaled(args.scale)
    rows = []
    async with EmulatorServer(conformance=False) as emu:
        session = emu.quick_setup(EMAIL)
        emu.control.set_quota(gmail_units_per_minute=int(limit), enabled=True)
        for n in range(args.messages):
            emu.control.add_message(EMAIL, f"Subject: m{n}\r\n\r\nbody {n}\r\n".encode())
        for latency in (0, args.latency_ms):
            emu.app.latency_ms = latency
            for parallel in (1, 3):
                elapsed, ratio, limited, errors = await run(
                    emu, session.access_token, config, parallel, limit
                )
                rows.append((latency, parallel, elapsed, ratio, limited, errors))
    print(
        f"{args.messages} messages (minimal), quota {limit:,.0f} units/min "
        f"({args.scale:g}x Google's per-user rate)"
    )
    header = f"{'latency ms':>10} {'in flight':>9} {'elapsed s':>10} {'ratio':>7} {'429s':>6}"
    print(header + f" {'failed':>7}")
    for latency, parallel, elapsed, ratio, limited, errors in rows:
        print(
            f"{latency:>10} {parallel:>9} {elapsed:>10.2f} {ratio:>7.2f} {limited:>6} {errors:>7}"
        )


if __name__ == "__main__":
    asyncio.run(main())
