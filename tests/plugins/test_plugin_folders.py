"""Issue 16.6: each plugin in its own folder with the libraries only it needed, and installs
that fit the interpreter that will run them.

Wheels are built here (offline: ``pip wheel --no-index --no-build-isolation``) and served to
``trayapp plugins install`` through ``PIP_FIND_LINKS`` with ``PIP_NO_INDEX=1``: a plugin that
needs a library the app does not have (``pslib-helper``) gets it in its own folder, uses it in a
real sync, and ``plugins remove`` takes both away; two plugins needing the same library each
have their copy, so removing one leaves the other working. A requirement the app has in a
version the plugin excludes, or one pip cannot find, is refused with nothing left behind.

The frozen bundle's way (pip of another Python told the bundle's interpreter, libraries as
wheels only) is run here in-process with ``sys.frozen`` set and a ``python3`` on PATH that
records its arguments; tests/packaging runs it for real from the built bundle.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from trayapp import plugins

ROOT = Path(__file__).resolve().parents[2]

PLUGIN = """
from datetime import timedelta

import pslib_helper
from trayapp.api import NoSettings, Pattern, RunReport, UpdateContext


class Counter(Pattern[NoSettings]):
    id = "{pid}"
    title = "Counter"
    Settings = NoSettings
    requires_api = 1
    default_interval = timedelta(hours=1)

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        return RunReport(updated=pslib_helper.VALUE)
"""


def build(
    out: Path,
    name: str,
    files: dict[str, str],
    *,
    version: str = "1.0.0",
    deps: tuple[str, ...] = (),
    patterns: dict[str, str] | None = None,
) -> Path:
    project = out.parent / "src" / f"{name}-{version}"
    for rel, text in files.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    modules = sorted({rel.split("/")[0] for rel in files})
    entry = "".join(f'{k} = "{v}"\n' for k, v in (patterns or {}).items())
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{name}"
            version = "{version}"
            dependencies = {json.dumps(list(deps))}

            [tool.setuptools]
            packages = {json.dumps(modules)}
            """
        )
        + (f'[project.entry-points."trayapp.patterns"]\n{entry}' if entry else "")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(out), str(project)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = out.glob(f"{name.replace('-', '_')}-{version}-*.whl")
    return wheel


