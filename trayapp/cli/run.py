"""``trayapp`` (the tray) and ``trayapp run [--headless]``: the long-running app.

The headless engine and the tray are the same app (:class:`trayapp.host.AppHost`: engine,
control socket, accounts, engine commands); here the headless one only adds logging of finished
runs and waits for SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from trayapp import DISPLAY_NAME
from trayapp.cli.args import add_command
from trayapp.cli.output import EXIT_OK
from trayapp.cli.tray import cmd_tray

log = logging.getLogger("trayapp.cli")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = add_command(sub, "run", "run the engine (with --headless: without any UI)", cmd_run)
    run.add_argument(
        "--headless", action="store_true", help="no tray: log to stderr, stop on Ctrl+C/SIGTERM"
    )


def cmd_run(args: argparse.Namespace) -> int:
    if not args.headless:
        return cmd_tray(args)
    from trayapp.core import aio

    return aio.run(run_headless(args))  # its exit is bounded even if an updater hangs


async def run_headless(args: argparse.Namespace) -> int:
    from trayapp.core.events import EngineEvent, LoopBlocked, RunFinished
    from trayapp.core.profile import Profile
    from trayapp.host import AppHost, StderrUpgradeProgress

    host = AppHost(Profile.resolve(getattr(args, "profile", None)), role="headless engine")
    host.on_upgrade = StderrUpgradeProgress()  # an older store is upgraded first: on stderr

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

    engine = await host.open()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        engine.subscribe(on_event)
        await host.start()
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
        await host.close()
    log.info("stopped")
    return EXIT_OK
