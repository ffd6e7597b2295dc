"""Printing: exit codes, the one-line error, tables, relative times and the ``--json`` writer.

Everything a command prints goes through here, so the shapes stay in one place: ``--json``
documents are a stable, versioned contract (docs/cli.md), errors are one line on stderr
starting with ``trayapp: ``.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trayapp.core.outcomes import RunOutcome
    from trayapp.core.status import CharmStatus

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
EXIT_TERMINATED = 128 + signal.SIGTERM
JSON_VERSION = 1


def fail(message: str) -> int:
    """Print one clear line on stderr and return the failure exit code."""
    print(f"trayapp: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_FAILURE


def note(message: str) -> None:
    """A one-line remark on stderr that does not change the exit code."""
    print(f"trayapp: note: {' '.join(message.split())}", file=sys.stderr)


def print_problems(problems: Mapping[str, str]) -> None:
    """One line per damaged charm on stderr (the command's output stays about the others)."""
    for message in problems.values():
        print(f"trayapp: {' '.join(message.split())}", file=sys.stderr)


def problems_json(problems: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"charm_id": cid, "message": message} for cid, message in problems.items()]


def print_json(data: Any) -> None:
    import json  # here: the tray starts through this package and needs no JSON before its icon

    print(json.dumps(data, indent=2, ensure_ascii=False))


def print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def when(value: datetime | None, now: datetime) -> str:
    """Relative, human time: '3 min ago', 'in 2 h', 'now', '-'."""
    if value is None:
        return "-"
    delta = (value - now).total_seconds()
    seconds = abs(delta)
    if seconds < 5:
        return "now"
    if seconds < 90:
        amount = f"{seconds:.0f} s"
    elif seconds < 90 * 60:
        amount = f"{seconds / 60:.0f} min"
    elif seconds < 36 * 3600:
        amount = f"{seconds / 3600:.0f} h"
    else:
        amount = f"{seconds / 86400:.0f} d"
    return f"in {amount}" if delta > 0 else f"{amount} ago"


def result_text(status: CharmStatus) -> str:
    if status.last_outcome is None:
        return "never run"
    if status.last_outcome.value == "ok":
        c = status.last_counts
        return f"ok +{c.added} ~{c.updated} -{c.removed}"
    failures = status.consecutive_failures
    return str(status.last_outcome.value) + (f" ({failures}x)" if failures > 1 else "")


def result_json(charm_id: str, outcome: RunOutcome) -> dict[str, Any]:
    """One charm's entry in ``trayapp sync --json`` (docs/cli.md)."""
    data = outcome.to_json()
    del data["traceback"]  # kept in the charm's history (``charms show``), not printed here
    return {"charm_id": charm_id, **data}


def sync_line(r: Mapping[str, Any]) -> str:
    c = r["counts"]
    if r["ok"]:
        text = (
            f"{r['charm_id']}: ok, {c['added']} added, {c['updated']} updated, "
            f"{c['removed']} removed"
        )
        if r["message"]:
            text += f" ({r['message']})"
        return text
    from trayapp.core.outcomes import WAITING_PREFIX, OutcomeKind

    if r["outcome"] == OutcomeKind.RATE_LIMITED and str(r["message"]).startswith(WAITING_PREFIX):
        return f"{r['charm_id']}: {r['message']}"  # not run: the server's wait is not over
    return f"{r['charm_id']}: {r['outcome']}: {r['message']}"
