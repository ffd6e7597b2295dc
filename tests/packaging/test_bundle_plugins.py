"""Issue 16.6 in the frozen bundle: plugins installed with the BUNDLE's ``trayapp plugins``.

The bundle has no pip: it runs ``python3 -m pip`` from PATH (here the system's Python, another
build than the bundle's), telling it the bundle's interpreter. The guide's example plugin
(examples/notifications-plugin, a project folder: pip builds it) is installed into a throwaway
profile, added as a charm, synced against a real local JSON server, checked with
``status --json`` and removed again. The shell-script pattern of docs/exec-patterns.md
(examples/exec-pattern/notes-importer.sh) runs from the bundle too (the bundle's library path
must not leak into the script's ``sh``).

Offline: ``PIP_NO_INDEX=1`` and no build isolation (the system Python's setuptools builds the
example), so the example's requirement on ``pattern-sync`` must be met by the bundle itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.packaging.helpers import REPO, Release, user_env
from tests.plugins.conftest import JsonServer
from tests.plugins.conftest import json_server as json_server  # the fixture

pytestmark = [pytest.mark.bundle, pytest.mark.timeout(900)]

EXAMPLE = REPO / "examples" / "notifications-plugin"
NOTES_SCRIPT = REPO / "examples" / "exec-pattern" / "notes-importer.sh"


def _python_with_pip() -> str | None:
    """A python3 outside this test run's virtualenv that has pip and setuptools."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if not Path(candidate).is_file():
            continue
        env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
        probes = (["-m", "pip", "--version"], ["-c", "import setuptools"])
        if all(
            subprocess.run([candidate, *args], capture_output=True, env=env).returncode == 0
            for args in probes
        ):
            return candidate
    return None


SYSTEM_PYTHON = _python_with_pip()

NEEDS_LIB = """
from datetime import timedelta

import httpx
from trayapp.api import NoSettings, Pattern, RunReport


class NeedsLib(Pattern[NoSettings]):
    id = "needs-lib"
    title = "Needs a library"
    Settings = NoSettings
    default_interval = timedelta(hours=1)

    async def bg_updater(self, ctx):
        return RunReport(message=httpx.__version__)
"""
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def frozen(release: Release) -> Path:
    return release.folder / "app" / "trayapp"


@pytest.fixture
def cli(frozen: Path, tmp_path: Path) -> tuple[Path, Run]:
    """The bundle's CLI on a throwaway profile, with the system's python3 (if any) on PATH."""
    home = tmp_path / "home"
    home.mkdir()
    profile = tmp_path / "profile"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if SYSTEM_PYTHON is not None:
        (bin_dir / "python3").symlink_to(SYSTEM_PYTHON)
    env = user_env(
        home,
        PATH=f"{bin_dir}:/usr/bin:/bin",
        PIP_NO_INDEX="1",
        # pip's inverted switch: "false" turns build isolation off (no setuptools download).
        PIP_NO_BUILD_ISOLATION="false",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )

    def run(*args: str, check: bool = True, path: str = "") -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(frozen), "--profile", str(profile), *args],
            env={**env, "PATH": path} if path else env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check:
            assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        return done

    return profile, run


