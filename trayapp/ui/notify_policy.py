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

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from trayapp.core.outcomes import OutcomeKind
from trayapp.core.status import RunRecord
from trayapp.ui.i18n import tr
from trayapp.ui.model import AccountState, AccountView, IconState, Snapshot, charm_failing

GRACE = timedelta(seconds=15)
TRANSIENT_THRESHOLD = 2  # consecutive failures before a transient failure is worth a notification


@dataclass(frozen=True, slots=True)
class Notice:
    # What it is about ("account:<id>", "charm:<id>", "charms:<ids>"). A notice replaces the
    # one shown before under its key: the notifier closes that one first, so an account's
    # recovery notice takes its urgent "Sign in again"/"Allow…" notification off the screen.
    key: str
    kind: str  # "sign_in" | "failing" | "recovered" | "new_items"
    title: str
    body: str
    action_label: str | None = None
    action: str | None = None  # a tray command (see model.parse_command)
    urgent: bool = False
    icon: str = ""  # an IconState value: the notification's icon says the severity


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
    # Accounts the user was asked for a permission: key -> what was asked, in words.
    _asked: dict[str, str] = field(default_factory=dict)
    # Problems the user was told about: problem key -> {charm id: name} of the charms in it.
    _problems: dict[str, dict[str, str]] = field(default_factory=dict)

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
                    if a.state is AccountState.NEEDS_PERMISSION:
                        self._asked[key] = a.permission_words
                    else:
                        self._asked.pop(key, None)
                    yield _account_notice(a)
            elif key in self._told and a.state is AccountState.SIGNED_IN:
                del self._told[key]
                asked = self._asked.pop(key, None)
                if asked is not None:  # a permission was granted: it was never a sign-in
                    yield Notice(
                        key,
                        "recovered",
                        tr("Pattern Sync can now {what} for {email}").format(
                            what=asked, email=a.email
                        )
                        if asked
                        else tr("{email} gave Pattern Sync the access it asked for").format(
                            email=a.email
                        ),
                        tr("The charms that waited for it sync now."),
                        icon=IconState.OK.value,
                    )
                    continue
                yield Notice(
                    key,
                    "recovered",
                    tr("{email} is signed in again").format(email=a.display),
                    tr("Syncing has resumed."),
                    icon=IconState.OK.value,
                )

    def _charms(self, snap: Snapshot) -> Iterable[Notice]:
        """One notification per *problem*, one recovery notice when all its charms recovered.

        A problem is a cause on an account (charms without an account share the scope "-"):
        Google unreachable for ada@ is one problem however many of her charms it stops, and
        charms that fail later for the same cause join it silently. A bug is a problem of its
        own charm. Failures of several new problems seen at the same moment are merged into one
        notification.
        """
        accounts = {a.id: a for a in snap.accounts}
        failing_now: dict[str, list[tuple[str, str, str]]] = {}  # problem -> (id, name, line)
        still_failing: set[str] = set()  # charm ids failing in any way (recovery needs none)
        for c in snap.charms:
            s = c.status
            auth = s.last_outcome is OutcomeKind.AUTH_REQUIRED
            if charm_failing(c):
                still_failing.add(c.id)
            if auth and accounts.get(c.account_id or "") is not None:
                # The account notice covers it: one notification per account, not per charm.
                continue
            if not charm_failing(c) or s.paused:
                continue
            sig = _signature(s.last_outcome, s.last_error)
            muted = self._muted.get(c.id)
            if muted is not None and muted != sig:
                del self._muted[c.id]  # the error changed: the mute ends
                muted = None
            if muted is not None or not self.errors_enabled:
                continue
            worth = (
                auth
                or (s.last_outcome is not None and s.last_outcome.needs_user)
                or s.last_outcome in (OutcomeKind.BUG, OutcomeKind.FROZE)
                or s.consecutive_failures >= TRANSIENT_THRESHOLD
            )
            key = _problem_key(c.id, c.account_id, s.last_outcome, sig)
            if not worth and key not in self._problems:
                continue
            line = (s.last_error or str(s.last_outcome)).strip().splitlines()
            # Already in the GUI's words (make_snapshot: wording.detail_for_gui).
            failing_now.setdefault(key, []).append((c.id, c.name, line[0] if line else ""))

        # Recovery: a problem the user was told about whose charms all work again.
        for key, told_members in list(self._problems.items()):
            if key in failing_now:
                continue
            del self._problems[key]
            recovered = [n for cid, n in told_members.items() if cid not in still_failing]
            for cid in told_members:
                self._muted.pop(cid, None)
            if (
                recovered
                and not any(cid in still_failing for cid in told_members)
                and self.errors_enabled
            ):
                yield Notice(
                    "recovered:" + key,
                    "recovered",
                    (
                        tr("{names} is syncing again")
                        if len(recovered) == 1
                        else tr("{names} are syncing again")
                    ).format(names=_names(recovered)),
                    "",
                    icon=IconState.OK.value,
                )

        new: list[tuple[str, list[tuple[str, str, str]]]] = []
        for key, members in failing_now.items():
            told = self._problems.get(key)
            if told is not None:
                for cid, name, _ in members:  # joins silently: the same problem
                    told.setdefault(cid, name)
                continue
            self._problems[key] = {cid: name for cid, name, _ in members}
            new.append((key, members))
        if not new:
            return
        everyone = [m for _, ms in new for m in ms]
        kinds = {k.split("|")[1] for k, _ in new}
        icon = IconState.OFFLINE if kinds <= {"unreachable"} else IconState.ERROR
        errs = list(dict.fromkeys(e for _, _, e in everyone))
        if len(everyone) == 1:
            cid, name, err = everyone[0]
            yield Notice(
                f"charm:{cid}",
                "failing",
                tr("{name} stopped syncing").format(name=name),
                _failure_body(err),
                action_label=tr("Show activity"),
                action=f"activity:{cid}",
                icon=icon.value,
            )
            return
        names = ", ".join(n for _, n, _ in everyone)
        body = _failure_body(errs[0]) if len(errs) == 1 else tr("Several errors; open Activity.")
        yield Notice(
            "problem:" + ",".join(k for k, _ in new),
            "failing",
            tr("{n} charms stopped syncing: {names}").format(n=len(everyone), names=names),
            body,
            action_label=tr("Show activity"),
            action="activity",
            icon=icon.value,
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


_TRANSIENT_CAUSE = {
    OutcomeKind.OFFLINE: "unreachable",
    OutcomeKind.TIMEOUT: "unreachable",
    OutcomeKind.SERVER_ERROR: "server_error",
    OutcomeKind.RATE_LIMITED: "rate_limited",
}
_RETRY_WORDS = re.compile(r"\bretr(y|ies|ied|ying)\b|\bkeeps? trying\b|\btry again\b", re.I)


def _problem_key(charm_id: str, account_id: str | None, kind: OutcomeKind | None, sig: str) -> str:
    """``scope|cause``: a transient cause is shared by its scope's charms; others are per charm."""
    cause = _TRANSIENT_CAUSE.get(kind) if kind is not None else None
    if cause is None:
        return f"charm:{charm_id}|{sig}"
    return f"{account_id or '-'}|{cause}"


def _names(names: list[str]) -> str:
    if len(names) <= 2:
        return tr(" and ").join(names)
    return ", ".join(names[:-1]) + tr(" and ") + names[-1]


def _failure_body(err: str) -> str:
    """The charm's error, saying once that it is retried (the button offers the details)."""
    if not err:
        return tr("Pattern Sync keeps retrying.")
    if _RETRY_WORDS.search(err):  # the error already says so ("will retry later", "retried")
        return err
    return f"{err}{'' if err[-1] in '.!?' else '.'} {tr('Pattern Sync keeps retrying.')}"


def _account_notice(a: AccountView) -> Notice:
    if a.state is AccountState.CLIENT_MISCONFIGURED:
        title = tr("Pattern Sync cannot sign in to {email}").format(email=a.email)
        label, action = tr("Open settings"), "settings"
    elif a.state is AccountState.NEEDS_PERMISSION:
        # auth's "Allow Pattern Sync to read Gmail for x@example.com": says what is asked.
        title = a.permission_prompt or tr("Allow access again for {email}").format(email=a.email)
        label, action = tr("Allow…"), f"signin:{a.id}"
    elif not a.is_google:
        # Another service (a plugin's): "Sign in again to GitHub (work)"; for a token account
        # the button opens the small "new token" dialog.
        title = tr("Sign in again to {service} ({account})").format(
            service=a.service_title, account=a.email
        )
        label = tr("Enter new token") if a.token else tr("Sign in again")
        action = f"signin:{a.id}"
    else:
        title = tr("Sign in again to {email}").format(email=a.email)
        label, action = tr("Sign in again"), f"signin:{a.id}"
    # The title says what to do and the button does it; the body says only what happened (and a
    # lasting fix when there is one), so nothing is said twice.
    reason = a.reason or tr("{service} no longer accepts the saved sign-in.").format(
        service=a.service_title or "Google"
    )
    body = " ".join(x for x in (reason, a.hint) if x)
    return Notice(
        f"account:{a.id}",
        "sign_in",
        title,
        body,
        label,
        action,
        urgent=True,
        icon=IconState.ATTENTION.value,
    )


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
