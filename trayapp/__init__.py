"""Pattern Sync (``trayapp``): a desktop tray app that runs pattern updaters locally."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

APP_NAME = "trayapp"
DISPLAY_NAME = "Pattern Sync"

try:
    __version__ = version("trayapp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
