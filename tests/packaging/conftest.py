"""Fixtures for the release tests: the bundle built once per session with the documented command.

``packaging/build.sh`` is run exactly as docs/install.md tells a developer to (output in out/,
which git ignores). Set ``TRAYAPP_RELEASE_DIR`` to a directory that already holds a build's
outputs (``out/dist``) to test those instead of building again, e.g. while iterating on a test.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packaging.helpers import REPO, Release, project_version

BUILD_SCRIPT = REPO / "packaging" / "build.sh"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "bundle: builds the PyInstaller release with packaging/build.sh and smoke-tests it "
        "(about 1-2 minutes on 2 cores)",
    )


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    # Test sessions running at the same time would rebuild out/dist under each other's feet.
    (REPO / "out").mkdir(exist_ok=True)
    with (REPO / "out" / ".bundle-tests.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield from _release(tmp_path_factory)


def _release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    version = project_version()
    reuse = os.environ.get("TRAYAPP_RELEASE_DIR")
    if reuse:
        dist = Path(reuse).resolve()
    else:
        started = time.monotonic()
        env = dict(os.environ)
        env.pop("QT_QPA_PLATFORM", None)  # the suite's offscreen default is not the build's
        build = subprocess.run(
            [str(BUILD_SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, check=False
        )
        if build.returncode != 0:
            pytest.fail(
                f"packaging/build.sh failed ({build.returncode}):\n"
                f"{build.stdout[-3000:]}\n{build.stderr[-6000:]}"
            )
        print(f"\n{build.stdout.strip()}\n(build took {time.monotonic() - started:.0f} s)")
        dist = REPO / "out" / "dist"
    arch = os.uname().machine
    base = f"pattern-sync-{version}-linux-{arch}"
    facts_file = dist / f"{base}.json"
    facts = json.loads(facts_file.read_text(encoding="utf-8"))
    debs = sorted(dist.glob(f"pattern-sync_{version}_*.deb"))
    assert len(debs) == 1, f"expected one .deb for {version} in {dist}: {debs}"
    unpacked = tmp_path_factory.mktemp("release")
    with tarfile.open(dist / f"{base}.tar.gz") as tar:
        tar.extractall(unpacked, filter="tar")
    yield Release(version, dist, dist / f"{base}.tar.gz", debs[0], facts, unpacked)
