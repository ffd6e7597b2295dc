"""The start-up icon ("syncing"), from PNGs drawn ahead of time by :mod:`trayapp.ui.icons`.

The tray shows an icon before it loads anything else (issue 17.2: within 1.3x the time of a bare
Qt tray). Drawing it at start cost 20-50 ms of CPU there: importing :mod:`trayapp.ui.icons`
makes PySide build the Python enums of the whole ``Qt`` namespace (~90 enums, ~13 ms), and the
larger sizes (64 px and up) made Qt's raster engine start its thread pool, two threads trading
hundreds of wake-ups with the main one before the icon. The same pixels, drawn ahead of time
and shipped in ``resources/icons/tray-syncing-<px>.png``, load in about a millisecond (nine small
PNGs). The tray controller draws every later icon
(other states, the animation frames, monochrome styles) with :mod:`trayapp.ui.icons`.

``tests/ui/test_early_icon.py`` fails when :mod:`trayapp.ui.icons` draws "syncing" differently from
these files; write them again with

    QT_QPA_PLATFORM=offscreen python -m trayapp.ui.early_icon
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtGui import QIcon, QPixmap

from trayapp.ui.resources import resources_dir

# trayapp.ui.icons.SIZES at 1x and 2x, in device pixels (16 at 2x is the 32 px drawing).
LOGICAL_SIZES = (16, 22, 24, 32, 48, 64)
DEVICE_SIZES = (16, 22, 24, 32, 44, 48, 64, 96, 128)


def file_name(px: int) -> str:
    return f"tray-syncing-{px}.png"


def icon_files(base: Path | None = None) -> list[Path] | None:
    """The shipped files, one per size; None when any is missing (the icon is drawn then)."""
    base = base if base is not None else resources_dir()
    if base is None:
        return None
    files = [base / "icons" / file_name(px) for px in DEVICE_SIZES]
    return files if all(f.is_file() for f in files) else None


def starting_icon() -> QIcon:
    """The "syncing" icon of the colour style, for the tray's start-up."""
    files = icon_files()
    if files is None:  # an install without the files: draw it (slower, same pixels)
        from trayapp.ui.icons import state_icon
        from trayapp.ui.iconstate import IconState

        return state_icon(IconState.SYNCING)
    by_px = dict(zip(DEVICE_SIZES, files, strict=True))
    icon = QIcon()
    # As trayapp.ui.icons.state_icon builds it: each logical size at 1x and at 2x (a 2x pixmap
    # says so, or a HiDPI panel would get the nearest 1x file scaled up instead).
    for size in LOGICAL_SIZES:
        for dpr in (1, 2):
            pix = QPixmap(str(by_px[size * dpr]))
            pix.setDevicePixelRatio(dpr)
            icon.addPixmap(pix)
    return icon


def write_files(folder: Path) -> list[Path]:
    """Draw the start-up icon at every size into ``folder`` (needs a QGuiApplication)."""
    from trayapp.ui.icons import render
    from trayapp.ui.iconstate import IconState

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for px in DEVICE_SIZES:
        path = folder / file_name(px)
        if not render(IconState.SYNCING, px).save(str(path), "PNG"):
            raise OSError(f"could not write {path}")
        written.append(path)
    return written


def main() -> int:
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    base = resources_dir()
    if base is None:
        print("early_icon: no resources folder found", file=sys.stderr)
        return 1
    for path in write_files(base / "icons"):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
