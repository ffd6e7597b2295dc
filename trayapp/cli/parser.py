"""The whole ``trayapp`` argument parser, assembled from each command group's ``register``."""

from __future__ import annotations

import argparse

from trayapp import DISPLAY_NAME, __version__
from trayapp.cli import accounts, charms, export, logs, patterns, plugins, run, sync
from trayapp.cli.args import add_common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trayapp",
        description=f"{DISPLAY_NAME}: runs your pattern updaters (feeds, Gmail, Calendar) "
        "locally. With no command, starts the tray.",
        epilog="See docs/cli.md for every command and the --json formats.",
    )
    parser.add_argument("--version", action="version", version=f"trayapp {__version__}")
    add_common(parser, top=True)
    parser.add_argument("--demo", action="store_true", help="start the tray with demo charms")
    parser.add_argument(
        "--no-tray", action="store_true", help="show a status window instead of a tray icon"
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    run.register(sub)
    sync.register(sub)
    charms.register(sub)
    patterns.register(sub)
    plugins.register(sub)
    accounts.register(sub)
    export.register(sub)
    logs.register(sub)
    # Listed for --help only: main() hands `emulator ...` to the emulator before parsing.
    sub.add_parser("emulator", help="the local Google emulator (see 'trayapp emulator --help')")
    return parser
