"""``python -m trayapp.emulator``: the same as ``trayapp emulator``."""

import sys

from trayapp.emulator.cli import main

sys.exit(main())
