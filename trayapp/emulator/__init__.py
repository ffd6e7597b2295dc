"""A faithful local Google emulator (OAuth, Gmail v1, Calendar v3) for tests and demo mode.

See docs/emulator.md. Tests use :class:`trayapp.emulator.testing.EmulatorServer`.
"""

from trayapp.emulator.app import EmulatorApp
from trayapp.emulator.control import ClientInfo, Control
from trayapp.emulator.faults import FaultRule

__all__ = ["ClientInfo", "Control", "EmulatorApp", "FaultRule"]
