"""Accounts of other services in the tray and Settings: "needs sign-in" as for Google, and the
token dialog that re-authorises a token account.

Real parts: the Engine on a temporary profile (SQLite), trayapp.auth's AccountManager with the
0600 file vault, a real local service on 127.0.0.1 (tests/auth/service_provider.py: its API
answers 401 to a token it does not know, its /user checks a token), the tray controller and its
Qt widgets (offscreen). The dialog's screenshot goes to out/creds/.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from PySide6.QtWidgets import QLabel, QPushButton

from tests.auth.service_provider import Provider, running_provider
from tests.auth.test_service_credentials import patterns_for
from tests.ui.conftest import QLoop, until
from trayapp.auth.models import AccountState
from trayapp.auth.secrets import SecretVault
from trayapp.auth.wiring import attach_accounts
from trayapp.core.engine import Engine
from trayapp.core.outcomes import OutcomeKind
from trayapp.ui.accounts import AuthAccounts
from trayapp.ui.model import AccountView, IconState, build_menu, make_snapshot
from trayapp.ui.notify_policy import NotificationPolicy
from trayapp.ui.settings import SettingsWindow
from trayapp.ui.token_dialog import TokenDialog
from trayapp.ui.tray import TrayController

OUT = Path(__file__).resolve().parents[2] / "out" / "creds"


@pytest.fixture
def provider() -> Iterator[Provider]:
    with running_provider() as p:
        yield p


def test_a_token_account_in_the_menu_and_its_notice_name_the_service() -> None:
    from datetime import UTC, datetime

    from tests.ui.test_model import Charm
    from trayapp.core.status import CharmStatus
    from trayapp.ui.notify_policy import _account_notice

    acct = AccountView(
        "a1",
        "work",
        AccountState.NEEDS_SIGN_IN,
        reason="GitHub refused the token of work.",
        service_title="GitHub",
        token=True,
        service="github",
    )
    charm = Charm("issues", "Issues", "github-issues", "a1")
    parked = CharmStatus("issues", parked=True, last_outcome=OutcomeKind.AUTH_REQUIRED)
    snap = make_snapshot(datetime(2026, 3, 2, tzinfo=UTC), [charm], {"issues": parked}, [acct])
    menu = build_menu(snap)
    assert menu.find("account:a1:signin").text == "Sign in again to GitHub (work)…"  # type: ignore[union-attr]
    assert menu.find("charm:issues:signin").text == "Sign in again to GitHub (work)…"  # type: ignore[union-attr]
    assert menu.find("account:a1").text == "work (GitHub) — needs sign-in"  # type: ignore[union-attr]
    why = menu.find("charm:issues:error")
    assert why is not None and why.text == "GitHub refused the token of work."
    notice = _account_notice(acct)
    assert (notice.title, notice.body, notice.action_label, notice.action) == (
        "Sign in again to GitHub (work)",
        "GitHub refused the token of work.",
        "Enter new token",
        "signin:a1",
    )


def test_refused_token_needs_sign_in_and_the_dialog_takes_a_new_one(
    qloop: QLoop, profile_dir: Path, provider: Provider
) -> None:
    provider.api_tokens.add("first-token")
    engine = Engine(profile_dir, patterns=patterns_for(provider), jitter=0.0)
    manager = attach_accounts(engine, vault=SecretVault(profile_dir, mode="file"))
    lines: list[str] = []
    ctl = TrayController(
        engine,
        AuthAccounts(manager),
        policy=NotificationPolicy(grace=timedelta(0)),
        use_desktop_notifications=False,
        use_tray=True,
        report=lines.append,
    )

    def text(key: str) -> str:
        act = ctl.binder.action(key)
        assert act is not None, key
        return act.text()

    async def body() -> None:
        account = await manager.add_token("example", "first-token")
        charm = engine.add_charm("token-items", {}, account_id=account.id)
        await ctl.start()
        try:
            key = f"account:{account.id}"
            ctl.refresh()
            assert text(key) == "octo (Example) — signed in"

            provider.api_tokens.clear()  # the user revoked the token at the service
            outcome = (await engine.sync([charm.id]))[charm.id]
            assert outcome.kind is OutcomeKind.AUTH_REQUIRED
            await until(lambda: ctl.state is IconState.ATTENTION)
            assert text("header") == "octo (Example) needs you to sign in"
            assert text(f"{key}:signin") == "Sign in again to Example (octo)…"
            (entry,) = ctl.notifier.recent.items()
            assert entry.notice.title == "Sign in again to Example (octo)"
            assert entry.notice.body == "Example refused the token of octo."
            assert entry.notice.action_label == "Enter new token"

            # The notification's button opens the token dialog (not a browser, not a client).
            ctl.notifier.run_recent(entry.id)
            await until(lambda: f"token:{account.id}" in ctl._windows)
            dialog = ctl._windows[f"token:{account.id}"]
            assert isinstance(dialog, TokenDialog)
            help_link = dialog.findChild(QLabel, "token_help")
            assert help_link is not None and provider.url + "/tokens" in help_link.text()

            # A token the service refuses: said in words, nothing stored, the dialog stays.
            dialog.token.setText("still-wrong")
            dialog.submit()
            await until(lambda: dialog.buttons.isEnabled())
            status = dialog.status.text()
            assert status.startswith("Example did not accept this token (HTTP 401)"), status
            assert "trayapp" not in status and "Error" not in status and "--" not in status
            assert manager.get(account.id).state is AccountState.NEEDS_SIGN_IN
            OUT.mkdir(parents=True, exist_ok=True)
            dialog.grab().save(str(OUT / "token_dialog_refused.png"))

            provider.api_tokens.add("second-token")
            dialog.token.setText("second-token")
            dialog.submit()
            await until(lambda: f"token:{account.id}" not in ctl._windows)
            assert f"TRAYAPP_TOKEN_SAVED {account.id}" in lines
            assert manager.get(account.id).state is AccountState.SIGNED_IN
            assert not engine.status(charm.id).parked
            outcome = (await engine.sync([charm.id]))[charm.id]
            assert outcome.kind is OutcomeKind.OK, outcome.message
            assert provider.api_auth[-1] == "Bearer second-token"
            await until(lambda: ctl.state is IconState.OK)
            assert text(key) == "octo (Example) — signed in"
            assert [e.notice.kind for e in ctl.notifier.recent.items()] == [
                "recovered",
                "sign_in",
            ]

            # Settings: the charm form's account picker lists the pattern's service only, with
            # "Add a Example token…" beside it.
            win = ctl.open_window("settings", "charms")
            assert isinstance(win, SettingsWindow)
            win.pattern.setCurrentIndex(win.pattern.findData("token-items"))
            choices = [win.account.itemText(i) for i in range(win.account.count())]
            assert choices == ["octo (signed in)"]  # the service is the pattern's
            assert win.connect_account.text().replace("&", "") == "Add a Example token…"
            win.pattern.setCurrentIndex(win.pattern.findData("oauth-items"))
            choices = [win.account.itemText(i) for i in range(win.account.count())]
            assert choices == ["No Example Auth account yet"]
            assert win.connect_account.text().replace("&", "") == "Connect Example Auth…"
            win.grab().save(str(OUT / "settings_service_picker.png"))
            # Saving without an account says what to do, in the GUI's words.
            save = win.findChild(QPushButton, "save")
            assert save is not None
            save.click()
            assert "Add a Example Auth account first" in win.save_status.text()
        finally:
            await ctl.stop()
            await manager.aclose()
            await engine.stop()
            engine.close()

    qloop.run(body(), timeout=120)


class HttpBrowser:
    """The 'browser' of an OAuth sign-in: follows the provider's redirect to the app's loopback
    listener, in the background (a browser is another process)."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def __call__(self, url: str) -> bool:
        self.urls.append(url)
        task = asyncio.get_running_loop().create_task(self._go(url))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def _go(self, url: str) -> None:
        async with httpx.AsyncClient(follow_redirects=True, timeout=30) as browser:
            await browser.get(url)


