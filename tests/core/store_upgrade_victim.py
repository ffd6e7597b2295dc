"""Helper process for the kill -9 upgrade test: opens (so upgrades) a v2 store and freezes.

Run: ``python store_upgrade_victim.py <db path> <fraction>``. Prints ``progress F`` for every
progress report; at the first report >= ``fraction`` it prints ``frozen F`` and sleeps, so the
test can kill it at a known point of the upgrade. Steps are made small (50 items) so a small
store still upgrades in many steps.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from trayapp.core import store as store_module


def main(path: Path, fraction: float) -> None:
    store_module.UPGRADE_CHUNK = 50

    def report(done: float) -> None:
        print(f"progress {done:.3f}", flush=True)
        if done >= fraction:
            print(f"frozen {done:.3f}", flush=True)
            time.sleep(600)

    store_module.Store.open(path, progress=report).close()
    print("upgraded", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]))
