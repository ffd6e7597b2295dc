"""The exec-importer pattern: a real /bin/sh program speaking the JSON-lines protocol.

Every test runs real processes through the app's real engine (``trayapp.api.testing``: real
SQLite store, scheduler, outcome classification). The example program of docs/exec-patterns.md
(examples/exec-pattern/notes-importer.sh) is the one under test where it can be; small inline
scripts cover the protocol's failure cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from trayapp.api.testing import run_pattern
from trayapp.core.errors import SettingsError
from trayapp.patterns.exec_importer import ExecImporter

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "exec-pattern" / "notes-importer.sh"


def script(tmp_path: Path, body: str, name: str = "prog.sh") -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text('Shopping "list"\nmilk\n')
    (folder / "b.txt").write_text("Ideas\n")
    return folder


def processes_with_env(marker: str) -> list[int]:
    """Pids of our processes whose environment holds ``marker`` (a charm's TRAYAPP_CHARM_ID)."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry.name))
    return found


async def test_example_imports_items_and_round_trips_its_state(tmp_path: Path) -> None:
    folder = notes(tmp_path)
    settings = {"command": str(EXAMPLE), "options": {"folder": str(folder)}}
    first = await run_pattern(ExecImporter, settings, profile=tmp_path / "p")
    assert first.kind == "ok", first.outcome.message
    assert first.items["items"] == {
        "a.txt": {"title": 'Shopping "list"', "bytes": 21},
        "b.txt": {"title": "Ideas", "bytes": 6},
    }
    assert first.cells["state"] == {"runs": 1}
    assert (first.report.added, first.report.updated) == (2, 0)
    assert first.report.message == "2 notes"
    assert f"INFO stderr: importing 2 notes from {folder}" in first.logs

    (folder / "b.txt").write_text("Ideas, more\n")
    second = await run_pattern(ExecImporter, settings, profile=tmp_path / "p")
    assert second.kind == "ok"
    assert second.cells["state"] == {"runs": 2}  # it read the state it saved
    assert (second.report.added, second.report.updated) == (0, 1)


async def test_example_rate_limit_answer_keeps_data_and_says_when(tmp_path: Path) -> None:
    folder = notes(tmp_path)
    settings = {"command": str(EXAMPLE), "options": {"folder": str(folder)}}
    await run_pattern(ExecImporter, settings, profile=tmp_path / "p")
    (folder / ".lock").write_text("120")
    (folder / "c.txt").write_text("new\n")
    run = await run_pattern(ExecImporter, settings, profile=tmp_path / "p")
    assert run.kind == "rate_limited"
    assert run.outcome.message == "the folder is locked by its writer"
    assert run.outcome.retry_after is not None
    assert run.cells["state"] == {"runs": 1}
    assert sorted(run.items["items"]) == ["a.txt", "b.txt"]


async def test_example_hang_is_killed_at_timeout_with_its_whole_group(tmp_path: Path) -> None:
    folder = notes(tmp_path)
    (folder / ".lock").write_text("60")
    settings = {
        "command": str(EXAMPLE),
        "options": {"folder": str(folder), "wait_for_lock": True},
        "timeout_seconds": 1,
    }
    run = await run_pattern(ExecImporter, settings, profile=tmp_path / "p")
    assert run.kind == "timeout"
    assert "ran longer than 1 s and was stopped" in run.outcome.message
    assert run.items["items"] == {} and run.cells["state"] is None
    assert any("waiting for" in line for line in run.logs)
    # The script and its `sleep` child are gone (the app's deadline would not reach the child).
    assert processes_with_env(f"TRAYAPP_CHARM_ID={run.charm_id}") == []


async def test_example_without_folder_is_a_config_error(tmp_path: Path) -> None:
    run = await run_pattern(ExecImporter, {"command": str(EXAMPLE)}, profile=tmp_path / "p")
    assert run.kind == "config_error"
    assert "folder" in run.outcome.message


async def test_state_commits_only_with_its_items(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        """\
        cat > /dev/null
        echo '{"type": "item", "key": "one", "value": 1}'
        echo '{"type": "state", "value": "cursor-1"}'
        echo '{"type": "commit"}'
        echo '{"type": "item", "key": "two", "value": 2}'
        echo '{"type": "state", "value": "cursor-2"}'
        echo '{"type": "error", "kind": "server_error", "message": "upstream said 502"}'
        """,
    )
    run = await run_pattern(ExecImporter, {"command": str(prog)}, profile=tmp_path / "p")
    assert run.kind == "server_error" and run.outcome.message == "upstream said 502"
    assert run.items["items"] == {"one": 1}
    assert run.cells["state"] == "cursor-1"


async def test_malformed_line_is_a_bug_and_loses_no_stored_data(tmp_path: Path) -> None:
    prog = tmp_path / "prog.sh"
    script(
        tmp_path,
        """\
        cat > /dev/null
        echo '{"type": "item", "key": "one", "value": 1}'
        echo '{"type": "state", "value": "s1"}'
        echo '{"type": "report"}'
        """,
    )
    first = await run_pattern(ExecImporter, {"command": str(prog)}, profile=tmp_path / "p")
    assert first.kind == "ok" and first.items["items"] == {"one": 1}
    script(
        tmp_path,
        """\
        cat > /dev/null
        echo '{"type": "delete", "key": "one"}'
        echo '{"type": "item", "key": "two", "value": 2}'
        echo '{"type": "state", "value": "s2"}'
        echo 'not json at all'
        echo '{"type": "report"}'
        """,
    )
    run = await run_pattern(ExecImporter, {"command": str(prog)}, profile=tmp_path / "p")
    assert run.kind == "bug"
    assert "line 4 of prog.sh's output is not JSON" in run.outcome.message
    assert "nothing after its last commit was stored" in run.outcome.message
    assert run.items["items"] == {"one": 1} and run.cells["state"] == "s1"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ('{"type": "shout"}', "unknown type 'shout'"),
        ('{"type": "item", "value": 1}', 'needs a "key"'),
        ('{"type": "item", "key": "k"}', 'has no "value"'),
        ('{"type": "error", "kind": "sad"}', 'needs a "kind"'),
        ('{"type": "report"}\n{"type": "item", "key": "k", "value": 1}', "must be last"),
        ("[1, 2]", 'not a JSON object with a "type"'),
        ('{"type": "item", "key": "k", "value": 1}', "ended without a report line"),
    ],
)
async def test_protocol_violations_are_bugs_naming_the_problem(
    tmp_path: Path, lines: str, expected: str
) -> None:
    body = "cat > /dev/null\ncat <<'END'\n" + lines + "\nEND\n"
    prog = script(tmp_path, body)
    run = await run_pattern(ExecImporter, {"command": str(prog)}, profile=tmp_path / "p")
    assert run.kind == "bug"
    assert expected in run.outcome.message
    assert run.items["items"] == {}


