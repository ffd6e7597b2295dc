"""The ``trayapp`` command line: the tray by default, and a headless CLI over the same Engine.

Every command calls Engine methods (one way in per action), so the CLI, the tray and the tests
do the same thing. ``--json`` output is a stable, versioned contract documented in docs/cli.md:
fields may be added, never renamed or removed.

Errors the user can fix (unknown charm, bad settings, unusable profile) print one line on stderr
and exit 1, never a traceback. Exit codes: 0 success, 1 failure (including any charm whose
sync did not succeed), 2 command-line usage errors (argparse), 130 interrupted (Ctrl+C),
143 terminated (SIGTERM during ``sync``).

Extension points for other parts of the app, all imported lazily so a missing part never
breaks the rest:

* ``trayapp.ui.app.main(args) -> int`` runs the tray (``trayapp`` with no command);
* ``trayapp.emulator.cli.main(argv) -> int`` gets everything after ``trayapp emulator``;
* ``trayapp.auth.commands.register(subparsers)`` adds ``trayapp accounts ...``: each parser it
  adds sets ``handler=fn`` (or ``func=fn``) with ``fn(args: argparse.Namespace) -> int``
  (``args.profile`` is the ``--profile`` value; :func:`open_engine` opens the engine for it);
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trayapp import DISPLAY_NAME, __version__
from trayapp.core.errors import ConfigError, SettingsError, TrayappError

if TYPE_CHECKING:  # imported lazily at run time: `trayapp --version` stays fast
    from trayapp.auth.wiring import AccountsWiring
    from trayapp.core.charms import CharmInfo
    from trayapp.core.engine import Engine
    from trayapp.core.outcomes import RunOutcome
    from trayapp.core.status import CharmStatus

log = logging.getLogger("trayapp.cli")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM
JSON_VERSION = 1
SYNC_WAIT_S = 3600.0  # how long `trayapp sync` waits on a running instance before giving up

Handler = Callable[[argparse.Namespace], int]

# --------------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    routed = _route_emulator(args_list)
    if routed is not None:
        return routed
    parser = build_parser()
    args = parser.parse_args(args_list)
    # ``handler`` for our commands; ``func`` is the argparse idiom other packages may use.
    handler: Handler = getattr(args, "handler", None) or getattr(args, "func", None) or _cmd_tray
    configure_logging(_log_level(args, long_running=handler is _cmd_run))
    try:
        rc = int(handler(args))
    except TrayappError as exc:
        rc = fail(str(exc))
    except KeyboardInterrupt:
        print("trayapp: interrupted", file=sys.stderr)
        rc = EXIT_INTERRUPTED
    from trayapp.core import aio

    aio.exit_if_abandoned(rc)  # an updater that ignored cancellation must not hang the exit
    return rc


def fail(message: str) -> int:
    """Print one clear line on stderr and return the failure exit code."""
    print(f"trayapp: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trayapp",
        description=f"{DISPLAY_NAME}: runs your pattern updaters (feeds, Gmail, Calendar) "
        "locally. With no command, starts the tray.",
        epilog="See docs/cli.md for every command and the --json formats.",
    )
    parser.add_argument("--version", action="version", version=f"trayapp {__version__}")
    _add_common(parser, top=True)
    parser.add_argument("--demo", action="store_true", help="start the tray with demo charms")
    parser.add_argument(
        "--no-tray", action="store_true", help="show a status window instead of a tray icon"
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = _sub(sub, "run", "run the engine (with --headless: without any UI)", _cmd_run)
    run.add_argument(
        "--headless", action="store_true", help="no tray: log to stderr, stop on Ctrl+C/SIGTERM"
    )

    sync = _sub(sub, "sync", "sync charms once, now, and report how each run ended", _cmd_sync)
    sync.add_argument("charms", nargs="*", metavar="CHARM", help="charm ids (default: all)")
    _add_json(sync)

    status = _sub(sub, "status", "show every charm's sync status", _cmd_status)
    status.add_argument("charms", nargs="*", metavar="CHARM", help="charm ids (default: all)")
    _add_json(status)

    _add_charms(sub)

    patterns = _sub(sub, "patterns", "list the patterns charms can be made from", None)
    psub = patterns.add_subparsers(title="patterns commands", metavar="ACTION", required=True)
    plist = _sub(psub, "list", "list installed patterns and plugin problems", _cmd_patterns_list)
    _add_json(plist)

    _add_accounts(sub)
    _add_export(sub)
    # Listed for --help only: main() hands `emulator ...` to the emulator before parsing.
    sub.add_parser("emulator", help="the local Google emulator (see 'trayapp emulator --help')")
    return parser


def _sub(sub: Any, name: str, help_text: str, handler: Handler | None) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    _add_common(p, top=False)
    if handler is not None:
        p.set_defaults(handler=handler)
    return p


def _add_common(p: argparse.ArgumentParser, *, top: bool) -> None:
    # Accepted before or after the command; SUPPRESS keeps a subcommand from resetting a value
    # given before it.
    default: Any = None if top else argparse.SUPPRESS
    p.add_argument(
        "--profile",
        metavar="DIR",
        default=default,
        help="profile directory (default: $TRAYAPP_PROFILE, else the user data dir)",
    )
    p.add_argument(
        "-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
        help="more log output (-vv: debug)",
    )  # fmt: skip
    p.add_argument(
        "-q", "--quiet", action="count", default=0 if top else argparse.SUPPRESS,
        help="less log output",
    )  # fmt: skip


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output (docs/cli.md)")


def _add_charms(sub: Any) -> None:
    charms = _sub(sub, "charms", "add, list, show, remove, pause and resume charms", None)
    csub = charms.add_subparsers(title="charms commands", metavar="ACTION", required=True)

    add = _sub(csub, "add", "create a charm from a pattern", _cmd_charms_add)
    add.add_argument("pattern", metavar="PATTERN", help="pattern id (see 'trayapp patterns list')")
    add.add_argument("--name", help="display name; the charm id is made from it")
    add.add_argument(
        "--set",
        dest="set_",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting (repeatable); KEY:=JSON for a non-text value, e.g. max_items:=50",
    )
    add.add_argument(
        "--settings-json", metavar="JSON", help="all settings as a JSON object, or @FILE"
    )
    add.add_argument("--account", metavar="ACCOUNT", help="the account the charm syncs with")
    add.add_argument("--interval", metavar="DURATION", help="e.g. 90s, 15m, 1h, 1d")
    add.add_argument(
        "--bind",
        action="append",
        default=[],
        metavar="SLOT=CELL",
        help="bind a pattern input to a named cell (repeatable)",
    )
    _add_json(add)

    clist = _sub(csub, "list", "list charms", _cmd_charms_list)
    _add_json(clist)

    show = _sub(csub, "show", "a charm's settings, status and recent runs", _cmd_charms_show)
    show.add_argument("charm", metavar="CHARM")
    _add_json(show)

    remove = _sub(csub, "remove", "delete a charm and the data it imported", _cmd_charms_remove)
    remove.add_argument("charm", metavar="CHARM")

    pause = _sub(csub, "pause", "stop scheduled syncs of a charm (or all)", _cmd_charms_pause)
    pause.add_argument("charm", nargs="?", metavar="CHARM")
    pause.add_argument("--all", action="store_true", help="pause every charm")
    pause.add_argument(
        "--for", dest="for_", metavar="DURATION", help="resume automatically after, e.g. 1h"
    )

    resume = _sub(csub, "resume", "resume a paused charm (or all)", _cmd_charms_resume)
    resume.add_argument("charm", nargs="?", metavar="CHARM")
    resume.add_argument("--all", action="store_true", help="resume every charm")


def _add_accounts(sub: Any) -> None:
    """``trayapp accounts ...`` belongs to the accounts layer; absent until it exists."""
    try:
        from trayapp.auth import commands  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return
    commands.register(sub)


def _add_export(sub: Any) -> None:
    export = _sub(sub, "export", "write a charm's imported data to a file", _cmd_export)
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
    _add_json(export)


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
        try:
            from trayapp.emulator import cli as emulator_cli  # type: ignore[attr-defined,unused-ignore]
        except ImportError as exc:
            return fail(f"the Google emulator is not available in this installation ({exc})")
        configure_logging(logging.INFO if _count_flags(argv[:i]) > 0 else logging.WARNING)
        return int(emulator_cli.main(argv[i + 1 :]))
    return None


def _count_flags(argv: Sequence[str]) -> int:
    return sum(a in ("-v", "--verbose") for a in argv) - sum(a in ("-q", "--quiet") for a in argv)


def _log_level(args: argparse.Namespace, *, long_running: bool) -> int:
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
    root = logging.getLogger()
    if not any(getattr(h, "_trayapp", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
        handler._trayapp = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        try:
            from trayapp.core.redact import install_log_filter
        except ImportError:  # pragma: no cover - redact ships with the core
            pass
        else:
            install_log_filter(root)
    root.setLevel(level)
    # httpx logs every request at INFO, with full URLs (which may carry a feed key).
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
    logging.getLogger("httpcore").setLevel(max(level, logging.WARNING))


# ------------------------------------------------------------------------------------ engine


def open_engine(args: argparse.Namespace) -> Engine:
    """The Engine for ``--profile`` (or $TRAYAPP_PROFILE, or the default profile)."""
    from trayapp.core.engine import Engine
    from trayapp.core.profile import Profile

    return Engine(Profile.resolve(getattr(args, "profile", None)))


def _running_instance(profile_dir: Path) -> bool:
    from trayapp import ipc

    reply = ipc.try_send(profile_dir, {"cmd": "ping"}, timeout=2.0)
    return bool(reply and reply.get("ok"))


def _tell_running_instance(profile_dir: Path, command: dict[str, Any]) -> dict[str, Any] | None:
    """Send a command to the tray/daemon serving this profile, if one runs."""
    from trayapp import ipc

    if not _running_instance(profile_dir):
        return None
    return ipc.try_send(profile_dir, command, timeout=10.0)


def _after_change(engine: Engine) -> None:
    """A running tray/daemon keeps its schedule in memory: ask it to re-read the charms."""
    reply = _tell_running_instance(engine.profile.path, {"cmd": "reload"})
    if reply is not None and not reply.get("ok"):
        print(
            f"trayapp: note: the running {DISPLAY_NAME} did not pick up the change "
            f"({reply.get('error')}); restart it to apply it",
            file=sys.stderr,
        )


# ---------------------------------------------------------------------------------- commands


def _cmd_tray(args: argparse.Namespace) -> int:
    graphical = ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    if sys.platform.startswith("linux") and not any(os.environ.get(v) for v in graphical):
        # Without this Qt aborts the process with a page of plugin errors.
        return fail(
            "there is no graphical session here (DISPLAY and WAYLAND_DISPLAY are unset), so the "
            "tray cannot start; run the engine without it: trayapp run --headless"
        )
    try:
        from trayapp.ui.app import main as ui_main
    except ImportError as exc:
        return fail(
            f"the tray is not available ({exc}); run the engine without it: trayapp run --headless"
        )
    return int(ui_main(args))


def _cmd_run(args: argparse.Namespace) -> int:
    if not args.headless:
        return _cmd_tray(args)
    from trayapp.core import aio

    return aio.run(_run_headless(args))  # its exit is bounded even if an updater hangs


async def _run_headless(args: argparse.Namespace) -> int:
    from trayapp import ipc
    from trayapp.core.events import EngineEvent, LoopBlocked, RunFinished

    engine = open_engine(args)
    server: Any = None
    try:
        server = await ipc.serve(engine, engine.profile.path)
    except ipc.AlreadyRunning:
        engine.close()
        return fail(
            f"{DISPLAY_NAME} is already running for the profile {engine.profile.path}; "
            "stop it first, or talk to it with 'trayapp sync' and 'trayapp status'"
        )
    except OSError as exc:
        # Syncing does not need the control socket; only other trayapp commands do.
        log.warning("cannot open the control socket (%s); running without it", exc)

    def on_event(event: EngineEvent) -> None:
        if isinstance(event, RunFinished):
            r = event.record
            c = r.counts
            text = f"charm {r.charm_id}: {r.outcome.value}"
            if r.outcome.value == "ok":
                log.info(
                    "%s (+%d ~%d -%d) in %.2f s", text, c.added, c.updated, c.removed, r.duration_s
                )
            else:
                log.warning("%s: %s", text, r.message)
        elif isinstance(event, LoopBlocked) and event.charm_id:
            log.warning("charm %s blocked the event loop for %.1f s", event.charm_id, event.seconds)

    engine.subscribe(on_event)
    from trayapp.core.network import NetworkMonitor

    accounts: AccountsWiring | None = None
    network: NetworkMonitor | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        # Inside the try: if wiring the accounts fails, the socket and the store still close.
        from trayapp.auth.wiring import AccountsWiring

        accounts = AccountsWiring(engine)
        if server is not None:
            ipc.register_engine_commands(server, engine, accounts.manager)
        await engine.start()
        # Network back: offline charms retry within seconds (NetworkManager or a probe).
        network = NetworkMonitor(engine, extra_urls=accounts.api_urls)
        await network.start()
        log.info(
            "%s running headless with %d charm(s), profile %s; Ctrl+C or SIGTERM stops it",
            DISPLAY_NAME,
            len(engine.charms()),
            engine.profile.path,
        )
        await stop.wait()
        log.info("stopping: cancelling runs in progress")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if network is not None:
            await network.stop()
        if server is not None:
            await server.close()
        await engine.stop()
        if accounts is not None:
            await accounts.aclose()
        engine.close()
    log.info("stopped")
    return EXIT_OK


def _cmd_sync(args: argparse.Namespace) -> int:
    from trayapp.core.profile import Profile

    profile = Profile.resolve(getattr(args, "profile", None))
    if _running_instance(profile.path):
        results = _sync_via_instance(profile.path, args.charms)
    else:
        from trayapp.core import aio

        done = aio.run(_sync_here(args))  # its exit is bounded even if an updater hangs
        if done is None:
            print(
                "trayapp: terminated; runs in progress were recorded as cancelled", file=sys.stderr
            )
            return EXIT_TERMINATED
        results = done
    ok = all(r["ok"] for r in results)
    if args.json:
        _print_json({"version": JSON_VERSION, "ok": ok, "results": results})
    elif not results:
        print("no charms to sync; add one with 'trayapp charms add'")
    else:
        for r in results:
            print(_sync_line(r))
    return EXIT_OK if ok else EXIT_FAILURE


async def _sync_here(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """The results, or None if SIGTERM stopped the pass (its runs are recorded as cancelled).

    SIGTERM (a service manager or timer stopping us) gets the same graceful path as Ctrl+C:
    the pass is cancelled, so runs in progress end as ``cancelled`` in their history and are
    due again at the next start, instead of the process dying mid-write.
    """
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    engine = open_engine(args)
    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        async with engine:
            from trayapp.auth.wiring import AccountsWiring

            accounts = AccountsWiring(engine)
            try:
                outcomes = await engine.sync(args.charms or None)
            finally:
                await engine.stop()  # runs end before their Google clients close
                await accounts.aclose()
            return [_result_json(cid, outcome) for cid, outcome in outcomes.items()]
    except asyncio.CancelledError:
        if not terminated:
            raise
        task.uncancel()
        return None
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _sync_via_instance(profile_dir: Path, charms: list[str]) -> list[dict[str, Any]]:
    from trayapp import ipc

    reply = ipc.send_sync(profile_dir, charms or None, wait=True, timeout=SYNC_WAIT_S)
    if reply is None:
        raise ConfigError(f"the running {DISPLAY_NAME} did not answer the sync request")
    if not reply.get("ok"):
        error = str(reply.get("error", "unknown error"))
        raise ConfigError(re.sub(r"^\w+Error: ", "", error))
    return [
        _result_json(cid, _outcome_from_reply(o))
        for cid, o in (reply.get("outcomes") or {}).items()
    ]


def _outcome_from_reply(o: Mapping[str, Any]) -> RunOutcome:
    """A RunOutcome from the IPC sync reply, so both sync paths print the same JSON."""
    from trayapp.core.outcomes import OutcomeKind, RunOutcome

    try:
        return RunOutcome.from_json(o)
    except ValueError:
        return RunOutcome(OutcomeKind.BUG, message=f"unexpected reply from the app: {o!r}")


def _result_json(charm_id: str, outcome: RunOutcome) -> dict[str, Any]:
    """One charm's entry in ``trayapp sync --json`` (docs/cli.md)."""
    data = outcome.to_json()
    del data["traceback"]  # kept in the charm's history (``charms show``), not printed here
    return {"charm_id": charm_id, **data}


