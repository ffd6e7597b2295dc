"""Events the engine publishes to observers (the tray, the IPC server, tests).

Observers subscribe with ``Engine.subscribe(callback)``; callbacks run on the event loop thread,
must not block, and must not raise (an observer's error is logged, never propagated into the
engine).
"""

from __future__ import annotations

from dataclasses import dataclass

from trayapp.core.status import CharmStatus, Progress, RunRecord


@dataclass(frozen=True, slots=True)
class CharmStatusChanged:
    charm_id: str
    status: CharmStatus


@dataclass(frozen=True, slots=True)
class RunStarted:
    charm_id: str
    trigger: str


@dataclass(frozen=True, slots=True)
class RunProgress:
    """A running charm's updater reported progress (``ctx.progress``)."""

    charm_id: str
    progress: Progress


@dataclass(frozen=True, slots=True)
class RunFinished:
    record: RunRecord


@dataclass(frozen=True, slots=True)
class CharmsChanged:
    """A charm was added, removed, renamed or its settings changed."""


@dataclass(frozen=True, slots=True)
class AccountChanged:
    account_id: str


@dataclass(frozen=True, slots=True)
class LoopBlocked:
    """The loop-lag watchdog saw the event loop blocked for ``seconds`` while ``charm_id`` ran."""

    charm_id: str | None
    seconds: float


EngineEvent = (
    CharmStatusChanged
    | RunStarted
    | RunProgress
    | RunFinished
    | CharmsChanged
    | AccountChanged
    | LoopBlocked
)
