"""Secret settings of plugins: SecretStr values live in the keyring (or the 0600 file), never in
the database, --json, logs or diagnostics; the pattern gets the real value."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.plugins.conftest import JsonServer
from trayapp.api import (
    BaseModel,
    Field,
    Pattern,
    RunReport,
    SecretStr,
    UpdateContext,
    raise_for_status,
)
from trayapp.core.engine import Engine
from trayapp.core.logfile import close_log_file, setup_log_file
from trayapp.core.patterns import SECRET_PLACEHOLDER, PatternRegistry

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok-4f9c2e1d8b7a6355-SECRET"
NEW_TOKEN = "tok-0a1b2c3d4e5f6789-ROTATED"


class ApiSettings(BaseModel):
    url: str
    token: SecretStr = Field(description="API token")


class TokenApi(Pattern[ApiSettings]):
    id = "token-api"
    title = "Token API"
    Settings = ApiSettings

    async def bg_updater(self, ctx: UpdateContext[ApiSettings]) -> RunReport:
        resp = await ctx.http.get(
            ctx.settings.url,
            headers={"Authorization": f"Bearer {ctx.settings.token.get_secret_value()}"},
        )
        raise_for_status(resp, ctx.now())
        ctx.log.info("fetched with token %s", ctx.settings.token.get_secret_value())
        return RunReport(updated=1)


def every_profile_byte(profile: Path) -> bytes:
    return b"".join(p.read_bytes() for p in profile.rglob("*") if p.is_file())


async def test_secret_setting_in_the_file_store_never_in_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAYAPP_SECRET_STORE", "file")
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={})

    registry = PatternRegistry()
    registry.register(TokenApi)
    profile = tmp_path / "profile"
    engine = Engine(profile, patterns=registry, http_transport=httpx.MockTransport(answer))
    try:
        info = engine.add_charm("token-api", {"url": "https://api.test/x", "token": TOKEN})
        assert info.settings["token"] == SECRET_PLACEHOLDER
        assert json.dumps(info.to_json()).count(TOKEN) == 0
        log_path = setup_log_file(engine.profile)
        try:
            assert (await engine.sync([info.id]))[info.id].kind == "ok"
        finally:
            close_log_file(engine.profile)
        assert seen == [f"Bearer {TOKEN}"]  # the pattern got the real value
        logged = log_path.read_text()
        assert "fetched with token [redacted]" in logged and TOKEN not in logged

        # Another setting changes, the secret is kept (the form/CLI give back the placeholder).
        engine.update_charm(
            info.id, settings={"url": "https://api.test/y", "token": SECRET_PLACEHOLDER}
        )
        assert (await engine.sync([info.id]))[info.id].kind == "ok"
        assert seen[-1] == f"Bearer {TOKEN}"
        # Re-entered: the new value is used.
        engine.update_charm(info.id, settings={"url": "https://api.test/y", "token": NEW_TOKEN})
        assert (await engine.sync([info.id]))[info.id].kind == "ok"
        assert seen[-1] == f"Bearer {NEW_TOKEN}"

        secrets_file = profile / "secrets.json"
        assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
        data = every_profile_byte(profile)
        assert TOKEN.encode() not in data  # the old one is gone everywhere
        assert data.count(NEW_TOKEN.encode()) == 1  # only in the 0600 secrets file
        assert NEW_TOKEN in secrets_file.read_text()

        engine.remove_charm(info.id)
        assert NEW_TOKEN.encode() not in every_profile_byte(profile)
    finally:
        await engine.aclose()


async def test_a_secret_lost_from_the_store_asks_to_enter_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAYAPP_SECRET_STORE", "file")
    registry = PatternRegistry()
    registry.register(TokenApi)
    engine = Engine(tmp_path / "p", patterns=registry)
    try:
        info = engine.add_charm("token-api", {"url": "https://api.test/x", "token": TOKEN})
        (tmp_path / "p" / "secrets.json").unlink()
        outcome = (await engine.sync([info.id]))[info.id]
        assert outcome.kind == "auth_required"
        assert f"trayapp charms edit {info.id} --set token=" in outcome.message
        assert engine.status(info.id).parked
        engine.update_charm(info.id, settings={"url": "https://api.test/x", "token": TOKEN})
        assert not engine.status(info.id).parked
    finally:
        await engine.aclose()


PLUGIN = """
from trayapp.api import BaseModel, Pattern, RunReport, UpdateContext, raise_for_status
from pydantic import SecretStr

class S(BaseModel):
    url: str
    token: SecretStr

class TokenApi(Pattern[S]):
    id = "token-api"
    title = "Token API"
    Settings = S

    async def bg_updater(self, ctx: UpdateContext[S]) -> RunReport:
        token = ctx.settings.token.get_secret_value()
        resp = await ctx.http.get(ctx.settings.url, headers={"Authorization": "Bearer " + token})
        raise_for_status(resp, ctx.now())
        ctx.log.info("synced with %s", token)
        return RunReport(updated=1)
"""

needs_keyring = pytest.mark.skipif(
    not (shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon")),
    reason="needs dbus-run-session and gnome-keyring-daemon",
)


@pytest.mark.keyring
@needs_keyring
def test_cli_keeps_the_secret_in_a_real_gnome_keyring(
    tmp_path: Path, json_server: JsonServer
) -> None:
    site = tmp_path / "site"
    (site / "token_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "token_plugin.py").write_text(PLUGIN)
    (site / "token_plugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: token-plugin\nVersion: 1.0\n"
    )
    (site / "token_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[trayapp.patterns]\ntoken-api = token_plugin:TokenApi\n"
    )
    json_server.documents["/x"] = {"ok": True}
    profile = tmp_path / "profile"
    home = tmp_path / "home"
    home.mkdir()
    app = f"{sys.executable} -m trayapp --profile {profile}"
    script = f"""
        eval "$(printf %s pw | gnome-keyring-daemon --unlock --components=secrets)"
        {app} charms add token-api --set url={json_server.url}/x --set token={TOKEN} --json
        echo ---
        {app} -v sync --json
        echo ---
        {app} charms list --json
        echo ---
        {app} charms show token-api
    """
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
    }
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    env.pop("TRAYAPP_SECRET_STORE", None)
    proc = subprocess.run(
        ["dbus-run-session", "--", "bash", "-euc", script],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _added, synced, listed, shown = proc.stdout.split("---\n")
    assert json.loads(synced)["results"][0]["outcome"] == "ok"
    # The server got the real token; nothing the user or a log sees holds it.
    assert [r[3] for r in json_server.requests] == [f"Bearer {TOKEN}"]
    assert TOKEN not in proc.stdout + proc.stderr
    assert "synced with [redacted]" in proc.stderr
    assert json.loads(listed)["charms"][0]["settings"]["token"] == SECRET_PLACEHOLDER
    assert SECRET_PLACEHOLDER in shown
    assert TOKEN.encode() not in every_profile_byte(profile)  # keyring, not the profile
    assert not (profile / "secrets.json").exists()
