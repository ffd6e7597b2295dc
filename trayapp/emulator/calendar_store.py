"""Calendar model (filled in step 3)."""

from __future__ import annotations

import random

from trayapp.emulator.state import Clock


class CalendarStore:
    def __init__(self, email: str, name: str, clock: Clock, rng: random.Random) -> None:
        self.email = email
        self.name = name
        self.clock = clock
        self.rng = rng
