"""Secret settings at the end of their life: removed with the charm (even when its plugin is no
longer installed), and a lost one asks to be typed again with a hint the redactor leaves alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from trayapp.api import BaseModel, Field, Pattern, RunReport, SecretStr, UpdateContext
from trayapp.core.engine import Engine
from trayapp.core.patterns import PatternRegistry

TOKEN = "tok-2b8e61f0c4a79d53-ORPHAN"


class KeySettings(BaseModel):
    url: str
    api_key: SecretStr = Field(description="API key")


class Keyed(Pattern[KeySettings]):
    id = "keyed"
    title = "Keyed"
    Settings = KeySettings

    async def bg_updater(self, ctx: UpdateContext[KeySettings]) -> RunReport:
        return RunReport()


async def test_removing_a_charm_of_an_uninstalled_plugin_deletes_its_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAYAPP_SECRET_STORE", "file")
    profile = tmp_path / "profile"
    registry = PatternRegistry()
    registry.register(Keyed)
    engine = Engine(profile, patterns=registry)
    try:
        info = engine.add_charm("keyed", {"url": "https://a.test/", "api_key": TOKEN})
    finally:
        await engine.aclose()
    assert TOKEN in (profile / "secrets.json").read_text()

    # The plugin is uninstalled (`trayapp plugins remove`); then the user removes the charm.
    engine = Engine(profile, patterns=PatternRegistry())
    try:
        engine.remove_charm(info.id)
        assert engine.charms() == []
    finally:
        await engine.aclose()
    assert TOKEN not in (profile / "secrets.json").read_text()


async def test_a_lost_secret_tells_what_to_type_unredacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAYAPP_SECRET_STORE", "file")
    registry = PatternRegistry()
    registry.register(Keyed)
    engine = Engine(tmp_path / "p", patterns=registry)
    try:
        info = engine.add_charm("keyed", {"url": "https://a.test/", "api_key": TOKEN})
        (tmp_path / "p" / "secrets.json").unlink()  # the keyring was reset
        outcome = (await engine.sync([info.id]))[info.id]
        assert outcome.kind == "auth_required"
        # The redactor masks "api_key=<value>" shapes, but not the hint's "...".
        assert outcome.message.endswith(f"trayapp charms edit {info.id} --set api_key=...")
    finally:
        await engine.aclose()
