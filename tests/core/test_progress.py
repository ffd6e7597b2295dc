"""``ctx.progress``: a long run's progress reaches observers and ``status --json``, then clears."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest

from trayapp.api import NoSettings, Pattern, RunReport, UpdateContext
from trayapp.core.engine import Engine
from trayapp.core.events import EngineEvent, RunFinished, RunProgress
from trayapp.core.patterns import PatternRegistry
from trayapp.core.profile import Profile
from trayapp.core.status import CharmState, CharmStatus, Progress

WAIT = 30.0


class Slow(Pattern[NoSettings]):
    """Reports 2 of 5, waits at a gate, reports 5 of 5, finishes."""

    id = "slow"
    title = "Slow"
    Settings = NoSettings
    gate: ClassVar[asyncio.Event]

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        ctx.progress(1, None, "messages")
        ctx.progress(2, 5, "messages")
        ctx.progress(2, 5, "messages")  # unchanged: no second event
        await Slow.gate.wait()
        ctx.progress(5, 5, "messages")
        return RunReport(added=5)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    reg = PatternRegistry()
    reg.register(Slow)
    eng = Engine(Profile.resolve(tmp_path / "profile"), patterns=reg, jitter=0.0)
    yield eng
    await eng.stop()
    eng.close()


async def test_progress_is_published_shown_in_status_and_cleared_when_the_run_ends(
    engine: Engine,
) -> None:
    Slow.gate = asyncio.Event()
    events: list[EngineEvent] = []
    changed = asyncio.Event()

    def on(event: EngineEvent) -> None:
        events.append(event)
        changed.set()

    async def until(pred: object) -> None:
        async with asyncio.timeout(WAIT):
            while not pred():  # type: ignore[operator]
                changed.clear()
                await changed.wait()

    engine.subscribe(on)
    cid = engine.add_charm("slow", {}).id
    await engine.start()
    await until(lambda: any(isinstance(e, RunProgress) and e.progress.total for e in events))

    status = engine.status(cid)
    assert status.state is CharmState.RUNNING
    assert status.progress == Progress(2, 5, "messages")
    assert engine.statuses()[cid].to_json()["progress"] == {
        "done": 2,
        "total": 5,
        "unit": "messages",
    }
    assert [e.progress for e in events if isinstance(e, RunProgress)] == [
        Progress(1, None, "messages"),
        Progress(2, 5, "messages"),
    ]
    # Unchanged, the status is the very same object on every read (the tray keeps its menu
    # entry by identity: issue 17.6).
    assert engine.statuses()[cid] is engine.statuses()[cid] is engine.status(cid)

    Slow.gate.set()
    await until(lambda: any(isinstance(e, RunFinished) for e in events))
    assert engine.status(cid).progress is None
    assert engine.statuses()[cid].to_json()["progress"] is None


def test_progress_round_trips_through_json() -> None:
    status = CharmStatus("x", running=True, progress=Progress(1200, 5000, "messages"))
    assert CharmStatus.from_json(status.to_json()) == status
    assert CharmStatus.from_json({"charm_id": "x"}).progress is None