def test_an_oauth_provider_account_is_connected_from_settings_and_signed_in_again_from_the_menu(
    qloop: QLoop, profile_dir: Path, provider: Provider
) -> None:
    engine = Engine(profile_dir, patterns=patterns_for(provider), jitter=0.0)
    manager = attach_accounts(engine, vault=SecretVault(profile_dir, mode="file"))
    browser = HttpBrowser()
    lines: list[str] = []
    ctl = TrayController(
        engine,
        AuthAccounts(manager, opener=browser),
        policy=NotificationPolicy(grace=timedelta(0)),
        use_desktop_notifications=False,
        use_tray=True,
        report=lines.append,
    )

    async def body() -> None:
        await ctl.start()
        try:
            # No Google client is configured: another provider's sign-in does not need one.
            win = ctl.open_window("settings", "charms")
            assert isinstance(win, SettingsWindow)
            win.pattern.setCurrentIndex(win.pattern.findData("oauth-items"))
            win.connect_account.click()
            await until(lambda: win.account.currentText() == "octo (signed in)")
            (account,) = manager.accounts()
            assert (account.service, account.credential_kind) == ("exampleauth", "oauth2")
            assert browser.urls[0].startswith(provider.url + "/authorize?")
            save = win.findChild(QPushButton, "save")
            assert save is not None
            save.click()
            await until(lambda: len(engine.charms()) == 1)
            (charm,) = engine.charms()
            assert charm.account_id == account.id

            provider.revoke_all()  # the user removed the app's access at the provider
            outcome = (await engine.sync([charm.id]))[charm.id]
            assert outcome.kind is OutcomeKind.AUTH_REQUIRED
            await until(lambda: ctl.state is IconState.ATTENTION)
            item = ctl.binder.action(f"account:{account.id}:signin")
            assert item is not None and item.text() == "Sign in again to Example Auth (octo)…"
            item.trigger()  # the provider's browser sign-in again, as for Google
            await until(lambda: manager.get(account.id).state is AccountState.SIGNED_IN)
            await until(lambda: any("SIGN_IN_DONE" in ln and ln.endswith(" ok") for ln in lines))
            outcome = (await engine.sync([charm.id]))[charm.id]
            assert outcome.kind is OutcomeKind.OK, outcome.message
            await until(lambda: ctl.state is IconState.OK)
        finally:
            await ctl.stop()
            await manager.aclose()
            await engine.stop()
            engine.close()

    qloop.run(body(), timeout=120)