def _sync_line(r: Mapping[str, Any]) -> str:
    c = r["counts"]
    if r["ok"]:
        text = (
            f"{r['charm_id']}: ok, {c['added']} added, {c['updated']} updated, "
            f"{c['removed']} removed"
        )
        if r["message"]:
            text += f" ({r['message']})"
        return text
    return f"{r['charm_id']}: {r['outcome']}: {r['message']}"


def _cmd_export(args: argparse.Namespace) -> int:
    engine = open_engine(args)
    try:
        dest = Path(args.output) if args.output else Path(f"{args.charm}.{args.fmt}")
        count = engine.export(args.charm, args.fmt, dest)
    finally:
        engine.close()
    if args.json:
        _print_json(
            {
                "version": JSON_VERSION,
                "charm": args.charm,
                "format": args.fmt,
                "path": str(dest.resolve()),
                "count": count,
            }
        )
    else:
        print(f"exported {count} item{'s' if count != 1 else ''} to {dest}")
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    engine = open_engine(args)
    try:
        charms = [engine.charm(cid) for cid in args.charms] if args.charms else engine.charms()
        statuses = engine.statuses()
        if args.json:
            _print_json(
                {
                    "version": JSON_VERSION,
                    "profile": str(engine.profile.path),
                    "charms": [
                        {**_charm_summary(c), "status": statuses[c.id].to_json()} for c in charms
                    ],
                }
            )
            return EXIT_OK
        if not charms:
            print("no charms yet; add one with 'trayapp charms add PATTERN ...'")
            return EXIT_OK
        now = datetime.now(UTC)
        rows = [("CHARM", "STATE", "LAST RUN", "RESULT", "LAST SUCCESS", "NEXT")]
        for c in charms:
            s = statuses[c.id]
            rows.append(
                (
                    c.id,
                    s.state.value
                    + (" (resumes " + _when(s.paused_until, now) + ")" if s.paused_until else ""),
                    _when(s.last_run_at, now),
                    _result_text(s),
                    _when(s.last_success_at, now),
                    _when(s.next_due_at, now) if not s.paused else "-",
                )
            )
        _print_table(rows)
        for c in charms:
            s = statuses[c.id]
            if s.last_error:
                print(f"{c.id}: {s.last_error}")
            if s.blocked_loop:
                print(f"{c.id}: {s.blocked_loop}")
        return EXIT_OK
    finally:
        engine.close()


