"""A charm whose plugin was uninstalled needs the user's attention (config_error), not a bug."""

from __future__ import annotations

from pathlib import Path

from trayapp.api import NoSettings, Pattern, RunReport, UpdateContext
from trayapp.core.engine import Engine
from trayapp.core.patterns import PatternRegistry


class Gone(Pattern[NoSettings]):
    id = "gone-soon"
    title = "Gone soon"

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        return RunReport()


async def test_a_charm_of_an_uninstalled_plugin_is_a_config_error(tmp_path: Path) -> None:
    registry = PatternRegistry()
    registry.register(Gone)
    engine = Engine(tmp_path, patterns=registry)
    try:
        info = engine.add_charm("gone-soon", {})
    finally:
        await engine.aclose()
    engine = Engine(tmp_path, patterns=PatternRegistry())  # the plugin was removed
    try:
        outcome = (await engine.sync([info.id]))[info.id]
        assert outcome.kind == "config_error"
        assert outcome.message == (
            "pattern 'gone-soon' is not installed (was its plugin uninstalled?); reinstall it or "
            "remove the charm"
        )
        assert outcome.traceback is None
        assert engine.status(info.id).last_error_kind == "config_error"
    finally:
        await engine.aclose()
