"""Build the blocking test plugin (tests/plugins/hangplugin) into a wheel, offline."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PLUGIN = Path(__file__).resolve().parent / "hangplugin"


def build_hang_wheel(work: Path) -> Path:
    source = work / "hang-plugin-src"
    shutil.copytree(PLUGIN, source)  # the build leaves files behind: not in the repo
    out = work / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        check=True,
        timeout=180,
    )
    (wheel,) = out.glob("trayapp_hang_example-*.whl")
    return wheel
