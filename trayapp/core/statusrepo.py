"""Where the scheduler keeps charm status and run history.

The scheduler depends only on the :class:`StatusRepo` protocol. :class:`InMemoryStatusRepo` serves
unit tests and benchmarks; the SQLite-backed implementation (``StoreStatusRepo``) persists status
and the last runs of each charm so they survive restarts.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Protocol

from trayapp.core.status import CharmStatus, RunRecord

HISTORY_KEEP = 50


class StatusRepo(Protocol):
    def load_all(self) -> dict[str, CharmStatus]:
        """Every persisted status, by charm id (used once at start)."""
        ...

    def save(self, status: CharmStatus) -> None: ...

    def append_run(self, record: RunRecord, keep: int = HISTORY_KEEP) -> None:
        """Add a finished run, keeping only the newest ``keep`` for that charm."""
        ...

    def history(self, charm_id: str, limit: int = HISTORY_KEEP) -> list[RunRecord]:
        """Newest first."""
        ...

    def delete(self, charm_id: str) -> None: ...


class InMemoryStatusRepo:
    """A StatusRepo that forgets everything on exit: for tests and benchmarks."""

    def __init__(self) -> None:
        self._status: dict[str, CharmStatus] = {}
        self._runs: defaultdict[str, deque[RunRecord]] = defaultdict(deque)

    def load_all(self) -> dict[str, CharmStatus]:
        return dict(self._status)

    def save(self, status: CharmStatus) -> None:
        self._status[status.charm_id] = status

    def append_run(self, record: RunRecord, keep: int = HISTORY_KEEP) -> None:
        runs = self._runs[record.charm_id]
        runs.appendleft(record)
        while len(runs) > keep:
            runs.pop()

    def history(self, charm_id: str, limit: int = HISTORY_KEEP) -> list[RunRecord]:
        return list(self._runs.get(charm_id, ()))[:limit]

    def delete(self, charm_id: str) -> None:
        self._status.pop(charm_id, None)
        self._runs.pop(charm_id, None)
