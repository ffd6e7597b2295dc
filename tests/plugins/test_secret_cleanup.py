"""Secret settings in the keyring and at the end of their life: each profile keeps its own (the
keyring is shared by all of a user's profiles), older entry names are still read, they are
removed with the charm (even when its plugin is no longer installed), and a lost one asks to be
typed again with a hint the redactor leaves alone."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.auth.conftest import MemoryKeyring
from trayapp.api import BaseModel, Field, Pattern, RunReport, SecretStr, UpdateContext
from trayapp.auth.secrets import SecretVault
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


def keyring_engine(profile: Path, keyring: MemoryKeyring, seen: list[str]) -> Engine:
    """An engine whose secret settings go to ``keyring`` (shared, like the user's real one)."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(200, json={})

    registry = PatternRegistry()
    registry.register(Sends)
    vault = SecretVault(profile, mode="keyring", keyring_store=keyring)  # duck-typed store
    return Engine(
        profile, patterns=registry, secrets=vault, http_transport=httpx.MockTransport(answer)
    )


class Sends(Pattern[KeySettings]):
    id = "sends"
    title = "Status"
    Settings = KeySettings

    async def bg_updater(self, ctx: UpdateContext[KeySettings]) -> RunReport:
        key = ctx.settings.api_key.get_secret_value()
        await ctx.http.get(ctx.settings.url, headers={"Authorization": key})
        return RunReport()


async def test_two_profiles_keep_their_own_secret_for_charms_of_the_same_name(
    tmp_path: Path,
) -> None:
    keyring = MemoryKeyring()  # one keyring for both profiles, as on a real desktop
    seen: list[str] = []
    first = keyring_engine(tmp_path / "a", keyring, seen)
    second = keyring_engine(tmp_path / "b", keyring, seen)
    try:
        a = first.add_charm("sends", {"url": "https://a.test/", "api_key": "key-of-profile-A"})
        b = second.add_charm("sends", {"url": "https://b.test/", "api_key": "key-of-profile-B"})
        assert a.id == b.id == "status"
        assert (await first.sync([a.id]))[a.id].kind == "ok"
        assert (await second.sync([b.id]))[b.id].kind == "ok"
        assert seen == ["key-of-profile-A", "key-of-profile-B"]
        second.remove_charm(b.id)
        assert (await first.sync([a.id]))[a.id].kind == "ok"
        assert seen[-1] == "key-of-profile-A"
        assert list(keyring.data.values()) == ["key-of-profile-A"]
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_secret_stored_under_the_name_of_an_older_version_is_still_found(
    tmp_path: Path,
) -> None:
    keyring = MemoryKeyring()
    seen: list[str] = []
    engine = keyring_engine(tmp_path / "p", keyring, seen)
    try:
        info = engine.add_charm("sends", {"url": "https://a.test/", "api_key": "old-name-key-1"})
        # As an older version stored it: "charm:<id>:setting:<field>", no profile id.
        ((name, value),) = keyring.data.items()
        keyring.data = {"charm:status:setting:api_key": value}
        assert name.startswith("profile:") and name.endswith(":charm:status:setting:api_key")
        assert (await engine.sync([info.id]))[info.id].kind == "ok"
        assert seen == ["old-name-key-1"]
        # A new value goes under the new name; removing the charm forgets both.
        engine.update_charm(info.id, settings={"url": "https://a.test/", "api_key": "new-key-22"})
        assert (await engine.sync([info.id]))[info.id].kind == "ok"
        assert seen[-1] == "new-key-22"
        engine.remove_charm(info.id)
        assert keyring.data == {}
    finally:
        await engine.aclose()