@pytest.mark.skipif(SYSTEM_PYTHON is None, reason="needs a system python3 with pip and setuptools")
def test_bundle_installs_the_example_plugin_syncs_it_and_removes_it(
    cli: tuple[Path, Run], json_server: JsonServer, tmp_path: Path
) -> None:
    profile, run = cli
    source = tmp_path / "notifications-plugin"
    shutil.copytree(EXAMPLE, source)  # pip's build leaves files behind: not in the repo
    json_server.documents["/n.json"] = [
        {"id": "1", "title": "Build passed", "created": "2026-01-01T10:00:00Z"},
        {"id": "2", "title": "New comment", "created": "2026-01-01T11:00:00Z"},
    ]

    done = run("plugins", "install", str(source))
    assert "installed trayapp-notifications-example 1.0.0 (patterns: " in done.stdout
    assert "example-notifications" in done.stdout.split("(patterns: ")[1].split(")")[0]
    own = profile / "plugins" / "trayapp-notifications-example"
    assert (own / "trayapp_notifications" / "__init__.py").is_file()
    # The example needs pattern-sync (and through it httpx, pydantic): all the bundle's own,
    # so nothing but the plugin is in its folder.
    assert sorted(p.name for p in own.iterdir() if not p.name.startswith("__")) == [
        "trayapp_notifications",
        "trayapp_notifications_example-1.0.0.dist-info",
    ]
    (listed,) = json.loads(run("plugins", "list", "--json").stdout)["plugins"]
    assert (listed["name"], listed["problem"], listed["libraries"]) == (
        "trayapp-notifications-example",
        None,
        [],
    )

    added = run(
        "charms", "add", "example-notifications", "--name", "Alerts",
        "--set", f"url={json_server.url}/n.json", "--json",
    )  # fmt: skip
    charm_id = json.loads(added.stdout)["charm"]["id"]
    (result,) = json.loads(run("sync", "--json").stdout)["results"]
    assert result["outcome"] == "ok", result
    (charm,) = json.loads(run("status", "--json").stdout)["charms"]
    assert charm["id"] == charm_id and charm["pattern_id"] == "example-notifications"
    assert charm["status"]["last_outcome"] == "ok"
    assert charm["status"]["totals"] == {"added": 2, "updated": 0, "removed": 0}
    assert [r[1] for r in json_server.requests] == ["/n.json"]

    removed = run("plugins", "remove", "trayapp-notifications-example")
    assert "removed trayapp-notifications-example 1.0.0" in removed.stdout
    assert list((profile / "plugins").iterdir()) == []
    patterns = json.loads(run("patterns", "list", "--json").stdout)["patterns"]
    assert "example-notifications" not in {p["id"] for p in patterns}


def test_bundle_refuses_a_plugin_whose_library_has_no_wheel(
    cli: tuple[Path, Run], tmp_path: Path
) -> None:
    """Without pip the message says what to install; with it, a library with no wheel for the
    bundle's Python is named, and nothing of the plugin stays."""
    profile, run = cli
    project = tmp_path / "needs-lib"
    (project / "needs_lib").mkdir(parents=True)
    (project / "needs_lib" / "__init__.py").write_text(NEEDS_LIB)

    def write_project(*deps: str) -> None:
        (project / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools>=61"]\n'
            'build-backend = "setuptools.build_meta"\n'
            '[project]\nname = "needs-lib"\nversion = "1.0"\n'
            f"dependencies = {json.dumps(['pattern-sync', *deps])}\n"
            '[project.entry-points."trayapp.patterns"]\nneeds-lib = "needs_lib:NeedsLib"\n'
            "[tool.setuptools]\npackages = ['needs_lib']\n"
        )

    write_project("httpx>=0.27", "pydantic>=2", "not-published-anywhere-xyz")
    no_python = tmp_path / "empty-bin"
    no_python.mkdir()
    done = run("plugins", "install", str(project), check=False, path=str(no_python))
    assert done.returncode == 1
    assert "installing a plugin needs pip: install python3 and pip" in done.stderr
    if SYSTEM_PYTHON is None:
        pytest.skip("needs a system python3 with pip and setuptools for the rest")
    done = run("plugins", "install", str(project), check=False)
    assert done.returncode == 1
    assert "could not install the libraries needs-lib needs" in done.stderr
    assert "not-published-anywhere-xyz" in done.stderr
    assert "ready-made wheels built for its Python 3." in done.stderr
    assert list((profile / "plugins").iterdir()) == []

    # Without that library it installs; httpx and pydantic are the bundle's own (its copies are
    # the ones imported), so none is fetched (offline, this would fail) or copied.
    write_project("httpx>=0.27", "pydantic>=2")
    done = run("plugins", "install", str(project))
    assert "installed needs-lib 1.0 (patterns: needs-lib)" in done.stdout
    own = profile / "plugins" / "needs-lib"
    assert sorted(p.name for p in own.iterdir()) == ["needs_lib", "needs_lib-1.0.dist-info"]


def test_bundle_runs_the_example_shell_script_pattern(
    cli: tuple[Path, Run], tmp_path: Path
) -> None:
    _, run = cli
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("Shopping list\nmilk\n")
    (notes / "b.txt").write_text("Ideas\n")
    settings = {"command": str(NOTES_SCRIPT), "options": {"folder": str(notes)}}
    run("charms", "add", "exec-importer", "--settings-json", json.dumps(settings))
    (result,) = json.loads(run("sync", "--json").stdout)["results"]
    assert result["outcome"] == "ok", result
    assert result["counts"] == {"added": 2, "updated": 0, "removed": 0}
    assert result["message"] == "2 notes"  # the script's own report line
    (charm,) = json.loads(run("status", "--json").stdout)["charms"]
    assert charm["status"]["last_outcome"] == "ok"
    assert charm["status"]["totals"] == {"added": 2, "updated": 0, "removed": 0}


