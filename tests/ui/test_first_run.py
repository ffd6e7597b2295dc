"""First run, the Connect Google wizard, charm forms that behave, live account lists (issue 12).

Offscreen Qt with real parts: a real Engine on a temporary profile, a real AccountManager with a
file secret store, the Google emulator for sign-ins (an HTTP client answers its consent page, as
tests/ui/test_sign_in_again.py does). Windows are driven through their widgets.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QAction, QDropEvent
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QWidget,
)

from tests.auth.conftest import MemoryKeyring
from tests.emulator.harness import EmulatorServer
from tests.ui.conftest import QLoop, until
from tests.ui.test_sign_in_again import HttpBrowser
from trayapp.auth.accounts import AccountManager
from trayapp.auth.models import AccountState
from trayapp.auth.secrets import SecretStoreKind, SecretVault
from trayapp.auth.wiring import AccountsWiring
from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.ui.accounts import AuthAccounts
from trayapp.ui.connect_wizard import ConnectGoogleWizard, problem_with
from trayapp.ui.keyring_choice import KeyringChoice
from trayapp.ui.prefs import UiPrefs
from trayapp.ui.settings import NEW_ACCOUNT, SettingsWindow
from trayapp.ui.tray import TrayController
from trayapp.ui.welcome import WelcomeWindow, demo_command
from trayapp.ui.windows import ActivityWindow
from trayapp.ui.wording import detail_for_gui, for_gui

EMAIL = "alice@example.com"
GMAIL = "https://www.googleapis.com/auth/gmail.readonly"
SHOTS = Path(__file__).resolve().parents[2] / "out" / "first-run"


def shot(widget: QWidget, name: str) -> None:
    """Keep a picture of what the user sees at this step (out/ is ignored by git)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert widget.grab().save(str(SHOTS / f"offscreen-{name}.png"))


@pytest.fixture
def ctl(
    qapp: QApplication, profile_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TrayController]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    engine = Engine(profile_dir, patterns=default_registry())
    c = TrayController(
        engine, use_desktop_notifications=False, use_tray=False, report=lambda _l: None
    )
    yield c
    c.dispose()
    engine.close()


def settings(ctl: TrayController, tab: str = "charms") -> SettingsWindow:
    win = ctl.open_window("settings", tab)
    assert isinstance(win, SettingsWindow)
    return win


def line_edit(win: SettingsWindow, name: str) -> QLineEdit:
    assert win.form is not None
    editor = win.form.editor(name)
    assert isinstance(editor, QLineEdit)
    return editor


# -- first run -------------------------------------------------------------------------------


def test_welcome_opens_once_on_a_first_start_and_again_from_the_menu(
    ctl: TrayController, qloop: QLoop
) -> None:
    async def body() -> None:
        await ctl.start()
        # Nothing is built at start: windows are made when first opened.
        assert ctl._windows == {}
        assert ctl.maybe_first_run() is True
        win = ctl._windows["welcome"]
        assert isinstance(win, WelcomeWindow) and win.isVisible()
        assert UiPrefs.load(ctl.engine.profile.path).welcome_shown
        names = [b.text().replace("&", "") for b in (win.demo, win.google, win.feed)]
        assert names == ["Try the demo", "Connect a Google account", "Add a feed"]
        win.close()
        assert ctl.maybe_first_run() is False  # once
        # From the menu, any time.
        act = ctl.binder.action("welcome")
        assert act is not None and act.text() == "Getting started…"
        act.trigger()
        assert win.isVisible()
        # "Add a feed" goes to a new feed charm in Settings.
        win.feed.click()
        s = ctl._windows["settings"]
        assert isinstance(s, SettingsWindow) and s.isVisible()
        assert s.tabs.currentIndex() == 1 and s.pattern.currentData() == "feed-importer"
        assert s._editing is None and not win.isVisible()
        await ctl.stop()

    qloop.run(body())


def test_no_welcome_when_the_profile_already_has_charms(ctl: TrayController) -> None:
    ctl.engine.add_charm("feed-importer", {"url": "https://example.org/f.xml"})
    assert ctl.maybe_first_run() is False
    assert "welcome" not in ctl._windows


# -- charm forms ------------------------------------------------------------------------------


