"""The one place a command chooses between the engine running for its profile and a local one.

A running engine (the tray or ``run --headless``) holds the charms' schedule and runs in memory,
so anything that changes live state (sync, pause, resume, remove, an account change) goes to it
over the control socket; without one, a local :class:`~trayapp.core.engine.Engine` makes the
same change in the store. Reads (status, lists, export) use the store directly: SQLite's WAL
lets them read beside a running engine.

The choice is made with the profile's engine lock (:meth:`Profile.lock_engine`), not only the
socket: when no engine answers, a local engine that runs or changes schedules takes the lock
first, so it can never run beside an engine that is starting or one whose socket cannot be
reached; then the command says which process holds the profile instead.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from trayapp import DISPLAY_NAME, ipc
from trayapp.cli.output import note, result_json
from trayapp.core.errors import ConfigError, TrayappError
from trayapp.core.profile import Profile, ProfileBusy
from trayapp.host import ENGINE_ROLES

if TYPE_CHECKING:
    from trayapp.core.engine import Engine
    from trayapp.core.outcomes import RunOutcome

SYNC_WAIT_S = 3600.0  # how long `trayapp sync` waits on a running instance before giving up
PING_S = 2.0
STARTING_WAIT_S = 10.0  # an engine holding the lock gets this long to open its socket


class Target:
    """This command's profile: the running engine (:meth:`send`) or a local one (:meth:`engine`).

    Use as a context manager; the local engine, if one was opened, is closed at the end.
    """

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._engine: Engine | None = None
        self._running: bool | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Target:
        """The profile named by ``--profile`` (or $TRAYAPP_PROFILE, or the default one)."""
        return cls(Profile.resolve(getattr(args, "profile", None)))

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    # ------------------------------------------------------------------------------- local

    def engine(self) -> Engine:
        """A local engine on the profile's store (not started): reads and store edits."""
        if self._engine is None:
            self._engine = open_engine(self.profile)
        return self._engine

    @contextlib.contextmanager
    def local(self, role: str) -> Iterator[Engine]:
        """The local engine with the profile's engine lock held (no engine runs meanwhile).

        Raises a :class:`ConfigError` naming the holder if another process has it.
        """
        try:
            lock = self.profile.lock_engine(role)
        except ProfileBusy as busy:
            raise ConfigError(self._busy_message(busy)) from None
        try:
            yield self.engine()
        finally:
            lock.release()

    # ----------------------------------------------------------------------------- running

    def running(self) -> bool:
        """True when an engine serves this profile and answers; waits for one that is starting.

        An engine holding the profile lock that does not answer within a few seconds (its
        socket folder refused, or it hangs) is reported as a :class:`ConfigError`.
        """
        if self._running is None:
            self._running = self._find_running()
        return self._running

    def _find_running(self) -> bool:
        if _ping(self.profile):
            return True
        deadline = time.monotonic() + STARTING_WAIT_S
        while True:
            holder = self.profile.engine_holder()
            if holder is None or holder[1] not in ENGINE_ROLES:
                return False  # free, or a one-shot command: local() will say who holds it
            if _ping(self.profile):
                return True
            if time.monotonic() >= deadline:
                pid, role = holder
                problem = ipc.socket_problem()
                raise ConfigError(
                    f"the {DISPLAY_NAME} {role} (pid {pid}) runs on this profile but does not "
                    "answer on its control socket"
                    + (f" ({problem})" if problem else "")
                    + "; stop it and start it again"
                )
            time.sleep(0.2)

    def send(self, command: dict[str, Any], timeout: float = 10.0) -> dict[str, Any] | None:
        """Send to the running engine; None when none runs."""
        if not self.running():
            return None
        return ipc.try_send(self.profile.path, command, timeout=timeout)

    def change(self, command: dict[str, Any], here: Callable[[Engine], None]) -> bool:
        """Give ``command`` to the running engine, else apply ``here`` to a locked local engine.

        Returns False (after printing one line) if the running engine refused.
        """
        if not self.running():
            with self.local("trayapp command") as engine:
                here(engine)
            return True
        reply = ipc.try_send(self.profile.path, command, timeout=10.0)
        if reply is not None and reply.get("ok"):
            return True
        from trayapp.cli.output import fail

        error = reply.get("error") if reply is not None else "it did not answer"
        fail(
            f"{DISPLAY_NAME} is running for this profile and did not accept the {command['cmd']} "
            f"({error}); use its tray menu, or stop it first"
        )
        return False

    def notify(self, command: dict[str, Any], what: str) -> None:
        """Tell a running engine about a change made in the store (``reload``, an account)."""
        try:
            if not self.running():
                return
        except TrayappError:
            return  # nothing answers; it reads the store when it restarts
        reply = ipc.try_send(self.profile.path, command, timeout=10.0)
        if reply is not None and not reply.get("ok"):
            note(
                f"the running {DISPLAY_NAME} did not pick up the {what} "
                f"({reply.get('error')}); restart it to apply it"
            )

    def sync_running(self, charms: list[str]) -> list[dict[str, Any]]:
        """``trayapp sync`` through the running engine; results as ``sync --json`` prints."""
        reply = ipc.send_sync(self.profile.path, charms or None, wait=True, timeout=SYNC_WAIT_S)
        if reply is None:
            raise ConfigError(f"the running {DISPLAY_NAME} did not answer the sync request")
        if not reply.get("ok"):
            error = str(reply.get("error", "unknown error"))
            raise ConfigError(re.sub(r"^\w+Error: ", "", error))
        return [
            result_json(cid, outcome_from_reply(o))
            for cid, o in (reply.get("outcomes") or {}).items()
        ]

    def _busy_message(self, busy: ProfileBusy) -> str:
        who = f"{busy.role} (pid {busy.pid})" if busy.pid else busy.role
        if busy.role in ENGINE_ROLES:
            return (
                f"the {DISPLAY_NAME} {who} runs on this profile but cannot be reached; "
                "stop it and start it again"
            )
        return (
            f"another {who} is using the profile {self.profile.path} right now; wait for it "
            "to finish and try again"
        )


def open_engine(profile: Profile) -> Engine:
    from trayapp.builtins import default_registry
    from trayapp.core.engine import Engine
    from trayapp.host import StderrUpgradeProgress

    # An older store is upgraded first, its progress on stderr (seconds on a large profile).
    profile.upgrade_store(StderrUpgradeProgress())
    return Engine(profile, patterns=default_registry(profile=profile.path))


def _ping(profile: Profile) -> bool:
    reply = ipc.try_send(profile.path, {"cmd": "ping"}, timeout=PING_S)
    return bool(reply and reply.get("ok"))


def outcome_from_reply(o: Mapping[str, Any]) -> RunOutcome:
    """A RunOutcome from the IPC sync reply, so both sync paths print the same JSON."""
    from trayapp.core.outcomes import OutcomeKind, RunOutcome

    try:
        return RunOutcome.from_json(o)
    except ValueError:
        return RunOutcome(OutcomeKind.BUG, message=f"unexpected reply from the app: {o!r}")


__all__ = ["Target", "open_engine", "outcome_from_reply"]