def _result_text(status: CharmStatus) -> str:
    if status.last_outcome is None:
        return "never run"
    if status.last_outcome.value == "ok":
        c = status.last_counts
        return f"ok +{c.added} ~{c.updated} -{c.removed}"
    failures = status.consecutive_failures
    return str(status.last_outcome.value) + (f" ({failures}x)" if failures > 1 else "")


def _charm_summary(info: CharmInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "pattern_id": info.pattern_id,
        "account_id": info.account_id,
        "interval_s": int(info.interval.total_seconds()),
    }


def _cmd_charms_add(args: argparse.Namespace) -> int:
    settings = _settings_from_args(args.settings_json, args.set_)
    interval = parse_duration(args.interval, what="interval") if args.interval else None
    bindings = _pairs(args.bind, "--bind", "SLOT=CELL")
    engine = open_engine(args)
    try:
        info = engine.add_charm(
            args.pattern,
            settings,
            name=args.name,
            account_id=_account_id(engine, args.account),
            interval=interval,
            bindings=bindings or None,
        )
        _after_change(engine)
    finally:
        engine.close()
    if args.json:
        _print_json({"version": JSON_VERSION, "charm": info.to_json()})
    else:
        print(
            f"added charm '{info.id}' ({info.pattern_id}), syncing every "
            f"{format_duration(info.interval)}; run 'trayapp sync {info.id}' to sync it now"
        )
    return EXIT_OK


