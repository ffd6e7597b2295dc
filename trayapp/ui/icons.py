"""Tray icons: drawn in code for each :class:`~trayapp.ui.model.IconState`, sharp at panel sizes.

The glyph is a 2x2 tile mark; every state but "ok" replaces the fourth tile with a badge whose
*shape* says the state, so states differ in shape and not only in colour (colour-blind users,
monochrome panels):

========== ================================= ==============================================
state      badge                             tiles
========== ================================= ==============================================
ok         none (fourth tile)                blue
syncing    circle with two arrows, turning   blue
attention  triangle with "!"                 blue
error      circle with "x"                   blue
paused     rounded square with two bars      grey
offline    circle with a slash               hollow (outline only): "not connected"
========== ================================= ==============================================

Drawing in code (rather than loading one SVG per state) gives, from one description: the colour
icon, the monochrome variants (:class:`Style`; details are cut out of the glyph, as symbolic
icons do), the animation frames of "syncing", and HiDPI pixmaps. ``tests/ui/test_icons.py``
renders all six states at 16 px on a light and a dark panel and checks every pair differs.

The SVGs in ``resources/icons`` stay the app's logo (the autostart entry, the icon theme).
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import cache
from pathlib import Path

import platformdirs
from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import (
    QColor,
    QGuiApplication,
    QIcon,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
)

from trayapp.ui.iconstate import IconState
from trayapp.ui.resources import resources_dir as resources_dir  # re-exported (tests)

SIZES = (16, 22, 24, 32, 48, 64)
SYNC_FRAMES = 6  # the arrows turn 180 degrees over the frames (they are symmetric)
SYNC_FRAME_MS = 150
ICON_STYLE_ENV = "TRAYAPP_ICON_STYLE"  # colour | mono | mono-dark | mono-light | auto

BLUE = "#2f7de1"
AMBER = "#f5a300"
RED = "#d92626"
GREY = "#7b8596"
GREY_DARK = "#5b6473"
OUTLINE = QColor(13, 33, 67, 150)


class Style(StrEnum):
    COLOUR = "colour"
    MONO_DARK = "mono-dark"  # a dark glyph, for light panels
    MONO_LIGHT = "mono-light"  # a light glyph, for dark panels


_MONO = {Style.MONO_DARK: QColor("#202428"), Style.MONO_LIGHT: QColor("#f2f4f7")}


def icon_path(state: IconState) -> Path | None:
    """The state's SVG in resources/icons (the app logo is ``tray-ok.svg``)."""
    base = resources_dir()
    path = base / "icons" / f"tray-{state.value}.svg" if base else None
    return path if path is not None and path.is_file() else None


def default_style(choice: str | None = None) -> Style:
    """The style to use: ``choice`` (a pref) or $TRAYAPP_ICON_STYLE, else what the desktop expects.

    "auto": monochrome on desktops whose panels use symbolic icons (GNOME and its relatives: the
    AppIndicator extension, Unity, Pantheon), in the shade that contrasts with the colour scheme
    (dark glyph on a light scheme); colour elsewhere (KDE, Xfce, LXQt, Windows).
    """
    choice = (choice or os.environ.get(ICON_STYLE_ENV) or "auto").strip().lower()
    if choice in ("color", "colour"):
        return Style.COLOUR
    if choice in (Style.MONO_DARK, Style.MONO_LIGHT):
        return Style(choice)
    if choice == "auto":
        desktop = os.environ.get("XDG_CURRENT_DESKTOP", "").lower()
        if not any(d in desktop for d in ("gnome", "unity", "pantheon", "budgie")):
            return Style.COLOUR
    return _mono_for_scheme()


def _mono_for_scheme() -> Style:
    app = QGuiApplication.instance()
    if isinstance(app, QGuiApplication) and app.styleHints().colorScheme() is Qt.ColorScheme.Light:
        return Style.MONO_DARK
    return Style.MONO_LIGHT  # GNOME's top bar is dark whatever the scheme


# ---------------------------------------------------------------------------------------------
# Drawing (in a 32x32 design grid, scaled)


def _tile(x: float, y: float) -> QRectF:
    return QRectF(x, y, 12, 12)


def _badge_shape(state: IconState) -> QPainterPath:
    path = QPainterPath()
    if state is IconState.ATTENTION:
        path.moveTo(23, 14.2)
        path.lineTo(31.4, 30.4)
        path.lineTo(14.6, 30.4)
        path.closeSubpath()
    elif state is IconState.PAUSED:
        path.addRoundedRect(QRectF(15.5, 15.5, 15, 15), 3.5, 3.5)
    else:
        path.addEllipse(QPointF(23, 23), 8.3, 8.3)
    return path


