"""``python -m trayapp.ui [--demo] [--profile DIR]``: the tray without going through the CLI."""

import sys

from trayapp.ui.app import main

sys.exit(main(sys.argv[1:]))
