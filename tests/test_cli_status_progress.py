"""`trayapp status` shows a running charm's progress while a tray or headless engine runs it.

``ctx.progress`` (and the exec protocol's ``progress`` line) lives in the running engine's
memory, not in the store that ``status`` reads; docs/plugins.md promises it in ``status --json``
while the run lasts, so ``status`` asks the running engine for it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.test_cli import WAIT, Lines, spawned, trayapp

SCRIPT = """#!/bin/sh
cat > /dev/null
printf '{"type": "item", "key": "a", "value": 1}\\n'
printf '{"type": "progress", "done": 2, "total": 1500, "unit": "notes"}\\n'
touch "{folder}/printed"
while [ ! -e "{folder}/go" ]; do sleep 0.05; done
printf '{"type": "report", "message": "done"}\\n'
"""


def status_of(profile: Path) -> dict[str, Any]:
    done = trayapp(profile, "status", "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)["charms"][0]["status"])


def test_status_shows_the_progress_of_a_run_in_the_running_engine(tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    script = tmp_path / "slow.sh"
    script.write_text(SCRIPT.replace("{folder}", str(tmp_path)))
    script.chmod(0o755)
    added = trayapp(
        profile, "charms", "add", "exec-importer", "--name", "slow", "--set", f"command={script}"
    )
    assert added.returncode == 0, added.stderr
    with spawned(profile, "run", "--headless") as (proc, err):
        try:
            _watch_progress(profile, tmp_path, err)
        finally:
            # Let the script end even when an assertion failed: killing the engine (spawned's
            # clean-up) would otherwise leave it waiting for this file for ever.
            (tmp_path / "go").touch()
        err.wait_for(r"charm slow: ok")
        done = status_of(profile)
        assert done["progress"] is None and done["running"] is False
        proc.terminate()
        assert proc.wait(timeout=WAIT) == 0


def _watch_progress(profile: Path, tmp_path: Path, err: Lines) -> None:
    """Wait for the run to print its progress; check `status` shows it (JSON and table)."""
    err.wait_for(r"running headless with 1 charm")
    deadline = time.monotonic() + WAIT
    while not (tmp_path / "printed").exists():
        assert time.monotonic() < deadline, "the script did not start"
        time.sleep(0.05)
    # The engine reads the line a moment after the script printed it: ask until it shows.
    while (status := status_of(profile))["progress"] is None:
        assert status["running"], status
        assert time.monotonic() < deadline, "no progress in status --json"
        time.sleep(0.1)
    assert status["progress"] == {"done": 2, "total": 1500, "unit": "notes"}
    human = trayapp(profile, "status")
    assert "running (2 of 1,500 notes)" in human.stdout, human.stdout
