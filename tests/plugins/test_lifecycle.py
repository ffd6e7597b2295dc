"""Plugin life cycle: stored-state migration, resume/edit of a parked account-less charm."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from trayapp.api import AuthRequired, BaseModel, CellSpec, Pattern, RunReport, UpdateContext
from trayapp.api.testing import run_pattern
from trayapp.core.engine import Engine
from trayapp.core.patterns import PatternDeclarationError, PatternRegistry


class V1(Pattern[Any]):
    id = "versioned"
    title = "Versioned"
    cells = (CellSpec("state", writes=True, default={}),)
    collections = ("items",)

    async def bg_updater(self, ctx: UpdateContext[Any]) -> RunReport:
        ctx.cell("state").set({"etag": '"old"'})
        ctx.collection("items").upsert("a", {"title": "A"})
        return RunReport(added=1)


class V2(V1):
    """Keeps ETags per URL now, and items carry a "source"."""

    state_version = 2
    seen: ClassVar[list[Any]] = []

    def migrate_state(self, ctx: UpdateContext[Any], old_version: int) -> None:
        assert old_version == 1
        old = ctx.cell("state").get()
        ctx.cell("state").set({"version": 2, "etags": {"default": old.get("etag")}})
        items = ctx.collection("items")
        for key, value in items.items():
            items.upsert(key, {**value, "source": "default"})

    async def bg_updater(self, ctx: UpdateContext[Any]) -> RunReport:
        V2.seen.append(ctx.cell("state").get())
        return RunReport()


class BrokenV2(V1):
    state_version = 2

    def migrate_state(self, ctx: UpdateContext[Any], old_version: int) -> None:
        ctx.cell("state").set({"half": "written"})
        raise ValueError("cannot read the old state")

    async def bg_updater(self, ctx: UpdateContext[Any]) -> RunReport:
        raise AssertionError("must not run on unmigrated state")


async def test_migration_runs_once_before_the_run(tmp_path: Path) -> None:
    first = await run_pattern(V1, profile=tmp_path)
    assert first.kind == "ok"
    V2.seen.clear()
    second = await run_pattern(V2, profile=tmp_path)
    assert second.kind == "ok", second.outcome.message
    assert V2.seen == [{"version": 2, "etags": {"default": '"old"'}}]
    assert second.items == {"items": {"a": {"title": "A", "source": "default"}}}
    third = await run_pattern(V2, profile=tmp_path)  # already migrated: not again
    assert third.kind == "ok" and third.items == second.items


async def test_a_failing_migration_changes_nothing_and_is_a_bug(tmp_path: Path) -> None:
    await run_pattern(V1, profile=tmp_path)
    broken = await run_pattern(BrokenV2, profile=tmp_path)
    assert broken.kind == "bug"
    assert "from version 1 to 2: ValueError: cannot read the old state" in broken.outcome.message
    assert broken.cells == {"state": {"etag": '"old"'}}  # rolled back
    # The fixed release migrates the same, untouched state.
    fixed = await run_pattern(V2, profile=tmp_path)
    assert fixed.kind == "ok"


async def test_state_from_a_newer_release_is_refused_not_misread(tmp_path: Path) -> None:
    await run_pattern(V2, profile=tmp_path)
    older = await run_pattern(V1, profile=tmp_path)
    assert older.kind == "bug"
    assert "stored by a newer version" in older.outcome.message


def test_a_bad_state_version_is_a_declaration_error() -> None:
    class Bad(V1):
        state_version = 0

    with pytest.raises(PatternDeclarationError, match="state_version"):
        PatternRegistry().register(Bad)


class TokenSettings(BaseModel):
    token: str = ""


class TokenApi(Pattern[TokenSettings]):
    id = "token-api"
    title = "Token API"
    Settings = TokenSettings

    async def bg_updater(self, ctx: UpdateContext[TokenSettings]) -> RunReport:
        if ctx.settings.token != "good":
            raise AuthRequired("the API refused the token; enter a new one")
        return RunReport(updated=1)


async def test_resume_and_edit_really_unpark_a_charm_without_account(tmp_path: Path) -> None:
    registry = PatternRegistry()
    registry.register(TokenApi)
    engine = Engine(tmp_path, patterns=registry)
    try:
        info = engine.add_charm("token-api", {"token": "bad"})
        outcome = (await engine.sync([info.id]))[info.id]
        assert outcome.kind == "auth_required"
        assert engine.status(info.id).parked
        assert engine.status(info.id).next_due_at is None

        engine.resume(info.id)  # the user's "try again"
        status = engine.status(info.id)
        assert not status.parked and status.next_due_at is not None
        assert status.state.value != "paused"

        await engine.sync([info.id])
        assert engine.status(info.id).parked  # still the bad token
        engine.update_charm(info.id, settings={"token": "good"})  # the fix
        assert not engine.status(info.id).parked
        assert (await engine.sync([info.id]))[info.id].kind == "ok"
    finally:
        await engine.aclose()