async def test_reads_settings_deletes_and_reports_counts(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        """\
        python3 -c '
        import json, sys
        req = json.load(sys.stdin)
        assert req["protocol"] == 1 and req["now"].endswith("Z"), req
        for key in req["settings"]["keys"]:
            print(json.dumps({"type": "item", "key": key, "value": {"state": req["state"]}}))
        for key in req["settings"].get("drop", []):
            print(json.dumps({"type": "delete", "key": key}))
        print(json.dumps({"type": "state", "value": len(req["settings"]["keys"])}))
        print(json.dumps({"type": "report", "partial": ["x"], "next_poll": 3600}))
        '
        """,
    )
    settings = {"command": str(prog), "options": {"keys": ["a", "b", "c"]}}
    run = await run_pattern(ExecImporter, settings, profile=tmp_path / "p")
    assert run.kind == "ok", run.outcome.message
    assert run.items["items"] == {k: {"state": None} for k in "abc"}
    assert run.report.partial == ("x",) and run.report.next_poll == timedelta(hours=1)
    assert run.cells["state"] == 3


async def test_failing_exit_is_a_bug_with_its_last_error_line(tmp_path: Path) -> None:
    prog = script(tmp_path, "echo 'token file missing' >&2\nexit 3\n")
    run = await run_pattern(ExecImporter, {"command": str(prog)}, profile=tmp_path / "p")
    assert run.kind == "bug"
    assert "prog.sh exited with status 3 without an error line" in run.outcome.message
    assert "token file missing" in run.outcome.message


async def test_stderr_logging_is_bounded(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        """\
        i=0
        while [ $i -lt 250 ]; do echo "line $i" >&2; i=$((i + 1)); done
        echo '{"type": "report"}'
        """,
    )
    run = await run_pattern(ExecImporter, {"command": str(prog)}, profile=tmp_path / "p")
    assert run.kind == "ok"
    stderr_lines = [line for line in run.logs if line.startswith("INFO stderr: line ")]
    assert len(stderr_lines) == 200
    assert "INFO stderr: 50 more lines not logged" in run.logs


def test_command_must_exist_and_be_executable(tmp_path: Path) -> None:
    pattern = ExecImporter()
    with pytest.raises(SettingsError, match="does not exist; give the full path"):
        pattern.validate_settings({"command": str(tmp_path / "missing.sh")})
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(SettingsError, match=r"is not executable; make it so with: chmod \+x"):
        pattern.validate_settings({"command": str(plain)})
    with pytest.raises(SettingsError, match="not a program found on PATH"):
        pattern.validate_settings({"command": "no-such-program-xyz"})
    with pytest.raises(SettingsError, match="timeout_seconds: must be at most 3600"):
        pattern.validate_settings({"command": str(EXAMPLE), "timeout_seconds": 7200})
    # A name on PATH is stored as the full path the app will run.
    assert pattern.validate_settings({"command": "sh"}).command.startswith("/")


async def test_program_removed_later_needs_the_user(tmp_path: Path) -> None:
    prog = script(tmp_path, 'echo \'{"type": "report"}\'\n')
    first = await run_pattern(ExecImporter, {"command": str(prog)}, profile=tmp_path / "p")
    assert first.kind == "ok"
    prog.unlink()
    run = await run_pattern(ExecImporter, {"command": str(prog)}, profile=tmp_path / "p")
    assert run.kind == "config_error"
    assert "does not exist" in run.outcome.message


def test_cli_adds_syncs_and_exports_a_shell_script_charm(tmp_path: Path) -> None:
    folder = notes(tmp_path)
    profile = tmp_path / "profile"

    def trayapp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )

    settings = json.dumps({"command": str(EXAMPLE), "options": {"folder": str(folder)}})
    added = trayapp(
        "charms", "add", "exec-importer", "--name", "Notes", "--settings-json", settings
    )
    assert added.returncode == 0, added.stderr
    synced = trayapp("sync", "--json")
    assert synced.returncode == 0, synced.stderr
    (entry,) = json.loads(synced.stdout)["results"]
    assert entry["outcome"] == "ok" and entry["counts"]["added"] == 2
    out = tmp_path / "notes.jsonl"
    exported = trayapp("export", "notes", "--format", "jsonl", "--output", str(out))
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["key"] for row in rows] == ["a.txt", "b.txt"]
