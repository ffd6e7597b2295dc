"""The ``trayapp`` command line: the tray by default, and a headless CLI over the same Engine.

Every command calls Engine methods (one way in per action), so the CLI, the tray and the tests
do the same thing. ``--json`` output is a stable, versioned contract documented in docs/cli.md:
fields may be added, never renamed or removed.

Errors the user can fix (unknown charm, bad settings, unusable profile) print one line on stderr
and exit 1, never a traceback. Exit codes: 0 success, 1 failure (including any charm whose
sync did not succeed), 2 command-line usage errors (argparse), 130 interrupted (Ctrl+C),
141 output closed by its reader (``| head``), 143 terminated (SIGTERM during ``sync``).

One job per module:

* :mod:`~trayapp.cli.entry`: ``main()``, logging set-up, errors turned into one line;
* :mod:`~trayapp.cli.parser`: the argument parser, assembled from each group's ``register``;
* :mod:`~trayapp.cli.args`: global options and the values users type (durations, settings);
* :mod:`~trayapp.cli.output`: exit codes, tables, relative times, ``--json`` shapes;
* :mod:`~trayapp.cli.target`: the one place that chooses between the running engine (IPC)
  and a local one;
* command groups: :mod:`~trayapp.cli.run` (tray, ``run --headless`` on
  :class:`trayapp.host.AppHost`), :mod:`~trayapp.cli.sync` (``sync``, ``status``),
  :mod:`~trayapp.cli.charms`, :mod:`~trayapp.cli.patterns`, :mod:`~trayapp.cli.accounts`,
  :mod:`~trayapp.cli.export`.
"""

from trayapp.cli.entry import main

__all__ = ["main"]
