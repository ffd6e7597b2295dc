"""The one choice when the system keychain cannot keep a sign-in (issue 12 item 7, GUI side).

``trayapp.auth`` holds the grant it could not store and raises ``KeyringUnavailable`` with a
``pending_id``. Instead of a silent failure or a second consent page, the user gets one dialog:
try the keychain again (after unlocking or creating it), or keep the sign-in in a file in the
profile that only they can read. Non-modal (``open()``), like every dialog of the app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import QMessageBox

from trayapp.ui.wording import for_gui


def _tr(text: str) -> str:
    return QCoreApplication.translate("KeyringChoice", text)


def is_keyring_choice(error: BaseException | None) -> bool:
    """A sign-in whose grant waits for the user's keychain choice."""
    return (
        error is not None
        and type(error).__name__ == "KeyringUnavailable"
        and bool(getattr(error, "pending_id", None))
    )


class KeyringChoice(QMessageBox):
    """ "Try the keychain again" / "Keep it in a private file" / Cancel, for one pending grant."""

    def __init__(
        self,
        error: BaseException,
        store: Callable[[str, bool], Awaitable[Any]],
        spawn: Callable[[Awaitable[Any]], Any],
        on_done: Callable[[str], None],
    ) -> None:
        super().__init__()
        self.setObjectName("keyring_choice")
        self.error = error
        self._store = store
        self._spawn = spawn
        self._on_done = on_done
        email = str(getattr(error, "email", "") or "")
        self.setIcon(QMessageBox.Icon.Warning)
        self.setWindowTitle(_tr("Where to keep your sign-in"))
        self.setText(
            _tr("The system keychain could not keep the sign-in of {email}.").format(email=email)
        )
        self.setInformativeText(
            _tr(
                "Unlock or create the keychain (for example in Passwords and Keys) and try again, "
                "or keep the sign-in in a file in your Pattern Sync folder that only you can "
                "read: less protected than the keychain, but it works everywhere. You do not "
                "need to sign in to Google again either way."
            )
        )
        detail = str(getattr(error, "detail", "") or "")
        if detail:
            self.setDetailedText(detail)
        self.retry = self.addButton(
            _tr("&Try the keychain again"), QMessageBox.ButtonRole.AcceptRole
        )
        self.retry.setObjectName("keyring_retry")
        self.use_file = self.addButton(
            _tr("&Keep it in a private file"), QMessageBox.ButtonRole.DestructiveRole
        )
        self.use_file.setObjectName("keyring_file")
        self.cancel = self.addButton(QMessageBox.StandardButton.Cancel)
        self.setDefaultButton(self.retry)
        self.finished.connect(self._chosen)

    def _chosen(self, _result: int) -> None:
        clicked = self.clickedButton()
        self.deleteLater()
        if clicked not in (self.retry, self.use_file):
            self._on_done(_tr("Sign-in not saved."))
            return
        pending = str(getattr(self.error, "pending_id", ""))
        use_file = clicked is self.use_file

        async def finish() -> None:
            try:
                await self._store(pending, use_file)
            except Exception as exc:
                if is_keyring_choice(exc):
                    again = KeyringChoice(exc, self._store, self._spawn, self._on_done)
                    again.open()
                    return
                self._on_done(for_gui(exc))
                return
            self._on_done(
                _tr("Signed in; the sign-in is kept in a private file.")
                if use_file
                else _tr("Signed in; the sign-in is kept in the keychain.")
            )

        self._spawn(finish())
