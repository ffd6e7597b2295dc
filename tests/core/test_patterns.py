"""Patterns: declarations, settings validation messages, the registry and entry-point plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from pydantic import field_validator

from trayapp.api import BaseModel, CellSpec, Field, HttpUrl, Pattern, RunReport, UpdateContext
from trayapp.builtins import default_registry
from trayapp.core.errors import NotFoundError, ReadOnlyCellError, SettingsError
from trayapp.core.patterns import (
    PatternDeclarationError,
    PatternRegistry,
    check_declaration,
)
from trayapp.core.store import Store

ROOT = Path(__file__).resolve().parents[2]


class Rich(BaseModel):
    url: HttpUrl
    limit: int = Field(10, ge=1, le=500)
    mode: Literal["full", "metadata"] = "full"
    token: str = ""
    label: str = Field("x", min_length=1)

    @field_validator("token")
    @classmethod
    def _no_spaces(cls, v: str) -> str:
        if " " in v:
            raise ValueError("must not contain spaces")
        return v


class RichPattern(Pattern[Rich]):
    id = "rich"
    title = "Rich"
    Settings = Rich

    async def bg_updater(self, ctx: UpdateContext[Rich]) -> RunReport:
        return RunReport()


RICH = RichPattern()


# --- settings --------------------------------------------------------------------------------


def test_valid_settings_are_coerced_from_cli_text() -> None:
    s = RICH.validate_settings({"url": "https://example.org/x", "limit": "25", "mode": "metadata"})
    assert s.limit == 25 and s.mode == "metadata"
    assert RICH.dump_settings(s)["url"] == "https://example.org/x"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "url: required"),
        ({"url": "example.org"}, "url: not a valid http(s) URL"),
        ({"url": "ftp://example.org/"}, "url: not a valid http(s) URL"),
        ({"url": "https://e.org", "limit": "lots"}, "limit: not a whole number"),
        ({"url": "https://e.org", "limit": 0}, "limit: must be at least 1"),
        ({"url": "https://e.org", "limit": 501}, "limit: must be at most 500"),
        ({"url": "https://e.org", "mode": "all"}, "mode: must be one of 'full' or 'metadata'"),
        ({"url": "https://e.org", "label": ""}, "label: must not be empty"),
        ({"url": "https://e.org", "token": "a b"}, "token: must not contain spaces"),
        (
            {"url": "https://e.org", "limt": 5},
            "limt: unknown setting (known settings: label, limit, mode, token, url)",
        ),
    ],
)
def test_each_settings_problem_is_named_in_plain_words(data: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        RICH.validate_settings(data)
    assert str(info.value) == f"invalid settings for rich: {message}"


def test_every_problem_is_listed_and_values_are_never_echoed() -> None:
    with pytest.raises(SettingsError) as info:
        RICH.validate_settings({"url": "s3cr3t-value", "limit": "s3cr3t-too"})
    text = str(info.value)
    assert "url: not a valid http(s) URL" in text and "limit: not a whole number" in text
    assert "s3cr3t" not in text


def test_a_pattern_without_settings_accepts_only_nothing() -> None:
    class Bare(Pattern[Any]):
        id = "bare"
        title = "Bare"

        async def bg_updater(self, ctx: UpdateContext[Any]) -> RunReport:
            return RunReport()

    Bare().validate_settings({})
    with pytest.raises(SettingsError, match="x: unknown setting \\(it has none\\)"):
        Bare().validate_settings({"x": 1})


# --- declarations ---------------------------------------------------------------------------------


def _pattern(**attrs: Any) -> Pattern[Any]:
    async def bg_updater(self: Any, ctx: Any) -> RunReport:
        return RunReport()

    namespace: dict[str, Any] = {"id": "ok-id", "title": "T", "bg_updater": bg_updater, **attrs}
    cls: type[Pattern[Any]] = type("P", (Pattern,), namespace)
    return cls()


@pytest.mark.parametrize(
    ("attrs", "problem"),
    [
        ({"id": "Bad Id"}, "lower-case slug"),
        ({"id": ""}, "lower-case slug"),
        ({"title": ""}, "title is empty"),
        ({"Settings": dict}, "pydantic BaseModel"),
        ({"default_interval": timedelta(0)}, "default_interval must be a positive"),
        ({"timeout": 30}, "timeout must be a positive"),
        ({"cells": (CellSpec("a"), CellSpec("a"))}, "duplicate cell slot 'a'"),
        ({"cells": (CellSpec("auth", owner="user"),)}, "owner 'user'"),  # type: ignore[arg-type]
        ({"cells": (CellSpec("items"),), "collections": ("items",)}, "duplicate collection"),
        ({"bg_updater": lambda self, ctx: RunReport()}, "async def"),
        ({"export_formats": ("jsonl",)}, "offers export formats .* but does not override export"),
    ],
)
def test_bad_declarations_are_refused(attrs: dict[str, Any], problem: str) -> None:
    with pytest.raises(PatternDeclarationError, match=problem):
        check_declaration(_pattern(**attrs))


def test_needs_account_follows_scopes_or_account_slots() -> None:
    assert not _pattern().needs_account
    assert _pattern(scopes=("scope",)).needs_account
    assert _pattern(cells=(CellSpec("auth", writes=True, owner="account"),)).needs_account


# --- registry -------------------------------------------------------------------------------------


def test_default_registry_has_the_builtin_feed_importer() -> None:
    registry = default_registry(plugins=False)
    assert "feed-importer" in registry
    assert registry.source("feed-importer") == "built-in"
    assert [p.id for p in registry] == sorted(p.id for p in registry)


def test_duplicate_ids_and_unknown_ids() -> None:
    registry = PatternRegistry()
    registry.register(RichPattern)
    with pytest.raises(PatternDeclarationError, match="already registered"):
        registry.register(RichPattern)
    with pytest.raises(NotFoundError, match=r"unknown pattern 'nope'; available patterns: rich"):
        registry.get("nope")


def _write_plugin(root: Path, dist: str, entry_points: str, modules: dict[str, str]) -> None:
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


GOOD_PLUGIN = """
    from datetime import timedelta
    from trayapp.api import BaseModel, CellSpec, Field, Pattern, RunReport, UpdateContext

    class CounterSettings(BaseModel):
        step: int = Field(1, ge=1)

    class Counter(Pattern[CounterSettings]):
        id = "counter"
        title = "Counter"
        Settings = CounterSettings
        default_interval = timedelta(minutes=1)
        cells = (CellSpec("count", writes=True, default=0),)

        async def bg_updater(self, ctx: UpdateContext[CounterSettings]) -> RunReport:
            ctx.cell("count").update(lambda n: n + ctx.settings.step)
            return RunReport(updated=1)

    class NotAPattern:
        pass

    class NoTitle(Pattern):
        id = "no-title"

        async def bg_updater(self, ctx):
            return RunReport()

    class Duplicate(Counter):
        id = "feed-importer"
        title = "Imposter"
