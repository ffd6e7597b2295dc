"""Facts about a built bundle that packaging needs and nobody should type by hand.

- ``glibc``: the newest GLIBC symbol version any bundled binary needs. PyInstaller bundles carry
  their own libraries but use the system's C library, so this is the oldest distribution the
  bundle runs on; install.sh quotes it when the bundle cannot start.
- ``depends``: the Debian packages providing the shared libraries the bundle links to but does
  not carry (libc, GL/EGL drivers...), found with ``ldd`` on every bundled ELF file and mapped
  with ``dpkg -S``. This is what ``dpkg-shlibdeps`` does for a source package, without needing
  one.

    python packaging/linux/bundle_info.py APP_DIR        prints JSON: glibc, depends, missing
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

_GLIBC = re.compile(rb"GLIBC_(\d+)\.(\d+)(?:\.(\d+))?")
_LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(not found|/\S+)")


def elf_files(app_dir: Path) -> list[Path]:
    found = []
    for path in sorted(app_dir.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def glibc_required(files: list[Path]) -> str:
    best = (0, 0, 0)
    for path in files:
        out = subprocess.run(["objdump", "-T", str(path)], capture_output=True, check=False).stdout
        for match in _GLIBC.finditer(out):
            best = max(best, tuple(int(g or 0) for g in match.groups()))  # type: ignore[assignment]
    return ".".join(str(p) for p in (best if best[2] else best[:2]))


def external_libraries(app_dir: Path, files: list[Path]) -> tuple[set[str], set[str]]:
    """(paths of system libraries the bundle needs, sonames nobody provides here)."""
    internal = app_dir / "_internal"
    search = [internal, internal / "PySide6" / "Qt" / "lib"]
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(str(p) for p in search))
    system: set[str] = set()
    missing: set[str] = set()
    for path in files:
        out = subprocess.run(
            ["ldd", str(path)], capture_output=True, text=True, env=env, check=False
        ).stdout
        for line in out.splitlines():
            match = _LDD_LINE.match(line)
            if not match:
                continue
            soname, where = match.groups()
            if where == "not found":
                missing.add(soname)
            elif not Path(where).resolve().is_relative_to(app_dir.resolve()):
                system.add(where)
    return system, missing


def debian_packages(paths: set[str]) -> list[str]:
    """Map library paths to the packages that own them, trying the /usr-merged spellings."""
    packages: set[str] = set()
    for path in sorted(paths):
        real = os.path.realpath(path)
        candidates = {path, real}
        for p in list(candidates):
            if p.startswith("/usr/"):
                candidates.add(p[4:])
            else:
                candidates.add("/usr" + p)
        for candidate in sorted(candidates):
            result = subprocess.run(
                ["dpkg", "-S", candidate], capture_output=True, text=True, check=False
            )
            if result.returncode == 0:
                owner = result.stdout.split(":", 1)[0].split(",")[0].strip()
                packages.add(owner)
                break
    return sorted(packages)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    app_dir = Path(args[0])
    files = elf_files(app_dir)
    system, missing = external_libraries(app_dir, files)
    info = {
        "glibc": glibc_required(files),
        "depends": debian_packages(system),
        # Sonames no bundled or system library provides: optional plugin dependencies (e.g. a
        # Wayland EGL driver) that only matter on systems that have them.
        "missing": sorted(missing),
    }
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
