"""The registry the app starts with: the built-in patterns plus the installed plugins'.

Start-up code (the CLI, the tray, the headless host) calls :func:`default_registry` and passes
the result to :class:`~trayapp.core.engine.Engine`; the engine itself knows no pattern, so
``trayapp.core`` never imports ``trayapp.patterns`` (which imports ``trayapp.api``, which
imports ``trayapp.core``).
"""

from __future__ import annotations

from pathlib import Path

from trayapp.core.patterns import PatternRegistry
from trayapp.patterns import BUILTIN_PATTERNS
from trayapp.plugins import activate, plugins_dir


def default_registry(*, plugins: bool = True, profile: Path | None = None) -> PatternRegistry:
    """The built-in patterns plus (with ``plugins``) every installed plugin's.

    With ``profile`` (its folder), the plugins ``trayapp plugins install`` put in its plugins
    folder are found too.
    """
    if plugins and profile is not None:
        activate(plugins_dir(profile))
    return PatternRegistry.with_patterns(BUILTIN_PATTERNS, plugins=plugins)


__all__ = ["default_registry"]
