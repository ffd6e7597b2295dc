"""A crash never leaves ``running`` behind, and nothing hangs: ``python -m trayapp ...`` in
subprocesses on temp profiles, with a real plugin (an installed distribution found through its
entry point, as users install them) whose charms are slow or swallow cancellation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
WAIT = 60.0

PLUGIN = '''
import asyncio
from datetime import timedelta

from trayapp.api import NoSettings, Pattern, RunReport, UpdateContext


class Slow(Pattern[NoSettings]):
    """Runs for an hour: long enough to be killed mid-run."""

    id = "slow"
    title = "Slow"
    Settings = NoSettings
    timeout = timedelta(hours=2)

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        await asyncio.sleep(3600)
        return RunReport()


class Stubborn(Pattern[NoSettings]):
    """Swallows every cancellation, as a careless ``except CancelledError: pass`` does."""

    id = "stubborn"
    title = "Stubborn"
    Settings = NoSettings
    timeout = timedelta(seconds=2)

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass


class Careless(Stubborn):
    """Swallows everything, even the GeneratorExit that closes it at interpreter exit."""

    id = "careless"
    title = "Careless"

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        while True:
            try:
                await asyncio.sleep(3600)
            except BaseException:
                pass


class StubbornLong(Stubborn):
    id = "stubborn-long"
    title = "Stubborn, long deadline"
    timeout = timedelta(hours=2)
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plugin distribution on the path: a module plus its dist-info with the entry points."""
    root = tmp_path_factory.mktemp("plugins")
    (root / "hangs_plugin.py").write_text(PLUGIN, encoding="utf-8")
    info = root / "hangs_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: hangs-plugin\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [trayapp.patterns]
            slow = hangs_plugin:Slow
            stubborn = hangs_plugin:Stubborn
            stubborn-long = hangs_plugin:StubbornLong
            careless = hangs_plugin:Careless
            """
        ),
        encoding="utf-8",
    )
    return root


@pytest.fixture
def env(plugin_dir: Path, tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("TRAYAPP_")}
    out["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(plugin_dir), out.get("PYTHONPATH", "")])
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    out["XDG_RUNTIME_DIR"] = str(run)  # this test's own control socket
    return out


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return tmp_path / "profile"


def trayapp(
    env: dict[str, str], profile: Path, *args: str, timeout: float = WAIT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )


def spawn(env: dict[str, str], profile: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


@pytest.fixture
def reaper() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=WAIT)


def status_of(env: dict[str, str], profile: Path, charm: str) -> dict[str, Any]:
    done = trayapp(env, profile, "status", "--json")
    assert done.returncode == 0, done.stderr
    charms = {c["id"]: c for c in json.loads(done.stdout)["charms"]}
    status: dict[str, Any] = charms[charm]["status"]
    return status


def wait_until_running(
    env: dict[str, str], profile: Path, charm: str, proc: subprocess.Popen[str]
) -> None:
    """Poll ``trayapp status --json`` (another process) until it says the charm runs."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if status_of(env, profile, charm)["state"] == "running":
            return
        time.sleep(0.2)
    raise AssertionError(f"charm {charm} never showed as running")


def add(env: dict[str, str], profile: Path, pattern: str, name: str) -> None:
    done = trayapp(env, profile, "charms", "add", pattern, "--name", name)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("command", [("run", "--headless"), ("sync", "s")])
def test_kill_9_mid_run_never_leaves_running_behind(
    env: dict[str, str],
    profile: Path,
    reaper: list[subprocess.Popen[str]],
    command: tuple[str, ...],
) -> None:
    add(env, profile, "slow", "s")
    proc = spawn(env, profile, *command)
    reaper.append(proc)
    wait_until_running(env, profile, "s", proc)  # other processes see the run while it lives
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=WAIT)
    status = status_of(env, profile, "s")
    assert status["state"] != "running" and status["running"] is False, status
    # The next engine takes the profile over cleanly, and the charm runs again.
    again = spawn(env, profile, "run", "--headless")
    reaper.append(again)
    wait_until_running(env, profile, "s", again)
    again.send_signal(signal.SIGTERM)
    _, err = again.communicate(timeout=WAIT)
    assert again.returncode == 0, err
    assert status_of(env, profile, "s")["state"] != "running"


@pytest.mark.parametrize("pattern", ["stubborn", "careless"])
def test_sync_exits_when_an_updater_swallows_cancellation(
    env: dict[str, str], profile: Path, pattern: str
) -> None:
    add(env, profile, pattern, "s")
    done = trayapp(env, profile, "sync", "s", "--json")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout)["results"][0]
    assert result["outcome"] == "timeout"
    assert "ignored being stopped" in result["message"]
    history = json.loads(trayapp(env, profile, "charms", "show", "s", "--json").stdout)
    assert history["history"][0]["outcome"] == "timeout"
    assert status_of(env, profile, "s")["state"] != "running"


def test_run_headless_stops_on_one_sigterm_while_an_updater_swallows_cancellation(
    env: dict[str, str], profile: Path, reaper: list[subprocess.Popen[str]]
) -> None:
    add(env, profile, "stubborn-long", "s")
    proc = spawn(env, profile, "run", "--headless")
    reaper.append(proc)
    wait_until_running(env, profile, "s", proc)
    proc.send_signal(signal.SIGTERM)  # once
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped" in err
    status = status_of(env, profile, "s")
    assert status["state"] != "running" and status["last_outcome"] == "cancelled"


@pytest.mark.parametrize(
    "args",
    [
        ("charms", "add", "slow", "--name", "x", "--interval", "99999999d"),
        ("charms", "pause", "--all", "--for", "99999999d"),
    ],
)
def test_an_absurd_interval_or_pause_is_refused_with_a_sentence(
    env: dict[str, str], profile: Path, args: tuple[str, ...]
) -> None:
    done = trayapp(env, profile, *args)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "OverflowError" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "is too long: it can be at most 366 days" in lines[0]
    listed = trayapp(env, profile, "charms", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["charms"] == []
