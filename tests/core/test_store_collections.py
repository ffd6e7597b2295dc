"""Collections: the per-item API, ordering, trimming, and cost at 100k items."""

from __future__ import annotations

import contextlib
import random
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from trayapp.core import store as store_module
from trayapp.core.store import Collection, Store


@pytest.fixture
def coll(store: Store) -> Collection:
    return store.collection("charm:a:items")


def test_upsert_reports_added_updated_unchanged(coll: Collection) -> None:
    assert coll.upsert("m1", {"subject": "hi", "labels": ["a"]}, sort_key=10) == "added"
    # Same data (dict key order does not matter): no write.
    assert coll.upsert("m1", {"labels": ["a"], "subject": "hi"}, sort_key=10) == "unchanged"
    assert coll.upsert("m1", {"subject": "hi", "labels": ["b"]}, sort_key=10) == "updated"
    assert coll.upsert("m1", {"subject": "hi", "labels": ["b"]}, sort_key=11) == "updated"
    assert coll.get("m1") == {"subject": "hi", "labels": ["b"]}
    assert len(coll) == 1 and "m1" in coll and "m2" not in coll and 3 not in coll
    assert coll.get("missing") is None and coll.get("missing", 0) == 0


def test_unchanged_upsert_does_not_write(store: Store, coll: Collection) -> None:
    coll.upsert("m1", {"v": 1})
    changes = store._db().total_changes
    assert coll.upsert("m1", {"v": 1}) == "unchanged"
    assert store._db().total_changes == changes
    assert coll.upsert("m1", {"v": 2}) == "updated"
    assert store._db().total_changes > changes


def test_upsert_many_and_delete_many(coll: Collection) -> None:
    assert coll.upsert_many([("a", 1, 1), ("b", 2, 2), ("c", 3)]) == (3, 0)
    assert coll.upsert_many([("a", 1, 1), ("b", 20, 2), ("d", 4, 4)]) == (1, 1)
    assert len(coll) == 4
    assert coll.delete("a") is True and coll.delete("a") is False
    assert coll.delete_many(["b", "zz", "c"]) == 2
    assert coll.keys() == ["d"] and len(coll) == 1


def test_put_many_writes_without_reading_keeps_counts_and_trims(
    store: Store, coll: Collection
) -> None:
    statements: list[str] = []
    store._db().set_trace_callback(statements.append)
    try:
        assert coll.put_many([("a", {"v": 1}, 1), ("b", {"v": 2}, 2)]) == 2
    finally:
        store._db().set_trace_callback(None)
    assert not any(s.startswith("SELECT") for s in statements), statements  # no read first
    assert coll.put_many([("a", {"v": 10}, 5), ("c", {"v": 3}, 3)]) == 2  # a: overwritten
    assert len(coll) == 3  # the count triggers saw one insert per new key, none for "a"
    assert coll.get("a") == {"v": 10}
    assert [k for k, _ in coll.items()] == ["b", "c", "a"]  # a's new sort key
    assert coll.put_many([("d", 4, 4)], keep=2) == 1
    assert [k for k, _ in coll.items()] == ["d", "a"] and len(coll) == 2
    with pytest.raises(TypeError, match="JSON"), store.transaction():
        coll.put_many([("e", 5, 5), ("f", object(), 6)])
    assert len(coll) == 2 and "e" not in coll  # all or nothing


def test_values_must_be_json(coll: Collection) -> None:
    with pytest.raises(TypeError, match="JSON"):
        coll.upsert("k", object())
    assert len(coll) == 0


def test_items_are_ordered_by_sort_key_then_key(coll: Collection) -> None:
    coll.upsert_many([("c", "C", 2), ("a", "A", 2), ("b", "B", 1), ("z", "Z", 3)])
    assert [k for k, _ in coll.items()] == ["b", "a", "c", "z"]
    assert [k for k, _ in coll.items(newest_first=True)] == ["z", "c", "a", "b"]
    assert coll.items(limit=2, newest_first=True) == [("z", "Z"), ("c", "C")]
    assert coll.items(limit=2, offset=1) == [("a", "A"), ("c", "C")]
    assert coll.keys() == ["a", "b", "c", "z"]


