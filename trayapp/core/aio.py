"""Run a program's main coroutine with a hard deadline on its exit.

``asyncio.run`` ends by cancelling every task left and waiting for all of them, without a limit:
one updater that swallows ``asyncio.CancelledError`` (a plugin's ``except BaseException: pass``)
keeps ``trayapp sync`` from ever exiting and makes ``run --headless`` need a second SIGTERM. The
scheduler already abandons such a run (recorded as ``timeout`` or ``cancelled``); :func:`run`
abandons what is left at exit the same way: cancel, wait up to ``grace`` seconds, log the tasks
that would not stop, and close the loop anyway.

Ctrl+C behaves as with ``asyncio.run``: the main task is cancelled (its ``finally`` blocks run)
and :class:`KeyboardInterrupt` is raised once it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

EXIT_GRACE = 5.0
"""Seconds the tasks left at exit get to stop once cancelled, then they are abandoned."""

_abandoned: set[asyncio.Future[Any]] = set()  # kept referenced: never finalized before exit


def abandon(task: asyncio.Future[Any]) -> None:
    """Note a task that ignored cancellation and was left running (the scheduler's runs past
    their deadline, what :func:`run` leaves at exit); :func:`exit_if_abandoned` acts on it."""
    _abandoned.add(task)
    task.add_done_callback(_abandoned.discard)


def run(main: Coroutine[Any, Any, T], *, grace: float = EXIT_GRACE) -> T:
    """Like :func:`asyncio.run`, but returns within ``grace`` seconds of ``main`` ending even if
    tasks it leaves behind ignore cancellation."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    task = loop.create_task(main)
    interrupted = False
    previous = None
    on_main_thread = threading.current_thread() is threading.main_thread()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        if interrupted or task.done():
            raise KeyboardInterrupt  # a second Ctrl+C: stop waiting for a graceful end
        interrupted = True
        loop.call_soon_threadsafe(task.cancel)

    if on_main_thread and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        try:
            return loop.run_until_complete(task)
        except asyncio.CancelledError:
            if interrupted:
                raise KeyboardInterrupt from None
            raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        try:
            _finish(loop, grace)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _finish(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    """Cancel what is left, give it ``grace`` seconds, abandon the rest; then the usual cleanup
    (async generators, the default executor), each bounded too."""
    left = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in left:
        t.cancel()
    if left:
        _, stuck = loop.run_until_complete(asyncio.wait(left, timeout=grace))
        for t in stuck:
            log.error(
                "exiting without waiting for %s: it ignored being stopped for %.0f s",
                t.get_name(),
                grace,
            )
            # Never waited for again: its "destroyed but pending" warning would only repeat this.
            setattr(t, "_log_destroy_pending", False)  # noqa: B010 (asyncio's own flag)
            abandon(t)
        for t in left:
            if t.done() and not t.cancelled() and t.exception() is not None:
                log.error("a task failed at exit", exc_info=t.exception())
    for cleanup in (loop.shutdown_asyncgens(), loop.shutdown_default_executor()):
        try:
            loop.run_until_complete(asyncio.wait_for(cleanup, grace))
        except (TimeoutError, RuntimeError):
            log.warning("cleanup at exit did not finish within %.0f s; going on", grace)


def abandoned() -> frozenset[asyncio.Future[Any]]:
    """The tasks abandoned so far and still running (``main`` snapshots it before its command)."""
    return frozenset(t for t in _abandoned if not t.done())


def exit_if_abandoned(code: int, *, before: frozenset[asyncio.Future[Any]] = frozenset()) -> None:
    """End the process now with ``code`` if :func:`run` abandoned tasks; else return.

    Only tasks abandoned since ``before`` count: a caller that runs ``main()`` in-process (a
    test, an embedding program) must not be ended by a task some earlier, unrelated run left.

    The program's last call. Python closes every unfinished coroutine at interpreter exit; an
    updater that swallows that too (``except BaseException: pass`` around an ``await``) would
    loop there forever. Output is flushed first; nothing else is left to clean up (the loop and
    the store are closed by then).
    """
    if not any(not t.done() and t not in before for t in _abandoned):
        return
    logging.shutdown()  # what the atexit hook would do: flush and close the log handlers
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
