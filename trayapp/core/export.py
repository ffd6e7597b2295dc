"""Writing a charm's data out: the pieces every pattern's ``export`` shares.

An export never leaves a half-written file where the user asked for one: it writes beside the
destination and renames into place only when complete, so a full disk or a crash mid-export
leaves the previous file (if any) untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from trayapp.core.errors import ExportError


@contextlib.contextmanager
def atomic_output(dest: Path) -> Iterator[IO[bytes]]:
    """A binary file that appears at ``dest`` only once the ``with`` block completes."""
    dest = Path(dest)
    if dest.is_dir():
        raise ExportError(f"{dest} is a directory; give a file name to export to")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(records: Iterable[Any], dest: Path) -> int:
    """Write one JSON document per line to ``dest`` (atomically); returns how many."""
    count = 0
    with atomic_output(dest) as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False, sort_keys=True).encode() + b"\n")
            count += 1
    return count
