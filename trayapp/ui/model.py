"""The tray's view of the engine: a snapshot, and pure functions from it to icon, summary and menu.

Nothing here imports Qt, so the whole "what does the user see" logic is unit-tested without a
display, and the Qt layer (``menu.py``, ``tray.py``) only copies these descriptions onto widgets.
Keys in :class:`MenuItem` are stable across snapshots: the Qt layer updates the action with the
same key in place and only adds or removes actions when charms or accounts come and go (some
Linux tray hosts break menus that are rebuilt while they are shown).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Protocol

from trayapp.auth.models import AccountState as AccountState  # the one enum, re-exported
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.status import CharmState, CharmStatus
from trayapp.ui.i18n import generation, tr
from trayapp.ui.iconstate import IconState as IconState  # re-exported (moved for start-up)
from trayapp.ui.wording import detail_for_gui, server_wait

# ---------------------------------------------------------------------------------------------
# Accounts: the one AccountState (trayapp.auth's) and the small view of an account the menu shows.


@dataclass(frozen=True, slots=True)
class AccountView:
    """What the tray shows about one account; adapters build it from ``trayapp.auth``."""

    id: str
    email: str
    state: AccountState = AccountState.SIGNED_IN
    reason: str = ""  # one sentence: what happened, with the likely cause when known
    hint: str = ""  # a lasting fix beyond "Sign in again", when there is one ("Publish the client")
    signing_in: bool = False  # a browser sign-in is waiting for the user
    # needs_permission only: "Allow Pattern Sync to read Gmail for x@example.com" (auth's words)
    permission_prompt: str = ""
    # needs_permission only: what is asked, in words ("read Google Calendar")
    permission_words: str = ""
    # Another service's account (a plugin's ApiToken / OAuth2Provider): its name for the user
    # ("GitHub"), and whether re-auth means typing a new token (True) or a browser sign-in.
    service_title: str = ""
    token: bool = False
    service: str = "google"

    @property
    def is_google(self) -> bool:
        return not self.service_title

    @property
    def sign_in_text(self) -> str:
        """The re-auth entry: "Sign in again as x@example.com…" / "Sign in again to GitHub
        (work)…" (a token account's opens the small "new token" dialog)."""
        if self.is_google:
            return tr("Sign in again as {email}…").format(email=self.email)
        return tr("Sign in again to {service} ({account})…").format(
            service=self.service_title, account=self.email
        )

    @property
    def display(self) -> str:
        """The account as the Accounts section lists it: "x@example.com" / "work (GitHub)"."""
        return self.email if self.is_google else f"{self.email} ({self.service_title})"

    @property
    def needs_user(self) -> bool:
        """States only the user can fix; a locked keychain is not one of them (it is retried)."""
        return self.state in (
            AccountState.NEEDS_SIGN_IN,
            AccountState.NEEDS_PERMISSION,
            AccountState.CLIENT_MISCONFIGURED,
        )


