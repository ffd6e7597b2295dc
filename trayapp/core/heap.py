"""The cyclic garbage collector in the app's long-running process (issue 17.5).

CPython's full (generation 2) collection walks every container object the process holds, and
it holds the GIL while it does, so it stops the event loop thread too, whichever thread
triggered it. During a Gmail full sync of 5,000 messages the collector ran 7-8 full
collections over the ~60,000 objects of the engine's process, 20-30 ms each on a quiet machine
and 60-140 ms on a loaded one (``bench/stalls.py --why``: ``gc.callbacks`` timed every
collection; the beats over 50 ms that had no SQLite or parse on the loop thread's stack were
exactly those collections). Nearly all of those objects are the start-up heap: modules,
classes, functions, pydantic schemas, the engine's own tables. They live as long as the
process, so walking them again and again finds nothing.

:func:`gc.freeze` moves every object tracked at that moment into a permanent generation that
collections never walk; objects freed by reference counting are still freed at once, frozen
or not. The catch: a cycle of frozen objects that becomes garbage later is never collected.
So the app freezes only at quiet moments, after a full collection (nothing unreachable is
frozen), when no run is in progress (no run's short-lived objects are frozen):

* once when the engine has started (:meth:`HeapKeeper.start`, called by ``AppHost.start``);
* again after a run, once no run is in progress, when the process imported at least
  :data:`GROWN_MODULES` modules since the last freeze (a pattern's library stack imported by
  its first run, a window's Qt module): the next large one-off addition to the long-lived
  heap. A handful of times in a process's life; never on a timer (zero idle wake-ups).

The generation thresholds stay Python's own: the young collections (generations 0 and 1)
took 0.1-2 ms each in the same measurements, and raising the thresholds would only make each
of them longer. Memory: the collection before each freeze frees what a later full collection
would have; ``bench/tray.py --soak`` shows the tray's RSS flat over 24 simulated hours.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from typing import TYPE_CHECKING

from trayapp.core.events import EngineEvent, RunFinished

if TYPE_CHECKING:
    from collections.abc import Callable

    from trayapp.core.engine import Engine

log = logging.getLogger(__name__)

#: Modules imported since the last freeze that make the next quiet moment freeze again.
GROWN_MODULES = 20


class HeapKeeper:
    """Freezes the long-lived heap of an engine's process at quiet moments (module docstring).

    Use on the loop thread: ``keeper = HeapKeeper(engine); keeper.start()`` once the engine
    has started; ``keeper.stop()`` before it stops.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._modules = 0  # len(sys.modules) at the last freeze
        self._check: asyncio.Handle | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.freezes = 0  # freezes done so far (tests count them)

    def start(self) -> None:
        """Freeze the start-up heap now and watch for runs that grow it."""
        if self._unsubscribe is not None:
            return
        self.freeze()
        self._unsubscribe = self._engine.subscribe(self._on_event)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._check is not None:
            self._check.cancel()
            self._check = None

    def freeze(self) -> None:
        """Collect, then freeze everything that is left (it is all reachable)."""
        started = time.perf_counter()
        unreachable = gc.collect()
        gc.freeze()
        self._modules = len(sys.modules)
        self.freezes += 1
        log.debug(
            "heap frozen (%d objects in all, %d unreachable freed first) in %.1f ms",
            gc.get_freeze_count(),
            unreachable,
            (time.perf_counter() - started) * 1000,
        )

    def _on_event(self, event: EngineEvent) -> None:
        # Checked at the next turn of the loop (the run's slot is released by then), not on a
        # timer: no extra wake-up.
        if isinstance(event, RunFinished) and self._check is None:
            self._check = asyncio.get_running_loop().call_soon(self._after_run)

    def _after_run(self) -> None:
        self._check = None
        if self._engine.runs_in_progress() > 0:
            return  # the last of them to finish checks again
        if len(sys.modules) - self._modules >= GROWN_MODULES:
            self.freeze()
