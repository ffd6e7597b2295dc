"""needs_permission in the tray: one notification and one menu entry in auth's words ("Allow
Pattern Sync to read Gmail for x@..."), both running the sign-in that asks for the union; only
the charm waiting for the permission says so; the grant is told in its own words and its notice
replaces the "Allow…" one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.ui.test_model import GMAIL, NOW, Charm, ok
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.status import CharmStatus
from trayapp.ui.model import (
    AccountState,
    AccountView,
    IconState,
    build_menu,
    charm_line,
    charm_state,
    make_snapshot,
)
from trayapp.ui.notify_policy import NotificationPolicy

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PROMPT = "Allow Pattern Sync to read Gmail for ada@example.com"


def account(state: AccountState, prompt: str = "") -> AccountView:
    return AccountView("acct1", "ada@example.com", state, permission_prompt=prompt)


def test_needs_permission_is_one_menu_entry_and_one_notification_in_auths_words() -> None:
    needs = account(AccountState.NEEDS_PERMISSION, PROMPT)
    snap = make_snapshot(T0 + timedelta(seconds=16), [GMAIL], {}, [needs])

    entries = [i for i in build_menu(snap).items if i.command == "signin:acct1" and i.visible]
    assert [i.text for i in entries] == [f"{PROMPT}…"]

    policy = NotificationPolicy()
    policy.started(T0)
    [notice] = policy.observe(snap)
    assert notice.title == PROMPT and notice.action == "signin:acct1"
    assert policy.observe(make_snapshot(T0 + timedelta(seconds=30), [GMAIL], {}, [needs])) == []


def test_other_states_keep_sign_in_again() -> None:
    snap = make_snapshot(T0, [GMAIL], {}, [account(AccountState.NEEDS_SIGN_IN)])
    entries = [i for i in build_menu(snap).items if i.command == "signin:acct1" and i.visible]
    assert [i.text for i in entries] == ["Sign in again as ada@example.com…"]


CAL_PROMPT = "Allow Pattern Sync to read Google Calendar for ada@example.com"
CALENDAR = Charm("cal", "Calendar", "gcalendar-importer", "acct1")


def test_a_granted_permission_says_so_and_replaces_the_allow_notification() -> None:
    needs = AccountView(
        "acct1",
        "ada@example.com",
        AccountState.NEEDS_PERMISSION,
        permission_prompt=CAL_PROMPT,
        permission_words="read Google Calendar",
    )
    policy = NotificationPolicy()
    policy.started(T0)
    [asked] = policy.observe(make_snapshot(T0 + timedelta(seconds=16), [GMAIL], {}, [needs]))
    assert asked.urgent and asked.title == CAL_PROMPT

    granted = account(AccountState.SIGNED_IN)
    [told] = policy.observe(make_snapshot(T0 + timedelta(seconds=40), [GMAIL], {}, [granted]))

    assert told.kind == "recovered" and not told.urgent
    assert told.title == "Pattern Sync can now read Google Calendar for ada@example.com"
    assert "signed in again" not in told.title
    # The same key as the "Allow…" notice: the notifier closes that one before showing this.
    assert told.key == asked.key == "account:acct1"
    assert policy.observe(make_snapshot(T0 + timedelta(seconds=50), [GMAIL], {}, [granted])) == []


def test_a_sign_in_that_worked_again_keeps_its_own_words() -> None:
    policy = NotificationPolicy()
    policy.started(T0)
    [asked] = policy.observe(
        make_snapshot(
            T0 + timedelta(seconds=16), [GMAIL], {}, [account(AccountState.NEEDS_SIGN_IN)]
        )
    )
    [told] = policy.observe(
        make_snapshot(T0 + timedelta(seconds=40), [GMAIL], {}, [account(AccountState.SIGNED_IN)])
    )
    assert told.key == asked.key and told.title == "ada@example.com is signed in again"


def test_only_the_charm_waiting_for_the_permission_shows_it_in_the_menu() -> None:
    needs = account(AccountState.NEEDS_PERMISSION, CAL_PROMPT)
    statuses = {
        "gmail": ok("gmail"),
        "cal": CharmStatus(
            "cal",
            last_outcome=OutcomeKind.AUTH_REQUIRED,
            last_error_kind=OutcomeKind.AUTH_REQUIRED,
            last_error="This charm waits for permission to read Google Calendar.",
            consecutive_failures=1,
            parked=True,
            parked_alone=True,
        ),
    }
    snap = make_snapshot(NOW, [GMAIL, CALENDAR], statuses, [needs])
    gmail, cal = (next(c for c in snap.charms if c.id == i) for i in ("gmail", "cal"))

    assert charm_state(gmail, snap) is IconState.OK
    assert "needs permission" not in charm_line(gmail, snap)
    assert charm_state(cal, snap) is IconState.ATTENTION
    assert "needs permission" in charm_line(cal, snap)