class CharmLike(Protocol):
    """The fields of ``trayapp.core.charms.CharmInfo`` the tray reads."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def pattern_id(self) -> str: ...
    @property
    def account_id(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class CharmView:
    id: str
    name: str
    pattern_id: str
    account_id: str | None
    status: CharmStatus


@dataclass(frozen=True, slots=True)
class LoopBlock:
    charm_id: str | None
    seconds: float
    at: datetime


@dataclass(frozen=True, slots=True)
class RecentEntry:
    """One entry of "Recent notifications" as the menu shows it."""

    id: int
    title: str
    at: datetime
    shown: bool  # False: the desktop had no notification service, kept here instead
    action_label: str | None = None


@dataclass(frozen=True, slots=True)
class SyncBatch:
    """The runs of one "sync" the user sees as one: a click, or runs that overlap.

    ``done`` of ``total`` charms have finished; the tray keeps showing "syncing" until all have
    (and at least briefly after a click, so a fast sync is still seen to happen).
    """

    done: int
    total: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    now: datetime
    charms: tuple[CharmView, ...] = ()
    accounts: tuple[AccountView, ...] = ()
    loop_block: LoopBlock | None = None
    recent: tuple[RecentEntry, ...] = ()
    batch: SyncBatch | None = None  # a sync the tray is showing (None: none)

    def account(self, account_id: str | None) -> AccountView | None:
        return next((a for a in self.accounts if a.id == account_id), None)


#: What :func:`make_snapshot` may keep between snapshots: per charm id, the charm and status it
#: was given (compared by identity) and the view it made of them.
ViewCache = dict[str, tuple[CharmLike, CharmStatus, CharmView]]


def _shown(status: CharmStatus) -> CharmStatus:
    # The engine's words are for every front end (CLI hints, errno); the GUI's are not.
    if not status.last_error:
        return status
    return status.with_(last_error=detail_for_gui(status.last_error))


def make_snapshot(
    now: datetime,
    charms: Sequence[CharmLike],
    statuses: Mapping[str, CharmStatus],
    accounts: Sequence[AccountView] = (),
    loop_block: LoopBlock | None = None,
    recent: Sequence[RecentEntry] = (),
    batch: SyncBatch | None = None,
    *,
    views: ViewCache | None = None,
) -> Snapshot:
    """The snapshot of these facts. ``views``: a cache kept by the caller between snapshots;
    a charm whose definition and status are the very objects of last time keeps its view (the
    engine replaces a status object when it changes, so identity is enough)."""
    out: list[CharmView] = []
    for c in charms:
        status = statuses.get(c.id) or CharmStatus(c.id)
        if views is not None:
            hit = views.get(c.id)
            if hit is not None and hit[0] is c and hit[1] is status:
                out.append(hit[2])
                continue
        view = CharmView(c.id, c.name, c.pattern_id, c.account_id, _shown(status))
        if views is not None:
            views[c.id] = (c, status, view)
        out.append(view)
    if views is not None and len(views) > len(out):
        keep = {v.id for v in out}
        for cid in [cid for cid in views if cid not in keep]:
            del views[cid]
    return Snapshot(now, tuple(out), tuple(accounts), loop_block, tuple(recent), batch)


# ---------------------------------------------------------------------------------------------
# Relative times


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def relative_past(when: datetime | None, now: datetime) -> str:
    if when is None:
        return tr("never")
    secs = (now - when).total_seconds()
    if secs < 45:
        return tr("just now")
    mins = round(secs / 60)
    if mins < 60:
        return tr("{n} min ago").format(n=mins)
    hours = round(secs / 3600)
    if hours < 24:
        return (tr("1 hour ago") if hours == 1 else tr("{n} hours ago")).format(n=hours)
    days = round(secs / 86400)
    return tr("yesterday") if days == 1 else tr("{n} days ago").format(n=days)


def relative_future(when: datetime | None, now: datetime) -> str:
    if when is None:
        return tr("not scheduled")
    secs = (when - now).total_seconds()
    if secs <= 5:
        return tr("now")
    if secs < 60:
        return tr("in {n} s").format(n=int(secs))
    mins = round(secs / 60)
    if mins < 60:
        return tr("in {n} min").format(n=mins)
    local = when.astimezone()
    if secs < 86400 and local.date() == now.astimezone().date():
        return tr("at {time}").format(time=f"{local:%H:%M}")
    return f"{local:%a %H:%M}"


def past_text_until(when: datetime | None, now: datetime) -> datetime | None:
    """Until when :func:`relative_past` keeps its text for ``when`` (from ``now`` on): the
    next rounding boundary. None: never changes. Never later than the real change (it may be
    earlier at an exact boundary; the caller then just compares the text again)."""
    if when is None:
        return None
    secs = (now - when).total_seconds()
    if secs < 45:
        return when + timedelta(seconds=45)
    mins = round(secs / 60)
    if mins < 60:
        return when + timedelta(seconds=(mins + 0.5) * 60)
    hours = round(secs / 3600)
    if hours < 24:
        return when + timedelta(seconds=(hours + 0.5) * 3600)
    return when + timedelta(days=round(secs / 86400) + 0.5)


def future_text_until(when: datetime | None, now: datetime, day_ends: datetime) -> datetime | None:
    """Until when :func:`relative_future` keeps its text for ``when`` (see
    :func:`past_text_until`). ``day_ends``: no later than the next local midnight after
    ``now`` ("at 18:00" becomes "Tue 18:00" when the day changes)."""
    if when is None:
        return None
    secs = (when - now).total_seconds()
    if secs <= 5:
        return None  # "now" from here on
    if secs < 60:
        return when - timedelta(seconds=int(secs))
    mins = round(secs / 60)
    if mins < 60:
        return when - timedelta(seconds=max(60.0, (mins - 0.5) * 60))
    until = min(when - timedelta(seconds=3570), day_ends)  # 3570 s: round(secs / 60) < 60
    if secs >= 86400:
        until = min(until, when - timedelta(seconds=86400))
    return until


def _earliest(*times: datetime | None) -> datetime | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


def tomorrow_morning(now: datetime, hour: int = 8) -> datetime:
    """ "Until tomorrow" means tomorrow at 08:00 local time, the usual meaning in peers."""
    local = now.astimezone()
    nxt = (local + timedelta(days=1)).replace(hour=hour, minute=0, second=0, microsecond=0)
    return nxt


# ---------------------------------------------------------------------------------------------
# Overall state: icon and one-line summary


_TRANSIENT = (OutcomeKind.OFFLINE,)


def charm_failing(c: CharmView) -> bool:
    s = c.status
    return s.consecutive_failures > 0 and s.last_outcome is not None and s.last_outcome.is_failure


def charm_waiting(c: CharmView) -> bool:
    """The server rate-limited it and it waits to try again (the server's Retry-After, else
    its backoff): a wait, not a failure, so no error icon or badge. Notifications still treat
    it as a failure that must persist before they speak (notify_policy)."""
    s = c.status
    return charm_failing(c) and not s.paused and s.last_outcome is OutcomeKind.RATE_LIMITED


def waiting_detail(c: CharmView, now: datetime) -> str:
    """ "waiting: the server asked to wait until 14:05" for a :func:`charm_waiting` charm."""
    return tr("waiting: {why}").format(why=server_wait(c.status.retry_after, now))


def charm_needs_sign_in(c: CharmView, snap: Snapshot) -> bool:
    acct = snap.account(c.account_id)
    if acct is not None and acct.needs_user and acct.state is not AccountState.NEEDS_PERMISSION:
        return True
    # needs_permission: only the charms waiting for the missing permission (parked) need the
    # user; the account's other charms keep syncing.
    s = c.status
    if s.parked_frozen:
        return False  # parked because it froze the app: the user resumes it (charm_needs_fix)
    return s.state is CharmState.PARKED or (
        charm_failing(c) and s.last_outcome is OutcomeKind.AUTH_REQUIRED
    )


def charm_needs_fix(c: CharmView) -> bool:
    """Failing for a reason only the user can fix (not sign-in): its settings, a full disk,
    or it froze the app too often and waits for Resume."""
    s = c.status
    if s.parked_frozen and not s.paused:
        return True
    return (
        charm_failing(c)
        and not s.paused
        and s.last_outcome is not None
        and s.last_outcome.needs_user
        and s.last_outcome is not OutcomeKind.AUTH_REQUIRED
    )


_FIX_DETAIL = {
    OutcomeKind.CONFIG_ERROR: "check its settings",
    OutcomeKind.STORAGE: "disk full",
    OutcomeKind.FROZE: "stopped: it froze the app",
}


# One refresh asks for the icon state and the summary of the same snapshot three and two times
# (icon, tooltip, menu header); each is a pass over every charm. Kept for the last snapshot.
_last_icon: tuple[Snapshot, IconState] | None = None
_last_summary: tuple[Snapshot, int, str] | None = None


def icon_state(snap: Snapshot) -> IconState:
    """Priority: what the user must act on first, then what is happening, then health.

    Attention beats syncing so a click-to-sync never hides a dead token; syncing beats error so
    a retry shows it is being worked on.
    """
    global _last_icon
    last = _last_icon
    if last is not None and last[0] is snap:
        return last[1]
    state = _icon_state(snap)
    _last_icon = (snap, state)
    return state


def _icon_state(snap: Snapshot) -> IconState:
    if any(a.needs_user for a in snap.accounts) or any(
        charm_needs_sign_in(c, snap) or charm_needs_fix(c) for c in snap.charms
    ):
        return IconState.ATTENTION
    if snap.batch is not None or any(c.status.state is CharmState.RUNNING for c in snap.charms):
        return IconState.SYNCING
    failing = [
        c for c in snap.charms if charm_failing(c) and not c.status.paused and not charm_waiting(c)
    ]
    if failing:
        if all(c.status.last_outcome in _TRANSIENT for c in failing):
            return IconState.OFFLINE
        return IconState.ERROR
    if snap.charms and all(c.status.paused for c in snap.charms):
        return IconState.PAUSED
    return IconState.OK


def _names(items: Sequence[str]) -> str:
    if len(items) <= 2:
        return tr(" and ").join(items)
    return tr("{first} and {n} others").format(first=items[0], n=len(items) - 1)


def summary(snap: Snapshot) -> str:
    """The header line and tooltip: answers "is everything syncing?" in one line."""
    global _last_summary
    last = _last_summary
    gen = generation()
    if last is not None and last[0] is snap and last[1] == gen:
        return last[2]
    text = _summary(snap)
    _last_summary = (snap, gen, text)
    return text


def _summary(snap: Snapshot) -> str:
    state = icon_state(snap)
    if not snap.charms and not snap.accounts:
        return tr("No charms yet: add one in Settings")
    if state is IconState.ATTENTION:
        who = [a.display for a in snap.accounts if a.needs_user]
        if not who:
            who = [c.name for c in snap.charms if charm_needs_sign_in(c, snap)]
        asking = [a for a in snap.accounts if a.needs_user]
        if asking and all(a.state is AccountState.NEEDS_PERMISSION for a in asking):
            text = (
                tr("{who} needs your permission")
                if len(who) == 1
                else tr("{who} need your permission")
            )
            return text.format(who=_names(who))
        if who:
            text = (
                tr("{who} needs you to sign in")
                if len(who) == 1
                else tr("{who} need you to sign in")
            )
            return text.format(who=_names(who))
        fix = [c for c in snap.charms if charm_needs_fix(c)]
        if len(fix) == 1:
            err = fix[0].status.last_error or "check its settings"
            return tr("{name} needs your attention: {error}").format(
                name=fix[0].name, error=_first_line(err, 48)
            )
        return tr("{names} need your attention").format(names=_names([c.name for c in fix]))
    if state is IconState.SYNCING:
        batch = snap.batch
        if batch is not None and batch.total > 1:
            return tr("Syncing {n} of {total}…").format(
                n=min(batch.total, batch.done + 1), total=batch.total
            )
        running = [c.name for c in snap.charms if c.status.state is CharmState.RUNNING]
        return tr("Syncing {names}…").format(names=_names(running)) if running else tr("Syncing…")
    if state is IconState.OFFLINE:
        return tr("Offline: will retry automatically")
    if state is IconState.ERROR:
        failing = [
            c
            for c in snap.charms
            if charm_failing(c) and not c.status.paused and not charm_waiting(c)
        ]
        if len(failing) == 1:
            err = failing[0].status.last_error or failing[0].status.last_outcome or "failed"
            return tr("{name} is failing: {error}").format(
                name=failing[0].name, error=_first_line(str(err), 56)
            )
        return tr("{names} are failing").format(names=_names([c.name for c in failing]))
    if state is IconState.PAUSED:
        untils = [c.status.paused_until for c in snap.charms]
        if all(u is not None for u in untils):
            return tr("Paused, resumes {when}").format(
                when=relative_future(max(u for u in untils if u), snap.now)
            )
        return tr("Paused until you resume")
    active = [c for c in snap.charms if not c.status.paused]
    if not active:
        return tr("No charms yet: add one in Settings")
    successes = [c.status.last_success_at for c in active]
    if any(s is None for s in successes):
        return tr("Waiting for the first sync")
    oldest = min(s for s in successes if s is not None)
    text = tr("All synced {when}").format(when=relative_past(oldest, snap.now))
    if len(active) < len(snap.charms):
        text += " " + tr("({n} paused)").format(n=len(snap.charms) - len(active))
    waiting = [c for c in active if charm_waiting(c)]
    if len(waiting) == 1:
        text += " · " + tr("{name} is waiting: {why}").format(
            name=waiting[0].name, why=server_wait(waiting[0].status.retry_after, snap.now)
        )
    elif waiting:
        text += " · " + tr("{n} waiting for their servers").format(n=len(waiting))
    return text


def progress_text(c: CharmView) -> str:
    """ "1,200 of 5,000 messages" (or "1,200 messages" while the total is unknown); "" if none."""
    p = c.status.progress
    if p is None or c.status.state is not CharmState.RUNNING:
        return ""
    if p.total is None:
        return tr("{done} {unit}").format(done=f"{p.done:,}", unit=p.unit)
    return tr("{done} of {total} {unit}").format(
        done=f"{min(p.done, p.total):,}", total=f"{p.total:,}", unit=p.unit
    )


def tooltip(snap: Snapshot) -> str:
    """The tray tooltip: the summary, then one line per charm that reports its progress."""
    lines = [summary(snap)]
    lines += [f"{c.name}: {t}" for c in snap.charms if (t := progress_text(c))]
    return "\n".join(lines)


def _first_line(text: str, limit: int = 80) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Menu description


@dataclass(frozen=True, slots=True)
class MenuItem:
    """One menu entry. ``key`` identifies it across updates; ``command`` is what a click does.

    Commands are small strings (``"sync:<charm id>"``) parsed by :func:`parse_command`, so the
    description stays plain data that tests compare directly.
    """

    key: str
    text: str = ""
    command: str | None = None
    enabled: bool = True
    visible: bool = True
    checkable: bool = False
    checked: bool = False
    separator: bool = False
    bold: bool = False
    tooltip: str = ""
    children: tuple[MenuItem, ...] | None = None  # not None: a submenu
    icon: str = ""  # an IconState value: the entry shows that state's drawn icon

    def find(self, key: str) -> MenuItem | None:
        if self.key == key:
            return self
        for child in self.children or ():
            hit = child.find(key)
            if hit is not None:
                return hit
        return None


@dataclass(frozen=True, slots=True)
class MenuModel:
    items: tuple[MenuItem, ...]

    def find(self, key: str) -> MenuItem | None:
        for item in self.items:
            hit = item.find(key)
            if hit is not None:
                return hit
        return None

    def keys(self) -> list[str]:
        out: list[str] = []

        def walk(items: Sequence[MenuItem]) -> None:
            for i in items:
                out.append(i.key)
                walk(i.children or ())

        walk(self.items)
        return out


def _sep(key: str) -> MenuItem:
    return MenuItem(key=key, separator=True, enabled=False)


def _info(key: str, text: str, visible: bool = True) -> MenuItem:
    return MenuItem(key=key, text=text, enabled=False, visible=visible)


def charm_state(c: CharmView, snap: Snapshot) -> IconState:
    if charm_needs_sign_in(c, snap) or charm_needs_fix(c):
        return IconState.ATTENTION
    if c.status.state is CharmState.RUNNING:
        return IconState.SYNCING
    if c.status.paused:
        return IconState.PAUSED
    if charm_waiting(c):
        return IconState.OK  # a wait the server asked for: not an error (the line says why)
    if charm_failing(c):
        return IconState.OFFLINE if c.status.last_outcome in _TRANSIENT else IconState.ERROR
    return IconState.OK


def charm_line(c: CharmView, snap: Snapshot) -> str:
    """The charm's one-line entry: its state in words, with the most useful time."""
    s, now = c.status, snap.now
    st = charm_state(c, snap)
    if st is IconState.ATTENTION:
        fix = s.last_outcome if charm_needs_fix(c) and not charm_needs_sign_in(c, snap) else None
        acct = snap.account(c.account_id)
        permission = acct is not None and acct.state is AccountState.NEEDS_PERMISSION
        sign_in = tr("needs permission") if permission else tr("needs sign-in")
        detail = tr(_FIX_DETAIL.get(fix, "needs attention")) if fix else sign_in
    elif st is IconState.SYNCING:
        p = progress_text(c)
        detail = tr("syncing {progress}…").format(progress=p) if p else tr("syncing…")
    elif st is IconState.PAUSED:
        detail = (
            tr("paused, resumes {when}").format(when=relative_future(s.paused_until, now))
            if s.paused_until
            else tr("paused")
        )
    elif charm_waiting(c):
        detail = waiting_detail(c, now)
    elif st in (IconState.ERROR, IconState.OFFLINE):
        kind = (s.last_outcome or OutcomeKind.SERVER_ERROR).value.replace("_", " ")
        detail = tr("{kind}, retry {when}").format(
            kind=tr(kind), when=relative_future(s.next_due_at, now)
        )
    elif s.last_success_at is None:
        detail = tr("not synced yet")
    else:
        detail = tr("synced {when}").format(when=relative_past(s.last_success_at, now))
    # The state's drawn icon goes beside the text (MenuItem.icon): glyphs such as a pause sign
    # are missing from common fonts and showed as empty boxes.
    return f"{c.name} — {detail}"


