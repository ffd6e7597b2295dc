"""Where the app's resources (icons, translations, the desktop template) are found. Qt-free.

Its own module so that the icon code (which needs the model's states) and the translation code
(which the model needs) both use it without importing each other.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def resources_dir() -> Path | None:
    """Where resources/ is: a source checkout, an installed package, or a PyInstaller bundle."""
    candidates: list[Path] = []
    if env := os.environ.get("TRAYAPP_RESOURCES"):
        candidates.append(Path(env))
    here = Path(__file__).resolve()
    candidates.append(here.parents[2] / "resources")  # source checkout
    # An installed copy: pyproject maps resources/ to the package trayapp._resources.
    candidates.append(here.parents[1] / "_resources")
    if bundle := getattr(sys, "_MEIPASS", None):
        candidates.append(Path(bundle) / "resources")
    return next((c for c in candidates if (c / "icons").is_dir()), None)
