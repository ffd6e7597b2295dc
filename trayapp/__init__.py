"""Pattern Sync (``trayapp``): a desktop tray app that runs pattern updaters locally."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

APP_NAME = "trayapp"
# The distribution name on the package index (`trayapp` there is an unrelated project); the
# import name, the command and the `trayapp.patterns` entry-point group stay `trayapp`.
DIST_NAME = "pattern-sync"
DISPLAY_NAME = "Pattern Sync"

try:
    __version__ = version(DIST_NAME)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