def _counts_text(c: CharmView) -> str:
    lc, tot = c.status.last_counts, c.status.totals
    return tr("Last run: +{added} ~{updated} −{removed} · total {total} added").format(
        added=lc.added, updated=lc.updated, removed=lc.removed, total=tot.added
    )


def _charm_menu(c: CharmView, snap: Snapshot) -> MenuItem:
    s, now, k = c.status, snap.now, f"charm:{c.id}"
    needs = charm_needs_sign_in(c, snap)
    acct = snap.account(c.account_id)
    err = s.last_error if charm_failing(c) and not charm_waiting(c) and s.last_error else None
    if needs:
        # The engine's error is auth's CLI sentence (email, Google's wording, a command line);
        # the account's short reason says the same in the tray's words.
        err = (
            acct.reason
            if acct and acct.reason
            else tr("{service} needs you to sign in again.").format(
                service=acct.service_title if acct and acct.service_title else "Google"
            )
        )
    blocked = s.blocked_loop
    children = (
        _info(
            f"{k}:success",
            tr("Last success: {when}").format(when=relative_past(s.last_success_at, now)),
        ),
        _info(
            f"{k}:next",
            tr("Next run: {when}").format(when=relative_future(s.next_due_at, now))
            if not s.paused and s.state is not CharmState.PARKED
            else tr("Next run: after sign-in")
            if (s.state is CharmState.PARKED or needs) and not s.parked_frozen
            else tr("Next run: when resumed"),
        ),
        _info(f"{k}:counts", _counts_text(c)),
        _info(
            f"{k}:error",
            _first_line(err or "")
            if needs
            else tr("Error: {error}").format(error=_first_line(err or "")),
            visible=err is not None,
        ),
        _info(
            f"{k}:blocked",
            tr("Slowed the app: {what}").format(what=_first_line(blocked or "")),
            visible=blocked is not None,
        ),
        _sep(f"{k}:sep1"),
        MenuItem(f"{k}:sync", tr("Sync now"), command=f"sync:{c.id}"),
        MenuItem(
            f"{k}:pause",
            tr("Resume") if s.paused or s.parked_frozen else tr("Pause"),
            command=f"resume:{c.id}" if s.paused or s.parked_frozen else f"pause:{c.id}",
        ),
        MenuItem(
            f"{k}:signin",
            acct.sign_in_text if acct else tr("Sign in again…"),
            command=f"signin:{c.account_id}",
            visible=needs and c.account_id is not None and not (acct and acct.signing_in),
        ),
        MenuItem(
            f"{k}:cancel_signin",
            tr("Cancel sign-in"),
            command=f"cancel_signin:{c.account_id}",
            visible=bool(acct and acct.signing_in),
        ),
        MenuItem(f"{k}:reset", tr("Reset and resync…"), command=f"reset:{c.id}"),
        MenuItem(f"{k}:remove", tr("Remove…"), command=f"remove:{c.id}"),
    )
    tooltip = _first_line(err) if err else ""
    return MenuItem(
        k,
        charm_line(c, snap),
        tooltip=tooltip,
        children=children,
        icon=charm_state(c, snap).value,
    )


