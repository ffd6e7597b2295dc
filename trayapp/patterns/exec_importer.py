"""Script importer: any executable (a shell script, a Go binary, a Node program) as a pattern.

This is how a user wraps an existing script without writing Python. Each run starts the program
named in the charm's settings in its own process group and speaks a small JSON-lines protocol
with it (version :data:`PROTOCOL_VERSION`, specified in docs/exec-patterns.md):

* **stdin**: one JSON object, then end of file: ``{"protocol": 1, "charm_id": ..., "settings":
  {the charm's "options"}, "state": <the value the program saved last run, or null>, "now":
  "<ISO 8601 UTC>"}``.
* **stdout**: one JSON object per line: ``item`` (key, value), ``delete`` (key), ``state``
  (value), ``progress`` (done, total), ``commit``, and exactly one final ``report`` or
  ``error`` line.
* **stderr**: each line goes to the log (bounded: :data:`MAX_STDERR_LINES` per run).

Data safety: items, deletions and the new state are held back and committed together, in one
transaction, at a ``commit`` line or at the final ``report``; a run that fails (an ``error``
line, a malformed line, a crash, the timeout) stores nothing after its last commit, so the
saved state never gets ahead of the items it covers. When more than :data:`MAX_PENDING` changes
wait, the items are written early but the state still waits for its commit point (re-importing
an item is harmless; skipping one is not).

At the charm's ``timeout_seconds`` (and when the app stops the run) the whole process group is
stopped: SIGTERM, then SIGKILL after :data:`KILL_GRACE` seconds; whatever the program leaves
running after its report is stopped too.

Like every built-in pattern it imports only :mod:`trayapp.api` and third-party libraries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal, TypeGuard

from pydantic import JsonValue

from trayapp.api import (
    BaseModel,
    CellSpec,
    ConfigProblem,
    Field,
    Offline,
    Pattern,
    RateLimited,
    RunReport,
    RunTimedOut,
    ServerError,
    UpdateContext,
    field_validator,
    write_jsonl,
)

PROTOCOL_VERSION = 1
# One stdout line (one item) may be this long; a longer one is a malformed line.
MAX_LINE_BYTES = 4 * 1024 * 1024
# Changes held in memory before the items (never the state) are written early.
MAX_PENDING = 2000
MAX_STDERR_LINES = 200
MAX_STDERR_CHARS = 2000
MAX_KEY_CHARS = 1024
KILL_GRACE = 2.0
MAX_TIMEOUT_SECONDS = 3600

ERROR_KINDS = ("rate_limited", "offline", "server_error", "config_error")


class ScriptOutputError(Exception):
    """The program broke the protocol (a line that is not JSON, an unknown type, no report).

    It is a bug in the program, recorded as a ``bug`` outcome; nothing after the last commit is
    stored.
    """


class ScriptFailed(Exception):
    """The program exited with a failure status (or a signal) without an ``error`` line."""


def resolve_command(command: str) -> Path:
    """The absolute path of ``command`` (a path, or a name on PATH), checked to be runnable.

    Raises ValueError with a sentence saying what is wrong and what to do.
    """
    text = command.strip()
    if not text:
        raise ValueError("must name the program to run (a full path like /home/me/bin/sync.sh)")
    if os.sep not in text and not text.startswith("~"):
        found = shutil.which(text)
        if found is None:
            raise ValueError(
                f"{text!r} is not a program found on PATH; give its full path "
                "(like /home/me/bin/sync.sh)"
            )
        return Path(found).absolute()
    path = Path(text).expanduser().absolute()
    if not path.exists():
        raise ValueError(f"{path} does not exist; give the full path of the program")
    if not path.is_file():
        raise ValueError(f"{path} is not a file; give the full path of the program")
    if not os.access(path, os.X_OK):
        raise ValueError(f"{path} is not executable; make it so with: chmod +x {path}")
    return path


class ExecSettings(BaseModel):
    command: str = Field(
        title="Program",
        description="The program to run: its full path, or a name found on PATH (must be "
        "executable). Stored as a full path.",
    )
    args: list[str] = Field(
        default_factory=list,
        title="Arguments",
        description="Command-line arguments given to the program",
    )
    options: dict[str, JsonValue] = Field(
        default_factory=dict,
        title="Options (JSON)",
        description='Passed to the program as "settings" in the JSON on its standard input',
    )
    timeout_seconds: int = Field(
        default=300,
        ge=1,
        le=MAX_TIMEOUT_SECONDS,
        title="Timeout (seconds)",
        description="Stop the program (its whole process group) after this many seconds",
    )

    @field_validator("command")
    @classmethod
    def _runnable(cls, value: str) -> str:
        return str(resolve_command(value))


Op = tuple[Literal["item"], str, JsonValue] | tuple[Literal["delete"], str, None]

_NO_STATE = object()


@dataclass
class _Run:
    """What one run has read so far and not yet committed."""

    ctx: UpdateContext[ExecSettings]
    pending: list[Op] = field(default_factory=list)
    state: object = _NO_STATE
    added: int = 0
    updated: int = 0
    removed: int = 0

    def write_items(self) -> None:
        """Write the pending items and deletions (without the state) in one transaction."""
        items = self.ctx.collection("items")
        with self.ctx.transaction():
            for op in self.pending:
                if op[0] == "item":
                    result = items.upsert(op[1], op[2])
                    if result == "added":
                        self.added += 1
                    elif result == "updated":
                        self.updated += 1
                elif items.delete(op[1]):
                    self.removed += 1
        self.pending.clear()

    def commit(self) -> None:
        """Items, deletions and the state they cover, together or not at all."""
        with self.ctx.transaction():
            self.write_items()
            if self.state is not _NO_STATE:
                self.ctx.cell("state").set(self.state)
                self.state = _NO_STATE


@dataclass
class _Stderr:
    """The program's stderr: logged line by line, bounded, the last lines kept for messages."""

    ctx: UpdateContext[ExecSettings]
    logged: int = 0
    dropped: int = 0
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=3))

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the reader's limit: skip it, keep reading
                self.dropped += 1
                continue
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            line = line[:MAX_STDERR_CHARS]
            self.tail.append(line)
            if self.logged < MAX_STDERR_LINES:
                self.ctx.log.info("stderr: %s", line)
                self.logged += 1
            else:
                self.dropped += 1

    def finish(self) -> None:
        if self.dropped:
            self.ctx.log.info("stderr: %d more lines not logged", self.dropped)

    def last_line(self) -> str:
        return f" (its last error output: {self.tail[-1][:200]})" if self.tail else ""


