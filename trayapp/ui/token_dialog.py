"""The small dialog that takes an API token: a new account of a plugin's service, or a new token
for an account the service stopped accepting ("Sign in again to GitHub (work)…").

The token is typed into a password field (never shown, never logged) and handed to
``trayapp.auth`` through the accounts adapter, which checks it with the service when the
plugin says how, and keeps it in the keychain (or the private file). A refused token keeps the
dialog open with the reason in plain words; nothing is stored then. Non-modal (``open()``), like
every dialog of the app.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from trayapp.ui.wording import for_gui

SaveToken = Callable[[str, str | None], Awaitable[str]]
"""``save(token, name)`` -> the account id; raises with a message the dialog shows."""


def _tr(text: str) -> str:
    return QCoreApplication.translate("TokenDialog", text)


class TokenDialog(QDialog):
    """Paste a token for ``service_title``; ``account`` is None for a new account (then a name
    field is offered too)."""

    def __init__(
        self,
        service_title: str,
        *,
        account: str | None,
        help_url: str,
        save: SaveToken,
        spawn: Callable[[Awaitable[Any]], Any],
        on_saved: Callable[[str], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("token_dialog")
        self.setMinimumWidth(460)
        self._save = save
        self._spawn = spawn
        self._on_saved = on_saved
        self.setWindowTitle(
            _tr("New {service} token").format(service=service_title)
            if account
            else _tr("Add a {service} account").format(service=service_title)
        )
        lay = QVBoxLayout(self)
        intro = QLabel(
            _tr(
                "{service} no longer accepts the saved token of {account}. Enter a new one."
            ).format(service=service_title, account=account)
            if account
            else _tr("Pattern Sync signs in to {service} with a token you make there.").format(
                service=service_title
            )
        )
        intro.setWordWrap(True)
        lay.addWidget(intro)
        if help_url:
            link = QLabel(
                _tr("Make a token at {link}").format(
                    link=f"<a href='{html.escape(help_url, quote=True)}'>"
                    f"{html.escape(help_url)}</a>"
                )
            )
            link.setObjectName("token_help")
            link.setTextFormat(Qt.TextFormat.RichText)
            link.setOpenExternalLinks(True)
            link.setWordWrap(True)
            lay.addWidget(link)
        form = QFormLayout()
        self.name = QLineEdit()
        self.name.setObjectName("token_name")
        self.name.setPlaceholderText(_tr("optional, e.g. work"))
        if account is None:
            form.addRow(_tr("&Name:"), self.name)
        self.token = QLineEdit()
        self.token.setObjectName("token_value")
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setAccessibleName(_tr("Token"))
        form.addRow(_tr("&Token:"), self.token)
        lay.addLayout(form)
        self.status = QLabel("")
        self.status.setObjectName("token_status")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        save_button.setObjectName("token_save")
        save_button.setDefault(True)  # Return in the token field saves
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        self.token.setFocus()

    def submit(self) -> None:
        token = self.token.text().strip()
        if not token:
            self.status.setText(_tr("Paste the token first."))
            return
        name = self.name.text().strip() or None
        self.buttons.setEnabled(False)
        self.status.setText(_tr("Checking the token…"))
        self._spawn(self._store(token, name))

    async def _store(self, token: str, name: str | None) -> None:
        try:
            account_id = await self._save(token, name)
        except Exception as exc:  # shown in words; the dialog stays for another try
            self.status.setText(for_gui(exc))
            self.buttons.setEnabled(True)
            self.adjustSize()  # room for the sentence (a wrapped label does not ask for it)
            return
        self.token.clear()
        self._on_saved(account_id)
        self.accept()
