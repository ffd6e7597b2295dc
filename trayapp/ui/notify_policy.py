"""When to notify: a pure policy, so "never nag" is tested rather than hoped for.

Notification spam is the top complaint about sync tray apps. The rules (Syncthing Tray's
defaults, which users praise):

* notify on state *changes* only: a charm starts failing, an account needs the user, a charm that
  we told the user about recovers. Never "sync complete" (an optional new-items summary exists,
  off by default);
* a quiet period (15 s) after start and after resume from sleep: problems that clear on their own
  in that window (network not up yet) are never shown; problems still there when it ends are
  shown once;
* transient failures (offline, rate limited, server error, timeout) must repeat before they are
  worth a notification; a bug or an auth problem is shown at once;
* one notification per account that needs sign-in, however many charms it parks; failures that
  happen together are merged into one notification;
* a per-charm mute that holds until the error text changes.

The policy is fed snapshots (``observe``) and returns :class:`Notice` values to deliver.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from trayapp.core.outcomes import OutcomeKind
from trayapp.core.status import RunRecord
from trayapp.ui.model import AccountState, AccountView, Snapshot, charm_failing

GRACE = timedelta(seconds=15)
TRANSIENT_THRESHOLD = 2  # consecutive failures before a transient failure is worth a notification


@dataclass(frozen=True, slots=True)
class Notice:
    key: str  # what it is about ("account:<id>", "charm:<id>", "charms:<ids>")
    kind: str  # "sign_in" | "failing" | "recovered" | "new_items"
    title: str
    body: str
    action_label: str | None = None
    action: str | None = None  # a tray command (see model.parse_command)
    urgent: bool = False


def _signature(kind: OutcomeKind | None, message: str | None) -> str:
    return f"{kind.value if kind else ''}:{(message or '').strip()}"


@dataclass
class NotificationPolicy:
    grace: timedelta = GRACE
    new_items_summary: bool = False
    errors_enabled: bool = True
    _quiet_until: datetime | None = None
    # What the user was last told, per key: a failure signature, or absent when all is well.
    _told: dict[str, str] = field(default_factory=dict)
    _muted: dict[str, str] = field(default_factory=dict)  # charm id -> muted signature

    def started(self, now: datetime) -> None:
        self._quiet_until = now + self.grace

    def resumed_from_sleep(self, now: datetime) -> None:
        self._quiet_until = now + self.grace

    def quiet_until(self) -> datetime | None:
        return self._quiet_until

    def in_quiet_period(self, now: datetime) -> bool:
        return self._quiet_until is not None and now < self._quiet_until

    def mute(self, charm_id: str, snap: Snapshot) -> None:
        """Silence this charm's current error; a different error notifies again."""
        c = next((c for c in snap.charms if c.id == charm_id), None)
        if c is not None:
            self._muted[charm_id] = _signature(c.status.last_outcome, c.status.last_error)

    def unmute(self, charm_id: str) -> None:
        self._muted.pop(charm_id, None)

    def is_muted(self, charm_id: str) -> bool:
        return charm_id in self._muted

    # -----------------------------------------------------------------------------------------

    def observe(self, snap: Snapshot) -> list[Notice]:
        """Compare the snapshot with what the user was told; return what to tell them now."""
        if self.in_quiet_period(snap.now):
            return []
        out: list[Notice] = []
        out.extend(self._accounts(snap))
        out.extend(self._charms(snap))
        return out

    def _accounts(self, snap: Snapshot) -> Iterable[Notice]:
        for a in snap.accounts:
            key = f"account:{a.id}"
            if a.needs_user:
                sig = f"{a.state.value}:{a.reason}"
                if self._told.get(key) != sig:
                    self._told[key] = sig
                    yield _account_notice(a)
            elif key in self._told and a.state is AccountState.SIGNED_IN:
                del self._told[key]
                yield Notice(
                    key, "recovered", f"{a.email} is signed in again", "Syncing has resumed."
                )

    def _charms(self, snap: Snapshot) -> Iterable[Notice]:
        accounts = {a.id: a for a in snap.accounts}
        failing_now: list[tuple[str, str, str]] = []  # (charm id, name, error line)
        recovered: list[str] = []
        for c in snap.charms:
            key = f"charm:{c.id}"
            s = c.status
            auth = s.last_outcome is OutcomeKind.AUTH_REQUIRED
            acct = accounts.get(c.account_id or "")
            if auth and acct is not None:
                # The account notice covers it: one notification per account, not per charm.
                continue
            if charm_failing(c) and not s.paused:
                sig = _signature(s.last_outcome, s.last_error)
                muted = self._muted.get(c.id)
                if muted is not None and muted != sig:
                    del self._muted[c.id]  # the error changed: the mute ends
                    muted = None
                worth = (
                    auth
                    or (s.last_outcome is not None and s.last_outcome.needs_user)
                    or s.last_outcome is OutcomeKind.BUG
                    or s.consecutive_failures >= TRANSIENT_THRESHOLD
                )
                if not worth or not self.errors_enabled:
                    continue
                if self._told.get(key) == sig:
                    continue
                self._told[key] = sig
                if muted is None:
                    line = (s.last_error or str(s.last_outcome)).strip().splitlines()
                    failing_now.append((c.id, c.name, line[0] if line else ""))
            elif key in self._told and not charm_failing(c):
                del self._told[key]
                self._muted.pop(c.id, None)
                if self.errors_enabled:
                    recovered.append(c.name)
        if len(failing_now) == 1:
            cid, name, err = failing_now[0]
            yield Notice(
                f"charm:{cid}",
                "failing",
                f"{name} stopped syncing",
                _failure_body(err),
                action_label="Show activity",
                action=f"activity:{cid}",
            )
        elif failing_now:
            names = ", ".join(n for _, n, _ in failing_now)
            errs = {e for _, _, e in failing_now}
            body = errs.pop() if len(errs) == 1 else "Several errors; open Activity for details."
            yield Notice(
                "charms:" + ",".join(cid for cid, _, _ in failing_now),
                "failing",
                f"{len(failing_now)} charms stopped syncing: {names}",
                body,
                action_label="Show activity",
                action="activity",
            )
        if recovered:
            yield Notice(
                "recovered:" + ",".join(recovered),
                "recovered",
                f"{', '.join(recovered)} {'is' if len(recovered) == 1 else 'are'} syncing again",
                "",
            )

    def observe_run(self, record: RunRecord, name: str) -> Notice | None:
        """The optional new-items summary (off by default: no "sync complete" spam)."""
        if not self.new_items_summary or record.outcome is not OutcomeKind.OK:
            return None
        if record.counts.added == 0:
            return None
        n = record.counts.added
        return Notice(
            f"new:{record.charm_id}",
            "new_items",
            f"{name}: {n} new item{'s' if n != 1 else ''}",
            "",
        )