def test_trim_keeps_the_newest(coll: Collection) -> None:
    coll.upsert_many((f"k{i:03}", i, i) for i in range(100))
    assert coll.trim(keep=10) == 90
    assert len(coll) == 10
    assert [k for k, _ in coll.items()] == [f"k{i:03}" for i in range(90, 100)]
    assert coll.trim(keep=10) == 0
    assert coll.clear() == 10 and len(coll) == 0 and coll.items() == []


def test_trim_drops_what_all_but_the_newest_would_and_reads_only_those(
    store: Store, coll: Collection
) -> None:
    """Trim deletes the oldest (count - keep) from the start of the sort index; what stays is
    exactly "the newest keep" by (sort_key, key) descending, for mixed and missing sort keys."""
    rng = random.Random(5)
    kinds: list[Callable[[int], Any]] = [lambda i: None, lambda i: i, lambda i: i / 3, str]
    coll.upsert_many((f"k{i:03}", i, rng.choice(kinds)(rng.randrange(40))) for i in range(120))
    for keep in (100, 57, 57, 10, 1, 0):
        newest = [
            str(r[0])
            for r in store._db().execute(
                "SELECT key FROM items WHERE coll = ? ORDER BY sort_key DESC, key DESC LIMIT ?",
                (coll.name, keep),
            )
        ]
        before = len(coll)
        statements: list[str] = []
        store._db().set_trace_callback(statements.append)
        try:
            removed = coll.trim(keep)
        finally:
            store._db().set_trace_callback(None)
        assert removed == max(0, before - keep)
        assert sorted(coll.keys()) == sorted(newest) and len(coll) == len(newest)
        if removed == 0:
            assert not any(s.startswith("DELETE") for s in statements)  # a count read only


def test_collections_are_separate(store: Store) -> None:
    a, b = store.collection("charm:a:items"), store.collection("charm:b:items")
    assert store.collection("charm:a:items") is a
    a.upsert("k", 1)
    b.upsert("k", 2)
    a.clear()
    assert len(a) == 0 and b.get("k") == 2 and len(b) == 1
    assert store.collection_names("charm:") == ["charm:b:items"]


def test_collection_changes_join_the_current_transaction(store: Store, coll: Collection) -> None:
    def committed() -> list[str]:
        """What another connection (another process) sees: only committed items."""
        with contextlib.closing(sqlite3.connect(store.path)) as other:
            rows = other.execute("SELECT key FROM items WHERE coll = ? ORDER BY key", (coll.name,))
            return [str(r[0]) for r in rows]

    with pytest.raises(RuntimeError), store.transaction():
        coll.upsert("a", 1)
        coll.delete("a")
        coll.upsert("b", 1)
        assert len(coll) == 1
        raise RuntimeError("abort")
    assert len(coll) == 0 and committed() == []
    with store.transaction():
        coll.upsert("a", 1)
        coll.upsert("b", 1)
        assert committed() == []  # not yet: both commit with the transaction
    assert committed() == ["a", "b"]


# --- scale -------------------------------------------------------------------------------------

N = 100_000


