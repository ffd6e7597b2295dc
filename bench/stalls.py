"""Event-loop stalls while large pages are stored and large exports are written (issue 17.5).

Run: ``PYTHONPATH=. .venv/bin/python bench/stalls.py [--reps 3] [--messages 5000]
[--events 20000]``.

The stall figure is the app's own watchdog's (:class:`trayapp.core.watchdog.LoopWatchdog`):
its heartbeat measures how late each beat fired, which is how long the loop was held. The
bench runs one with a 20 ms threshold (a beat every 5 ms) during each case and keeps every
beat's lateness, so it prints the longest stall and the 99th percentile. The target is 50 ms,
the watchdog's figure, never a pass/fail test (the tests count chunks and threads instead).

Cases, each on a fresh profile, the emulator in its own process (``python -m
trayapp.emulator``, no added latency) so its work does not compete for this process's GIL:

* ``gmail``: full sync of ``--messages`` messages with ``parts=raw`` (the stdlib MIME parse of
  every message is the CPU), 50-message batches, three in flight.
* ``calendar``: full sync of ``--events`` events in one calendar (pages of Google's maximum,
  2,500 events).
* ``export-ics``: the tray's export action (``DataReader.export``) of those events as ICS.
* ``export-jsonl``: the same for the Gmail messages as JSON lines.

The emulator's quota and the client's budget are scaled up (x20) so the runs are limited by
CPU, not by pacing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import email.message
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.soak_kill import EMAIL, SCOPES, Emulator
from trayapp.auth.accounts import AccountManager
from trayapp.auth.client_config import parse_client_json
from trayapp.auth.secrets import SecretVault
from trayapp.auth.signin import grant_from_token_response
from trayapp.auth.wiring import attach_accounts, google_api_kwargs
from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.profile import Profile
from trayapp.core.watchdog import LoopWatchdog
from trayapp.google.client import GoogleApi
from trayapp.google.quota import AccountQuota, QuotaConfig

THRESHOLD_S = 0.020  # beats every 5 ms
QUOTA_SCALE = 20


class RecordingWatchdog(LoopWatchdog):
    """The app's watchdog, keeping every beat's lateness (its stall figure) in ``lags``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop, THRESHOLD_S, lambda _charm, _lag: None)
        self.lags: list[float] = []

    def _check(self, now: float) -> None:
        self.lags.append(max(0.0, now - self._expected))
        super()._check(now)


async def watched(work: Callable[[], Awaitable[Any]]) -> tuple[list[float], float, Any]:
    dog = RecordingWatchdog(asyncio.get_running_loop())
    dog.run_started()
    start = time.perf_counter()
    try:
        result = await work()
    finally:
        elapsed = time.perf_counter() - start
        dog.run_finished()
        dog.close()
    return dog.lags, elapsed, result


def raw_mail(n: int, rng: random.Random) -> str:
    """A message like real mail: text and HTML alternatives, a small attachment, 2-6 KB."""
    msg = email.message.EmailMessage()
    msg["From"] = f"Sender {n % 17} <s{n % 17}@example.com>"
    msg["To"] = f"{EMAIL}, Other Person <other{n % 5}@example.org>"
    msg["Cc"] = "List <list@example.net>"
    msg["Subject"] = f"Re: stall bench message {n} " + "é" * rng.randrange(0, 20)
    msg["Message-ID"] = f"<stall{n}.{time.monotonic_ns()}@example.com>"
    msg["Date"] = "Mon, 07 Dec 2026 10:00:00 +0000"
    text = f"Body of message {n}, line after line.\n" * rng.randrange(5, 60)
    msg.set_content(text)
    msg.add_alternative(f"<html><body><p>{text}</p></body></html>", subtype="html")
    msg.add_attachment(b"%PDF-1.4 " + bytes(rng.randrange(256) for _ in range(600)),
                       maintype="application", subtype="pdf", filename=f"doc{n}.pdf")  # fmt: skip
    return base64.b64encode(msg.as_bytes()).decode()


def seed(emu: Emulator, messages: int, events: int) -> None:
    rng = random.Random(17)
    emu.op("create_account", email=EMAIL, name="Stalls")
    # Google's per-user limits times QUOTA_SCALE on both sides (the client's budget below).
    emu.op("set_quota", gmail_units_per_minute=15_000 * QUOTA_SCALE,
           calendar_requests_per_minute=600 * QUOTA_SCALE)  # fmt: skip
    for n in range(messages):
        emu.op("add_message", email=EMAIL, raw_base64=raw_mail(n, rng), label_ids=["INBOX"])
    for n in range(events):
        day, hour = 1 + n % 28, 6 + n % 14
        emu.op("add_event", email=EMAIL, calendar_id=EMAIL, event={
            "summary": f"stall bench event {n}", "location": f"Room {n % 40}",
            "description": "Agenda: " + "item, " * rng.randrange(5, 60),
            "start": {"dateTime": f"2026-11-{day:02d}T{hour:02d}:00:00Z"},
            "end": {"dateTime": f"2026-11-{day:02d}T{hour:02d}:45:00Z"},
        })  # fmt: skip


