"""The plugin guide's example, as a user gets it: installed with pip, added and synced by the CLI.

The example (examples/notifications-plugin) is built and installed with pip into a temporary
target folder (offline: ``--no-index --no-build-isolation``), put on ``PYTHONPATH`` the way an
installed plugin sits on the app's path, found through its ``trayapp.patterns`` entry point,
added as a charm with ``trayapp charms add``, synced twice against a real local HTTP server
(the second sync is a conditional GET answered 304) and checked with ``trayapp status --json``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.plugins.conftest import JsonServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "notifications-plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("plugin")
    source = work / "src"
    shutil.copytree(EXAMPLE, source)  # pip's build leaves files behind: not in the repo
    site = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        timeout=120,
    )
    assert (site / "trayapp_notifications" / "__init__.py").is_file()
    return site


def plugin_env(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    env.pop("TRAYAPP_PROFILE", None)
    return env


def trayapp(site: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
        capture_output=True,
        text=True,
        env=plugin_env(site),
        timeout=60,
    )


def test_installed_example_plugin_adds_syncs_and_reports(
    plugin_site: Path, tmp_path: Path, json_server: JsonServer
) -> None:
    profile = tmp_path / "profile"
    json_server.documents["/n.json"] = [
        {"id": "1", "title": "Build passed", "created": "2026-01-01T10:00:00Z"},
        {"id": "2", "title": "New comment", "created": "2026-01-01T11:00:00Z"},
    ]

    listed = trayapp(plugin_site, profile, "patterns", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    sources = {p["id"]: p["source"] for p in json.loads(listed.stdout)["patterns"]}
    assert sources["example-notifications"] == "trayapp-notifications-example"

    # The validated setting: a clear one-line refusal naming the field, nothing stored.
    bad = trayapp(
        plugin_site,
        profile,
        "charms",
        "add",
        "example-notifications",
        "--set",
        f"url={json_server.url}/n.json",
        "--set",
        "max_items:=0",
    )
    assert bad.returncode == 1
    assert "max_items: must be at least 1" in bad.stderr
    assert "Traceback" not in bad.stderr

    added = trayapp(
        plugin_site,
        profile,
        "charms",
        "add",
        "example-notifications",
        "--name",
        "Alerts",
        "--set",
        f"url={json_server.url}/n.json",
        "--json",
    )
    assert added.returncode == 0, added.stderr
    charm_id = json.loads(added.stdout)["charm"]["id"]

    first = trayapp(plugin_site, profile, "sync", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    second = trayapp(plugin_site, profile, "sync", "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    outcome = json.loads(second.stdout)["results"][0]
    assert (outcome["outcome"], outcome["message"]) == ("ok", "not modified")
    # One request per sync; the second one conditional.
    assert [r[2] for r in json_server.requests] == [None, json_server.etag("/n.json")]

    status = trayapp(plugin_site, profile, "status", "--json")
    assert status.returncode == 0, status.stderr
    (charm,) = json.loads(status.stdout)["charms"]
    assert charm["id"] == charm_id and charm["pattern_id"] == "example-notifications"
    assert charm["status"]["last_outcome"] == "ok"
    assert charm["status"]["totals"] == {"added": 2, "updated": 0, "removed": 0}
    assert charm["status"]["healthy"] is True


def test_edit_reset_and_log_lines_in_the_log_file(
    plugin_site: Path, tmp_path: Path, json_server: JsonServer
) -> None:
    profile = tmp_path / "profile"
    json_server.documents["/n.json"] = [{"id": "1"}, {"id": "2"}, {"id": "3"}]
    url = f"{json_server.url}/n.json"
    added = trayapp(
        plugin_site,
        profile,
        "charms",
        "add",
        "example-notifications",
        "--set",
        f"url={url}",
        "--json",
    )
    assert added.returncode == 0, added.stderr
    charm_id = json.loads(added.stdout)["charm"]["id"]
    assert trayapp(plugin_site, profile, "sync").returncode == 0

    # edit: one setting changes, the others stay; a bad value is refused and changes nothing.
    bad = trayapp(plugin_site, profile, "charms", "edit", charm_id, "--set", "max_items:=0")
    assert bad.returncode == 1 and "max_items: must be at least 1" in bad.stderr
    edited = trayapp(
        plugin_site,
        profile,
        "charms",
        "edit",
        charm_id,
        "--set",
        "max_items:=2",
        "--interval",
        "1h",
        "--json",
    )
    assert edited.returncode == 0, edited.stderr
    charm = json.loads(edited.stdout)["charm"]
    assert charm["settings"] == {"url": url, "max_items": 2}
    assert charm["interval_s"] == 3600

    # reset: the data and the ETag are forgotten; the next run fetches everything again.
    reset = trayapp(plugin_site, profile, "charms", "reset", charm_id)
    assert reset.returncode == 0, reset.stderr
    requests_before = len(json_server.requests)

    # The reset charm is due now: the headless app runs it, and the pattern's ctx.log line
    # reaches the profile's log file without -v.
    log_file = profile / "logs" / "trayapp.log"
    app = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), "run", "--headless", "-q"],
        env=plugin_env(plugin_site),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if log_file.exists() and "2 new, 0 changed notifications" in log_file.read_text():
                break
            time.sleep(0.1)
    finally:
        app.send_signal(signal.SIGTERM)
        _, err = app.communicate(timeout=30)
    text = log_file.read_text()
    assert f"trayapp.charm.{charm_id}: 2 new, 0 changed notifications" in text, err
    # Unconditional again (the ETag was forgotten), and max_items=2 applied.
    assert json_server.requests[requests_before][2] is None
    status = json.loads(trayapp(plugin_site, profile, "status", "--json").stdout)
    assert status["charms"][0]["status"]["last_counts"]["added"] == 2


def trayapp_in(
    site: Path, profile: Path, stdin: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``trayapp`` with ``stdin`` piped in (a token is never an argument), secrets in the
    profile's 0600 file (never the keyring of the machine running the tests)."""
    env = {**plugin_env(site), "TRAYAPP_SECRET_STORE": "file"}
    return subprocess.run(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=60,
    )


