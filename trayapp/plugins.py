"""The plugins folder: plugin packages installed for one profile, outside the app's own install.

``trayapp plugins install`` puts a plugin (a local project folder, a wheel, or a package name)
into ``<profile>/plugins/<name>/`` with ``pip install --target``: one folder per plugin, holding
the plugin and the libraries only it brought, so ``plugins remove`` deletes exactly what that
plugin needed. The default profile is the user's data folder, so the source install, the .deb
and the frozen bundle all use the same place. At start-up :func:`activate` appends each plugin's
folder to ``sys.path`` (at the end: the app's own libraries always win over a plugin's copies)
and the registry then finds the plugins' ``trayapp.patterns`` entry points as for any installed
package. (Plugins installed flat into ``<profile>/plugins`` by an earlier version still load and
can be removed; installing them again moves them into their own folder.)

Install is two steps so that a plugin that depends on Pattern Sync does not pull a second copy
of the app (and of its libraries) into the folder: the plugin itself with ``--no-deps`` (a
project folder is built as usual), then only the requirements the app does not already provide,
with the app's own libraries pinned to the versions it has (a copy in the plugin's folder would
never be imported: the app's comes first on ``sys.path``). A requirement the app has in a
version the plugin cannot use is refused with a message saying so.

The frozen bundle has no pip of its own: it runs ``python3 -m pip`` from PATH, whose Python may
be another version than the bundle's. There pip is told the bundle's interpreter (version, ABI,
platform tags) and takes libraries only as ready-made wheels built for it
(``--only-binary=:all:``), and a plugin built for another Python is refused. Qt-free.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from trayapp import DIST_NAME
from trayapp.core.errors import TrayappError
from trayapp.core.patterns import ENTRY_POINT_GROUP

PLUGINS_DIRNAME = "plugins"
# The app's own distribution names (the current one and the historical one).
APP_DISTRIBUTIONS = frozenset({DIST_NAME, "trayapp"})
PIP_TIMEOUT = 600.0
STAGING_PREFIX = ".install-"
STALE_STAGING_S = 3600.0

# sys.path entries activate() added: what is not one of them is the app's own environment.
_ACTIVATED: set[str] = set()


class PluginError(TrayappError):
    """A plugin could not be installed or removed; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class InstalledPlugin:
    name: str
    version: str
    patterns: tuple[str, ...]  # "entry name = module:attr" of each trayapp.patterns entry point
    location: Path = field(compare=False)  # its own folder (or the shared one, for an old install)
    libraries: tuple[str, ...] = ()  # "name version" of what was installed for it alone

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "entry_points": list(self.patterns),
            "libraries": list(self.libraries),
        }


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def plugins_dir(profile_path: Path) -> Path:
    return profile_path / PLUGINS_DIRNAME


def _plugin_folders(folder: Path) -> list[Path]:
    """Each plugin's own folder under ``folder``, by name (staging folders excluded)."""
    if not folder.is_dir():
        return []
    return sorted(
        child for child in folder.iterdir() if child.is_dir() and not child.name.startswith(".")
    )


def _has_flat_install(folder: Path) -> bool:
    """Whether an earlier version installed plugins straight into ``folder``."""
    return folder.is_dir() and any(folder.glob("*.dist-info"))


def activate(folder: Path) -> bool:
    """Make the plugins in ``folder`` importable (appended to ``sys.path``); False if none."""
    entries = [str(sub) for sub in _plugin_folders(folder) if any(sub.glob("*.dist-info"))]
    if _has_flat_install(folder):
        entries.append(str(folder))
    added = False
    for entry in entries:
        _ACTIVATED.add(entry)
        if entry not in sys.path:
            sys.path.append(entry)
            added = True
    if added:
        importlib.invalidate_caches()
    return bool(entries)


def _header(dist: metadata.Distribution, key: str) -> str | None:
    """One metadata field, None when missing (indexing raises KeyError on newer Pythons)."""
    values = dist.metadata.get_all(key)
    return str(values[0]) if values else None


def _name(dist: metadata.Distribution) -> str:
    """The distribution's name ("" when its metadata has none)."""
    return _header(dist, "Name") or ""


def _patterns_of(dist: metadata.Distribution) -> tuple[str, ...]:
    return tuple(
        f"{ep.name} = {ep.value}" for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP
    )