def _account_id(engine: Engine, given: str | None) -> str | None:
    """``--account`` takes an account id or its email (as ``trayapp accounts`` does).

    Account ids are opaque, so users type the email; without this the charm would be stored
    for an account that does not exist and only fail at its first run. An unknown account is
    one clear line now. Without the accounts package the value is taken as given.
    """
    if given is None or not given.strip():
        return None
    try:
        from trayapp.auth.accounts import AccountManager
    except ImportError:
        return given.strip()
    return str(AccountManager(engine.store, engine.profile.path).find(given.strip()).id)


def _cmd_charms_list(args: argparse.Namespace) -> int:
    engine = open_engine(args)
    try:
        charms = engine.charms()
    finally:
        engine.close()
    if args.json:
        _print_json({"version": JSON_VERSION, "charms": [c.to_json() for c in charms]})
    elif not charms:
        print("no charms yet; add one with 'trayapp charms add PATTERN ...'")
    else:
        rows = [("CHARM", "NAME", "PATTERN", "ACCOUNT", "INTERVAL")]
        rows += [
            (c.id, c.name, c.pattern_id, c.account_id or "-", format_duration(c.interval))
            for c in charms
        ]
        _print_table(rows)
    return EXIT_OK


def _cmd_charms_show(args: argparse.Namespace) -> int:
    engine = open_engine(args)
    try:
        info = engine.charm(args.charm)
        status = engine.status(info.id)
        history = engine.history(info.id, limit=10)
    finally:
        engine.close()
    if args.json:
        _print_json(
            {
                "version": JSON_VERSION,
                "charm": info.to_json(),
                "status": status.to_json(),
                "history": [r.to_json() for r in history],
            }
        )
        return EXIT_OK
    now = datetime.now(UTC)
    print(f"{info.name} ({info.id})")
    print(f"  pattern:      {info.pattern_id}")
    print(f"  account:      {info.account_id or '-'}")
    print(f"  interval:     {format_duration(info.interval)}")
    print(f"  state:        {status.state.value}")
    print(f"  last run:     {_when(status.last_run_at, now)} ({_result_text(status)})")
    print(f"  last success: {_when(status.last_success_at, now)}")
    print(f"  next run:     {_when(status.next_due_at, now)}")
    if status.last_error:
        print(f"  last error:   {status.last_error}")
    t = status.totals
    print(f"  totals:       +{t.added} ~{t.updated} -{t.removed}")
    print("  settings:")
    for key, value in info.settings.items():
        print(f"    {key} = {json.dumps(value, ensure_ascii=False)}")
    print("  bindings:")
    for slot, cell in info.bindings.items():
        print(f"    {slot} -> {cell}")
    if history:
        print("  recent runs:")
        for r in history:
            c = r.counts
            detail = (
                f"+{c.added} ~{c.updated} -{c.removed}" if r.outcome.value == "ok" else r.message
            )
            print(f"    {_when(r.started_at, now):>14}  {r.outcome.value:<13} {detail}")
    return EXIT_OK


