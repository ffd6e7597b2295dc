"""StoreStatusRepo: the scheduler's status and run history, persisted across restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from trayapp.core.outcomes import OutcomeKind
from trayapp.core.status import CharmState, CharmStatus, Counts, RunRecord
from trayapp.core.statusrepo import HISTORY_KEEP, InMemoryStatusRepo, StatusRepo, StoreStatusRepo
from trayapp.core.store import Store

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _run(charm_id: str, i: int, outcome: OutcomeKind = OutcomeKind.OK) -> RunRecord:
    start = T0 + timedelta(minutes=i)
    return RunRecord(
        charm_id=charm_id,
        started_at=start,
        finished_at=start + timedelta(seconds=3),
        outcome=outcome,
        counts=Counts(added=i, updated=1, removed=0),
        message=f"run {i}",
        partial=("page 3",) if i % 2 else (),
        trigger="manual",
    )


def _status(charm_id: str) -> CharmStatus:
    return CharmStatus(
        charm_id=charm_id,
        last_run_at=T0,
        next_due_at=T0 + timedelta(minutes=30),
        consecutive_failures=2,
        last_outcome=OutcomeKind.OFFLINE,
        last_error_kind=OutcomeKind.OFFLINE,
        last_error="network unreachable",
        totals=Counts(5, 1, 0),
        paused=True,
        paused_until=T0 + timedelta(hours=1),
    )


def test_status_and_history_survive_restart(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    with Store.open(db) as store:
        repo: StatusRepo = StoreStatusRepo(store)
        repo.save(_status("a"))
        repo.save(_status("b"))
        repo.save(_status("a").with_(consecutive_failures=3))  # replaces, not appends
        for i in range(HISTORY_KEEP + 7):
            repo.append_run(_run("a", i))
        repo.append_run(_run("b", 0, OutcomeKind.BUG))
    with Store.open(db) as store:
        repo = StoreStatusRepo(store)
        loaded = repo.load_all()
        assert set(loaded) == {"a", "b"}
        assert loaded["a"] == _status("a").with_(consecutive_failures=3)
        assert loaded["b"] == _status("b")
        history = repo.history("a")
        assert len(history) == HISTORY_KEEP  # the oldest 7 were trimmed
        assert history[0] == _run("a", HISTORY_KEEP + 6)  # newest first
        assert history[-1] == _run("a", 7)
        assert repo.history("a", limit=3) == [_run("a", i) for i in (56, 55, 54)]
        assert repo.history("b") == [_run("b", 0, OutcomeKind.BUG)]
        assert repo.history("unknown") == []


def test_custom_keep_and_same_start_time(tmp_path: Path) -> None:
    with Store.open(tmp_path / "store.db") as store:
        repo = StoreStatusRepo(store)
        twin = _run("a", 1)
        repo.append_run(twin, keep=5)
        repo.append_run(twin, keep=5)  # two runs starting at the same instant are both kept
        for i in range(2, 10):
            repo.append_run(_run("a", i), keep=5)
        assert [r.message for r in repo.history("a")] == [f"run {i}" for i in (9, 8, 7, 6, 5)]
        assert len(StoreStatusRepo(store).history("a", limit=100)) == 5


def test_delete_forgets_one_charm(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    with Store.open(db) as store:
        repo = StoreStatusRepo(store)
        for charm in ("a", "b"):
            repo.save(_status(charm))
            repo.append_run(_run(charm, 1))
        repo.delete("a")
        repo.delete("never-existed")
    with Store.open(db) as store:
        repo = StoreStatusRepo(store)
        assert set(repo.load_all()) == {"b"}
        assert repo.history("a") == [] and len(repo.history("b")) == 1


def test_behaves_like_the_in_memory_repo(tmp_path: Path) -> None:
    with Store.open(tmp_path / "store.db") as store:
        repos: list[StatusRepo] = [StoreStatusRepo(store), InMemoryStatusRepo()]
        for repo in repos:
            repo.save(_status("a"))
            for i in range(8):
                repo.append_run(_run("a", i), keep=4)
        persisted, memory = repos
        assert persisted.load_all() == memory.load_all()
        assert persisted.history("a") == memory.history("a")
        assert persisted.history("a", limit=2) == memory.history("a", limit=2)


def test_parked_round_trips_and_is_inferred_for_statuses_saved_before_it_existed() -> None:
    parked = CharmStatus("c", paused=True, parked=True)
    assert CharmStatus.from_json(parked.to_json()) == parked

    def saved_without_parked(status: CharmStatus, state: CharmState) -> dict[str, object]:
        data = status.to_json()
        del data["parked"]
        data["state"] = state.value  # older versions stored the state
        return data

    old_parked = CharmStatus("c")
    old_auth = CharmStatus("c", paused=True, last_outcome=OutcomeKind.AUTH_REQUIRED)
    old_fine = CharmStatus("c", paused=True, last_outcome=OutcomeKind.OK)
    assert CharmStatus.from_json(saved_without_parked(old_parked, CharmState.PARKED)).parked
    assert CharmStatus.from_json(saved_without_parked(old_auth, CharmState.PAUSED)).parked
    assert not CharmStatus.from_json(saved_without_parked(old_fine, CharmState.PAUSED)).parked
    # Saved with the field: it wins over the old inference (signed in again while paused).
    signed_in = CharmStatus("c", paused=True, last_outcome=OutcomeKind.AUTH_REQUIRED)
    assert not CharmStatus.from_json(signed_in.to_json()).parked
