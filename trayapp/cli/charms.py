"""``trayapp charms ...``: add, list, show, remove, pause and resume charms."""

from __future__ import annotations

import argparse
import contextlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from trayapp.cli.args import (
    add_command,
    add_json,
    format_duration,
    pairs,
    parse_duration,
    settings_from_args,
)
from trayapp.cli.output import (
    EXIT_FAILURE,
    EXIT_OK,
    JSON_VERSION,
    print_json,
    print_problems,
    print_table,
    problems_json,
    result_text,
    when,
)
from trayapp.cli.target import Target
from trayapp.core.errors import ConfigError, DamagedRecordError

if TYPE_CHECKING:
    from trayapp.core.engine import Engine


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    charms = add_command(
        sub, "charms", "add, list, show, edit, reset, remove, pause and resume charms", None
    )
    csub = charms.add_subparsers(title="charms commands", metavar="ACTION", required=True)

    add = add_command(csub, "add", "create a charm from a pattern", cmd_add)
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
    add_json(add)

    clist = add_command(csub, "list", "list charms", cmd_list)
    add_json(clist)

    show = add_command(csub, "show", "a charm's settings, status and recent runs", cmd_show)
    show.add_argument("charm", metavar="CHARM")
    add_json(show)

    remove = add_command(csub, "remove", "delete a charm and the data it imported", cmd_remove)
    remove.add_argument("charm", metavar="CHARM")

    edit = add_command(
        csub, "edit", "change a charm's settings, name or interval (others kept)", cmd_edit
    )
    edit.add_argument("charm", metavar="CHARM")
    edit.add_argument("--name", help="a new display name (the charm id stays)")
    edit.add_argument(
        "--set",
        dest="set_",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one setting (repeatable); KEY:=JSON for a non-text value",
    )
    edit.add_argument(
        "--settings-json", metavar="JSON", help="replace all settings with a JSON object, or @FILE"
    )
    edit.add_argument("--interval", metavar="DURATION", help="e.g. 90s, 15m, 1h, 1d")
    add_json(edit)

    reset = add_command(
        csub,
        "reset",
        "forget what a charm synced (its data and cursor) and sync it again",
        cmd_reset,
    )
    reset.add_argument("charm", metavar="CHARM")

    pause = add_command(csub, "pause", "stop scheduled syncs of a charm (or all)", cmd_pause)
    pause.add_argument("charm", nargs="?", metavar="CHARM")
    pause.add_argument("--all", action="store_true", help="pause every charm")
    pause.add_argument(
        "--for", dest="for_", metavar="DURATION", help="resume automatically after, e.g. 1h"
    )

    resume = add_command(
        csub,
        "resume",
        "resume a paused charm, or one stopped for freezing the app (or all)",
        cmd_resume,
    )
    resume.add_argument("charm", nargs="?", metavar="CHARM")
    resume.add_argument("--all", action="store_true", help="resume every charm")


def cmd_add(args: argparse.Namespace) -> int:
    settings = settings_from_args(args.settings_json, args.set_)
    interval = parse_duration(args.interval, what="interval") if args.interval else None
    bindings = pairs(args.bind, "--bind", "SLOT=CELL")
    with Target.from_args(args) as target:
        engine = target.engine()
        info = engine.add_charm(
            args.pattern,
            settings,
            name=args.name,
            account_id=_account_id(engine, args.account, args.pattern),
            interval=interval,
            bindings=bindings or None,
        )
        target.notify({"cmd": "reload"}, "change")
    if args.json:
        print_json({"version": JSON_VERSION, "charm": info.to_json()})
    else:
        print(
            f"added charm '{info.id}' ({info.pattern_id}), syncing every "
            f"{format_duration(info.interval)}; run 'trayapp sync {info.id}' to sync it now"
        )
    return EXIT_OK


def _account_id(engine: Engine, given: str | None, pattern_id: str | None = None) -> str | None:
    """``--account`` takes an account id, its email or (another service's) its name, as
    ``trayapp accounts`` does.

    Account ids are opaque, so users type the email; without this the charm would be stored
    for an account that does not exist and only fail at its first run. An unknown account, or
    one of another service than the pattern's (a Google account for a GitHub pattern), is one
    clear line now.
    """
    if given is None or not given.strip():
        return None
    from trayapp.auth.accounts import AccountManager

    account = AccountManager(engine.store, engine.profile.path).find(given.strip())
    if pattern_id is not None and pattern_id in engine.patterns:
        pattern = engine.patterns.get(pattern_id)
        if pattern.needs_account and account.service != pattern.service:
            raise ConfigError(
                f"pattern {pattern_id!r} needs a {pattern.service_title} account, but "
                f"{account.label} is a {account.service_title} account; see `trayapp accounts "
                "list`"
                + (
                    f", or add one with `trayapp accounts add --service {pattern.service}`"
                    if pattern.credential is not None
                    else ""
                )
            )
    return str(account.id)


