"""needs_permission in the tray: one notification and one menu entry in auth's words ("Allow
Pattern Sync to read Gmail for x@..."), both running the sign-in that asks for the union."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.ui.test_model import GMAIL
from trayapp.ui.model import AccountState, AccountView, build_menu, make_snapshot
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
