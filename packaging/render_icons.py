"""Render the app's SVG icon into the hicolor theme layout at the standard sizes.

Desktop menus, docks and the Debian/AppStream tooling look up an application icon by name in
``hicolor/<size>x<size>/apps`` and ``hicolor/scalable/apps``; not every environment renders SVGs
at small sizes well (or at all), so PNGs are shipped for 16-256 px next to the scalable SVG.
Qt's own SVG renderer is used (already a build dependency) so the build needs neither
rsvg-convert nor ImageMagick, and the PNGs match what the tray itself draws.

    python packaging/render_icons.py SOURCE.svg OUT_DIR [--name trayapp]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

SIZES = (16, 22, 24, 32, 48, 64, 128, 256)


def render(source: Path, out_dir: Path, name: str) -> list[Path]:
    """Write ``<out_dir>/<size>x<size>/apps/<name>.png`` for each size plus the scalable SVG."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    renderer = QSvgRenderer(str(source))
    if not renderer.isValid():
        raise SystemExit(f"render_icons: {source} is not a valid SVG; fix or replace it")
    written: list[Path] = []
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        target = out_dir / f"{size}x{size}" / "apps" / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(target)):  # format from the .png suffix
            raise SystemExit(f"render_icons: could not write {target}")
        written.append(target)
    scalable = out_dir / "scalable" / "apps" / f"{name}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, scalable)
    written.append(scalable)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("source", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--name", default="trayapp", help="icon name (default: trayapp)")
    args = parser.parse_args(argv)
    for path in render(args.source, args.out_dir, args.name):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