def _account_items(a: AccountView) -> tuple[MenuItem, ...]:
    k = f"account:{a.id}"
    if a.signing_in:
        state = tr("waiting for you in the browser")
    elif a.state is AccountState.SIGNED_IN:
        state = tr("signed in")
    elif a.state is AccountState.KEYRING_NOT_READY:
        state = tr("keychain locked, retrying")
    elif a.state is AccountState.CLIENT_MISCONFIGURED:
        state = tr("OAuth client needs fixing")
    elif a.state is AccountState.NEEDS_PERMISSION:
        state = tr("needs permission")
    elif a.state is AccountState.SIGNED_OUT:
        state = tr("signed out")
    else:
        state = tr("needs sign-in")
    tip = " ".join(x for x in (a.reason, a.hint) if x)
    return (
        MenuItem(k, f"{a.display} — {state}", enabled=False, tooltip=tip),
        MenuItem(
            f"{k}:copylink",
            tr("Copy sign-in link"),
            command=f"copy_signin_link:{a.id}",
            visible=a.signing_in,
        ),
        MenuItem(
            f"{k}:cancel",
            tr("Cancel sign-in"),
            command=f"cancel_signin:{a.id}",
            visible=a.signing_in,
        ),
    )


class MenuBuilder:
    """:func:`build_menu` with a memory: a charm's entry (its line and submenu, about twelve
    items) is rebuilt only when something it shows changed, so a refresh after one charm's
    status change builds one entry, not one per charm (issue 17.6).

    What an entry shows depends on its :class:`CharmView`, its account's view and three
    relative times ("synced 2 min ago", "retry in 3 min", "resumes at 18:00"): those texts,
    not the clock, are part of the key, so a tick rebuilds only the entries whose words moved.
    The result is always equal to ``build_menu(snap)``; and an unchanged entry is the same
    object as last time, which lets :class:`~trayapp.ui.menu.MenuBinder` skip it whole.

    Checking an entry costs no text at all while the clock stays inside the window in which
    those three texts cannot change (:func:`past_text_until`, :func:`future_text_until`): a
    refresh after one change, or a tick, does O(1) work per unchanged charm.
    """

    def __init__(self) -> None:
        self._rows: dict[str, _Row] = {}
        self._day_ends: tuple[datetime, datetime] | None = None  # (now, its local day's end)
        self.rows_built = 0  # charm entries built so far: tests and the bench count them
        self.texts_compared = 0  # entries whose relative texts had to be worked out again

    def build(self, snap: Snapshot) -> MenuModel:
        model = _build_menu(snap, self._charm_row)
        if len(self._rows) > len(snap.charms):
            keep = {c.id for c in snap.charms}
            for cid in [cid for cid in self._rows if cid not in keep]:
                del self._rows[cid]
        return model

    def _day_end(self, now: datetime) -> datetime:
        cached = self._day_ends
        if cached is not None and cached[0] <= now < cached[1]:
            return cached[1]
        # The next local midnight at the offset it really has (a daylight-saving change tonight
        # moves it): a naive local time's astimezone() asks the system's zone rules; fold 0/1
        # are the two readings of a midnight the clocks skip or repeat, and the first instant
        # that is already tomorrow is the one. (It was "midnight - 1 h" at today's offset, which
        # lies before ``now`` in the day's last hour: every refresh then worked out every
        # entry's texts again.)
        tomorrow = now.astimezone().date() + timedelta(days=1)
        readings = (datetime.combine(tomorrow, time(fold=f)).astimezone() for f in (0, 1))
        ends = [t for t in readings if t > now and t.astimezone().date() == tomorrow]
        end = min(ends) if ends else now + timedelta(minutes=1)
        self._day_ends = (now, end)
        return end

    def _charm_row(self, c: CharmView, snap: Snapshot) -> MenuItem:
        s, now = c.status, snap.now
        acct = snap.account(c.account_id)
        gen = generation()
        hit = self._rows.get(c.id)
        if (
            hit is not None
            and hit.view is c
            and hit.account == acct
            and hit.generation == gen
            and hit.since <= now
            and (hit.until is None or now < hit.until)
        ):
            return hit.item
        self.texts_compared += 1
        texts = (
            relative_past(s.last_success_at, now),
            relative_future(s.next_due_at, now),
            relative_future(s.paused_until, now) if s.paused_until is not None else "",
        )
        day_end = self._day_end(now)
        until = _earliest(
            past_text_until(s.last_success_at, now),
            future_text_until(s.next_due_at, now, day_end),
            future_text_until(s.paused_until, now, day_end),
        )
        if (
            hit is not None
            and hit.texts == texts
            and hit.generation == gen
            and hit.account == acct
            and (hit.view is c or hit.view == c)
        ):
            item = hit.item
        else:
            item = _charm_menu(c, snap)
            self.rows_built += 1
        self._rows[c.id] = _Row(c, acct, gen, texts, now, until, item)
        return item


