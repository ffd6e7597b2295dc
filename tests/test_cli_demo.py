"""``--demo`` belongs to the tray: with another command it is refused, never silently ignored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_demo_with_run_headless_is_refused_and_touches_no_profile(tmp_path: Path) -> None:
    real = tmp_path / "real-profile"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRAYAPP_PROFILE": str(real)}
    for argv in (["--demo", "run", "--headless"], ["--demo", "charms", "list"]):
        done = subprocess.run(
            [sys.executable, "-m", "trayapp", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, (argv, done.stderr)
        assert "--demo starts the tray" in done.stderr and "real profile" in done.stderr
        assert "Traceback" not in done.stderr
    assert not real.exists()  # nothing was created, let alone synced, in the real profile
