"""Scopes follow the charms (issue 12.3) and sign-in tells the truth (12.7), against the real
Engine, the emulator as Google, the built-in Gmail importer and (for consent) headless Chromium.

* Adding a Gmail charm for an account signed in without Gmail puts the account in
  ``needs_permission`` (computed, published once); one incremental consent page later the charm
  syncs.
* A 403 insufficient-scope answer from Gmail leads to the same state.
* Only the charm that lacks a permission waits: a Calendar charm added to an account whose Gmail
  charm syncs leaves Gmail syncing; the grant runs exactly the waiting charm at once.
* ``accounts signin`` without ``--scope`` asks for the scopes of the account's charms.
* A keyring that cannot store the grant is a choice (file or retry), with no second consent page,
  and the browser never says "Signed in" before the grant is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.message
import importlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulator.harness import (
    EmulatorServer,
    answer_consent_page,
    find_chromium,
    headless_chromium_argv,
    timed_event,
)
from trayapp.auth.accounts import AccountManager, record_cell_name
from trayapp.auth.client_config import parse_client_json
from trayapp.auth.models import Account, AccountState
from trayapp.auth.secrets import SecretStoreKind, SecretVault
from trayapp.auth.signin import KeyringUnavailable, grant_from_token_response
from trayapp.auth.wiring import AccountsWiring
from trayapp.builtins import default_registry
from trayapp.cli import accounts as commands
from trayapp.core.engine import Engine
from trayapp.core.events import AccountChanged, EngineEvent, RunFinished
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.profile import Profile
from trayapp.core.status import CharmState, RunRecord
from trayapp.core.store import Store
from trayapp.emulator.control import ClientInfo
from trayapp.plugins import plugins_dir

EMAIL = "alice@example.com"
OPENID = ("openid", "https://www.googleapis.com/auth/userinfo.email")
GMAIL = "https://www.googleapis.com/auth/gmail.readonly"
CALENDAR = "https://www.googleapis.com/auth/calendar.readonly"


def _message(subject: str) -> bytes:
    msg = email.message.EmailMessage()
    msg["From"] = "Bob <bob@example.com>"
    msg["To"] = EMAIL
    msg["Subject"] = subject
    msg["Date"] = "Mon, 03 Jun 2024 09:00:00 +0000"
    msg.set_content("hello")
    return msg.as_bytes()


def auth_requests(emu: EmulatorServer) -> list[dict[str, str]]:
    return [dict(e.query) for e in emu.control.requests(path="/o/oauth2/*auth")]


@pytest.fixture
async def wired(
    tmp_path: Path, emu: EmulatorServer, client_info: ClientInfo, keyring_mem: Any
) -> AsyncIterator[tuple[Engine, AccountManager]]:
    engine = Engine(
        Profile.resolve(tmp_path / "engine-profile"),
        patterns=default_registry(),
        jitter=0.0,
    )
    vault = SecretVault(engine.profile.path, mode="keyring", keyring_store=keyring_mem)
    accounts = AccountsWiring(engine, vault=vault)
    accounts.manager.clients.set(
        parse_client_json(json.dumps(client_info.client_config(emu.base_url)))
    )
    yield engine, accounts.manager
    await engine.stop()
    await accounts.aclose()
    engine.close()


def account_events(engine: Engine) -> list[str]:
    seen: list[str] = []

    def on(event: EngineEvent) -> None:
        if isinstance(event, AccountChanged):
            seen.append(event.account_id)

    engine.subscribe(on)
    return seen


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """An opener that starts headless Chromium on the URL (flags per desktop-testing.md)."""
    binary = find_chromium()
    if binary is None:
        pytest.skip("Chromium is absent (apt-get install chromium); CI installs it")
    procs: list[subprocess.Popen[bytes]] = []

    def open_(url: str) -> None:
        profile = tmp_path / f"chromium-{len(procs)}"
        profile.mkdir()
        procs.append(
            subprocess.Popen(
                headless_chromium_argv(binary, url, profile),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "HOME": str(profile)},
                start_new_session=True,
            )
        )

    yield open_
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class HttpBrowser:
    """Answers the consent page over HTTP in the background, as a browser would."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.tasks: list[asyncio.Task[httpx.Response]] = []

    def __call__(self, url: str) -> bool:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(follow_redirects=True, timeout=60) as http:
                return await answer_consent_page(http, url, "allow", None)

        self.urls.append(url)
        self.tasks.append(asyncio.get_running_loop().create_task(go()))
        return True

    async def final_page(self) -> httpx.Response:
        return await asyncio.wait_for(self.tasks[-1], 60)


