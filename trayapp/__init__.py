"""Pattern Sync (``trayapp``): a desktop tray app that runs pattern updaters locally."""

from __future__ import annotations

import sys

# httpx's package imports its command-line client (``httpx._main``: click, pygments, rich) and
# falls back to a stub ``httpx.main`` when that fails. Here rich is not installed, so the import
# always failed, after leaving click and pygments loaded (~18 modules, ~1.4 MiB in every
# process, issue 17). A ``None`` entry in sys.modules is Python's documented way to make an
# import fail at once: httpx takes the same fallback, the app never runs httpx's CLI.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

APP_NAME = "trayapp"
# The distribution name on the package index (`trayapp` there is an unrelated project); the
# import name, the command and the `trayapp.patterns` entry-point group stay `trayapp`.
DIST_NAME = "pattern-sync"
DISPLAY_NAME = "Pattern Sync"

_version: str | None = None


def __getattr__(name: str) -> str:
    """``trayapp.__version__``, read from the installed metadata when first asked for.

    Reading it imports :mod:`importlib.metadata` (with email's parser) and scans ``sys.path``
    for the distribution: tens of milliseconds the tray no longer spends before its icon shows
    (issue 17). ``from trayapp import __version__`` works as before.
    """
    global _version
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _version is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            _version = version(DIST_NAME)
        except PackageNotFoundError:  # running from a source tree that was never installed
            _version = "0.0.0+unknown"
    return _version
