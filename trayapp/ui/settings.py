"""The Settings window: accounts (live), charms (forms from each pattern's schema), general.

Non-modal, opened from ordinary slots (qasync#59/#82). It follows the engine and the accounts
through :meth:`SettingsWindow.update_from`, which the tray controller calls after every engine
or account event while the window is visible (and once when it is shown): no list in it is ever
older than the last event. Account actions that talk to Google run as tasks of the controller;
their outcome lands in the tab's status line in the GUI's own words (:mod:`trayapp.ui.wording`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractButton,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from trayapp import DISPLAY_NAME
from trayapp.core.errors import SettingsError, TrayappError
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.patterns import Pattern
from trayapp.core.status import CharmState
from trayapp.ui.accounts import AccountActions
from trayapp.ui.autostart import Autostart
from trayapp.ui.keyring_choice import is_keyring_choice
from trayapp.ui.model import AccountState, AccountView, Snapshot, progress_text
from trayapp.ui.prefs import UiPrefs
from trayapp.ui.schema_form import SchemaForm, settings_to_save
from trayapp.ui.wording import for_gui

if TYPE_CHECKING:
    from trayapp.ui.tray import TrayController

# The account picker's entry for "sign in with a new Google account when the charm is added".
NEW_ACCOUNT = "__new__"
TABS = ("accounts", "charms", "general")


def _profile_dir(ctl: TrayController) -> Path:
    return ctl.engine.profile.path


def _tr(text: str) -> str:
    return QCoreApplication.translate("SettingsWindow", text)


def _state_words(a: AccountView) -> str:
    if a.signing_in:
        return _tr("waiting for you in the browser")
    return {
        AccountState.SIGNED_IN: _tr("signed in"),
        AccountState.NEEDS_SIGN_IN: _tr("needs sign-in"),
        AccountState.NEEDS_PERMISSION: _tr("needs your permission"),
        AccountState.KEYRING_NOT_READY: _tr("keychain locked, retrying"),
        AccountState.CLIENT_MISCONFIGURED: _tr("OAuth client needs fixing"),
        AccountState.SIGNED_OUT: _tr("signed out"),
    }[a.state]


def _status_label(name: str) -> QLabel:
    label = QLabel("")
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class SettingsWindow(QWidget):
    """Accounts, charms (forms from each pattern's settings schema), start-up, notifications."""

    def __init__(self, ctl: TrayController) -> None:
        super().__init__()
        self.ctl = ctl
        self.setObjectName("settings_window")
        self.setWindowTitle(self.tr("{app}: Settings").format(app=DISPLAY_NAME))
        self.resize(720, 560)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("settings_tabs")
        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs)
        self._accounts_seen: list[AccountView] | None = None
        self._charms_seen: list[tuple[str, str]] | None = None
        self._client_seen: object = ()
        self._build_accounts()
        self._build_charms()
        self._build_general()
        self.tabs.currentChanged.connect(lambda _i: self.ctl.report_widgets(self))

    # -- shared ------------------------------------------------------------------------------

    @property
    def account_actions(self) -> AccountActions | None:
        acc = self.ctl.accounts
        return acc if isinstance(acc, AccountActions) else None

    def focus(self, tab: str | None) -> None:
        """Open on ``tab``: "accounts", "charms", "general" or "charms:new:<pattern id>"."""
        name, _, rest = (tab or "").partition(":")
        if name in TABS:
            self.tabs.setCurrentIndex(TABS.index(name))
        if name == "charms" and rest.startswith("new"):
            self.new_charm()
            pattern_id = rest.partition(":")[2]
            index = self.pattern.findData(pattern_id) if pattern_id else -1
            if index >= 0:
                self.pattern.setCurrentIndex(index)
        self.update_from(self.ctl.snapshot())

    def showEvent(self, event: QShowEvent) -> None:
        self.update_from(self.ctl.snapshot())
        super().showEvent(event)

    def update_from(self, snap: Snapshot) -> None:
        """Follow the engine and the accounts (called on every refresh while visible)."""
        self._update_accounts(list(snap.accounts))
        self._update_charms(snap)

    def _run(
        self, what: str, coro: Any, on_done: Callable[[Any, BaseException | None], None]
    ) -> None:
        """Run an account action as a controller task; ``on_done(result, error)`` after it."""

        def finish(result: Any, error: BaseException | None) -> None:
            on_done(result, error)
            outcome = "ok" if error is None else type(error).__name__
            self.ctl.report(f"TRAYAPP_ACCOUNT_ACTION {what} {outcome}")

        async def wrapped() -> None:
            try:
                result = await coro
            except asyncio.CancelledError:
                finish(None, asyncio.CancelledError())
                raise
            except Exception as exc:
                finish(None, exc)
                return
            finish(result, None)

        self.ctl.spawn(wrapped())

    # -- accounts ----------------------------------------------------------------------------

    def _build_accounts(self) -> None:
        page = QWidget()
        lay = QVBoxLayout(page)
        client_box = QGroupBox(self.tr("Connection to Google"))
        client_lay = QVBoxLayout(client_box)
        self.client_info = QLabel("")
        self.client_info.setObjectName("client_info")
        self.client_info.setWordWrap(True)
        client_lay.addWidget(self.client_info)
        client_row = QHBoxLayout()
        self.client_setup = QPushButton(self.tr("&Set up Google…"))
        self.client_setup.setObjectName("client_setup")
        self.client_setup.clicked.connect(self._setup_client)
        self.client_remove = QPushButton(self.tr("Remove c&lient…"))
        self.client_remove.setObjectName("client_remove")
        self.client_remove.clicked.connect(self._confirm_remove_client)
        client_row.addWidget(self.client_setup)
        client_row.addWidget(self.client_remove)
        client_row.addStretch(1)
        client_lay.addLayout(client_row)
        lay.addWidget(client_box)

        heading = QLabel(self.tr("Your Google a&ccounts"))
        lay.addWidget(heading)
        self.account_list = QListWidget()
        self.account_list.setObjectName("accounts")
        self.account_list.setAccessibleName(self.tr("Accounts"))
        self.account_list.setWordWrap(True)
        heading.setBuddy(self.account_list)
        self.account_list.currentRowChanged.connect(lambda _r: self._account_buttons())
        lay.addWidget(self.account_list, 1)
        self.account_detail = _status_label("account_detail")
        lay.addWidget(self.account_detail)
        grant_row = QHBoxLayout()  # its own row: it says what it asks Google for, in full
        grant_row.addWidget(self.grant_placeholder())
        grant_row.addStretch(1)
        lay.addLayout(grant_row)

        row = QHBoxLayout()
        self.add_account = QPushButton(self.tr("A&dd account…"))
        self.add_account.setObjectName("add_account")
        self.add_account.clicked.connect(self.start_add_account)
        self.sign_in_again = QPushButton(self.tr("Sign &in again"))
        self.sign_in_again.setObjectName("sign_in_again")
        self.sign_in_again.clicked.connect(self._sign_in_selected)
        self.sign_out = QPushButton(self.tr("Sign &out"))
        self.sign_out.setObjectName("sign_out")
        self.sign_out.setToolTip(self.tr("Revoke Pattern Sync's access at Google"))
        self.sign_out.clicked.connect(self._sign_out_selected)
        self.remove_account = QPushButton(self.tr("&Remove…"))
        self.remove_account.setObjectName("remove_account")
        self.remove_account.clicked.connect(self._remove_selected)
        for b in (
            self.add_account,
            self.sign_in_again,
            self.sign_out,
            self.remove_account,
        ):
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)
        self.account_status = _status_label("account_status")
        lay.addWidget(self.account_status)
        self.tabs.addTab(page, self.tr("&Accounts"))
        self._update_accounts(self.ctl.accounts.accounts())

    def grant_placeholder(self) -> QPushButton:
        """The "Allow …" button of an account that needs permission (hidden otherwise)."""
        self.grant = QPushButton(self.tr("Allo&w access…"))
        self.grant.setObjectName("grant")
        self.grant.setToolTip(self.tr("Give Pattern Sync the access its charms need"))
        self.grant.clicked.connect(self._grant_selected)
        self.grant.hide()
        return self.grant

    def _update_accounts(self, accounts: list[AccountView]) -> None:
        actions = self.account_actions
        client = actions.client_summary() if actions is not None else None
        if client != self._client_seen:
            self._client_seen = client
            if actions is None:
                self.client_info.setText(self.tr("Google accounts are not available here."))
            elif client is None:
                self.client_info.setText(
                    self.tr(
                        "Not set up yet. Pattern Sync reaches Google with your own Desktop-app "
                        "OAuth client; the set-up shows you how to make one."
                    )
                )
            else:
                project = client.project_id or self.tr("unknown project")
                self.client_info.setText(
                    self.tr("Using the OAuth client {id} of {project}.").format(
                        id=client.client_id, project=project
                    )
                )
            self.client_setup.setText(
                self.tr("&Set up Google…") if client is None else self.tr("Re&place client…")
            )
            self.client_setup.setEnabled(actions is not None)
            self.client_remove.setEnabled(client is not None)
        if accounts == self._accounts_seen:
            return
        self._accounts_seen = list(accounts)
        current = self._selected_account()
        self.account_list.blockSignals(True)
        self.account_list.clear()
        for a in accounts:
            text = f"{a.display} — {_state_words(a)}"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, a.id)
            tip = " ".join(x for x in (a.reason, a.hint) if x)
            item.setToolTip(tip)
            self.account_list.addItem(item)
        ids = [a.id for a in accounts]
        if current in ids:
            self.account_list.setCurrentRow(ids.index(current))
        elif ids:
            self.account_list.setCurrentRow(0)
        self.account_list.blockSignals(False)
        if not accounts:
            self.account_list.addItem(self.tr("No Google account yet."))
            item = self.account_list.item(0)
            if item is not None:
                item.setFlags(Qt.ItemFlag.NoItemFlags)
        self._account_buttons()
        if hasattr(self, "account"):  # the Charms tab is built after this one
            self._refresh_account_picker()

    def _selected_account(self) -> str | None:
        item = self.account_list.currentItem()
        if item is None:
            return None
        value = item.data(Qt.ItemDataRole.UserRole)
        return str(value) if value else None

    def _selected_view(self) -> AccountView | None:
        aid = self._selected_account()
        return next((a for a in self._accounts_seen or [] if a.id == aid), None)

    def _account_buttons(self) -> None:
        a = self._selected_view()
        usable = self.account_actions is not None
        busy = bool(a and a.signing_in)
        self.add_account.setEnabled(usable)
        self.sign_in_again.setEnabled(usable and a is not None and not busy)
        self.grant.setVisible(bool(a and a.state is AccountState.NEEDS_PERMISSION))
        prompt = a.permission_prompt if a is not None else ""
        self.grant.setText(f"{prompt.replace('&', '&&')}…" if prompt else self.tr("Allo&w access…"))
        self.grant.setEnabled(usable and not busy)
        self.sign_out.setEnabled(
            usable and a is not None and a.state is not AccountState.SIGNED_OUT and not busy
        )
        self.remove_account.setEnabled(usable and a is not None and not busy)
        if a is None:
            self.account_detail.setText("")
        else:
            detail = " ".join(x for x in (a.reason, a.hint) if x)
            self.account_detail.setText(detail)

    def _needs_client(self) -> bool:
        """No OAuth client yet: open the set-up instead (and say so). True when it did."""
        actions = self.account_actions
        if actions is not None and actions.client_summary() is None:
            self.ctl.open_window("connect_google")
            return True
        return False

    def start_add_account(self) -> None:
        if self._needs_client():
            return
        self._sign_in(None, (), self.account_status)

    def _sign_in(
        self,
        account_id: str | None,
        scopes: Sequence[str],
        status: QLabel,
        then: Callable[[str], None] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        actions = self.account_actions
        if actions is None:
            return
        status.setText(self.tr("Sign in to Google in your browser, then come back here."))

        def done(result: Any, error: BaseException | None) -> None:
            if on_end is not None:
                on_end()
            if isinstance(error, asyncio.CancelledError):
                status.setText(self.tr("Sign-in cancelled."))
            elif is_keyring_choice(error):
                status.setText(
                    self.tr(
                        "The keychain could not keep the sign-in: choose what to do in the "
                        "window that opened, then try again here."
                    )
                )
            elif error is not None:
                status.setText(for_gui(error))
            else:
                status.setText(self.tr("Signed in."))
                if then is not None:
                    then(str(result))
            self.ctl.schedule_refresh()

        self._run("signin", actions.sign_in_and_wait(account_id, scopes), done)

    def _sign_in_selected(self) -> None:
        view = self._selected_view()
        if view is not None and not view.is_google:
            self.ctl.sign_in(view.id)  # a new token (dialog), or the provider's sign-in
            return
        aid = self._selected_account()
        if aid is not None and not self._needs_client():
            self._sign_in(aid, self._charm_scopes(aid), self.account_status)

    def _charm_scopes(self, account_id: str) -> tuple[str, ...]:
        """The union of the scopes the account's charms need."""
        scopes: dict[str, None] = {}
        for c in self.ctl.engine.charms():
            if c.account_id == account_id:
                p = self._pattern(c.pattern_id)
                for s in getattr(p, "scopes", ()) or ():
                    scopes[str(s)] = None
        return tuple(scopes)

    def _grant_selected(self) -> None:
        aid = self._selected_account()
        if aid is None or self.account_actions is None:
            return
        missing = self.account_actions.missing_scopes(aid) or self._charm_scopes(aid)
        self._sign_in(aid, missing, self.account_status)

    def _sign_out_selected(self) -> None:
        a = self._selected_view()
        actions = self.account_actions
        if a is None or actions is None:
            return
        self.account_status.setText(self.tr("Signing out {email}…").format(email=a.email))

        def done(result: Any, error: BaseException | None) -> None:
            self.account_status.setText(for_gui(error) if error else for_gui(str(result)))
            self.ctl.schedule_refresh()

        self._run("signout", actions.sign_out(a.id), done)

    def _remove_selected(self) -> None:
        a = self._selected_view()
        if a is None or self.account_actions is None:
            return
        charms = [c for c in self.ctl.engine.charms() if c.account_id == a.id]
        box = QMessageBox(self)
        box.setObjectName("remove_account_box")
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle(self.tr("Remove account"))
        box.setText(self.tr("Remove {email} from Pattern Sync?").format(email=a.email))
        info = self.tr("Pattern Sync signs it out (Google revokes the access) and forgets it.")
        with_charms: QAbstractButton | None = None
        keep: QAbstractButton | None = None
        if charms:
            names = ", ".join(c.name for c in charms)
            info += " " + self.tr("Its charms ({names}) hold mail or events they imported.").format(
                names=names
            )
            with_charms = box.addButton(
                self.tr("Remove with its charms and their data"),
                QMessageBox.ButtonRole.DestructiveRole,
            )
            with_charms.setObjectName("remove_with_charms")
            keep = box.addButton(
                self.tr("Remove, keep the imported data"), QMessageBox.ButtonRole.AcceptRole
            )
            keep.setObjectName("remove_keep_data")
            keep.setToolTip(self.tr("The charms stay with what they imported, and stop syncing."))
        else:
            keep = box.addButton(self.tr("Remove"), QMessageBox.ButtonRole.DestructiveRole)
            keep.setObjectName("remove_keep_data")
        box.setInformativeText(info)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(cancel)

        def finished(_r: int) -> None:
            clicked = box.clickedButton()
            box.deleteLater()
            if clicked is None or clicked is cancel:
                return
            self.remove_account_now(a.id, remove_charms=clicked is with_charms)

        box.finished.connect(finished)
        box.open()
        self.ctl.report_widgets(box)

    def remove_account_now(self, account_id: str, *, remove_charms: bool) -> None:
        """Remove an account (signing it out first); with ``remove_charms`` its charms too."""
        actions = self.account_actions
        if actions is None:
            return
        email = next((a.email for a in self._accounts_seen or [] if a.id == account_id), "")
        if remove_charms:
            for c in list(self.ctl.engine.charms()):
                if c.account_id == account_id:
                    self.ctl.engine.remove_charm(c.id)
        self.account_status.setText(self.tr("Removing {email}…").format(email=email))

        def done(_result: Any, error: BaseException | None) -> None:
            if error is not None:
                self.account_status.setText(for_gui(error))
            else:
                self.account_status.setText(self.tr("Removed {email}.").format(email=email))
            self.ctl.schedule_refresh()

        self._run("remove", actions.remove(account_id), done)

    def _setup_client(self) -> None:
        """First time: the whole guide; replacing: straight to the page that takes the JSON."""
        replacing = self._client_seen not in ((), None)
        self.ctl.open_window("connect_google", "import" if replacing else None)

    def _confirm_remove_client(self) -> None:
        actions = self.account_actions
        if actions is None:
            return
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle(self.tr("Remove OAuth client"))
        box.setText(self.tr("Forget the OAuth client Pattern Sync uses to reach Google?"))
        box.setInformativeText(
            self.tr(
                "Accounts and charms stay, but nothing syncs from Google until you set up a "
                "client again."
            )
        )
        remove = box.addButton(self.tr("Remove client"), QMessageBox.ButtonRole.DestructiveRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(cancel)

        def finished(_r: int) -> None:
            clicked = box.clickedButton()
            box.deleteLater()
            if clicked is remove:
                actions.remove_client()
                self.account_status.setText(self.tr("The OAuth client was removed."))
                self.ctl.schedule_refresh()

        box.finished.connect(finished)
        box.open()

    # -- charms -----------------------------------------------------------------------------

    def _build_charms(self) -> None:
        page = QWidget()
        lay = QHBoxLayout(page)
        left_box = QWidget()
        left_box.setFixedWidth(210)  # the form beside it keeps its place whatever it shows
        left = QVBoxLayout(left_box)
        left.setContentsMargins(0, 0, 0, 0)
        heading = QLabel(self.tr("Your charms"))
        left.addWidget(heading)
        self.charm_list = QListWidget()
        self.charm_list.setObjectName("charm_list")
        self.charm_list.setAccessibleName(self.tr("Charms"))
        heading.setBuddy(self.charm_list)
        self.charm_list.currentRowChanged.connect(self._edit_selected)
        left.addWidget(self.charm_list)
        buttons = QHBoxLayout()
        new = QPushButton(self.tr("&New charm"))
        new.setObjectName("new_charm")
        new.clicked.connect(self.new_charm)
        self.remove_charm = QPushButton(self.tr("Remo&ve…"))
        self.remove_charm.setObjectName("remove_charm")
        self.remove_charm.clicked.connect(self._remove_charm)
        buttons.addWidget(new)
        buttons.addWidget(self.remove_charm)
        left.addLayout(buttons)
        lay.addWidget(left_box)

        right = QVBoxLayout()
        self.mode = QLabel("")
        self.mode.setObjectName("form_mode")
        font = self.mode.font()
        font.setBold(True)
        self.mode.setFont(font)
        right.addWidget(self.mode)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        self.top_form = form
        self.pattern = QComboBox()
        self.pattern.setObjectName("pattern")
        for p in self._patterns():
            self.pattern.addItem(p.title or p.id, p.id)
        self.pattern.currentIndexChanged.connect(lambda _i: self._pattern_changed())
        self.name = QLineEdit()
        self.name.setObjectName("name")
        self.interval = QSpinBox()
        self.interval.setObjectName("interval")
        self.interval.setRange(1, 24 * 60)
        self.interval.setSuffix(self.tr(" min"))
        self.account = QComboBox()  # shown for patterns that need a Google account
        self.account.setObjectName("account")
        self.connect_account = QPushButton(self.tr("&Connect a Google account…"))
        self.connect_account.setObjectName("connect_account")
        self.connect_account.clicked.connect(self._connect_from_form)
        self.account_row = QWidget()
        row = QHBoxLayout(self.account_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.account, 1)
        row.addWidget(self.connect_account)
        self._top_labels: list[QLabel] = []
        for text, widget, buddy in (
            (self.tr("&Pattern"), self.pattern, self.pattern),
            (self.tr("Na&me"), self.name, self.name),
            (self.tr("S&ync every"), self.interval, self.interval),
            (self.tr("Acco&unt"), self.account_row, self.account),
        ):
            label = QLabel(text)
            label.setBuddy(buddy)
            buddy.setAccessibleName(text.replace("&", ""))
            self._top_labels.append(label)
            form.addRow(label, widget)
        self.account_label = self._top_labels[-1]
        right.addLayout(form)
        self.form_host = QVBoxLayout()
        right.addLayout(self.form_host)
        self.form: SchemaForm | None = None
        self.save_status = _status_label("save_status")
        right.addWidget(self.save_status)
        right.addStretch(1)
        self.save = QPushButton(self.tr("A&dd charm"))
        self.save.setObjectName("save")
        self.save.setDefault(True)
        self.save.clicked.connect(self.save_charm)
        # Reset (issue 16.5; the CLI's "charms reset"): shown while editing a charm.
        self.reset_charm = QPushButton(self.tr("Rese&t and resync…"))
        self.reset_charm.setObjectName("reset_charm")
        self.reset_charm.setToolTip(
            self.tr("Clear what this charm has imported and sync it again from the start")
        )
        self.reset_charm.clicked.connect(self._reset_charm)
        self.reset_charm.hide()
        save_row = QHBoxLayout()
        save_row.addWidget(self.reset_charm)
        save_row.addStretch(1)
        save_row.addWidget(self.save)
        right.addLayout(save_row)
        lay.addLayout(right, 1)
        self.tabs.addTab(page, self.tr("C&harms"))
        self._editing: str | None = None
        self._charm_ids: list[str] = []
        self._pending: bool = False
        # A reset asked from here: (charm id, when), followed live in the status line.
        self._following_reset: tuple[str, datetime] | None = None
        self._update_charms(self.ctl.snapshot())
        self.new_charm()

    def _patterns(self) -> list[Pattern[Any]]:
        return list(self.ctl.engine.patterns)

    def _pattern(self, pattern_id: str | None) -> Pattern[Any] | None:
        return next((p for p in self._patterns() if p.id == pattern_id), None)

    def _current_pattern(self) -> Pattern[Any] | None:
        return self._pattern(self.pattern.currentData())

    def _pattern_changed(self) -> None:
        """A new pattern for a new charm: a fresh form, with that pattern's defaults."""
        self.name.setText("")
        self.save_status.setText("")
        self._rebuild_form()

    def _rebuild_form(self, values: dict[str, Any] | None = None) -> None:
        if self.form is not None:
            self.form_host.removeWidget(self.form)
            self.form.hide()  # deleteLater runs later; until then it would overlap the new form
            self.form.setParent(None)
            self.form.deleteLater()
            self.form = None
        p = self._current_pattern()
        if p is None:
            return
        needs_account = bool(getattr(p, "needs_account", False))
        self.account_row.setVisible(needs_account)
        self.account_label.setVisible(needs_account)
        self.account.setEnabled(self._editing is None)
        self.connect_account.setVisible(self._editing is None)
        self.connect_account.setText(self._connect_text(p))
        self._refresh_account_picker()
        self.form = SchemaForm(p.settings_model())
        self.form_host.addWidget(self.form)
        self.form.show()
        if values:
            self.form.set_values(values)
        if self._editing is None:
            interval = getattr(p, "default_interval", timedelta(minutes=30))
            self.interval.setValue(max(1, int(interval.total_seconds() // 60)))
            self.name.setPlaceholderText(str(getattr(p, "title", "") or ""))
        self._align_labels()

    def _align_labels(self) -> None:
        """One label column for the fixed rows and the pattern's own fields."""
        labels = [*self._top_labels, *(self.form.labels() if self.form else [])]
        for label in labels:
            label.setMinimumWidth(0)
        width = max((label.sizeHint().width() for label in labels), default=0)
        for label in labels:
            label.setMinimumWidth(width)

    def _connect_text(self, p: Pattern[Any]) -> str:
        """The button beside the account picker: what adds an account of the pattern's service."""
        credential = getattr(p, "credential", None)
        if credential is None:
            return self.tr("&Connect a Google account…")
        if credential.kind == "api_token":
            return self.tr("A&dd a {service} token…").format(service=credential.title)
        return self.tr("&Connect {service}…").format(service=credential.title)

    def _refresh_account_picker(self) -> None:
        """The account choices of the pattern's service (Google, or the service its credential
        names), keeping the current one; new accounts appear at once."""
        current = self.account.currentData()
        editing = self._editing is not None
        p = self._current_pattern()
        service = str(getattr(p, "service", "google")) if p is not None else "google"
        accounts = [
            a for a in (self._accounts_seen or self.ctl.accounts.accounts()) if a.service == service
        ]
        items: list[tuple[str, str | None]] = [
            (f"{a.email} ({_state_words(a)})", a.id) for a in accounts
        ]
        if editing:
            charm = next((c for c in self.ctl.engine.charms() if c.id == self._editing), None)
            acct = charm.account_id if charm else None
            if acct and acct not in [i for _t, i in items]:
                items.append((self.tr("a removed account"), acct))
        elif self.account_actions is None:
            items.append((self.tr("No account available"), None))
        elif service == "google":
            items.append((self.tr("A new Google account (sign in when adding)"), NEW_ACCOUNT))
        elif not items:
            title = str(getattr(p, "service_title", "") or service)
            items.append((self.tr("No {service} account yet").format(service=title), None))
        if [
            (self.account.itemText(i), self.account.itemData(i))
            for i in range(self.account.count())
        ] == items:
            return
        self.account.blockSignals(True)
        self.account.clear()
        for text, data in items:
            self.account.addItem(text, data)
        index = self.account.findData(current) if current is not None else -1
        self.account.setCurrentIndex(index if index >= 0 else 0)
        self.account.blockSignals(False)

    def select_account(self, account_id: str) -> None:
        self._refresh_account_picker()
        index = self.account.findData(account_id)
        if index >= 0:
            self.account.setCurrentIndex(index)

    def _connect_from_form(self) -> None:
        """Sign in a new account with the access this pattern needs, then pick it."""
        p = self._current_pattern()
        credential = getattr(p, "credential", None)
        if credential is not None:
            self._connect_service(credential.service, credential.kind == "api_token")
            return
        if self._needs_client():
            self.save_status.setText(
                self.tr("Set up the connection to Google first, then connect the account.")
            )
            return
        p = self._current_pattern()
        scopes = tuple(getattr(p, "scopes", ()) or ())
        self._sign_in(None, scopes, self.save_status, then=self.select_account)

    def _connect_service(self, service: str, token: bool) -> None:
        """A new account of another service: the token dialog, or the provider's sign-in."""
        if token:
            self.ctl.open_token_dialog(service, on_saved=self.select_account)
            return
        actions = self.account_actions
        connect = getattr(actions, "connect_service", None)
        if connect is None:
            return
        self.save_status.setText(self.tr("Sign in in your browser…"))

        def done(result: Any, error: BaseException | None) -> None:
            if error is not None:
                self.save_status.setText(for_gui(error))
            else:
                self.save_status.setText("")
                self.select_account(str(result))

        self._run("connect", connect(service), done)

    def _update_charms(self, snap: Snapshot) -> None:
        self._follow_reset(snap)
        seen = [(c.id, c.name) for c in snap.charms]
        if seen == self._charms_seen:
            return
        self._charms_seen = seen
        ids = [c for c, _n in seen]
        self.charm_list.blockSignals(True)
        self.charm_list.clear()
        for _id, name in seen:
            self.charm_list.addItem(name)
        self._charm_ids = ids
        if self._editing in ids:
            self.charm_list.setCurrentRow(ids.index(self._editing))
        self.charm_list.blockSignals(False)
        self.remove_charm.setEnabled(self._editing in ids)
        if self._editing is not None and self._editing not in ids:
            # Removed (here, from the tray menu or the command line): nothing left to edit.
            self.new_charm()
            self.save_status.setText(self.tr("That charm was removed."))

    def new_charm(self) -> None:
        self._editing = None
        self.charm_list.blockSignals(True)
        self.charm_list.clearSelection()
        self.charm_list.setCurrentRow(-1)
        self.charm_list.blockSignals(False)
        self.name.setText("")
        self.pattern.setEnabled(True)
        self.save.setText(self.tr("A&dd charm"))
        self.mode.setText(self.tr("New charm"))
        self.save_status.setText("")
        self.remove_charm.setEnabled(False)
        self.reset_charm.hide()
        self._following_reset = None
        self._rebuild_form()

    def _edit_selected(self, row: int) -> None:
        if not 0 <= row < len(self._charm_ids):
            return
        self.edit_charm(self._charm_ids[row])

    def edit_charm(self, charm_id: str) -> None:
        charm = next((c for c in self.ctl.engine.charms() if c.id == charm_id), None)
        if charm is None:
            return
        self._editing = charm.id
        if charm.id in self._charm_ids:
            self.charm_list.blockSignals(True)
            self.charm_list.setCurrentRow(self._charm_ids.index(charm.id))
            self.charm_list.blockSignals(False)
        self.pattern.blockSignals(True)
        self.pattern.setCurrentIndex(max(0, self.pattern.findData(charm.pattern_id)))
        self.pattern.blockSignals(False)
        self.pattern.setEnabled(False)
        self.name.setText(charm.name)
        interval = getattr(charm, "interval", None)
        if isinstance(interval, timedelta):
            self.interval.setValue(max(1, int(interval.total_seconds() // 60)))
        self.save_status.setText("")
        self._rebuild_form(dict(getattr(charm, "settings", {}) or {}))
        if charm.account_id:
            index = self.account.findData(charm.account_id)
            if index >= 0:
                self.account.setCurrentIndex(index)
        self.save.setText(self.tr("&Save changes"))
        self.mode.setText(self.tr("Editing “{name}”").format(name=charm.name))
        self.remove_charm.setEnabled(True)
        self.reset_charm.show()
        self.reset_charm.setEnabled(True)
        self.ctl.report_widgets(self)  # test mode: the reset button appeared
        if self._following_reset is not None and self._following_reset[0] != charm.id:
            self._following_reset = None

    def _remove_charm(self) -> None:
        if self._editing is not None:
            self.ctl.run_command(f"remove:{self._editing}")

    def _reset_charm(self) -> None:
        """Ask (saying what is lost), then reset the charm being edited and follow its sync."""
        charm_id = self._editing
        if charm_id is None:
            return
        name = self.name.text().strip() or charm_id
        asked_at = self.ctl.engine.clock.now()

        def done(error: BaseException | None) -> None:
            if error is not None:
                self.save_status.setText(for_gui(error))
                return
            self._following_reset = (charm_id, asked_at)
            self.save_status.setText(
                self.tr(
                    "Cleared what “{name}” had imported; it syncs again from the start…"
                ).format(name=name)
            )
            self.ctl.schedule_refresh()

        self.ctl.confirm_reset(charm_id, parent=self, on_done=done)

    def _follow_reset(self, snap: Snapshot) -> None:
        """The status line follows a reset asked here: syncing (with progress), then how the
        first sync from the start ended."""
        following = self._following_reset
        if following is None:
            return
        charm_id, asked_at = following
        c = next((c for c in snap.charms if c.id == charm_id), None)
        if c is None or self._editing != charm_id:
            self._following_reset = None
            return
        s = c.status
        if s.state is CharmState.RUNNING:
            progress = progress_text(c)
            text = (
                self.tr("Syncing “{name}” again from the start: {progress}…")
                if progress
                else self.tr("Syncing “{name}” again from the start…")
            )
            self.save_status.setText(text.format(name=c.name, progress=progress))
            return
        ended = s.last_run_at
        if ended is None or ended < asked_at or s.last_outcome is OutcomeKind.CANCELLED:
            if s.state is CharmState.PARKED:
                self.save_status.setText(
                    self.tr(
                        "Cleared “{name}”; it syncs again once its account is signed in."
                    ).format(name=c.name)
                )
            return  # the run cancelled by the reset, or the new one has not started yet
        self._following_reset = None
        if s.last_outcome is not None and not s.last_outcome.is_failure:
            count = self.ctl.engine.stored_items(charm_id)
            text = (
                self.tr("“{name}” synced again from the start: 1 item.")
                if count == 1
                else self.tr("“{name}” synced again from the start: {n} items.")
            )
            self.save_status.setText(text.format(name=c.name, n=f"{count:,}"))
        else:
            self.save_status.setText(
                self.tr("“{name}” was cleared, but syncing it again failed: {error}").format(
                    name=c.name, error=s.last_error or self.tr("see Activity for details")
                )
            )

    def save_charm(self) -> bool:
        """Validate inline first (per-field errors), then let the engine have the last word.

        Returns True when the charm was saved (or, for a new account, once the sign-in that
        adds it has started).
        """
        if self.form is None or self._pending:
            return False
        model = self.form.validate()
        self.save_status.setText("")
        if model is None:
            self.save_status.setText(self.tr("Fix the highlighted fields."))
            return False
        settings = settings_to_save(model)
        interval = timedelta(minutes=self.interval.value())
        name = self.name.text().strip() or None
        editing = self._editing
        if editing is not None:
            return self._apply(
                lambda: self.ctl.engine.update_charm(
                    editing, settings=settings, name=name, interval=interval
                ),
                self.tr("Saved."),
            )
        p = self._current_pattern()
        if p is None:
            self.save_status.setText(self.tr("Choose what to sync first."))
            return False
        account = self.account.currentData() if self.account_row.isVisible() else None
        credential = getattr(p, "credential", None)
        if credential is not None and account is None:
            self.save_status.setText(
                self.tr("Add a {service} account first, with the button beside Account.").format(
                    service=credential.title
                )
            )
            return False
        if account == NEW_ACCOUNT:
            if self._needs_client():
                self.save_status.setText(
                    self.tr("Set up the connection to Google first; your charm is kept here.")
                )
                return False
            scopes = tuple(p.scopes)
            self._pending = True

            def add_for(account_id: str) -> None:
                self.select_account(account_id)
                self._add(p.id, settings, name, interval, account_id)

            def end() -> None:
                self._pending = False

            self._sign_in(None, scopes, self.save_status, then=add_for, on_end=end)
            self.save_status.setText(
                self.tr("Sign in to Google in your browser: the charm is added when you are done.")
            )
            return True
        return self._add(p.id, settings, name, interval, account)

    def _add(
        self,
        pattern_id: str,
        settings: dict[str, Any],
        name: str | None,
        interval: timedelta,
        account_id: str | None,
    ) -> bool:
        holder: list[Any] = []

        def add() -> None:
            holder.append(
                self.ctl.engine.add_charm(
                    pattern_id, settings, name=name, interval=interval, account_id=account_id
                )
            )

        if not self._apply(add, ""):
            return False
        info = holder[0]
        self._editing = info.id
        self._update_charms(self.ctl.snapshot())
        self.edit_charm(info.id)
        actions = self.account_actions
        missing = actions.missing_scopes(account_id) if actions and account_id else ()
        if missing:
            text = self.tr(
                "Added “{name}”; you are now editing it, and it syncs once you allow the access "
                "it needs (Accounts tab, tray menu or notification)."
            )
        else:
            text = self.tr("Added “{name}”; you are now editing it, and it syncs in a moment.")
        self.save_status.setText(text.format(name=info.name))
        return True

    def _apply(self, change: Callable[[], Any], done: str) -> bool:
        assert self.form is not None
        try:
            change()
        except SettingsError as exc:
            if not self.form.show_engine_error(str(exc)):
                self.form.show_general_error(for_gui(exc))
            self.save_status.setText(self.tr("Not saved: fix the highlighted fields."))
            return False
        except TrayappError as exc:
            self.save_status.setText(for_gui(exc))
            return False
        if done:
            self.save_status.setText(done)
        self.ctl.schedule_refresh()
        return True

    # -- general ----------------------------------------------------------------------------

    def _build_general(self) -> None:
        page = QWidget()
        lay = QVBoxLayout(page)
        self.autostart = Autostart()
        st = self.autostart.status()
        self.autostart_box = QCheckBox(self.tr("&Start Pattern Sync when I log in"))
        self.autostart_box.setObjectName("autostart")
        self.autostart_box.setChecked(st.enabled)
        self.autostart_box.toggled.connect(self._toggle_autostart)
        self.autostart_info = QLabel(st.describe())
        self.autostart_info.setObjectName("autostart_info")
        self.autostart_info.setWordWrap(True)
        self.repair = QPushButton(self.tr("&Repair start-up entry"))
        self.repair.setVisible(st.stale)
        self.repair.clicked.connect(self._repair_autostart)
        lay.addWidget(self.autostart_box)
        lay.addWidget(self.autostart_info)
        lay.addWidget(self.repair)
        prefs = UiPrefs.load(_profile_dir(self.ctl))
        self.notify_errors = QCheckBox(
            self.tr("Notify me when a charm &fails or an account needs me")
        )
        self.notify_errors.setChecked(prefs.notify_errors)
        self.notify_new = QCheckBox(self.tr("Notify me about &new items (summary after a sync)"))
        self.notify_new.setChecked(prefs.notify_new_items)
        self.notify_errors.toggled.connect(lambda _v: self._save_prefs())
        self.notify_new.toggled.connect(lambda _v: self._save_prefs())
        lay.addWidget(self.notify_errors)
        lay.addWidget(self.notify_new)
        welcome = QPushButton(self.tr("Show the &welcome window"))
        welcome.setObjectName("show_welcome")
        welcome.clicked.connect(lambda: self.ctl.open_window("welcome"))
        row = QHBoxLayout()
        row.addWidget(welcome)
        row.addStretch(1)
        lay.addLayout(row)
        lay.addStretch(1)
        self.tabs.addTab(page, self.tr("&General"))

    def _toggle_autostart(self, on: bool) -> None:
        st = self.autostart.enable() if on else self.autostart.disable()
        self.autostart_info.setText(st.describe())
        self.repair.setVisible(st.stale)

    def _repair_autostart(self) -> None:
        st = self.autostart.repair()
        self.autostart_info.setText(st.describe())
        self.repair.setVisible(st.stale)

    def _save_prefs(self) -> None:
        prefs = UiPrefs.load(_profile_dir(self.ctl))  # keeps the fields this tab does not show
        prefs.notify_errors = self.notify_errors.isChecked()
        prefs.notify_new_items = self.notify_new.isChecked()
        prefs.grace_seconds = int(self.ctl.policy.grace.total_seconds())
        prefs.save(_profile_dir(self.ctl))
        self.ctl.policy.errors_enabled = prefs.notify_errors
        self.ctl.policy.new_items_summary = prefs.notify_new_items