def counter(
    out: Path, name: str, pid: str, *, version: str = "1.0.0", deps: tuple[str, ...] = ()
) -> Path:
    module = name.replace("-", "_")
    return build(
        out,
        name,
        {f"{module}/__init__.py": PLUGIN.format(pid=pid)},
        version=version,
        deps=("pattern-sync>=0.1", "httpx", *deps),
        patterns={pid: f"{module}:Counter"},
    )


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A find-links folder: the helper library, plugins using it, and broken ones."""
    out = tmp_path_factory.mktemp("index") / "wheels"
    wheels = {
        "helper": build(
            out, "pslib-helper", {"pslib_helper/__init__.py": "VALUE = 41\n"}, version="0.3.0"
        ),
        "counter": counter(out, "trayapp-counter", "counter", deps=("pslib-helper>=0.3",)),
        "twin": counter(out, "trayapp-twin", "twin", deps=("pslib-helper",)),
        "counter2": counter(
            out, "trayapp-counter", "counter", version="2.0.0", deps=("missing-lib-xyz",)
        ),
        "greedy": counter(out, "trayapp-greedy", "greedy", deps=("httpx>=99",)),
        "needs_sdist": counter(out, "trayapp-srcdep", "srcdep", deps=("srconly-lib",)),
    }
    # A library published only as source: the bundle's wheel-only install must say so.
    sdist = out / "srconly_lib-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tar.tarinfo("srconly_lib-1.0/PKG-INFO")
        data = b"Metadata-Version: 2.1\nName: srconly-lib\nVersion: 1.0\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return wheels


def trayapp(profile: Path, links: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links)}
    return subprocess.run(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip


def plugins_json(profile: Path, links: Path) -> list[dict[str, object]]:
    listed = trayapp(profile, links, "plugins", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    result = json.loads(listed.stdout)["plugins"]
    assert isinstance(result, list)
    return result


def sync(profile: Path, links: Path) -> dict[str, dict[str, object]]:
    """charm id -> its result in ``sync --json``."""
    synced = trayapp(profile, links, "sync", "--json")
    return {r["charm_id"]: r for r in json.loads(synced.stdout)["results"]}


def test_each_plugin_has_its_libraries_and_remove_takes_them(
    tmp_path: Path, index: dict[str, Path]
) -> None:
    profile, links = tmp_path / "profile", index["helper"].parent
    folder = profile / "plugins"
    for key in ("counter", "twin"):
        done = trayapp(profile, links, "plugins", "install", str(index[key]))
        assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["trayapp-counter", "trayapp-twin"]
    for own in ("trayapp-counter", "trayapp-twin"):
        assert (folder / own / "pslib_helper" / "__init__.py").is_file()
        # httpx and the app itself are the app's: no copy.
        assert not list((folder / own).glob("httpx*")) and not list((folder / own).glob("pattern"))
    listed = {p["name"]: p["libraries"] for p in plugins_json(profile, links)}
    assert listed == {
        "trayapp-counter": ["pslib-helper 0.3.0"],
        "trayapp-twin": ["pslib-helper 0.3.0"],
    }

    ids = {}
    for pid in ("counter", "twin"):
        added = trayapp(profile, links, "charms", "add", pid, "--json")
        assert added.returncode == 0, added.stderr
        ids[pid] = json.loads(added.stdout)["charm"]["id"]
    # The library each plugin brought is imported from its folder: both runs count 41.
    results = sync(profile, links)
    assert {pid: results[ids[pid]]["counts"] for pid in ids} == {
        pid: {"added": 0, "updated": 41, "removed": 0} for pid in ids
    }

    removed = trayapp(profile, links, "plugins", "remove", "trayapp-counter", "--json")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout)["libraries"] == ["pslib-helper 0.3.0"]
    assert sorted(p.name for p in folder.iterdir()) == ["trayapp-twin"]
    # The other plugin's copy is untouched and still used; the removed one's charm cannot run.
    results = sync(profile, links)
    assert results[ids["twin"]]["outcome"] == "ok"
    assert results[ids["twin"]]["counts"] == {"added": 0, "updated": 41, "removed": 0}
    assert ids["counter"] not in results or results[ids["counter"]]["outcome"] != "ok"

    text = trayapp(profile, links, "plugins", "remove", "trayapp-twin")
    assert text.returncode == 0, text.stderr
    assert "removed trayapp-twin 1.0.0 and the libraries installed for it (pslib-helper 0.3.0)" in (
        text.stdout
    )
    assert list(folder.iterdir()) == []


def test_a_failed_install_leaves_nothing_and_keeps_the_previous_version(
    tmp_path: Path, index: dict[str, Path]
) -> None:
    profile, links = tmp_path / "profile", index["helper"].parent
    folder = profile / "plugins"
    assert trayapp(profile, links, "plugins", "install", str(index["counter"])).returncode == 0

    # Version 2 needs a library pip cannot find: refused, version 1 stays as it was.
    upgrade = trayapp(profile, links, "plugins", "install", str(index["counter2"]))
    assert upgrade.returncode == 1
    assert "could not install the libraries trayapp-counter needs" in upgrade.stderr
    assert "missing-lib-xyz" in upgrade.stderr and "Traceback" not in upgrade.stderr
    assert [(p["name"], p["version"]) for p in plugins_json(profile, links)] == [
        ("trayapp-counter", "1.0.0")
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["trayapp-counter"]  # no staging left

    # A library the app has, in a version the plugin excludes: the app's copy would be the one
    # imported, so a second one cannot help.
    greedy = trayapp(profile, links, "plugins", "install", str(index["greedy"]))
    assert greedy.returncode == 1
    assert "trayapp-greedy needs httpx>=99, but this Pattern Sync has httpx " in greedy.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["trayapp-counter"]


def test_bundle_style_install_tells_pip_the_interpreter_and_takes_wheels_only(
    tmp_path: Path, index: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in the frozen bundle: python3 from PATH, told this interpreter, libraries as wheels."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "pip-calls.log"
    (bin_dir / "python3").write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{calls}"\nexec "{sys.executable}" "$@"\n'
    )
    (bin_dir / "python3").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index["helper"].parent))
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    folder = tmp_path / "plugins"

    (added,) = plugins.install(folder, str(index["counter"]))
    assert added.libraries == ("pslib-helper 0.3.0",)
    installs = [line for line in calls.read_text().splitlines() if " install " in f" {line} "]
    assert len(installs) == 2, installs
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    abi = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for line in installs:  # the plugin and its libraries: both for this interpreter
        assert f"--python-version {version}" in line and f"--abi {abi}" in line, line
        assert "--implementation cp" in line and "--platform manylinux" in line, line
    assert "--no-deps" in installs[0] and "--only-binary=:all:" not in installs[0]
    assert "--only-binary=:all:" in installs[1] and "pslib-helper>=0.3" in installs[1]

    with pytest.raises(plugins.PluginError) as caught:
        plugins.install(folder, str(index["needs_sdist"]))
    message = str(caught.value)
    assert "could not install the libraries trayapp-srcdep needs" in message
    assert f"ready-made wheels built for its Python {version}" in message
    assert "srconly-lib" in message
    assert sorted(p.name for p in folder.iterdir()) == ["trayapp-counter"]


def test_interpreter_tags_name_this_python_and_its_platforms() -> None:
    options = plugins.interpreter_tags()
    pairs = list(zip(options[::2], options[1::2], strict=True))
    assert ("--python-version", f"{sys.version_info.major}.{sys.version_info.minor}") in pairs
    assert ("--implementation", "cp") in pairs
    assert ("--abi", f"cp{sys.version_info.major}{sys.version_info.minor}") in pairs
    platforms = [v for k, v in pairs if k == "--platform"]
    machine = os.uname().machine
    assert any(p.startswith("manylinux_2_") and p.endswith(machine) for p in platforms)
    assert "any" not in platforms


def _dist(tmp: Path, wheel_tag: str, requires_python: str = "") -> plugins.metadata.Distribution:
    info = tmp / "p-1.0.dist-info"
    info.mkdir(parents=True)
    extra = f"Requires-Python: {requires_python}\n" if requires_python else ""
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: p\nVersion: 1.0\n{extra}")
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {wheel_tag}\n")
    return plugins.metadata.PathDistribution(info)


def test_a_plugin_built_for_another_python_is_refused(tmp_path: Path) -> None:
    with pytest.raises(plugins.PluginError, match=r"p 1.0 was built for cp27-cp27mu-manylinux1_"):
        plugins._check_runs_here(_dist(tmp_path / "a", "cp27-cp27mu-manylinux1_x86_64"))
    with pytest.raises(plugins.PluginError, match=r"p 1.0 needs Python >=3.99, but Pattern Sync"):
        plugins._check_runs_here(_dist(tmp_path / "b", "py3-none-any", ">=3.99"))
    plugins._check_runs_here(_dist(tmp_path / "c", "py3-none-any", ">=3.8"))  # fits


def test_a_plugin_installed_flat_by_an_earlier_version_loads_and_moves_on_reinstall(
    tmp_path: Path, index: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before issue 16.6 plugins went straight into <profile>/plugins: they keep working."""
    folder = tmp_path / "plugins"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(folder), str(index["counter"]), str(index["helper"])],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert plugins.activate(folder) and str(folder) in sys.path
    (flat,) = plugins.installed(folder)
    assert (flat.name, flat.location) == ("trayapp-counter", folder)

    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index["helper"].parent))
    (moved,) = plugins.install(folder, str(index["counter"]))
    assert moved.location == folder / "trayapp-counter"
    assert moved.libraries == ("pslib-helper 0.3.0",)
    # The flat copy of the plugin is gone (its library, installed by hand here, stays).
    assert not (folder / "trayapp_counter").exists()
    assert not list(folder.glob("trayapp_counter-*.dist-info"))

    plugins.remove(folder, "trayapp-counter")
    assert plugins.installed(folder) == []
    assert not (folder / "trayapp-counter").exists()


def test_metadata_without_optional_fields_from_either_metadata_library(tmp_path: Path) -> None:
    """importlib_metadata (keyring's) raises KeyError for a missing field where the stdlib
    returns None; a plugin without Requires-Python must install with both."""
    importlib_metadata = pytest.importorskip("importlib_metadata")
    for n, factory in enumerate(
        (plugins.metadata.PathDistribution, importlib_metadata.PathDistribution)
    ):
        dist = factory(_dist(tmp_path / str(n), "py3-none-any")._path)  # type: ignore[attr-defined]
        plugins._check_runs_here(dist)
        assert plugins._name(dist) == "p" and plugins._header(dist, "Requires-Python") is None
