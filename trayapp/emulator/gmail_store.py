"""Gmail mailbox model (filled in step 2)."""

from __future__ import annotations

import random

from trayapp.emulator.state import Clock


class Mailbox:
    def __init__(self, email: str, clock: Clock, rng: random.Random) -> None:
        self.email = email
        self.clock = clock
        self.rng = rng
