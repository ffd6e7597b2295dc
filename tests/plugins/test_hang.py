"""A plugin that blocks the event loop is stopped at its timeout, and contained.

Real engine (SQLite profile, system clock, real event loop, real watchdog thread and signal),
real plugin module (tests/plugins/hangplugin/hang_plugin.py), a real local HTTP server for the
charm that behaves. Waits are on engine events with generous limits; durations are never
asserted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.desktop import wait_for
from tests.plugins.conftest import JsonServer
from tests.plugins.hang_wheel import build_hang_wheel
from tests.plugins.hangplugin.hang_plugin import (
    BusyImporter,
    GatherImporter,
    SleepyImporter,
    SocketImporter,
)
from trayapp.api import NoSettings, Pattern, RunReport, UpdateContext
from trayapp.core.engine import Engine
from trayapp.core.events import EngineEvent, RunFinished
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.patterns import PatternRegistry
from trayapp.core.profile import Profile
from trayapp.core.scheduler import FREEZE_LIMIT
from trayapp.core.status import CharmState

WAIT = 60.0  # generous: each freeze takes the pattern's timeout plus the grace, on 2 busy cores


class Polite(Pattern[NoSettings]):
    """A well-behaved plugin: awaits its HTTP request through ctx.http."""

    id = "polite"
    title = "Polite"
    Settings = NoSettings
    url = ""

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        resp = await ctx.http.get(Polite.url)
        resp.raise_for_status()
        return RunReport(added=len(resp.json()["items"]))


def registry() -> PatternRegistry:
    reg = PatternRegistry()
    for cls in (SleepyImporter, BusyImporter, SocketImporter, GatherImporter, Polite):
        reg.register(cls, source="hang-plugin")
    return reg


class Events:
    def __init__(self, engine: Engine) -> None:
        self.events: list[EngineEvent] = []
        self._changed = asyncio.Event()
        engine.subscribe(self._on)

    def _on(self, event: EngineEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def finished(self, charm_id: str) -> list[RunFinished]:
        return [
            e for e in self.events if isinstance(e, RunFinished) and e.record.charm_id == charm_id
        ]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    eng = Engine(Profile.resolve(tmp_path / "profile"), patterns=registry(), jitter=0.0)
    yield eng
    await eng.stop()
    eng.close()


@pytest.mark.parametrize("pattern", ["hang-sleep", "hang-busy", "hang-socket", "hang-gather"])
async def test_a_blocking_updater_is_stopped_and_the_other_charm_still_syncs(
    engine: Engine,
    json_server: JsonServer,
    pattern: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    json_server.documents["/items"] = {"items": [1, 2]}
    Polite.url = f"{json_server.url}/items"
    stuck = engine.add_charm(pattern, {}, name="stuck").id
    polite = engine.add_charm("polite", {}, name="polite").id

    results = await asyncio.wait_for(engine.sync([stuck, polite]), WAIT)

    froze = results[stuck]
    assert froze.kind is OutcomeKind.FROZE
    assert froze.message.startswith("stopped: it blocked Pattern Sync for ")
    assert froze.message.endswith("; the plugin must not call blocking code")
    assert "UpdaterFroze" not in froze.message  # words for people, no class names
    # Where it was stuck: the plugin's own line, not the watchdog's handler.
    assert froze.traceback is not None
    assert "hang_plugin.py" in froze.traceback
    assert "watchdog.py" not in froze.traceback
    assert results[polite].kind is OutcomeKind.OK and results[polite].report.added == 2

    status = engine.status(stuck)
    assert status.last_outcome is OutcomeKind.FROZE
    assert status.freezes == 1 and not status.parked
    assert status.state is CharmState.BACKING_OFF  # retried later, with backoff
    assert status.next_due_at is not None
    history = engine.history(stuck)
    assert [r.outcome for r in history] == [OutcomeKind.FROZE]
    assert history[0].traceback is not None and "hang_plugin.py" in history[0].traceback
    assert status.to_json()["last_outcome"] == "froze"
    # Logged with the plugin's stack.
    logged = [r for r in caplog.records if r.name == "trayapp.core.scheduler"]
    assert any("hang_plugin.py" in r.getMessage() and stuck in r.getMessage() for r in logged)


async def test_after_repeated_freezes_it_is_parked_until_resumed(
    engine: Engine, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    events = Events(engine)
    charm = engine.add_charm("hang-sleep", {"release_file": str(release)}, name="sleepy").id

    for n in range(1, FREEZE_LIMIT + 1):
        outcome = (await asyncio.wait_for(engine.sync([charm]), WAIT))[charm]
        assert outcome.kind is OutcomeKind.FROZE
        assert engine.status(charm).freezes == n

    status = engine.status(charm)
    assert status.parked and status.parked_frozen
    assert status.state is CharmState.PARKED
    assert status.next_due_at is None  # no scheduled run until the user resumes it
    assert status.last_error is not None
    assert f"it did so {FREEZE_LIMIT} times in a row" in status.last_error
    assert "will not try again until you resume it" in status.last_error

    # Parked: a running engine does not run it on its own.
    await engine.start()
    await asyncio.sleep(0)  # let the started scheduler plan
    assert engine.status(charm).state is CharmState.PARKED
    assert len(events.finished(charm)) == FREEZE_LIMIT

    # The user fixed the cause (here: the plugin stops blocking) and resumes the charm.
    release.touch()
    engine.resume(charm)
    assert not engine.status(charm).parked
    await events.wait_for(lambda: len(events.finished(charm)) > FREEZE_LIMIT)
    last = events.finished(charm)[-1].record
    assert last.outcome is OutcomeKind.OK and last.message == "released"
    status = engine.status(charm)
    assert status.freezes == 0 and not status.parked and status.healthy


async def test_a_resumed_charm_that_freezes_again_is_parked_again_at_once(
    engine: Engine,
) -> None:
    events = Events(engine)
    charm = engine.add_charm("hang-busy", {}, name="busy").id
    for _ in range(FREEZE_LIMIT):
        await asyncio.wait_for(engine.sync([charm]), WAIT)
    assert engine.status(charm).parked_frozen

    await engine.start()
    engine.resume(charm)
    await events.wait_for(lambda: len(events.finished(charm)) > FREEZE_LIMIT)
    assert events.finished(charm)[-1].record.outcome is OutcomeKind.FROZE
    status = engine.status(charm)
    assert status.parked_frozen and status.freezes == FREEZE_LIMIT + 1


async def test_a_short_stall_within_the_timeout_is_not_interrupted(tmp_path: Path) -> None:
    """Only a run stuck past its deadline is interrupted; a slow one just gets reported."""

    class Slow(Pattern[NoSettings]):
        id = "slow"
        title = "Slow"
        Settings = NoSettings
        timeout = timedelta(minutes=5)

        async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
            import time

            time.sleep(1.5)  # noqa: ASYNC251 - blocking, but well within its timeout
            return RunReport(added=1)

    reg = PatternRegistry()
    reg.register(Slow)
    async with Engine(Profile.resolve(tmp_path / "p"), patterns=reg) as eng:
        eng.add_charm("slow", {}, name="slow")
        outcome: Any = (await asyncio.wait_for(eng.sync(["slow"]), WAIT))["slow"]
        assert outcome.kind is OutcomeKind.OK and outcome.report.added == 1


async def test_the_plugin_harness_shows_froze_for_a_blocking_updater(tmp_path: Path) -> None:
    """What docs/plugins.md tells plugin authors: run_pattern with a short run_timeout."""
    from trayapp.api.testing import run_pattern

    run = await run_pattern(SleepyImporter, profile=tmp_path, run_timeout=timedelta(seconds=1))
    assert run.kind == "froze"
    assert run.outcome.message.startswith("stopped: it blocked Pattern Sync for ")


def test_run_headless_survives_a_blocking_plugin_and_answers_over_ipc(tmp_path: Path) -> None:
    """``trayapp run --headless`` (asyncio's own loop and signal handling) with the plugin
    installed by ``trayapp plugins install``: the stuck charm ends as froze, status answers,
    SIGTERM still ends the service cleanly (the rescue signal is not mistaken for it)."""
    root = Path(__file__).resolve().parents[2]
    profile = tmp_path / "profile"
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "PIP_NO_INDEX": "1",
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    env.pop("TRAYAPP_PROFILE", None)
    (tmp_path / "run").mkdir(mode=0o700)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=WAIT,
        )

    done = cli("plugins", "install", str(build_hang_wheel(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert cli("charms", "add", "hang-busy", "--name", "Busy").returncode == 0
    log = (tmp_path / "service.log").open("wb")
    service = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), "run", "--headless"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:

        def busy_froze() -> dict[str, Any] | None:
            done = cli("status", "--json")
            if done.returncode != 0:
                return None
            (charm,) = json.loads(done.stdout)["charms"]
            status: dict[str, Any] = charm["status"]
            return status if status["last_outcome"] == "froze" else None

        status = wait_for(busy_froze, WAIT, "status --json to show the busy charm froze")
        assert isinstance(status, dict)
        assert status["freezes"] == 1 and status["state"] == "backing_off"
        assert service.poll() is None
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=WAIT) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait(timeout=WAIT)
        log.close()
    # Its log names the charm and shows the plugin's line where it was stuck.
    text = (tmp_path / "service.log").read_text(errors="replace")
    assert "charm busy blocked the app" in text and "hang_plugin.py" in text
