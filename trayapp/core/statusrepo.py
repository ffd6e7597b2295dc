"""Where the scheduler keeps charm status and run history.

The scheduler depends only on the :class:`StatusRepo` protocol. :class:`InMemoryStatusRepo` serves
unit tests and benchmarks; the SQLite-backed implementation (``StoreStatusRepo``) persists status
and the last runs of each charm so they survive restarts.
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from trayapp.core.status import CharmStatus, RunRecord

if TYPE_CHECKING:
    from trayapp.core.store import Collection, Store

log = logging.getLogger(__name__)

HISTORY_KEEP = 50

# Run record keys: "<start time>|<process prefix><counter>" (see StoreStatusRepo._run_row).
_RUN_KEY_PREFIX = uuid.uuid4().hex[:8]
_run_keys = itertools.count()


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """``(state, start time)`` of a process from /proc (Linux), None where there is none."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) "
    return (fields[0], fields[19]) if len(fields) > 19 else None


@cache
def process_token() -> str:
    """This process, as a run's owner: its pid plus its start time where /proc tells it, so a
    later process that reuses the pid is not mistaken for it."""
    stat = _proc_stat(os.getpid())
    return f"{os.getpid()}:{stat[1]}" if stat else str(os.getpid())


def process_alive(token: Any) -> bool:
    """Whether the process that wrote ``token`` (:func:`process_token`) still runs."""
    if not isinstance(token, str):
        return False
    if token == process_token():
        return True
    pid_text, _, start = token.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: a profile's engine is never one
    stat = _proc_stat(pid)
    if stat is None:
        return not start  # no /proc: the pid alone says it
    state, started = stat
    return state not in ("Z", "X") and (not start or started == start)


_DECODE_ERRORS = (ValueError, TypeError, KeyError, AttributeError)


class StatusRepo(Protocol):
    def load_all(self) -> dict[str, CharmStatus]:
        """Every persisted status, by charm id (used once at start)."""
        ...

    def save(self, status: CharmStatus) -> None: ...

    def append_run(self, record: RunRecord, keep: int = HISTORY_KEEP) -> None:
        """Add a finished run, keeping only the newest ``keep`` for that charm."""
        ...

    def save_batch(
        self,
        statuses: Iterable[CharmStatus],
        records: Iterable[RunRecord],
        keep: int = HISTORY_KEEP,
    ) -> None:
        """Save statuses and append finished runs all together (one transaction), or none."""
        ...

    def history(self, charm_id: str, limit: int = HISTORY_KEEP) -> list[RunRecord]:
        """Newest first."""
        ...

    def delete(self, charm_id: str) -> None: ...


class InMemoryStatusRepo:
    """A StatusRepo that forgets everything on exit: for tests and benchmarks."""

    def __init__(self) -> None:
        self._status: dict[str, CharmStatus] = {}
        self._runs: dict[str, list[RunRecord]] = {}  # oldest first, at most ``keep`` each

    def load_all(self) -> dict[str, CharmStatus]:
        return dict(self._status)

    def save(self, status: CharmStatus) -> None:
        self._status[status.charm_id] = status

    def append_run(self, record: RunRecord, keep: int = HISTORY_KEEP) -> None:
        runs = self._runs.get(record.charm_id)
        if runs is None:
            self._runs[record.charm_id] = runs = []
        runs.append(record)
        if len(runs) > keep:
            del runs[: len(runs) - keep]

    def save_batch(
        self,
        statuses: Iterable[CharmStatus],
        records: Iterable[RunRecord],
        keep: int = HISTORY_KEEP,
    ) -> None:
        for record in records:
            self.append_run(record, keep)
        for status in statuses:
            self._status[status.charm_id] = status

    def history(self, charm_id: str, limit: int = HISTORY_KEEP) -> list[RunRecord]:
        runs = self._runs.get(charm_id, [])
        return runs[: -limit - 1 : -1] if limit > 0 else []

    def delete(self, charm_id: str) -> None:
        self._status.pop(charm_id, None)
        self._runs.pop(charm_id, None)


