"""Where the scheduler keeps charm status and run history.

The scheduler depends only on the :class:`StatusRepo` protocol. :class:`InMemoryStatusRepo` serves
unit tests and benchmarks; the SQLite-backed implementation (``StoreStatusRepo``) persists status
and the last runs of each charm so they survive restarts.
"""

from __future__ import annotations

import uuid
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Protocol

from trayapp.core.status import CharmStatus, RunRecord

if TYPE_CHECKING:
    from trayapp.core.store import Collection, Store

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


class StoreStatusRepo:
    """A StatusRepo persisted in the store, so status and history survive restarts.

    Statuses live in one collection (``app:status``, keyed by charm id) so :meth:`load_all` is a
    single scan; each charm's runs live in their own collection (``app:runs:<charm id>``)
    sorted by start time, so appending and trimming cost O(log n) and never touch other charms.
    These names sit outside ``charm:<id>:`` on purpose: resetting a charm's data
    (``drop_prefix``) keeps its history; :meth:`delete` removes both.
    """

    STATUS = "app:status"
    RUNS_PREFIX = "app:runs:"

    def __init__(self, store: Store) -> None:
        self._store = store
        self._status = store.collection(self.STATUS)

    def _runs(self, charm_id: str) -> Collection:
        return self._store.collection(self.RUNS_PREFIX + charm_id)

    def load_all(self) -> dict[str, CharmStatus]:
        return {key: CharmStatus.from_json(value) for key, value in self._status.items()}

    def save(self, status: CharmStatus) -> None:
        self._status.upsert(status.charm_id, status.to_json())

    def append_run(self, record: RunRecord, keep: int = HISTORY_KEEP) -> None:
        runs = self._runs(record.charm_id)
        # The suffix keeps two runs that started in the same microsecond apart.
        key = f"{record.started_at.isoformat()}|{uuid.uuid4().hex[:12]}"
        with self._store.transaction():
            runs.upsert(key, record.to_json(), sort_key=record.started_at.timestamp())
            runs.trim(keep)

    def history(self, charm_id: str, limit: int = HISTORY_KEEP) -> list[RunRecord]:
        runs = self._runs(charm_id).items(limit=limit, newest_first=True)
        return [RunRecord.from_json(value) for _, value in runs]

    def delete(self, charm_id: str) -> None:
        with self._store.transaction():
            self._status.delete(charm_id)
            self._runs(charm_id).clear()
