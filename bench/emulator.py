"""Emulator throughput: messages.get per second and batch parts per second, latency off.

Runs the emulator as a subprocess (``python -m trayapp.emulator --seed demo``), as a client
benchmark would see it, with quotas and conformance checking off, and drives it from this
process with httpx over keep-alive connections. Usage::

    PYTHONPATH=. .venv/bin/python bench/emulator.py [--seconds 3]

Bounded: every phase stops after ``--seconds`` or its request budget, whichever comes first,
and only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable

import httpx

from tests.emulator.harness import start_emulator_process

GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"


async def measure(
    label: str, fn: Callable[[int], Awaitable[int]], seconds: float, budget: int, concurrency: int
) -> tuple[str, float, int]:
    """Run ``fn(i)`` (which returns units of work done) from ``concurrency`` workers."""
    done = 0
    counter = iter(range(budget))
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        for i in counter:
            if time.perf_counter() > deadline:
                return
            n = await fn(i)  # not "done += await ...": that reads done before awaiting
            done += n

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return label, done / elapsed, done


async def main(seconds: float) -> None:
    proc, facts = await start_emulator_process("--seed", "demo")
    base = facts["base_url"]
    try:
        async with httpx.AsyncClient(
            base_url=base, timeout=60, limits=httpx.Limits(max_keepalive_connections=16)
        ) as http:
            await http.post("/__emu__/set_quota", json={"enabled": False})
            tokens = (
                await http.post(
                    "/__emu__/issue_tokens",
                    json={
                        "email": facts["account"],
                        "client_id": facts["client_id"],
                        "scopes": [GMAIL_READONLY],
                    },
                )
            ).json()["result"]
            http.headers["authorization"] = f"Bearer {tokens['access_token']}"
            ids = (await http.get("/gmail/v1/users/me/messages", params={"maxResults": 500})).json()
            mids = [m["id"] for m in ids["messages"]]

            def get(fmt: str) -> Callable[[int], Awaitable[int]]:
                async def one(i: int) -> int:
                    r = await http.get(
                        f"/gmail/v1/users/me/messages/{mids[i % len(mids)]}", params={"format": fmt}
                    )
                    assert r.status_code == 200
                    return 1

                return one

            async def batch(i: int) -> int:
                chunk = [mids[(i * 100 + j) % len(mids)] for j in range(100)]
                parts = "".join(
                    f"--b\r\nContent-Type: application/http\r\nContent-ID: <{m}>\r\n\r\n"
                    f"GET /gmail/v1/users/me/messages/{m}?format=metadata HTTP/1.1\r\n\r\n\r\n"
                    for m in chunk
                )
                r = await http.post(
                    "/batch/gmail/v1",
                    content=(parts + "--b--\r\n").encode(),
                    headers={"content-type": "multipart/mixed; boundary=b"},
                )
                assert r.status_code == 200
                return r.text.count("HTTP/1.1 200 OK")

            next_page: list[str | None] = [None]

            async def list_page(i: int) -> int:
                """Page through the whole mailbox, 100 at a time, then start over."""
                params: dict[str, str | int] = {"maxResults": 100}
                if next_page[0]:
                    params["pageToken"] = next_page[0]
                r = await http.get("/gmail/v1/users/me/messages", params=params)
                assert r.status_code == 200
                next_page[0] = r.json().get("nextPageToken")
                return 1

            # Warm the lazily parsed messages so the numbers reflect steady state.
            for m in mids[:500]:
                await http.get(f"/gmail/v1/users/me/messages/{m}", params={"format": "full"})
            rows = [
                await measure(
                    "messages.get format=full, 1 connection", get("full"), seconds, 20_000, 1
                ),
                await measure(
                    "messages.get format=full, 8 concurrent", get("full"), seconds, 20_000, 8
                ),
                await measure(
                    "messages.get format=metadata, 8 concurrent",
                    get("metadata"),
                    seconds,
                    20_000,
                    8,
                ),
                await measure(
                    "messages.get format=raw, 8 concurrent", get("raw"), seconds, 20_000, 8
                ),
                await measure("batch of 100 metadata gets, 2 concurrent", batch, seconds, 200, 2),
                await measure(
                    "messages.list pages of 100, 1 connection", list_page, seconds, 20_000, 1
                ),
            ]
    finally:
        proc.terminate()
        await proc.wait()
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'per second':>12}  {'done':>7}")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 7}")
    for label, rate, done in rows:
        unit = "parts/s" if label.startswith("batch") else "req/s"
        print(f"{label:<{width}}  {rate:>8.0f} {unit:<3}  {done:>7}")
    machine = f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    print(f"\n{machine}; client and server on the same machine")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per benchmark (default 3)")
    asyncio.run(main(ap.parse_args().seconds))