def _cmd_charms_remove(args: argparse.Namespace) -> int:
    engine = open_engine(args)
    try:
        engine.charm(args.charm)  # unknown charm: one clear line, before anything else
        # A running engine removes it itself: it cancels the charm's run before the data goes,
        # so a run finishing meanwhile cannot write into the dropped cells.
        if not _live_or_here(
            engine, {"cmd": "remove", "charm": args.charm}, lambda: engine.remove_charm(args.charm)
        ):
            return EXIT_FAILURE
    finally:
        engine.close()
    print(f"removed charm '{args.charm}' and the data it imported")
    return EXIT_OK


def _live_or_here(engine: Engine, command: dict[str, Any], here: Callable[[], None]) -> bool:
    """Send ``command`` to the engine running for this profile, else do ``here()`` locally.

    A running engine holds the charms' schedule and runs in memory, so changes to live state go
    through it (one way in); without one, the local Engine makes the same change in the store.
    Returns False (after printing one line) if the running engine refused.
    """
    reply = _tell_running_instance(engine.profile.path, command)
    if reply is None:
        here()
        return True
    if reply.get("ok"):
        return True
    fail(
        f"{DISPLAY_NAME} is running for this profile and did not accept the {command['cmd']} "
        f"({reply.get('error')}); use its tray menu, or stop it first"
    )
    return False


