"""The tray wires accounts at start-up; google.oauth2 (~0.45 s cold) must wait for a refresh."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wiring_accounts_does_not_import_google_oauth2() -> None:
    code = (
        "import sys\n"
        "import trayapp.auth.accounts, trayapp.cli.accounts, trayapp.auth.wiring\n"
        "import trayapp.google.client\n"
        "print(sorted(m for m in sys.modules if m.startswith('google.oauth2')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
