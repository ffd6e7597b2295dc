"""Secret storage: a real gnome-keyring under dbus-run-session, the 0600 file fallback, and the
"keyring not ready" mapping."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from trayapp.auth.secrets import (
    FileSecretStore,
    KeyringNotReady,
    KeyringSecretStore,
    SecretStoreKind,
    SecretVault,
)

REPO = Path(__file__).resolve().parents[2]

# Runs inside the D-Bus session: one keyring operation per process, so a value read back was
# really persisted by the daemon, not cached in the writing process.
CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from trayapp.auth.secrets import SecretVault, KeyringNotReady
    op, profile = sys.argv[1], Path(sys.argv[2])
    vault = SecretVault(profile, mode=sys.argv[3])
    out = {}
    try:
        if op == "put":
            store = vault.store_for_new_secret()
            out["kind"] = store.kind.value
            store.set("profile1:acct-1", "1//refresh-SECRET-value")
        elif op == "get":
            out["value"] = vault.store("keyring").get("profile1:acct-1")
        elif op == "delete":
            vault.store("keyring").delete("profile1:acct-1")
            out["value"] = vault.store("keyring").get("profile1:acct-1")
        out["warning"] = vault.warning
    except KeyringNotReady as exc:
        out["not_ready"] = str(exc)
    print("RESULT " + json.dumps(out))
    """
)


