"""The start-up icon is loaded from PNGs drawn ahead of time: they must be what icons.py draws.

trayapp/ui/early_icon.py ships "syncing" at every panel size as PNGs so that the tray shows its
icon without importing trayapp.ui.icons (issue 17.2). If the drawing changes and the files do
not, the user would see a different icon for the first second: this fails, and says how to
write them again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSize
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from trayapp.ui import early_icon
from trayapp.ui.icons import SIZES, render, state_icon
from trayapp.ui.model import IconState

REGENERATE = "QT_QPA_PLATFORM=offscreen python -m trayapp.ui.early_icon"


def _pixels(image: QImage) -> QImage:
    return image.convertToFormat(QImage.Format.Format_ARGB32)  # PNG keeps straight alpha


def test_the_shipped_files_are_the_drawn_icon_at_every_size(qapp: QApplication) -> None:
    files = early_icon.icon_files()
    assert files is not None, f"start-up icon files missing; write them: {REGENERATE}"
    # Every size the drawn icon has, at 1x and 2x, has its file.
    assert early_icon.LOGICAL_SIZES == SIZES
    assert set(early_icon.DEVICE_SIZES) == set(SIZES) | {2 * s for s in SIZES}
    for px, path in zip(early_icon.DEVICE_SIZES, files, strict=True):
        shipped = QImage(str(path))
        assert not shipped.isNull() and shipped.width() == shipped.height() == px, path
        drawn = render(IconState.SYNCING, px).toImage()
        assert _pixels(shipped) == _pixels(drawn), (
            f"{path.name} differs from what trayapp/ui/icons.py draws; write it again: {REGENERATE}"
        )


def test_the_starting_icon_gives_the_drawn_pixels_at_panel_sizes(qapp: QApplication) -> None:
    icon = early_icon.starting_icon()
    drawn = state_icon(IconState.SYNCING)
    for px in (16, 22, 24, 32):
        for dpr in (1.0, 2.0):  # a HiDPI panel gets the 2x drawing, not a scaled 1x one
            got = icon.pixmap(QSize(px, px), dpr)
            want = drawn.pixmap(QSize(px, px), dpr)
            assert got.size() == want.size(), (px, dpr, got.size(), want.size())
            assert _pixels(got.toImage()) == _pixels(want.toImage()), (px, dpr)


def test_without_the_files_the_icon_is_drawn(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "icons").mkdir()
    monkeypatch.setattr(early_icon, "resources_dir", lambda: tmp_path)
    assert early_icon.icon_files() is None
    icon = early_icon.starting_icon()
    assert icon is state_icon(IconState.SYNCING)  # the cached drawing, same pixels
    written = early_icon.write_files(tmp_path / "icons")
    assert [p.name for p in written] == [early_icon.file_name(px) for px in early_icon.DEVICE_SIZES]
    assert early_icon.icon_files() == written
