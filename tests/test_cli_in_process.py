"""``trayapp.cli.main`` called in-process (tests, embedding programs) returns its exit code.

``main`` ends the process at once when *its own* command abandoned an updater that ignored
cancellation (``aio.exit_if_abandoned``). A task some earlier, unrelated run abandoned must not
end a later caller's process: once it did, and a full test run stopped dead, with no summary,
in an unrelated CLI test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import asyncio, sys
from trayapp.core import aio
from trayapp.cli import main

loop = asyncio.new_event_loop()
aio.abandon(loop.create_future())  # left by an earlier run: never done
rc = main(["--profile", sys.argv[1], "patterns", "list"])
print("returned", rc, flush=True)
"""


def test_main_in_process_is_not_ended_by_an_earlier_runs_abandoned_task(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "profile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "returned 0" in done.stdout, (done.returncode, done.stdout, done.stderr)
    assert done.returncode == 0
