"""The command line, as a user runs it: ``python -m trayapp ...`` in subprocesses, temp profiles,
a real feed server process on 127.0.0.1. Small pure helpers are tested in-process.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from trayapp import cli
from trayapp.cli.args import format_duration, parse_duration, settings_from_args
from trayapp.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
FEEDS = ROOT / "tests" / "data" / "feeds"
WAIT = 60.0


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAYAPP_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def trayapp(profile: Path | str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=WAIT,
        cwd=ROOT,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The run failed with exactly one clear line on stderr (no traceback)."""
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("trayapp: ")
    return lines[0]


@contextlib.contextmanager
def spawned(profile: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    """``trayapp --profile PROFILE ARGS...`` as a child, its stderr read as :class:`Lines`;
    killed at the end if the test left it running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
    )  # fmt: skip
    try:
        yield proc, Lines(proc.stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=WAIT)


class Lines:
    """A child's pipe read line by line on a thread, so a test can wait for a given line.

    (select() on the pipe would miss lines already pulled into Python's buffer with an earlier
    one; a reader thread and a queue cannot.)
    """

    def __init__(self, stream: Any) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r} in {timeout} s: {self.seen}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"process ended before {pattern!r}: {self.seen}")
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def rest(self, timeout: float = WAIT) -> str:
        """Everything up to the end of the stream (call after the process exited)."""
        self._thread.join(timeout)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        return "".join(self.seen)


@pytest.fixture(scope="module")
def feed_url() -> Iterator[str]:
    """The stdlib's static file server, as a separate process, serving tests/data/feeds."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "-d", str(FEEDS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = Lines(proc.stdout).wait_for(r"port \d+")
        port = re.search(r"port (\d+)", line)
        assert port is not None
        yield f"http://127.0.0.1:{port.group(1)}"
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT)


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return tmp_path / "profile"


# --- the checks from the issue -------------------------------------------------------------------


def test_patterns_list_shows_the_feed_importer(profile: Path) -> None:
    result = trayapp(profile, "patterns", "list")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^feed-importer\s+Feed Importer\s+no\s+30m\s+built-in$", result.stdout, re.M)

    data = json.loads(trayapp(profile, "patterns", "list", "--json").stdout)
    assert data["version"] == 1 and data["problems"] == []
    feed = next(p for p in data["patterns"] if p["id"] == "feed-importer")
    assert feed["needs_account"] is False and feed["default_interval_s"] == 1800
    assert feed["settings_schema"]["required"] == ["url"]


