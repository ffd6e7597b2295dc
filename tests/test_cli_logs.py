"""``trayapp logs``: the log file's path, its last lines, and following it across rotation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def trayapp(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "trayapp", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_path_lines_and_json(tmp_path: Path) -> None:
    profile = tmp_path / "p"
    done = trayapp("logs", "--profile", str(profile))
    assert done.returncode == 0
    assert done.stdout.strip() == str(profile / "logs" / "trayapp.log")
    assert "no log yet" in done.stderr
    (profile / "logs").mkdir(parents=True, exist_ok=True)
    (profile / "logs" / "trayapp.log").write_text("one\ntwo\nthree\n")
    done = trayapp("--profile", str(profile), "logs", "-n", "2")
    assert done.returncode == 0 and done.stdout == "two\nthree\n"
    data = json.loads(trayapp("logs", "--json", "--profile", str(profile)).stdout)
    assert data == {"version": 1, "path": str(profile / "logs" / "trayapp.log"), "exists": True}
    bad = trayapp("logs", "-n", "-1", "--profile", str(profile))
    assert bad.returncode == 1 and "0 or more" in bad.stderr and "Traceback" not in bad.stderr


def test_follow_keeps_going_across_rotation(tmp_path: Path) -> None:
    profile = tmp_path / "p"
    logs = profile / "logs"
    logs.mkdir(parents=True)
    log = logs / "trayapp.log"
    log.write_text("old line\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "logs", "-f", "-n", "1", "--profile", str(profile)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    seen: list[str] = []
    got = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            got.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 30
        while text + "\n" not in seen:
            assert time.monotonic() < deadline, (text, seen)
            got.wait(0.2)
            got.clear()

    try:
        wait_for("old line")
        with open(log, "a") as fh:
            fh.write("appended\n")
        wait_for("appended")
        log.rename(logs / "trayapp.log.1")  # rotation: a new file under the same name
        log.write_text("after rotation\n")
        wait_for("after rotation")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    assert seen == ["old line\n", "appended\n", "after rotation\n"]