class ExecImporter(Pattern[ExecSettings]):
    id = "exec-importer"
    title = "Script Importer"
    description = (
        "Runs a program of yours (any language) that prints items as JSON lines; see "
        "docs/exec-patterns.md."
    )
    Settings = ExecSettings
    default_interval = timedelta(minutes=30)
    # The charm's own timeout_seconds stops the program first; this only bounds the whole run.
    timeout = timedelta(seconds=MAX_TIMEOUT_SECONDS + 60)
    cells = (CellSpec("state", writes=True, default=None),)
    collections = ("items",)
    export_formats = ("jsonl",)

    def export(self, source: UpdateContext[ExecSettings], fmt: str, dest: Path) -> int:
        """``jsonl``: one ``{"key", "value"}`` object per stored item, in key order."""
        return write_jsonl(
            ({"key": key, "value": value} for key, value in source.collection("items").items()),
            dest,
        )

    def needs_reset(self, old: ExecSettings, new: ExecSettings) -> bool:
        # Another program's (or other arguments') items and state are not this one's.
        return (old.command, old.args) != (new.command, new.args)

    async def bg_updater(self, ctx: UpdateContext[ExecSettings]) -> RunReport:
        settings = ctx.settings
        command = settings.command
        name = Path(command).name
        if not os.access(command, os.X_OK):  # removed or changed since the charm was set up
            raise ConfigProblem(
                f"the program {command} no longer exists or is not executable; put it back "
                "or change the charm's command setting"
            )
        request = {
            "protocol": PROTOCOL_VERSION,
            "charm_id": ctx.charm_id,
            "settings": settings.options,
            "state": ctx.cell("state").get(),
            "now": ctx.now().isoformat().replace("+00:00", "Z"),
        }
        env = dict(os.environ)
        env["TRAYAPP_CHARM_ID"] = ctx.charm_id
        env["TRAYAPP_PROTOCOL"] = str(PROTOCOL_VERSION)
        try:
            proc = await asyncio.create_subprocess_exec(
                command,
                *settings.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group, so the whole group can go
                limit=MAX_LINE_BYTES,
                env=env,
            )
        except OSError as exc:
            raise ConfigProblem(
                f"the program {command} could not be started ({exc.strerror or exc}); check "
                "that it is a program (a script needs a '#!' first line)"
            ) from exc
        run = _Run(ctx)
        stderr = _Stderr(ctx)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        pumps = [
            asyncio.ensure_future(_feed(proc.stdin, request)),
            asyncio.ensure_future(stderr.pump(proc.stderr)),
        ]
        try:
            async with asyncio.timeout(settings.timeout_seconds):
                end = await _read_protocol(proc.stdout, run, name)
                returncode = await proc.wait()
                await asyncio.gather(*pumps)
        except TimeoutError:
            await _stop_group(proc)
            raise RunTimedOut(
                f"{name} ran longer than {settings.timeout_seconds} s and was stopped "
                "(with every process it started); raise timeout_seconds if it needs longer"
            ) from None
        except ScriptOutputError:
            await _stop_group(proc)
            raise
        finally:
            # Cancelled by the app (its own deadline, shutdown), failed or done: nothing of the
            # program's may outlive the run.
            _kill_group(proc)
            for pump in pumps:
                pump.cancel()
            stderr.finish()
        return _conclude(run, end, returncode, name, stderr, ctx)


