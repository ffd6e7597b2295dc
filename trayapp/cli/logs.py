"""``trayapp logs``: where the log file is, its last lines, or follow it as it grows.

The app (tray or ``run --headless``) writes an INFO log, secrets redacted, to the profile's
``logs`` folder, rotating it (``trayapp.log``, ``trayapp.log.1``, ...). This command only reads
it, so it works while the app runs and when it does not.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import TextIO

from trayapp.cli.args import add_command, add_json
from trayapp.cli.output import EXIT_OK, JSON_VERSION, fail, note, print_json
from trayapp.core.logfiles import LOG_NAME, newest_log
from trayapp.core.profile import Profile

FOLLOW_POLL_S = 0.5


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    logs = add_command(
        sub, "logs", "show where the log file is, its last lines, or follow it", cmd_logs
    )
    logs.add_argument(
        "-n",
        "--lines",
        type=int,
        metavar="N",
        help="print the last N lines of the log instead of its path",
    )
    logs.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="print new lines as the app writes them (after the last 10, or -n N); Ctrl+C stops",
    )
    add_json(logs)


def cmd_logs(args: argparse.Namespace) -> int:
    profile = Profile.resolve(getattr(args, "profile", None))
    current = newest_log(profile.path)
    path = current or profile.logs_dir / LOG_NAME
    if args.json:
        print_json({"version": JSON_VERSION, "path": str(path), "exists": current is not None})
        return EXIT_OK
    lines = args.lines
    if lines is not None and lines < 0:
        return fail(f"--lines must be 0 or more, not {lines}")
    if not args.follow and lines is None:
        print(path)
        if current is None:
            note("no log yet: the app writes it there when it runs")
        return EXIT_OK
    want = 10 if lines is None else lines
    if not args.follow:
        if current is None:
            note(f"no log yet at {path}: the app writes it there when it runs")
        else:
            with open(current, encoding="utf-8", errors="replace") as fh:
                _print_last(fh, want)
        return EXIT_OK
    try:
        _follow(path, want)
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


def _print_last(fh: TextIO, n: int) -> None:
    """The last ``n`` lines up to the end of the file; ``fh`` is left at its end."""
    last = deque(fh, maxlen=max(0, n))
    sys.stdout.write("".join(last))
    sys.stdout.flush()


def _follow(path: Path, last: int) -> None:
    """Like ``tail -F``: the last lines, then new ones, across rotation (a new file under the
    same name is read from its start). One handle from the tail on, so no line is missed."""
    fh: TextIO | None = None
    ident: tuple[int, int] | None = None
    first = True
    while True:
        if fh is None:
            try:
                fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
            except FileNotFoundError:
                first = False  # a file that appears later is new: all of it is shown
                time.sleep(FOLLOW_POLL_S)
                continue
            st = os.fstat(fh.fileno())
            ident = (st.st_dev, st.st_ino)
            if first:
                _print_last(fh, last)
                first = False
        chunk = fh.read()
        if chunk:
            sys.stdout.write(chunk)
            sys.stdout.flush()
            continue
        time.sleep(FOLLOW_POLL_S)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if (st.st_dev, st.st_ino) != ident or st.st_size < fh.tell():
            # Rotated or truncated: finish the old file, then read the new one from its start.
            rest = fh.read()
            if rest:
                sys.stdout.write(rest)
                sys.stdout.flush()
            fh.close()
            fh = None