def _session(script: str, tmp_path: Path, timeout: float = 90) -> list[dict[str, Any]]:
    """Run ``script`` (bash) in a fresh D-Bus session; return the RESULT lines it printed."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (tmp_path / "child.py").write_text(CHILD)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "PYTHONPATH": str(REPO),
        "CHILD": f"{sys.executable} {tmp_path / 'child.py'}",
    }
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    proc = subprocess.run(
        ["dbus-run-session", "--", "bash", "-euc", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    results = [
        json.loads(line[len("RESULT ") :])
        for line in proc.stdout.splitlines()
        if line.startswith("RESULT ")
    ]
    assert results, f"no results (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return results


needs_keyring = pytest.mark.skipif(
    not (shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon")),
    reason="needs dbus-run-session and gnome-keyring-daemon (apt-get install dbus gnome-keyring)",
)


@pytest.mark.keyring
@needs_keyring
def test_round_trip_through_a_real_gnome_keyring(tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    profile.mkdir()
    results = _session(
        f"""
        eval "$(printf %s test-password | gnome-keyring-daemon --unlock --components=secrets)"
        $CHILD put {profile} auto
        $CHILD get {profile} auto
        $CHILD delete {profile} auto
        """,
        tmp_path,
    )
    put, got, deleted = results
    assert put == {"kind": "keyring", "warning": None}
    assert got["value"] == "1//refresh-SECRET-value"
    assert deleted["value"] is None
    # Nothing went to the profile: the keyring holds it.
    assert list(profile.iterdir()) == []


@pytest.mark.keyring
@needs_keyring
def test_a_locked_keyring_is_not_ready_never_a_silent_fallback(tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    profile.mkdir()
    # The daemon runs but is never unlocked; with no display its unlock prompt is dismissed.
    results = _session(
        f"""
        eval "$(gnome-keyring-daemon --start --components=secrets)"
        $CHILD put {profile} auto
        """,
        tmp_path,
    )
    [put] = results
    assert "not_ready" in put, put
    assert "locked or not running" in put["not_ready"]
    assert not (profile / "secrets.json").exists()


def test_no_session_bus_means_no_keyring_and_a_flagged_file(tmp_path: Path) -> None:
    """A machine with no keyring service at all (no D-Bus session): the file, flagged."""
    profile = tmp_path / "profile"
    profile.mkdir()
    (tmp_path / "child.py").write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_RUNTIME_DIR": str(tmp_path)}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    results = []
    for mode in ("auto", "keyring"):
        proc = subprocess.run(
            [sys.executable, str(tmp_path / "child.py"), "put", str(profile), mode],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        results.append(json.loads(proc.stdout.split("RESULT ", 1)[1]))
    auto, forced = results
    assert auto["kind"] == "file"
    assert "No system keyring" in auto["warning"]
    assert "not_ready" in forced  # mode=keyring never falls back
    mode_bits = stat.S_IMODE((profile / "secrets.json").stat().st_mode)
    assert mode_bits == 0o600


def test_file_store_is_0600_atomic_and_flagged(tmp_path: Path) -> None:
    vault = SecretVault(tmp_path, mode="file")
    assert vault.warning is not None  # the tray and status show it
    store = vault.store_for_new_secret()
    assert store.kind is SecretStoreKind.FILE
    store.set("k1", "secret-one")
    store.set("k2", "secret-two")
    path = tmp_path / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.json"]  # no temp files left
    assert store.get("k1") == "secret-one"
    store.delete("k1")
    assert store.get("k1") is None and store.get("k2") == "secret-two"
    # Loosened permissions are tightened again on the next read.
    os.chmod(path, 0o644)
    assert FileSecretStore(tmp_path).get("k2") == "secret-two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "readable only by you" in (vault.warning or "")


def test_keyring_errors_become_keyring_not_ready() -> None:
    from keyring.errors import KeyringLocked

    class Locked:
        priority = 5

        def get_password(self, service: str, key: str) -> str:
            raise KeyringLocked("Failed to unlock the collection!")

        set_password = get_password  # type: ignore[assignment]

    store = KeyringSecretStore(Locked())
    with pytest.raises(KeyringNotReady, match="unlock"):
        store.get("k")


def test_vault_rejects_unknown_mode(tmp_path: Path) -> None:
    from trayapp.core.errors import TrayappError

    with pytest.raises(TrayappError, match="unknown secret store"):
        SecretVault(tmp_path, mode="plaintext")


# Runs inside the D-Bus session: a whole browser sign-in against the emulator, with the
# profile's real keyring (mode auto), then the user's choice "keep it in a file".
SIGNIN_CHILD = textwrap.dedent(
    """
    import asyncio, json, os, stat, sys
    from pathlib import Path
    import httpx
    from trayapp.auth.accounts import AccountManager
    from trayapp.auth.client_config import parse_client_json
    from trayapp.auth.signin import KeyringUnavailable
    from trayapp.core.store import Store
    from tests.emulator.harness import EmulatorServer, answer_consent_page

    EMAIL = "alice@example.com"
    GMAIL = "https://www.googleapis.com/auth/gmail.readonly"

    async def main() -> dict:
        profile = Path(sys.argv[1])
        out = {}
        async with EmulatorServer() as emu:
            emu.control.create_account(EMAIL, name="Alice")
            client = emu.control.create_client()
            store = Store.open(profile / "trayapp.db")
            manager = AccountManager(store, profile)
            manager.clients.set(parse_client_json(json.dumps(client.client_config(emu.base_url))))
            pages = []

            def browser(url):
                async def go():
                    async with httpx.AsyncClient(follow_redirects=True, timeout=60) as http:
                        return await answer_consent_page(http, url, "allow", None)
                pages.append(asyncio.get_running_loop().create_task(go()))
                return True

            try:
                await manager.sign_in(None, [GMAIL], opener=browser, timeout=60)
                out["raised"] = None
            except KeyringUnavailable as exc:
                out["raised"] = type(exc).__name__
                out["message"] = str(exc)
                out["detail"] = exc.detail
                final = await asyncio.wait_for(pages[-1], 60)
                out["page_says_signed_in"] = ">&#10003; Signed in<" in final.text
                out["page"] = final.text
                account = await manager.store_pending_grant(exc.pending_id, use_file=True)
                out["usable"] = account.usable
                out["secret_store"] = account.secret_store.value
                out["warning"] = manager.vault.warning
                out["file_mode"] = oct(stat.S_IMODE((profile / "secrets.json").stat().st_mode))
                out["token_ok"] = bool(await manager.provider(account.id).access_token())
            out["consent_rounds"] = len(emu.control.requests(path="/o/oauth2/*auth"))
            await manager.aclose()
            store.close()
        return out

    print("RESULT " + json.dumps(asyncio.run(main())))
    """
)


@pytest.mark.keyring
@needs_keyring
def test_a_keyring_without_a_usable_collection_gives_the_file_choice_with_one_consent(
    tmp_path: Path,
) -> None:
    """Issue 12.7 with a real gnome-keyring that was never unlocked (no login collection can be
    created: its prompt is dismissed with no display). Sign-in does not fail silently, the
    browser is not told "Signed in", and keeping the tokens in the 0600 file needs no second
    consent page."""
    profile = tmp_path / "profile"
    profile.mkdir()
    (tmp_path / "signin_child.py").write_text(SIGNIN_CHILD)
    [result] = _session(
        f"""
        eval "$(gnome-keyring-daemon --start --components=secrets)"
        {sys.executable} {tmp_path / "signin_child.py"} {profile}
        """,
        tmp_path,
        timeout=180,
    )
    assert result["raised"] == "KeyringUnavailable", result
    assert "could not store the sign-in" in result["message"]
    assert "Traceback" not in result["message"] and "Error" not in result["message"]
    assert result["page_says_signed_in"] is False and "Go back to Pattern Sync" in result["page"]
    assert result["usable"] and result["secret_store"] == "file" and result["token_ok"]
    assert "readable only by you" in result["warning"]
    assert result["file_mode"] == "0o600"
    assert result["consent_rounds"] == 1
