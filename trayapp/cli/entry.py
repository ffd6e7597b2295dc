"""``main()``: parse, set up logging, run the command, and turn every failure into one line.

Users never see a traceback: a :class:`~trayapp.core.errors.TrayappError` is its message; a
full disk is said in words; output piped into ``head`` that stops reading ends the command
quietly; anything unexpected is one line pointing at ``-vv`` (the details go to the log).
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from trayapp.cli.output import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    fail,
)
from trayapp.core.errors import TrayappError

log = logging.getLogger("trayapp.cli")

AIO = "trayapp.core.aio"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    from trayapp.core.profile import use_private_umask

    use_private_umask()
    args_list = list(sys.argv[1:] if argv is None else argv)
    # Only trayapp.core.aio abandons tasks; not imported yet (the tray does not import asyncio
    # before its icon), nothing was abandoned before this command.
    before: frozenset[Any] = frozenset()
    if AIO in sys.modules:
        from trayapp.core import aio

        before = aio.abandoned()
    rc = _main(args_list)
    # An updater that ignored cancellation during this command must not hang the exit.
    if AIO in sys.modules:
        from trayapp.core import aio

        aio.exit_if_abandoned(rc, before=before)
    return rc


def _main(args_list: list[str]) -> int:
    try:
        routed = _route_emulator(args_list)
        if routed is not None:
            return routed
        from trayapp.cli.tray import cmd_tray, tray_options

        tray_only = tray_options(args_list)
        if tray_only is not None:
            # ``trayapp`` as the desktop entry starts it: straight to the tray, without the
            # full parser (every command group, the package metadata for --version).
            configure_logging(_log_level(tray_only, long_running=False))
            rc = int(cmd_tray(tray_only))
            sys.stdout.flush()
            return rc
        from trayapp.cli.parser import build_parser
        from trayapp.cli.run import cmd_run

        args = build_parser().parse_args(args_list)
        handler = getattr(args, "handler", None) or cmd_tray
        tray = handler is cmd_tray or (handler is cmd_run and not getattr(args, "headless", False))
        if getattr(args, "demo", False) and not tray:
            # Every other command works on a real profile: never let --demo look like it applied.
            print(
                "trayapp: --demo starts the tray with demo charms in a throwaway profile; it "
                "does not apply to other commands (they would use your real profile). Run "
                "'trayapp --demo' for the demo, or give the command --profile DIR",
                file=sys.stderr,
            )
            return EXIT_USAGE
        configure_logging(_log_level(args, long_running=handler is cmd_run))
        rc = int(handler(args))
        sys.stdout.flush()  # here, so a reader that went away is noticed inside the try
        return rc
    except TrayappError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print("trayapp: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _broken_pipe()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            return fail(disk_full_message(exc))
        log.debug("unexpected error", exc_info=True)
        return fail(f"{exc.strerror or exc}{_at(exc)}; nothing else was changed")


def disk_full_message(exc: OSError) -> str:
    return (
        f"the disk is full{_at(exc)}, so nothing more could be written; the data already "
        "stored is intact. Free some disk space and run the command again"
    )


def _at(exc: OSError) -> str:
    return f" ({exc.filename})" if exc.filename else ""


def _broken_pipe() -> int:
    """The reader of our output went away (``trayapp status --json | head``): stop quietly.

    Python's own advice: point stdout at /dev/null so the interpreter's final flush does not
    raise (and print) a second BrokenPipeError on the way out.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def _route_emulator(argv: list[str]) -> int | None:
    """``trayapp [global options] emulator ARGS...`` -> ``trayapp.emulator.cli.main(ARGS)``."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--profile":
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        if arg != "emulator":
            return None
        from trayapp.emulator import cli as emulator_cli

        configure_logging(logging.INFO if _count_flags(argv[:i]) > 0 else logging.WARNING)
        return int(emulator_cli.main(argv[i + 1 :]))
    return None


def _count_flags(argv: Sequence[str]) -> int:
    return sum(a in ("-v", "--verbose") for a in argv) - sum(a in ("-q", "--quiet") for a in argv)


def _log_level(args: object, *, long_running: bool) -> int:
    """``run`` logs INFO by default (it is a service); one-shot commands print their own
    results and errors, so they log nothing unless asked (-v: INFO, -vv: DEBUG)."""
    verbose = int(getattr(args, "verbose", 0)) - int(getattr(args, "quiet", 0))
    if long_running:
        verbose += 1
    if verbose >= 2:
        return logging.DEBUG
    if verbose == 1:
        return logging.INFO
    if verbose == 0 and long_running:
        return logging.WARNING
    return logging.CRITICAL


def configure_logging(level: int) -> None:
    """Log to stderr at ``level``; a redacting filter scrubs tokens from every record."""
    from trayapp.core.redact import install_log_filter

    root = logging.getLogger()
    if not any(getattr(h, "_trayapp", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
        handler._trayapp = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        install_log_filter(root)
    root.setLevel(level)
    # httpx logs every request at INFO, with full URLs (which may carry a feed key).
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
    logging.getLogger("httpcore").setLevel(max(level, logging.WARNING))
