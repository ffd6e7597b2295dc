"""The distribution name is ``pattern-sync``; the import name and the command stay ``trayapp``.

``trayapp`` on the public package index is an unrelated project: a plugin depending on it would
pull that in. These checks read the installed metadata (the editable install), pyproject.toml and
the example plugin, so a half-done rename (metadata read under the old name, a plugin told to
depend on ``trayapp``) fails here.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import trayapp
from trayapp import plugins

ROOT = Path(__file__).resolve().parents[1]


def pyproject(path: Path) -> dict[str, object]:
    project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    assert isinstance(project, dict)
    return project


def test_pyproject_names_the_distribution_pattern_sync() -> None:
    project = pyproject(ROOT / "pyproject.toml")
    assert project["name"] == "pattern-sync" == trayapp.DIST_NAME
    assert project["scripts"] == {"trayapp": "trayapp.cli:main"}


def test_installed_metadata_is_read_under_the_new_name() -> None:
    assert metadata.version("pattern-sync") == trayapp.__version__
    assert trayapp.__version__ == pyproject(ROOT / "pyproject.toml")["version"]
    dist = metadata.distribution("pattern-sync")
    scripts = {ep.name for ep in dist.entry_points if ep.group == "console_scripts"}
    assert "trayapp" in scripts  # the command keeps its name


def test_example_plugin_depends_on_pattern_sync_not_trayapp() -> None:
    deps = pyproject(ROOT / "examples" / "notifications-plugin" / "pyproject.toml")["dependencies"]
    assert isinstance(deps, list)
    names = {plugins.normalize(str(d).split(">")[0].split("=")[0].split("<")[0]) for d in deps}
    assert "pattern-sync" in names and "trayapp" not in names


@pytest.mark.parametrize("app", ["pattern-sync>=0.1", "Pattern_Sync", "trayapp"])
def test_plugin_install_never_fetches_the_app(tmp_path: Path, app: str) -> None:
    info = tmp_path / "some_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: some-plugin\nVersion: 1.0\n"
        f"Requires-Dist: {app}\nRequires-Dist: httpx\nRequires-Dist: not-installed-xyz\n",
        encoding="utf-8",
    )
    dist = metadata.PathDistribution(info)
    assert plugins._missing_requirements(dist) == ["not-installed-xyz"]
