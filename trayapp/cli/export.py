"""``trayapp export CHARM --format FORMAT``: a charm's imported data written to a file.

The file is private (0600) when trayapp picks its name (``CHARM.FORMAT`` in the current
folder); at a path the user chose with ``--output`` it gets the user's usual permissions
(``umask``), or keeps the mode of the file it replaces.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from trayapp.cli.args import add_command, add_json
from trayapp.cli.output import EXIT_OK, JSON_VERSION, fail, print_json
from trayapp.cli.target import Target
from trayapp.core.errors import ExportIncomplete
from trayapp.core.profile import user_umask


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = add_command(sub, "export", "write a charm's imported data to a file", cmd_export)
    export.add_argument("charm", metavar="CHARM", help="the charm whose data to export")
    export.add_argument(
        "--format",
        dest="fmt",
        required=True,
        metavar="FORMAT",
        help="jsonl (every pattern that exports), eml (Gmail with raw parts), ics (Calendar)",
    )
    export.add_argument(
        "--output",
        "-o",
        metavar="PATH",
        help="file to write (a directory for eml); default: CHARM.FORMAT in this directory",
    )
    add_json(export)


def cmd_export(args: argparse.Namespace) -> int:
    chosen = bool(args.output)
    dest = Path(args.output) if chosen else Path(f"{args.charm}.{args.fmt}")
    before = _mode(dest) if chosen else None
    incomplete: ExportIncomplete | None = None
    with Target.from_args(args) as target:
        try:
            count = target.engine().export(args.charm, args.fmt, dest)
        except ExportIncomplete as exc:
            incomplete, count = exc, exc.count
    if chosen:
        _user_modes(dest, before)
    if args.json:
        print_json(
            {
                "version": JSON_VERSION,
                "charm": args.charm,
                "format": args.fmt,
                "path": str(dest.resolve()),
                "count": count,
                "unreadable": [
                    {"collection": coll, "key": key}
                    for coll, key in (incomplete.unreadable if incomplete else [])
                ],
            }
        )
    elif incomplete is None:
        print(f"exported {count} item{'s' if count != 1 else ''} to {dest}")
    return EXIT_OK if incomplete is None else fail(str(incomplete))


def _mode(path: Path) -> int | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    return st.st_mode & 0o777 if path.is_file() else None


def _user_modes(dest: Path, before: int | None) -> None:
    """Exports are written 0600 (atomically, via a private temp file); at a path the user
    chose, give them the mode any other program would: the old file's, else ``umask``'s."""
    umask = user_umask()
    file_mode = before if before is not None else 0o666 & ~umask
    if dest.is_file():
        os.chmod(dest, file_mode)
    elif dest.is_dir():
        for item in dest.iterdir():
            if item.is_file() and not item.is_symlink():
                os.chmod(item, 0o666 & ~umask)
