"""The Engine end to end: real store, real scheduler on the system clock, real HTTP on 127.0.0.1.

Waits are on engine events (with generous timeouts), never on sleeps.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import threading
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from trayapp.api import (
    AuthRequired,
    BaseModel,
    CellSpec,
    NoSettings,
    Pattern,
    RunReport,
    UpdateContext,
)
from trayapp.core import scheduler as scheduler_module
from trayapp.core.engine import USER_AGENT, Engine
from trayapp.core.errors import BindingError, ConfigError, NotFoundError, SettingsError
from trayapp.core.events import CharmsChanged, EngineEvent, RunFinished, RunStarted
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.patterns import PatternRegistry
from trayapp.core.profile import Profile
from trayapp.core.status import CharmState
from trayapp.core.statusrepo import StoreStatusRepo
from trayapp.patterns.feed import FeedImporter

FEEDS = Path(__file__).resolve().parents[1] / "data" / "feeds"
WAIT = 30.0  # generous: a loaded 2-core CI machine


# --- a local static feed server (the stdlib's, with Last-Modified / If-Modified-Since) ----------


class _Handler(SimpleHTTPRequestHandler):
    user_agents: list[str]

    def do_GET(self) -> None:
        self.user_agents.append(self.headers.get("User-Agent", ""))
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def feed_server(tmp_path: Path) -> Iterator[tuple[str, list[str], Path]]:
    root = tmp_path / "www"
    root.mkdir()
    for name in ("rss2-guid.xml", "atom.xml"):
        (root / name).write_bytes((FEEDS / name).read_bytes())
    agents: list[str] = []
    handler = type("H", (_Handler,), {"user_agents": agents})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", agents, root
    httpd.shutdown()
    httpd.server_close()


# --- test patterns -------------------------------------------------------------------------------


class Forever(Pattern[NoSettings]):
    """Awaits until cancelled; records that it was."""

    id = "forever"
    title = "Forever"
    Settings = NoSettings
    cancelled: ClassVar[list[str]] = []
    entered = asyncio.Event()  # replaced per test (events belong to one loop)

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        Forever.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            Forever.cancelled.append(ctx.charm_id)
            raise
        return RunReport()


class Noop(Pattern[NoSettings]):
    id = "noop"
    title = "Noop"
    Settings = NoSettings

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        return RunReport()


class Buggy(Pattern[NoSettings]):
    id = "buggy"
    title = "Buggy"
    Settings = NoSettings

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        raise ValueError("pattern bug here")


class NeedsAuth(Pattern[NoSettings]):
    """Writes the account's auth cell; fails with AuthRequired until it holds 'good'."""

    id = "needs-auth"
    title = "Needs Auth"
    Settings = NoSettings
    scopes = ("https://www.googleapis.com/auth/gmail.readonly",)
    cells = (CellSpec("auth", writes=True, owner="account"), CellSpec("seen", writes=True))
    googles: ClassVar[list[Any]] = []

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        NeedsAuth.googles.append(ctx.google)
        if ctx.cell("auth").get() != "good":
            raise AuthRequired("signed out", account_id=ctx.account_id)
        ctx.cell("seen").set(True)
        return RunReport(updated=1)


class KeySettings(BaseModel):
    key: str


class Gated(Pattern[KeySettings]):
    """Waits at a gate, then writes its settings' key: shows which run wrote what."""

    id = "gated"
    title = "Gated"
    Settings = KeySettings
    cells = (CellSpec("seen", writes=True),)
    collections = ("items",)
    entered: ClassVar[list[str]] = []
    gate = asyncio.Event()  # replaced per test (events belong to one loop)
    started = asyncio.Event()

    def needs_reset(self, old: KeySettings, new: KeySettings) -> bool:
        return old.key != new.key

    async def bg_updater(self, ctx: UpdateContext[KeySettings]) -> RunReport:
        Gated.entered.append(ctx.settings.key)
        Gated.started.set()
        await Gated.gate.wait()
        with ctx.transaction():
            ctx.cell("seen").set(ctx.settings.key)
            ctx.collection("items").upsert(ctx.settings.key, {"key": ctx.settings.key})
        return RunReport(added=1)


def registry() -> PatternRegistry:
    reg = PatternRegistry()
    for cls in (FeedImporter, Forever, Buggy, NeedsAuth, Gated, Noop):
        reg.register(cls)
    return reg


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    eng = Engine(Profile.resolve(tmp_path / "profile"), patterns=registry(), jitter=0.0)
    yield eng
    await eng.stop()
    eng.close()