def installed(folder: Path) -> list[InstalledPlugin]:
    """The plugins in ``folder`` (distributions that provide patterns), by name."""
    found: dict[str, InstalledPlugin] = {}
    for sub in _plugin_folders(folder):
        dists = list(metadata.distributions(path=[str(sub)]))
        own = [d for d in dists if normalize(_name(d)) == sub.name]
        if not own or not _patterns_of(own[0]):
            continue
        plugin = own[0]
        libraries = tuple(sorted(f"{_name(d)} {d.version}" for d in dists if d is not plugin))
        found[sub.name] = InstalledPlugin(
            _name(plugin), plugin.version, _patterns_of(plugin), sub, libraries
        )
    if _has_flat_install(folder):
        for dist in metadata.distributions(path=[str(folder)]):
            name = _name(dist)
            eps = _patterns_of(dist)
            if name and eps and normalize(name) not in found:
                found[normalize(name)] = InstalledPlugin(name, dist.version, eps, folder)
    return [found[key] for key in sorted(found)]


# ------------------------------------------------------------------------------ the app's side


def app_distributions() -> dict[str, str]:
    """Distributions the running app imports from itself (normalized name -> version).

    Everything on ``sys.path`` but the plugin folders: in a source install the app's
    environment, in the frozen bundle the libraries it carries (the build writes their metadata).
    """
    path = [entry for entry in sys.path if entry not in _ACTIVATED]
    found: dict[str, str] = {}
    for dist in metadata.distributions(path=path):
        name = _name(dist)
        if name and normalize(name) not in found:
            found[normalize(name)] = dist.version
    return found