"""

ENTRY_POINTS = """
    [trayapp.patterns]
    counter = tp_counter_plugin:Counter
    broken = tp_missing_module:Whatever
    raises = tp_raising_plugin:X
    not-a-pattern = tp_counter_plugin:NotAPattern
    no-title = tp_counter_plugin:NoTitle
    duplicate = tp_counter_plugin:Duplicate
"""


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    _write_plugin(
        root,
        "trayapp_counter",
        ENTRY_POINTS,
        {
            "tp_counter_plugin": GOOD_PLUGIN,
            "tp_raising_plugin": "raise RuntimeError('plugin exploded at import')\n",
        },
    )
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in ("tp_counter_plugin", "tp_raising_plugin"):
        sys.modules.pop(name, None)


def test_entry_point_plugins_load_and_broken_ones_are_reported(plugin_dir: Path) -> None:
    registry = default_registry()

    assert "counter" in registry
    assert registry.source("counter") == "trayapp_counter"
    problems = {p.entry_point.split(" = ")[0]: p for p in registry.problems}
    assert set(problems) == {"broken", "raises", "not-a-pattern", "no-title", "duplicate"}
    assert "import failed: ModuleNotFoundError" in problems["broken"].message
    assert "plugin exploded at import" in problems["raises"].message
    assert "not name a trayapp.api.Pattern" in problems["not-a-pattern"].message
    assert "title is empty" in problems["no-title"].message
    assert "already registered (by built-in)" in problems["duplicate"].message
    assert all(p.distribution == "trayapp_counter" for p in problems.values())
    assert registry.get("feed-importer").title == "Feed Importer"  # the built-in kept its id


async def test_a_plugin_pattern_runs_through_the_engine(plugin_dir: Path, tmp_path: Path) -> None:
    from trayapp.core.engine import Engine

    async with Engine(tmp_path / "profile", patterns=default_registry()) as engine:
        engine.add_charm("counter", {"step": "3"}, name="c")
        outcome = (await engine.sync())["c"]
        assert outcome.ok and outcome.report.updated == 1
        assert engine.store.lookup("charm:c:count").get() == 3


def test_patterns_list_reports_plugins_and_problems_from_the_command_line(
    plugin_dir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(ROOT)])}
    cmd = [sys.executable, "-m", "trayapp", "--profile", str(tmp_path / "p"), "patterns", "list"]
    result = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {p["id"] for p in data["patterns"]} >= {"feed-importer", "counter"}
    assert len(data["problems"]) == 5
    human = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert human.returncode == 0
    assert "plugin not loaded: broken = tp_missing_module:Whatever" in human.stderr


# --- the update context ---------------------------------------------------------------------------


class Slots(Pattern[Any]):
    id = "slots"
    title = "Slots"
    cells = (CellSpec("cursor", writes=True, default=0, type=int), CellSpec("view"))
    collections = ("items",)
    seen: ClassVar[list[Any]] = []

    async def bg_updater(self, ctx: UpdateContext[Any]) -> RunReport:
        return RunReport()


def _ctx(store: Store, bindings: dict[str, str]) -> UpdateContext[Any]:
    import httpx

    p = Slots()
    return UpdateContext(
        charm_id="s",
        settings=None,
        account_id=None,
        store=store,
        specs={c.name: c for c in p.cells},
        bindings=bindings,
        collections=p.collections,
        http=httpx.AsyncClient(),
    )


def test_context_gives_declared_slots_and_collections_only(tmp_path: Path) -> None:
    with Store.open(tmp_path / "db") as store:
        ctx = _ctx(store, {"cursor": "charm:s:cursor", "view": "charm:s:view"})
        cursor = ctx.cell("cursor")
        assert cursor.get() == 0
        cursor.set(5)
        assert store.cell("charm:s:cursor", int, 0).get() == 5
        ctx.collection("items").upsert("k", {"v": 1})
        assert store.collection("charm:s:items").get("k") == {"v": 1}
        with pytest.raises(KeyError, match="no cell slot 'nope'"):
            ctx.cell("nope")
        with pytest.raises(KeyError, match="no collection 'other'"):
            ctx.collection("other")


def test_context_hands_out_a_derived_cell_as_is_and_writes_through_it_raise(tmp_path: Path) -> None:
    with Store.open(tmp_path / "db") as store:
        src = store.cell("app:src", int, 2)
        store.derived("app:double", [src], lambda v: v * 2)
        ctx = _ctx(store, {"cursor": "app:double", "view": "app:double"})
        assert ctx.cell("view").get() == 4
        with pytest.raises(ReadOnlyCellError, match="app:double"):
            ctx.cell("cursor").set(1)


def test_builtin_patterns_import_only_the_public_api() -> None:
    """Built-ins use trayapp.api (and their own helper modules) exactly as a plugin would."""
    import ast

    import trayapp.patterns

    offenders = []
    for path in sorted(Path(trayapp.patterns.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["trayapp.patterns"]
            else:
                continue
            for name in names:
                if name.split(".")[0] != "trayapp":
                    continue
                if name == "trayapp.api" or name.startswith("trayapp.patterns"):
                    continue
                offenders.append(f"{path.name}:{node.lineno} imports {name}")
    assert offenders == []


def test_built_in_patterns_import_only_the_public_api() -> None:
    """A built-in pattern is written exactly as a plugin would be: trayapp.api and libraries.

    Every import statement is read (lazy ones inside functions too), so a shortcut into
    ``trayapp.core`` or ``trayapp.google`` is caught here instead of in review.
    """
    import ast

    import trayapp.patterns

    folder = Path(trayapp.patterns.__file__).resolve().parent
    offenders: list[str] = []
    checked = 0
    for path in sorted(folder.glob("*.py")):
        checked += 1
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                allowed = name == "trayapp.api" or name.startswith("trayapp.patterns")
                if (name == "trayapp" or name.startswith("trayapp.")) and not allowed:
                    offenders.append(f"{path.name}:{getattr(node, 'lineno', 0)}: {name}")
    assert checked >= 2  # feed.py and __init__.py at least: the folder was found
    assert offenders == [], "built-in patterns must import only trayapp.api: " + ", ".join(
        offenders
    )