def _other_python() -> str | None:
    """A python3 with pip whose minor version differs from the bundle's (3.11)."""
    candidates = [os.environ.get("TRAYAPP_TEST_OTHER_PYTHON", "")]
    candidates += sorted(
        str(p) for p in Path("/root/.pyenv/versions").glob("3.1[2-9]*/bin/python3")
    )
    candidates += [f"/usr/bin/python3.{minor}" for minor in range(12, 20)]
    for candidate in filter(None, candidates):
        if not Path(candidate).is_file():
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys, pip; print(sys.version_info[:2] != (3, 11))"],
            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=False,
        )  # fmt: skip
        if probe.stdout.strip() == "True":
            return candidate
    return None


COMPILED_PLUGIN = """
from datetime import timedelta

import msgpack
from trayapp.api import NoSettings, Pattern, RunReport


class Packed(Pattern[NoSettings]):
    id = "packed"
    title = "Packed"
    Settings = NoSettings
    default_interval = timedelta(hours=1)

    async def bg_updater(self, ctx):
        data = msgpack.unpackb(msgpack.packb({"n": 3}))
        # msgpack falls back to pure Python when its compiled module cannot load: say which.
        return RunReport(updated=data["n"], message=msgpack.Packer.__module__)
"""


def test_bundle_with_another_pythons_pip_gets_libraries_built_for_the_bundle(
    frozen: Path, tmp_path: Path
) -> None:
    """pip of Python 3.12+ installing for the 3.11 bundle: msgpack (compiled) must be cp311.

    The cp311 wheel is fetched once from pip's configured index (skipped when offline); the
    bundle's install then runs offline from that folder, where the other Python's own pip,
    left to itself, would find no wheel for its version.
    """
    other = _other_python()
    if other is None:
        pytest.skip("needs a python3 other than 3.11, with pip")
    links = tmp_path / "links"
    fetched = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
         "--platform", "manylinux2014_x86_64", "-d", str(links), "msgpack"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if fetched.returncode != 0 or os.uname().machine != "x86_64":
        pytest.skip(f"no cp311 msgpack wheel from the package index: {fetched.stderr[-300:]}")
    # The plugin as a wheel (the other Python may have no setuptools to build a folder).
    project = tmp_path / "packed"
    (project / "packed_plugin").mkdir(parents=True)
    (project / "packed_plugin" / "__init__.py").write_text(COMPILED_PLUGIN)
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "packed-plugin"\nversion = "1.0"\n'
        'dependencies = ["pattern-sync", "msgpack>=1"]\n'
        '[project.entry-points."trayapp.patterns"]\npacked = "packed_plugin:Packed"\n'
        "[tool.setuptools]\npackages = ['packed_plugin']\n"
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(links), str(project)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = links.glob("packed_plugin-*.whl")

    home, profile, bin_dir = tmp_path / "home", tmp_path / "profile", tmp_path / "bin"
    home.mkdir()
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(other)
    env = user_env(home, PATH=f"{bin_dir}:/usr/bin:/bin", PIP_NO_INDEX="1",
                   PIP_FIND_LINKS=str(links))  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(frozen), "--profile", str(profile), *args],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done

    run("plugins", "install", str(wheel))
    own = profile / "plugins" / "packed-plugin"
    compiled = sorted(p.name for p in (own / "msgpack").glob("*.so"))
    assert compiled and all("cpython-311" in name for name in compiled), compiled
    (listed,) = json.loads(run("plugins", "list", "--json").stdout)["plugins"]
    assert listed["problem"] is None and listed["libraries"][0].startswith("msgpack ")
    run("charms", "add", "packed")
    (result,) = json.loads(run("sync", "--json").stdout)["results"]
    assert result["outcome"] == "ok", result
    assert result["counts"]["updated"] == 3
    assert result["message"] == "msgpack._cmsgpack"  # the compiled module loaded in the bundle

    # The same Python's pip on its own finds nothing it could use: the flags made the difference.
    alone = subprocess.run(
        [other, "-m", "pip", "install", "--dry-run", "--no-index", "--find-links", str(links),
         "--only-binary=:all:", "--target", str(tmp_path / "alone"), "msgpack"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert alone.returncode != 0, alone.stdout