def _missing_requirements(
    dist: metadata.Distribution, provided: dict[str, str] | None = None
) -> list[str]:
    """The plugin's requirements the app does not already provide (the app itself excluded).

    Raises :class:`PluginError` when the app has a requirement in a version the plugin excludes
    (a second copy could not help: the app's own is the one imported).
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion

    have = app_distributions() if provided is None else provided
    out: list[str] = []
    for line in dist.requires or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            raise PluginError(
                f"{_name(dist)} has a requirement pip cannot read ({line!r}); "
                "ask its author for a fixed release"
            ) from None
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an optional extra of the plugin's, or for another platform / Python
        name = normalize(req.name)
        if name in APP_DISTRIBUTIONS:
            continue
        version = have.get(name)
        if version is None:
            out.append(str(req))
            continue
        try:
            fits = req.specifier.contains(version, prereleases=True)
        except InvalidVersion:
            fits = True  # a version packaging cannot compare: trust the app's copy
        if not fits:
            raise PluginError(
                f"{_name(dist)} needs {req.name}{req.specifier}, but this Pattern Sync "
                f"has {req.name} {version} (and always uses its own copy); look for a version "
                "of the plugin made for this Pattern Sync, or update Pattern Sync"
            )
    return out


# ------------------------------------------------------------------------------ pip


def _frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def _pip() -> list[str]:
    """A pip to run: this Python's, else (the frozen bundle has none) python3's on PATH."""
    if not _frozen():
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


def interpreter_tags() -> list[str]:
    """pip options naming this interpreter: version, implementation, ABI and platform tags.

    Given to the pip of another Python (the frozen bundle's case) so that it picks what this
    one can load: e.g. ``--python-version 3.11 --implementation cp --abi cp311 --platform
    manylinux_2_36_x86_64 ... --platform manylinux2014_x86_64 --platform linux_x86_64``.
    """
    from packaging import tags

    version = f"{sys.version_info.major}{sys.version_info.minor}"
    interpreter = f"{tags.interpreter_name()}{version}"
    abi = next((t.abi for t in tags.sys_tags() if t.interpreter == interpreter), f"cp{version}")
    platforms: list[str] = []
    for tag in tags.sys_tags():
        if tag.platform != "any" and tag.platform not in platforms:
            platforms.append(tag.platform)
    options = [
        "--python-version",
        f"{sys.version_info.major}.{sys.version_info.minor}",
        "--implementation",
        tags.interpreter_name(),
        "--abi",
        abi,
    ]
    for plat in platforms:
        options += ["--platform", plat]
    return options


def _describe_interpreter() -> str:
    machine = platform.machine() or "this machine"
    return f"Python {sys.version_info.major}.{sys.version_info.minor} on Linux {machine}"


def _run_pip(args: list[str], what: str, *, binary_only: bool = False) -> None:
    cmd = [*_pip(), "install", "--disable-pip-version-check", "--no-input", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise PluginError(
            f"installing {what} took longer than {PIP_TIMEOUT:g} s and was stopped"
        ) from None
    if done.returncode == 0:
        return
    lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
    reason = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), None)
    reason = (reason or (lines[-1] if lines else f"pip exited with {done.returncode}"))[:300]
    reason = reason.removeprefix("ERROR: ")
    if binary_only and any(
        "No matching distribution found" in ln or "Could not find a version" in ln for ln in lines
    ):
        raise PluginError(
            f"could not install {what}: {reason}. The desktop bundle installs a plugin's "
            f"libraries only as ready-made wheels built for its {_describe_interpreter()}, and "
            "none was found; ask the plugin's author to publish wheels for it, or run Pattern "
            "Sync installed from source (pip install pattern-sync)"
        )
    hint = ""
    if "build dependencies" in done.stderr:
        # A project folder is built first, with build tools pip fetches from the index.
        hint = (
            "; building a project folder needs its build tools (such as setuptools) from "
            "the package index: connect to the network, or build a wheel where you can "
            "(python -m build) and install the .whl file"
        )
    raise PluginError(f"could not install {what}: {reason}{hint}")


def _check_runs_here(dist: metadata.Distribution) -> None:
    """Refuse a plugin this interpreter cannot run (its Requires-Python, its wheel's tags)."""
    from packaging import tags
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    name = f"{_name(dist)} {dist.version}"
    here = platform.python_version()
    requires_python = _header(dist, "Requires-Python")
    if requires_python:
        try:
            fits = SpecifierSet(requires_python).contains(here, prereleases=True)
        except InvalidSpecifier:
            fits = True
        if not fits:
            raise PluginError(
                f"{name} needs Python {requires_python}, but Pattern Sync runs on Python {here}; "
                "look for a version of the plugin that supports it"
            )
    wheel = dist.read_text("WHEEL") or ""
    built_for = [ln.split(":", 1)[1].strip() for ln in wheel.splitlines() if ln.startswith("Tag:")]
    if not built_for:
        return
    supported = set(tags.sys_tags())
    if not any(supported & tags.parse_tag(tag) for tag in built_for):
        raise PluginError(
            f"{name} was built for {', '.join(built_for)}, which this Pattern Sync "
            f"({_describe_interpreter()}) cannot load; install a build of the plugin made for "
            "it (a wheel tagged py3-none-any, or one for this Python)"
        )


# ------------------------------------------------------------------------------ install, remove


def _resolve_spec(spec: str) -> str:
    path = Path(spec).expanduser()
    if path.exists():
        return str(path.resolve())
    if spec.endswith(".whl") or "/" in spec:
        raise PluginError(f"{spec} does not exist; give a wheel file, a project folder or a name")
    return spec


def _clear_stale_staging(folder: Path) -> None:
    """Remove what an install that was killed left behind (not one still running)."""
    for stale in folder.glob(f"{STAGING_PREFIX}*"):
        try:
            old = time.time() - stale.stat().st_mtime > STALE_STAGING_S
        except OSError:
            continue
        if old:
            shutil.rmtree(stale, ignore_errors=True)


def _constraints(provided: dict[str, str], path: Path) -> Path:
    """A pip constraints file pinning what the app has to the versions it has."""
    from packaging.version import InvalidVersion, Version

    lines = []
    for name, version in sorted(provided.items()):
        try:
            Version(version)
        except InvalidVersion:
            continue
        lines.append(f"{name}=={version}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def install(folder: Path, spec: str) -> list[InstalledPlugin]:
    """Install ``spec`` (a project folder, a wheel file or a package name) into ``folder``.

    Returns the plugin it added or replaced. Raises :class:`PluginError` when pip fails, when
    what was installed provides no pattern, or when it cannot run in this app; nothing of it is
    then left in ``folder`` (an older version of the same plugin stays as it was).
    """
    target = _resolve_spec(spec)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _clear_stale_staging(folder)
    frozen = _frozen()
    interpreter = interpreter_tags() if frozen else []
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    try:
        site = staging / "site"
        # The plugin alone: a project folder is built as usual (by pip's Python; the tags
        # below then refuse a build for another interpreter), a name picks the right wheel.
        _run_pip(["--no-deps", "--target", str(site), *interpreter, target], spec)
        new = list(metadata.distributions(path=[str(site)]))
        plugins = [d for d in new if _patterns_of(d)]
        if not plugins:
            raise PluginError(
                f"{spec} is not a Pattern Sync plugin: it declares no '{ENTRY_POINT_GROUP}' "
                "entry point (see docs/plugins.md); nothing was installed"
            )
        plugin = plugins[0]
        name = _name(plugin)
        _check_runs_here(plugin)
        provided = app_distributions()
        needed = _missing_requirements(plugin, provided)
        if needed:
            options = ["--only-binary=:all:", *interpreter] if frozen else []
            constraints = _constraints(provided, staging / "constraints.txt")
            _run_pip(
                ["--target", str(site), "--upgrade", "-c", str(constraints), *options, *needed],
                f"the libraries {name} needs",
                binary_only=frozen,
            )
            # Pinned to the app's versions, so these copies equal the app's, which is the
            # one imported: they would only take space.
            for dist in metadata.distributions(path=[str(site)]):
                other = normalize(_name(dist))
                if other in provided or other in APP_DISTRIBUTIONS:
                    _delete_dist(site, dist)
        dest = folder / normalize(name)
        if dest.exists():
            dest.rename(staging / "previous")
        site.rename(dest)
        dest.chmod(0o700)
        _remove_flat(folder, name)  # an older install of it from before plugins had folders
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [p for p in installed(folder) if normalize(p.name) == normalize(name)]


def _delete_dist(root: Path, dist: metadata.Distribution) -> None:
    """Delete one distribution's files (per its RECORD) from ``root``, and emptied folders."""
    base = root.resolve()
    for file in dist.files or []:
        located = (root / file).resolve()
        if located.is_relative_to(base) and located.is_file():
            located.unlink()
    info = getattr(dist, "_path", None)
    if isinstance(info, Path) and info.exists():
        shutil.rmtree(info, ignore_errors=True)
    _prune_empty(root)


def _prune_empty(root: Path) -> None:
    for sub in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir() and (not any(sub.iterdir()) or _only_pycache(sub)):
            shutil.rmtree(sub, ignore_errors=True)


def _remove_flat(folder: Path, name: str) -> bool:
    """Remove a plugin an earlier version installed straight into ``folder`` (its own files)."""
    if not _has_flat_install(folder):
        return False
    wanted = normalize(name)
    removed = False
    for dist in metadata.distributions(path=[str(folder)]):
        if normalize(_name(dist)) == wanted:
            base = folder.resolve()
            for file in dist.files or []:
                located = (folder / file).resolve()
                if located.is_relative_to(base) and located.is_file():
                    located.unlink()
            info = getattr(dist, "_path", None)
            if isinstance(info, Path) and info.exists():
                shutil.rmtree(info, ignore_errors=True)
            removed = True
    if removed:
        for sub in folder.iterdir():
            if sub.is_dir() and not any(sub.glob("*.dist-info")):
                _prune_empty(sub)
                if sub.is_dir() and (not any(sub.iterdir()) or _only_pycache(sub)):
                    shutil.rmtree(sub, ignore_errors=True)
    return removed


def _only_pycache(folder: Path) -> bool:
    return all(child.name == "__pycache__" for child in folder.iterdir())


def remove(folder: Path, name: str) -> InstalledPlugin:
    """Remove the plugin ``name`` with the libraries installed for it alone; returns what went."""
    wanted = normalize(name)
    match = [p for p in installed(folder) if normalize(p.name) == wanted]
    if not match:
        known = ", ".join(p.name for p in installed(folder)) or "none"
        raise PluginError(f"no plugin named {name!r} is installed (installed: {known})")
    plugin = match[0]
    if plugin.location != folder and plugin.location.parent == folder:
        shutil.rmtree(plugin.location)
        entry = str(plugin.location)
        if entry in sys.path:
            sys.path.remove(entry)
        _ACTIVATED.discard(entry)
        importlib.invalidate_caches()
    _remove_flat(folder, plugin.name)
    return plugin
