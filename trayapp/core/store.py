"""The SQLite store behind cells, collections and run history.

One database file per profile, opened with the stdlib ``sqlite3`` module in WAL mode. The
guarantees other modules build on:

* A transaction (:meth:`Store.transaction`) commits everything written inside it or nothing, so
  a sync cursor never advances past items that were not stored (a crash mid-sync re-fetches).
* Subscribers hear about a change only after it is committed, never about a rolled-back one.
* A damaged database is never silently replaced by an empty one: it is moved aside, intact, and
  the user is told where it is (:class:`~trayapp.core.errors.StoreCorruptError`).
* Collections cost O(log n) per item change and O(1) to count, so an incremental sync of a
  100k-item mailbox costs what changed, not what exists.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from trayapp.core.cells import Cell, DerivedCell
from trayapp.core.errors import NotFoundError, StoreCorruptError, StoreError, StoreFullError

log = logging.getLogger(__name__)

T = TypeVar("T")

SortKey = str | int | float | None
UpsertResult = Literal["added", "updated", "unchanged"]

# SQLite primary result codes (the low byte of ``sqlite3.Error.sqlite_errorcode``).
_SQLITE_PERM = 3
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26

BUSY_TIMEOUT_S = 5.0
PAGE_SIZE = 8192  # for new databases and migrated ones (see _migrate_v3)

#: Told how far an upgrade of an existing store has come, 0.0 to 1.0 (see :meth:`Store.open`).
#: Called on the thread that opens the store.
UpgradeProgress = Callable[[float], None]
UPGRADE_CHUNK = 2000  # items copied per step of an upgrade (one progress report per step)
UPGRADE_SUFFIX = ".upgrade"  # the new file an upgrade builds beside the database
#: The loop's connection checkpoints the WAL itself only past this many pages (64 MB at 8 KB
#: pages), a safety net: normally :class:`_Checkpointer` does it on a thread of its own first.
WAL_AUTOCHECKPOINT_PAGES = 8192
#: After a commit, the checkpointer waits this long (collecting more commits) before it copies
#: the WAL into the database: at most one checkpoint per gap while writes go on, none when idle.
CHECKPOINT_GAP_S = 1.0
#: Items per statement of Collection.upsert_many/delete_many (at most 4 parameters each, far
#: below SQLite's limit of 32,766 per statement).
ROWS_PER_STATEMENT = 100


# --- schema ------------------------------------------------------------------------------------
# Each migration takes the schema from version i to i+1 inside one transaction (SQLite DDL is
# transactional), so a crash mid-upgrade leaves the old version intact. Append only: never edit
# a migration that has shipped.


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """Cells and collection items."""
    conn.execute("CREATE TABLE cells (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
    conn.execute(
        """CREATE TABLE items (
               coll TEXT NOT NULL,
               key TEXT NOT NULL,
               sort_key ANY,
               value TEXT NOT NULL,
               PRIMARY KEY (coll, key)
           ) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX items_by_sort ON items (coll, sort_key, key)")


def _migrate_v2(conn: sqlite3.Connection) -> None:
    """Per-collection item counts, kept by triggers, so ``len(collection)`` is one row read.

    (v1 counted with ``COUNT(*)``, which walks the whole collection.)
    """
    conn.execute(
        "CREATE TABLE collections (name TEXT PRIMARY KEY, count INTEGER NOT NULL DEFAULT 0)"
        " WITHOUT ROWID"
    )
    conn.execute(
        "INSERT INTO collections (name, count) SELECT coll, COUNT(*) FROM items GROUP BY coll"
    )
    _count_triggers(conn)


def _migrate_v3(conn: sqlite3.Connection) -> None:
    """Items in a rowid table, so the store is about the size of the JSON it holds.

    In v1/v2 the items table was ``WITHOUT ROWID``: a clustered b-tree keyed by (coll, key) whose
    leaf cells may hold only about a tenth of a page before the rest spills to overflow pages. A
    1-1.5 KB message or event thus took a whole, mostly empty, 4 KB overflow page of its own
    (the store was 3-4.5x its JSON). A rowid table packs rows of that size several to a page;
    (coll, key) stays unique through an index that holds only the keys.
    """
    conn.execute(
        """CREATE TABLE items_v3 (
               id INTEGER PRIMARY KEY,
               coll TEXT NOT NULL,
               key TEXT NOT NULL,
               sort_key ANY,
               value TEXT NOT NULL
           )"""
    )
    conn.execute(
        "INSERT INTO items_v3 (coll, key, sort_key, value) "
        "SELECT coll, key, sort_key, value FROM items ORDER BY coll, sort_key, key"
    )
    conn.execute("DROP TABLE items")  # its index and count triggers go with it
    conn.execute("ALTER TABLE items_v3 RENAME TO items")
    conn.execute("CREATE UNIQUE INDEX items_by_key ON items (coll, key)")
    conn.execute("CREATE INDEX items_by_sort ON items (coll, sort_key, key)")
    _count_triggers(conn)


def _count_triggers(conn: sqlite3.Connection) -> None:
    # An UPSERT that turns into an UPDATE fires update triggers only, so counts stay exact.
    conn.execute(
        """CREATE TRIGGER items_count_insert AFTER INSERT ON items BEGIN
               INSERT INTO collections (name, count) VALUES (NEW.coll, 1)
                   ON CONFLICT (name) DO UPDATE SET count = count + 1;
           END"""
    )
    conn.execute(
        """CREATE TRIGGER items_count_delete AFTER DELETE ON items BEGIN
               UPDATE collections SET count = count - 1 WHERE name = OLD.coll;
           END"""
    )


def needs_upgrade(path: Path) -> bool:
    """True when the database at ``path`` exists with data in an older schema, so that opening
    it will upgrade it (seconds on a large profile: the app shows progress meanwhile).

    Read from the file header (``user_version`` at offset 60), without SQLite and its locks. A
    version changed only in the WAL is not seen: at worst an up-to-date store is "upgraded" in
    no time; a store the header calls current never needs one.
    """
    try:
        with Path(path).open("rb") as f:
            head = f.read(64)
    except OSError:
        return False
    if len(head) < 64 or not head.startswith(_SQLITE_MAGIC):
        return False
    version = int.from_bytes(head[60:64], "big")
    return 0 < version < SCHEMA_VERSION


