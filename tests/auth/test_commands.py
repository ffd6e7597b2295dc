"""``trayapp accounts ...`` through argparse, on a real profile, against the emulator."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulator.harness import EmulatorServer
from trayapp.auth.accounts import AccountManager
from trayapp.cli import accounts as commands
from trayapp.core.store import Store
from trayapp.emulator.control import ClientInfo

EMAIL = "alice@example.com"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="trayapp")
    parser.add_argument("--profile")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.register(sub)
    return parser.parse_args(list(argv))


def test_register_adds_the_documented_commands(tmp_path: Path) -> None:
    for argv in (
        ["accounts", "add", "--no-browser"],
        ["accounts", "list", "--json"],
        ["accounts", "signin", EMAIL],
        ["accounts", "signout", EMAIL, "--remove"],
        ["accounts", "status", "--json"],
        ["accounts", "client", "import", "client.json"],
    ):
        args = parse("--profile", str(tmp_path), *argv)
        assert args.handler is commands.run


def test_client_import_validates_with_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = tmp_path / "p"
    cases = {
        "web.json": (json.dumps({"web": {"client_id": "x"}}), "Desktop app"),
        "bad.json": ("{not json", "not JSON"),
        "partial.json": (json.dumps({"installed": {"client_id": "x"}}), "missing client_secret"),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        code = commands.run(
            parse("--profile", str(profile), "accounts", "client", "import", str(tmp_path / name))
        )
        err = capsys.readouterr().err
        assert code == 1 and expected in err, (name, err)
    code = commands.run(
        parse(
            "--profile", str(profile), "accounts", "client", "import", str(tmp_path / "nope.json")
        )
    )
    assert code == 1 and "no such file" in capsys.readouterr().err


def test_client_import_and_show_never_print_the_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with EmulatorServer.in_thread() as emu:
        client = emu.control.create_client()
        path = tmp_path / "client.json"
        path.write_text(json.dumps(client.client_config(emu.base_url)))
        profile = str(tmp_path / "p")
        assert (
            commands.run(parse("--profile", profile, "accounts", "client", "import", str(path)))
            == 0
        )
        assert (
            commands.run(parse("--profile", profile, "accounts", "client", "show", "--json")) == 0
        )
        out = capsys.readouterr().out
    assert client.id in out
    assert client.secret not in out
    shown = json.loads(out.splitlines()[-1])["client"]
    assert shown["token_uri"] == emu.base_url + "/token"


def test_list_on_an_empty_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert commands.run(parse("--profile", str(tmp_path), "accounts", "list")) == 0
    assert "No accounts" in capsys.readouterr().out


class Browser:
    """Follows the consent redirects in the background, like a browser would."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[httpx.Response]] = []

    def __call__(self, url: str) -> bool:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(follow_redirects=True) as http:
                return await http.get(url)

        self.tasks.append(asyncio.get_running_loop().create_task(go()))
        return True


@pytest.mark.usefixtures("configured")
async def test_add_list_status_signout_with_no_secret_in_any_output(
    manager: AccountManager,
    store: Store,
    profile: Path,
    emu: EmulatorServer,
    client_info: ClientInfo,
    keyring_mem: Any,
) -> None:
    emu.control.set_consent(auto_approve=True)

    async def cli(*argv: str) -> tuple[int, str]:
        out = io.StringIO()
        code = await commands.handle(
            parse(*argv), store, profile, manager=manager, out=out, opener=Browser()
        )
        return code, out.getvalue()

    code, added = await cli("accounts", "add", "--timeout", "60")
    assert code == 0
    assert "open this link" in added and emu.base_url + "/o/oauth2/auth?" in added
    assert f"Signed in as {EMAIL}" in added

    code, listed = await cli("accounts", "list", "--json")
    doc = json.loads(listed)
    [account] = doc["accounts"]
    assert account["email"] == EMAIL and account["state"] == "signed_in"
    assert doc["secret_storage"]["warning"] is None

    code, status = await cli("accounts", "status", "--json")
    assert code == 0
    assert json.loads(status)["accounts"][0]["token"]["has_refresh_token"] is True

    code, text_status = await cli("accounts", "status", EMAIL)
    assert "signed in" in text_status

    secret = json.loads(next(iter(keyring_mem.data.values())))
    tokens = [secret["access_token"], secret["refresh_token"], client_info.secret]
    code, signed_out = await cli("accounts", "signout", EMAIL)
    assert code == 0 and "revoked" in signed_out
    code, after = await cli("accounts", "status", "--json")
    assert code == 3  # not every account is usable
    assert json.loads(after)["accounts"][0]["state"] == "signed_out"
    assert json.loads(after)["accounts"][0]["reason"] == f"{EMAIL} is signed out."
    code, text_after = await cli("accounts", "status", EMAIL)
    assert f"To fix it: sign in with `trayapp accounts signin {EMAIL}`." in text_after

    for output in (added, listed, status, text_status, signed_out, after, text_after):
        for token in tokens:
            assert token not in output


def test_the_cli_sign_in_timeout_default_is_the_sign_in_flows() -> None:
    # The CLI does not import trayapp.auth.signin to build its parser (it is slow); its copy of
    # the default must not drift from the flow's.
    from trayapp.auth.signin import DEFAULT_TIMEOUT

    assert commands.SIGNIN_TIMEOUT_S == DEFAULT_TIMEOUT
