"""Child process for tests/perf/test_start_imports.py: the real tray, then its sys.modules.

Runs ``trayapp.ui.app.main`` (with ``TRAY_CHILD_ROUTE=cli``: the ``trayapp`` command line's
``main``) (offscreen) on the profile given (further arguments go to the
tray, e.g. ``--demo``); a watcher thread waits for the app's own ``TRAYAPP_READY`` report line
(engine started, menu built; with ``--demo`` also ``TRAYAPP_DEMO_EMULATOR``), writes the names
of every imported module to the file given, and beside it, with other suffixes: the source
files :mod:`linecache` holds (``.linecache``), the modules imported before the tray handed over
to :mod:`trayapp.ui.runner`, right after its start-up icon (``.before_run``: noted by a
meta-path finder that only watches, so the child itself imports nothing of the app early), and
the app's pydantic models already built (``.models``) and the class of its QApplication
(``.app``). Then it ends the app with SIGTERM (its normal shutdown path), or with
``QApplication.quit()`` (as a session end does) if ``TRAY_END=quit``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path


def loaded_modules() -> list[str]:
    """Names of imported modules (a None entry blocks an import: it is not one)."""
    return sorted(name for name, module in list(sys.modules.items()) if module is not None)


def built_models() -> list[str]:
    """The app's pydantic models whose validators exist (built at import or on first use)."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None:
        return []
    found, todo = [], list(pydantic.BaseModel.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.startswith("trayapp.") and cls.__dict__.get("__pydantic_complete__"):
            found.append(f"{cls.__module__}.{cls.__qualname__}")
    return sorted(found)


class NoteBeforeRunner:
    """A meta-path finder that finds nothing: when the app first imports
    ``trayapp.ui.runner`` (where the engine's side starts, right after the start-up icon), it
    writes down the modules imported so far."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "trayapp.ui.runner" and not self.path.exists():
            self.path.write_text("\n".join(loaded_modules()) + "\n")


def main() -> int:
    profile, report, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    os.environ["TRAYAPP_TEST_REPORT"] = str(report)

    # The demo's Google half joins after ready: wait for it too.
    wanted = ["TRAYAPP_READY", *(["TRAYAPP_DEMO_EMULATOR"] if "--demo" in sys.argv else [])]

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            lines = report.read_text().splitlines() if report.exists() else []
            if all(any(ln.startswith(w) for ln in lines) for w in wanted):
                time.sleep(float(os.environ.get("SETTLE", "1")))
                out.write_text("\n".join(loaded_modules()) + "\n")
                import linecache

                # Source files held in memory (PySide6's import hook cached every module's).
                cached = sorted(n for n, e in linecache.cache.items() if len(e) == 4 and e[1])
                out.with_suffix(".linecache").write_text("\n".join(cached) + "\n")
                out.with_suffix(".models").write_text("\n".join(built_models()) + "\n")
                from PySide6.QtWidgets import QApplication

                qt_app = QApplication.instance()
                out.with_suffix(".app").write_text(type(qt_app).__name__ + "\n")
                if os.environ.get("TRAY_END") == "quit" and qt_app is not None:
                    from PySide6.QtCore import QMetaObject, Qt

                    # As a session end does, on the app's own thread (quit() from this one
                    # would wait for the GUI thread while holding the GIL it needs).
                    QMetaObject.invokeMethod(qt_app, "quit", Qt.ConnectionType.QueuedConnection)
                    return
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()
    sys.meta_path.insert(0, NoteBeforeRunner(out.with_suffix(".before_run")))
    args = ["--profile", profile, *sys.argv[4:]]  # e.g. --demo
    if os.environ.get("TRAY_CHILD_ROUTE") == "cli":  # the ``trayapp`` command, as desktops run it
        from trayapp.cli import main as cli_main

        return cli_main(args)
    from trayapp.ui.app import main as tray_main

    return tray_main(args)


if __name__ == "__main__":
    sys.exit(main())