def _rebuild_v3(
    conn: sqlite3.Connection, path: Path, progress: UpgradeProgress
) -> tuple[sqlite3.Connection, bool]:
    """Upgrade a v2 store to v3 by building the v3 file beside it and renaming it into place.

    Faster than migrating in place (which must free every overflow page of the old table in
    the WAL and then VACUUM the whole file: ~16-23 s for 100k messages), and crash safe by
    construction: the old file is not written at all until an atomic rename replaces it with a
    complete, synced new one. A kill at any moment leaves either the old store (and a partial
    ``.upgrade`` file, deleted at the next start, which starts over) or the new one.

    The old file stays write-locked (``BEGIN IMMEDIATE``) during the copy, so no other process
    can change it under us. Returns the connection to go on with and whether the file was
    rebuilt; it was not when another program has it open (the caller then migrates in place).
    """
    tmp = path.with_name(path.name + UPGRADE_SUFFIX)
    _remove_upgrade_leftovers(tmp)
    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    if busy:
        return conn, False
    progress(0.0)
    conn.execute("BEGIN IMMEDIATE")  # no writer may change the old file while it is copied
    new: sqlite3.Connection | None = None
    try:
        total = conn.execute("SELECT COALESCE(SUM(count), 0) FROM collections").fetchone()[0]
        new = sqlite3.connect(
            tmp.resolve().as_uri(), uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None
        )
        # A file nobody else knows yet: no journal, no syncs until the one fsync at the end.
        new.execute(f"PRAGMA page_size={PAGE_SIZE}")
        new.execute("PRAGMA journal_mode=OFF")
        new.execute("PRAGMA synchronous=OFF")
        new.execute("PRAGMA cache_size=-65536")  # 64 MiB while the indexes are built
        new.execute("ATTACH DATABASE ? AS old", (_ro_uri(path),))
        new.execute("BEGIN")
        new.execute("CREATE TABLE cells (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
        new.execute(
            "CREATE TABLE collections (name TEXT PRIMARY KEY, count INTEGER NOT NULL DEFAULT 0)"
            " WITHOUT ROWID"
        )
        new.execute(
            """CREATE TABLE items (
                   id INTEGER PRIMARY KEY,
                   coll TEXT NOT NULL,
                   key TEXT NOT NULL,
                   sort_key ANY,
                   value TEXT NOT NULL
               )"""
        )
        new.execute("INSERT INTO cells SELECT name, value FROM old.cells")
        new.execute("INSERT INTO collections SELECT name, count FROM old.collections")
        copied = 0
        for chunk in _copy_items(new):
            copied += chunk
            progress(0.85 * min(1.0, copied / total) if total else 0.85)
        new.execute("CREATE UNIQUE INDEX items_by_key ON items (coll, key)")
        progress(0.92)
        new.execute("CREATE INDEX items_by_sort ON items (coll, sort_key, key)")
        _count_triggers(new)
        new.execute("PRAGMA user_version=3")
        new.execute("COMMIT")
        progress(0.98)
        new.execute("DETACH DATABASE old")
        new.close()
        new = None
        os.chmod(tmp, path.stat().st_mode & 0o777)  # the database's own (private) mode
        _fsync(tmp)
    except BaseException:
        if new is not None:
            new.close()
        conn.execute("ROLLBACK")
        _remove_upgrade_leftovers(tmp)
        raise
    conn.execute("ROLLBACK")  # nothing was written to the old file
    conn.close()
    wal = path.with_name(path.name + "-wal")
    if wal.exists():  # another connection kept it open: its program still uses the old file
        tmp.unlink(missing_ok=True)
        return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None), False
    try:
        os.replace(tmp, path)
        _fsync(path.parent)
    except OSError as exc:
        raise StoreError(
            f"cannot put the upgraded copy of the database {path} in its place "
            f"({exc.strerror}); nothing was lost: start trayapp again to retry"
        ) from None
    path.with_name(path.name + "-shm").unlink(missing_ok=True)  # the old file's, if left
    progress(1.0)
    log.info("store upgraded to v3 (%d items copied into a new file)", copied)
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None), True


def _copy_items(new: sqlite3.Connection) -> Iterator[int]:
    """Copy old.items into items in steps of UPGRADE_CHUNK rows, in (coll, sort_key, key)
    order (so rows read together by the sort index sit together), yielding each step's count.

    Keyset steps along the old ``items_by_sort`` index: items without a sort key first (SQLite
    orders NULL first) by key, then ``(sort_key, key)`` row values, per collection.
    """
    colls = [str(r[0]) for r in new.execute("SELECT name FROM old.collections ORDER BY name")]
    head = "INSERT INTO items (coll, key, sort_key, value) SELECT coll, key, sort_key, value"
    for coll in colls:
        last_key: str | None = None
        while True:  # items without a sort key
            cur = new.execute(
                f"{head} FROM old.items WHERE coll = ? AND sort_key IS NULL"
                + ("" if last_key is None else " AND key > ?")
                + " ORDER BY key LIMIT ?",
                (coll, *(() if last_key is None else (last_key,)), UPGRADE_CHUNK),
            )
            if cur.rowcount <= 0:
                break
            last_key = new.execute(
                "SELECT key FROM items WHERE id = last_insert_rowid()"
            ).fetchone()[0]
            yield cur.rowcount
        last: tuple[Any, str] | None = None
        while True:
            cur = new.execute(
                f"{head} FROM old.items WHERE coll = ? AND sort_key IS NOT NULL"
                + ("" if last is None else " AND (sort_key, key) > (?, ?)")
                + " ORDER BY sort_key, key LIMIT ?",
                (coll, *(() if last is None else last), UPGRADE_CHUNK),
            )
            if cur.rowcount <= 0:
                break
            row = new.execute(
                "SELECT sort_key, key FROM items WHERE id = last_insert_rowid()"
            ).fetchone()
            last = (row[0], str(row[1]))
            yield cur.rowcount
    # Rows of a collection the counts table does not name (should not exist): copied too.
    new.execute(
        f"{head} FROM old.items WHERE coll NOT IN (SELECT name FROM old.collections)"
        " ORDER BY coll, sort_key, key"
    )


def _ro_uri(path: Path) -> str:
    return path.resolve().as_uri() + "?mode=ro"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_upgrade_leftovers(tmp: Path) -> None:
    for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
        leftover.unlink(missing_ok=True)


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _migrate_v1,
    _migrate_v2,
    _migrate_v3,
)
# After these migrations the file keeps the freed pages of the table they replaced: the store
# is compacted (VACUUM) once, right after, so an existing profile shrinks in place too.
_COMPACT_AFTER = frozenset({3})
SCHEMA_VERSION = len(MIGRATIONS)


