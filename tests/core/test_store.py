"""The store itself: opening, migrations, damaged files, permissions, disk full, threads."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from trayapp.core.errors import StoreCorruptError, StoreError
from trayapp.core.store import MIGRATIONS, SCHEMA_VERSION, Store


def _fill(db: Path, n: int = 2000) -> None:
    with Store.open(db) as s:
        s.cell("charm:a:cursor", int, 0).set(n)
        s.collection("charm:a:items").upsert_many(
            (f"k{i}", {"body": "x" * 100}, i) for i in range(n)
        )


def _siblings(db: Path) -> list[str]:
    return sorted(p.name for p in db.parent.iterdir())


def test_open_creates_parent_and_configures_sqlite(db: Path) -> None:
    with Store.open(db) as s:
        conn = s._db()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.is_file()


def test_close_is_idempotent_and_use_after_close_is_a_clear_error(db: Path) -> None:
    s = Store.open(db)
    cell = s.cell("app:a", int, 0)
    s.close()
    s.close()
    assert s.closed
    with pytest.raises(StoreError, match="closed"):
        cell.get()


def test_store_refuses_use_from_another_thread(store: Store) -> None:
    cell = store.cell("app:a", int, 0)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            cell.set(1)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join(timeout=30)
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert "event-loop thread" in str(errors[0])
    assert cell.get() == 0


def test_v1_database_is_upgraded_keeping_its_data(db: Path) -> None:
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db, isolation_level=None)
    MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version=1")
    conn.execute("INSERT INTO cells VALUES ('charm:a:cursor', '7')")
    conn.executemany(
        "INSERT INTO items VALUES ('charm:a:items', ?, ?, '{}')", [(f"k{i}", i) for i in range(5)]
    )
    conn.close()
    with Store.open(db) as s:
        assert s._db().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s.cell("charm:a:cursor", int, 0).get() == 7
        items = s.collection("charm:a:items")
        assert len(items) == 5  # counts backfilled by the v2 migration
        items.upsert("k9", {})
        items.delete("k0")
        assert len(items) == 5


def _json_row(i: int) -> dict[str, object]:
    """About 1.3 KB of JSON: the size of an imported message or event (issue 17.5)."""
    return {"id": f"m{i:08}", "subject": f"message {i}", "text": f"{i:x} words " * 110}


def test_store_is_at_most_one_and_a_half_times_the_json_it_holds(db: Path) -> None:
    rows = [(f"m{i:08}", _json_row(i), i) for i in range(3000)]
    held = sum(len(json.dumps(v, sort_keys=True, separators=(",", ":"))) for _k, v, _s in rows)
    with Store.open(db) as s:
        items = s.collection("charm:gmail:messages")
        for start in range(0, len(rows), 500):  # pages, as an importer writes them
            items.upsert_many(rows[start : start + 500])
        conn = s._db()
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 8192
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("SELECT SUM(pgsize) FROM dbstat").fetchone()[0]
    assert pages <= 1.5 * held, (pages, held)
    assert db.stat().st_size <= 1.5 * held


def test_v2_store_is_migrated_in_place_to_a_compact_one(db: Path) -> None:
    """WITHOUT ROWID items (v2) spill every 1.3 KB row to its own overflow page; v3 does not."""
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db, isolation_level=None)
    for target, migration in enumerate(MIGRATIONS[:2], start=1):
        migration(conn)
        conn.execute(f"PRAGMA user_version={target}")
    conn.execute("PRAGMA journal_mode=WAL")
    rows = [(f"m{i:08}", i, json.dumps(_json_row(i), sort_keys=True, separators=(",", ":")))
            for i in range(3000)]  # fmt: skip
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO items VALUES ('charm:g:messages', ?, ?, ?)", rows)
    conn.executemany(
        "INSERT INTO items VALUES ('charm:c:events', ?, NULL, '{\"n\": 1}')",
        [(f"e{i}",) for i in range(50)],
    )
    conn.execute("INSERT INTO cells VALUES ('charm:g:cursor', '41')")
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    held = sum(len(v) for _k, _s, v in rows)
    before = db.stat().st_size
    assert before > 2.5 * held  # the problem, as the issue measured it

    with Store.open(db) as s:
        conn = s._db()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 8192
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        messages = s.collection("charm:g:messages")
        assert len(messages) == 3000 and len(s.collection("charm:c:events")) == 50
        assert messages.get("m00000042") == _json_row(42)
        assert [k for k, _v in messages.items(limit=2, newest_first=True)] == [
            "m00002999",
            "m00002998",
        ]
        assert s.cell("charm:g:cursor", int, 0).get() == 41
        # Writes keep (coll, key) unique and the counts exact, as before.
        assert messages.upsert("m00000042", {"changed": True}) == "updated"
        assert messages.upsert("new", {"n": 1}, 10**9) == "added"
        assert messages.delete("m00000000")
        assert len(messages) == 3000
    assert db.stat().st_size <= 1.5 * held < before


def test_database_from_a_newer_version_is_refused_untouched(db: Path) -> None:
    _fill(db, 10)
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    with pytest.raises(StoreError, match="upgrade trayapp") as err:
        Store.open(db)
    assert not isinstance(err.value, StoreCorruptError)
    assert str(db) in str(err.value)
    assert db.read_bytes() == before and _siblings(db) == ["store.db"]


def _assert_moved_aside(db: Path, err: StoreCorruptError, original: bytes) -> None:
    moved = [p for p in db.parent.iterdir() if p.name.startswith("store.db.corrupt-")]
    main = [p for p in moved if not p.name.endswith(("-wal", "-shm"))]
    assert len(main) == 1, _siblings(db)
    assert main[0].read_bytes() == original  # kept intact
    message = str(err)
    assert str(db) in message and str(main[0]) in message
    assert "fresh database" in message
    assert not db.exists()
    # The next open starts fresh only because the damaged file is no longer at the path.
    with Store.open(db) as s:
        assert s.cell("charm:a:cursor", int, 0).get() == 0
    assert main[0].read_bytes() == original


def test_garbage_file_is_moved_aside_not_replaced(db: Path) -> None:
    _fill(db)
    size = db.stat().st_size
    garbage = os.urandom(size)
    db.write_bytes(garbage)
    db.with_name("store.db-wal").write_bytes(b"not a wal either")
    with pytest.raises(StoreCorruptError) as err:
        Store.open(db)
    (wal,) = [p for p in db.parent.iterdir() if p.name.endswith("-wal")]
    assert "corrupt-" in wal.name and wal.read_bytes() == b"not a wal either"
    _assert_moved_aside(db, err.value, garbage)


def test_garbage_over_the_middle_of_a_database_is_detected(db: Path) -> None:
    _fill(db)
    data = bytearray(db.read_bytes())
    page = 4096
    data[page * 3 : page * 6] = os.urandom(page * 3)  # header intact, b-tree pages torn
    db.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError) as err:
        Store.open(db)
    _assert_moved_aside(db, err.value, bytes(data))


def test_truncated_database_is_moved_aside(db: Path) -> None:
    _fill(db)
    with db.open("r+b") as f:
        f.truncate(db.stat().st_size // 2)
    truncated = db.read_bytes()
    with pytest.raises(StoreCorruptError) as err:
        Store.open(db)
    _assert_moved_aside(db, err.value, truncated)


def _as_unprivileged(fn: Callable[[], str]) -> str:
    """Run ``fn`` without root's override of file permissions; returns its result text.

    As root (CI containers), a forked child drops to ``nobody``; otherwise it runs in-process.
    """
    if os.geteuid() != 0:
        return fn()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        try:
            os.setgid(65534)
            os.setuid(65534)
            out = fn()
        except BaseException as exc:
            out = f"child failed: {exc!r}"
        os.write(write_fd, out.encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        result = f.read().decode()
    os.waitpid(pid, 0)
    return result


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder an unprivileged user can reach (pytest's tmp_path sits under a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="trayapp-store-test-"))
    path.chmod(0o755)
    yield path
    for p in path.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    shutil.rmtree(path)


def _open_error_text(db: Path) -> str:
    try:
        Store.open(db).close()
    except StoreCorruptError as exc:
        return f"CORRUPT {exc}"
    except StoreError as exc:
        return f"STOREERROR {exc}"
    return "OPENED"


@pytest.mark.parametrize("mode", [0o000, 0o444])
def test_permission_denied_is_a_clear_error_and_nothing_moves(shared_dir: Path, mode: int) -> None:
    folder = shared_dir / "profile"
    db = folder / "store.db"
    _fill(db, 10)
    before = db.read_bytes()
    folder.chmod(0o755)  # readable, but nobody else may create -wal/-shm here
    db.chmod(mode)
    try:
        text = _as_unprivileged(lambda: _open_error_text(db))
    finally:
        db.chmod(0o644)
    assert text.startswith("STOREERROR "), text
    assert "permission denied" in text and str(db) in text and "writable" in text
    assert db.read_bytes() == before and _siblings(db) == ["store.db"]


def test_unwritable_parent_folder_is_a_clear_error(shared_dir: Path) -> None:
    locked = shared_dir / "locked"
    locked.mkdir(mode=0o555)
    text = _as_unprivileged(lambda: _open_error_text(locked / "profile" / "store.db"))
    assert text.startswith("STOREERROR "), text
    assert "permission denied" in text and str(locked / "profile") in text


def _limit_pages(store: Store, extra: int) -> None:
    conn = store._db()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages + extra}")


def test_disk_full_rolls_back_and_says_nothing_was_lost(store: Store) -> None:
    cursor = store.cell("charm:a:cursor", int, 0)
    items = store.collection("charm:a:items")
    with store.transaction():
        items.upsert("old", {"v": 1})
        cursor.set(1)
    _limit_pages(store, 2)
    with pytest.raises(StoreError, match="full") as err, store.transaction():
        cursor.set(2)
        items.upsert_many((f"k{i}", {"body": "x" * 500}, i) for i in range(200))
    assert "nothing already saved was lost" in str(err.value)
    assert "free some disk space" in str(err.value)
    assert cursor.get() == 1 and items.keys() == ["old"] and len(items) == 1
    # The store is still usable once space is back.
    store._db().execute("PRAGMA max_page_count=1073741823")
    cursor.set(3)
    assert cursor.get() == 3


def test_disk_full_in_a_caught_inner_level_undoes_just_that_level(store: Store) -> None:
    cursor = store.cell("charm:a:cursor", int, 0)
    items = store.collection("charm:a:items")
    _limit_pages(store, 2)
    with store.transaction():
        cursor.set(5)
        try:
            with store.transaction():
                items.upsert_many((f"k{i}", "x" * 500, i) for i in range(200))
        except StoreError as exc:
            assert "full" in str(exc)
    # The caught failure undid the inner block only, wholly: no item of it was kept.
    assert cursor.get() == 5 and len(items) == 0 and items.keys() == []


def test_outer_commit_refuses_when_sqlite_already_rolled_everything_back(store: Store) -> None:
    """SQLite may roll a whole transaction back on some errors (e.g. SQLITE_FULL mid-statement).

    A caller that catches the inner error must not believe the outer block was saved.
    """
    cursor = store.cell("charm:a:cursor", int, 0)
    with pytest.raises(StoreError, match="nothing from it was saved"), store.transaction():
        cursor.set(5)
        try:
            with store.transaction():
                store._db().execute("ROLLBACK")  # what SQLite does on its own in that case
                raise sqlite3.OperationalError("simulated")
        except sqlite3.OperationalError:
            pass
    assert cursor.get() == 0
    cursor.set(6)  # and the store works normally afterwards
    assert cursor.get() == 6


async def test_a_transaction_held_across_an_await_refuses_other_tasks_writes(store: Store) -> None:
    """Another task's write must not silently join (and roll back with) a transaction that
    its owner holds open across an await."""
    cursor = store.cell("charm:a:cursor", int, 0)
    status = store.cell("app:other", str, "")
    inside = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        with store.transaction():
            cursor.set(1)
            inside.set()
            await release.wait()
            raise RuntimeError("the sync failed after the await")

    task = asyncio.create_task(holder(), name="holder")
    await asyncio.wait_for(inside.wait(), 10)

    async def other() -> None:
        status.set("saved")

    with pytest.raises(RuntimeError, match="'holder' holds a transaction open across an await"):
        await asyncio.create_task(other(), name="other")
    release.set()
    with pytest.raises(RuntimeError, match="the sync failed"):
        await asyncio.wait_for(task, 10)
    assert cursor.get() == 0
    assert status.get() == ""

    # The owner's own nested writes still work, and the store is usable afterwards.
    async def owner_nests() -> None:
        with store.transaction():
            cursor.set(2)
            with store.transaction():
                status.set("nested")

    await asyncio.wait_for(asyncio.create_task(owner_nests()), 10)
    assert (cursor.get(), status.get()) == (2, "nested")


def test_the_wal_is_checkpointed_on_a_thread_of_its_own_not_in_the_commit(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's automatic checkpoint ran inside the COMMIT that took the WAL past 1,000 pages,
    on the event loop thread, and held it 80-140 ms (issue 17.5). The store's connection now
    checkpoints only past WAL_AUTOCHECKPOINT_PAGES; one thread with its own connection does
    it after commits, started at the first commit and parked when there are none."""
    from trayapp.core import store as store_module

    monkeypatch.setattr(store_module, "CHECKPOINT_GAP_S", 0.01)
    wal = db.with_name(db.name + "-wal")
    with Store.open(db) as s:
        conn = s._db()
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == (
            store_module.WAL_AUTOCHECKPOINT_PAGES
        )
        checkpointer = s._checkpointer
        s.collection("charm:a:items").get("x")  # reads start no thread
        assert checkpointer._thread is None
        s.collection("charm:a:items").upsert_many(
            (f"k{i}", {"body": "x" * 2000}, i) for i in range(500)
        )
        thread = checkpointer._thread
        assert thread is not None and thread.name == "trayapp-store-checkpoint"
        assert thread is not threading.current_thread()
        assert _until(lambda: checkpointer.checkpoints >= 1)
        # Every frame of the WAL is in the database file now: nothing left to copy.
        busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and frames == done and frames > 0
        for i in range(20):  # many commits: the same one thread
            s.cell("charm:a:cursor", int, 0).set(i)
        assert checkpointer._thread is thread
        assert _until(lambda: checkpointer.checkpoints >= 2)
        # No commits, no checkpoints: the thread is parked (zero wake-ups while idle).
        count = checkpointer.checkpoints
        threading.Event().wait(0.2)
        assert checkpointer.checkpoints == count
    assert not thread.is_alive()
    # The store's own connection closed last and removed the WAL, as before.
    assert not wal.exists()


def _until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return True
        done.wait(0.01)
    return condition()
