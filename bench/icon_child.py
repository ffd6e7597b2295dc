"""The tray up to its icon and no further, for bench/icon_start.py (CPU-side evidence).

    python bench/icon_child.py plain|profile|imports OUT -- [tray arguments | --floor]

Runs ``trayapp.ui.app.main`` with the given arguments (``--cli ARGS``: through the ``trayapp``
command line instead; ``--floor``: bench/floor_tray.py, which ends itself at its icon when
``BENCH_EXIT_AT_ICON`` is set) and ends the process (``os._exit``) the moment the app reports
``TRAYAPP_ICON_SHOWN``, so what is measured is exactly the path before the icon.
``profile``: a cProfile of the whole process up to that moment, dumped to OUT
(``python -m pstats OUT``). ``imports``: the modules imported by then, one per line, in OUT.
``plain``: nothing added (for wall-clock or ``strace -c`` runs; OUT unused).
"""

from __future__ import annotations

import os
import sys
import time

T0 = time.perf_counter()


def main() -> None:
    mode, out = sys.argv[1], sys.argv[2]
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    profiler = None
    if mode == "profile":
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()

    real_exit = os._exit

    def at_icon(code: int) -> None:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(out)
        elif mode == "imports":
            with open(out, "w", encoding="utf-8") as fh:
                fh.write("\n".join(sorted(n for n, m in sys.modules.items() if m)) + "\n")
        sys.stderr.write(f"icon after {(time.perf_counter() - T0) * 1000:.1f} ms in-process\n")
        sys.stderr.flush()
        real_exit(code)

    os._exit = at_icon  # type: ignore[assignment]
    if args == ["--floor"]:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import floor_tray

        floor_tray.main()
        real_exit(3)  # BENCH_EXIT_AT_ICON not set?

    from trayapp.ui import report

    original = report.TestReporter.__call__

    # BENCH_EXIT_AT=TRAYAPP_READY: the same up to the engine ready (menu built, charms due).
    until = os.environ.get("BENCH_EXIT_AT", "TRAYAPP_ICON_SHOWN")

    def reported(self: report.TestReporter, line: str) -> None:
        original(self, line)
        if line.startswith(until):
            os._exit(0)

    report.TestReporter.__call__ = reported  # type: ignore[method-assign]
    if args[:1] == ["--cli"]:  # the ``trayapp`` command (the desktop entry's Exec) route
        from trayapp.cli import main as cli_main

        cli_main(args[1:])
    else:
        from trayapp.ui.app import main as tray_main

        tray_main(args)
    real_exit(3)  # no icon (no panel?)


if __name__ == "__main__":
    main()