class Events:
    """Collects engine events and lets a test await a condition on them."""

    def __init__(self, engine: Engine) -> None:
        self.events: list[EngineEvent] = []
        self._changed = asyncio.Event()
        engine.subscribe(self._on)

    def _on(self, event: EngineEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[list[EngineEvent]], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not predicate(self.events):
                self._changed.clear()
                await self._changed.wait()

    def finished(self, charm_id: str) -> list[RunFinished]:
        return [
            e for e in self.events if isinstance(e, RunFinished) and e.record.charm_id == charm_id
        ]


# --- one-shot sync -------------------------------------------------------------------------------


async def test_one_shot_sync_imports_a_feed_and_persists_status(
    tmp_path: Path, feed_server: tuple[str, list[str], Path]
) -> None:
    base, agents, _ = feed_server
    profile = Profile.resolve(tmp_path / "profile")
    async with Engine(profile, patterns=registry()) as eng:
        info = eng.add_charm("feed-importer", {"url": f"{base}/rss2-guid.xml"}, name="Eng Blog")
        assert info.id == "eng-blog"
        assert info.interval == timedelta(minutes=30)
        results = await eng.sync()
        assert results["eng-blog"].kind is OutcomeKind.OK
        assert results["eng-blog"].report.added == 3
        assert agents == [USER_AGENT]
        assert USER_AGENT.startswith("PatternSync/")

    # A new engine on the same profile sees the charm, its status and its history.
    async with Engine(profile, patterns=registry()) as eng:
        status = eng.status("eng-blog")
        assert status.last_outcome is OutcomeKind.OK and status.last_success_at is not None
        assert status.totals.added == 3
        assert status.next_due_at is not None and status.next_due_at > datetime.now(UTC)
        assert [r.outcome for r in eng.history("eng-blog")] == [OutcomeKind.OK]
        assert len(eng.store.collection("charm:eng-blog:items")) == 3


async def test_one_shot_sync_of_one_charm_leaves_other_overdue_charms_alone(
    engine: Engine, feed_server: tuple[str, list[str], Path]
) -> None:
    base, agents, _ = feed_server
    engine.add_charm("feed-importer", {"url": f"{base}/rss2-guid.xml"}, name="a")
    engine.add_charm("feed-importer", {"url": f"{base}/atom.xml"}, name="b")

    results = await engine.sync(["b"])

    assert list(results) == ["b"] and results["b"].ok
    assert engine.history("a") == []
    assert len(agents) == 1


async def test_sync_with_an_unknown_charm_runs_nothing(
    engine: Engine, feed_server: tuple[str, list[str], Path]
) -> None:
    base, agents, _ = feed_server
    engine.add_charm("feed-importer", {"url": f"{base}/rss2-guid.xml"}, name="a")
    with pytest.raises(NotFoundError, match=r"unknown charm 'nope'; existing charms: a"):
        await engine.sync(["a", "nope"])
    assert agents == []


async def test_a_pattern_exception_is_a_bug_with_traceback(engine: Engine) -> None:
    engine.add_charm("buggy", {})
    outcome = (await engine.sync())["buggy"]
    assert outcome.kind is OutcomeKind.BUG
    assert "ValueError: pattern bug here" in outcome.message
    assert outcome.traceback is not None and "bg_updater" in outcome.traceback
    assert engine.status("buggy").consecutive_failures == 1


async def test_paused_charm_syncs_once_and_stays_paused(
    engine: Engine, feed_server: tuple[str, list[str], Path]
) -> None:
    base, _, _ = feed_server
    engine.add_charm("feed-importer", {"url": f"{base}/atom.xml"}, name="a")
    engine.pause("a")
    assert engine.status("a").paused and engine.status("a").state is CharmState.PAUSED

    assert (await engine.sync(["a"]))["a"].ok
    assert engine.status("a").paused

    engine.resume("a")
    assert not engine.status("a").paused


# --- long-running --------------------------------------------------------------------------------


async def test_running_engine_syncs_on_its_interval_with_conditional_get(
    engine: Engine, feed_server: tuple[str, list[str], Path]
) -> None:
    base, agents, _ = feed_server
    events = Events(engine)
    engine.add_charm(
        "feed-importer", {"url": f"{base}/rss2-guid.xml"}, name="a", interval=timedelta(seconds=1)
    )
    await engine.start()
    await events.wait_for(lambda _: len(events.finished("a")) >= 2)

    first, second = events.finished("a")[:2]
    assert first.record.outcome is OutcomeKind.OK and first.record.counts.added == 3
    # The static server answers If-Modified-Since with 304: nothing changed, nothing counted.
    assert second.record.outcome is OutcomeKind.OK and second.record.counts.added == 0
    assert second.record.message == "not modified"
    gap = (second.record.started_at - first.record.finished_at).total_seconds()
    assert gap >= 0.9
    assert len(agents) >= 2


async def test_charm_added_to_a_running_engine_runs_at_once(
    engine: Engine, feed_server: tuple[str, list[str], Path]
) -> None:
    base, _, _ = feed_server
    events = Events(engine)
    await engine.start()
    engine.add_charm("feed-importer", {"url": f"{base}/atom.xml"}, name="late")
    await events.wait_for(lambda _: bool(events.finished("late")))
    assert events.finished("late")[0].record.counts.added == 2
    assert any(isinstance(e, CharmsChanged) for e in events.events)


async def test_stop_cancels_a_running_run_and_records_it_cancelled(engine: Engine) -> None:
    Forever.cancelled.clear()
    Forever.entered = asyncio.Event()
    engine.add_charm("forever", {})
    await engine.start()
    await asyncio.wait_for(Forever.entered.wait(), WAIT)

    await engine.stop()

    assert Forever.cancelled == ["forever"]
    assert [r.outcome for r in engine.history("forever")] == [OutcomeKind.CANCELLED]


async def test_auth_required_parks_until_the_account_is_usable(engine: Engine) -> None:
    events = Events(engine)
    NeedsAuth.googles.clear()
    engine.google_factory = lambda account_id: {"account": account_id}
    engine.add_charm("needs-auth", {}, account_id="me@example.com")
    await engine.start()
    await events.wait_for(lambda _: bool(events.finished("needs-auth")))
    assert engine.status("needs-auth").state is CharmState.PARKED
    assert NeedsAuth.googles == [{"account": "me@example.com"}]

    engine.store.cell("account:me@example.com:auth", Any).set("good")
    engine.account_usable("me@example.com")
    await events.wait_for(lambda _: len(events.finished("needs-auth")) >= 2)

    assert events.finished("needs-auth")[1].record.outcome is OutcomeKind.OK
    assert engine.store.lookup("charm:needs-auth:seen").get() is True


async def test_a_charm_whose_account_was_removed_is_parked_not_a_bug(engine: Engine) -> None:
    def google_factory(account_id: str) -> Any:
        raise NotFoundError(f"no account {account_id!r}")

    engine.google_factory = google_factory
    engine.add_charm("needs-auth", {}, account_id="gone", interval=timedelta(hours=1))

    outcome = (await engine.sync())["needs-auth"]

    # A bug would be retried with backoff forever; only the user can fix this.
    assert outcome.kind is OutcomeKind.AUTH_REQUIRED
    assert "'gone' is no longer in this profile; remove this charm" in outcome.message
    status = engine.status("needs-auth")
    assert status.parked and status.state is CharmState.PARKED and status.next_due_at is None


async def test_account_usable_on_a_stopped_engine_unparks_for_the_next_start(
    tmp_path: Path,
) -> None:
    profile = Profile.resolve(tmp_path / "profile")
    async with Engine(profile, patterns=registry(), jitter=0.0) as eng:
        eng.add_charm("needs-auth", {}, account_id="me", interval=timedelta(hours=1))
        assert (await eng.sync())["needs-auth"].kind is OutcomeKind.AUTH_REQUIRED
        assert eng.status("needs-auth").parked
        assert eng.status("needs-auth").state is CharmState.PARKED

    async with Engine(profile, patterns=registry(), jitter=0.0) as eng:
        eng.store.cell("account:me:auth", Any).set("good")
        eng.account_usable("me")  # e.g. `trayapp accounts signin` with no tray running
        status = eng.status("needs-auth")
        assert not status.parked and status.state is CharmState.SCHEDULED
        assert status.next_due_at is not None and status.next_due_at <= datetime.now(UTC)

        events = Events(eng)
        await eng.start()
        await events.wait_for(lambda _: bool(events.finished("needs-auth")))
        assert events.finished("needs-auth")[0].record.outcome is OutcomeKind.OK


async def test_a_failing_subscriber_does_not_break_the_engine(
    engine: Engine, feed_server: tuple[str, list[str], Path]
) -> None:
    base, _, _ = feed_server

    def boom(event: EngineEvent) -> None:
        raise RuntimeError("observer bug")

    engine.subscribe(boom)
    engine.add_charm("feed-importer", {"url": f"{base}/atom.xml"}, name="a")
    assert (await engine.sync())["a"].ok


# --- charms ---------------------------------------------------------------------------------------


async def test_add_charm_validates_before_storing(engine: Engine) -> None:
    with pytest.raises(SettingsError, match=r"url: not a valid http\(s\) URL"):
        engine.add_charm("feed-importer", {"url": "not a url"})
    with pytest.raises(
        NotFoundError, match=r"unknown pattern 'nope'; available patterns: .*feed-importer"
    ):
        engine.add_charm("nope", {})
    with pytest.raises(ConfigError, match=r"'needs-auth' needs Google access .*--account"):
        engine.add_charm("needs-auth", {})
    with pytest.raises(ConfigError, match="interval"):
        engine.add_charm("buggy", {}, interval=timedelta(0))
    assert engine.charms() == []


async def test_binding_a_written_slot_to_a_derived_cell_is_refused(engine: Engine) -> None:
    auth = engine.store.cell("account:x:auth", Any)
    engine.store.derived("account:x:auth-view", [auth], lambda v: v)

    with pytest.raises(BindingError) as info:
        engine.add_charm("needs-auth", {}, account_id="x", bindings={"auth": "account:x:auth-view"})

    assert str(info.value) == (
        "pattern 'needs-auth' writes its 'auth' input, but 'account:x:auth-view' is read-only "
        "(derived). Bind 'auth' to a writable cell such as 'account:x:auth'."
    )
    assert engine.charms() == []
    # The writable default is accepted.
    info_ok = engine.add_charm("needs-auth", {}, account_id="x")
    assert info_ok.bindings == {"auth": "account:x:auth", "seen": "charm:needs-auth:seen"}


async def test_charm_ids_are_unique_readable_slugs(engine: Engine) -> None:
    ids = [engine.add_charm("buggy", {}, name="Café News!").id for _ in range(3)]
    assert ids == ["cafe-news", "cafe-news-2", "cafe-news-3"]
    assert engine.add_charm("buggy", {}).id == "buggy"
    assert engine.add_charm("buggy", {}, name="東京").id == "buggy-2"


async def test_remove_charm_drops_its_cells_collections_status_and_history(
    engine: Engine, feed_server: tuple[str, list[str], Path]
) -> None:
    base, _, _ = feed_server
    engine.add_charm("feed-importer", {"url": f"{base}/atom.xml"}, name="a")
    await engine.sync()
    assert engine.store.cell_names("charm:a:") and len(engine.store.collection("charm:a:items"))

    engine.remove_charm("a")

    assert engine.charms() == [] and engine.statuses() == {}
    assert engine.store.cell_names("charm:a:") == []
    assert engine.store.collection_names("charm:a:") == []
    with pytest.raises(NotFoundError):
        engine.status("a")
    # A new charm with the same name starts from nothing.
    engine.add_charm("feed-importer", {"url": f"{base}/atom.xml"}, name="a")
    assert engine.history("a") == [] and len(engine.store.collection("charm:a:items")) == 0


async def test_changing_the_feed_url_resets_the_charm(
    engine: Engine, feed_server: tuple[str, list[str], Path]
) -> None:
    base, _, _ = feed_server
    engine.add_charm("feed-importer", {"url": f"{base}/rss2-guid.xml"}, name="a")
    await engine.sync()
    items = engine.store.collection("charm:a:items")
    assert len(items) == 3

    engine.update_charm("a", settings={"url": f"{base}/rss2-guid.xml", "max_items": 10})
    assert len(items) == 3  # not a reset: same feed

    engine.update_charm("a", settings={"url": f"{base}/atom.xml"})
    assert len(items) == 0  # another feed: the old items went with the old URL
    due = engine.status("a").next_due_at
    assert due is not None
    assert due <= datetime.now(UTC)  # resync is due now
    outcome = (await engine.sync())["a"]
    assert outcome.report.added == 2 and len(items) == 2


async def test_update_charm_interval_and_name(engine: Engine) -> None:
    engine.add_charm("buggy", {}, name="x")
    info = engine.update_charm("x", name="Renamed", interval=timedelta(minutes=5))
    assert (info.id, info.name, info.interval) == ("x", "Renamed", timedelta(minutes=5))
    assert engine.charm("x") == info
    with pytest.raises(SettingsError, match="nope: unknown setting"):
        engine.update_charm("x", settings={"nope": 1})


async def test_reset_while_running_cancels_the_run_then_resyncs(engine: Engine) -> None:
    events = Events(engine)
    Forever.cancelled.clear()
    Forever.entered = asyncio.Event()
    engine.add_charm("forever", {})
    await engine.start()
    await asyncio.wait_for(Forever.entered.wait(), WAIT)

    engine.reset_charm("forever")

    await events.wait_for(
        lambda evs: sum(isinstance(e, RunStarted) and e.charm_id == "forever" for e in evs) >= 2
    )
    assert Forever.cancelled == ["forever"]
    assert events.finished("forever")[0].record.outcome is OutcomeKind.CANCELLED


async def test_http_transport_is_injectable(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=(FEEDS / "atom.xml").read_bytes())

    async with Engine(
        tmp_path / "p", patterns=registry(), http_transport=httpx.MockTransport(handler)
    ) as eng:
        eng.add_charm("feed-importer", {"url": "https://feeds.example.invalid/x.atom"})
        outcome = (await eng.sync())["feed-importer"]
    assert outcome.report.added == 2
    assert seen[0].headers["user-agent"] == USER_AGENT


async def test_removing_a_charm_while_it_runs_cancels_the_run_and_leaves_nothing(
    engine: Engine,
) -> None:
    events = Events(engine)
    Forever.cancelled.clear()
    Forever.entered = asyncio.Event()
    engine.add_charm("forever", {})
    await engine.start()
    await asyncio.wait_for(Forever.entered.wait(), WAIT)

    engine.remove_charm("forever")
    await events.wait_for(lambda _: bool(events.finished("forever")))

    assert Forever.cancelled == ["forever"]
    assert events.finished("forever")[0].record.outcome is OutcomeKind.CANCELLED
    # The cancelled run's end must not bring back the status or history of a removed charm.
    repo = StoreStatusRepo(engine.store)
    assert "forever" not in repo.load_all() and repo.history("forever", 50) == []
    assert engine.charms() == [] and engine.statuses() == {}


async def test_a_settings_change_that_needs_a_reset_mid_run_resyncs_with_the_new_settings(
    engine: Engine,
) -> None:
    events = Events(engine)
    Gated.entered.clear()
    Gated.gate, Gated.started = asyncio.Event(), asyncio.Event()
    engine.add_charm("gated", {"key": "old"}, name="g")
    await engine.start()
    await asyncio.wait_for(Gated.started.wait(), WAIT)

    engine.update_charm("g", settings={"key": "new"})  # needs_reset: cancels the old run
    Gated.gate.set()
    await events.wait_for(lambda _: len(events.finished("g")) >= 2)

    first, second = (e.record for e in events.finished("g")[:2])
    assert first.outcome is OutcomeKind.CANCELLED and second.outcome is OutcomeKind.OK
    assert Gated.entered == ["old", "new"]
    # Only the new settings' run wrote: nothing of the old one survives the reset.
    assert engine.store.lookup("charm:g:seen").get() == "new"
    assert list(engine.store.collection("charm:g:items").keys()) == ["new"]


async def test_commands_on_every_charm_of_a_stopped_engine_persist_for_the_next_start(
    tmp_path: Path,
) -> None:
    profile = Profile.resolve(tmp_path / "profile")
    later = datetime.now(UTC) + timedelta(hours=2)
    async with Engine(profile, patterns=registry(), jitter=0.0) as eng:
        for name in ("a", "b", "c"):
            eng.add_charm("buggy", {}, name=name, interval=timedelta(hours=1))
        eng.pause(until=later)
        assert all(s.paused and s.paused_until == later for s in eng.statuses().values())
        assert {s.state for s in eng.statuses().values()} == {CharmState.PAUSED}
        eng.resume("b")

    async with Engine(profile, patterns=registry(), jitter=0.0) as eng:  # read back from disk
        states = {cid: s.state for cid, s in eng.statuses().items()}
        assert states == {"a": CharmState.PAUSED, "b": CharmState.SCHEDULED, "c": CharmState.PAUSED}
        before = datetime.now(UTC)
        eng.sync_now()
        assert all(
            s.next_due_at is not None and before <= s.next_due_at <= datetime.now(UTC)
            for s in eng.statuses().values()
        )
        eng.resume()
        assert not any(s.paused for s in eng.statuses().values())


async def test_reload_picks_up_charms_another_process_added_changed_or_removed(
    tmp_path: Path,
) -> None:
    profile = Profile.resolve(tmp_path / "profile")
    async with Engine(profile, patterns=registry(), jitter=0.0) as running:
        running.add_charm("noop", {}, name="stays", interval=timedelta(hours=1))
        running.add_charm("noop", {}, name="goes", interval=timedelta(hours=1))
        await running.sync()  # ran just now: next due in an hour
        running.pause()  # nothing runs from here: this test is about the schedule only
        await running.start()
        hour_away = running.status("stays").next_due_at
        assert hour_away is not None and hour_away > datetime.now(UTC) + timedelta(minutes=55)
        assert set(running.statuses()) == {"stays", "goes"}

        # What `trayapp charms ...` does from another process, on its own Engine.
        with contextlib.closing(Engine(profile, patterns=registry())) as cli:
            cli.add_charm("noop", {}, name="new", interval=timedelta(hours=2))
            cli.update_charm("stays", interval=timedelta(minutes=5))
            cli.remove_charm("goes")

        events = Events(running)
        running.reload_charms()

        assert any(isinstance(e, CharmsChanged) for e in events.events)
        assert [c.id for c in running.charms()] == ["stays", "new"]
        assert set(running.statuses()) == {"stays", "new"}
        assert running.status("new").state is CharmState.SCHEDULED  # scheduled, not paused
        assert running.status("stays").paused  # its live state survived the reload
        # The live schedule follows the new interval: due 5 minutes after its last run.
        due = running.status("stays").next_due_at
        assert due is not None and due <= datetime.now(UTC) + timedelta(minutes=5)


# --- bounded memory ------------------------------------------------------------------------------


def _live_objects() -> Counter[str]:
    """Live objects by type. Dead weak references are left out: sqlite3 keeps one per cursor
    a connection ever made and drops the dead ones only every 200 new cursors, so their number
    at any moment depends on where that cycle is (0-199), not on what a run keeps."""
    gc.collect()
    return Counter(
        type(o).__name__
        for o in gc.get_objects()
        if not (type(o) is weakref.ReferenceType and o() is None)
    )


async def test_repeated_syncs_keep_no_per_run_objects(
    engine: Engine, feed_server: tuple[str, list[str], Path]
) -> None:
    """What the tray's soak does, in miniature: manual syncs far more often than the interval.

    Anything kept per run (futures, tasks, run records, statuses, timer entries, subscriptions,
    loggers) grows by at least one per run: 90 runs between pass 10 and pass 40. Less than half
    that is noise, not a leak. The feed importer parses in the loop's default executor, which
    starts worker threads lazily (each brings weakrefs and bound methods): one worker, started
    during the warm-up, keeps a busy machine from adding threads mid-measurement.
    """
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    asyncio.get_running_loop().set_default_executor(executor)
    base, _, _ = feed_server
    ids = [
        engine.add_charm(
            "feed-importer", {"url": f"{base}/rss2-guid.xml"}, name=f"f{n}",
            interval=timedelta(hours=6),
        ).id
        for n in range(3)
    ]  # fmt: skip
    await engine.start()
    scheduler = engine._scheduler
    assert scheduler is not None

    async def passes(n: int) -> None:
        for _ in range(n):
            results = await engine.sync(ids)
            assert {r.kind for r in results.values()} == {OutcomeKind.OK}

    await passes(10)  # warm-up: caches, the HTTP pool and the status rows fill once
    before = _live_objects()
    await passes(30)
    after = _live_objects()
    runs = 30 * len(ids)
    grown = {n: after[n] - before[n] for n in after if after[n] - before[n] >= runs // 2}
    assert grown == {}
    assert scheduler.timer_backlog <= 2 * len(ids) + scheduler_module._HEAP_SLACK
    assert len(engine._subscribers) == 0 and len(engine._background) == 0
