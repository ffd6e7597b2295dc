"""Entry point of the frozen (PyInstaller) app: the same ``trayapp.cli:main`` that pip installs.

It lives in packaging/ rather than in the package because PyInstaller needs a script, and a
script inside ``trayapp/`` would be imported with the wrong ``__name__``. Before anything else it
gives child processes the user's environment back (see below).

One extra: when ``TRAYAPP_BUNDLE_SELFTEST`` names a file, the bundle checks that everything it
collected can be imported and used (keyring backends, notifier resources, certificates, Qt
plugins, the app's icons), writes a JSON report there and exits. That is how the build and CI
prove the bundle is complete without shipping a test framework; an ordinary start never takes
that branch.
"""

from __future__ import annotations

import os
import sys

# Variables PyInstaller's bootloader and its PySide6 run-time hook point into the bundle.
_BUNDLE_ONLY_VARIABLES = ("QT_PLUGIN_PATH", "QML2_IMPORT_PATH")


def _restore_environment_for_children() -> None:
    """Give programs the app starts (xdg-open, the browser, keyring helpers) the user's environment.

    On Linux the bootloader prepends the bundle's folder to ``LD_LIBRARY_PATH`` and re-executes
    itself so the dynamic loader uses it; every child inherits it and loads our copies of
    libstdc++, GLib, OpenSSL, X11... instead of its own, which breaks browsers opened for
    sign-in (aw-qt and others hit exactly this). The loader read ``LD_LIBRARY_PATH`` when this
    process started, so restoring the original value now changes nothing for the app itself.
    The Qt variables only helped Qt find its plugins, which PySide6's embedded qt.conf already
    does; a Qt program started by us must not load our plugins. Doing it once here means no
    call site (QDesktopServices, webbrowser, subprocess) can forget.
    """
    if not getattr(sys, "frozen", False) or not sys.platform.startswith("linux"):
        return
    original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is not None:
        os.environ["LD_LIBRARY_PATH"] = original
    else:
        os.environ.pop("LD_LIBRARY_PATH", None)
    bundle = getattr(sys, "_MEIPASS", None)
    for name in _BUNDLE_ONLY_VARIABLES:
        if bundle and os.environ.get(name, "").startswith(bundle):
            del os.environ[name]
    # The bootloader's own bookkeeping (_PYI_ARCHIVE_FILE, _PYI_PARENT_PROCESS_LEVEL...): a
    # copy of this app started by us would take it for its own and skip its set-up.
    for name in [n for n in os.environ if n.startswith("_PYI_") or n == "_MEIPASS2"]:
        del os.environ[name]


def _main() -> int:
    _restore_environment_for_children()
    report_path = os.environ.get("TRAYAPP_BUNDLE_SELFTEST")
    if report_path:
        from bundle_selftest import run  # packaging/bundle_selftest.py, collected by the spec

        return run(report_path)
    from trayapp.cli import main

    result = main()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(_main())
