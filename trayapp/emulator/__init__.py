"""A faithful local Google emulator (OAuth, Gmail v1, Calendar v3) for tests and demo mode.

See docs/emulator.md. :class:`trayapp.emulator.server.EmulatorServer` runs it (demo mode); tests
use its subclass in ``tests/emulator/harness.py``, which adds discovery conformance checks.
"""

from trayapp.emulator.app import EmulatorApp
from trayapp.emulator.control import ClientInfo, Control
from trayapp.emulator.faults import FaultRule

__all__ = ["ClientInfo", "Control", "EmulatorApp", "FaultRule"]
