"""Sign in again from the tray, against the emulator: revoke, attention, one notice, recover.

Real parts throughout: the Google emulator (OAuth consent page, token and revoke endpoints),
trayapp.auth's AccountManager and token provider, the Engine, and the tray controller. The
"browser" is an HTTP client that submits the consent form (tests.emulator.harness's
answer_consent_page), as tests/auth does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from PySide6.QtWidgets import QApplication

from tests.emulator.harness import GMAIL_READONLY, EmulatorServer, answer_consent_page
from tests.ui.conftest import QLoop, until
from trayapp.auth.accounts import AccountManager
from trayapp.auth.client_config import parse_client_json
from trayapp.auth.models import Account, AccountState
from trayapp.auth.secrets import SecretVault
from trayapp.auth.wiring import attach_accounts
from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.core.errors import AuthRequired
from trayapp.ui.accounts import AuthAccounts
from trayapp.ui.model import IconState
from trayapp.ui.notify_policy import NotificationPolicy
from trayapp.ui.tray import TrayController

EMAIL = "alice@example.com"


class HttpBrowser:
    """The sign-in's opener: records the URL and, like a user, allows on the consent page.

    The tray hands sign-in URLs to an opener, so this stays; the consent page itself is answered
    by the emulator's shared ``answer_consent_page``.
    """

    def __init__(self, *, browse: bool = True) -> None:
        self.browse = browse
        self.urls: list[str] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def __call__(self, url: str) -> bool:
        self.urls.append(url)
        if self.browse:
            task = asyncio.get_running_loop().create_task(self._go(url))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return True

    async def _go(self, url: str) -> None:
        async with httpx.AsyncClient(follow_redirects=True, timeout=60) as http:
            answer = await answer_consent_page(http, url, "allow")
            assert answer.status_code == 200, answer.text  # the app's loopback callback page


@dataclass
class Env:
    emu: EmulatorServer
    engine: Engine
    manager: AccountManager
    account: Account
    ctl: TrayController
    browser: HttpBrowser
    lines: list[str]

    def text(self, key: str) -> str:
        act = self.ctl.binder.action(key)
        assert act is not None, key
        return act.text()

    def visible(self, key: str) -> bool:
        act = self.ctl.binder.action(key)
        return act is not None and act.isVisible()

    async def revoke(self) -> None:
        """Revoke at the provider; the next refresh meets invalid_grant, as after 7 days."""
        self.emu.control.revoke_refresh_token(EMAIL)
        provider = self.manager.provider(self.account.id)
        token = await provider.access_token()
        with pytest.raises(AuthRequired):
            await provider.refresh_after_rejection(token)


@asynccontextmanager
async def signed_in(profile_dir: Path, browser: HttpBrowser) -> AsyncIterator[Env]:
    async with EmulatorServer() as emu:
        emu.control.create_account(EMAIL, name="Alice")
        client = emu.control.create_client()
        engine = Engine(profile_dir, patterns=default_registry())
        vault = SecretVault(
            profile_dir, mode="file"
        )  # a real store; the keyring is not the subject
        manager = attach_accounts(engine, vault=vault)
        manager.clients.set(parse_client_json(json.dumps(client.client_config(emu.base_url))))
        account = await manager.sign_in(None, [GMAIL_READONLY], opener=HttpBrowser(), timeout=60)
        lines: list[str] = []
        ctl = TrayController(
            engine,
            AuthAccounts(manager, opener=browser),
            policy=NotificationPolicy(grace=timedelta(0)),
            use_desktop_notifications=False,
            use_tray=True,
            report=lines.append,
        )
        await ctl.start()
        try:
            yield Env(emu, engine, manager, account, ctl, browser, lines)
        finally:
            await ctl.stop()
            await manager.aclose()
            await engine.stop()
            engine.close()


def test_revoked_token_asks_once_and_the_notification_action_signs_in_again(
    qloop: QLoop, profile_dir: Path
) -> None:
    async def body() -> None:
        async with signed_in(profile_dir, HttpBrowser()) as env:
            key = f"account:{env.account.id}"
            env.ctl.refresh()
            assert env.ctl.state is IconState.OK
            assert env.text(key) == f"{EMAIL} — signed in"
            assert not env.visible(f"{key}:signin")

            await env.revoke()
            await until(lambda: env.ctl.state is IconState.ATTENTION)
            assert env.text("header") == f"{EMAIL} needs you to sign in"
            assert env.text(f"{key}:signin") == f"Sign in again as {EMAIL}…"
            assert env.visible(f"{key}:signin")
            (entry,) = env.ctl.notifier.recent.items()
            assert entry.notice.kind == "sign_in"
            assert entry.notice.title == f"Sign in again to {EMAIL}"
            assert entry.notice.action_label == "Sign in again"
            # Refreshing again changes nothing: still exactly one notice.
            env.ctl.refresh()
            assert len(env.ctl.notifier.recent.items()) == 1

            # The notification's action (as dunst would invoke it) starts the browser sign-in.
            env.ctl.notifier.run_recent(entry.id)
            await until(lambda: any(ln.endswith(" ok") for ln in env.lines if "SIGN_IN_DONE" in ln))
            assert env.browser.urls and "login_hint=alice" in env.browser.urls[0]
            await until(lambda: env.ctl.state is IconState.OK)
            assert env.manager.get(env.account.id).state is AccountState.SIGNED_IN
            assert env.text(key) == f"{EMAIL} — signed in"
            kinds = [e.notice.kind for e in env.ctl.notifier.recent.items()]
            assert kinds == ["recovered", "sign_in"]

    qloop.run(body(), timeout=90)


def test_sign_in_can_be_cancelled_and_its_link_copied(qloop: QLoop, profile_dir: Path) -> None:
    async def body() -> None:
        async with signed_in(profile_dir, HttpBrowser(browse=False)) as env:
            key = f"account:{env.account.id}"
            await env.revoke()
            await until(lambda: env.visible(f"{key}:signin"))
            env.ctl.binder.action(f"{key}:signin").trigger()  # type: ignore[union-attr]
            await until(lambda: env.visible(f"{key}:cancel"))
            assert env.text(key) == f"{EMAIL} — waiting for you in the browser"
            assert not env.visible(f"{key}:signin")
            await until(lambda: bool(env.browser.urls))  # the flow has its URL and "opened" it
            env.ctl.binder.action(f"{key}:copylink").trigger()  # type: ignore[union-attr]
            assert QApplication.clipboard().text() == env.browser.urls[-1]
            env.ctl.binder.action(f"{key}:cancel").trigger()  # type: ignore[union-attr]
            await until(lambda: any("SIGN_IN_DONE" in ln for ln in env.lines))
            assert [ln for ln in env.lines if "SIGN_IN_DONE" in ln] == [
                f"TRAYAPP_SIGN_IN_DONE {env.account.id} CancelledError"
            ]
            await until(lambda: env.visible(f"{key}:signin"))
            assert not env.visible(f"{key}:cancel")
            assert env.ctl.state is IconState.ATTENTION
            # Cancelling is the user's choice: no "did not complete" notice.
            assert [e.notice.kind for e in env.ctl.notifier.recent.items()] == ["sign_in"]

    qloop.run(body(), timeout=90)