class World:
    def __init__(self, emu: Emulator, profile: Path) -> None:
        self.emu = emu
        self.engine = Engine(Profile.resolve(profile), patterns=default_registry(), jitter=0.0)
        self.manager: AccountManager = attach_accounts(
            self.engine, vault=SecretVault(self.engine.profile.path, mode="file")
        )
        self.apis: dict[str, GoogleApi] = {}
        self.engine.google_factory = self.google
        self.gmail = self.calendar = ""

    def google(self, account_id: str) -> GoogleApi:
        if account_id not in self.apis:
            self.apis[account_id] = GoogleApi(
                **google_api_kwargs(self.manager, account_id),
                quota=AccountQuota.create(QuotaConfig().scaled(QUOTA_SCALE)),
            )
        return self.apis[account_id]

    async def setup(self) -> None:
        client = self.emu.op("create_client")
        base = self.emu.base_url
        config = {"installed": {
            "client_id": client["id"], "client_secret": client["secret"],
            "auth_uri": f"{base}/o/oauth2/auth", "token_uri": f"{base}/token",
            "redirect_uris": ["http://localhost"],
        }}  # fmt: skip
        self.manager.clients.set(parse_client_json(json.dumps(config)))
        tokens = self.emu.op("issue_tokens", email=EMAIL, client_id=client["id"], scopes=SCOPES)
        account = await self.manager.complete_sign_in(
            grant_from_token_response(tokens, email=EMAIL)
        )
        self.gmail = self.engine.add_charm(
            "gmail-importer", {"query": "in:inbox", "parts": "raw"}, name="mail",
            account_id=account.id,
        ).id  # fmt: skip
        self.calendar = self.engine.add_charm(
            "gcalendar-importer", {"calendars": "all"}, name="calendar", account_id=account.id
        ).id

    async def sync_fully(self, charm: str) -> str:
        """Sync until the full sync is done (a long one continues over several runs)."""
        for _ in range(50):
            outcome = (await self.engine.sync([charm]))[charm]
            if outcome.kind is not OutcomeKind.OK:
                raise SystemExit(f"sync of {charm} failed: {outcome.kind.value}: {outcome.message}")
            if "in progress" not in (outcome.message or ""):
                return outcome.message or ""
        raise SystemExit(f"sync of {charm} did not finish")

    async def export(self, charm: str, fmt: str, dest: Path) -> int:
        from trayapp.ui.data_reader import DataReader

        reader = DataReader(self.engine.store.path, self.engine.patterns)
        try:
            return await reader.export(self.engine.charm(charm), fmt, dest)
        finally:
            reader.close()

    async def aclose(self) -> None:
        await self.engine.stop()
        for api in self.apis.values():
            await api.aclose()
        await self.manager.aclose()
        self.engine.close()


Result = dict[str, tuple[list[float], float, str]]


async def one_rep(emu: Emulator, tmp: Path) -> Result:
    out: Result = {}
    world = World(emu, tmp / "profile")
    try:
        await world.setup()
        lags, secs, what = await watched(lambda: world.sync_fully(world.gmail))
        out["gmail"] = (lags, secs, what)
        lags, secs, what = await watched(lambda: world.sync_fully(world.calendar))
        out["calendar"] = (lags, secs, what)
        lags, secs, n = await watched(lambda: world.export(world.calendar, "ics", tmp / "e.ics"))
        out["export-ics"] = (lags, secs, f"{n} events")
        lags, secs, n = await watched(lambda: world.export(world.gmail, "jsonl", tmp / "m.jsonl"))
        out["export-jsonl"] = (lags, secs, f"{n} messages")
    finally:
        await world.aclose()
    return out


def pct99(ms: list[float]) -> float:
    return statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) > 1 else ms[-1]


def fmt_ms(values: list[float]) -> str:
    values = sorted(values)
    return f"{values[0]:7.1f} / {statistics.median(values):7.1f} / {values[-1]:7.1f}"


def main() -> int:
    p = argparse.ArgumentParser(description="event-loop stalls (watchdog figure) per case")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--events", type=int, default=20000)
    args = p.parse_args()
    # As the app's process does (AppHost.open), when this tree does it.
    from trayapp import host

    interval = getattr(host, "LOOP_SWITCH_INTERVAL_S", None)
    if interval is not None:
        sys.setswitchinterval(interval)
    print(f"switch interval {sys.getswitchinterval() * 1000:.1f} ms; load {os.getloadavg()}")
    emu = Emulator(latency_ms=0)
    try:
        t0 = time.perf_counter()
        seed(emu, args.messages, args.events)
        print(f"seeded {args.messages} messages and {args.events} events "
              f"in {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        reps: list[Result] = []
        for rep in range(args.reps):
            with tempfile.TemporaryDirectory() as tmp:
                result = asyncio.run(one_rep(emu, Path(tmp)))
            reps.append(result)
            for case, (lags, secs, what) in result.items():
                ms = sorted(x * 1000 for x in lags)
                p99 = (
                    statistics.quantiles(ms, n=100, method="inclusive")[98]
                    if len(ms) > 1
                    else ms[-1]
                )
                print(f"rep {rep + 1} {case:<13} {secs:6.1f} s  beats {len(ms):6d}  "
                      f"max {ms[-1]:7.1f} ms  p99 {p99:6.1f} ms  over 50 ms: "
                      f"{sum(x > 50 for x in ms):4d}  ({what})", flush=True)  # fmt: skip
    finally:
        emu.close()
    print(f"\nwatchdog stall per case over {args.reps} reps, min / median / max (ms)")
    print(f"{'case':<13} {'max stall':>25} {'p99 stall':>25} {'seconds':>25}")
    for case in reps[0]:
        maxes, p99s, secs = [], [], []
        for r in reps:
            lags, s, _ = r[case]
            ms = sorted(x * 1000 for x in lags)
            maxes.append(ms[-1])
            p99s.append(
                statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) > 1 else ms[-1]
            )
            secs.append(s)
        print(f"{case:<13} {fmt_ms(maxes):>25} {fmt_ms(p99s):>25} {fmt_ms(secs):>25}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
