"""The headless CLI wires Google accounts as the tray does: a Gmail charm syncs from the command
line against the local emulator (real OAuth tokens, refresh endpoint and Gmail API on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import email.message
import json
import os
import re
import sys
from pathlib import Path

import pytest

from tests.emulator.harness import DEFAULT_SCOPES, EmulatorServer
from trayapp.auth.client_config import parse_client_json
from trayapp.auth.signin import grant_from_token_response
from trayapp.auth.wiring import AccountsWiring
from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.core.profile import Profile

ROOT = Path(__file__).resolve().parents[1]
EMAIL = "alice@example.com"


def _message(subject: str) -> bytes:
    msg = email.message.EmailMessage()
    msg["From"] = "Bob <bob@example.com>"
    msg["To"] = EMAIL
    msg["Subject"] = subject
    msg["Date"] = "Mon, 03 Jun 2024 09:00:00 +0000"
    msg.set_content("hello")
    return msg.as_bytes()


async def _signed_in_profile(emu: EmulatorServer, profile: Path) -> str:
    """A profile with Alice signed in through the CLI's own wiring; returns the account id."""
    emu.control.create_account(EMAIL, name="Alice")
    client = emu.control.create_client()
    tokens = emu.control.issue_tokens(EMAIL, client.id, list(DEFAULT_SCOPES))
    engine = Engine(Profile.resolve(profile), patterns=default_registry())
    wiring = AccountsWiring(engine)
    manager = wiring.manager
    manager.clients.set(parse_client_json(json.dumps(client.client_config(emu.base_url))))
    account = await manager.complete_sign_in(grant_from_token_response(tokens, email=EMAIL))
    await wiring.aclose()
    engine.close()
    return str(account.id)


async def test_sync_from_the_command_line_runs_a_gmail_charm_with_its_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file vault: no keyring daemon needed (the keyring path has its own tests).
    monkeypatch.setenv("TRAYAPP_SECRET_STORE", "file")
    profile = tmp_path / "profile"
    async with EmulatorServer() as emu:
        account_id = await _signed_in_profile(emu, profile)
        emu.control.add_message(EMAIL, _message("first"))
        emu.control.add_message(EMAIL, _message("second"))

        env = {**os.environ, "PYTHONPATH": str(ROOT), "TRAYAPP_SECRET_STORE": "file"}
        # The user names the account by its email; the charm is stored with the account's id.
        add = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trayapp", "--profile", str(profile), "charms", "add",
            "gmail-importer", "--name", "mail", "--set", "query=in:inbox", "--account", EMAIL,
            "--json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
            cwd=ROOT,
        )  # fmt: skip
        added, add_err = await asyncio.wait_for(add.communicate(), 120)
        assert add.returncode == 0, add_err.decode()
        assert json.loads(added)["charm"]["account_id"] == account_id

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trayapp", "--profile", str(profile), "sync", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 120)

    assert proc.returncode == 0, err.decode()
    result = json.loads(out)["results"][0]
    assert result["charm_id"] == "mail" and result["outcome"] == "ok"
    assert result["counts"]["added"] == 2
    assert b"Traceback" not in err


class _Stderr:
    """A child's stderr read line by line, so the test can wait for a given line."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream
        self.seen: list[str] = []

    async def wait_for(self, pattern: str) -> str:
        async with asyncio.timeout(120):
            while True:
                line = (await self.stream.readline()).decode()
                if not line:
                    raise AssertionError(f"stderr ended before {pattern!r}: {self.seen}")
                self.seen.append(line)
                if re.search(pattern, line):
                    return line


async def test_signing_in_from_the_cli_unparks_the_charms_of_a_running_engine(
    tmp_path: Path,
) -> None:
    profile = tmp_path / "profile"
    # A "browser" that fetches the consent URL (the emulator approves at once and redirects to
    # the CLI's loopback receiver); started the way a real $BROWSER is, and never waited for.
    browser = tmp_path / "browser.py"
    browser.write_text("import sys, urllib.request\nurllib.request.urlopen(sys.argv[1]).read()\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TRAYAPP_SECRET_STORE": "file",
        "BROWSER": f"{sys.executable} {browser}",
    }
    async with EmulatorServer() as emu:
        emu.control.set_consent(auto_approve=True)
        account_id = await _signed_in_profile(emu, profile)
        emu.control.add_message(EMAIL, _message("hello"))
        engine = Engine(Profile.resolve(profile), patterns=default_registry())
        engine.add_charm(
            "gmail-importer", {"query": "in:inbox"}, name="mail", account_id=account_id
        )
        engine.close()
        emu.control.revoke_refresh_token(EMAIL)  # the user revoked access at Google

        headless = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trayapp", "--profile", str(profile), "run", "--headless",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
        )  # fmt: skip
        try:
            assert headless.stderr is not None
            err = _Stderr(headless.stderr)
            await err.wait_for(r"charm mail: auth_required")  # parked until signed in again

            signin = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "trayapp", "--profile", str(profile), "accounts",
                "signin", EMAIL, "--timeout", "60",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
            )  # fmt: skip
            out, signin_err = await asyncio.wait_for(signin.communicate(), 120)
            assert signin.returncode == 0, signin_err.decode()
            assert f"Signed in as {EMAIL}" in out.decode()
            assert signin_err == b""  # the running engine took the change

            # The running engine ran the parked charm at once, with the new grant.
            await err.wait_for(r"charm mail: ok \(\+1 ")
        finally:
            if headless.returncode is None:
                headless.terminate()
            assert await asyncio.wait_for(headless.wait(), 60) == 0
    assert "Traceback" not in "".join(err.seen)