def cmd_list(args: argparse.Namespace) -> int:
    with Target.from_args(args) as target:
        charms = target.engine().charms()
        problems = target.engine().damaged()
    if args.json:
        print_json(
            {
                "version": JSON_VERSION,
                "charms": [c.to_json() for c in charms],
                "problems": problems_json(problems),
            }
        )
        return EXIT_OK
    print_problems(problems)
    if not charms:
        print("no charms yet; add one with 'trayapp charms add PATTERN ...'")
    else:
        rows = [("CHARM", "NAME", "PATTERN", "ACCOUNT", "INTERVAL")]
        rows += [
            (c.id, c.name, c.pattern_id, c.account_id or "-", format_duration(c.interval))
            for c in charms
        ]
        print_table(rows)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    with Target.from_args(args) as target:
        engine = target.engine()
        info = engine.charm(args.charm)
        status = engine.status(info.id)
        history = engine.history(info.id, limit=10)
    if args.json:
        print_json(
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
    print(f"  last run:     {when(status.last_run_at, now)} ({result_text(status)})")
    print(f"  last success: {when(status.last_success_at, now)}")
    print(f"  next run:     {when(status.next_due_at, now)}")
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
            print(f"    {when(r.started_at, now):>14}  {r.outcome.value:<13} {detail}")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    with Target.from_args(args) as target:
        # Unknown charm: one clear line, before anything else. A damaged one is exactly what
        # the user may want to remove.
        with contextlib.suppress(DamagedRecordError):
            target.engine().charm(args.charm)
        # A running engine removes it itself: it cancels the charm's run before the data goes,
        # so a run finishing meanwhile cannot write into the dropped cells.
        command = {"cmd": "remove", "charm": args.charm}
        if not target.change(command, lambda engine: engine.remove_charm(args.charm)):
            return EXIT_FAILURE
    print(f"removed charm '{args.charm}' and the data it imported")
    return EXIT_OK


def cmd_edit(args: argparse.Namespace) -> int:
    changes = settings_from_args(None, args.set_)
    replace_all = settings_from_args(args.settings_json, []) if args.settings_json else None
    interval = parse_duration(args.interval, what="interval") if args.interval else None
    if replace_all is None and not changes and args.name is None and interval is None:
        raise ConfigError(
            "say what to change: --set KEY=VALUE, --settings-json, --name or --interval"
        )
    with Target.from_args(args) as target:
        engine = target.engine()
        info = engine.charm(args.charm)
        settings = None
        if replace_all is not None or changes:
            settings = {**(info.settings if replace_all is None else replace_all), **changes}
            # Refused here, in the user's words, before a running engine is asked.
            engine.patterns.get(info.pattern_id).validate_settings(settings)
        command: dict[str, object] = {"cmd": "edit", "charm": info.id}
        if settings is not None:
            command["settings"] = settings
        if args.name is not None:
            command["name"] = args.name
        if interval is not None:
            command["interval_s"] = interval.total_seconds()

        def here(local: Engine) -> None:
            local.update_charm(info.id, settings=settings, name=args.name, interval=interval)

        if not target.change(command, here):
            return EXIT_FAILURE
        updated = target.engine().charm(info.id)
    if args.json:
        print_json({"version": JSON_VERSION, "charm": updated.to_json()})
    else:
        print(f"changed charm '{updated.id}'")
    return EXIT_OK


def cmd_reset(args: argparse.Namespace) -> int:
    with Target.from_args(args) as target:
        info = target.engine().charm(args.charm)
        command = {"cmd": "reset", "charm": info.id}
        if not target.change(command, lambda engine: engine.reset_charm(info.id)):
            return EXIT_FAILURE
    print(f"reset charm '{info.id}': what it synced is forgotten; it syncs again from the start")
    return EXIT_OK


def _target_charm(args: argparse.Namespace, verb: str) -> str | None:
    if args.all and args.charm:
        raise ConfigError(f"give either a charm id or --all to {verb}, not both")
    if not args.all and not args.charm:
        raise ConfigError(f"say which charm to {verb} (or --all)")
    return None if args.all else str(args.charm)


def cmd_pause(args: argparse.Namespace) -> int:
    charm = _target_charm(args, "pause")
    until = None
    if args.for_:
        until = datetime.now(UTC) + parse_duration(args.for_, what="pause duration")
    return _pause_or_resume(args, "pause", charm, until)


def cmd_resume(args: argparse.Namespace) -> int:
    return _pause_or_resume(args, "resume", _target_charm(args, "resume"), None)


def _pause_or_resume(
    args: argparse.Namespace, verb: str, charm: str | None, until: datetime | None
) -> int:
    with Target.from_args(args) as target:
        if charm is not None:
            target.engine().charm(charm)  # unknown charm: one clear line, before anything else
        command: dict[str, object] = {"cmd": verb, "charm": charm}
        if until is not None:
            command["until"] = until.isoformat()

        def here(engine: Engine) -> None:
            if verb == "pause":
                engine.pause(charm, until)
            else:
                engine.resume(charm)

        if not target.change(dict(command), here):
            return EXIT_FAILURE
    who = f"charm '{charm}'" if charm else "all charms"
    done = "paused" if verb == "pause" else "resumed"
    when_text = f" until {until.astimezone():%Y-%m-%d %H:%M}" if until else ""
    print(f"{done} {who}{when_text}")
    return EXIT_OK