@dataclass(frozen=True, slots=True)
class _Row:
    """A built charm entry and what it was built from (see :class:`MenuBuilder`)."""

    view: CharmView
    account: AccountView | None
    generation: int
    texts: tuple[str, str, str]
    since: datetime  # the texts hold from here...
    until: datetime | None  # ...to here (None: for good)
    item: MenuItem


def build_menu(snap: Snapshot) -> MenuModel:
    """The whole tray menu for one snapshot. "Sync all now" and "Pause all" come first."""
    return _build_menu(snap, _charm_menu)


def _build_menu(snap: Snapshot, charm_row: Callable[[CharmView, Snapshot], MenuItem]) -> MenuModel:
    now = snap.now
    all_paused = bool(snap.charms) and all(c.status.paused for c in snap.charms)
    any_paused = any(c.status.paused for c in snap.charms)
    untils = [c.status.paused_until for c in snap.charms if c.status.paused]
    if all_paused and untils and all(u is not None for u in untils):
        pause_title = tr("Paused, resumes {when}").format(
            when=relative_future(max(u for u in untils if u), now)
        )
    elif all_paused:
        pause_title = tr("Paused until resumed")
    else:
        pause_title = tr("Pause all")
    blocked = snap.loop_block
    blocked_name = None
    if blocked is not None:
        c = next((c for c in snap.charms if c.id == blocked.charm_id), None)
        blocked_name = c.name if c else tr("A charm")
    items: list[MenuItem] = [
        # Enabled (readable, not greyed out); a click opens Activity for the details.
        MenuItem("header", summary(snap), command="activity", bold=True),
        MenuItem(
            "blocked",
            tr("{name} froze the app for {seconds} s ({when})").format(
                name=blocked_name,
                seconds=f"{blocked.seconds:.1f}",
                when=relative_past(blocked.at, now),
            )
            if blocked
            else "",
            enabled=False,
            visible=blocked is not None,
            icon=IconState.ERROR.value,
        ),
    ]
    # What the user most needs sits at the top level, first: signing in again, resuming.
    for a in snap.accounts:
        items.append(
            MenuItem(
                f"account:{a.id}:signin",
                f"{a.permission_prompt}…" if a.permission_prompt else a.sign_in_text,
                command=f"signin:{a.id}",
                visible=a.needs_user and not a.signing_in,
                bold=True,
                icon=IconState.ATTENTION.value,
            )
        )
    items += [
        _sep("sep:top"),
        MenuItem("sync_all", tr("Sync all now"), command="sync_all", enabled=bool(snap.charms)),
        MenuItem("resume_all", tr("Resume all"), command="resume_all", visible=any_paused),
        MenuItem(
            "pause_all",
            pause_title,
            enabled=bool(snap.charms),
            children=(
                MenuItem("pause_all:1h", tr("For 1 hour"), command="pause_all:1h"),
                MenuItem("pause_all:8h", tr("For 8 hours"), command="pause_all:8h"),
                MenuItem("pause_all:tomorrow", tr("Until tomorrow"), command="pause_all:tomorrow"),
                MenuItem("pause_all:forever", tr("Until resumed"), command="pause_all:forever"),
            ),
        ),
        _sep("sep:charms"),
    ]
    items.extend(charm_row(c, snap) for c in snap.charms)
    items.append(_sep("sep:accounts"))
    items.append(_info("accounts", tr("Accounts")))
    for a in snap.accounts:
        items.extend(_account_items(a))
    items.append(MenuItem("add_account", tr("Add account…"), command="add_account"))
    items.append(_sep("sep:app"))
    recent_children = tuple(
        MenuItem(
            f"recent:{r.id}",
            f"{r.title} · {relative_past(r.at, now)}" + ("" if r.shown else tr(" (not shown)")),
            command=f"recent:{r.id}",
        )
        for r in snap.recent
    )
    items.append(
        MenuItem(
            "recent",
            tr("Recent notifications"),
            enabled=bool(recent_children),
            children=recent_children
            or (MenuItem("recent:none", tr("Nothing yet"), enabled=False),),
        )
    )
    items += [
        MenuItem("welcome", tr("Getting started…"), command="welcome"),
        MenuItem("settings", tr("Settings…"), command="settings"),
        MenuItem("activity", tr("Activity…"), command="activity"),
        MenuItem("data", tr("Your data…"), command="data"),
        MenuItem("open_data", tr("Open data folder"), command="open_data"),
        MenuItem("about", tr("About and help…"), command="about"),
        _sep("sep:quit"),
        MenuItem("quit", tr("Quit Pattern Sync"), command="quit"),
    ]
    return MenuModel(tuple(items))


# ---------------------------------------------------------------------------------------------
# Commands


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    arg: str | None = None


def parse_command(text: str) -> Command:
    name, _, arg = text.partition(":")
    return Command(name, arg or None)


def pause_until(choice: str, now: datetime) -> datetime | None:
    """Map a "Pause all" choice to the engine's ``until`` (None = until resumed)."""
    if choice == "1h":
        return now + timedelta(hours=1)
    if choice == "8h":
        return now + timedelta(hours=8)
    if choice == "tomorrow":
        return tomorrow_morning(now)
    if choice == "forever":
        return None
    raise ValueError(f"unknown pause choice {choice!r}")


@dataclass
class CommandTable:
    """Maps command names to handlers; unknown commands are reported, never silently dropped."""

    handlers: dict[str, Callable[[str | None], object]] = field(default_factory=dict)

    def dispatch(self, text: str) -> object:
        cmd = parse_command(text)
        handler = self.handlers.get(cmd.name)
        if handler is None:
            raise KeyError(f"no handler for tray command {cmd.name!r}")
        return handler(cmd.arg)