def _target(args: argparse.Namespace, verb: str) -> str | None:
    if args.all and args.charm:
        raise ConfigError(f"give either a charm id or --all to {verb}, not both")
    if not args.all and not args.charm:
        raise ConfigError(f"say which charm to {verb} (or --all)")
    return None if args.all else str(args.charm)


def _cmd_charms_pause(args: argparse.Namespace) -> int:
    charm = _target(args, "pause")
    until = None
    if args.for_:
        until = datetime.now(UTC) + parse_duration(args.for_, what="pause duration")
    return _pause_or_resume(args, "pause", charm, until)


def _cmd_charms_resume(args: argparse.Namespace) -> int:
    return _pause_or_resume(args, "resume", _target(args, "resume"), None)


def _pause_or_resume(
    args: argparse.Namespace, verb: str, charm: str | None, until: datetime | None
) -> int:
    engine = open_engine(args)
    try:
        if charm is not None:
            engine.charm(charm)  # unknown charm: one clear line, before anything else
        command: dict[str, Any] = {"cmd": verb, "charm": charm}
        if until is not None:
            command["until"] = until.isoformat()
        here = (
            functools.partial(engine.pause, charm, until)
            if verb == "pause"
            else functools.partial(engine.resume, charm)
        )
        if not _live_or_here(engine, command, here):
            return EXIT_FAILURE
    finally:
        engine.close()
    who = f"charm '{charm}'" if charm else "all charms"
    done = "paused" if verb == "pause" else "resumed"
    when = f" until {until.astimezone():%Y-%m-%d %H:%M}" if until else ""
    print(f"{done} {who}{when}")
    return EXIT_OK