async def narrow_sign_in(manager: AccountManager, emu: EmulatorServer, client: ClientInfo) -> str:
    """Alice signed in with identity scopes only (as "Add account..." used to do)."""
    tokens = emu.control.issue_tokens(EMAIL, client.id, list(OPENID))
    account = await manager.complete_sign_in(grant_from_token_response(tokens, email=EMAIL))
    assert account.usable
    return account.id


async def test_a_gmail_charm_for_a_signed_in_account_syncs_after_one_consent_page(
    wired: tuple[Engine, AccountManager],
    emu: EmulatorServer,
    client_info: ClientInfo,
    chromium: Callable[[str], None],
) -> None:
    engine, manager = wired
    emu.control.add_message(EMAIL, _message("first"))
    emu.control.add_message(EMAIL, _message("second"))
    account_id = await narrow_sign_in(manager, emu, client_info)
    changes = account_events(engine)

    engine.add_charm("gmail-importer", {"query": "in:inbox"}, name="mail", account_id=account_id)

    account = manager.get(account_id)
    assert account.state is AccountState.NEEDS_PERMISSION
    assert account.missing_scopes == (GMAIL,)
    assert account.permission_prompt == f"Allow Pattern Sync to read Gmail for {EMAIL}"
    assert changes == [account_id]  # one change, so one notification and one menu entry
    assert manager.get(account_id).to_json()["state"] == "needs_permission"

    emu.control.clear_log()
    emu.control.set_consent(auto_submit="allow")  # the page clicks "Allow" in Chromium
    granted = await manager.grant_permission(account_id, opener=chromium, timeout=90)

    assert granted.usable and GMAIL in granted.scopes
    [query] = auth_requests(emu)  # exactly one consent round
    assert query["include_granted_scopes"] == "true" and query["prompt"] == "consent"
    assert GMAIL in query["scope"].split() and query["login_hint"] == EMAIL
    assert len(emu.control.requests(path="/o/oauth2/v2/auth/consent")) == 1
    assert changes[-1] == account_id and manager.get(account_id).usable

    outcomes = await engine.sync()
    assert outcomes["mail"].kind is OutcomeKind.OK, outcomes["mail"].message
    assert engine.status("mail").last_counts.added == 2


async def test_a_403_insufficient_scope_from_gmail_means_needs_permission(
    wired: tuple[Engine, AccountManager], emu: EmulatorServer, client_info: ClientInfo
) -> None:
    engine, manager = wired
    emu.control.add_message(EMAIL, _message("first"))
    account_id = await narrow_sign_in(manager, emu, client_info)
    # The record believes Gmail was granted (Google no longer agrees: a scope taken back).
    cell = manager.store.cell(record_cell_name(account_id), Account | None, default=None)
    stored = cell.get()
    assert stored is not None
    cell.set(stored.model_copy(update={"scopes": (*OPENID, GMAIL)}))
    engine.add_charm("gmail-importer", {"query": "in:inbox"}, name="mail", account_id=account_id)
    assert manager.get(account_id).usable
    changes = account_events(engine)

    outcomes = await engine.sync()

    assert outcomes["mail"].kind is OutcomeKind.AUTH_REQUIRED
    refused = [e for e in emu.control.requests(path="/gmail/*") if e.status == 403]
    assert len(refused) == 1  # one refused call, no retries of it
    account = manager.get(account_id)
    assert account.state is AccountState.NEEDS_PERMISSION and account.missing_scopes == (GMAIL,)
    assert changes == [account_id]

    browser = HttpBrowser()
    await manager.grant_permission(account_id, opener=browser, timeout=60)
    final = await browser.final_page()
    assert "Signed in" in final.text
    outcomes = await engine.sync()
    assert outcomes["mail"].kind is OutcomeKind.OK, outcomes["mail"].message