def test_add_a_local_feed_sync_it_and_see_it_in_status(profile: Path, feed_url: str) -> None:
    added = trayapp(
        profile, "charms", "add", "feed-importer", "--name", "Eng Blog",
        "--set", f"url={feed_url}/rss2-guid.xml", "--set", "max_items:=10",
        "--interval", "15m", "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    charm = json.loads(added.stdout)["charm"]
    assert charm["id"] == "eng-blog"
    assert charm["settings"] == {"url": f"{feed_url}/rss2-guid.xml", "max_items": 10}
    assert charm["interval_s"] == 900
    assert charm["bindings"] == {"state": "charm:eng-blog:state"}

    synced = trayapp(profile, "sync", "--json")
    assert synced.returncode == 0, synced.stderr
    out = json.loads(synced.stdout)
    assert out["version"] == 1 and out["ok"] is True
    assert out["results"] == [
        {
            "charm_id": "eng-blog",
            "outcome": "ok",
            "ok": True,
            "counts": {"added": 3, "updated": 0, "removed": 0},
            "message": "",
            "partial": [],
            "retry_after": None,
        }
    ]

    status = trayapp(profile, "status", "--json")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["version"] == 1
    [entry] = doc["charms"]
    assert entry["id"] == "eng-blog" and entry["pattern_id"] == "feed-importer"
    s = entry["status"]
    assert s["last_outcome"] == "ok" and s["healthy"] is True
    assert s["totals"] == {"added": 3, "updated": 0, "removed": 0}
    assert s["last_success_at"] is not None and s["next_due_at"] is not None

    # The second sync is a conditional GET (the static server sends Last-Modified): not modified.
    again = json.loads(trayapp(profile, "sync", "eng-blog", "--json").stdout)
    assert again["results"][0]["message"] == "not modified"

    human = trayapp(profile, "status")
    assert re.search(r"^eng-blog\s+scheduled\s+\S+.*ok \+0 ~0 -0", human.stdout, re.M), human.stdout

    shown = json.loads(trayapp(profile, "charms", "show", "eng-blog", "--json").stdout)
    assert [r["outcome"] for r in shown["history"]] == ["ok", "ok"]


def test_sync_exit_code_says_whether_all_succeeded(profile: Path, feed_url: str) -> None:
    for name, path in (("good", "atom.xml"), ("gone", "missing.xml")):
        r = trayapp(
            profile,
            "charms",
            "add",
            "feed-importer",
            "--name",
            name,
            "--set",
            f"url={feed_url}/{path}",
        )
        assert r.returncode == 0, r.stderr

    result = trayapp(profile, "sync", "--json")

    assert result.returncode == 1
    out = json.loads(result.stdout)
    assert out["ok"] is False
    by_id = {r["charm_id"]: r for r in out["results"]}
    assert by_id["good"]["ok"] is True and by_id["good"]["counts"]["added"] == 2
    assert by_id["gone"]["outcome"] == "config_error"
    assert "HTTP 404" in by_id["gone"]["message"]
    assert trayapp(profile, "sync", "good").returncode == 0
    human = trayapp(profile, "sync", "gone")
    assert human.returncode == 1 and human.stdout.startswith(
        "gone: config_error: the feed was not found"
    )


# --- one clear line for what the user can fix ----------------------------------------------------


def test_bad_settings_unknown_charm_and_bad_input_are_one_line(profile: Path) -> None:
    line = one_error_line(trayapp(profile, "charms", "add", "feed-importer", "--set", "url=nope"))
    assert line == "trayapp: invalid settings for feed-importer: url: not a valid http(s) URL"
    line = one_error_line(trayapp(profile, "charms", "add", "feed-importer", "--set", "urll=x"))
    assert "urll: unknown setting (known settings: max_items, url)" in line
    # Every problem in one line: the unknown key and the other fields' mistakes.
    line = one_error_line(
        trayapp(
            profile, "charms", "add", "feed-importer", "--set", "colour=red", "--set", "url=nope"
        )
    )
    assert line == (
        "trayapp: invalid settings for feed-importer: colour: unknown setting (known settings: "
        "max_items, url); url: not a valid http(s) URL"
    )
    line = one_error_line(trayapp(profile, "charms", "add", "nope"))
    assert "unknown pattern 'nope'" in line
    line = one_error_line(
        trayapp(
            profile,
            "charms",
            "add",
            "feed-importer",
            "--set",
            "url=https://x.example/f",
            "--interval",
            "soon",
        )
    )
    assert "invalid interval 'soon'" in line
    for args in (
        ("sync", "ghost"),
        ("status", "ghost"),
        ("charms", "show", "ghost"),
        ("charms", "remove", "ghost"),
        ("charms", "pause", "ghost"),
    ):
        line = one_error_line(trayapp(profile, *args))
        assert line.startswith("trayapp: unknown charm 'ghost'"), args


def test_a_charm_for_an_account_that_does_not_exist_is_refused_when_added(profile: Path) -> None:
    # Account ids are opaque, so users give the email; one nobody signed in is refused at once
    # instead of being stored and failing at every run.
    result = trayapp(profile, "charms", "add", "gmail-importer", "--account", "nobody@example.com")
    line = one_error_line(result)
    assert line.startswith("trayapp: no account 'nobody@example.com'")
    assert "trayapp accounts add" in line
    assert json.loads(trayapp(profile, "charms", "list", "--json").stdout)["charms"] == []


def test_a_profile_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    line = one_error_line(trayapp(blocker / "profile", "status"))
    assert "cannot create profile directory" in line and str(blocker) in line


def test_a_corrupt_profile_is_one_line_and_kept_aside(profile: Path) -> None:
    profile.mkdir()
    (profile / "trayapp.db").write_bytes(b"this is not a database" * 100)
    line = one_error_line(trayapp(profile, "charms", "list"))
    assert "trayapp.db" in line
    assert any(p.name != "trayapp.db" for p in profile.iterdir())  # the damaged file, moved aside


def test_the_profile_can_come_from_the_environment(tmp_path: Path) -> None:
    env_profile = tmp_path / "from-env"
    result = subprocess.run(
        [sys.executable, "-m", "trayapp", "charms", "add", "feed-importer", "--set", "url=https://x.example/f"],
        capture_output=True, text=True, env=_env(TRAYAPP_PROFILE=str(env_profile)), timeout=WAIT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (env_profile / "trayapp.db").exists()


# --- charms management -------------------------------------------------------------------------


def test_charms_list_pause_resume_remove(profile: Path) -> None:
    settings = json.dumps({"url": "https://news.example/rss", "max_items": 5})
    assert (
        trayapp(
            profile, "charms", "add", "feed-importer", "--name", "News", "--settings-json", settings
        ).returncode
        == 0
    )

    listed = json.loads(trayapp(profile, "charms", "list", "--json").stdout)
    assert [c["id"] for c in listed["charms"]] == ["news"]
    assert listed["charms"][0]["settings"]["max_items"] == 5

    paused = trayapp(profile, "charms", "pause", "news", "--for", "2h")
    assert paused.returncode == 0 and paused.stdout.startswith("paused charm 'news' until ")
    status = json.loads(trayapp(profile, "status", "--json").stdout)["charms"][0]["status"]
    assert status["paused"] is True and status["state"] == "paused" and status["paused_until"]

    assert trayapp(profile, "charms", "resume", "--all").returncode == 0
    status = json.loads(trayapp(profile, "status", "--json").stdout)["charms"][0]["status"]
    assert status["paused"] is False and status["paused_until"] is None

    removed = trayapp(profile, "charms", "remove", "news")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(trayapp(profile, "charms", "list", "--json").stdout)["charms"] == []


# --- run --headless ----------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_headless_syncs_and_stops_gracefully(
    profile: Path, feed_url: str, sig: signal.Signals
) -> None:
    add = trayapp(
        profile,
        "charms",
        "add",
        "feed-importer",
        "--name",
        "a",
        "--set",
        f"url={feed_url}/atom.xml",
    )
    assert add.returncode == 0, add.stderr
    with spawned(profile, "run", "--headless") as (proc, err):
        err.wait_for(r"running headless with 1 charm")
        err.wait_for(r"charm a: ok \(\+2 ~0 -0\)")
        # While it runs, `sync` goes through it instead of opening the profile twice.
        via = trayapp(profile, "sync", "a", "--json")
        assert via.returncode == 0, via.stderr
        result = json.loads(via.stdout)["results"][0]
        assert result["outcome"] == "ok" and result["ok"] is True
        # The report's message survives the trip through the running engine.
        assert result["message"] == "not modified"
        # The same documented shape as a sync without a running engine.
        assert set(result) == {
            "charm_id", "outcome", "ok", "counts", "message", "partial", "retry_after"
        }  # fmt: skip
        proc.send_signal(sig)
        err.wait_for(r"stopped$")
        assert proc.wait(timeout=WAIT) == 0
    # The log file the docs promise: the same lines, in the profile's logs dir, private.
    log_file = profile / "logs" / "trayapp.log"
    assert "charm a: ok (+2 ~0 -0)" in log_file.read_text(encoding="utf-8")
    assert log_file.stat().st_mode & 0o777 == 0o600
    assert "Traceback" not in err.rest()
    status = json.loads(trayapp(profile, "status", "--json").stdout)["charms"][0]["status"]
    assert status["last_outcome"] == "ok" and status["totals"]["added"] == 2


@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [
        (signal.SIGTERM, 143, "trayapp: terminated; runs in progress were recorded as cancelled"),
        (signal.SIGINT, 130, "trayapp: interrupted"),
    ],
)
def test_sync_stopped_by_a_signal_records_its_run_as_cancelled(
    profile: Path, sig: signal.Signals, code: int, said: str
) -> None:
    # A feed server that accepts the connection and never answers: the run is in progress
    # (waiting on the network) when the signal arrives, and the test knows when that is.
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            held.append(listener.accept()[0])
            accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/feed"
    assert trayapp(profile, "charms", "add", "feed-importer", "--set", f"url={url}").returncode == 0
    try:
        with spawned(profile, "sync", "--json") as (proc, err):
            assert accepted.wait(WAIT), "the sync never fetched the feed"
            proc.send_signal(sig)
            proc.wait(timeout=WAIT)
    finally:
        listener.close()
        for conn in held:
            conn.close()
    stderr = err.rest()
    assert proc.returncode == code, stderr
    assert stderr.strip().splitlines() == [said]  # one line, no traceback
    shown = json.loads(trayapp(profile, "charms", "show", "feed-importer", "--json").stdout)
    assert [r["outcome"] for r in shown["history"]] == ["cancelled"]
    assert shown["status"]["state"] == "scheduled"  # due again at the next start