def test_add_switches_to_editing_that_charm_and_says_so(ctl: TrayController) -> None:
    win = settings(ctl)
    win.pattern.setCurrentIndex(win.pattern.findData("feed-importer"))
    assert win.mode.text() == "New charm" and win.save.text().replace("&", "") == "Add charm"
    line_edit(win, "url").setText("https://example.org/feed.xml")
    win.name.setText("Example")
    assert win.save_charm() is True
    (charm,) = ctl.engine.charms()
    assert win._editing == charm.id
    assert win.mode.text() == "Editing “Example”"
    assert win.save.text().replace("&", "") == "Save changes"
    assert "Added “Example”" in win.save_status.text()
    assert not win.pattern.isEnabled()
    assert win.charm_list.currentRow() == 0
    # A second click saves the same charm: no second charm, no error.
    win.name.setText("Example 2")
    assert win.save_charm() is True
    assert [c.name for c in ctl.engine.charms()] == ["Example 2"]
    assert win.save_status.text() == "Saved."


def test_switching_pattern_or_charm_resets_the_form_and_clears_status_lines(
    ctl: TrayController,
) -> None:
    ctl.engine.add_charm("feed-importer", {"url": "https://example.org/a.xml"}, name="A")
    win = settings(ctl)
    win.pattern.setCurrentIndex(win.pattern.findData("feed-importer"))
    win.name.setText("typed")
    line_edit(win, "url").setText("not a url")
    assert win.save_charm() is False
    assert win.save_status.text() == "Fix the highlighted fields."
    # The field is marked, not just explained below it.
    url = line_edit(win, "url")
    shot(win, "form-invalid-url")
    assert url.property("invalid") is True and "c0392b" in url.styleSheet()
    assert "not a valid http(s) URL" in url.accessibleDescription()
    gmail = win.pattern.findData("gmail-importer")
    if gmail >= 0:
        win.pattern.setCurrentIndex(gmail)
        assert win.name.text() == "" and win.save_status.text() == ""
        assert win.form is not None and win.form.error_text("query") is None
        assert win.interval.value() == 5  # the Gmail pattern's default
        win.pattern.setCurrentIndex(win.pattern.findData("feed-importer"))
        assert line_edit(win, "url").text() == ""  # a fresh form, not the old values
    assert win.save_charm() is False
    assert win.save_status.text()
    win.charm_list.setCurrentRow(0)  # switching to a charm clears the status line
    assert win.save_status.text() == ""
    assert win.mode.text() == "Editing “A”"
    win.new_charm()
    assert win.save_status.text() == "" and win.mode.text() == "New charm"


def test_the_engines_refusal_marks_the_field_it_names(ctl: TrayController) -> None:
    win = settings(ctl)
    win.pattern.setCurrentIndex(win.pattern.findData("feed-importer"))
    assert win.form is not None
    shown = win.form.show_engine_error(
        "invalid settings for feed-importer: url: not reachable; bogus: unknown setting"
    )
    assert shown is True
    assert win.form.error_text("url") == "not reachable"
    assert win.form.general_error.text() == "bogus: unknown setting"


def test_labels_of_the_fixed_rows_and_the_pattern_fields_share_one_column(
    ctl: TrayController,
) -> None:
    win = settings(ctl)
    for pattern_id in ("feed-importer", "gmail-importer"):
        index = win.pattern.findData(pattern_id)
        if index < 0:
            continue
        win.pattern.setCurrentIndex(index)
        assert win.form is not None
        labels: list[QLabel] = [*win._top_labels, *win.form.labels()]
        widths = {label.minimumWidth() for label in labels}
        assert len(widths) == 1 and widths.pop() >= max(lb.sizeHint().width() for lb in labels)
        # Every label names its field for screen readers and has a buddy (mnemonics work).
        assert all(label.buddy() is not None for label in labels)


def test_a_removed_charm_disappears_from_every_window_at_once(
    ctl: TrayController, qloop: QLoop
) -> None:
    async def body() -> None:
        await ctl.start()
        ctl.engine.add_charm("feed-importer", {"url": "https://example.org/a.xml"}, name="A")
        b = ctl.engine.add_charm("feed-importer", {"url": "https://example.org/b.xml"}, name="B")
        win = settings(ctl)
        activity = ctl.open_window("activity")
        assert isinstance(activity, ActivityWindow)
        await until(lambda: win.charm_list.count() == 2 and activity.charms.count() == 2)
        win.edit_charm(b.id)
        ctl.engine.remove_charm(b.id)  # as the tray menu's "Remove…" does, after confirming
        await until(lambda: win.charm_list.count() == 1)
        assert [win.charm_list.item(0).text()] == ["A"]  # type: ignore[union-attr]
        assert activity.charms.count() == 1
        assert ctl.binder.action(f"charm:{b.id}") is None
        # It was open in the form: the form is back to a new charm, and says why.
        assert win._editing is None and win.save_status.text() == "That charm was removed."
        await ctl.stop()

    qloop.run(body())


