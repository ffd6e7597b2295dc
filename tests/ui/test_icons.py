"""The six tray states stay distinguishable at 16 px on light and dark panels, colour and mono.

Rendered, composited onto a panel colour and compared pixel by pixel: two states are
"distinguishable" when enough pixels differ clearly (a difference a person sees at 16 px), not
when the files differ.
"""

from __future__ import annotations

import itertools

import pytest
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QApplication

from trayapp.ui.icons import SYNC_FRAMES, Style, default_style, render, state_icon
from trayapp.ui.model import IconState

LIGHT = "#eeeeee"
DARK = "#2b2b2b"
CLEAR = 80  # a channel differs by more than this (of 255): clearly different at a glance
MIN_PIXELS = 10  # of 256: a badge is about 8x8 px at 16 px


def on_panel(state: IconState, style: Style, panel: str, frame: int = 0) -> QImage:
    img = QImage(16, 16, QImage.Format.Format_RGB32)
    img.fill(QColor(panel))
    p = QPainter(img)
    p.drawPixmap(0, 0, render(state, 16, style, frame))
    p.end()
    return img


def clearly_different(a: QImage, b: QImage) -> int:
    n = 0
    for y in range(a.height()):
        for x in range(a.width()):
            ca, cb = a.pixelColor(x, y), b.pixelColor(x, y)
            if (
                max(
                    abs(ca.red() - cb.red()),
                    abs(ca.green() - cb.green()),
                    abs(ca.blue() - cb.blue()),
                )
                > CLEAR
            ):
                n += 1
    return n


CASES = [
    (Style.COLOUR, LIGHT),
    (Style.COLOUR, DARK),
    (Style.MONO_DARK, LIGHT),
    (Style.MONO_LIGHT, DARK),
]


@pytest.mark.parametrize(("style", "panel"), CASES)
def test_every_pair_of_states_differs_at_16_px(
    qapp: QApplication, style: Style, panel: str
) -> None:
    images = {s: on_panel(s, style, panel) for s in IconState}
    blank = QImage(16, 16, QImage.Format.Format_RGB32)
    blank.fill(QColor(panel))
    for s, img in images.items():
        assert clearly_different(img, blank) >= 50, f"{s} hardly shows on {panel}"
    for a, b in itertools.combinations(IconState, 2):
        n = clearly_different(images[a], images[b])
        assert n >= MIN_PIXELS, f"{a} and {b} differ in only {n} px ({style} on {panel})"


def test_syncing_turns_and_hidpi_pixmaps_have_device_pixels(qapp: QApplication) -> None:
    frames = [render(IconState.SYNCING, 32, Style.COLOUR, f).toImage() for f in range(SYNC_FRAMES)]
    for a, b in itertools.pairwise(frames):
        assert a != b  # each frame moves the arrows
    hi = render(IconState.OK, 16, dpr=2.0)
    assert (hi.width(), hi.height(), hi.devicePixelRatio()) == (32, 32, 2.0)
    icon = state_icon(IconState.ERROR, Style.MONO_LIGHT)
    assert icon.isMask()
    assert not state_icon(IconState.ERROR).isMask()


def test_style_choice(qapp: QApplication, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "KDE")
    monkeypatch.delenv("TRAYAPP_ICON_STYLE", raising=False)
    assert default_style() is Style.COLOUR
    assert default_style("mono-dark") is Style.MONO_DARK
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "ubuntu:GNOME")
    assert default_style() in (Style.MONO_DARK, Style.MONO_LIGHT)
    assert default_style("colour") is Style.COLOUR
    monkeypatch.setenv("TRAYAPP_ICON_STYLE", "mono-light")
    assert default_style() is Style.MONO_LIGHT