async def _feed(stdin: asyncio.StreamWriter, request: dict[str, JsonValue]) -> None:
    """Write the request and close stdin; a program that does not read it is fine."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(json.dumps(request).encode() + b"\n")
        await stdin.drain()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.close()


@dataclass(frozen=True)
class _End:
    """The program's last protocol line: its report or its error (None: it gave neither)."""

    line: dict[str, JsonValue] | None


async def _read_protocol(stdout: asyncio.StreamReader, run: _Run, name: str) -> _End:
    number = 0
    end: dict[str, JsonValue] | None = None
    while True:
        try:
            raw = await stdout.readline()
        except ValueError:
            raise ScriptOutputError(
                f"{name} printed a line longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB "
                f"after line {number}; nothing after its last commit was stored"
            ) from None
        if not raw:
            return _End(end)
        number += 1
        if not raw.strip():
            continue
        if end is not None:
            raise _bad(name, number, f"comes after the {end['type']} line, which must be last")
        try:
            line = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _bad(name, number, f"is not JSON ({exc})") from None
        if not isinstance(line, dict) or not isinstance(line.get("type"), str):
            raise _bad(name, number, 'is not a JSON object with a "type"')
        kind = line["type"]
        if kind == "item":
            run.pending.append(
                ("item", _key(line, name, number), _field(line, "value", name, number))
            )
        elif kind == "delete":
            run.pending.append(("delete", _key(line, name, number), None))
        elif kind == "state":
            run.state = _field(line, "value", name, number)
        elif kind == "progress":
            done, total = line.get("done"), line.get("total")
            if not _count(done) or not (total is None or _count(total)):
                raise _bad(name, number, '(progress) needs "done" and "total" as whole numbers')
            unit = line.get("unit")
            run.ctx.progress(done, total, unit if isinstance(unit, str) else "items")
        elif kind == "commit":
            run.commit()
        elif kind in ("report", "error"):
            _check_end(line, name, number)
            end = line
        else:
            raise _bad(
                name,
                number,
                f"has unknown type {kind!r} (protocol {PROTOCOL_VERSION} knows item, delete, "
                "state, progress, commit, report, error)",
            )
        if len(run.pending) >= MAX_PENDING:
            run.write_items()


