"""Issue 14 items 1, 2, 4 and 5 as a user meets them: ``python -m trayapp`` in subprocesses on
temporary profiles, a real feed server process on 127.0.0.1, a real SQLite file damaged by hand.

Private data (0700/0600), one engine per profile (the lock in the profile, a safe socket
folder), no tracebacks (damaged rows, deep settings, a closed pipe, a full disk, global options
after the command) and no silent damage (an emptied database, unreadable export rows, --bind to
cells that are not the charm's).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from profile_guard import (
    ROOT,
    WAIT,
    cli_env,
    hold_engine_lock,
    one_error_line,
    plant_socket_dir,
    run_cli,
)

FEEDS = ROOT / "tests" / "data" / "feeds"


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
        assert proc.stdout is not None
        line = proc.stdout.readline()
        port = re.search(r"port (\d+)", line)
        assert port is not None, line
        yield f"http://127.0.0.1:{port.group(1)}"
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT)


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return tmp_path / "profile"


def add_feed(profile: Path, name: str, url: str) -> None:
    done = run_cli(profile, "charms", "add", "feed-importer", "--name", name, "--set", f"url={url}")
    assert done.returncode == 0, done.stderr


def modes(folder: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(folder.stat().st_mode)}
    for path in folder.rglob("*"):
        if not path.is_symlink():
            out[str(path.relative_to(folder))] = stat.S_IMODE(path.stat().st_mode)
    return out


# --- 14.1 private data -------------------------------------------------------------------------


def test_a_new_profile_is_private(profile: Path, feed_url: str) -> None:
    add_feed(profile, "news", f"{feed_url}/atom.xml")
    assert run_cli(profile, "sync").returncode == 0
    found = modes(profile)
    assert found["."] == 0o700
    files = {k: v for k, v in found.items() if k != "." and (profile / k).is_file()}
    assert "trayapp.db" in files
    assert all(mode == 0o600 for mode in files.values()), found


def test_an_existing_profile_is_made_private_once_and_says_so(profile: Path) -> None:
    add_feed(profile, "news", "http://127.0.0.1:9/feed.xml")
    os.chmod(profile, 0o755)
    (profile / "logs").mkdir()
    (profile / "logs" / "old.log").write_text("x")
    for path in [profile / "trayapp.db", profile / "logs" / "old.log"]:
        os.chmod(path, 0o644)
    os.chmod(profile / "logs", 0o755)
    first = run_cli(profile, "status", "-v")
    assert first.returncode == 0, first.stderr
    assert len(re.findall(r"made the profile .* private", first.stderr)) == 1, first.stderr
    found = modes(profile)
    assert found["."] == 0o700 and found["logs"] == 0o700
    assert found["trayapp.db"] == 0o600 and found["logs/old.log"] == 0o600
    again = run_cli(profile, "status", "-v")
    assert "private" not in again.stderr  # logged once: nothing left to change


def test_exports_are_private_unless_the_user_chose_the_path(
    profile: Path, feed_url: str, tmp_path: Path
) -> None:
    add_feed(profile, "news", f"{feed_url}/atom.xml")
    assert run_cli(profile, "sync").returncode == 0
    work = tmp_path / "cwd"
    work.mkdir()
    default = run_cli(profile, "export", "news", "--format", "jsonl", cwd=work)
    assert default.returncode == 0, default.stderr
    assert stat.S_IMODE((work / "news.jsonl").stat().st_mode) == 0o600
    chosen = tmp_path / "chosen.jsonl"
    env = cli_env()
    done = subprocess.run(
        ["sh", "-c", 'umask 022; exec "$0" -m trayapp --profile "$1" export news '
         '--format jsonl -o "$2"', sys.executable, str(profile), str(chosen)],
        capture_output=True, text=True, env=env, timeout=WAIT, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(chosen.stat().st_mode) == 0o644  # the user's umask, as any program


# --- 14.2 one engine per profile ---------------------------------------------------------------


def test_an_engine_holding_the_lock_without_a_socket_is_named_not_bypassed(
    profile: Path, tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    with hold_engine_lock(profile, "headless engine"):
        second = one_error_line(run_cli(profile, "run", "--headless", env=env))
        assert "already running for the profile" in second and str(os.getpid()) in second
        started = time.monotonic()
        cli = one_error_line(run_cli(profile, "charms", "pause", "--all", env=env))
        assert "does not answer on its control socket" in cli and str(os.getpid()) in cli
        assert time.monotonic() - started < WAIT
        sync = one_error_line(run_cli(profile, "sync", env=env))
        assert "does not answer" in sync
    # Lock released: the CLI works on its own again.
    assert run_cli(profile, "charms", "pause", "--all", env=env).returncode == 0


def test_a_one_shot_sync_holding_the_profile_makes_others_wait_with_a_reason(
    profile: Path, tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    with hold_engine_lock(profile, "trayapp sync"):
        line = one_error_line(run_cli(profile, "charms", "resume", "--all", env=env))
        assert "another trayapp sync" in line and "wait for it to finish" in line
        engine = one_error_line(run_cli(profile, "run", "--headless", env=env))
        assert "trayapp sync" in engine and "Traceback" not in engine


def _headless_beside(profile: Path, tmp: Path, planted: Path) -> None:
    """``run --headless`` with a planted socket folder: it starts anyway, from a private
    fallback folder (robust's fallback, recorded in the profile), never through the planted
    one; the CLI reaches it there; the planted folder is left untouched and empty."""
    env = cli_env(tmp)
    before = (planted.stat().st_uid, stat.S_IMODE(planted.stat().st_mode))
    proc = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), "run", "--headless"],
        stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "running headless" in line:
                break
        assert any("running headless" in ln for ln in seen), seen
        assert any("private folder" in ln for ln in seen), seen  # said, once, in the log
        # A second engine is still refused, and the CLI talks to the first.
        second = run_cli(profile, "run", "--headless", env=env)
        assert second.returncode == 1 and "already running for the profile" in second.stderr
        synced = run_cli(profile, "sync", "--json", env=env)
        assert synced.returncode == 0 and "Traceback" not in synced.stderr, synced.stderr
        assert (planted.stat().st_uid, stat.S_IMODE(planted.stat().st_mode)) == before
        assert list(planted.iterdir()) == []  # never a socket in the planted folder
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT)
    assert proc.returncode == 0


def test_a_symlink_planted_as_the_socket_folder_is_not_followed(
    profile: Path, tmp_path: Path
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    target = plant_socket_dir(tmp, "symlink")
    _headless_beside(profile, tmp, target)


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder owned by another user needs root")
def test_a_socket_folder_owned_by_another_user_is_not_used(profile: Path, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    os.chmod(tmp_path, 0o755)
    folder = plant_socket_dir(tmp, "foreign")
    _headless_beside(profile, tmp, folder)


def test_a_command_with_another_environment_finds_the_running_engine(
    profile: Path, feed_url: str, tmp_path: Path
) -> None:
    """A tray in the desktop session (XDG_RUNTIME_DIR set) and a cron job without it: the cron
    job's commands reach the running engine through the socket it recorded in the profile,
    and its second engine is refused; nothing opens the profile beside the first."""
    add_feed(profile, "news", f"{feed_url}/atom.xml")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    session = cli_env(XDG_RUNTIME_DIR=str(runtime))
    (tmp_path / "tmp").mkdir()
    cron = cli_env(tmp_path / "tmp")  # no XDG_RUNTIME_DIR: another socket folder
    proc = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), "run", "--headless"],
        stderr=subprocess.PIPE, text=True, env=session, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "running headless" in line:
                break
        second = run_cli(profile, "run", "--headless", env=cron)
        assert second.returncode == 1 and "already running for the profile" in second.stderr
        paused = run_cli(profile, "charms", "pause", "news", env=cron)
        assert paused.returncode == 0, paused.stderr
        synced = run_cli(profile, "sync", "--json", env=cron)
        assert synced.returncode == 0, synced.stderr
        assert json.loads(synced.stdout)["results"][0]["outcome"] == "ok"
        status = json.loads(run_cli(profile, "status", "--json", env=cron).stdout)
        assert status["charms"][0]["status"]["paused"] is True  # the engine took the pause
        assert not list((tmp_path / "tmp").glob("trayapp-*/*.sock"))  # no second socket
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT)
    assert not (profile / "ipc-socket").exists()  # the record goes with the engine


def test_a_loosened_socket_folder_of_ours_is_tightened(profile: Path, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    folder = plant_socket_dir(tmp, "loose")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), "run", "--headless"],
        stderr=subprocess.PIPE, text=True, env=cli_env(tmp), cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "running headless" in line:
                break
        assert any("running headless" in ln for ln in seen), seen
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        # The CLI reaches it there: the sync goes through the running engine.
        status = run_cli(profile, "sync", "--json", env=cli_env(tmp))
        assert status.returncode == 0, status.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT)


# --- 14.4 no tracebacks ------------------------------------------------------------------------


def test_a_damaged_charm_row_and_status_row_cost_only_their_charm(
    profile: Path, feed_url: str
) -> None:
    add_feed(profile, "alpha", f"{feed_url}/atom.xml")
    add_feed(profile, "beta", f"{feed_url}/rss2-guid.xml")
    add_feed(profile, "gamma", f"{feed_url}/rss2-noguid.xml")
    assert run_cli(profile, "sync").returncode == 0
    with sqlite3.connect(profile / "trayapp.db") as conn:
        conn.execute("UPDATE items SET value='{not json' WHERE coll='app:charms' AND key='alpha'")
        conn.execute("UPDATE items SET value='[[[' WHERE coll='app:status' AND key='beta'")
    conn.close()

    status = run_cli(profile, "status")
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    assert re.search(r"^beta\s", status.stdout, re.M) and re.search(
        r"^gamma\s", status.stdout, re.M
    )
    assert "alpha" in status.stderr and "trayapp charms remove alpha" in status.stderr
    doc = json.loads(run_cli(profile, "status", "--json").stdout)
    assert [c["id"] for c in doc["charms"]] == ["beta", "gamma"]
    assert {p["charm_id"] for p in doc["problems"]} == {"alpha", "beta"}

    listed = run_cli(profile, "charms", "list")
    assert listed.returncode == 0 and "gamma" in listed.stdout and "Traceback" not in listed.stderr
    synced = run_cli(profile, "sync", "--json")
    assert "Traceback" not in synced.stderr
    results = {r["charm_id"]: r["outcome"] for r in json.loads(synced.stdout)["results"]}
    assert results == {"beta": "ok", "gamma": "ok"}
    shown = one_error_line(run_cli(profile, "charms", "show", "alpha"))
    assert "damaged" in shown

    proc = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), "run", "--headless"],
        stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            assert "Traceback" not in line
            if "running headless" in line:
                assert "with 2 charm(s)" in line
                break
        removed = run_cli(profile, "charms", "remove", "alpha")  # through the running engine
        assert removed.returncode == 0, removed.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT)
    after = run_cli(profile, "status", "--json")
    assert json.loads(after.stdout)["problems"] == [] and after.stderr == ""


def test_deep_or_huge_settings_are_refused_with_a_sentence(profile: Path, tmp_path: Path) -> None:
    deep = "[" * 30000 + "]" * 30000
    line = one_error_line(
        run_cli(profile, "charms", "add", "feed-importer", "--settings-json", deep)
    )
    assert "nested too deeply" in line
    line = one_error_line(
        run_cli(profile, "charms", "add", "feed-importer", "--set", f"url:={deep}")
    )
    assert "nested too deeply" in line
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"url": "http://x/" + "a" * 400_000}))
    line = one_error_line(
        run_cli(profile, "charms", "add", "feed-importer", "--settings-json", f"@{huge}")
    )
    assert "too large" in line


def test_json_piped_into_a_reader_that_stops_ends_quietly(profile: Path, feed_url: str) -> None:
    add_feed(profile, "news", f"{feed_url}/atom.xml")
    read, write = os.pipe()
    os.close(read)  # `| head -c0`: the reader is gone before we write
    proc = subprocess.run(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), "patterns", "list", "--json"],
        stdout=write, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=ROOT, timeout=WAIT,
    )  # fmt: skip
    os.close(write)
    assert proc.stderr == ""
    assert proc.returncode == 141
    shell = subprocess.run(
        ["sh", "-c", '"$0" -m trayapp --profile "$1" status --json | head -c 10 >/dev/null; '
         'echo "${PIPESTATUS:-ok}"', sys.executable, str(profile)],
        capture_output=True, text=True, env=cli_env(), cwd=ROOT, timeout=WAIT,
    )  # fmt: skip
    assert "Traceback" not in shell.stderr and "BrokenPipe" not in shell.stderr


def test_global_options_work_after_the_command(profile: Path) -> None:
    elsewhere = profile.parent / "elsewhere"
    for args in (
        ["accounts", "list", "-v"],
        ["accounts", "status", "-q"],
        ["charms", "list", "-v", "--profile", str(elsewhere)],
        ["status", "--json", "-v"],
        ["--json", "status"],
        ["--json", "charms", "list"],
    ):
        done = run_cli(profile, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert "usage" not in done.stderr, (args, done.stderr)
    assert json.loads(run_cli(profile, "--json", "status").stdout)["version"] == 1
    assert (elsewhere / "trayapp.db").exists()  # --profile after the command won


@pytest.mark.skipif(os.getuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_said_in_words(profile: Path, feed_url: str, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        add_feed(profile, "news", f"{feed_url}/atom.xml")  # the profile on a roomy disk
        assert run_cli(profile, "sync").returncode == 0
        small = disk / "profile"  # and one on the small one
        add_feed(small, "news", f"{feed_url}/atom.xml")
        assert run_cli(small, "sync").returncode == 0
        filler = disk / "filler"
        with filler.open("wb") as fh, pytest.raises(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        out = disk / "out.jsonl"
        export = one_error_line(
            run_cli(profile, "export", "news", "--format", "jsonl", "-o", str(out))
        )
        assert "the disk is full" in export and "intact" in export
        assert not out.exists() and not list(disk.glob(".out.jsonl.*"))  # nothing half-written
        added = run_cli(small, "charms", "add", "feed-importer", "--name", "more",
                        "--set", f"url={feed_url}/rss2-guid.xml")  # fmt: skip
        line = one_error_line(added)
        assert "is full" in line and "free some disk space" in line
        synced = run_cli(small, "sync", "--json")
        assert "Traceback" not in synced.stderr and "Errno" not in synced.stderr
        filler.unlink()
        assert run_cli(small, "status").returncode == 0  # nothing was lost
        assert "news" in run_cli(small, "charms", "list").stdout
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# --- 14.5 no silent damage ---------------------------------------------------------------------


def test_an_emptied_database_is_damage_unless_the_profile_is_new(profile: Path) -> None:
    add_feed(profile, "news", "http://127.0.0.1:9/feed.xml")
    (profile / "trayapp.db").write_bytes(b"")
    line = one_error_line(run_cli(profile, "charms", "list"))
    assert "empty (0 bytes)" in line and "moved" in line
    kept = [p for p in profile.iterdir() if p.name.startswith("trayapp.db.corrupt-")]
    assert len(kept) == 1 and kept[0].stat().st_size == 0
    assert run_cli(profile, "charms", "list").returncode == 0  # then a fresh start, as told
    new = profile.parent / "new"
    new.mkdir()
    (new / "trayapp.db").write_bytes(b"")  # a first start that crashed: nothing to lose
    assert run_cli(new, "charms", "list").returncode == 0


def test_export_names_rows_it_could_not_read_and_fails(
    profile: Path, feed_url: str, tmp_path: Path
) -> None:
    add_feed(profile, "news", f"{feed_url}/atom.xml")
    assert run_cli(profile, "sync").returncode == 0
    with sqlite3.connect(profile / "trayapp.db") as conn:
        rows = conn.execute(
            "SELECT key FROM items WHERE coll='charm:news:items' ORDER BY key"
        ).fetchall()
        assert len(rows) >= 2
        bad = rows[0][0]
        conn.execute(
            "UPDATE items SET value='{broken' WHERE coll='charm:news:items' AND key=?", (bad,)
        )
    conn.close()
    out = tmp_path / "news.jsonl"
    done = run_cli(profile, "export", "news", "--format", "jsonl", "-o", str(out), "--json")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert bad in done.stderr and "could not be read" in done.stderr
    doc = json.loads(done.stdout)
    assert doc["unreadable"] == [{"collection": "charm:news:items", "key": bad}]
    assert doc["count"] == len(rows) - 1
    assert len(out.read_text().splitlines()) == len(rows) - 1  # every readable neighbour


def test_bind_cannot_reach_another_charms_or_an_accounts_cells(profile: Path) -> None:
    add_feed(profile, "first", "http://127.0.0.1:9/a.xml")
    url = "url=http://127.0.0.1:9/b.xml"
    for cell, words in (
        ("charm:first:state", "belongs to another charm"),
        ("account:someone:auth", "private to the accounts"),
        ("app:status", "the app's own records"),
    ):
        bind = f"state={cell}"
        line = one_error_line(
            run_cli(profile, "charms", "add", "feed-importer", "--set", url, "--bind", bind)
        )
        assert words in line, line
    ok = run_cli(profile, "charms", "add", "feed-importer", "--name", "second", "--set", url,
                 "--bind", "state=shared:feed-state", "--json")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["charm"]["bindings"]["state"] == "shared:feed-state"
