"""``trayapp emulator [--port N] [--seed demo] [--latency-ms N]``: run it in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from trayapp.emulator.app import EmulatorApp
from trayapp.emulator.control import Control
from trayapp.emulator.server import bind_socket, make_server, wait_started


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trayapp emulator",
        description="Run the local Google emulator (OAuth, Gmail v1, Calendar v3) on 127.0.0.1. "
        "Point the app at the printed URL; no real Google host is contacted.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind (default: 0, any free port)")
    p.add_argument("--seed", choices=["demo"], help="fill it with the demo mailbox and calendars")
    p.add_argument(
        "--latency-ms",
        type=int,
        default=0,
        help="network round trip added to every HTTP request (a batch pays it once)",
    )
    p.add_argument("--auto-approve", action="store_true", help="consent page approves at once")
    p.add_argument(
        "--client-config",
        metavar="PATH",
        help="write a client_secret.json for an OAuth client of this emulator (the demo client "
        "with --seed demo) to PATH, for the app's 'add OAuth client' step",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON line of startup facts instead of text"
    )
    p.add_argument(
        "--until-stdin-closes",
        action="store_true",
        help="also stop when standard input closes (for a program that starts the emulator as "
        "its child: it stops with that program, even one that was killed)",
    )
    return p


async def serve(args: argparse.Namespace) -> int:
    app = EmulatorApp(latency_ms=args.latency_ms)
    control = Control(app)
    facts: dict[str, object] = {}
    if args.seed == "demo":
        from trayapp.emulator.seed import seed_demo

        info = seed_demo(control)
        facts.update(
            account=info.email,
            name=info.name,
            client_id=info.client_id,
            client_secret=info.client_secret,
            messages=info.message_count,
        )
    if args.auto_approve:
        control.set_consent(auto_approve=True)
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(
            f"trayapp emulator: cannot listen on {args.host}:{args.port} ({exc.strerror}); "
            "choose another --port or use --port 0",
            file=sys.stderr,
        )
        return 2
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    base_url = f"http://{host}:{port}"
    app.loop = asyncio.get_running_loop()
    server = make_server(app)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await wait_started(server, task)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        app.begin_shutdown()
        server.request_exit()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    if args.until_stdin_closes:
        _stop_when_stdin_closes(loop, stop)
    facts = {"base_url": base_url, **facts}
    if args.client_config:
        from trayapp.emulator.control import ClientInfo
        from trayapp.emulator.seed import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

        client = (
            ClientInfo(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
            if args.seed == "demo"
            else control.create_client()
        )
        text = json.dumps(client.client_config(base_url), indent=2)
        await asyncio.to_thread(Path(args.client_config).write_text, text, encoding="utf-8")
        facts["client_config"] = args.client_config
    if args.json:
        print(json.dumps(facts), flush=True)
    else:
        print(f"Google emulator running at {base_url}", flush=True)
        if "account" in facts:
            print(f"  demo account:        {facts['account']}")
            print(f"  OAuth client id:     {facts['client_id']}")
            secret = facts["client_secret"]
            print(f"  OAuth client secret: {secret}  (emulator-only, not a real secret)")
            print(f"  messages:            {facts['messages']}")
        if "client_config" in facts:
            print(f"  client_secret.json:  {facts['client_config']}")
        print("  control API:         POST /__emu__/<operation>  (see docs/emulator.md)")
        print("Press Ctrl+C to stop.", flush=True)
    await task
    return 0


def _stop_when_stdin_closes(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    """Call ``stop`` on ``loop`` once standard input reaches end of file.

    The parent holds the write end of the pipe; when it exits for any reason (SIGKILL included)
    the kernel closes it, so the child never outlives it. A daemon thread blocks on the read:
    no polling, nothing wakes while the parent lives.
    """

    def wait() -> None:
        with contextlib.suppress(OSError, ValueError):
            fd = sys.stdin.fileno()
            while os.read(fd, 4096):
                pass
        with contextlib.suppress(RuntimeError):  # the loop already closed
            loop.call_soon_threadsafe(stop)

    threading.Thread(target=wait, name="emulator-stdin", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return asyncio.run(serve(args))