# One encoder for every write: json.dumps with options builds a new JSONEncoder per call.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _encode_json(value: Any) -> str:
    """Canonical JSON, so "unchanged" can be decided by comparing stored text."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"collection values must be JSON data: {exc}") from None


# An item write that does not read first (Store.put_items) and the trim of a collection to its
# newest ``keep`` items in one statement: how many go comes from the trigger-kept count, and only
# those oldest are read from the sort index (Store.trim_collections).
_PUT_ITEM = (
    "INSERT INTO items (coll, key, sort_key, value) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (coll, key) DO UPDATE SET sort_key = excluded.sort_key, value = excluded.value"
)
_TRIM = (
    "DELETE FROM items WHERE coll = ?1 AND key IN ("
    " SELECT key FROM items WHERE coll = ?1 ORDER BY sort_key, key"
    " LIMIT max(0, coalesce((SELECT count FROM collections WHERE name = ?1), 0) - ?2))"
)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop: plain synchronous use (CLI, tests)
        return None


def _task_name(task: asyncio.Task[Any] | None) -> str:
    return f"task {task.get_name()!r}" if task is not None else "code outside any task"


class _CorruptFile(Exception):
    """Raised inside :meth:`Store.open` when the integrity check finds damage."""


def _primary(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


class _Checkpointer:
    """Copies the WAL into the database file on a thread of its own (issue 17.5).

    SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past 1,000 pages
    (8 MB): it copies the pages into the database file and, with ``synchronous=NORMAL``, waits
    for two fsyncs, on the committing thread. For the engine that is the event loop thread: a
    Gmail full sync's commit now and then held the loop 80-140 ms there (the watchdog's stacks
    showed COMMIT; with the automatic checkpoint off, no beat over 50 ms). So the loop's
    connection checkpoints only as a safety net (:data:`WAL_AUTOCHECKPOINT_PAGES`), and this
    thread runs a PASSIVE checkpoint with its own connection :data:`CHECKPOINT_GAP_S` after a
    commit: it never blocks the writer (SQLite lets the writer append to the WAL meanwhile) nor
    a reader, and it gives up the GIL while SQLite works. Durability is unchanged: a commit is
    in the WAL when COMMIT returns, whoever copies it on.

    The thread starts at the first commit and parks on an event when no commits come (zero
    wake-ups while the app is idle). :meth:`close` stops it before the store's own connection
    closes, so that connection is the last and removes the WAL as before.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0  # checkpoints run so far (tests count them)

    def committed(self) -> None:
        """Called on the store's thread after each commit; cheap (sets an event)."""
        if self._thread is None:
            if self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name="trayapp-store-checkpoint", daemon=True
            )
            self._thread.start()
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            # A checkpoint in progress finishes first (bounded by the WAL's size); should it
            # hang on a dead disk, the store closes anyway.
            self._thread.join(timeout=BUSY_TIMEOUT_S * 2)
            self._thread = None

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            log.warning("store checkpoints stay on the main connection: %s", exc)
            return
        try:
            while True:
                self._wake.wait()
                if self._stop.wait(CHECKPOINT_GAP_S):
                    return
                self._wake.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # e.g. disk full: the safety net remains
                    log.debug("store checkpoint failed: %s", exc)
        finally:
            conn.close()