def test_a_second_headless_engine_on_the_same_profile_is_refused(profile: Path) -> None:
    with spawned(profile, "run", "--headless") as (proc, err):
        err.wait_for(r"running headless")
        line = one_error_line(trayapp(profile, "run", "--headless"))
        assert "already running for the profile" in line
        proc.terminate()


# --- no tray, emulator routing ------------------------------------------------------------------


def test_no_arguments_without_a_display_explains_how_to_run_headless(profile: Path) -> None:
    env = {
        k: v
        for k, v in _env().items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    result = subprocess.run(
        [sys.executable, "-m", "trayapp", "--profile", str(profile)],
        capture_output=True, text=True, env=env, timeout=WAIT,
    )  # fmt: skip
    line = one_error_line(result)
    assert "trayapp run --headless" in line


def test_emulator_arguments_go_to_the_emulator_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    fake = types.ModuleType("trayapp.emulator.cli")
    fake.main = lambda argv: calls.append(list(argv)) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trayapp.emulator.cli", fake)
    import trayapp.emulator

    monkeypatch.setattr(trayapp.emulator, "cli", fake, raising=False)

    assert cli.main(["--profile", "/tmp/x", "emulator", "serve", "--port", "0", "-v"]) == 7
    assert calls == [["serve", "--port", "0", "-v"]]


def test_version(profile: Path) -> None:
    result = trayapp(profile, "--version")
    assert result.returncode == 0 and re.match(r"trayapp \S+", result.stdout)


# --- helpers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", 90), ("15m", 900), ("1h30m", 5400), ("2d", 172800), ("1.5h", 5400), ("10 min", 600)],
)
def test_parse_duration(text: str, expected: int) -> None:
    assert parse_duration(text) == timedelta(seconds=expected)
    assert parse_duration(format_duration(timedelta(seconds=expected))) == timedelta(
        seconds=expected
    )