async def test_only_the_charm_that_lacks_permission_waits_and_the_grant_runs_it(
    wired: tuple[Engine, AccountManager], emu: EmulatorServer, client_info: ClientInfo
) -> None:
    engine, manager = wired
    emu.control.add_message(EMAIL, _message("first"))
    emu.control.add_event(
        EMAIL, "primary", timed_event("Standup", "2026-12-08T09:00:00Z", "2026-12-08T09:15:00Z")
    )
    tokens = emu.control.issue_tokens(EMAIL, client_info.id, [*OPENID, GMAIL])
    account = await manager.complete_sign_in(grant_from_token_response(tokens, email=EMAIL))
    finished: list[RunRecord] = []
    engine.subscribe(lambda e: finished.append(e.record) if isinstance(e, RunFinished) else None)

    async def run_of(charm_id: str, after: int) -> RunRecord:
        for _ in range(600):
            found = [r for r in finished[after:] if r.charm_id == charm_id]
            if found:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no run of {charm_id} finished")

    engine.add_charm("gmail-importer", {"query": "in:inbox"}, name="mail", account_id=account.id)
    await engine.start()
    assert (await run_of("mail", 0)).outcome is OutcomeKind.OK
    # A Calendar charm for the same account: the grant lacks Calendar.
    engine.add_charm("gcalendar-importer", {}, name="cal", account_id=account.id)
    assert manager.get(account.id).state is AccountState.NEEDS_PERMISSION
    cal = await run_of("cal", 0)

    assert cal.outcome is OutcomeKind.AUTH_REQUIRED
    assert "read Google Calendar" in cal.message
    assert emu.control.requests(path="/calendar/*") == []  # it waits without asking Google
    assert engine.status("cal").state is CharmState.PARKED
    assert engine.status("mail").state is CharmState.SCHEDULED  # Gmail is not parked with it
    # Gmail keeps syncing: its token provider hands out tokens for the scopes granted.
    emu.control.add_message(EMAIL, _message("second"))
    outcomes = await engine.sync(["mail"])
    assert outcomes["mail"].kind is OutcomeKind.OK, outcomes["mail"].message
    assert engine.status("mail").last_counts.added == 1
    # A charm added now for the account does not wait with the Calendar charm.
    engine.add_charm("gmail-importer", {"query": "in:inbox"}, name="mail2", account_id=account.id)
    assert not engine.status("mail2").parked
    assert (await run_of("mail2", 0)).outcome is OutcomeKind.OK

    mark = len(finished)
    browser = HttpBrowser()
    granted = await manager.grant_permission(account.id, opener=browser, timeout=60)
    assert granted.usable and CALENDAR in granted.scopes

    after = await run_of("cal", mark)  # at once, without waiting for its interval
    assert after.outcome is OutcomeKind.OK, after.message
    assert after.trigger == "account" and after.counts.added == 1
    assert engine.status("cal").state is CharmState.SCHEDULED
    # Exactly the waiting charm ran: the Gmail charms were never parked, so they did not.
    assert [r.charm_id for r in finished[mark:]] == ["cal"]


async def test_an_account_that_needs_signing_in_still_parks_all_its_charms(
    wired: tuple[Engine, AccountManager], emu: EmulatorServer, client_info: ClientInfo
) -> None:
    engine, manager = wired
    tokens = emu.control.issue_tokens(EMAIL, client_info.id, [*OPENID, GMAIL])
    account = await manager.complete_sign_in(grant_from_token_response(tokens, email=EMAIL))
    engine.add_charm("gmail-importer", {"query": "in:inbox"}, name="mail", account_id=account.id)
    engine.add_charm("gcalendar-importer", {}, name="cal", account_id=account.id)

    outcomes = await engine.sync(["cal", "mail"])
    assert outcomes["cal"].kind is OutcomeKind.AUTH_REQUIRED
    assert engine.status("cal").parked and engine.status("cal").parked_alone
    assert not engine.status("mail").parked

    # The user revoked the grant at Google: a real sign-in problem parks every charm.
    assert emu.control.revoke_refresh_token(EMAIL) >= 1
    outcomes = await engine.sync(["mail"])
    assert outcomes["mail"].kind is OutcomeKind.AUTH_REQUIRED, outcomes["mail"].message
    assert manager.get(account.id).state is AccountState.NEEDS_SIGN_IN
    assert engine.status("mail").parked and engine.status("cal").parked
    assert not engine.status("cal").parked_alone and not engine.status("mail").parked_alone


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile")
    commands.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


