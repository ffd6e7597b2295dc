"""The app's process freezes its long-lived heap at quiet moments (issue 17.5): once when the
engine has started, and again after a run that imported many modules, once no run is in
progress; never while runs are in progress, never on a timer. Counted: freezes, objects
frozen, collections.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import types
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from trayapp.core import heap
from trayapp.core.events import EngineEvent, RunFinished, RunStarted
from trayapp.core.heap import HeapKeeper
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.profile import Profile
from trayapp.core.status import RunRecord
from trayapp.host import AppHost


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    """Each test starts and ends with nothing frozen (the permanent generation is the
    process's: the rest of the suite must not inherit it)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


class FakeEngine:
    """The two things HeapKeeper uses of an Engine: its events and its run count."""

    def __init__(self) -> None:
        self.callbacks: list[object] = []
        self.running = 0

    def subscribe(self, callback: object) -> object:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def runs_in_progress(self) -> int:
        return self.running

    def publish(self, event: EngineEvent) -> None:
        for callback in list(self.callbacks):
            callback(event)  # type: ignore[operator]


def _finished(charm: str = "c") -> RunFinished:
    now = datetime.now(UTC)
    return RunFinished(RunRecord(charm, now, now, OutcomeKind.OK))


def _import_modules(n: int) -> list[str]:
    names = [f"_trayapp_heap_test_{id(object())}_{i}" for i in range(n)]
    for name in names:
        sys.modules[name] = types.ModuleType(name)
    return names


async def test_freezes_at_start_and_after_a_run_that_imported_a_stack_once_idle() -> None:
    engine = FakeEngine()
    keeper = HeapKeeper(engine)  # type: ignore[arg-type]
    garbage: list[object] = []
    garbage.append(garbage)  # a cycle nobody holds once dropped
    del garbage
    names: list[str] = []
    try:
        keeper.start()
        assert keeper.freezes == 1 and gc.get_freeze_count() > 1000
        assert len(engine.callbacks) == 1

        # A run that imported nothing: nothing more to freeze.
        engine.publish(RunStarted("c", "manual"))
        engine.publish(_finished())
        await asyncio.sleep(0)
        assert keeper.freezes == 1

        # A run imported a library stack, but another run is still in progress: later.
        names = _import_modules(heap.GROWN_MODULES)
        engine.running = 1
        engine.publish(_finished())
        await asyncio.sleep(0)
        assert keeper.freezes == 1
        # The last run ends: freeze again, at once on the next turn of the loop.
        engine.running = 0
        engine.publish(_finished())
        engine.publish(_finished())  # two runs ending together: one check
        await asyncio.sleep(0)
        assert keeper.freezes == 2
        await asyncio.sleep(0)
        assert keeper.freezes == 2
    finally:
        keeper.stop()
        for name in names:
            del sys.modules[name]
    assert engine.callbacks == []


async def test_nothing_unreachable_is_frozen() -> None:
    engine = FakeEngine()
    keeper = HeapKeeper(engine)  # type: ignore[arg-type]

    class Node:
        pass

    gc.collect()
    gc.disable()  # no automatic collection may take the cycle before the keeper does
    try:
        cycle = Node()
        cycle.self = cycle  # type: ignore[attr-defined]
        alive = weakref.ref(cycle)
        del cycle
        assert alive() is not None  # garbage, but only a collection can free a cycle
        keeper.start()
        # The collection before the freeze freed it (frozen, it would live for ever).
        assert alive() is None
    finally:
        gc.enable()
        keeper.stop()


async def test_the_app_host_freezes_once_when_its_engine_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # AppHost.open sets the process's GIL switch interval: the rest of the suite keeps its own.
    interval = sys.getswitchinterval()
    monkeypatch.setattr(sys, "setswitchinterval", lambda _s: None)
    host = AppHost(Profile.resolve(tmp_path / "profile"), role="headless engine")
    try:
        await host.open()
        assert gc.get_freeze_count() == 0
        await host.start()
        assert host.heap is not None and host.heap.freezes == 1
        assert gc.get_freeze_count() > 1000
    finally:
        await host.close()
    assert sys.getswitchinterval() == interval
