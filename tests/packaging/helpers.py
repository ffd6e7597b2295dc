"""Shared by the release tests: where things are, and readers for the files a desktop uses."""

from __future__ import annotations

import configparser
import os
import struct
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The hicolor sizes build.sh renders (plus scalable/).
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)


@dataclass(frozen=True)
class Release:
    version: str
    dist: Path
    tarball: Path
    deb: Path
    facts: dict[str, object]
    unpacked: Path  # the tarball, extracted once for tests that only read or run it

    @property
    def folder(self) -> Path:
        """The release folder a user gets from the tarball (install.sh, app/, share/)."""
        return self.unpacked / self.tarball.name.removesuffix(".tar.gz")


def project_version() -> str:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    version = data["project"]["version"]
    assert isinstance(version, str)
    return version


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """A login-like environment: HOME and PATH, none of the test suite's settings."""
    return {"HOME": str(home), "PATH": os.environ["PATH"], "LANG": "C.UTF-8", **extra}


def read_entry(path: Path) -> configparser.SectionProxy:
    """The [Desktop Entry] group of a .desktop file, keys case-preserved."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


def exec_argv(value: str) -> list[str]:
    r"""Split a desktop entry Exec value as the Desktop Entry Specification says.

    String-level escapes (``\\`` -> ``\``) first; then arguments split on spaces, where a
    double-quoted argument may escape ``"`` `` ` `` ``$`` and ``\`` with a backslash. (Python's
    shlex differs: it keeps the backslash before ``$`` and `` ` ``.)
    """
    text = value.replace("\\\\", "\\")
    argv: list[str] = []
    i, current, quoted, started = 0, "", False, False
    while i < len(text):
        ch = text[i]
        if quoted and ch == "\\" and i + 1 < len(text) and text[i + 1] in '"`$\\':
            current += text[i + 1]
            i += 2
            continue
        if ch == '"':
            quoted, started = not quoted, True
        elif ch == " " and not quoted:
            if started:
                argv.append(current)
            current, started = "", False
        else:
            current, started = current + ch, True
        i += 1
    assert not quoted, f"unbalanced quotes in {value!r}"
    if started:
        argv.append(current)
    return argv


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)