@pytest.mark.parametrize("text", ["", "15", "m", "15x", "0s", "1h junk"])
def test_parse_duration_refuses_garbage(text: str) -> None:
    with pytest.raises(ConfigError, match="use a number and a unit"):
        parse_duration(text)


def test_settings_from_set_and_json() -> None:
    got = settings_from_args(
        '{"url": "https://a", "max_items": 3}', ["url=https://b?x=1", "max_items:=5", "flag:=true"]
    )
    assert got == {"url": "https://b?x=1", "max_items": 5, "flag": True}


def test_changes_made_while_an_engine_runs_reach_it(profile: Path, feed_url: str) -> None:
    with spawned(profile, "run", "--headless") as (proc, err):
        err.wait_for(r"running headless with 0 charm")
        add = trayapp(
            profile,
            "charms",
            "add",
            "feed-importer",
            "--name",
            "late",
            "--set",
            f"url={feed_url}/atom.xml",
        )
        assert add.returncode == 0 and add.stderr == "", add.stderr
        err.wait_for(r"charm late: ok \(\+2 ~0 -0\)")  # the running engine scheduled it

        assert trayapp(profile, "charms", "pause", "late").returncode == 0
        status = json.loads(trayapp(profile, "status", "--json").stdout)["charms"][0]["status"]
        assert status["paused"] is True and status["state"] == "paused"

        assert trayapp(profile, "charms", "remove", "late").returncode == 0
        # The running engine removed it itself (cancelling any run before the data went).
        err.wait_for(r"removed charm late$")
        proc.terminate()
        assert proc.wait(timeout=WAIT) == 0
    assert "Traceback" not in err.rest()
    assert json.loads(trayapp(profile, "status", "--json").stdout)["charms"] == []


def test_export_writes_the_synced_items_and_refuses_unknown_formats(
    profile: Path, feed_url: str, tmp_path: Path
) -> None:
    added = trayapp(
        profile, "charms", "add", "feed-importer", "--name", "Blog",
        "--set", f"url={feed_url}/rss2-guid.xml",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert trayapp(profile, "sync", "blog").returncode == 0

    dest = tmp_path / "out" / "blog.jsonl"
    result = trayapp(profile, "export", "blog", "--format", "jsonl", "-o", str(dest), "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["count"] == 3 and doc["path"] == str(dest.resolve())
    lines = dest.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    titles = {json.loads(line)["title"] for line in lines}
    status = json.loads(trayapp(profile, "status", "--json").stdout)
    assert status["charms"][0]["status"]["totals"]["added"] == len(titles)
    # No temporary file is left beside the export.
    assert [p.name for p in dest.parent.iterdir()] == ["blog.jsonl"]

    refused = trayapp(profile, "export", "blog", "--format", "ics", "--output", str(dest))
    assert refused.returncode == 1
    line = one_error_line(refused)
    assert "cannot export 'ics'" in line and "offers: jsonl" in line
    assert len(dest.read_text(encoding="utf-8").splitlines()) == 3  # the old export is intact