def _detail(painter: QPainter, state: IconState, colour: QColor, frame: int) -> None:
    """The white (or cut-out) sign inside the badge."""
    pen = QPen(colour, 2.4, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap)
    painter.setPen(pen)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    if state is IconState.ERROR:
        painter.drawLine(QPointF(19.8, 19.8), QPointF(26.2, 26.2))
        painter.drawLine(QPointF(26.2, 19.8), QPointF(19.8, 26.2))
    elif state is IconState.ATTENTION:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        painter.drawRoundedRect(QRectF(21.7, 19.0, 2.6, 6.6), 1.1, 1.1)
        painter.drawEllipse(QPointF(23, 28.0), 1.45, 1.45)
    elif state is IconState.PAUSED:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        painter.drawRoundedRect(QRectF(19.4, 18.8, 2.6, 8.4), 0.8, 0.8)
        painter.drawRoundedRect(QRectF(24.0, 18.8, 2.6, 8.4), 0.8, 0.8)
    elif state is IconState.OFFLINE:
        painter.setPen(QPen(colour, 2.0, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
        painter.drawEllipse(QPointF(23, 23), 4.2, 4.2)
        painter.drawLine(QPointF(18.6, 27.4), QPointF(27.4, 18.6))
    elif state is IconState.SYNCING:
        painter.save()
        painter.translate(23, 23)
        painter.rotate(frame * 180.0 / SYNC_FRAMES)
        pen.setWidthF(2.1)
        painter.setPen(pen)
        rect = QRectF(-4.6, -4.6, 9.2, 9.2)
        painter.drawArc(rect, 200 * 16, 110 * 16)  # Qt angles: 1/16 degree, counter-clockwise
        painter.drawArc(rect, 20 * 16, 110 * 16)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        for sign in (1, -1):  # arrow heads at the arcs' ends
            head = QPainterPath()
            head.moveTo(sign * 5.9, sign * -0.6)
            head.lineTo(sign * 3.0, sign * -0.6)
            head.lineTo(sign * 4.6, sign * 2.6)
            head.closeSubpath()
            painter.drawPath(head)
        painter.restore()


def paint(
    painter: QPainter, state: IconState, size: float, style: Style = Style.COLOUR, frame: int = 0
) -> None:
    """Draw the glyph into the square (0, 0, size, size) of ``painter``."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.scale(size / 32.0, size / 32.0)
    mono = _MONO.get(style)
    tiles = [_tile(3, 3), _tile(17, 3), _tile(3, 17)]
    if state is IconState.OK:
        tiles.append(_tile(17, 17))
    tile_colour = QColor(GREY) if state is IconState.PAUSED else QColor(BLUE)
    if state is IconState.OFFLINE:
        tile_colour = QColor("#8791a3")  # mid grey: thin outlines show on light and dark panels
    fill = mono if mono is not None else tile_colour
    if mono is not None and state is IconState.PAUSED:
        fill = QColor(mono)
        fill.setAlphaF(0.45)  # dimmed: "not working right now", apart from the other states
    if state is IconState.OFFLINE:
        # Hollow tiles: the mark without its substance, "not connected".
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(fill, 2.6))
        for t in tiles:
            painter.drawRoundedRect(t.adjusted(1.3, 1.3, -1.3, -1.3), 2.4, 2.4)
    else:
        painter.setBrush(fill)
        painter.setPen(QPen(OUTLINE, 1.0) if mono is None else Qt.PenStyle.NoPen)
        for t in tiles:
            painter.drawRoundedRect(t, 3, 3)
    if state is not IconState.OK:
        badge = {
            IconState.SYNCING: BLUE,
            IconState.ATTENTION: AMBER,
            IconState.ERROR: RED,
            IconState.PAUSED: GREY_DARK,
            IconState.OFFLINE: GREY_DARK,
        }[state]
        shape = _badge_shape(state)
        # A transparent gap around the badge keeps it apart from the tiles at 16 px.
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Clear)
        painter.strokePath(shape, QPen(QColor(0, 0, 0), 3.0))
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
        painter.setBrush(mono if mono is not None else QColor(badge))
        painter.setPen(QPen(OUTLINE, 1.0) if mono is None else Qt.PenStyle.NoPen)
        painter.drawPath(shape)
        if mono is not None:
            # Symbolic icons cut their details out of the glyph.
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Clear)
            _detail(painter, state, QColor(0, 0, 0), frame)
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
        else:
            ink = QColor("#231400") if state is IconState.ATTENTION else QColor("#ffffff")
            _detail(painter, state, ink, frame)
    painter.restore()


def render(
    state: IconState,
    size: int,
    style: Style = Style.COLOUR,
    frame: int = 0,
    dpr: float = 1.0,
) -> QPixmap:
    """One state at one logical size (``dpr`` > 1: a HiDPI pixmap with that many device pixels)."""
    pix = QPixmap(QSize(round(size * dpr), round(size * dpr)))
    pix.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pix)
    paint(painter, state, size * dpr, style, frame)
    painter.end()
    pix.setDevicePixelRatio(dpr)
    return pix


@cache
def state_icon(state: IconState, style: Style = Style.COLOUR, frame: int = 0) -> QIcon:
    """A QIcon with pixmaps for every panel size, at 1x and 2x: the host picks an exact one."""
    icon = QIcon()
    for size in SIZES:
        icon.addPixmap(render(state, size, style, frame))
        icon.addPixmap(render(state, size, style, frame, dpr=2.0))
    if style is not Style.COLOUR:
        icon.setIsMask(True)  # macOS and KDE recolour mask icons to match the panel
    return icon


@cache
def state_icon_file(state: IconState) -> Path | None:
    """A PNG of the colour icon, for notifications (their icon says the severity)."""
    try:
        folder = Path(platformdirs.user_cache_dir("trayapp")) / "icons"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / f"{state.value}.png"
        if not render(state, 64).save(str(path), "PNG"):
            return None
        return path
    except OSError:
        return None
