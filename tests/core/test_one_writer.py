"""Charm status has one writer (the scheduler the Engine always holds), ``state`` is computed
from facts, and the run deadlines and bounds of issue 14 hold (no hang, no overflow).

Real store, real scheduler on the system clock, real HTTP on 127.0.0.1; waits are on engine
events with generous timeouts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from trayapp.api import NoSettings, Pattern, RateLimited, RunReport, UpdateContext
from trayapp.core import aio
from trayapp.core import scheduler as scheduler_module
from trayapp.core.charms import CharmRepo
from trayapp.core.engine import Engine
from trayapp.core.errors import ConfigError
from trayapp.core.events import EngineEvent, RunFinished, RunStarted
from trayapp.core.outcomes import OutcomeKind, RunOutcome
from trayapp.core.patterns import PatternRegistry
from trayapp.core.profile import Profile
from trayapp.core.scheduler import MAX_INTERVAL, MAX_PAUSE, MAX_RETRY_AFTER
from trayapp.core.status import CharmState, CharmStatus, finished
from trayapp.core.statusrepo import StoreStatusRepo, process_alive, process_token

WAIT = 30.0


class Gate(Pattern[NoSettings]):
    """Waits at a gate (replaced per test: events belong to one loop)."""

    id = "gate"
    title = "Gate"
    Settings = NoSettings
    gate = asyncio.Event()

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        await Gate.gate.wait()
        return RunReport(added=1)


class Stubborn(Pattern[NoSettings]):
    """Swallows cancellation, as a careless plugin's ``except BaseException: pass`` does."""

    id = "stubborn"
    title = "Stubborn"
    Settings = NoSettings
    timeout = timedelta(seconds=1)
    swallowed: ClassVar[list[str]] = []
    stubborn = True  # the tests' own loops end by cancelling it again: then it lets go

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if not Stubborn.stubborn:
                    raise
                Stubborn.swallowed.append(ctx.charm_id)


class StubbornLong(Stubborn):
    """The same, with a deadline far away: still running when the app stops."""

    id = "stubborn-long"
    title = "Stubborn (long)"
    timeout = timedelta(minutes=30)


class FarFuture(Pattern[NoSettings]):
    """A server that says "come back in 2100"."""

    id = "far-future"
    title = "Far future"
    Settings = NoSettings

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        raise RateLimited("slow down", retry_after=datetime(2100, 1, 1, tzinfo=UTC))


class Closer(Pattern[NoSettings]):
    """Closes the shared HTTP client, every way a plugin could."""

    id = "closer"
    title = "Closer"
    Settings = NoSettings

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        await ctx.http.aclose()
        await ctx.http.__aexit__(None, None, None)
        return RunReport()


class Fetcher(Pattern[NoSettings]):
    """GETs the test server's URL through the shared client."""

    id = "fetcher"
    title = "Fetcher"
    Settings = NoSettings
    url = ""

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        response = await ctx.http.get(Fetcher.url)
        response.raise_for_status()
        return RunReport(updated=1)


class Noop(Pattern[NoSettings]):
    id = "noop"
    title = "Noop"
    Settings = NoSettings

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        return RunReport()


def registry() -> PatternRegistry:
    reg = PatternRegistry()
    for cls in (Gate, Stubborn, StubbornLong, FarFuture, Closer, Fetcher, Noop):
        reg.register(cls)
    return reg


@pytest.fixture
def profile(tmp_path: Path) -> Profile:
    return Profile.resolve(tmp_path / "profile")


@pytest.fixture
async def engine(profile: Profile) -> AsyncIterator[Engine]:
    Gate.gate = asyncio.Event()
    Stubborn.stubborn = True
    eng = Engine(profile, patterns=registry(), jitter=0.0)
    yield eng
    Stubborn.stubborn = False  # the abandoned run ends when pytest's loop cancels it
    Gate.gate.set()
    await eng.stop()
    eng.close()


async def wait_event(engine: Engine, predicate: Any) -> EngineEvent:
    seen: asyncio.Future[EngineEvent] = asyncio.get_running_loop().create_future()

    def on(event: EngineEvent) -> None:
        if predicate(event) and not seen.done():
            seen.set_result(event)

    unsubscribe = engine.subscribe(on)
    try:
        return await asyncio.wait_for(seen, WAIT)
    finally:
        unsubscribe()