def test_token_credential_refused_needs_sign_in_and_a_new_token_recovers(
    plugin_site: Path, tmp_path: Path, json_server: JsonServer
) -> None:
    """The example's ApiToken pattern as a user runs it: a token account added from stdin, a
    401 from the server for a wrong token -> the account needs sign-in in `status --json`, a
    new token through `accounts signin` -> the next sync imports."""
    profile = tmp_path / "profile"
    json_server.documents["/p.json"] = [{"id": "a", "title": "Private"}]
    json_server.tokens["/p.json"] = "right-token-123"
    run = functools.partial(trayapp_in, plugin_site, profile)
    patterns = json.loads(run("", "patterns", "list", "--json").stdout)["patterns"]
    private = next(p for p in patterns if p["id"] == "example-private-notifications")
    assert (private["service"], private["credential"]) == (
        "example-notes",
        {
            "service": "example-notes",
            "title": "Example Notes",
            "kind": "api_token",
            "help_url": "https://example.org/settings/tokens",
        },
    )

    added = run(
        "wrong-token-456\n", "accounts", "add", "--service", "example-notes", "--name", "work"
    )
    assert added.returncode == 0, added.stderr
    assert "Added work (Example Notes" in added.stdout
    assert "wrong-token-456" not in added.stdout + added.stderr

    # A Google-style charm add without the account: one line saying how to add one.
    missing = run("", "charms", "add", "example-private-notifications", "--set", "url=http://x/")
    assert missing.returncode == 1
    assert "needs a Example Notes account" in missing.stderr
    assert "trayapp accounts add --service example-notes" in missing.stderr

    charm = run(
        "",
        "charms",
        "add",
        "example-private-notifications",
        "--account",
        "work",
        "--set",
        f"url={json_server.url}/p.json",
        "--json",
    )
    assert charm.returncode == 0, charm.stderr
    charm_id = json.loads(charm.stdout)["charm"]["id"]

    refused = run("", "sync", "--json")
    assert json.loads(refused.stdout)["results"][0]["outcome"] == "auth_required"
    assert json_server.requests[-1][3] == "Bearer wrong-token-456"
    status = json.loads(run("", "status", "--json").stdout)
    (account,) = status["accounts"]
    assert (account["service"], account["label"], account["state"], account["cause"]) == (
        "example-notes",
        "work",
        "needs_sign_in",
        "token_rejected",
    )
    assert account["reason"] == "Example Notes refused the token of work."
    (charm_status,) = status["charms"]
    assert charm_status["id"] == charm_id
    assert charm_status["status"]["state"] == "parked"
    listed = run("", "accounts", "list")
    assert "work (Example Notes)  needs sign-in" in listed.stdout

    # Re-auth: a new token from stdin; the parked charm runs again and imports.
    again = run("right-token-123\n", "accounts", "signin", "work")
    assert again.returncode == 0, again.stderr
    synced = run("", "sync", "--json")
    result = json.loads(synced.stdout)["results"][0]
    assert result["outcome"] == "ok", synced.stdout
    assert json_server.requests[-1][3] == "Bearer right-token-123"
    status = json.loads(run("", "status", "--json").stdout)
    assert status["accounts"][0]["state"] == "signed_in"
    assert status["charms"][0]["status"]["totals"]["added"] == 1

    # The tokens are only in the 0600 secrets file: not in the database, --json or the log.
    everything = b"".join(
        p.read_bytes() for p in profile.rglob("*") if p.is_file() and p.name != "secrets.json"
    )
    assert b"right-token-123" not in everything and b"wrong-token-456" not in everything
    assert (profile / "secrets.json").stat().st_mode & 0o777 == 0o600
    assert b"right-token-123" in (profile / "secrets.json").read_bytes()