async def test_cli_signin_without_scope_asks_for_the_scopes_of_the_accounts_charms(
    tmp_path: Path,
    emu: EmulatorServer,
    client_info: ClientInfo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRAYAPP_SECRET_STORE", "file")
    engine = Engine(Profile.resolve(tmp_path / "p"), patterns=default_registry())
    accounts = AccountsWiring(engine)
    accounts.manager.clients.set(
        parse_client_json(json.dumps(client_info.client_config(emu.base_url)))
    )
    account_id = await narrow_sign_in(accounts.manager, emu, client_info)
    engine.add_charm("gmail-importer", {"query": "in:inbox"}, name="mail", account_id=account_id)
    await accounts.aclose()
    engine.close()

    store = Store.open(engine.profile.db_path)
    try:
        out = io.StringIO()
        code = await commands.handle(
            parse("accounts", "signin", EMAIL, "--timeout", "60"),
            store,
            engine.profile.path,
            out=out,
            opener=HttpBrowser(),
        )
        assert code == 0, out.getvalue()
        [query] = auth_requests(emu)
        assert GMAIL in query["scope"].split()  # the Gmail charm's scope, with no --scope
        assert query["include_granted_scopes"] == "true"
        listed = io.StringIO()
        await commands.handle(
            parse("accounts", "list", "--json"), store, engine.profile.path, out=listed
        )
        [row] = json.loads(listed.getvalue())["accounts"]
        assert row["state"] == "signed_in" and GMAIL in row["scopes"]
    finally:
        store.close()


PLUGIN_SOURCE = """
from datetime import timedelta
from trayapp.api import Pattern, RunReport

class TasksReader(Pattern):
    id = "tasks-reader"
    title = "Tasks Reader"
    scopes = ("https://www.googleapis.com/auth/tasks.readonly",)
    default_interval = timedelta(hours=1)

    async def bg_updater(self, ctx):
        return RunReport()
"""


async def test_cli_signin_asks_for_the_scopes_of_plugins_in_the_profiles_plugins_folder(
    tmp_path: Path,
    emu: EmulatorServer,
    client_info: ClientInfo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A charm of a plugin installed with ``trayapp plugins install`` (the profile's plugins
    folder, not the environment) counts in the union ``accounts signin`` asks for."""
    monkeypatch.setenv("TRAYAPP_SECRET_STORE", "file")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the plugins folder is added for this test
    profile = Profile.resolve(tmp_path / "p")
    folder = plugins_dir(profile.path)
    (folder / "tasks_reader_plugin-0.1.dist-info").mkdir(parents=True)
    (folder / "tasks_reader_plugin.py").write_text(PLUGIN_SOURCE)
    (folder / "tasks_reader_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tasks-reader-plugin\nVersion: 0.1\n"
    )
    (folder / "tasks_reader_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[trayapp.patterns]\ntasks-reader = tasks_reader_plugin:TasksReader\n"
    )
    engine = Engine(profile, patterns=default_registry(profile=profile.path))
    accounts = AccountsWiring(engine)
    accounts.manager.clients.set(
        parse_client_json(json.dumps(client_info.client_config(emu.base_url)))
    )
    account_id = await narrow_sign_in(accounts.manager, emu, client_info)
    engine.add_charm("tasks-reader", {}, name="tasks", account_id=account_id)
    await accounts.aclose()
    engine.close()
    # A fresh command process: the plugins folder is not on the path until the command adds it.
    sys.path.remove(str(folder))
    importlib.invalidate_caches()

    store = Store.open(engine.profile.db_path)
    try:
        out = io.StringIO()
        code = await commands.handle(
            parse("accounts", "signin", EMAIL, "--timeout", "60"),
            store,
            engine.profile.path,
            out=out,
            opener=HttpBrowser(),
        )
        assert code == 0, out.getvalue()
        [query] = auth_requests(emu)
        assert "https://www.googleapis.com/auth/tasks.readonly" in query["scope"].split()
    finally:
        store.close()


@pytest.mark.usefixtures("configured")
async def test_a_keyring_that_cannot_store_the_grant_is_a_choice_not_a_second_consent(
    manager: AccountManager, emu: EmulatorServer, keyring_mem: Any
) -> None:
    keyring_mem.locked = True  # e.g. no login collection, or its prompt was dismissed
    browser = HttpBrowser()
    with pytest.raises(KeyringUnavailable) as info:
        await manager.sign_in(None, [GMAIL], opener=browser, timeout=60)
    problem = info.value
    assert problem.email == EMAIL and "file only you can read" in str(problem)
    final = await browser.final_page()
    assert "Signed in" not in final.text and "Go back to Pattern Sync" in final.text
    assert manager.accounts() == []  # nothing half-stored

    # "Try again" with the keyring still locked: the same choice, still no new consent page.
    with pytest.raises(KeyringUnavailable) as again:
        await manager.store_pending_grant(problem.pending_id)
    assert again.value.pending_id == problem.pending_id

    # "Keep it in a file": done, with the warning, and exactly one consent round overall.
    account = await manager.store_pending_grant(problem.pending_id, use_file=True)
    assert account.usable and account.secret_store is SecretStoreKind.FILE
    assert manager.vault.warning is not None and "readable only by you" in manager.vault.warning
    assert len(auth_requests(emu)) == 1
    assert await manager.provider(account.id).access_token()
    with pytest.raises(Exception, match="no longer waiting"):
        await manager.store_pending_grant(problem.pending_id)


@pytest.mark.usefixtures("configured")
async def test_after_unlocking_the_keyring_the_waiting_grant_goes_there(
    manager: AccountManager, emu: EmulatorServer, keyring_mem: Any
) -> None:
    keyring_mem.locked = True
    with pytest.raises(KeyringUnavailable) as info:
        await manager.sign_in(None, [GMAIL], opener=HttpBrowser(), timeout=60)
    keyring_mem.locked = False  # the user unlocked (or created) the keyring
    account = await manager.store_pending_grant(info.value.pending_id)
    assert account.usable and account.secret_store is SecretStoreKind.KEYRING
    assert keyring_mem.data and manager.vault.warning is None
    assert len(auth_requests(emu)) == 1


class _Tokens:
    async def access_token(self) -> str:
        return "ya29.test-token"

    async def refresh_after_rejection(self, rejected: str) -> str:
        return "ya29.test-token-2"


@pytest.mark.parametrize(
    ("www_authenticate", "expected"),
    [
        (
            'Bearer realm="https://accounts.google.com/", error="insufficient_scope", '
            f'scope="https://mail.google.com/ {GMAIL}"',
            ("https://mail.google.com/", GMAIL),
        ),
        # No scope named (not seen in captures, but not excluded): Gmail's read scopes.
        ('Bearer realm="https://accounts.google.com/", error="insufficient_scope"', None),
    ],
)
async def test_a_403_insufficient_scope_reports_the_refused_scopes(
    www_authenticate: str, expected: tuple[str, ...] | None
) -> None:
    from trayapp.core.errors import AuthRequired
    from trayapp.google.client import SERVICE_READ_SCOPES, GoogleApi

    body = {
        "error": {
            "code": 403,
            "message": "Request had insufficient authentication scopes.",
            "errors": [
                {
                    "message": "Insufficient Permission",
                    "domain": "global",
                    "reason": "insufficientPermissions",
                }
            ],
            "status": "PERMISSION_DENIED",
            "details": [{"reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}],
        }
    }

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json=body, headers={"WWW-Authenticate": www_authenticate})

    refused: list[tuple[str, ...]] = []
    api = GoogleApi(
        _Tokens(),
        transport=httpx.MockTransport(answer),
        on_scope_refused=lambda scopes: refused.append(tuple(scopes)),
    )
    async with api:
        with pytest.raises(AuthRequired, match="more permission"):
            await api.get_json("gmail", "gmail.users.labels.list", "gmail/v1/users/me/labels")
    assert refused == [expected or SERVICE_READ_SCOPES["gmail"]]
    assert api.requests_sent == 1  # not retried


@pytest.mark.usefixtures("configured")
async def test_the_browser_hears_signed_in_only_once_the_grant_is_stored(
    manager: AccountManager, emu: EmulatorServer
) -> None:
    stored_when_answered: list[bool] = []

    def opener(url: str) -> bool:
        async def browse() -> httpx.Response:
            async with httpx.AsyncClient(follow_redirects=True, timeout=60) as http:
                page = await answer_consent_page(http, url, "allow", None)
            # Checked as soon as the page arrives, before the sign-in coroutine resumes.
            stored_when_answered.append(
                any(a.email == EMAIL and a.usable for a in manager.accounts())
            )
            return page

        tasks.append(asyncio.get_running_loop().create_task(browse()))
        return True

    tasks: list[asyncio.Task[httpx.Response]] = []
    account = await manager.sign_in(None, [GMAIL], opener=opener, timeout=60)
    page = await asyncio.wait_for(tasks[0], 60)
    assert "Signed in" in page.text and account.usable
    assert stored_when_answered == [True]