def _failure_body(err: str) -> str:
    """The charm's error, saying once that it is retried (the button offers the details)."""
    if not err:
        return "Pattern Sync keeps retrying."
    if "retry" in err.lower():  # the engine's transient errors already say so ("will retry later")
        return err
    return (
        f"{err}. Pattern Sync keeps retrying."
        if err[-1] not in ".!?"
        else f"{err} Pattern Sync keeps retrying."
    )


def _account_notice(a: AccountView) -> Notice:
    if a.state is AccountState.CLIENT_MISCONFIGURED:
        title = f"Pattern Sync cannot sign in to {a.email}"
        label, action = "Open settings", "settings"
    elif a.state is AccountState.NEEDS_PERMISSION:
        title = f"Allow access again for {a.email}"
        label, action = "Sign in again", f"signin:{a.id}"
    else:
        title = f"Sign in again to {a.email}"
        label, action = "Sign in again", f"signin:{a.id}"
    # The title says what to do and the button does it; the body says only what happened (and a
    # lasting fix when there is one), so nothing is said twice.
    reason = a.reason or "Google no longer accepts the saved sign-in."
    body = " ".join(x for x in (reason, a.hint) if x)
    return Notice(f"account:{a.id}", "sign_in", title, body, label, action, urgent=True)


@dataclass(frozen=True, slots=True)
class RecentNotice:
    id: int
    notice: Notice
    at: datetime
    shown_by: str  # "desktop" | "tray" | "none"


class RecentNotices:
    """What was shown, or could not be shown, kept with its action for the menu and Activity."""

    def __init__(self, limit: int = 20) -> None:
        self._items: deque[RecentNotice] = deque(maxlen=limit)
        self._next = 1

    def add(self, notice: Notice, at: datetime, shown_by: str) -> RecentNotice:
        entry = RecentNotice(self._next, notice, at, shown_by)
        self._next += 1
        self._items.appendleft(entry)
        return entry

    def get(self, entry_id: int) -> RecentNotice | None:
        return next((e for e in self._items if e.id == entry_id), None)

    def items(self) -> list[RecentNotice]:
        return list(self._items)

    def clear(self) -> None:
        self._items.clear()