def _cmd_patterns_list(args: argparse.Namespace) -> int:
    from trayapp.core.patterns import PatternRegistry

    registry = PatternRegistry.default()
    if args.json:
        _print_json(
            {
                "version": JSON_VERSION,
                "patterns": [
                    {
                        "id": p.id,
                        "title": p.title,
                        "description": p.description,
                        "source": registry.source(p.id),
                        "scopes": list(p.scopes),
                        "needs_account": p.needs_account,
                        "default_interval_s": int(p.default_interval.total_seconds()),
                        "timeout_s": int(p.timeout.total_seconds()),
                        "settings_schema": p.settings_model().model_json_schema(),
                    }
                    for p in registry
                ],
                "problems": [problem.to_json() for problem in registry.problems],
            }
        )
        return EXIT_OK
    rows = [("PATTERN", "TITLE", "ACCOUNT", "INTERVAL", "SOURCE")]
    for p in registry:
        rows.append(
            (
                p.id,
                p.title,
                "yes" if p.needs_account else "no",
                format_duration(p.default_interval),
                registry.source(p.id),
            )
        )
    _print_table(rows)
    for p in registry:
        fields = p.settings_model().model_fields
        if fields:
            described = ", ".join(
                name + ("" if f.is_required() else "?") for name, f in fields.items()
            )
            print(f"  {p.id} settings: {described}")
    for problem in registry.problems:
        print(f"plugin not loaded: {problem.entry_point}: {problem.message}", file=sys.stderr)
    return EXIT_OK


# ----------------------------------------------------------------------------------- helpers


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(sec|min|s|m|h|d)", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, *, what: str = "duration") -> timedelta:
    """``90s``, ``15m``, ``1h30m``, ``2d`` -> timedelta; a ConfigError saying how otherwise."""
    compact = text.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(compact):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2).lower()]
        pos = m.end()
    if not compact or pos != len(compact) or total <= 0:
        raise ConfigError(
            f"invalid {what} {text!r}: use a number and a unit, e.g. 90s, 15m, 1h30m or 1d"
        )
    from trayapp.core.scheduler import MAX_INTERVAL

    if total > MAX_INTERVAL.total_seconds():
        raise ConfigError(
            f"the {what} {text!r} is too long: it can be at most {MAX_INTERVAL.days} days"
        )
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def _settings_from_args(settings_json: str | None, pairs: Sequence[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if settings_json:
        text = settings_json
        if text.startswith("@"):
            try:
                text = Path(text[1:]).expanduser().read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read settings file {text[1:]!r}: {exc.strerror}"
                ) from None
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(
                f"--settings-json is not valid JSON ({exc.msg} at line {exc.lineno})"
            ) from None
        if not isinstance(loaded, dict):
            raise SettingsError('--settings-json must be a JSON object, like {"url": "..."}')
        settings.update(loaded)
    for item in pairs:
        if ":=" in item and ("=" not in item or item.index(":=") < item.index("=")):
            key, raw = item.split(":=", 1)
            try:
                settings[key.strip()] = json.loads(raw)
            except ValueError:
                raise SettingsError(
                    f"--set {key.strip()}:= needs a JSON value, got {raw!r}"
                ) from None
        elif "=" in item:
            key, value = item.split("=", 1)
            settings[key.strip()] = value
        else:
            raise SettingsError(f"--set needs KEY=VALUE (or KEY:=JSON), got {item!r}")
        if not key.strip():
            raise SettingsError(f"--set {item!r} has an empty setting name")
    return settings


def _pairs(items: Sequence[str], flag: str, shape: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{flag} needs {shape}, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _when(value: datetime | None, now: datetime) -> str:
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


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))