class Store:
    """The profile's database.

    Not thread-safe by design: one connection, used only from the thread that opened it (the
    event-loop thread). The engine is asyncio on one thread and every query is a short indexed
    read or write, so a connection pool or a worker thread would only add locking. Use from
    another thread raises ``RuntimeError`` rather than corrupting transaction state.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        """Use :meth:`open`."""
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._thread = threading.get_ident()
        self._depth = 0
        # One set of changed names per open transaction level; merged on release, dropped on
        # rollback; notified after the outermost commit.
        self._aborted = False
        # The asyncio task (None outside one) that opened the outermost transaction.
        self._owner: asyncio.Task[Any] | None = None
        self._cells: dict[str, Cell[Any] | DerivedCell[Any]] = {}
        self._collections: dict[str, Collection] = {}
        # While set (:meth:`collect_damaged`), collection reads skip undecodable rows and
        # record them here as (collection, key) instead of failing.
        self._damaged_sink: list[tuple[str, str]] | None = None
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        self._checkpointer = _Checkpointer(path)

    # --- opening and closing -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        empty_is_damage: bool = False,
        progress: UpgradeProgress | None = None,
    ) -> Store:
        """Open (creating or migrating) the database at ``path``.

        ``empty_is_damage``: the caller knows this database held data (the profile says so),
        so a 0-byte file is damage, moved aside like any other, not a new database.

        ``progress``: told how far the upgrade of an existing database to this version's schema
        has come (0.0-1.0), several times a second, when there is one to do (see
        :func:`needs_upgrade`: the app runs it before the engine starts, with its progress
        shown). A killed upgrade leaves the old database as it was and starts over.

        Raises :class:`StoreCorruptError` after moving a damaged file aside, and
        :class:`StoreError` for an unusable file (permissions, newer schema, locked, disk full).
        """
        path = Path(path)
        try:
            # mkdir on an existing folder we may not write to fails with EACCES, not EEXIST.
            if not path.parent.is_dir():
                path.parent.mkdir(parents=True, exist_ok=True)
        except PermissionError:
            raise StoreError(
                f"cannot reach or create the folder {path.parent} for the database: permission "
                f"denied; make it (and the folders above it) writable by your user"
            ) from None
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder {path.parent} for the database: {exc.strerror}"
            ) from None
        if not _has_sqlite_header(path):
            # Decided before SQLite touches the file: a failed SQLite open deletes a -wal it
            # cannot use when it closes, and we promise to keep everything as it was.
            raise _move_aside(path, "not an SQLite database")
        if empty_is_damage and _empty_file(path):
            # SQLite would silently start a new, empty database: the user's charms and
            # accounts would be gone without a word.
            raise _move_aside(path, "it is empty (0 bytes), though it held data before")
        try:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise _open_error(path, exc) from None
        try:
            conn = cls._configure_and_check(conn, path, progress)
        except _CorruptFile as exc:
            conn.close()
            raise _move_aside(path, str(exc)) from None
        except sqlite3.Error as exc:
            conn.close()
            if _primary(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise _move_aside(path, str(exc)) from None
            raise _open_error(path, exc) from None
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    @staticmethod
    def _configure_and_check(
        conn: sqlite3.Connection,
        path: Path,
        progress: UpgradeProgress | None = None,
        *,
        rebuild: bool = True,
    ) -> sqlite3.Connection:
        """Configure ``conn``, check the file and migrate it; returns the connection to use
        (a new one when an upgrade rebuilt the file)."""
        # The first statement reads the header: a non-database file fails here (NOTADB).
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database {path} was written by a newer trayapp (schema v{version}, this "
                f"version understands up to v{SCHEMA_VERSION}); upgrade trayapp to open it"
            )
        if version == 0:
            # A new database: 8 KB pages. Messages and events are 1-1.5 KB rows, which pack with
            # far less slack into 8 KB than into 4 KB (store <= 1.5x its JSON, issue 17.5). Only
            # possible before the first table exists (and before WAL); existing files get it at
            # their compaction after migration.
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"cannot put the database {path} in WAL mode (got {mode!r})")
        # synchronous=NORMAL in WAL mode: a commit survives an app crash or kill -9 (the WAL
        # is written before COMMIT returns) and the database is never corrupted by power loss;
        # at worst the last few commits before a power cut roll back, atomically. That only
        # re-fetches what those syncs fetched, because cursors and items commit together, so
        # FULL's fsync on every commit would buy nothing the user could notice.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        # quick_check is O(pages) but skips index cross-checks: milliseconds for a typical
        # profile, and it catches torn or truncated files before we trust them.
        rows = conn.execute("PRAGMA quick_check").fetchall()
        problems = [str(r[0]) for r in rows if r[0] != "ok"]
        if problems:
            raise _CorruptFile(f"quick_check failed: {'; '.join(problems[:3])}")
        if 0 < version < 3 and rebuild:
            Store._migrate(conn, version, until=2)  # small in-place steps (v1 -> v2)
            conn, rebuilt = _rebuild_v3(conn, path, progress or (lambda _done: None))
            if not rebuilt:
                log.info("store upgrade: the file is in use elsewhere; migrating it in place")
            return Store._configure_and_check(conn, path, rebuild=False)
        Store._migrate(conn, version)
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection, version: int, until: int = SCHEMA_VERSION) -> None:
        compact = False
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for target, migration in enumerate(MIGRATIONS[version:until], start=version + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                migration(conn)
                conn.execute(f"PRAGMA user_version={target}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            log.info("store schema migrated to v%d", target)
            compact = compact or (version > 0 and target in _COMPACT_AFTER)
        if compact:
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            if free:
                Store._compact(conn, free)

    @staticmethod
    def _compact(conn: sqlite3.Connection, free: int) -> None:
        """VACUUM into 8 KB pages, giving the replaced table's pages back to the disk.

        The page size can change only outside WAL mode, so the journal is switched for the
        VACUUM and back. A failure (another process has the file open, or the disk is too full
        for VACUUM's copy) only leaves the file larger: the data is already migrated.
        """
        try:
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            conn.execute("VACUUM")
            log.info("store compacted after migration (%d free pages returned)", free)
        except sqlite3.Error as exc:
            log.warning("could not compact the store after migration: %s", exc)
        finally:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"cannot put the database back in WAL mode (got {mode!r})")

    def close(self) -> None:
        """Close the connection; idempotent. Closing checkpoints the WAL into the main file."""
        if self._conn is None:
            return
        self._check_thread()
        if self._depth:
            raise StoreError("cannot close the store inside a transaction")
        self._checkpointer.close()  # first: the store's own connection must be the last one
        self._conn.close()
        self._conn = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- low level ----------------------------------------------------------------------------

    def _check_thread(self) -> None:
        if threading.get_ident() != self._thread:
            raise RuntimeError(
                "the Store was used from another thread; it belongs to the event-loop thread "
                "that opened it (schedule the call there, e.g. loop.call_soon_threadsafe)"
            )

    def _db(self) -> sqlite3.Connection:
        self._check_thread()
        if self._conn is None:
            raise StoreError(f"the store {self.path} is closed")
        return self._conn

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        conn = self._db()
        try:
            return conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._runtime_error(exc) from None

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        conn = self._db()
        try:
            return conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise self._runtime_error(exc) from None

    def _runtime_error(self, exc: sqlite3.Error) -> StoreError:
        code = _primary(exc)
        if code == _SQLITE_FULL or (code == _SQLITE_IOERR and _disk_full(self.path)):
            return StoreFullError(
                f"the disk holding {self.path} is full; the change was rolled back and nothing "
                f"already saved was lost; free some disk space and try again"
            )
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return StoreCorruptError(
                f"the database {self.path} is damaged ({exc}); quit trayapp and start it again: "
                f"the damaged file will be moved aside and kept"
            )
        if code in (_SQLITE_READONLY, _SQLITE_PERM, _SQLITE_CANTOPEN):
            return StoreError(
                f"cannot write the database {self.path}: permission denied; make it and its "
                f"folder writable by your user"
            )
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return StoreError(
                f"the database {self.path} is locked by another program (is a second trayapp "
                f"running?); quit the other one and try again"
            )
        if code == _SQLITE_IOERR:
            return StoreError(f"cannot read or write the database {self.path}: {exc}")
        return StoreError(f"database error in {self.path}: {exc}")

    # --- transactions -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all commit together at the outermost level, or none do.

        Re-entrant. An inner level is a SAVEPOINT, so an exception caught by the caller inside
        an outer transaction undoes just the inner block. Subscribers run after the outermost
        commit.

        A transaction must not span an ``await``: the connection is shared by every task, so
        another task's writes would silently join it (and vanish if it rolls back). A write from
        a different task while one is open raises ``RuntimeError`` instead.
        """
        conn = self._db()
        level = self._depth
        task = _current_task()
        if level == 0:
            self._execute("BEGIN IMMEDIATE")
            self._aborted = False
            self._owner = task
        elif task is not self._owner:
            raise RuntimeError(
                f"a write to {self.path} came from {_task_name(task)} while "
                f"{_task_name(self._owner)} holds a transaction open across an await; finish a "
                "transaction's writes before awaiting anything (fetch first, then write in one "
                "`with store.transaction()`)"
            )
        else:
            self._execute(f"SAVEPOINT sp{level}")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if level == 0:
                self._owner = None
            if conn.in_transaction:
                if level == 0:
                    conn.execute("ROLLBACK")
                else:
                    conn.execute(f"ROLLBACK TO sp{level}")
                    conn.execute(f"RELEASE sp{level}")
            elif level > 0:
                # SQLite rolled the whole transaction back itself (e.g. disk full).
                self._aborted = True
            raise
        self._depth -= 1
        if level > 0:
            self._execute(f"RELEASE sp{level}")
            return
        self._owner = None
        if self._aborted or not conn.in_transaction:
            self._aborted = False
            raise StoreError(
                f"a write to {self.path} failed earlier in this transaction and SQLite rolled "
                f"the whole transaction back; nothing from it was saved"
            )
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._runtime_error(exc) from None
        self._checkpointer.committed()

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: changes when ANOTHER connection (the CLI, another
        process) commits to the database, never for this connection's own writes. Lets a
        reader keep decoded rows in memory and re-read them only when someone else wrote."""
        return int(self._execute("PRAGMA data_version").fetchone()[0])

    @contextmanager
    def _one_write(self) -> Iterator[None]:
        """Scope of a change made by one SQL write statement (an item upsert or delete).

        Inside a transaction the same task holds open, no SAVEPOINT: one statement is atomic
        on its own in SQLite (a failing one changes nothing, its triggers included), so the
        savepoint would protect nothing, and an importer storing a 250-event step item by
        item paid a SAVEPOINT/RELEASE pair for each (a fifth of the time the step held the
        event loop). Otherwise a transaction of its own, with its checks.
        """
        if self._depth == 0 or _current_task() is not self._owner:
            with self.transaction():
                yield
            return
        conn = self._db()
        try:
            yield
        except BaseException:
            if not conn.in_transaction:
                self._aborted = True  # SQLite rolled the whole transaction back (disk full)
            raise

    # --- cells --------------------------------------------------------------------------------

    def _read_cell(self, name: str) -> str | None:
        row = self._execute("SELECT value FROM cells WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def _write_cell(self, name: str, value: str) -> None:
        with self.transaction():
            # Writing the value a cell already holds changes nothing.
            self._execute(
                "INSERT INTO cells (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
                " WHERE value IS NOT excluded.value",
                (name, value),
            )

    @overload
    def cell(self, name: str, type_: type[T], default: T) -> Cell[T]: ...
    @overload
    def cell(self, name: str, type_: Any, default: Any = None) -> Cell[Any]: ...
    def cell(self, name: str, type_: Any, default: Any = None) -> Cell[Any]:
        """The writable cell ``name`` of type ``type_``; the same object for the same name.

        Declaring a name again with a different type is a programming error (TypeError),
        except ``Any``, which means "whatever it is" and returns the existing cell with its
        type. A name already used by a derived cell raises :class:`StoreError`.
        """
        self._db()
        existing = self._cells.get(name)
        if isinstance(existing, DerivedCell):
            raise StoreError(
                f"{name!r} is already a derived (read-only) cell; choose another name for the "
                f"writable cell"
            )
        if existing is not None:
            if not existing.declared:
                existing._redeclare(type_, default)
            elif type_ is not Any and existing.type != type_:
                raise TypeError(
                    f"cell {name!r} is already declared as {existing.type!r}, not {type_!r}"
                )
            return existing
        cell: Cell[Any] = Cell(self, name, type_, default)
        self._cells[name] = cell
        return cell

    def derived(
        self,
        name: str,
        sources: Sequence[Cell[Any] | DerivedCell[Any]],
        compute: Callable[..., T],
    ) -> DerivedCell[T]:
        """A read-only cell computed as ``compute(*(s.get() for s in sources))``.

        Derived cells are code, not data: they are not persisted and exist once declared in
        this process. Declaring the same name again replaces nothing: it raises StoreError.
        """
        self._db()
        if name in self._cells:
            kind = "derived" if isinstance(self._cells[name], DerivedCell) else "writable"
            raise StoreError(f"{name!r} is already declared as a {kind} cell; choose another name")
        if self._read_cell(name) is not None:
            raise StoreError(
                f"{name!r} is a stored writable cell; a derived cell needs another name"
            )
        for source in sources:
            if self._cells.get(source.name) is not source:
                raise StoreError(f"source {source.name!r} of {name!r} is not a cell of this store")
        view: DerivedCell[T] = DerivedCell(self, name, sources, compute)
        self._cells[name] = view
        return view

    def lookup(self, name: str) -> Cell[Any] | DerivedCell[Any]:
        """The cell called ``name``, declared in this process or stored by an earlier run.

        A stored cell nobody declared yet comes back as ``Cell[Any]`` holding plain JSON values
        (dicts, lists, strings, numbers) with default None; a later :meth:`cell` call with the
        real type upgrades that same object.
        """
        existing = self._cells.get(name)
        if existing is not None:
            return existing
        if self._read_cell(name) is None:
            raise NotFoundError(f"no cell named {name!r}")
        cell: Cell[Any] = Cell(self, name, Any, None, declared=False)
        self._cells[name] = cell
        return cell

    def is_writable(self, name: str) -> bool:
        """Raises NotFoundError for an unknown name."""
        return self.lookup(name).writable

    def cell_names(self, prefix: str = "") -> list[str]:
        """Declared and stored cell names starting with ``prefix``, sorted."""
        stored = {
            str(r[0])
            for r in self._execute(
                "SELECT name FROM cells WHERE substr(name, 1, ?) = ?", (len(prefix), prefix)
            )
        }
        declared = {n for n in self._cells if n.startswith(prefix)}
        return sorted(stored | declared)

    # --- collections --------------------------------------------------------------------------

    @contextmanager
    def collect_damaged(self) -> Iterator[list[tuple[str, str]]]:
        """Within the block, reading a collection skips a row whose value is not valid JSON and
        lists it (``(collection, key)``) in the yielded list, so an export can write every
        readable row and then say which it could not read. Outside it such a row raises."""
        previous, self._damaged_sink = self._damaged_sink, []
        try:
            yield self._damaged_sink
        finally:
            self._damaged_sink = previous

    def put_items(self, items: Iterable[tuple[str, str, SortKey, Any]]) -> int:
        """Write ``(collection, key, sort_key, value)`` items of any collections in one
        transaction and one statement for all (``executemany``), without reading what is stored
        first (see :meth:`Collection.put_many`). Returns how many were written."""
        with self.transaction():
            return self._put_items(items)

    def _put_items(self, items: Iterable[tuple[str, str, SortKey, Any]]) -> int:
        """:meth:`put_items` inside a transaction the caller holds (no savepoint of its own:
        one statement is atomic by itself)."""
        rows = [(coll, key, sort_key, _encode_json(value)) for coll, key, sort_key, value in items]
        if rows:
            self._executemany(_PUT_ITEM, rows)
        return len(rows)

    def trim_collections(self, limits: Iterable[tuple[str, int]]) -> int:
        """Keep only the newest ``keep`` items (by sort key, then key) of each ``(collection,
        keep)``, in one transaction and one statement for all; returns how many went."""
        with self.transaction():
            return self._trim_collections(limits)

    def _trim_collections(self, limits: Iterable[tuple[str, int]]) -> int:
        """:meth:`trim_collections` inside a transaction the caller holds."""
        rows = list(limits)
        if any(keep < 0 for _, keep in rows):
            raise ValueError("keep must be >= 0")
        return max(self._executemany(_TRIM, rows).rowcount, 0) if rows else 0

    def collection(self, name: str) -> Collection:
        """The keyed collection ``name`` (created lazily: it exists once it holds an item)."""
        self._db()
        coll = self._collections.get(name)
        if coll is None:
            coll = self._collections[name] = Collection(self, name)
        return coll

    def collection_names(self, prefix: str = "") -> list[str]:
        rows = self._execute(
            "SELECT name FROM collections WHERE substr(name, 1, ?) = ? AND count > 0 ORDER BY name",
            (len(prefix), prefix),
        )
        return [str(r[0]) for r in rows]

    def drop_prefix(self, prefix: str) -> None:
        """Delete every cell and collection whose name starts with ``prefix``, atomically.

        Used when a charm is removed. Cells read their default afterwards; derived cells named
        under the prefix are forgotten.
        """
        if not prefix:
            raise ValueError("drop_prefix needs a non-empty prefix (refusing to drop everything)")
        with self.transaction():
            self._execute("DELETE FROM cells WHERE substr(name, 1, ?) = ?", (len(prefix), prefix))
            colls = [
                str(r[0])
                for r in self._execute(
                    "SELECT name FROM collections WHERE substr(name, 1, ?) = ?",
                    (len(prefix), prefix),
                )
            ]
            for coll in colls:
                # Per collection, so each delete walks the primary-key range of that collection.
                self._execute("DELETE FROM items WHERE coll = ?", (coll,))
            self._execute(
                "DELETE FROM collections WHERE substr(name, 1, ?) = ?", (len(prefix), prefix)
            )
        for name in [n for n in self._cells if n.startswith(prefix)]:
            del self._cells[name]
        for name in [n for n in self._collections if n.startswith(prefix)]:
            del self._collections[name]


_DAMAGED = object()  # a row Collection._decode could not read (see Store.collect_damaged)


class Collection:
    """Keyed JSON items with an optional sort key (usually a timestamp), stored per item.

    Every change is one primary-key write inside the current transaction (or its own
    transaction when none is open). ``len`` reads a counter maintained by triggers.
    """

    def __init__(self, store: Store, name: str) -> None:
        self._store = store
        self.name = name

    def __repr__(self) -> str:
        return f"Collection({self.name!r})"

    def get(self, key: str, default: Any = None) -> Any:
        row = self._store._execute(
            "SELECT value FROM items WHERE coll = ? AND key = ?", (self.name, key)
        ).fetchone()
        return default if row is None else json.loads(row[0])

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        row = self._store._execute(
            "SELECT 1 FROM items WHERE coll = ? AND key = ?", (self.name, key)
        ).fetchone()
        return row is not None

    def __len__(self) -> int:
        row = self._store._execute(
            "SELECT count FROM collections WHERE name = ?", (self.name,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def upsert(self, key: str, value: Any, sort_key: SortKey = None) -> UpsertResult:
        """Insert or replace one item; "unchanged" (and no write) if identical to what's stored."""
        text = _encode_json(value)
        with self._store._one_write():
            return self._upsert(key, text, sort_key)

    def _upsert(self, key: str, text: str, sort_key: SortKey) -> UpsertResult:
        store = self._store
        row = store._execute(
            "SELECT value, sort_key FROM items WHERE coll = ? AND key = ?", (self.name, key)
        ).fetchone()
        if row is None:
            store._execute(
                "INSERT INTO items (coll, key, sort_key, value) VALUES (?, ?, ?, ?)",
                (self.name, key, sort_key, text),
            )
            return "added"
        if row[0] == text and row[1] == sort_key:
            return "unchanged"
        store._execute(
            "UPDATE items SET value = ?, sort_key = ? WHERE coll = ? AND key = ?",
            (text, sort_key, self.name, key),
        )
        return "updated"

    def upsert_many(
        self, items: Iterable[tuple[str, Any] | tuple[str, Any, SortKey]]
    ) -> tuple[int, int]:
        """Upsert ``(key, value)`` or ``(key, value, sort_key)`` tuples in one transaction.

        Returns ``(added, updated)``, counted as if each tuple were :meth:`upsert` in turn (a
        key given twice counts twice; an identical value is "unchanged" and not written).

        At most two SQL statements per :data:`ROWS_PER_STATEMENT` items (one reads which keys
        exist and whether they differ, one multi-row UPSERT writes the new and changed ones),
        not two per item: the loop thread gives up the GIL for every statement, and with
        worker threads busy (a MIME parse) each give-up could cost it a switch interval to get
        the GIL back, so a 50-message batch held the event loop 50-150 ms (issue 17.5).
        """
        added = updated = 0
        with self._store.transaction():
            written: dict[str, tuple[str, SortKey]] = {}  # by this call: compared in Python
            for chunk in _chunks(items, ROWS_PER_STATEMENT):
                rows = [
                    (item[0], _encode_json(item[1]), item[2] if len(item) > 2 else None)
                    for item in chunk
                ]
                ask: dict[str, tuple[str, SortKey]] = {}  # first time seen: compared in SQL
                for key, text, sort_key in rows:
                    if key not in written and key not in ask:
                        ask[key] = (text, sort_key)
                stored = self._stored_same(ask)
                changed: dict[str, tuple[str, SortKey]] = {}
                for key, text, sort_key in rows:
                    if key in written:
                        before = written[key]
                        same = before[0] == text and before[1] == sort_key
                        exists = True
                    else:
                        exists = key in stored
                        same = exists and stored[key]
                    if not exists:
                        added += 1
                    elif not same:
                        updated += 1
                    if not same:
                        changed[key] = (text, sort_key)
                    written[key] = (text, sort_key)
                self._write_rows(changed)
        return added, updated

    def _stored_same(self, rows: Mapping[str, tuple[str, SortKey]]) -> dict[str, bool]:
        """For each key of ``rows`` that is stored: whether the stored value and sort key are
        the ones given. One statement (one row of JSON), whatever the number of keys."""
        if not rows:
            return {}
        values = ",".join(["(?, ?, ?)"] * len(rows))
        params: list[Any] = []
        for key, (text, sort_key) in rows.items():
            params += (key, text, sort_key)
        row = self._store._execute(
            "SELECT json_group_array(json_array(i.key, i.value IS n.column2"
            f" AND i.sort_key IS n.column3)) FROM (VALUES {values}) AS n"
            " JOIN items AS i ON i.coll = ? AND i.key = n.column1",
            (*params, self.name),
        ).fetchone()
        return {str(key): bool(same) for key, same in json.loads(row[0])}

    def _write_rows(self, rows: Mapping[str, tuple[str, SortKey]]) -> None:
        """Insert or update ``{key: (json text, sort key)}`` in one statement (an UPSERT that
        leaves a row holding the same value and sort key untouched)."""
        if not rows:
            return
        params: list[Any] = []
        for key, (text, sort_key) in rows.items():
            params += (self.name, key, sort_key, text)
        self._store._execute(
            "INSERT INTO items (coll, key, sort_key, value) VALUES "
            + ",".join(["(?, ?, ?, ?)"] * len(rows))
            + " ON CONFLICT (coll, key) DO UPDATE SET sort_key = excluded.sort_key,"
            " value = excluded.value"
            " WHERE value IS NOT excluded.value OR sort_key IS NOT excluded.sort_key",
            params,
        )

    def put_many(
        self, items: Iterable[tuple[str, Any, SortKey]], *, keep: int | None = None
    ) -> int:
        """Write ``(key, value, sort_key)`` items in one transaction, one statement each (an
        UPSERT), without reading what is stored first as :meth:`upsert_many` does to report
        "unchanged". For writers whose values always changed (the scheduler's statuses and run
        records, many per loop iteration). ``keep``: then keep only the newest ``keep`` items,
        as :meth:`trim`. Returns how many were written.
        """
        store = self._store
        name = self.name
        with store.transaction():
            written = store._put_items(
                (name, key, sort_key, value) for key, value, sort_key in items
            )
            if keep is not None:
                self._trim(keep)
        return written

    def delete(self, key: str) -> bool:
        with self._store._one_write():
            cur = self._store._execute(
                "DELETE FROM items WHERE coll = ? AND key = ?", (self.name, key)
            )
            return cur.rowcount > 0

    def delete_many(self, keys: Iterable[str]) -> int:
        """Delete the given keys in one transaction; returns how many were stored.

        One statement per :data:`ROWS_PER_STATEMENT` keys (see :meth:`upsert_many` for why).
        """
        deleted = 0
        with self._store.transaction():
            for chunk in _chunks(keys, ROWS_PER_STATEMENT):
                unique = list(dict.fromkeys(chunk))
                cur = self._store._execute(
                    "DELETE FROM items WHERE coll = ? AND key IN ("
                    + ",".join(["?"] * len(unique))
                    + ")",
                    (self.name, *unique),
                )
                deleted += max(cur.rowcount, 0)
        return deleted

    def keys(self, prefix: str = "") -> list[str]:
        """All keys (or those starting with ``prefix``), in key order.

        A prefix is a range of the primary key (``prefix <= key < successor``), so listing one
        calendar's keys in a collection of 100k costs what that calendar holds.
        """
        where, params = _key_range(prefix)
        rows = self._store._execute(
            f"SELECT key FROM items WHERE coll = ?{where} ORDER BY key", (self.name, *params)
        )
        return [str(r[0]) for r in rows]

    def iter_keys(self, chunk: int = 1000) -> Iterator[str]:
        """Every key, in key order, read ``chunk`` at a time (keyset pagination on the key
        index, no cursor open between chunks: the caller may write, and await, while walking).
        A key deleted or added behind the position is not seen; one added ahead of it is."""
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        last: str | None = None
        while True:
            if last is None:
                rows = self._store._execute(
                    "SELECT key FROM items WHERE coll = ? ORDER BY key LIMIT ?", (self.name, chunk)
                ).fetchall()
            else:
                rows = self._store._execute(
                    "SELECT key FROM items WHERE coll = ? AND key > ? ORDER BY key LIMIT ?",
                    (self.name, last, chunk),
                ).fetchall()
            for (key,) in rows:
                yield str(key)
            if len(rows) < chunk:
                return
            last = str(rows[-1][0])

    def items(
        self,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
        *,
        min_sort_key: SortKey = None,
        max_sort_key: SortKey = None,
        key_prefix: str = "",
    ) -> list[tuple[str, Any]]:
        """``(key, value)`` pairs ordered by sort key, then key (reversed if newest_first).

        ``min_sort_key`` (inclusive) and ``max_sort_key`` (exclusive) select the half-open
        range ``[min, max)`` of sort keys, read from the ``(coll, sort_key, key)`` index, so a
        range costs what it holds, not what the collection holds. Either bound may be left out.
        Items without a sort key (None) are outside every range. Sort keys compare the way
        SQLite orders them: None first, then numbers, then strings.

        ``key_prefix`` keeps the keys starting with it (a primary-key range, then sorted).

        ``offset`` costs O(offset): to walk a large collection use :meth:`iter_items`.
        """
        order = "DESC" if newest_first else "ASC"
        where, params = _sort_range(min_sort_key, max_sort_key)
        prefix_where, prefix_params = _key_range(key_prefix)
        rows = self._store._execute(
            f"SELECT key, value FROM items WHERE coll = ?{where}{prefix_where}"
            f" ORDER BY sort_key {order}, key {order} LIMIT ? OFFSET ?",
            (self.name, *params, *prefix_params, -1 if limit is None else limit, offset),
        )
        return [(str(k), value) for k, v in rows if (value := self._decode(k, v)) is not _DAMAGED]

    def _decode(self, key: Any, text: Any) -> Any:
        try:
            return json.loads(text)
        except (ValueError, TypeError, RecursionError):
            sink = self._store._damaged_sink
            if sink is None:
                raise
            sink.append((self.name, str(key)))
            return _DAMAGED

    def items_checked(
        self, limit: int | None = None, newest_first: bool = False
    ) -> tuple[list[tuple[str, Any]], dict[str, str]]:
        """Like :meth:`items`, but a value that is not valid JSON (a damaged row) does not fail
        the read: it is left out and reported as ``{key: reason}``, so one bad row costs only
        itself (the charm list, the statuses)."""
        order = "DESC" if newest_first else "ASC"
        rows = self._store._execute(
            f"SELECT key, value FROM items WHERE coll = ? ORDER BY sort_key {order}, key {order}"
            " LIMIT ?",
            (self.name, -1 if limit is None else limit),
        )
        good: list[tuple[str, Any]] = []
        bad: dict[str, str] = {}
        for key, value in rows:
            try:
                good.append((str(key), json.loads(value)))
            except (ValueError, TypeError, RecursionError) as exc:
                bad[str(key)] = f"not valid JSON: {str(exc)[:80]}"
        return good, bad

    def iter_items(
        self,
        chunk: int = 500,
        *,
        newest_first: bool = False,
        min_sort_key: SortKey = None,
        max_sort_key: SortKey = None,
    ) -> Iterator[tuple[str, Any]]:
        """Every item (or a sort-key range, as in :meth:`items`), read ``chunk`` at a time.

        Keyset pagination: each chunk starts after the last ``(sort_key, key)`` seen, an index
        seek, so walking n items costs O(n) in all (OFFSET paging costs O(n^2 / chunk)). No
        cursor stays open between chunks, so the caller may write to the store while
        iterating: an item changed behind the position is not seen again, one changed ahead of
        it is seen with its new value and position. Items without a sort key come first (last
        when ``newest_first``), as in :meth:`items`.
        """
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        desc = newest_first
        order = "DESC" if desc else "ASC"
        where, params = _sort_range(min_sort_key, max_sort_key)
        bounded = min_sort_key is not None or max_sort_key is not None
        # Row-value comparisons are NULL for a NULL sort key, so items without one are read
        # in a phase of their own, by key: before the others ascending, after them descending.
        phases = ("values",) if bounded else ("values", "nulls") if desc else ("nulls", "values")
        for phase in phases:
            last: tuple[Any, str] | None = None
            while True:
                if phase == "nulls":
                    sql = (
                        "SELECT sort_key, key, value FROM items WHERE coll = ? AND sort_key IS NULL"
                    )
                    args: list[Any] = [self.name]
                    if last is not None:
                        sql += f" AND key {'<' if desc else '>'} ?"
                        args.append(last[1])
                    sql += f" ORDER BY key {order} LIMIT ?"
                else:
                    sql = f"SELECT sort_key, key, value FROM items WHERE coll = ?{where}"
                    args = [self.name, *params]
                    if not bounded:
                        sql += " AND sort_key IS NOT NULL"
                    if last is not None:
                        sql += f" AND (sort_key, key) {'<' if desc else '>'} (?, ?)"
                        args.extend(last)
                    sql += f" ORDER BY sort_key {order}, key {order} LIMIT ?"
                rows = self._store._execute(sql, (*args, chunk)).fetchall()
                for _sort, key, value in rows:
                    decoded = self._decode(key, value)
                    if decoded is not _DAMAGED:
                        yield str(key), decoded
                if len(rows) < chunk:
                    break
                last = (rows[-1][0], str(rows[-1][1]))

    def clear(self) -> int:
        """Delete every item; returns how many there were."""
        with self._store.transaction():
            cur = self._store._execute("DELETE FROM items WHERE coll = ?", (self.name,))
            return max(cur.rowcount, 0)

    def trim(self, keep: int) -> int:
        """Delete all but the newest ``keep`` items by sort key; returns how many went."""
        with self._store.transaction():
            return self._trim(keep)

    def _trim(self, keep: int) -> int:
        if keep < 0:
            raise ValueError("keep must be >= 0")
        # How many go, from the trigger-kept count (one row read); then the oldest that many, read
        # from the start of the sort index. "All but the newest keep" (ORDER BY sort_key DESC,
        # key DESC ... OFFSET keep) walked every kept row on every call: the scheduler trims a
        # charm's history after each run, a feed after each sync (issue 17.6). (Store's batch
        # trim, _TRIM, does both in one statement for many collections.)
        excess = len(self) - keep
        if excess <= 0:
            return 0
        cur = self._store._execute(
            "DELETE FROM items WHERE coll = ? AND key IN ("
            " SELECT key FROM items WHERE coll = ? ORDER BY sort_key, key LIMIT ?)",
            (self.name, self.name, excess),
        )
        return max(cur.rowcount, 0)


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``, in order."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _sort_range(low: SortKey, high: SortKey) -> tuple[str, tuple[Any, ...]]:
    """SQL (to append after ``coll = ?``) and parameters for ``low <= sort_key < high``."""
    where = ""
    params: tuple[Any, ...] = ()
    if low is not None:
        where, params = " AND sort_key >= ?", (low,)
    if high is not None:
        where, params = where + " AND sort_key < ?", (*params, high)
    return where, params


def _key_range(prefix: str) -> tuple[str, tuple[Any, ...]]:
    """SQL and parameters for ``key`` starting with ``prefix``, as a primary-key range.

    Written as a range rather than ``LIKE``/``GLOB``, which need escaping and would only use
    the index under conditions (case sensitivity pragmas) the caller cannot see.
    """
    if not prefix:
        return "", ()
    end = _successor(prefix)
    if end is None:
        return " AND key >= ?", (prefix,)
    return " AND key >= ? AND key < ?", (prefix, end)


def _successor(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (None: there is none).

    SQLite compares text as UTF-8 bytes, which orders like code points.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code == 0xD800:  # surrogates cannot be stored: the next character is U+E000
            code = 0xE000
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None


# --- open errors ------------------------------------------------------------------------------


def _open_error(path: Path, exc: sqlite3.Error) -> StoreError:
    code = _primary(exc)
    if code in (_SQLITE_CANTOPEN, _SQLITE_PERM, _SQLITE_READONLY):
        return StoreError(
            f"cannot open the database {path}: permission denied or not a regular file; make "
            f"the file and its folder {path.parent} readable and writable by your user"
        )
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return StoreError(
            f"the database {path} is locked by another program (is a second trayapp "
            f"running?); quit the other one and try again"
        )
    if code == _SQLITE_FULL or (code == _SQLITE_IOERR and _disk_full(path)):
        return StoreFullError(
            f"the disk holding {path} is full; nothing was changed; free some disk space and "
            f"start trayapp again"
        )
    return StoreError(f"cannot open the database {path}: {exc}")


def _disk_full(path: Path) -> bool:
    """SQLite reports a full disk while opening (its -shm, its WAL) as a plain I/O error:
    ask the file system. Less than 64 KiB free for us is full for every practical purpose."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _empty_file(path: Path) -> bool:
    """A 0-byte database file with no WAL data beside it (SQLite would call it a new one)."""
    try:
        if path.stat().st_size != 0:
            return False
        wal = path.with_name(path.name + "-wal")
        return not (wal.exists() and wal.stat().st_size > 0)
    except OSError:
        return False


def _has_sqlite_header(path: Path) -> bool:
    """False for an existing file that cannot be an SQLite database (missing or empty is fine)."""
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return True
    except PermissionError:
        raise StoreError(
            f"cannot open the database {path}: permission denied; make the file and its "
            f"folder {path.parent} readable and writable by your user"
        ) from None
    except IsADirectoryError:
        raise StoreError(
            f"cannot open the database {path}: it is a folder, not a file; move it away"
        ) from None
    return head in (b"", _SQLITE_MAGIC)


def _move_aside(path: Path, reason: str) -> StoreCorruptError:
    """Rename the damaged database (and its WAL/SHM) out of the way; never delete it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        path.rename(target)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.rename(target.with_name(target.name + suffix))
    except OSError as exc:
        return StoreCorruptError(
            f"the database {path} is damaged ({reason}) and could not be moved aside "
            f"({exc.strerror}); move it away yourself (keep it: it may be recoverable with "
            f"`sqlite3 {path} .recover`) and start trayapp again"
        )
    log.error("damaged database %s moved to %s: %s", path, target, reason)
    return StoreCorruptError(
        f"the database {path} is damaged ({reason}); it was moved, unchanged, to {target}. "
        f"Start trayapp again to begin with a fresh database (your charms and accounts must "
        f"be added again), or try to recover data with `sqlite3 {target} .recover`"
    )
