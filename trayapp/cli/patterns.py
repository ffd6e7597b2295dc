"""``trayapp patterns list``: the patterns charms can be made from, and plugin problems."""

from __future__ import annotations

import argparse
import sys

from trayapp.cli.args import add_command, add_json, format_duration
from trayapp.cli.output import EXIT_OK, JSON_VERSION, print_json, print_table


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    patterns = add_command(sub, "patterns", "list the patterns charms can be made from", None)
    psub = patterns.add_subparsers(title="patterns commands", metavar="ACTION", required=True)
    plist = add_command(psub, "list", "list installed patterns and plugin problems", cmd_list)
    add_json(plist)


def cmd_list(args: argparse.Namespace) -> int:
    from trayapp.builtins import default_registry
    from trayapp.core.profile import Profile

    registry = default_registry(profile=Profile.resolve(getattr(args, "profile", None)).path)
    if args.json:
        print_json(
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
                        # the account's service: "google", or a plugin credential's ("github")
                        "service": p.service if p.needs_account else None,
                        "credential": {
                            "service": p.credential.service,
                            "title": p.credential.title,
                            "kind": p.credential.kind,
                            "help_url": p.credential.help_url or None,
                        }
                        if p.credential is not None
                        else None,
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
                (p.service if p.credential is not None else "google") if p.needs_account else "no",
                format_duration(p.default_interval),
                registry.source(p.id),
            )
        )
    print_table(rows)
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