# -- wording ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (
            "pattern 'gmail-importer' needs Google access (x); add the charm with an account "
            "(--account ACCOUNT; see 'trayapp accounts list')",
            "Choose a Google account for this charm, or connect one.",
        ),
        ("Google could not be reached (ReadError)", "Google could not be reached."),
        (
            "cannot read /x: [Errno -2] Name or service not known",
            "Google could not be reached: check the network connection and try again.",
        ),
        (
            "InitError: Failed to create the collection: Prompt dismissed..",
            "The system keychain has no place for passwords yet: create or unlock it and try "
            "again.",
        ),
        (
            "the OAuth client changed; sign in again with `trayapp accounts signin a@b` or "
            "from the tray menu",
            "The OAuth client changed.",
        ),
        (
            "no OAuth client is configured; import your Desktop-app client JSON with "
            "`trayapp accounts client import FILE` (or use demo mode)",
            "Pattern Sync is not connected to Google yet: set up your OAuth client first.",
        ),
    ],
)
def test_gui_sentences_carry_no_cli_flags_class_names_or_errno(raw: str, shown: str) -> None:
    text = for_gui(raw)
    assert text == shown
    for bad in ("--", "trayapp ", "Errno", "Error:", "(ReadError)", ".."):
        assert bad not in text


# -- the wizard ------------------------------------------------------------------------------


def client_doc(kind: str = "installed") -> dict[str, object]:
    return {
        kind: {
            "client_id": "123-abc.apps.googleusercontent.com",
            "project_id": "my-sync",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
            "client_secret": "GOCSPX-notreal",
            "redirect_uris": ["http://localhost"],
        }
    }