# --- status with one writer ------------------------------------------------------------------


async def test_a_second_engine_sees_running_only_while_the_run_lives(
    engine: Engine, profile: Profile
) -> None:
    engine.add_charm("gate", name="slow")
    started = asyncio.ensure_future(
        wait_event(engine, lambda e: isinstance(e, RunStarted) and e.charm_id == "slow")
    )
    await engine.start()
    await started
    reader = Engine(profile, patterns=registry())  # the CLI's view: loaded, never started
    try:
        assert reader.status("slow").state is CharmState.RUNNING
        assert reader.statuses()["slow"].to_json()["state"] == "running"
        done = asyncio.ensure_future(wait_event(engine, lambda e: isinstance(e, RunFinished)))
        Gate.gate.set()
        await done
        # The same reader, asked again, re-reads the store: the run is over.
        after = reader.status("slow")
        assert after.state is CharmState.SCHEDULED and after.last_outcome is OutcomeKind.OK
        assert after.totals.added == 1
    finally:
        reader.close()


def test_a_status_saved_as_running_by_a_dead_process_reads_as_not_running(
    profile: Profile,
) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=WAIT)
    eng = Engine(profile, patterns=registry())
    try:
        eng.add_charm("noop", name="n")
        # What a process killed mid-run leaves in the store: running, owned by a dead pid.
        status = eng.store.collection(StoreStatusRepo.STATUS)
        status.upsert("n", {**CharmStatus("n", running=True).to_record(), "owner": str(gone.pid)})
        assert status.get("n")["running"] is True
        assert eng.status("n").state is CharmState.SCHEDULED
        assert eng.statuses()["n"].to_json()["state"] == "scheduled"
    finally:
        eng.close()


def test_process_tokens_tell_this_process_from_dead_and_reused_pids() -> None:
    assert process_alive(process_token())
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=WAIT)
    assert not process_alive(str(gone.pid))
    assert not process_alive(f"{gone.pid}:12345")
    # A live pid that started at another time is not the process that wrote the token.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live:
        try:
            assert process_alive(str(live.pid))
            if Path("/proc").is_dir():
                assert not process_alive(f"{live.pid}:1")
        finally:
            live.kill()
    assert not process_alive(None) and not process_alive("garbage")


async def test_commands_on_a_stopped_engine_take_the_same_path_and_the_start_honours_them(
    engine: Engine, profile: Profile
) -> None:
    for name in ("a", "b"):
        engine.add_charm("noop", name=name, interval=timedelta(days=1))
    assert not engine.running
    first = await engine.sync(["a", "b"])  # one-shot: the loop runs for this pass only
    assert all(o.ok for o in first.values())
    engine.pause("a")
    engine.sync_now("b")  # not running: due now, saved for the next start
    assert engine.status("a").state is CharmState.PAUSED
    # A fresh engine (another process) reads what the stopped one decided.
    other = Engine(profile, patterns=registry())
    try:
        assert other.status("a").paused
        assert other.status("b").next_due_at is not None
        assert other.status("b").next_due_at <= datetime.now(UTC)  # type: ignore[operator]
    finally:
        other.close()
    ran = asyncio.ensure_future(
        wait_event(engine, lambda e: isinstance(e, RunFinished) and e.record.charm_id == "b")
    )
    await engine.start()
    record = (await ran).record  # type: ignore[union-attr]
    assert record.outcome is OutcomeKind.OK
    assert engine.status("a").state is CharmState.PAUSED
    assert len(engine.history("a")) == 1  # only the one-shot run: paused, it did not run again


