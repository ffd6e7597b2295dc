"""Issue 16's check: a plugin written from the docs alone, installed with `trayapp plugins install`.

tests/plugins/statuspage_plugin is a status-page incidents importer written by someone outside
the project from docs/plugins.md: a secret API key, a validated setting, a conditional GET, a
collection, progress and log lines, an export. It is built into a wheel here (offline), installed
into a fresh profile with ``trayapp plugins install`` and driven through the CLI only, against a
real local server that checks the key, answers 304 to the ETag, 429 with ``Retry-After`` and,
in its hang mode, never answers. What the example plugin's test does not cover: the install
command with a real plugin, the secret end to end (sent, never shown or stored in clear, gone
with the charm even after the plugin is removed), the rate-limit answer honoured in ``status
--json``, a hang ending at the pattern's timeout, ``needs_reset`` on a filter change, export, and
``plugins remove``.

The wheel is built from a copy whose pattern ``timeout`` is 3 s instead of 2 min (the only
change), so that the hang ends quickly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = Path(__file__).resolve().parent / "statuspage_plugin"
KEY = "sk-live-7f3a9c2e5b1d4068-OUTSIDER"
INCIDENTS = [
    {"id": "inc-1", "title": "API latency", "severity": "minor", "started_at": "2026-12-01"},
    {"id": "inc-2", "title": "Login outage", "severity": "major", "started_at": "2026-12-02"},
    {"id": "inc-3", "title": "Data loss", "severity": "critical", "started_at": "2026-12-03"},
]


@dataclass
class StatusPage:
    """A made-up status-page API: Bearer key, ETag/304, and ``mode`` ok | ratelimit | hang."""

    mode: str = "ok"
    retry_after: int = 600
    version: int = 1
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    @property
    def etag(self) -> str:
        return f'"v{self.version}"'


def _handler(page: StatusPage) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page.requests.append(
                {
                    "mode": page.mode,
                    "auth": self.headers.get("Authorization"),
                    "if_none_match": self.headers.get("If-None-Match"),
                }
            )
            if page.mode == "hang":
                page.release.wait(120)  # never answers while the test runs
                return
            if page.mode == "ratelimit":
                self._send(429, b'{"error": "slow down"}', {"Retry-After": str(page.retry_after)})
            elif self.headers.get("Authorization") != f"Bearer {KEY}":
                self._send(401, b'{"error": "bad key"}', {})
            elif self.headers.get("If-None-Match") == page.etag:
                self._send(304, b"", {"ETag": page.etag})
            else:
                body = json.dumps({"incidents": INCIDENTS}).encode()
                self._send(200, body, {"ETag": page.etag, "Content-Type": "application/json"})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def status_page() -> Iterator[StatusPage]:
    page = StatusPage()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(page))
    httpd.daemon_threads = True
    page.url = f"http://127.0.0.1:{httpd.server_address[1]}/incidents.json"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield page
    finally:
        page.release.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("statuspage")
    source = work / "src"
    shutil.copytree(PLUGIN, source)  # pip's build leaves files behind: not in the repo
    module = source / "src" / "statuspage_incidents" / "__init__.py"
    code = module.read_text()
    assert code.count("timeout = timedelta(minutes=2)") == 1
    module.write_text(
        code.replace("timeout = timedelta(minutes=2)", "timeout = timedelta(seconds=3)")
    )
    out = work / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(out), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("trayapp_statuspage_incidents-*.whl")
    return built


def trayapp(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PIP_NO_INDEX": "1",
        "TRAYAPP_SECRET_STORE": "file",
    }
    env.pop("TRAYAPP_PROFILE", None)
    return subprocess.run(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
        capture_output=True, text=True, timeout=100, env=env,
    )  # fmt: skip


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, done.stdout + done.stderr
    assert KEY not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


def sync(profile: Path, charm: str) -> dict[str, Any]:
    done = trayapp(profile, "sync", charm, "--json")
    assert KEY not in done.stdout + done.stderr and "Traceback" not in done.stderr
    (result,) = json.loads(done.stdout)["results"]
    assert done.returncode == (0 if result["ok"] else 1), done.stderr
    return dict(result)


def status(profile: Path, *charm_ids: str) -> dict[str, Any]:
    (charm,) = json.loads(ok(trayapp(profile, "status", *charm_ids, "--json")).stdout)["charms"]
    return dict(charm["status"])


def every_profile_byte(profile: Path, *, but: str = "") -> bytes:
    return b"".join(p.read_bytes() for p in profile.rglob("*") if p.is_file() and p.name != but)


# About 25 CLI commands, each a new process: far more than the default 120 s on a busy machine.
@pytest.mark.timeout(600)
def test_outsider_plugin_installed_and_driven_through_the_cli(
    wheel: Path, tmp_path: Path, status_page: StatusPage
) -> None:
    profile = tmp_path / "profile"
    installed = ok(trayapp(profile, "plugins", "install", str(wheel), "--json"))
    assert "outsider-incidents" in installed.stdout
    (plugin,) = json.loads(ok(trayapp(profile, "plugins", "list", "--json")).stdout)["plugins"]
    assert plugin["name"] == "trayapp-statuspage-incidents" and plugin["problem"] is None
    patterns = json.loads(ok(trayapp(profile, "patterns", "list", "--json")).stdout)["patterns"]
    assert {p["id"]: p["source"] for p in patterns}["outsider-incidents"] == (
        "trayapp-statuspage-incidents"
    )

    # The validated setting: one line naming the field, nothing stored.
    base = ["charms", "add", "outsider-incidents", "--name", "Status", "--set",
            f"url={status_page.url}", "--set", f"api_key={KEY}"]  # fmt: skip
    bad = trayapp(profile, *base, "--set", "min_severity=huge")
    assert bad.returncode == 1 and KEY not in bad.stderr
    assert bad.stderr.strip() == (
        "trayapp: invalid settings for outsider-incidents: "
        "min_severity: must be one of minor, major, critical"
    )
    charm = json.loads(ok(trayapp(profile, *base, "--json")).stdout)["charm"]["id"]
    listed = json.loads(ok(trayapp(profile, "charms", "list", "--json")).stdout)["charms"]
    assert listed[0]["settings"]["api_key"] == "(kept in the keyring)"

    # First sync: the key is sent, three incidents stored; the second is conditional (304).
    first = sync(profile, charm)
    assert (first["outcome"], first["counts"]["added"], first["message"]) == (
        "ok", 3, "3 incidents",
    )  # fmt: skip
    again = ok(trayapp(profile, "-v", "sync", charm))
    assert "not modified" in again.stdout
    assert "trayapp.charm." in again.stderr and "asking 127.0.0.1 for incidents" in again.stderr
    assert [(r["auth"], r["if_none_match"]) for r in status_page.requests] == [
        (f"Bearer {KEY}", None),
        (f"Bearer {KEY}", '"v1"'),
    ]

    # 429 with Retry-After: rate_limited, and the next run is not before the server's time. On
    # a second charm of the page (the first one goes on below, and could not within 10 min).
    status_page.mode = "ratelimit"
    second = [*base[:4], "Status limited", *base[5:]]
    slow = json.loads(ok(trayapp(profile, *second, "--json")).stdout)["charm"]["id"]
    before = datetime.now().astimezone()
    limited = sync(profile, slow)
    after = datetime.now().astimezone()
    assert limited["outcome"] == "rate_limited" and limited["retry_after"] is not None
    retry_at = datetime.fromisoformat(limited["retry_after"])
    assert before + timedelta(seconds=600) <= retry_at <= after + timedelta(seconds=601)
    st = status(profile, slow)
    assert st["state"] == "backing_off" and st["last_outcome"] == "rate_limited"
    assert datetime.fromisoformat(st["next_due_at"]) >= retry_at
    # A manual sync within the server's wait does not ask the server again.
    asked = len(status_page.requests)
    waiting = sync(profile, slow)
    assert waiting["outcome"] == "rate_limited" and waiting["retry_after"] == limited["retry_after"]
    assert waiting["message"].startswith("the server asked to wait; next try at ")
    assert len(status_page.requests) == asked
    ok(trayapp(profile, "charms", "remove", slow))
    assert status(profile, charm)["totals"]["added"] == 3  # nothing lost

    # A hang: the server never answers; the run ends at the pattern's timeout (3 s here).
    status_page.mode = "hang"
    hung = sync(profile, charm)
    assert hung["outcome"] == "timeout", hung
    st = status(profile)
    assert st["last_outcome"] == "timeout" and not st["running"] and st["totals"]["added"] == 3
    status_page.release.set()
    status_page.mode = "ok"

    # A filter change clears the data (needs_reset), so the 304 cannot keep the old selection.
    ok(trayapp(profile, "charms", "edit", charm, "--set", "min_severity=critical"))
    filtered = sync(profile, charm)
    assert (filtered["outcome"], filtered["counts"]["added"]) == ("ok", 1)
    assert status_page.requests[-1]["if_none_match"] is None
    exported = tmp_path / "incidents.jsonl"
    ok(trayapp(profile, "export", charm, "--format", "jsonl", "-o", str(exported)))
    assert [json.loads(line)["id"] for line in exported.read_text().splitlines()] == ["inc-3"]

    # A wrong key is refused by the server: parked; the edited key brings it back.
    ok(trayapp(profile, "charms", "edit", charm, "--set", "api_key=wrong"))
    refused = sync(profile, charm)
    assert refused["outcome"] == "auth_required"
    ok(trayapp(profile, "charms", "edit", charm, "--set", f"api_key={KEY}"))
    assert sync(profile, charm)["outcome"] == "ok"

    # The key lives in the 0600 secrets file only: not in the database or anywhere else.
    assert KEY.encode() not in every_profile_byte(profile, but="secrets.json")
    assert KEY in (profile / "secrets.json").read_text()

    # Removing the plugin leaves the charm waiting; removing the charm then forgets the key.
    ok(trayapp(profile, "plugins", "remove", "trayapp-statuspage-incidents"))
    missing = sync(profile, charm)
    assert missing["outcome"] == "config_error" and "not installed" in missing["message"]
    assert status(profile)["state"] != "running"
    ok(trayapp(profile, "charms", "remove", charm))
    assert KEY.encode() not in every_profile_byte(profile)
