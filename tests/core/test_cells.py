"""Cells: typed persistence, the registry, derived views and subscriptions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from trayapp.core.cells import Cell, DerivedCell
from trayapp.core.errors import NotFoundError, ReadOnlyCellError, StoreError
from trayapp.core.store import Store


class Token(BaseModel):
    access: str
    expires_at: datetime
    scopes: list[str] = []


def test_typed_values_round_trip_across_reopen(db: Path) -> None:
    when = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
    token = Token(access="a-token", expires_at=when, scopes=["x"])
    with Store.open(db) as s:
        s.cell("charm:a:cursor", int | None, None).set(42)
        s.cell("charm:a:when", datetime, when).set(when)
        s.cell("account:g:auth", Token | None, None).set(token)
        s.cell("charm:a:list", list[str], []).set(["b", "a"])
        s.cell("charm:a:map", dict[str, int], {}).set({"z": 1})
    with Store.open(db) as s:
        assert s.cell("charm:a:cursor", int | None, None).get() == 42
        got_when = s.cell("charm:a:when", datetime, when).get()
        assert got_when == when and got_when.tzinfo is not None
        got_token = s.cell("account:g:auth", Token | None, None).get()
        assert isinstance(got_token, Token) and got_token == token
        assert s.cell("charm:a:list", list[str], []).get() == ["b", "a"]
        assert s.cell("charm:a:map", dict[str, int], {}).get() == {"z": 1}


def test_default_is_returned_but_not_stored(store: Store) -> None:
    cell = store.cell("charm:a:cursor", int | None, None)
    assert cell.get() is None
    with pytest.raises(NotFoundError):
        store.lookup("charm:b:cursor")
    assert store.cell_names("charm:") == ["charm:a:cursor"]  # declared, though never stored


def test_wrong_type_is_refused_at_the_write_without_showing_the_value(store: Store) -> None:
    cell = store.cell("account:g:auth", int, 0)
    with pytest.raises(TypeError, match="account:g:auth") as err:
        cell.set("secret-token-value")  # type: ignore[arg-type]
    assert "secret-token-value" not in str(err.value)
    assert cell.get() == 0


def test_update_is_read_modify_write(store: Store) -> None:
    cell = store.cell("app:counter", int, 0)
    assert cell.update(lambda v: v + 1) == 1
    assert cell.update(lambda v: v + 1) == 2
    assert cell.get() == 2


def test_registry_returns_one_object_per_name(store: Store) -> None:
    a = store.cell("app:x", int, 0)
    assert store.cell("app:x", int, 0) is a
    assert store.lookup("app:x") is a
    with pytest.raises(TypeError, match="app:x"):
        store.cell("app:x", str, "")
    assert store.cell("app:x", Any) is a and a.type is int  # Any: "whatever it is"


def test_writable_and_derived_names_cannot_collide(store: Store) -> None:
    a = store.cell("app:a", int, 1)
    store.derived("app:view", [a], lambda v: v * 2)
    with pytest.raises(StoreError, match="app:view"):
        store.cell("app:view", int, 0)
    with pytest.raises(StoreError, match="app:a"):
        store.derived("app:a", [a], lambda v: v)
    with pytest.raises(StoreError, match="app:view"):
        store.derived("app:view", [a], lambda v: v)


def test_stored_but_undeclared_cell_is_discoverable_after_restart(db: Path) -> None:
    with Store.open(db) as s:
        s.cell("account:g:auth", Token, None).set(
            Token(access="t", expires_at=datetime(2026, 1, 1, tzinfo=UTC))
        )
    with Store.open(db) as s:
        found = s.lookup("account:g:auth")
        assert isinstance(found, Cell) and s.is_writable("account:g:auth")
        # Undeclared: plain JSON until code declares the real type.
        raw = found.get()
        assert raw["access"] == "t" and isinstance(raw["expires_at"], str)
        typed = s.cell("account:g:auth", Token, None)
        assert typed is found  # same object: whoever looked it up first sees the real type
        assert isinstance(typed.get(), Token) and isinstance(found.get(), Token)
        typed.set(Token(access="u", expires_at=datetime(2027, 1, 1, tzinfo=UTC)))
        assert found.get().access == "u"


def test_derived_cell_recomputes_and_refuses_writes(store: Store) -> None:
    a = store.cell("charm:c:a", int, 1)
    b = store.cell("charm:c:b", int, 10)
    total = store.derived("charm:c:total", [a, b], lambda x, y: x + y)
    assert total.get() == 11
    a.set(5)
    assert total.get() == 15
    assert not store.is_writable("charm:c:total") and store.is_writable("charm:c:a")
    assert isinstance(store.lookup("charm:c:total"), DerivedCell)
    with pytest.raises(ReadOnlyCellError, match="charm:c:total") as err:
        total.set(3)
    assert err.value.cell_name == "charm:c:total"
    with pytest.raises(ReadOnlyCellError, match="charm:c:total"):
        total.update(lambda v: v + 1)
    assert total.get() == 15 and a.get() == 5 and b.get() == 10


def test_a_transaction_is_visible_inside_and_rolled_back_whole(store: Store) -> None:
    cell = store.cell("app:a", int, 0)
    with store.transaction():
        cell.set(1)
        cell.set(2)
        assert cell.get() == 2  # visible inside the transaction
    assert cell.get() == 2
    with pytest.raises(RuntimeError), store.transaction():
        cell.set(99)
        raise RuntimeError("boom")
    assert cell.get() == 2
    changes = store._db().total_changes
    cell.set(2)  # same value: no write at all
    assert store._db().total_changes == changes


def test_inner_failure_rolls_back_only_the_inner_block(store: Store) -> None:
    cursor = store.cell("charm:a:cursor", int, 0)
    items = store.collection("charm:a:items")
    with store.transaction():
        cursor.set(1)
        items.upsert("kept", 1)
        try:
            with store.transaction():
                cursor.set(2)
                items.upsert("dropped", 2)
                raise ValueError("inner")
        except ValueError:
            pass
        assert cursor.get() == 1 and "dropped" not in items
        with store.transaction():
            items.upsert("inner-ok", 3)
    assert cursor.get() == 1
    assert sorted(items.keys()) == ["inner-ok", "kept"]


def test_rollback_in_inner_level_keeps_the_outer_writes(db: Path) -> None:
    with Store.open(db) as s:
        a = s.cell("app:a", int, 0)
        b = s.cell("app:b", int, 0)
        with s.transaction():
            b.set(1)
            with pytest.raises(KeyError), s.transaction():
                a.set(1)
                raise KeyError("x")
    with Store.open(db) as s:  # what was committed, read back from disk
        assert s.cell("app:a", int, 0).get() == 0 and s.cell("app:b", int, 0).get() == 1


def test_cursor_and_items_commit_together_or_not_at_all(db: Path) -> None:
    with Store.open(db) as s:
        cursor = s.cell("charm:a:cursor", str | None, None)
        items = s.collection("charm:a:items")
        with pytest.raises(ConnectionError), s.transaction():
            items.upsert_many([("m1", {"subject": "hi"}), ("m2", {"subject": "yo"})])
            cursor.set("history-2")
            raise ConnectionError("network dropped mid-sync")
        assert cursor.get() is None and len(items) == 0
        with s.transaction():
            items.upsert_many([("m1", {"subject": "hi"}), ("m2", {"subject": "yo"})])
            cursor.set("history-2")
    with Store.open(db) as s:
        assert s.cell("charm:a:cursor", str | None, None).get() == "history-2"
        assert len(s.collection("charm:a:items")) == 2


def test_drop_prefix_removes_a_charms_cells_and_collections(store: Store) -> None:
    a = store.cell("charm:a:cursor", int, 0)
    a.set(5)
    other = store.cell("charm:ab:cursor", int, 0)  # shares the text prefix "charm:a" only
    other.set(7)
    store.collection("charm:a:items").upsert("k", 1)
    store.collection("charm:ab:items").upsert("k", 1)
    store.derived("charm:a:view", [a], lambda v: v)
    store.drop_prefix("charm:a:")
    assert a.get() == 0  # an object still held reads the default
    assert store.cell_names("charm:a:") == []
    assert len(store.collection("charm:a:items")) == 0
    assert other.get() == 7 and len(store.collection("charm:ab:items")) == 1
    with pytest.raises(NotFoundError):
        store.lookup("charm:a:view")
    with pytest.raises(ValueError):
        store.drop_prefix("")