def test_the_state_is_computed_by_pure_transitions() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    base = CharmStatus("c", running=True)
    ok = finished(
        base,
        RunOutcome(OutcomeKind.OK, report=RunReport(added=2)),
        now,
        next_due_at=now + timedelta(hours=1),
        unpark=True,
        blocked=None,
    )
    assert ok.state is CharmState.SCHEDULED and not ok.running and ok.totals.added == 2
    failed = finished(
        ok,
        RunOutcome(OutcomeKind.OFFLINE, message="no network"),
        now,
        next_due_at=now + timedelta(seconds=30),
        unpark=False,
        blocked=None,
    )
    assert failed.state is CharmState.BACKING_OFF and failed.consecutive_failures == 1
    parked = finished(
        failed,
        RunOutcome(OutcomeKind.AUTH_REQUIRED),
        now,
        next_due_at=now,
        unpark=False,
        blocked=None,
    )
    assert parked.state is CharmState.PARKED and parked.next_due_at is None
    assert parked.with_(paused=True).state is CharmState.PAUSED
    assert parked.with_(running=True).state is CharmState.RUNNING
    assert "state" not in parked.to_record() and parked.to_json()["state"] == "parked"


# --- 14.3: hard deadlines and bounds ---------------------------------------------------------


def test_a_sync_exits_even_if_an_updater_swallows_cancellation(
    profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole CLI path in-process: the bounded runner, a one-shot sync, stop and close."""
    monkeypatch.setattr(scheduler_module, "CANCEL_GRACE", 0.5)
    monkeypatch.setattr(Stubborn, "stubborn", True)
    abandoned: set[asyncio.Future[Any]] = set()
    monkeypatch.setattr(aio, "_abandoned", abandoned)  # this test's own, not the process's
    Stubborn.swallowed = []
    results: list[dict[str, RunOutcome]] = []

    async def main() -> None:
        eng = Engine(profile, patterns=registry())
        eng.add_charm("stubborn", name="s")
        try:
            results.append(await eng.sync(["s"]))
        finally:
            await eng.stop()
            eng.close()

    thread = threading.Thread(target=lambda: aio.run(main(), grace=0.5), daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "the sync never returned"
    outcome = results[0]["s"]
    assert outcome.kind is OutcomeKind.TIMEOUT
    assert "ignored being stopped" in outcome.message
    assert Stubborn.swallowed  # it really did swallow the cancellation (twice)
    assert len(abandoned) == 1  # noted for the process exit (cli.main ends it at once)
    check = Engine(profile, patterns=registry())
    try:
        assert check.history("s")[0].outcome is OutcomeKind.TIMEOUT
        assert check.status("s").state is not CharmState.RUNNING
    finally:
        check.close()


async def test_stop_returns_while_an_updater_swallows_cancellation(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_module, "SHUTDOWN_GRACE", 0.5)
    monkeypatch.setattr(aio, "_abandoned", set())
    Stubborn.swallowed = []
    engine.add_charm("stubborn-long", name="s")
    started = asyncio.ensure_future(wait_event(engine, lambda e: isinstance(e, RunStarted)))
    await engine.start()
    await started
    await asyncio.wait_for(engine.stop(), WAIT)
    assert Stubborn.swallowed == ["s"]
    assert engine.history("s")[0].outcome is OutcomeKind.CANCELLED
    assert engine.status("s").state is not CharmState.RUNNING


async def test_a_far_future_retry_after_waits_a_day_at_most(engine: Engine) -> None:
    engine.add_charm("far-future", name="f")
    before = datetime.now(UTC)
    outcome = (await engine.sync(["f"]))["f"]
    assert outcome.kind is OutcomeKind.RATE_LIMITED
    due = engine.status("f").next_due_at
    assert due is not None
    assert due <= datetime.now(UTC) + MAX_RETRY_AFTER
    assert due >= before + MAX_RETRY_AFTER - timedelta(minutes=1)  # the cap, not the backoff


async def test_an_oversized_interval_is_refused_and_a_saved_one_cannot_overflow(
    engine: Engine,
) -> None:
    with pytest.raises(ConfigError, match=r"at most 366 days"):
        engine.add_charm("noop", name="x", interval=timedelta(days=99_999_999))
    info = engine.add_charm("noop", name="n")
    with pytest.raises(ConfigError, match=r"at most 366 days"):
        engine.update_charm(info.id, interval=MAX_INTERVAL + timedelta(seconds=1))
    with pytest.raises(ConfigError, match=r"pause can last at most"):
        engine.pause(info.id, datetime.now(UTC) + MAX_PAUSE + timedelta(days=1))
    # A value saved before the bound existed (or by hand) runs and reschedules, no overflow.
    CharmRepo(engine.store).save(dataclasses.replace(info, interval=timedelta(days=999_999_998)))
    engine.reload_charms()
    outcome = (await engine.sync([info.id]))[info.id]
    assert outcome.ok
    due = engine.status(info.id).next_due_at
    assert due is not None and due <= datetime.now(UTC) + 2 * MAX_INTERVAL


@pytest.fixture
def http_server() -> Iterator[str]:
    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


async def test_a_pattern_cannot_close_the_shared_http_client(
    engine: Engine, http_server: str
) -> None:
    Fetcher.url = http_server
    engine.add_charm("closer", name="closer")
    engine.add_charm("fetcher", name="fetcher")
    assert (await engine.sync(["fetcher"]))["fetcher"].ok  # the client exists and works
    assert (await engine.sync(["closer"]))["closer"].ok
    assert not engine.http.is_closed
    after = await engine.sync(["fetcher"])
    assert after["fetcher"].ok, after["fetcher"].message
    client = engine.http
    await engine.stop()
    assert client.is_closed  # the engine itself still closes it at stop


def test_a_damaged_status_row_costs_only_that_charm_its_saved_status(profile: Profile) -> None:
    eng = Engine(profile, patterns=registry())
    try:
        for name in ("good", "bad"):
            eng.add_charm("noop", name=name)
        repo = StoreStatusRepo(eng.store)
        repo.save(CharmStatus("good", consecutive_failures=3, last_error_kind=OutcomeKind.OFFLINE))
        eng.store.collection(StoreStatusRepo.STATUS).upsert(
            "bad", {"charm_id": "bad", "consecutive_failures": "many", "last_outcome": "??"}
        )
        statuses = eng.statuses()
        assert statuses["good"].state is CharmState.BACKING_OFF
        assert statuses["bad"] == CharmStatus("bad")
    finally:
        eng.close()


async def test_commands_reach_a_charm_another_process_added_to_a_running_engine(
    engine: Engine, profile: Profile
) -> None:
    engine.add_charm("noop", name="first", interval=timedelta(days=1))
    await engine.start()
    other = Engine(profile, patterns=registry())  # the CLI, without telling the running engine
    try:
        other.add_charm("noop", name="second", interval=timedelta(days=1))
    finally:
        other.close()
    engine.pause("second")  # no NotFoundError: the running engine picks the charm up first
    assert engine.status("second").state is CharmState.PAUSED
    engine.resume(None)
    ran = asyncio.ensure_future(
        wait_event(engine, lambda e: isinstance(e, RunFinished) and e.record.charm_id == "second")
    )
    engine.sync_now(None)
    assert (await ran).record.outcome is OutcomeKind.OK  # type: ignore[union-attr]


async def test_opening_an_engine_to_read_writes_nothing(profile: Profile) -> None:
    """``trayapp status`` while the tray runs must not race it: a read-only Engine never
    writes (a stale copy of a status saved over the running engine's newer one)."""
    writer = Engine(profile, patterns=registry())
    for name in ("a", "b"):
        writer.add_charm("noop", name=name)
    await writer.sync(["a"])
    repo = StoreStatusRepo(writer.store)
    repo.delete("b")  # "b" has no saved status yet: a reader must not save one
    past = datetime.now(UTC) - timedelta(hours=1)
    repo.save(writer.status("a").with_(paused=True, paused_until=past))  # a pause that ended
    await writer.aclose()

    def files() -> dict[str, bytes]:
        return {
            p.name: p.read_bytes()
            for p in profile.path.iterdir()
            if p.name.startswith(profile.db_path.name)
        }

    before = files()
    reader = Engine(profile, patterns=registry())
    try:
        assert reader.statuses()["a"].last_outcome is OutcomeKind.OK
        assert reader.status("a").paused  # as saved: the engine that runs it ends the pause
        assert reader.status("b").last_run_at is None
        reader.history("a")
        reader.charms()
    finally:
        reader.close()
    assert files() == before
