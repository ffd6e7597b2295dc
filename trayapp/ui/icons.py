"""Tray icons: one SVG per :class:`~trayapp.ui.model.IconState`, rendered sharp at panel sizes.

The SVGs (resources/icons/tray-<state>.svg) are a 2x2 tile glyph; every state but "ok" replaces
the fourth tile with a badge (sync arrows, "!", "x", pause bars, offline ring), so states differ in
shape, not only colour, and read at 16 px on light and dark panels (thin dark outlines).
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

from trayapp.ui.model import IconState

SIZES = (16, 22, 24, 32, 48, 64)
_FALLBACK_COLOURS = {
    IconState.OK: "#2f7de1",
    IconState.SYNCING: "#2f7de1",
    IconState.ATTENTION: "#f5a300",
    IconState.ERROR: "#d92626",
    IconState.PAUSED: "#5b6473",
    IconState.OFFLINE: "#5b6473",
}


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


def icon_path(state: IconState) -> Path | None:
    base = resources_dir()
    path = base / "icons" / f"tray-{state.value}.svg" if base else None
    return path if path is not None and path.is_file() else None


def render(state: IconState, size: int) -> QPixmap:
    """Render one state at one pixel size (used by the icon, the status window and tests)."""
    pix = QPixmap(QSize(size, size))
    pix.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pix)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    path = icon_path(state)
    renderer = QSvgRenderer(str(path)) if path else None
    if renderer is not None and renderer.isValid():
        renderer.render(painter, QRectF(0, 0, size, size))
    else:
        # Missing resources must not leave an invisible tray icon: draw a coloured disc.
        painter.setBrush(QColor(_FALLBACK_COLOURS[state]))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawEllipse(QRectF(1, 1, size - 2, size - 2))
    painter.end()
    return pix


@cache
def state_icon(state: IconState) -> QIcon:
    """A QIcon with pre-rendered pixmaps: the tray host picks an exact size (no blurry scaling)."""
    icon = QIcon()
    for size in SIZES:
        icon.addPixmap(render(state, size))
    return icon
