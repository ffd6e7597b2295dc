"""The floor: a bare PySide6 + qasync ``QSystemTrayIcon`` doing nothing, for bench/overview.py.

What any Python tray on this toolkit costs before it does any work: the interpreter, Qt's
widgets and platform plugin, qasync's loop and one icon. It writes the same report line as the
app (``TRAYAPP_ICON_SHOWN`` to the file named by ``TRAYAPP_TEST_REPORT``) once the icon is
shown, then idles until SIGTERM ends it.

    QT_QPA_PLATFORM=xcb python bench/floor_tray.py
"""

from __future__ import annotations

import asyncio
import os
import sys


def main() -> int:
    import qasync
    from PySide6.QtGui import QColor, QIcon, QPixmap
    from PySide6.QtWidgets import QApplication, QMenu, QSystemTrayIcon

    app = QApplication(sys.argv[:1])
    app.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    pix = QPixmap(22, 22)
    pix.fill(QColor("#3a7bd5"))
    tray = QSystemTrayIcon(QIcon(pix))
    menu = QMenu()
    menu.addAction("Quit", app.quit)
    tray.setContextMenu(menu)
    tray.show()
    report = os.environ.get("TRAYAPP_TEST_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as fh:
            fh.write("TRAYAPP_ICON_SHOWN\nTRAYAPP_READY\n")
    if os.environ.get("BENCH_EXIT_AT_ICON"):  # bench/icon_start.py: the process ends here
        os._exit(0)
    # SIGTERM keeps its default action (the process ends): no handler, no polling timer.
    with loop:
        loop.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
