"""The tray's icons and desktop template ship in the wheel and are found by an installed copy.

resources/ sits at the top of the repo (the product brief) and installs as the package
``trayapp._resources`` (pyproject's package-dir). Without it a pip-installed tray drew plain
coloured dots and wrote a bare autostart entry.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def setuptools_config() -> dict[str, object]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    config: dict[str, object] = data["tool"]["setuptools"]
    return config


def test_every_package_and_resource_file_is_in_the_build_config() -> None:
    config = setuptools_config()
    listed = set(config["packages"])  # type: ignore[call-overload]
    # A new trayapp subpackage missing from the explicit list would be left out of the wheel.
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "trayapp").rglob("__init__.py")
    }
    assert found and found <= listed, found - listed
    assert config["package-dir"] == {"trayapp._resources": "resources"}
    data: dict[str, list[str]] = config["package-data"]  # type: ignore[assignment]
    for path in (REPO / "resources").rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(REPO / "resources")
        package = ".".join(("trayapp._resources", *rel.parent.parts))
        assert package in listed, f"{package} (for {rel}) is not in [tool.setuptools] packages"
        globs = data.get(package, [])
        assert any(fnmatch.fnmatch(rel.name, g) for g in globs), f"{rel} matches no package-data"


CHECK = textwrap.dedent(
    """
    import sys, tempfile
    from pathlib import Path
    from PySide6.QtSvg import QSvgRenderer
    from PySide6.QtWidgets import QApplication
    import trayapp.ui.icons as icons
    from trayapp.ui.autostart import Autostart
    from trayapp.ui.model import IconState

    site = Path(sys.argv[1]).resolve()
    assert Path(icons.__file__).resolve().is_relative_to(site), icons.__file__  # the installed copy
    base = icons.resources_dir()
    assert base is not None and base.resolve() == site / "trayapp" / "_resources", base
    app = QApplication([])
    for state in IconState:
        path = icons.icon_path(state)
        assert path is not None and QSvgRenderer(str(path)).isValid(), state
    from trayapp.ui import early_icon
    files = early_icon.icon_files()  # the start-up icon's PNGs, drawn ahead of time
    assert files is not None and all(f.is_relative_to(site) for f in files), files
    home = Path(tempfile.mkdtemp())
    auto = Autostart("linux", home=home, config_home=home, command=["/bin/true"])
    auto.enable()
    text = auto.desktop_path.read_text()
    assert "GenericName=Sync tray" in text and "/_resources/icons/tray-ok.svg" in text, text
    print("OK")
    """
)


def test_an_installed_wheel_draws_the_real_icons(tmp_path: Path) -> None:
    """Build the wheel as a user's pip would, install it (not editable) and ask the tray."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("trayapp", "resources"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("pattern_sync-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "trayapp/_resources/trayapp.desktop.in" in names
    assert "trayapp/_resources/icons/tray-attention.svg" in names
    assert "trayapp/_resources/icons/tray-syncing-22.png" in names  # the start-up icon
    assert not any(n.startswith("resources/") for n in names)  # no stray top-level package

    venv = tmp_path / "venv"
    # Without the test run's PYTHONPATH (the checkout): pip and the check must see only the venv.
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=tmp_path,
        env=clean_env,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # --system-site-packages reaches the base interpreter, not this venv: a .pth, read after the
    # temp venv's own site-packages, lends it PySide6 and the other dependencies (but not this
    # project's editable install, whose hook is in a .pth that a .pth path does not run). Written
    # after the install, or pip would see that editable install and skip the wheel.
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run = subprocess.run(
        [str(python), "-c", CHECK, str(site)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,  # not the repo: the import must find the installed copy
        env={**clean_env, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)},
        timeout=120,
    )
    assert run.returncode == 0 and run.stdout.strip() == "OK", run.stdout + run.stderr
