"""Event-loop stalls while large pages are stored and large exports are written (issue 17.5).

Run: ``PYTHONPATH=. .venv/bin/python bench/stalls.py [--reps 3] [--messages 5000]
[--events 20000] [--cases gmail,gmail-history,gmail-resync] [--why]``.

``--why`` explains every beat later than 50 ms: the garbage collections (any thread's) that
overlap it and the loop thread's stacks the watchdog's thread sampled during it.

The stall figure is the app's own watchdog's (:class:`trayapp.core.watchdog.LoopWatchdog`):
its heartbeat measures how late each beat fired, which is how long the loop was held. The
bench runs one with a 20 ms threshold (a beat every 5 ms) during each case and keeps every
beat's lateness, so it prints the longest stall and the 99th percentile. The target is 50 ms,
the watchdog's figure, never a pass/fail test (the tests count chunks and threads instead).

Cases, each on a fresh profile, the emulator in its own process (``python -m
trayapp.emulator``, no added latency) so its work does not compete for this process's GIL:

* ``gmail``: full sync of ``--messages`` messages with ``parts=raw`` (the stdlib MIME parse of
  every message is the CPU), 50-message batches, three in flight.
* ``gmail-history`` (not run by default): after the full sync, ``--changes`` new messages
  and as many stored ones starred, then the incremental sync (history) that fetches, checks
  and stores them.
* ``gmail-resync`` (not run by default; runs the two above first): the new messages deleted,
  the stars taken off, the history made too old (404): the full resync in the same run, which
  stores every message again and prunes the deleted ones at its end.
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
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
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
    """The app's watchdog, keeping every beat's lateness (its stall figure) in ``lags``.

    With ``why``, it also keeps when each beat fired, the loop thread's stack each time its
    thread samples a stall (every 2.5 ms of it), and every garbage collection (any thread's:
    a collection holds the GIL, so it stops the loop thread too), to explain the stalls.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, why: bool = False) -> None:
        super().__init__(loop, THRESHOLD_S, lambda _charm, _lag: None)
        self.lags: list[float] = []
        self.why = why
        self.beats: list[tuple[float, float]] = []  # (fired at, lateness)
        self.samples: list[tuple[float, list[str]]] = []
        self.collections: list[tuple[float, float, int, int, str]] = []
        self._gc_start: dict[int, float] = {}
        self.gen2_sizes: list[int] = []  # objects tracked when each full collection started
        if why:
            gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.monotonic()
        ident = threading.get_ident()
        if phase == "start":
            if info["generation"] == 2:  # how big the heap it walks is (counted outside the time)
                self.gen2_sizes.append(sum(len(gc.get_objects(g)) for g in range(3)))
            self._gc_start[ident] = time.monotonic()
        else:
            start = self._gc_start.pop(ident, now)
            self.collections.append(
                (start, now, info["generation"], info["collected"], threading.current_thread().name)
            )

    def _check(self, now: float) -> None:
        lag = max(0.0, now - self._expected)
        self.lags.append(lag)
        if self.why:
            self.beats.append((now, lag))
        super()._check(now)

    def _sample(self) -> None:
        if self.why and self._loop_thread_id is not None:
            frame = sys._current_frames().get(self._loop_thread_id)
            stack: list[str] = []
            while frame is not None and len(stack) < 40:
                code = frame.f_code
                stack.append(
                    f"{code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {code.co_name}"
                )
                frame = frame.f_back
            del frame
            self.samples.append((time.monotonic(), stack))
        super()._sample()

    def close(self) -> None:
        super().close()
        if self.why and self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def explain(self, over: float = 0.050) -> list[str]:
        """One paragraph per beat later than ``over``: the collections and stacks inside it."""
        lines: list[str] = []
        for fired, lag in self.beats:
            if lag <= over:
                continue
            start = fired - lag - self._interval
            gcs = [c for c in self.collections if c[1] >= start and c[0] <= fired]
            gc_ms = sum((min(e, fired) - max(s, start)) for s, e, *_ in gcs) * 1000
            lines.append(
                f"beat {lag * 1000:6.1f} ms late; gc in it {gc_ms:5.1f} ms: "
                + ", ".join(
                    f"gen{g} {1000 * (e - s):.1f} ms ({n} freed, {t})" for s, e, g, n, t in gcs
                )
            )
            stacks = [st for at, st in self.samples if start <= at <= fired]
            counts: dict[str, int] = {}
            for st in stacks:
                key = " < ".join(st[:12])
                counts[key] = counts.get(key, 0) + 1
            for key, n in sorted(counts.items(), key=lambda kv: -kv[1])[:4]:
                lines.append(f"    {n:3d}x {key}")
        return lines


WHY = False


async def watched(work: Callable[[], Awaitable[Any]]) -> tuple[list[float], float, Any]:
    dog = RecordingWatchdog(asyncio.get_running_loop(), why=WHY)
    dog.run_started()
    start = time.perf_counter()
    try:
        result = await work()
    finally:
        elapsed = time.perf_counter() - start
        dog.run_finished()
        dog.close()
    if WHY:
        gen2 = [c for c in dog.collections if c[2] == 2]
        longest = max((e - s for s, e, *_ in gen2), default=0.0) * 1000
        print(
            f"  collections: {len(dog.collections)} (gen2 {len(gen2)}, longest gen2 "
            f"{longest:.1f} ms, objects tracked then: {dog.gen2_sizes}; frozen "
            f"{gc.get_freeze_count()})"
        )
        for line in dog.explain():
            print("  " + line)
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


