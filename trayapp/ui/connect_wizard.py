"""Connect Google, guided: make a Desktop-app OAuth client, import its JSON, sign in.

Pattern Sync talks to Google with the user's own OAuth client (Google's rules for apps that read
Gmail make a shared one impractical). The wizard walks through the Google Cloud console pages
that make one, then takes the downloaded JSON by file picker, drag and drop or paste, checks it
(a Web client, some other JSON, a truncated copy each get their own sentence), stores it, and
offers the next step: a Gmail or Calendar charm (Google is asked for exactly that access when the
charm is added) or a plain sign-in.

Console pages (Google Auth Platform, 2025 layout; older projects show the same under
APIs & Services): projectcreate, apis/library/<api>, auth/branding, auth/audience, auth/clients.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWizard,
    QWizardPage,
)

from trayapp import DISPLAY_NAME
from trayapp.ui.accounts import AccountActions, ClientSummary
from trayapp.ui.wording import for_gui

if TYPE_CHECKING:
    from trayapp.ui.tray import TrayController

CONSOLE = "https://console.cloud.google.com"
PAGES = {
    "project": f"{CONSOLE}/projectcreate",
    "gmail_api": f"{CONSOLE}/apis/library/gmail.googleapis.com",
    "calendar_api": f"{CONSOLE}/apis/library/calendar-json.googleapis.com",
    "branding": f"{CONSOLE}/auth/branding",
    "audience": f"{CONSOLE}/auth/audience",
    "clients": f"{CONSOLE}/auth/clients",
}
MAX_CLIENT_FILE = 64 * 1024  # a client JSON is under 1 KB; anything this big is another file


def _tr(text: str) -> str:
    return QCoreApplication.translate("ConnectGoogleWizard", text)


def _link(key: str, text: str) -> str:
    return f'<a href="{PAGES[key]}">{text}</a>'


def problem_with(text: str) -> str | None:
    """The GUI's sentence for what is wrong with a pasted or chosen client JSON (None: fine).

    Catches what people actually bring: nothing, a partial copy, some other JSON (a service
    account key, a token file), a Web-application client. The full check (fields, URLs) is
    auth's ``parse_client_json``; its message is then put in GUI words.
    """
    stripped = text.strip()
    if not stripped:
        return _tr("Choose the file, drop it here, or paste its text.")
    try:
        doc = json.loads(stripped)
    except json.JSONDecodeError as exc:
        cut = exc.pos >= len(stripped) - 1 or exc.msg.startswith("Unterminated")
        if stripped.startswith("{") and (cut or stripped.count("{") > stripped.count("}")):
            return _tr(
                "This JSON is cut off before its end: copy all of it, or choose the file instead."
            )
        return _tr(
            "This is not a client JSON file: use Download JSON on your client's page in the "
            "Google Cloud console."
        )
    if not isinstance(doc, dict):
        return _tr("This JSON is not an OAuth client file: use the one from Download JSON.")
    if "web" in doc and "installed" not in doc:
        return _tr(
            "This is a Web application client; Pattern Sync needs a Desktop app client: create "
            "one with Application type “Desktop app”."
        )
    if doc.get("type") == "service_account":
        return _tr(
            "This is a service account key, not an OAuth client: create an OAuth client of "
            "type “Desktop app” instead."
        )
    if "installed" not in doc:
        return _tr(
            "This JSON is not an OAuth client file: use Download JSON on the page of your "
            "Desktop app client."
        )
    body = doc["installed"]
    missing = (
        [k for k in ("client_id", "client_secret", "auth_uri", "token_uri") if not body.get(k)]
        if isinstance(body, dict)
        else ["client_id"]
    )
    if missing:
        return _tr(
            "This client file is missing {fields}: download it again from your client's page."
        ).format(fields=", ".join(missing))
    return None


class _Page(QWizardPage):
    def __init__(self, title: str, subtitle: str = "") -> None:
        super().__init__()
        self.setTitle(title)
        if subtitle:
            self.setSubTitle(subtitle)
        self.body = QVBoxLayout(self)

    def text(self, html: str, name: str = "") -> QLabel:
        label = QLabel(html)
        label.setWordWrap(True)
        label.setTextFormat(Qt.TextFormat.RichText)
        label.setOpenExternalLinks(True)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        if name:
            label.setObjectName(name)
        self.body.addWidget(label)
        return label


class ImportPage(_Page):
    """File picker, drag and drop, or paste; checked as it arrives; stored on Next."""

    def __init__(self, wizard: ConnectGoogleWizard) -> None:
        super().__init__(
            _tr("Give Pattern Sync your client"),
            _tr("Choose the JSON file you downloaded, drop it here, or paste its text."),
        )
        self.wiz = wizard
        self.setAcceptDrops(True)
        row = QHBoxLayout()
        self.choose = QPushButton(_tr("&Choose file…"))
        self.choose.setObjectName("choose_file")
        self.choose.clicked.connect(self.pick_file)
        row.addWidget(self.choose)
        self.source = QLabel("")
        self.source.setObjectName("client_source")
        row.addWidget(self.source, 1)
        self.body.addLayout(row)
        paste_label = QLabel(_tr("Or &paste the JSON:"))
        self.body.addWidget(paste_label)
        self.paste = QPlainTextEdit()
        self.paste.setObjectName("client_json")
        self.paste.setAccessibleName(_tr("Client JSON"))
        self.paste.setPlaceholderText('{"installed": {"client_id": "…", …}}')
        self.paste.setAcceptDrops(False)  # drops go to the page (files and text alike)
        paste_label.setBuddy(self.paste)
        self.paste.textChanged.connect(self._edited)
        self.body.addWidget(self.paste, 1)
        self.verdict = QLabel("")
        self.verdict.setObjectName("client_verdict")
        self.verdict.setWordWrap(True)
        self.body.addWidget(self.verdict)
        self._source: str | None = None
        self._ok: ClientSummary | None = None
        self._dialog: QFileDialog | None = None

    def initializePage(self) -> None:
        """Each visit starts empty: a client imported before is not offered again."""
        self._source = None
        self.source.setText("")
        self.paste.blockSignals(True)
        self.paste.clear()
        self.paste.blockSignals(False)
        self._show(None, "")

    # -- input --------------------------------------------------------------------------------

    def pick_file(self) -> None:
        # Non-modal (open(), not exec()): no nested event loop inside the qasync loop.
        dialog = QFileDialog(self, _tr("Choose the client JSON"), str(Path.home() / "Downloads"))
        dialog.setObjectName("client_file_dialog")
        dialog.setNameFilters([_tr("Client JSON (*.json)"), _tr("All files (*)")])
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        dialog.fileSelected.connect(self.load_file)
        self._dialog = dialog
        dialog.open()

    def load_file(self, path: str) -> None:
        p = Path(path)
        try:
            if p.stat().st_size > MAX_CLIENT_FILE:
                self._show(None, _tr("This file is far too big to be a client JSON."))
                return
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            self._show(None, _tr("This file is not text, so it is not a client JSON."))
            return
        except OSError:
            self._show(None, _tr("This file could not be read: check it still exists."))
            return
        self._source = str(p)
        self.source.setText(p.name)
        self.paste.blockSignals(True)
        self.paste.setPlainText(text)
        self.paste.blockSignals(False)
        self.check()

    def _edited(self) -> None:
        self._source = None
        self.source.setText("")
        self.check()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasText():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        mime = event.mimeData()
        files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
        if files:
            self.load_file(files[0])
        elif mime.hasText():
            self.paste.setPlainText(mime.text())
        event.acceptProposedAction()

    # -- checking -----------------------------------------------------------------------------

    def check(self) -> ClientSummary | None:
        text = self.paste.toPlainText()
        problem = problem_with(text)
        summary: ClientSummary | None = None
        actions = self.wiz.account_actions
        if problem is None and actions is not None:
            try:
                summary = actions.check_client(text, self._source)
            except Exception as exc:
                problem = for_gui(exc)
        if summary is not None:
            where = summary.project_id or _tr("your project")
            what = _tr("A Desktop app client of {project}.").format(project=where)
            if not summary.is_google:
                what = _tr("A Desktop app client of a local test server ({project}).").format(
                    project=where
                )
            self._show(summary, "✓ " + what)
            self.wiz.ctl.report("TRAYAPP_CLIENT_CHECK ok")
        else:
            self._show(None, problem or "")
            self.wiz.ctl.report("TRAYAPP_CLIENT_CHECK problem")
        return summary

    def _show(self, summary: ClientSummary | None, text: str) -> None:
        self._ok = summary
        self.verdict.setText(text)
        self.verdict.setStyleSheet("" if summary is not None else "color: #c0392b")
        self.verdict.setAccessibleDescription(text)
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self._ok is not None

    def validatePage(self) -> bool:
        actions = self.wiz.account_actions
        if actions is None or self._ok is None:
            return False
        try:
            actions.import_client(self.paste.toPlainText(), self._source)
        except Exception as exc:
            self._show(None, for_gui(exc))
            return False
        self.wiz.ctl.report("TRAYAPP_CLIENT_IMPORTED")
        return True


class DonePage(_Page):
    def __init__(self, wizard: ConnectGoogleWizard) -> None:
        super().__init__(
            _tr("Pattern Sync can reach Google"),
            _tr("Your client is saved. Now choose what to sync."),
        )
        self.wiz = wizard
        self.text(
            _tr(
                "When you add a Gmail or Calendar charm, Pattern Sync opens Google's sign-in page "
                "in your browser and asks for exactly the access that charm needs: read-only, "
                "nothing is ever changed or sent."
            )
        )
        for key, label, pattern in (
            ("done_gmail", _tr("Add a &Gmail charm…"), "gmail-importer"),
            ("done_calendar", _tr("Add a Ca&lendar charm…"), "gcalendar-importer"),
        ):
            button = QPushButton(label)
            button.setObjectName(key)
            button.clicked.connect(lambda _c=False, p=pattern: self.wiz.add_charm(p))
            self.body.addWidget(button, 0, Qt.AlignmentFlag.AlignLeft)
        self.sign_in = QPushButton(_tr("&Sign in without a charm for now"))
        self.sign_in.setObjectName("done_sign_in")
        self.sign_in.clicked.connect(self.wiz.sign_in)
        self.body.addWidget(self.sign_in, 0, Qt.AlignmentFlag.AlignLeft)
        self.body.addStretch(1)


class ConnectGoogleWizard(QWizard):
    """Opened from the welcome window, Settings (Set up / Replace client), or a sign-in that
    found no client. Non-modal; reopening starts it again from the top."""

    def __init__(self, ctl: TrayController) -> None:
        super().__init__()
        self.ctl = ctl
        self.setObjectName("connect_google")
        self.setWindowTitle(_tr("{app}: Connect a Google account").format(app=DISPLAY_NAME))
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, True)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, True)
        self.resize(660, 470)

        intro = _Page(
            _tr("Connect a Google account"),
            _tr("About ten minutes, once. You need a Google account and a web browser."),
        )
        intro.text(
            _tr(
                "Pattern Sync reads your mail and calendar straight from Google, with no server "
                "of ours in between. For that, Google asks every user of an app like this to "
                "register it in their own Google Cloud project as an <b>OAuth client</b> of type "
                "<b>Desktop app</b>. It costs nothing and needs no billing account."
            )
        )
        intro.text(
            _tr(
                "The next pages say exactly what to click. Each link opens the right page of "
                "the Google Cloud console in your browser; keep this window open beside it."
            )
        )

        project = _Page(
            _tr("Step 1: a project with the Gmail and Calendar APIs"),
            _tr("Sign in to the console with the Google account you want to sync."),
        )
        project.text(
            _tr(
                "<ol>"
                "<li>Open {project} and create a project (any name, for example "
                "“Pattern Sync”). Make sure it is selected at the top of the console.</li>"
                "<li>Open {gmail} and click <b>Enable</b>.</li>"
                "<li>Open {calendar} and click <b>Enable</b>.</li>"
                "</ol>"
            ).format(
                project=_link("project", _tr("New project")),
                gmail=_link("gmail_api", _tr("Gmail API")),
                calendar=_link("calendar_api", _tr("Google Calendar API")),
            ),
            "steps_project",
        )

        consent = _Page(
            _tr("Step 2: the consent screen, in Testing"),
            _tr("This is what Google shows you when Pattern Sync asks for access."),
        )
        consent.text(
            _tr(
                "<ol>"
                "<li>Open {branding} and click <b>Get started</b>. App name: “Pattern Sync”; "
                "support email: yours. Audience: <b>External</b>. Contact email: yours. "
                "Agree and click <b>Create</b>.</li>"
                "<li>Open {audience}. Under <b>Test users</b> click <b>Add users</b> and add "
                "your own Gmail address.</li>"
                "</ol>"
            ).format(
                branding=_link("branding", _tr("Branding")),
                audience=_link("audience", _tr("Audience")),
            ),
            "steps_consent",
        )
        consent.text(
            _tr(
                "<b>What Testing means:</b> only the test users you added can sign in, and Google "
                "shows a warning that the app is not verified (it is yours: continue). Google "
                "also ends each sign-in after <b>7 days</b>, so Pattern Sync will ask you to sign "
                "in again once a week. To stop that, click <b>Publish app</b> on the Audience "
                "page once everything works."
            ),
            "testing_mode",
        )

        client = _Page(
            _tr("Step 3: a Desktop app client"),
            _tr("The client is what identifies Pattern Sync to Google."),
        )
        client.text(
            _tr(
                "<ol>"
                "<li>Open {clients} and click <b>Create client</b>.</li>"
                "<li>Application type: <b>Desktop app</b> (not “Web application”). Name: "
                "“Pattern Sync”. Click <b>Create</b>.</li>"
                "<li>In the dialog that follows, click <b>Download JSON</b>. The file is named "
                "like <tt>client_secret_….apps.googleusercontent.com.json</tt>.</li>"
                "</ol>"
            ).format(clients=_link("clients", _tr("Clients"))),
            "steps_client",
        )
        self.import_page = ImportPage(self)
        self.done_page = DonePage(self)
        for page in (intro, project, consent, client, self.import_page, self.done_page):
            self.addPage(page)
        self.setButtonText(QWizard.WizardButton.FinishButton, _tr("&Done"))
        for which, name in (
            (QWizard.WizardButton.NextButton, "wizard_next"),
            (QWizard.WizardButton.BackButton, "wizard_back"),
            (QWizard.WizardButton.FinishButton, "wizard_finish"),
            (QWizard.WizardButton.CancelButton, "wizard_cancel"),
        ):
            self.button(which).setObjectName(name)
        self.currentIdChanged.connect(lambda _i: self._page_shown())

    def _page_shown(self) -> None:
        page = self.currentPage()
        self.ctl.report(f"TRAYAPP_WIZARD_PAGE {type(page).__name__} {self.currentId()}")
        self.ctl.report_widgets(self)

    @property
    def account_actions(self) -> AccountActions | None:
        acc = self.ctl.accounts
        return acc if isinstance(acc, AccountActions) else None

    def focus(self, arg: str | None) -> None:
        """Start from the top, or at the import page (``arg == "import"``)."""
        self.restart()
        if arg == "import":
            while self.currentPage() is not self.import_page:
                self.next()

    def add_charm(self, pattern_id: str) -> None:
        self.ctl.open_window("settings", f"charms:new:{pattern_id}")
        self.accept()

    def sign_in(self) -> None:
        settings: Any = self.ctl.open_window("settings", "accounts")
        start = getattr(settings, "start_add_account", None)
        if callable(start):
            start()
        self.accept()
