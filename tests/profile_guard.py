"""Helpers for tests of one engine per profile and of the control-socket folder (issue 14.2).

Reusable by other tests (a second local user, soak benches): each helper works on a given
profile and environment and starts real ``python -m trayapp`` processes.

* :func:`cli_env` / :func:`run_cli`: the CLI as a subprocess with a controlled environment
  (``XDG_RUNTIME_DIR`` unset and ``TMPDIR`` pointed at a test folder, so the socket folder is
  the shared-temp fallback ``$TMPDIR/trayapp-<uid>``, where another user could plant one).
* :func:`socket_dir`: that fallback folder's path for the given ``TMPDIR`` and uid.
* :func:`plant_socket_dir`: what a hostile user could leave there (a symlink, a folder of
  theirs, a loosened folder).
* :func:`hold_engine_lock`: take the profile's engine lock as another process would, with a
  role ("headless engine", "tray", "trayapp sync") but no control socket.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WAIT = 60.0


def cli_env(tmpdir: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAYAPP_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if tmpdir is not None:
        env.pop("XDG_RUNTIME_DIR", None)
        env["TMPDIR"] = str(tmpdir)
    env.update(extra)
    return env


def run_cli(
    profile: Path,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = WAIT,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
        capture_output=True,
        text=True,
        env=env if env is not None else cli_env(),
        timeout=timeout,
        cwd=cwd or ROOT,
    )


def socket_dir(tmpdir: Path, uid: int | None = None) -> Path:
    return tmpdir / f"trayapp-{os.getuid() if uid is None else uid}"


def plant_socket_dir(tmpdir: Path, kind: str, *, other_uid: int = 65534) -> Path:
    """Leave at the socket folder's path: ``symlink`` (to a folder elsewhere, returned),
    ``foreign`` (a folder owned by ``other_uid``; needs root), or ``loose`` (ours, 0777)."""
    path = socket_dir(tmpdir)
    if kind == "symlink":
        target = tmpdir / "elsewhere"
        target.mkdir(mode=0o755)
        os.chmod(target, 0o755)
        path.symlink_to(target)
        return target
    path.mkdir()
    if kind == "foreign":
        os.chown(path, other_uid, other_uid)
        os.chmod(path, 0o755)
    elif kind == "loose":
        os.chmod(path, 0o777)
    else:
        raise ValueError(kind)
    return path


@contextlib.contextmanager
def hold_engine_lock(profile: Path, role: str) -> Iterator[None]:
    """The profile's engine lock, held by this (test) process as ``role``."""
    from trayapp.core.profile import Profile

    lock = Profile.resolve(profile).lock_engine(role)
    try:
        yield
    finally:
        lock.release()


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The run failed with exactly one clear line on stderr (no traceback)."""
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("trayapp: ")
    return lines[0]