def _bad(name: str, number: int, what: str) -> ScriptOutputError:
    return ScriptOutputError(
        f"line {number} of {name}'s output {what}; nothing after its last commit was stored"
    )


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _field(line: dict[str, JsonValue], key: str, name: str, number: int) -> JsonValue:
    if key not in line:
        raise _bad(name, number, f'({line["type"]}) has no "{key}"')
    return line[key]


def _key(line: dict[str, JsonValue], name: str, number: int) -> str:
    key = line.get("key")
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise _bad(
            name, number, f'({line["type"]}) needs a "key": text of 1 to {MAX_KEY_CHARS} characters'
        )
    return key


def _check_end(line: dict[str, JsonValue], name: str, number: int) -> None:
    if line["type"] == "report":
        partial = line.get("partial", [])
        if not isinstance(partial, list) or not all(isinstance(p, str) for p in partial):
            raise _bad(name, number, '(report) has a "partial" that is not a list of texts')
        next_poll = line.get("next_poll")
        if next_poll is not None and not (
            isinstance(next_poll, int | float)
            and not isinstance(next_poll, bool)
            and next_poll >= 0
        ):
            raise _bad(name, number, '(report) has a "next_poll" that is not seconds >= 0')
    else:
        if line.get("kind") not in ERROR_KINDS:
            raise _bad(name, number, f'(error) needs a "kind", one of {", ".join(ERROR_KINDS)}')
        retry_after = line.get("retry_after")
        if retry_after is not None and not (
            isinstance(retry_after, int | float)
            and not isinstance(retry_after, bool)
            and retry_after >= 0
        ):
            raise _bad(name, number, '(error) has a "retry_after" that is not seconds >= 0')
    message = line.get("message")
    if message is not None and not isinstance(message, str):
        raise _bad(name, number, f'({line["type"]}) has a "message" that is not text')


def _conclude(
    run: _Run,
    end: _End,
    returncode: int,
    name: str,
    stderr: _Stderr,
    ctx: UpdateContext[ExecSettings],
) -> RunReport:
    line = end.line
    if line is not None and line["type"] == "error":
        message = str(line.get("message") or f"{name} reported {line['kind']}")
        kind = line["kind"]
        if kind == "rate_limited":
            seconds = line.get("retry_after")
            retry_at = (
                ctx.now() + timedelta(seconds=float(seconds))
                if isinstance(seconds, int | float)
                else None
            )
            raise RateLimited(message, retry_after=retry_at)
        if kind == "offline":
            raise Offline(message)
        if kind == "config_error":
            raise ConfigProblem(message)
        raise ServerError(message)
    if returncode != 0:
        how = (
            f"was stopped by signal {signal.Signals(-returncode).name}"
            if returncode < 0 and -returncode in signal.valid_signals()
            else f"exited with status {returncode}"
        )
        raise ScriptFailed(
            f"{name} {how} without an error line; nothing after its last commit was stored"
            + stderr.last_line()
        )
    if line is None:
        raise ScriptOutputError(
            f"{name} ended without a report line; nothing after its last commit was stored"
        )
    run.commit()
    partial = line.get("partial") or []
    next_poll = line.get("next_poll")
    text = line.get("message")
    return RunReport(
        added=run.added,
        updated=run.updated,
        removed=run.removed,
        partial=tuple(str(p) for p in partial) if isinstance(partial, list) else (),
        message=text if isinstance(text, str) else "",
        next_poll=timedelta(seconds=float(next_poll))
        if isinstance(next_poll, int | float)
        else None,
    )


def _kill_group(proc: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def _stop_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to the whole group, SIGKILL after KILL_GRACE if the leader is still there."""
    _kill_group(proc, signal.SIGTERM)
    try:
        async with asyncio.timeout(KILL_GRACE):
            await proc.wait()
    except TimeoutError:
        pass
    _kill_group(proc)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(KILL_GRACE):
            await proc.wait()
