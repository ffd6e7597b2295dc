"""``trayapp plugins install|list|remove`` with a wheel built here from a tiny plugin (no network).

The plugin depends on ``pattern-sync`` (the app) and ``httpx`` (which the app has): install must
not try to fetch either (the test would fail offline). A plugin that needs a newer plugin API is
refused with a message saying to update Pattern Sync, and nothing of it stays.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trayapp.api import API_VERSION

ROOT = Path(__file__).resolve().parents[2]

PLUGIN = """
from datetime import timedelta

from trayapp.api import API_VERSION, CellSpec, NoSettings, Pattern, RunReport, UpdateContext


class Hello(Pattern[NoSettings]):
    id = "{pid}"
    title = "Hello"
    Settings = NoSettings
    requires_api = {requires}
    default_interval = timedelta(hours=1)
    cells = (CellSpec("count", writes=True, default=0),)

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        ctx.cell("count").update(lambda n: n + API_VERSION)
        return RunReport(updated=1)
"""


def build_wheel(tmp: Path, name: str, pid: str, requires: int = 1, entry: bool = True) -> Path:
    project = tmp / name
    module = name.replace("-", "_")
    (project / module).mkdir(parents=True)
    (project / module / "__init__.py").write_text(PLUGIN.format(pid=pid, requires=requires))
    entry_points = (
        f'[project.entry-points."trayapp.patterns"]\n{pid} = "{module}:Hello"\n' if entry else ""
    )
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools>=70.1"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{name}"
            version = "1.2.0"
            dependencies = ["pattern-sync>=0.1", "httpx"]

            [tool.setuptools]
            packages = ["{module}"]
            """
        )
        + entry_points
    )
    out = tmp / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(out), str(project)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = out.glob(f"{module}-*.whl")
    return wheel


def trayapp(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIP_NO_INDEX": "1"}
    return subprocess.run(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("wheels")
    return {
        "good": build_wheel(tmp, "trayapp-hello", "hello"),
        "newer": build_wheel(tmp, "trayapp-future", "future", requires=99),
        "none": build_wheel(tmp, "not-a-plugin", "nothing", entry=False),
    }


def test_install_list_use_and_remove_a_wheel(tmp_path: Path, wheels: dict[str, Path]) -> None:
    profile = tmp_path / "profile"
    empty = trayapp(profile, "plugins", "list", "--json")
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout)["plugins"] == []

    done = trayapp(profile, "plugins", "install", str(wheels["good"]))
    assert done.returncode == 0, done.stderr
    assert "installed trayapp-hello 1.2.0 (patterns: hello)" in done.stdout
    assert "next start of Pattern Sync" in done.stderr
    folder = profile / "plugins"
    # Its own folder (issue 16.6: what it brought is removable with it).
    own = folder / "trayapp-hello"
    assert (own / "trayapp_hello" / "__init__.py").is_file()
    assert sorted(p.name for p in folder.iterdir()) == ["trayapp-hello"]
    # Neither the app nor the libraries it already has were copied into the folder.
    assert not any(p.name.startswith(("trayapp-", "pattern_sync", "httpx")) for p in
                   own.iterdir() if p.name != "trayapp_hello-1.2.0.dist-info"
                   and not p.name.startswith("trayapp_hello"))  # fmt: skip

    listed = json.loads(trayapp(profile, "plugins", "list", "--json").stdout)
    assert listed["plugins"] == [
        {
            "name": "trayapp-hello",
            "version": "1.2.0",
            "entry_points": ["hello = trayapp_hello:Hello"],
            "libraries": [],
            "problem": None,
        }
    ]
    patterns = json.loads(trayapp(profile, "patterns", "list", "--json").stdout)
    assert {p["id"]: p["source"] for p in patterns["patterns"]}["hello"] == "trayapp-hello"

    assert trayapp(profile, "charms", "add", "hello").returncode == 0
    synced = trayapp(profile, "sync", "--json")
    assert synced.returncode == 0, synced.stderr
    (result,) = json.loads(synced.stdout)["results"]
    assert result["outcome"] == "ok" and result["counts"]["updated"] == 1

    # Installing again (a new build of the same version) replaces it; still one plugin.
    again = trayapp(profile, "plugins", "install", str(wheels["good"]), "--json")
    assert again.returncode == 0, again.stderr
    assert [p["name"] for p in json.loads(again.stdout)["installed"]] == ["trayapp-hello"]

    removed = trayapp(profile, "plugins", "remove", "trayapp_hello")
    assert removed.returncode == 0, removed.stderr
    assert not (folder / "trayapp_hello").exists()
    assert list(folder.iterdir()) == []
    assert json.loads(trayapp(profile, "plugins", "list", "--json").stdout)["plugins"] == []
    patterns = json.loads(trayapp(profile, "patterns", "list", "--json").stdout)
    assert "hello" not in {p["id"] for p in patterns["patterns"]}
    gone = trayapp(profile, "plugins", "remove", "trayapp-hello")
    assert gone.returncode == 1
    assert "no plugin named 'trayapp-hello' is installed" in gone.stderr


def test_plugin_needing_a_newer_api_is_refused(tmp_path: Path, wheels: dict[str, Path]) -> None:
    profile = tmp_path / "profile"
    done = trayapp(profile, "plugins", "install", str(wheels["newer"]))
    assert done.returncode == 1
    assert "trayapp-future 1.2.0 was not installed" in done.stderr
    assert f"needs a newer Pattern Sync (plugin API 99; this one has API {API_VERSION})" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
    assert json.loads(trayapp(profile, "plugins", "list", "--json").stdout)["plugins"] == []


def test_not_a_plugin_or_missing_file_is_a_clear_error(
    tmp_path: Path, wheels: dict[str, Path]
) -> None:
    profile = tmp_path / "profile"
    done = trayapp(profile, "plugins", "install", str(wheels["none"]))
    assert done.returncode == 1
    assert "is not a Pattern Sync plugin: it declares no 'trayapp.patterns' entry point" in (
        done.stderr
    )
    assert not (profile / "plugins" / "not_a_plugin").exists()
    missing = trayapp(profile, "plugins", "install", str(tmp_path / "nope.whl"))
    assert missing.returncode == 1 and "nope.whl does not exist" in missing.stderr


def test_a_folder_that_cannot_be_built_offline_says_what_to_do(tmp_path: Path) -> None:
    # PIP_NO_INDEX: pip cannot fetch the folder's build tools (setuptools), as on a machine
    # without network. The message says why and offers the wheel route.
    project = tmp_path / "trayapp-offline"
    (project / "trayapp_offline").mkdir(parents=True)
    (project / "trayapp_offline" / "__init__.py").write_text(PLUGIN.format(pid="x", requires=1))
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "trayapp-offline"\nversion = "1.0"\n'
    )
    done = trayapp(tmp_path / "profile", "plugins", "install", str(project))
    assert done.returncode == 1
    assert "needs its build tools (such as setuptools) from the package index" in done.stderr
    assert "install the .whl file" in done.stderr and "Traceback" not in done.stderr