@pytest.mark.keyring
@pytest.mark.skipif(
    not (shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon")),
    reason="needs dbus-run-session and gnome-keyring-daemon (apt-get install dbus gnome-keyring)",
)
def test_token_account_lives_in_a_real_gnome_keyring(
    plugin_site: Path, tmp_path: Path, json_server: JsonServer
) -> None:
    """The same cycle with a real keyring daemon (a fresh D-Bus session): the token goes to the
    keyring, not to the profile; the new token replaces it there."""
    profile = tmp_path / "profile"
    home = tmp_path / "home"
    home.mkdir()
    json_server.documents["/p.json"] = [{"id": "a"}]
    json_server.tokens["/p.json"] = "right-token-789"
    app = f"{sys.executable} -m trayapp --profile {profile}"
    script = f"""
    eval "$(printf %s test-password | gnome-keyring-daemon --unlock --components=secrets)"
    printf '%s\\n' wrong-token-000 | {app} accounts add --service example-notes --name work
    {app} charms add example-private-notifications --account work \\
        --set url={json_server.url}/p.json
    {app} sync --json > {tmp_path}/refused.json || true
    printf '%s\\n' right-token-789 | {app} accounts signin work
    {app} sync --json > {tmp_path}/synced.json
    {app} accounts list --json > {tmp_path}/listed.json
    """
    env = {
        **plugin_env(plugin_site),
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "TRAYAPP_SECRET_STORE": "keyring",
    }
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    done = subprocess.run(
        ["dbus-run-session", "--", "bash", "-euc", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    refused, synced, listed = (
        json.loads((tmp_path / f"{name}.json").read_text())
        for name in ("refused", "synced", "listed")
    )
    assert refused["results"][0]["outcome"] == "auth_required"
    assert synced["results"][0]["outcome"] == "ok"
    (account,) = listed["accounts"]
    assert (account["state"], account["secret_store"]) == ("signed_in", "keyring")
    assert not (profile / "secrets.json").exists()
    everything = b"".join(p.read_bytes() for p in profile.rglob("*") if p.is_file())
    assert b"right-token-789" not in everything and b"wrong-token-000" not in everything
    assert "token-" not in done.stdout + done.stderr