class StoreStatusRepo:
    """A StatusRepo persisted in the store, so status and history survive restarts.

    ``state`` is not stored (it is computed from the facts); ``running`` is stored with the
    process that runs it (``owner``) and believed only while that process lives.

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
        self.damaged: dict[str, str] = {}  # charm id -> why its saved status was unreadable

    def _runs(self, charm_id: str) -> Collection:
        return self._store.collection(self.RUNS_PREFIX + charm_id)

    def load_all(self) -> dict[str, CharmStatus]:
        """Every saved status. ``running`` holds only while the process that started the run
        is alive: after a crash (kill -9 mid-run) the charm reads as not running."""
        rows, damaged = self._status.items_checked()
        out = {}
        for key, value in rows:
            try:
                if value.get("running") and not process_alive(value.get("owner")):
                    value = {**value, "running": False}
                out[key] = CharmStatus.from_json(value)
            except _DECODE_ERRORS as exc:
                # One damaged row costs only its charm: it starts from a fresh status.
                damaged[key] = f"unreadable ({str(exc)[:80] or type(exc).__name__})"
        for key, why in damaged.items():
            if self.damaged.get(key) != why:
                log.warning(
                    "the saved status of charm %s is damaged (%s); starting afresh", key, why
                )
        self.damaged = damaged
        return out

    @staticmethod
    def _status_row(status: CharmStatus) -> dict[str, Any]:
        record = status.to_record()
        if status.running:
            record["owner"] = process_token()
        return record

    @staticmethod
    def _run_row(record: RunRecord) -> tuple[str, dict[str, Any], float]:
        # The suffix keeps two runs that started in the same microsecond apart: this process's
        # random prefix and a counter (uuid4 per run read the kernel's random source each time).
        key = f"{record.started_at.isoformat()}|{_RUN_KEY_PREFIX}{next(_run_keys):04x}"
        return key, record.to_json(), record.started_at.timestamp()

    def save(self, status: CharmStatus) -> None:
        self._status.upsert(status.charm_id, self._status_row(status))

    def append_run(self, record: RunRecord, keep: int = HISTORY_KEEP) -> None:
        self.save_batch((), (record,), keep)

    def save_batch(
        self,
        statuses: Iterable[CharmStatus],
        records: Iterable[RunRecord],
        keep: int = HISTORY_KEEP,
    ) -> None:
        """One transaction for every status and run given: what the scheduler wrote during one
        loop iteration (many runs ending together cost one commit, not three each)."""
        if keep < 0:
            raise ValueError("keep must be >= 0")
        runs: list[tuple[str, str, float, dict[str, Any]]] = []
        for record in records:
            key, value, sort_key = self._run_row(record)
            runs.append((self.RUNS_PREFIX + record.charm_id, key, sort_key, value))
        rows = [
            (self.STATUS, status.charm_id, None, self._status_row(status)) for status in statuses
        ]
        store = self._store
        # Three statements for the whole batch, however many charms (executemany): the runs,
        # each touched history trimmed to its newest ``keep``, the statuses.
        with store.transaction():
            if runs:
                store._put_items(runs)
                store._trim_collections((name, keep) for name in {run[0]: None for run in runs})
            if rows:
                store._put_items(rows)

    def history(self, charm_id: str, limit: int = HISTORY_KEEP) -> list[RunRecord]:
        runs, _bad = self._runs(charm_id).items_checked(limit=limit, newest_first=True)
        out = []
        for _, value in runs:
            try:
                out.append(RunRecord.from_json(value))
            except _DECODE_ERRORS:
                continue  # a damaged history entry is left out; the others still show
        return out

    def delete(self, charm_id: str) -> None:
        with self._store.transaction():
            self._status.delete(charm_id)
            self._runs(charm_id).clear()
