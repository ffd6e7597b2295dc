"""Charm definitions and bindings: ids, persistence, and the read-only binding guard."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from trayapp.api import CellSpec, Pattern, RunReport, UpdateContext
from trayapp.core.charms import CharmInfo, CharmRepo, resolve_bindings, slugify
from trayapp.core.errors import BindingError, ConfigError
from trayapp.core.store import Store


class Importer(Pattern[Any]):
    id = "gmail-importer"
    title = "Gmail Importer"
    scopes = ("https://www.googleapis.com/auth/gmail.readonly",)
    cells = (
        CellSpec("auth", writes=True, owner="account"),
        CellSpec("cursor", writes=True),
        CellSpec("labels"),  # read only: may be bound to a derived view
    )

    async def bg_updater(self, ctx: UpdateContext[Any]) -> RunReport:
        return RunReport()


PATTERN = Importer()


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Work Mail", "work-mail"),
        ("  Café — Crème!! ", "cafe-creme"),
        ("東京", "charm"),
        ("a" * 60, "a" * 40),
        ("x-" * 30, ("x-" * 20).rstrip("-")),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_ids_are_unique_within_the_length_limit(store: Store) -> None:
    repo = CharmRepo(store)
    name = "n" * 60
    ids = []
    for _ in range(3):
        cid = repo.new_id(name)
        ids.append(cid)
        repo.save(_info(cid))
    assert ids == ["n" * 40, "n" * 38 + "-2", "n" * 38 + "-3"]


def _info(cid: str) -> CharmInfo:
    return CharmInfo(
        id=cid,
        pattern_id="gmail-importer",
        name=cid,
        settings={"query": "in:inbox", "limit": 5},
        account_id="me@example.com",
        interval=timedelta(minutes=5),
        bindings={"auth": "account:me@example.com:auth"},
        created_at=datetime(2024, 5, 1, 9, 0, tzinfo=UTC),
    )


def test_charm_definitions_round_trip_through_the_store(tmp_path: Path) -> None:
    with Store.open(tmp_path / "db") as store:
        CharmRepo(store).save(_info("b"))
        CharmRepo(store).save(_info("a"))
    with Store.open(tmp_path / "db") as store:
        repo = CharmRepo(store)
        assert repo.get("b") == _info("b")
        assert {c.id for c in repo.all()} == {"a", "b"}
        assert repo.delete("a") and repo.find("a") is None


def test_default_bindings(store: Store) -> None:
    got = resolve_bindings(PATTERN, "work", "me@example.com", None, store)
    assert got == {
        "auth": "account:me@example.com:auth",
        "cursor": "charm:work:cursor",
        "labels": "charm:work:labels",
    }


def test_account_slot_without_an_account_is_refused(store: Store) -> None:
    with pytest.raises(ConfigError, match=r"needs an account for its 'auth' cell; .*--account"):
        resolve_bindings(PATTERN, "work", None, None, store)


def test_binding_the_written_auth_slot_to_a_derived_cell_is_refused(store: Store) -> None:
    auth = store.cell("account:x:auth", dict, {})
    store.derived("account:x:auth-view", [auth], lambda v: v)

    with pytest.raises(BindingError) as info:
        resolve_bindings(PATTERN, "work", "x", {"auth": "account:x:auth-view"}, store)

    assert str(info.value) == (
        "pattern 'gmail-importer' writes its 'auth' input, but 'account:x:auth-view' is "
        "read-only (derived). Bind 'auth' to a writable cell such as 'account:x:auth'."
    )


def test_when_the_default_is_itself_derived_the_message_still_says_what_to_do(store: Store) -> None:
    src = store.cell("app:src", int, 0)
    store.derived("charm:work:cursor", [src], lambda v: v)
    with pytest.raises(BindingError, match=r"Bind 'cursor' to a writable cell \(not a derived"):
        resolve_bindings(PATTERN, "work", "x", None, store)


def test_read_only_slots_may_bind_to_derived_cells_and_written_ones_to_writable(
    store: Store,
) -> None:
    src = store.cell("app:labels", list, [])
    store.derived("app:labels-view", [src], lambda v: v)
    got = resolve_bindings(
        PATTERN,
        "work",
        "x",
        {"labels": "app:labels-view", "cursor": "app:shared-cursor"},
        store,
    )
    assert got["labels"] == "app:labels-view" and got["cursor"] == "app:shared-cursor"


@pytest.mark.parametrize(
    ("bindings", "match"),
    [
        ({"nope": "charm:x:y"}, "has no input called 'nope' to bind \\(its inputs: auth, cursor"),
        ({"cursor": "no namespace"}, "a cell name looks like 'namespace:id:slot'"),
    ],
)
def test_bad_explicit_bindings(store: Store, bindings: dict[str, str], match: str) -> None:
    with pytest.raises(BindingError, match=match):
        resolve_bindings(PATTERN, "work", "x", bindings, store)


def test_the_charm_list_is_read_once_until_someone_changes_it(tmp_path: Path) -> None:
    """Issue 17.6: the tray asked for every charm twice per refresh, each a full read and
    decode. The list is kept while nobody writes; this repo's own writes and another
    connection's commits (the CLI, another process) both make the next read fresh."""
    with Store.open(tmp_path / "db") as store, Store.open(tmp_path / "db") as other:
        repo = CharmRepo(store)
        repo.save(_info("a"))
        assert [c.id for c in repo.all()] == ["a"]
        reads = repo.reads
        for _ in range(5):
            assert [c.id for c in repo.all()] == ["a"]
        assert repo.reads == reads  # no row read or decoded again

        repo.save(_info("b"))  # our own write
        assert {c.id for c in repo.all()} == {"a", "b"}
        assert repo.reads == reads + 1

        CharmRepo(other).delete("a")  # another connection commits
        assert [c.id for c in repo.all()] == ["b"]
        assert repo.reads == reads + 2
        CharmRepo(other).save(dataclasses.replace(_info("b"), name="Renamed elsewhere"))
        assert [c.name for c in repo.all()] == ["Renamed elsewhere"]


def test_a_rolled_back_write_is_not_kept_in_the_charm_list(tmp_path: Path) -> None:
    with Store.open(tmp_path / "db") as store:
        repo = CharmRepo(store)
        repo.save(_info("a"))
        with pytest.raises(RuntimeError), store.transaction():
            repo.save(_info("b"))
            assert {c.id for c in repo.all()} == {"a", "b"}  # read inside the transaction
            raise RuntimeError("undo")
        assert [c.id for c in repo.all()] == ["a"]
