"""A plugin written for a newer plugin API is listed with a clear problem, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from trayapp.core.patterns import API_VERSION, PatternRegistry

PLUGIN = """
from trayapp.api import NoSettings, Pattern, RunReport, UpdateContext
{extra}

class Future(Pattern[NoSettings]):
    id = "future"
    title = "Future"

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        return RunReport()
"""


def install(site: Path, name: str, source: str) -> None:
    """A plugin as pip leaves it: a module plus a dist-info naming the entry point."""
    site.mkdir(exist_ok=True)
    (site / f"{name}.py").write_text(source)
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[trayapp.patterns]\n{name} = {name}:Future\n")


def load(monkeypatch: pytest.MonkeyPatch, site: Path) -> PatternRegistry:
    monkeypatch.syspath_prepend(str(site))
    registry = PatternRegistry()
    registry.load_entry_points()
    return registry


def test_a_plugin_of_this_api_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path / "site", "plugin_now", PLUGIN.format(extra=""))
    registry = load(monkeypatch, tmp_path / "site")
    assert "future" in registry and registry.problems == []


def test_a_plugin_importing_a_name_this_api_lacks_says_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = PLUGIN.format(extra="from trayapp.api import ThingOfApi9")
    install(tmp_path / "site", "plugin_import", source)
    registry = load(monkeypatch, tmp_path / "site")
    assert "future" not in registry
    [problem] = registry.problems
    assert problem.distribution == "plugin_import"
    assert "ThingOfApi9" in problem.message
    assert f"this one has API {API_VERSION}: update Pattern Sync" in problem.message
    assert "Traceback" not in problem.message
