"""``trayapp`` with no command: the tray, reached without building the whole command line.

The desktop entry and the autostart entry run ``trayapp`` (at most with the tray's own options),
and every millisecond before the tray's icon shows counts (issue 17.2). Building the full
argument parser imports every command group and reads the package metadata for ``--version``
(importlib.metadata, email's parser): 60 ms of CPU before the icon. :func:`tray_options`
recognises a command line that only starts the tray (``--profile DIR``, ``--demo``,
``--no-tray``, ``-v``/``-q``) and answers what the full parser would; anything else (a command,
``--help``, ``--version``, an abbreviation, a typo) returns None and goes through the full
parser as before. tests/test_cli_tray_start.py holds the two to the same answers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from trayapp.cli.output import fail

# The top-level options the tray uses and their values with none given (trayapp.cli.args /
# trayapp.cli.parser define them for the full parser).
DEFAULTS = {"profile": None, "demo": False, "no_tray": False, "verbose": 0, "quiet": 0}


def tray_options(argv: Sequence[str]) -> argparse.Namespace | None:
    """The namespace the full parser gives ``argv`` if it only starts the tray, else None."""
    ns = argparse.Namespace(json=False, **DEFAULTS)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--profile":
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                return None  # let the full parser say what is wrong
            ns.profile = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--profile="):
            ns.profile = arg.partition("=")[2]
        elif arg == "--demo":
            ns.demo = True
        elif arg == "--no-tray":
            ns.no_tray = True
        elif arg == "--verbose" or (len(arg) > 1 and arg.strip("v") == "-"):
            ns.verbose += 1 if arg == "--verbose" else len(arg) - 1  # -v, -vv, -vvv
        elif arg == "--quiet" or (len(arg) > 1 and arg.strip("q") == "-"):
            ns.quiet += 1 if arg == "--quiet" else len(arg) - 1
        else:
            return None
        i += 1
    return ns


def cmd_tray(args: argparse.Namespace) -> int:
    graphical = ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    if sys.platform.startswith("linux") and not any(os.environ.get(v) for v in graphical):
        # Without this Qt aborts the process with a page of plugin errors.
        return fail(
            "there is no graphical session here (DISPLAY and WAYLAND_DISPLAY are unset), so the "
            "tray cannot start; run the engine without it: trayapp run --headless"
        )
    from trayapp.ui.app import main as ui_main

    return int(ui_main(args))
