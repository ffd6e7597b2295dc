"""The plugins folder: plugin packages installed for one profile, outside the app's own install.

``trayapp plugins install`` puts a plugin (a local project folder, a wheel, or a package name)
into ``<profile>/plugins`` with ``pip install --target``; the default profile is the user's
data folder, so the source install, the .deb and the frozen bundle all use the same place. At
start-up :func:`activate` appends that folder to ``sys.path`` (at the end: the app's own
libraries always win over a plugin's copies) and the registry then finds the plugins'
``trayapp.patterns`` entry points as for any installed package.

Install is two steps so that a plugin that depends on Pattern Sync does not pull a second copy
of the app (and of its libraries) into the folder: the plugin itself with ``--no-deps``, then
only the requirements the app does not already provide. Qt-free.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from trayapp import DIST_NAME
from trayapp.core.errors import TrayappError
from trayapp.core.patterns import ENTRY_POINT_GROUP

PLUGINS_DIRNAME = "plugins"
# The app's own distribution names (the current one and the historical one).
APP_DISTRIBUTIONS = frozenset({DIST_NAME, "trayapp"})
PIP_TIMEOUT = 600.0

_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class PluginError(TrayappError):
    """A plugin could not be installed or removed; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class InstalledPlugin:
    name: str
    version: str
    patterns: tuple[str, ...]  # "entry name = module:attr" of each trayapp.patterns entry point

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "entry_points": list(self.patterns)}


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def plugins_dir(profile_path: Path) -> Path:
    return profile_path / PLUGINS_DIRNAME


def activate(folder: Path) -> bool:
    """Make the plugins in ``folder`` importable (appended to ``sys.path``); False if none."""
    if not folder.is_dir():
        return False
    entry = str(folder)
    if entry not in sys.path:
        sys.path.append(entry)
        importlib.invalidate_caches()
    return True


def installed(folder: Path) -> list[InstalledPlugin]:
    """The distributions in ``folder`` that provide patterns, by name."""
    if not folder.is_dir():
        return []
    found: dict[str, InstalledPlugin] = {}
    for dist in metadata.distributions(path=[str(folder)]):
        name = dist.metadata["Name"]
        if not name:
            continue
        eps = tuple(
            f"{ep.name} = {ep.value}" for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP
        )
        if eps:
            found[normalize(name)] = InstalledPlugin(name, dist.version, eps)
    return [found[key] for key in sorted(found)]


def _pip() -> list[str]:
    """A pip to run: this Python's, else (the frozen bundle has none) python3's on PATH."""
    if not getattr(sys, "frozen", False):
        return [sys.executable, "-m", "pip"]
    python = shutil.which("python3")
    if python is not None:
        probe = subprocess.run(
            [python, "-m", "pip", "--version"], capture_output=True, text=True, timeout=60
        )
        if probe.returncode == 0:
            return [python, "-m", "pip"]
    raise PluginError(
        "installing a plugin needs pip: install python3 and pip (Debian/Ubuntu: "
        "sudo apt install python3-pip) and try again"
    )


def _run_pip(args: list[str], what: str) -> None:
    cmd = [*_pip(), "install", "--disable-pip-version-check", "--no-input", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise PluginError(
            f"installing {what} took longer than {PIP_TIMEOUT:g} s and was stopped"
        ) from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), None)
        reason = (reason or (lines[-1] if lines else f"pip exited with {done.returncode}"))[:300]
        hint = ""
        if "build dependencies" in done.stderr:
            # A project folder is built first, with build tools pip fetches from the index.
            hint = (
                "; building a project folder needs its build tools (such as setuptools) from "
                "the package index: connect to the network, or build a wheel where you can "
                "(python -m build) and install the .whl file"
            )
        raise PluginError(f"could not install {what}: {reason.removeprefix('ERROR: ')}{hint}")


def _missing_requirements(dist: metadata.Distribution) -> list[str]:
    """The plugin's requirements the app does not already provide (the app itself excluded)."""
    out: list[str] = []
    for req in dist.requires or []:
        requirement, _, marker = req.partition(";")
        if "extra" in marker:
            continue  # an optional extra of the plugin's
        match = _NAME_RE.match(requirement)
        if match is None:
            continue
        name = normalize(match.group(1))
        if name in APP_DISTRIBUTIONS:
            continue
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            out.append(req.strip())
    return out


def install(folder: Path, spec: str) -> list[InstalledPlugin]:
    """Install ``spec`` (a project folder, a wheel file or a package name) into ``folder``.

    Returns the plugins it added or replaced. Raises :class:`PluginError` when pip fails or when
    what was installed provides no pattern (it is then removed again).
    """
    path = Path(spec).expanduser()
    target = str(path.resolve()) if path.exists() else spec
    if not path.exists() and (spec.endswith(".whl") or "/" in spec):
        raise PluginError(f"{spec} does not exist; give a wheel file, a project folder or a name")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="trayapp-plugin-") as staging_dir:
        staging = Path(staging_dir)
        _run_pip(["--no-deps", "--target", str(staging), target], spec)
        new = list(metadata.distributions(path=[str(staging)]))
        plugins = [d for d in new if any(ep.group == ENTRY_POINT_GROUP for ep in d.entry_points)]
        if not plugins:
            raise PluginError(
                f"{spec} is not a Pattern Sync plugin: it declares no '{ENTRY_POINT_GROUP}' "
                "entry point (see docs/plugins.md); nothing was installed"
            )
        needed = sorted({req for d in new for req in _missing_requirements(d)})
        names = {normalize(d.metadata["Name"]) for d in plugins}
        for dist in new:  # replace an older version of the same plugin
            _remove_dist(folder, dist.metadata["Name"])
        for item in staging.iterdir():
            dest = folder / item.name
            if dest.exists():
                shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
            shutil.move(str(item), dest)
    if needed:
        _run_pip(["--target", str(folder), "--upgrade", *needed], f"the libraries {spec} needs")
    return [p for p in installed(folder) if normalize(p.name) in names]


def _remove_dist(folder: Path, name: str) -> bool:
    wanted = normalize(name)
    removed = False
    for dist in metadata.distributions(path=[str(folder)]):
        if normalize(dist.metadata["Name"] or "") != wanted:
            continue
        for file in dist.files or []:
            located = (folder / file).resolve()
            if located.is_relative_to(folder.resolve()) and located.is_file():
                located.unlink()
        info = getattr(dist, "_path", None)
        if isinstance(info, Path) and info.exists():
            shutil.rmtree(info, ignore_errors=True)
        removed = True
    if removed:
        for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if sub.is_dir() and (not any(sub.iterdir()) or _only_pycache(sub)):
                shutil.rmtree(sub, ignore_errors=True)
    return removed


def _only_pycache(folder: Path) -> bool:
    return all(child.name == "__pycache__" for child in folder.iterdir())


def remove(folder: Path, name: str) -> None:
    """Remove the plugin ``name`` (its files; libraries installed for it stay)."""
    if not any(normalize(p.name) == normalize(name) for p in installed(folder)):
        known = ", ".join(p.name for p in installed(folder)) or "none"
        raise PluginError(f"no plugin named {name!r} is installed (installed: {known})")
    _remove_dist(folder, name)
