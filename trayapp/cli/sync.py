"""``trayapp sync`` and ``trayapp status``: run charms once now, and show how they are doing."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from trayapp import ipc
from trayapp.cli.args import add_command, add_json
from trayapp.cli.output import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_TERMINATED,
    JSON_VERSION,
    print_json,
    print_problems,
    print_table,
    problems_json,
    result_json,
    result_text,
    sync_line,
    when,
)
from trayapp.cli.target import PING_S, Target
from trayapp.core.status import CharmStatus, Progress

if TYPE_CHECKING:
    from trayapp.core.charms import CharmInfo
    from trayapp.core.engine import Engine


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sync = add_command(
        sub, "sync", "sync charms once, now, and report how each run ended", cmd_sync
    )
    sync.add_argument("charms", nargs="*", metavar="CHARM", help="charm ids (default: all)")
    add_json(sync)

    status = add_command(sub, "status", "show every charm's sync status", cmd_status)
    status.add_argument("charms", nargs="*", metavar="CHARM", help="charm ids (default: all)")
    add_json(status)


def cmd_sync(args: argparse.Namespace) -> int:
    with Target.from_args(args) as target:
        if not args.charms:
            print_problems(target.engine().damaged())
        if target.running():
            results = target.sync_running(args.charms)
        else:
            with target.local("trayapp sync"):
                from trayapp.core import aio

                # Its exit is bounded even if an updater hangs.
                done = aio.run(_sync_here(target, args.charms))
            if done is None:
                print(
                    "trayapp: terminated; runs in progress were recorded as cancelled",
                    file=sys.stderr,
                )
                return EXIT_TERMINATED
            results = done
    ok = all(r["ok"] for r in results)
    if args.json:
        print_json({"version": JSON_VERSION, "ok": ok, "results": results})
    elif not results:
        print("no charms to sync; add one with 'trayapp charms add'")
    else:
        for r in results:
            print(sync_line(r))
    return EXIT_OK if ok else EXIT_FAILURE


async def _sync_here(target: Target, charms: list[str]) -> list[dict[str, Any]] | None:
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

    engine = target.engine()
    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        from trayapp.auth.wiring import AccountsWiring

        accounts = AccountsWiring(engine)
        try:
            outcomes = await engine.sync(charms or None)
        finally:
            await engine.stop()  # runs end before their Google clients close
            await accounts.aclose()
        return [result_json(cid, outcome) for cid, outcome in outcomes.items()]
    except asyncio.CancelledError:
        if not terminated:
            raise
        task.uncancel()
        return None
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def charm_summary(info: CharmInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "pattern_id": info.pattern_id,
        "account_id": info.account_id,
        "interval_s": int(info.interval.total_seconds()),
    }


def cmd_status(args: argparse.Namespace) -> int:
    with Target.from_args(args) as target:
        engine = target.engine()
        charms = [engine.charm(cid) for cid in args.charms] if args.charms else engine.charms()
        statuses = _with_live_progress(target, engine.statuses())
        problems = engine.damaged()
        if args.json:
            print_json(
                {
                    "version": JSON_VERSION,
                    "profile": str(engine.profile.path),
                    "charms": [
                        {**charm_summary(c), "status": statuses[c.id].to_json()} for c in charms
                    ],
                    "problems": problems_json(problems),
                    "accounts": _accounts_json(engine),
                }
            )
            return EXIT_OK
        print_problems(problems)
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
                    + (" (resumes " + when(s.paused_until, now) + ")" if s.paused_until else "")
                    + (f" ({_progress_words(s.progress)})" if s.progress else ""),
                    when(s.last_run_at, now),
                    result_text(s),
                    when(s.last_success_at, now),
                    when(s.next_due_at, now) if not s.paused else "-",
                )
            )
        print_table(rows)
        for c in charms:
            s = statuses[c.id]
            if s.last_error:
                print(f"{c.id}: {s.last_error}")
            if s.blocked_loop:
                print(f"{c.id}: {s.blocked_loop}")
        return EXIT_OK


def _with_live_progress(target: Target, statuses: dict[str, CharmStatus]) -> dict[str, CharmStatus]:
    """What running charms last said through ``ctx.progress``: the running engine keeps it in
    memory only (the store has the rest), so ask it; without an answer, no progress is shown."""
    if not any(s.running for s in statuses.values()):
        return statuses
    reply = ipc.try_send(target.profile.path, {"cmd": "status"}, timeout=PING_S)
    live = reply.get("statuses") if reply and reply.get("ok") else None
    if not isinstance(live, dict):
        return statuses
    out = dict(statuses)
    for cid, status in statuses.items():
        entry = live.get(cid)
        if status.running and isinstance(entry, dict):
            out[cid] = status.with_(progress=Progress.from_json(entry.get("progress")))
    return out


def _progress_words(p: Progress) -> str:
    return f"{p.done:,} of {p.total:,} {p.unit}" if p.total is not None else f"{p.done:,} {p.unit}"


def _accounts_json(engine: Engine) -> list[dict[str, Any]]:
    """The profile's accounts (Google and other services) with their state, for status --json:
    a charm parked for sign-in says which account waits and why. Holds no secret."""
    from trayapp.auth.accounts import AccountManager
    from trayapp.auth.wiring import charm_scope_needs

    manager = AccountManager(
        engine.store,
        engine.profile.path,
        scope_needs=charm_scope_needs(engine.charms, engine.patterns),
    )
    return [account.to_json() for account in manager.accounts()]