def _plan(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> str:
    return " | ".join(str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


def _vm_steps(conn: sqlite3.Connection, fn: Callable[[], object]) -> int:
    """SQLite virtual-machine instructions executed by ``fn``: a cost that does not jitter."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 1)
    try:
        fn()
    finally:
        conn.set_progress_handler(None, 1)
    return steps


def test_item_operations_stay_cheap_at_100k(store: Store) -> None:
    small = store.collection("charm:small:items")
    big = store.collection("charm:big:items")
    small.upsert_many((f"k{i:06}", {"i": i}, i) for i in range(100))
    big.upsert_many((f"k{i:06}", {"i": i}, i) for i in range(N))
    assert len(big) == N
    conn = store._db()

    def ops(c: Collection) -> Callable[[], object]:
        def run() -> None:
            assert c.upsert("k000050", {"i": -1}, 50) == "updated"
            assert c.upsert("new", {"i": 0}, 10**9) == "added"
            assert c.get("k000050") == {"i": -1}
            assert "new" in c
            len(c)
            assert c.delete("new")

        return run

    small_steps = _vm_steps(conn, ops(small))
    big_steps = _vm_steps(conn, ops(big))
    # O(log n): 1000x more items costs a few more b-tree levels, not 1000x the work.
    assert big_steps < small_steps * 2, (small_steps, big_steps)
    assert len(big) == N

    # And the plans say why: searches of the (coll, key) unique index, never a scan of items.
    for sql in (
        "SELECT value, sort_key FROM items WHERE coll = ? AND key = ?",
        "UPDATE items SET value = ?, sort_key = ? WHERE coll = ? AND key = ?",
        "DELETE FROM items WHERE coll = ? AND key = ?",
    ):
        plan = _plan(conn, sql, ("x",) * sql.count("?"))
        assert "USING INDEX items_by_key" in plan and "SCAN" not in plan, plan
    plan = _plan(conn, "SELECT count FROM collections WHERE name = ?", ("x",))
    assert "USING PRIMARY KEY" in plan and "SCAN" not in plan, plan
    # Newest-first paging walks the sort index, without a temporary sort of the collection.
    plan = _plan(
        conn,
        "SELECT key, value FROM items WHERE coll = ? ORDER BY sort_key DESC, key DESC"
        " LIMIT ? OFFSET ?",
        ("x", 10, 0),
    )
    assert "items_by_sort" in plan and "TEMP B-TREE" not in plan, plan

    page_steps = _vm_steps(conn, lambda: big.items(limit=20, newest_first=True))
    assert page_steps < 2000, page_steps  # a page costs its 20 rows, not the 100k
    assert big.trim(keep=N - 10) == 10 and len(big) == N - 10


# --- ranges, prefixes and keyset iteration ----------------------------------------------------


def test_sort_key_ranges_are_half_open_and_leave_out_missing_sort_keys(coll: Collection) -> None:
    coll.upsert_many(
        [
            ("n1", "N1"),
            ("a", "A", 1),
            ("b", "B", 2),
            ("b2", "B2", 2),
            ("c", "C", 3.5),
            ("t", "T", "text"),
            ("n0", "N0"),
        ]
    )

    def keys(**kw: Any) -> list[str]:
        return [k for k, _ in coll.items(**kw)]

    assert keys(min_sort_key=2, max_sort_key=3.5) == ["b", "b2"]  # 2 <= sort key < 3.5
    assert keys(min_sort_key=2) == ["b", "b2", "c", "t"]  # numbers, then strings
    assert keys(max_sort_key=2) == ["a"]  # None is in no range
    assert keys(min_sort_key=0, max_sort_key=10, newest_first=True) == ["c", "b2", "b", "a"]
    assert keys(min_sort_key=1, max_sort_key=1) == []
    assert keys(min_sort_key=1, limit=2, offset=1) == ["b", "b2"]
    assert keys(min_sort_key="s") == ["t"]
    assert keys() == ["n0", "n1", "a", "b", "b2", "c", "t"]


def test_key_prefix_is_a_literal_prefix(coll: Collection) -> None:
    keys = ["a/1", "a/2", "a%/1", "a_/1", "a*/1", "ab/1", "a", "b/1", "\U0010ffff\U0010ffff/x"]
    keys += ["\ud7ff/1", "\ue000/1"]
    coll.upsert_many((k, k, -i) for i, k in enumerate(keys))
    assert coll.keys("a/") == ["a/1", "a/2"]
    assert (
        coll.keys("a%") == ["a%/1"] and coll.keys("a_") == ["a_/1"] and coll.keys("a*") == ["a*/1"]
    )
    assert coll.keys("a") == sorted(k for k in keys if k.startswith("a"))
    assert coll.keys("\U0010ffff") == ["\U0010ffff\U0010ffff/x"]  # no successor: open range
    assert coll.keys("\ud7ff") == ["\ud7ff/1"]  # the successor skips the surrogates
    assert coll.keys("zz") == [] and coll.keys("") == sorted(keys)
    # items() with a prefix keeps sort-key order (and combines with a range).
    assert [k for k, _ in coll.items(key_prefix="a/")] == ["a/2", "a/1"]
    assert coll.items(key_prefix="a/", min_sort_key=-0.5) == [("a/1", "a/1")]


@pytest.mark.parametrize("chunk", [1, 2, 3, 500])
@pytest.mark.parametrize("newest_first", [False, True])
def test_iter_items_walks_what_items_returns(
    coll: Collection, chunk: int, newest_first: bool
) -> None:
    # Ties on the sort key, missing sort keys, numbers of both kinds and strings.
    coll.upsert_many(
        [(f"n{i}", i) for i in range(4)]
        + [(f"k{i}", i, i // 3) for i in range(10)]
        + [("f", "f", 1.5), ("s1", "s1", "b"), ("s0", "s0", "a")]
    )
    expected = coll.items(newest_first=newest_first)
    assert list(coll.iter_items(chunk, newest_first=newest_first)) == expected
    ranged = coll.items(min_sort_key=1, max_sort_key="b", newest_first=newest_first)
    assert (
        list(coll.iter_items(chunk, min_sort_key=1, max_sort_key="b", newest_first=newest_first))
        == ranged
    )
    assert len(ranged) == 9


def test_iter_items_tolerates_writes_between_chunks(coll: Collection) -> None:
    coll.upsert_many((f"k{i:02}", i, i) for i in range(10))
    seen = []
    for key, _value in coll.iter_items(chunk=2):
        seen.append(key)
        if key == "k03":
            coll.delete("k02")  # behind: already seen, nothing skipped
            coll.delete("k05")  # ahead: not seen
            coll.upsert("k07", 70, 70)  # ahead, moved further: seen once, at its new place
            coll.upsert("k08", 8, -1)  # ahead, moved behind: not seen again
    assert seen == ["k00", "k01", "k02", "k03", "k04", "k06", "k09", "k07"]
    with pytest.raises(ValueError, match="chunk"):
        next(coll.iter_items(chunk=0))


def test_ranges_prefixes_and_keyset_pages_use_the_indexes_at_100k(store: Store) -> None:
    big = store.collection("charm:big:items")
    big.upsert_many((f"cal{i % 10}/{i:06}", {"i": i}, i) for i in range(N))
    big.upsert_many((f"none/{i}", {"i": i}) for i in range(1000))
    conn = store._db()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        assert len(big.items(min_sort_key=50_000, max_sort_key=50_020)) == 20
        assert len(big.items(max_sort_key=20, newest_first=True)) == 20
        assert len(big.keys("cal3/")) == N // 10
        assert len(list(big.iter_items(chunk=5000))) == N + 1000
        assert len(list(big.iter_items(chunk=5000, newest_first=True))) == N + 1000
    finally:
        conn.set_trace_callback(None)
    selects = {s for s in statements if s.startswith("SELECT")}
    assert len(selects) > 40  # every chunk's query was seen
    for sql in selects:
        plan = _plan(conn, sql, ())
        assert "SEARCH" in plan and "SCAN" not in plan and "TEMP B-TREE" not in plan, (sql, plan)

    # Cost follows the rows read, not the collection or the position in it.
    near = _vm_steps(conn, lambda: big.items(min_sort_key=0, max_sort_key=20))
    far = _vm_steps(conn, lambda: big.items(min_sort_key=N - 20, max_sort_key=N))
    assert near < 2000 and far < 2000, (near, far)

    def steps_of_chunk(n: int) -> int:
        it = big.iter_items(chunk=500)
        for _ in range(n * 500):
            next(it)
        return _vm_steps(conn, lambda: [next(it) for _ in range(500)])

    # Chunks 0-1 are the 1,000 items without a sort key and chunk 2 the first of the others
    # (no keyset bound yet): compare two chunks that both continue after a (sort_key, key).
    first, deep = steps_of_chunk(3), steps_of_chunk(190)
    assert deep < first * 1.5, (first, deep)  # OFFSET paging would cost ~190x more here


def _statements(store: Store, work: Callable[[], Any]) -> tuple[Any, list[str]]:
    """``work()``'s result and the SQL statements it ran on the store's connection (SQLite
    traces a statement again for each trigger it fires: those repeats are left out)."""
    statements: list[str] = []
    store._db().set_trace_callback(statements.append)
    try:
        result = work()
    finally:
        store._db().set_trace_callback(None)
    return result, [s for i, s in enumerate(statements) if i == 0 or statements[i - 1] != s]


def test_upsert_many_counts_as_one_upsert_after_another(coll: Collection) -> None:
    """A key given twice counts twice; identical values are unchanged, in the same call too;
    sort keys compare as numbers (1 == 1.0), as upsert does."""
    assert coll.upsert_many([("a", {"x": 1}, 1), ("b", 2), ("a", {"x": 1}, 1), ("a", 9, 1)]) == (
        2,
        1,
    )
    assert coll.get("a") == 9
    assert coll.upsert_many([("a", 9, 1.0), ("b", 2), ("c", 3, 2.5)]) == (1, 0)
    assert coll.upsert_many([("a", 9, 2), ("a", 9, 1), ("c", 3, 2.5), ("b", 3)]) == (0, 3)
    assert sorted(coll.items()) == [("a", 9), ("b", 3), ("c", 3)] and len(coll) == 3
    # The same, item by item, in a collection of its own: the same answers and contents.
    other = coll._store.collection("charm:b:items")
    results = [
        other.upsert(k, v, sk)
        for batch in (
            [("a", {"x": 1}, 1), ("b", 2, None), ("a", {"x": 1}, 1), ("a", 9, 1)],
            [("a", 9, 1.0), ("b", 2, None), ("c", 3, 2.5)],
            [("a", 9, 2), ("a", 9, 1), ("c", 3, 2.5), ("b", 3, None)],
        )
        for k, v, sk in batch
    ]
    assert results.count("added") == 3 and results.count("updated") == 4
    assert sorted(other.items()) == sorted(coll.items())


def test_upsert_many_and_delete_many_take_a_statement_per_hundred_items_not_per_item(
    store: Store, coll: Collection
) -> None:
    """The loop thread gives up the GIL for every SQLite statement (issue 17.5): a batch costs
    two statements per ROWS_PER_STATEMENT items (read which exist, write), not two per item."""
    assert store_module.ROWS_PER_STATEMENT == 100
    rows = [(f"m{i:04}", {"n": i, "text": "x" * 50}, i) for i in range(250)]
    result, statements = _statements(store, lambda: coll.upsert_many(rows))
    assert result == (250, 0) and len(coll) == 250
    selects = [s for s in statements if s.startswith("SELECT")]
    inserts = [s for s in statements if s.startswith("INSERT INTO items")]
    assert len(selects) == 3 and len(inserts) == 3, statements  # 100 + 100 + 50

    # Again with 10 changed: reads as before, each chunk writes just its changed ones.
    again = [
        (k, {**v, "n": v["n"] + 1000} if i % 25 == 0 else v, sk)
        for i, (k, v, sk) in enumerate(rows)
    ]
    result, statements = _statements(store, lambda: coll.upsert_many(again))
    assert result == (0, 10)
    inserts = [s for s in statements if s.startswith("INSERT INTO items")]
    assert [s.count("('charm:a:items', 'm") for s in inserts] == [4, 4, 2]
    assert coll.get("m0025") == {"n": 1025, "text": "x" * 50}

    # Nothing changed: no write at all.
    changes = store._db().total_changes
    result, statements = _statements(store, lambda: coll.upsert_many(again))
    assert result == (0, 0) and store._db().total_changes == changes
    assert not any(s.startswith("INSERT") for s in statements)

    keys = [k for k, _v, _sk in rows[:230]] + ["missing", "m0001"]
    result, statements = _statements(store, lambda: coll.delete_many(keys))
    assert result == 230 and len(coll) == 20
    assert len([s for s in statements if s.startswith("DELETE")]) == 3


def test_iter_keys_walks_every_key_in_order_in_chunks(store: Store, coll: Collection) -> None:
    keys = [f"k{i:04}" for i in range(1, 26)]
    coll.upsert_many((k, 1) for k in reversed(keys))
    store.collection("charm:a:itemsX").upsert("k0000", 1)  # another collection: not seen
    walked, statements = _statements(store, lambda: list(coll.iter_keys(chunk=10)))
    assert walked == keys
    assert len(statements) == 3  # 10 + 10 + 5
    # Deleting behind the position while walking (the Gmail prune does) is fine.
    seen = []
    for key in coll.iter_keys(chunk=4):
        seen.append(key)
        coll.delete(key)
    assert seen == keys and len(coll) == 0
    with pytest.raises(ValueError):
        next(coll.iter_keys(chunk=0))