def test_client_json_problems_each_get_their_own_sentence() -> None:
    good = json.dumps(client_doc())
    assert problem_with(good) is None
    assert "Web application client" in (problem_with(json.dumps(client_doc("web"))) or "")
    assert "cut off" in (problem_with(good[: len(good) // 2]) or "")
    assert "not a client JSON" in (problem_with("<html>Sign in</html>") or "")
    assert "service account" in (problem_with('{"type": "service_account"}') or "")
    assert "not an OAuth client" in (problem_with('{"access_token": "x"}') or "")
    assert "Choose the file" in (problem_with("  ") or "")


@asynccontextmanager
async def with_accounts(
    profile_dir: Path, browser: HttpBrowser, vault: SecretVault | None = None
) -> AsyncIterator[tuple[EmulatorServer, Engine, AccountManager, TrayController]]:
    async with EmulatorServer() as emu:
        emu.control.create_account(EMAIL, name="Alice")
        engine = Engine(profile_dir, patterns=default_registry())
        wiring = AccountsWiring(engine, vault=vault or SecretVault(profile_dir, mode="file"))
        manager = wiring.manager
        ctl = TrayController(
            engine,
            AuthAccounts(manager, opener=browser),
            use_desktop_notifications=False,
            use_tray=False,
            report=lambda _l: None,
        )
        await ctl.start()
        await engine.start()
        try:
            yield emu, engine, manager, ctl
        finally:
            await ctl.stop()
            await engine.stop()
            await wiring.aclose()
            engine.close()


@dataclass
class Flow:
    emu: EmulatorServer
    engine: Engine
    manager: AccountManager
    ctl: TrayController
    browser: HttpBrowser


def test_wizard_imports_the_client_and_settings_follow_at_once(
    qloop: QLoop, profile_dir: Path
) -> None:
    async def body() -> None:
        async with with_accounts(profile_dir, HttpBrowser()) as (emu, _engine, manager, ctl):
            win = settings(ctl, "accounts")
            assert "Not set up yet" in win.client_info.text()
            assert not win.client_remove.isEnabled()
            # "Add account…" with no client opens the guided set-up, not a CLI hint.
            win.add_account.click()
            wizard = ctl._windows["connect_google"]
            assert isinstance(wizard, ConnectGoogleWizard) and wizard.isVisible()
            wizard.focus("import")
            page = wizard.import_page
            assert wizard.currentPage() is page and not page.isComplete()
            page.paste.setPlainText(json.dumps(client_doc("web")))
            assert not page.isComplete() and "Web application" in page.verdict.text()
            shot(wizard, "wizard-web-client")
            client = emu.control.create_client()
            page.paste.setPlainText(json.dumps(client.client_config(emu.base_url)))
            assert page.isComplete() and page.verdict.text().startswith("✓")
            wizard.next()  # validatePage stores it
            assert manager.clients.get() is not None
            assert wizard.currentPage() is wizard.done_page
            await until(lambda: "Using the OAuth client" in win.client_info.text())
            assert client.id in win.client_info.text() and win.client_remove.isEnabled()
            # "Sign in without a charm for now": the account shows up in the open list.
            wizard.done_page.sign_in.click()
            assert not wizard.isVisible()
            await until(lambda: win.account_status.text() == "Signed in.", 60)
            item = win.account_list.item(0)
            assert item is not None and item.text() == f"{EMAIL} — signed in"
            # Remove it again from Settings (after confirming).
            win._confirm_remove_client()
            box = next(w for w in win.findChildren(QMessageBox) if w.isVisible())
            remove = next(b for b in box.findChildren(QPushButton) if b.text() == "Remove client")
            remove.click()
            await until(lambda: "Not set up yet" in win.client_info.text())
            assert manager.clients.get() is None

    qloop.run(body(), timeout=60)


def test_gmail_charm_with_a_new_account_signs_in_once_then_syncs(
    qloop: QLoop, profile_dir: Path
) -> None:
    browser = HttpBrowser()

    async def body() -> None:
        async with with_accounts(profile_dir, browser) as (emu, engine, manager, ctl):
            client = emu.control.create_client()
            ctl.accounts.import_client(  # type: ignore[attr-defined]
                json.dumps(client.client_config(emu.base_url))
            )
            accounts_tab = settings(ctl, "accounts")
            assert accounts_tab.account_list.count() == 1  # "No Google account yet."
            win = settings(ctl, "charms:new:gmail-importer")
            assert win.pattern.currentData() == "gmail-importer"
            assert win.account.currentData() == NEW_ACCOUNT and win.connect_account.isVisible()
            assert win.save_charm() is True
            assert "Sign in to Google" in win.save_status.text()
            await until(lambda: len(engine.charms()) == 1, 60)
            (charm,) = engine.charms()
            (account,) = manager.accounts()
            assert charm.account_id == account.id and GMAIL in account.scopes
            assert len(browser.urls) == 1 and "gmail.readonly" in browser.urls[0]
            assert win.mode.text() == f"Editing “{charm.name}”"
            # The Accounts tab followed without being reopened.
            await until(lambda: accounts_tab.account_list.count() == 1)
            item = accounts_tab.account_list.item(0)
            assert item is not None and item.text() == f"{EMAIL} — signed in"
            await until(lambda: bool(engine.history(charm.id, 1)), 60)
            rec = engine.history(charm.id, 1)[0]
            assert rec.outcome.value == "ok", rec.message

            # Sign out (revokes): the list says so at once.
            accounts_tab.account_list.setCurrentRow(0)
            accounts_tab.sign_out.click()
            first = accounts_tab.account_list.item
            await until(lambda: "signed out" in first(0).text())  # type: ignore[union-attr]
            assert manager.get(account.id).state is AccountState.SIGNED_OUT
            assert "Signed out" in accounts_tab.account_status.text()
            assert "trayapp" not in accounts_tab.account_status.text()

            # Remove, keeping the imported data: the charm stays, the account goes.
            accounts_tab.remove_account_now(account.id, remove_charms=False)
            await until(lambda: manager.accounts() == [])
            await until(
                lambda: accounts_tab.account_list.item(0).text() == "No Google account yet."
            )  # type: ignore[union-attr]
            assert [c.id for c in engine.charms()] == [charm.id]
            assert engine.history(charm.id, 1)

    qloop.run(body(), timeout=120)


def test_remove_account_with_its_charms_offers_the_choice_and_removes_them(
    qloop: QLoop, profile_dir: Path
) -> None:
    async def body() -> None:
        async with with_accounts(profile_dir, HttpBrowser()) as (emu, engine, manager, ctl):
            client = emu.control.create_client()
            ctl.accounts.import_client(  # type: ignore[attr-defined]
                json.dumps(client.client_config(emu.base_url))
            )
            account = await manager.sign_in(None, [GMAIL], opener=HttpBrowser(), timeout=60)
            engine.add_charm("gmail-importer", {}, name="Mail", account_id=account.id)
            win = settings(ctl, "accounts")
            await until(lambda: win.account_list.count() == 1 and win._selected_account())
            win._remove_selected()
            box = next(w for w in win.findChildren(QMessageBox) if w.isVisible())
            assert "Mail" in box.informativeText()
            shot(box, "remove-account-choice")
            choices = {b.objectName(): b for b in box.findChildren(QPushButton)}
            assert {"remove_with_charms", "remove_keep_data"} <= set(choices)
            choices["remove_with_charms"].click()
            await until(lambda: manager.accounts() == [] and engine.charms() == [])
            await until(lambda: win.account_status.text() == f"Removed {EMAIL}.")
            assert manager.clients.get() is not None  # the client is not the account's

    qloop.run(body(), timeout=120)


def test_charm_forms_pick_up_a_new_interval_default_per_pattern(ctl: TrayController) -> None:
    win = settings(ctl)
    win.pattern.setCurrentIndex(win.pattern.findData("feed-importer"))
    feed = ctl.engine.patterns.get("feed-importer")
    assert win.interval.value() == int(feed.default_interval / timedelta(minutes=1))


def test_a_keychain_that_cannot_keep_the_sign_in_asks_once_and_a_file_finishes_it(
    qloop: QLoop, profile_dir: Path
) -> None:
    keyring = MemoryKeyring()
    keyring.locked = True  # no login collection, or its unlock prompt was dismissed
    vault = SecretVault(profile_dir, mode="keyring", keyring_store=keyring)  # type: ignore[arg-type]
    browser = HttpBrowser()

    async def body() -> None:
        async with with_accounts(profile_dir, browser, vault) as (emu, _e, manager, ctl):
            client = emu.control.create_client()
            ctl.accounts.import_client(  # type: ignore[attr-defined]
                json.dumps(client.client_config(emu.base_url))
            )
            ctl.sign_in(None)
            await until(lambda: any(k.startswith("keyring:") for k in ctl._windows), 60)
            box = next(w for k, w in ctl._windows.items() if k.startswith("keyring:"))
            assert isinstance(box, KeyringChoice) and box.isVisible()
            shot(box, "keyring-choice")
            assert EMAIL in box.text() and "Keyring" not in box.text()
            assert manager.accounts() == []  # nothing half-stored while the user chooses
            # No "did not complete" notice: the dialog is the one message.
            assert not [e for e in ctl.notifier.recent.items() if "signin-error" in e.notice.key]
            box.use_file.click()
            await until(lambda: len(manager.accounts()) == 1, 60)
            (account,) = manager.accounts()
            assert account.usable and account.secret_store is SecretStoreKind.FILE
            assert len(browser.urls) == 1  # one consent round, whatever the keychain did

    qloop.run(body(), timeout=120)


def test_the_tray_starts_without_loading_any_window_module() -> None:
    """Start-up memory counts (perf issue): windows are imported when first opened."""
    code = (
        "import os, sys, asyncio\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "import tempfile, pathlib\n"
        "from PySide6.QtWidgets import QApplication\n"
        "import qasync\n"
        "from trayapp.core.engine import Engine\n"
        "from trayapp.core.patterns import PatternRegistry\n"
        "import trayapp.ui.app\n"
        "from trayapp.ui.tray import TrayController\n"
        "app = QApplication([])\n"
        "loop = qasync.QEventLoop(app); asyncio.set_event_loop(loop)\n"
        "engine = Engine(pathlib.Path(tempfile.mkdtemp()), patterns=PatternRegistry())\n"
        "ctl = TrayController(engine, use_desktop_notifications=False, use_tray=False,\n"
        "                     report=lambda _l: None)\n"
        "ctl.refresh()\n"
        "names = ('settings', 'welcome', 'connect_wizard', 'windows', 'schema_form',\n"
        "         'keyring_choice')\n"
        "print(sorted(n for n in names if 'trayapp.ui.' + n in sys.modules))\n"
        "ctl.dispose(); engine.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (
            "cannot reach example.org ([Errno -2] Name or service not known)",
            "cannot reach example.org (the name is unknown)",
        ),
        ("Gmail could not be reached (ReadError)", "Gmail could not be reached"),
        (
            "Google no longer accepts the saved sign-in of a@b.c; sign in again with "
            "`trayapp accounts signin a@b.c` or from the tray menu",
            "Google no longer accepts the saved sign-in of a@b.c",
        ),
        ("HTTP 503 from example.org. Retrying..", "HTTP 503 from example.org. Retrying."),
    ],
)
def test_run_errors_keep_their_details_without_cli_or_errno(raw: str, shown: str) -> None:
    assert detail_for_gui(raw) == shown


def test_a_network_failure_reads_without_errno_in_the_menu_and_activity(
    ctl: TrayController, qloop: QLoop
) -> None:
    """A real failed fetch (an unresolvable host), as the menu and Activity show it."""
    charm = ctl.engine.add_charm(
        "feed-importer", {"url": "http://nowhere.invalid/feed.xml"}, name="Nowhere"
    )

    async def body() -> None:
        await ctl.engine.sync([charm.id])

    qloop.run(body(), timeout=60)
    status = ctl.engine.status(charm.id)
    assert status.last_error and "cannot reach" in status.last_error  # the engine's own words
    ctl.refresh()
    texts = [a.text() + " " + a.toolTip() for a in ctl.menu.findChildren(QAction)]
    shown = [t for t in texts if "nowhere.invalid" in t]
    assert shown, texts
    activity = ctl.open_window("activity", charm.id)
    assert isinstance(activity, ActivityWindow)
    details = activity.table.item(0, 4)
    assert details is not None and "nowhere.invalid" in details.text()
    for text in [*shown, details.text()]:
        assert "Errno" not in text and "Error)" not in text and "trayapp " not in text


def first_row(win: SettingsWindow) -> str | None:
    item = win.account_list.item(0)
    return None if item is None else item.text()


def test_allow_access_in_settings_asks_for_the_missing_scope_once(
    qloop: QLoop, profile_dir: Path
) -> None:
    browser = HttpBrowser()
    calendar = "https://www.googleapis.com/auth/calendar.readonly"

    async def body() -> None:
        async with with_accounts(profile_dir, browser) as (emu, _engine, manager, ctl):
            client = emu.control.create_client()
            ctl.accounts.import_client(  # type: ignore[attr-defined]
                json.dumps(client.client_config(emu.base_url))
            )
            account = await manager.sign_in(None, [GMAIL], opener=HttpBrowser(), timeout=60)
            win = settings(ctl, "charms:new:gcalendar-importer")
            win.select_account(account.id)
            assert win.save_charm() is True
            await until(lambda: manager.get(account.id).state is AccountState.NEEDS_PERMISSION)
            assert "once you allow the access it needs" in win.save_status.text()
            accounts = settings(ctl, "accounts")
            await until(lambda: accounts.grant.isVisible())
            assert accounts.grant.text() == (
                f"Allow Pattern Sync to read Google Calendar for {EMAIL}…"
            )
            assert accounts.account_detail.text()  # why, in one sentence
            # The list follows the account's state on the next refresh, not synchronously.
            await until(lambda: first_row(accounts) == f"{EMAIL} — needs your permission")
            shot(accounts, "accounts-needs-permission")
            accounts.grant.click()
            await until(lambda: manager.get(account.id).state is AccountState.SIGNED_IN, 60)
            assert len(browser.urls) == 1 and "calendar.readonly" in browser.urls[0]
            assert calendar in manager.get(account.id).scopes
            await until(lambda: not accounts.grant.isVisible())
            await until(lambda: first_row(accounts) == f"{EMAIL} — signed in")

    qloop.run(body(), timeout=120)


def test_the_client_json_can_be_dropped_as_a_file_or_as_text(
    ctl: TrayController, tmp_path: Path
) -> None:
    wizard = ctl.open_window("connect_google", "import")
    assert isinstance(wizard, ConnectGoogleWizard)
    page = wizard.import_page
    path = tmp_path / "client_secret_123.json"
    path.write_text(json.dumps(client_doc("web")))
    dropped_file = QMimeData()
    dropped_file.setUrls([QUrl.fromLocalFile(str(path))])
    page.dropEvent(
        QDropEvent(
            QPointF(10, 10),
            Qt.DropAction.CopyAction,
            dropped_file,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
    )
    assert page.source.text() == "client_secret_123.json"
    assert "Web application" in page.verdict.text() and not page.isComplete()
    dropped_text = QMimeData()
    dropped_text.setText(json.dumps(client_doc())[:40])
    page.dropEvent(
        QDropEvent(
            QPointF(10, 10),
            Qt.DropAction.CopyAction,
            dropped_text,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
    )
    assert "cut off" in page.verdict.text() and page.source.text() == ""


def test_the_demo_button_starts_the_app_in_demo_mode() -> None:
    program, args = demo_command()
    assert args[-1] == "--demo"
    done = subprocess.run(
        [program, *args[:-1], "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "--demo" in done.stdout