CASES = (
    "gmail",
    "gmail-history",
    "gmail-resync",
    "calendar",
    "export-ics",
    "export-jsonl",
)
DEFAULT_CASES = ("gmail", "calendar", "export-ics", "export-jsonl")
CHANGES = 1000  # --changes


def mailbox_changes(emu: Emulator, rep: int) -> tuple[list[str], list[str]]:
    """``CHANGES`` new messages and ``CHANGES`` stored ones starred (the history case)."""
    rng = random.Random(1000 + rep)
    relabel = emu.op("message_ids", email=EMAIL)[:CHANGES]
    added = [
        emu.op(
            "add_message",
            email=EMAIL,
            raw_base64=raw_mail(100_000 * (rep + 1) + n, rng),
            label_ids=["INBOX"],
        )
        for n in range(CHANGES)
    ]
    for mid in relabel:
        emu.op("modify_labels", email=EMAIL, message_id=mid, add=["STARRED"])
    return added, relabel


def undo_changes(emu: Emulator, added: list[str], relabel: list[str]) -> None:
    """Back to the seeded mailbox: the new messages deleted, the stars taken off."""
    for mid in added:
        emu.op("delete_message", email=EMAIL, message_id=mid)
    for mid in relabel:
        emu.op("modify_labels", email=EMAIL, message_id=mid, remove=["STARRED"])


async def one_rep(emu: Emulator, tmp: Path, cases: Sequence[str] = CASES, rep: int = 0) -> Result:
    out: Result = {}
    world = World(emu, tmp / "profile")
    changes: tuple[list[str], list[str]] | None = None
    keeper = None
    try:
        await world.setup()
        try:  # as the app's process does once its engine has started (AppHost.start)
            from trayapp.core.heap import HeapKeeper
        except ImportError:  # a tree from before it
            pass
        else:
            keeper = HeapKeeper(world.engine)
            keeper.start()
        if {"gmail", "gmail-history", "gmail-resync", "export-jsonl"} & set(cases):
            lags, secs, what = await watched(lambda: world.sync_fully(world.gmail))
            out["gmail"] = (lags, secs, what)
        if {"gmail-history", "gmail-resync"} & set(cases):
            # Incremental: CHANGES new messages to fetch and store, CHANGES relabelled ones.
            changes = mailbox_changes(emu, rep)
            lags, secs, what = await watched(lambda: world.sync_fully(world.gmail))
            out["gmail-history"] = (lags, secs, what)
        if "gmail-resync" in cases and changes is not None:
            # History too old (404): a full resync that stores every message again (the
            # stars come off) and prunes the CHANGES deleted ones at its end.
            undo_changes(emu, *changes)
            changes = None
            emu.op("set_history_floor", email=EMAIL)
            lags, secs, what = await watched(lambda: world.sync_fully(world.gmail))
            out["gmail-resync"] = (lags, secs, what)
        if "calendar" in cases or "export-ics" in cases:
            lags, secs, what = await watched(lambda: world.sync_fully(world.calendar))
            out["calendar"] = (lags, secs, what)
        if "export-ics" in cases:
            lags, secs, n = await watched(
                lambda: world.export(world.calendar, "ics", tmp / "e.ics")
            )
            out["export-ics"] = (lags, secs, f"{n} events")
        if "export-jsonl" in cases:
            lags, secs, n = await watched(
                lambda: world.export(world.gmail, "jsonl", tmp / "m.jsonl")
            )
            out["export-jsonl"] = (lags, secs, f"{n} messages")
    finally:
        if keeper is not None:
            keeper.stop()
        if changes is not None:
            undo_changes(emu, *changes)
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
    p.add_argument(
        "--cases",
        default=",".join(DEFAULT_CASES),
        help="comma-separated subset of " + ", ".join(CASES) + " (default: %(default)s)",
    )
    p.add_argument(
        "--changes",
        type=int,
        default=1000,
        help="gmail-history/-resync: new messages and relabelled ones (default: %(default)s)",
    )
    p.add_argument(
        "--why",
        action="store_true",
        help="explain every beat over 50 ms: the garbage collections in it and the loop "
        "thread's stacks sampled during it",
    )
    args = p.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if unknown := set(cases) - set(CASES):
        p.error(f"unknown case(s) {', '.join(sorted(unknown))}; choose from {', '.join(CASES)}")
    global WHY, CHANGES
    WHY = args.why
    CHANGES = args.changes
    needs_events = "calendar" in cases or "export-ics" in cases
    events = args.events if needs_events else 0
    needs_mail = any(c.startswith("gmail") for c in cases) or "export-jsonl" in cases
    messages = args.messages if needs_mail else 0
    # As the app's process does (AppHost.open), when this tree does it.
    from trayapp import host

    interval = getattr(host, "LOOP_SWITCH_INTERVAL_S", None)
    if interval is not None:
        sys.setswitchinterval(interval)
    print(f"switch interval {sys.getswitchinterval() * 1000:.1f} ms; load {os.getloadavg()}")
    emu = Emulator(latency_ms=0)
    try:
        t0 = time.perf_counter()
        seed(emu, messages, events)
        print(f"seeded {messages} messages and {events} events "
              f"in {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        reps: list[Result] = []
        for rep in range(args.reps):
            with tempfile.TemporaryDirectory() as tmp:
                result = asyncio.run(one_rep(emu, Path(tmp), cases, rep))
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
