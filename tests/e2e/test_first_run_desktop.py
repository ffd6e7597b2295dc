"""From a fresh install to synced Gmail and Calendar charms, entirely in the app (issue 12).

Not the demo: an empty profile, and the Google emulator (a separate process, as Google is)
standing in for Google. On a virtual desktop (Xvfb + trayer + dunst on a private D-Bus), driven
with the pointer where the app reports its controls (test mode), like a person would:

first-run welcome window -> "Connect a Google account" -> the wizard's pages -> the client JSON
through the file picker -> "Add a Gmail charm" -> Add -> headless Chromium (one consent page,
Gmail scope on it) -> the charm syncs; then a Calendar charm for the same account -> exactly one
permission request -> it syncs. Screenshots of every step go to out/first-run/.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.desktop import Desktop, ReportLog, missing_tools, wait_for
from tests.emulator.harness import find_chromium, headless_chromium_argv
from trayapp.auth.accounts import AccountManager

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(420),
    pytest.mark.skipif(
        bool(missing_tools()), reason=f"desktop tools missing: {', '.join(missing_tools())}"
    ),
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed"),
]

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "out" / "first-run"
EMAIL = "alice@example.com"
GMAIL_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.readonly"


def browser_script(url_log: Path) -> str:
    """$BROWSER: log the URL (to count consent rounds), then headless Chromium on it."""
    assert CHROMIUM is not None
    argv = headless_chromium_argv(CHROMIUM, "@URL@", "@PROFILE@")
    line = shlex.join(argv).replace("@URL@", '"$1"').replace("@PROFILE@", '"$profile"')
    return (
        "#!/bin/sh\n"
        f'echo "$1" >> {shlex.quote(str(url_log))}\n'
        'profile="$(mktemp -d)"\n'
        f'HOME="$profile" {line} >/dev/null 2>&1 &\n'
    )


@dataclass
class Run:
    desktop: Desktop
    app: subprocess.Popen[bytes]
    report: ReportLog
    emulator: str
    client_json: Path
    url_log: Path
    gmail_id: str = ""
    calendar_id: str = ""

    def control(self, op: str, **kwargs: object) -> object:
        req = urllib.request.Request(
            f"{self.emulator}/__emu__/{op}",
            data=json.dumps(kwargs).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())["result"]

    def widgets(self, window: str, after: int = 0) -> dict[str, tuple[int, int, int, int]]:
        """Where ``window``'s controls are: waits for a report after ``after``; latest wins."""
        self.report.wait(f"TRAYAPP_WIDGETS_DONE {window}", 30, after=after)
        out: dict[str, tuple[int, int, int, int]] = {}
        for line in self.report.lines():
            parts = line.split()
            if parts[0] == "TRAYAPP_WIDGET" and parts[1] == window:
                out[parts[2]] = (int(parts[3]), int(parts[4]), int(parts[5]), int(parts[6]))
        return out

    def click(self, window: str, name: str, after: int = 0) -> None:
        x, y, w, h = self.widgets(window, after)[name]
        self.desktop.click(x + w // 2, y + h // 2, 1)

    def shot(self, name: str) -> Path:
        return self.desktop.screenshot(OUT / f"{name}.png")

    def consent_urls(self) -> list[str]:
        try:
            return self.url_log.read_text().split()
        except FileNotFoundError:
            return []


def _message(n: int) -> str:
    return (
        f"From: Bob <bob@example.com>\r\nTo: {EMAIL}\r\nSubject: Hello {n}\r\n"
        f"Date: Mon, 7 Dec 2026 09:0{n}:00 +0000\r\nMessage-ID: <m{n}@example.com>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nJust checking in.\r\n"
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    work = tmp_path_factory.mktemp("first-run")
    desktop = Desktop(work)
    try:
        desktop.start()
        client_json = work / "home" / "Downloads" / "client_secret_desktop.json"
        client_json.parent.mkdir(parents=True)
        emu = desktop.spawn(
            [sys.executable, "-m", "trayapp.emulator", "--port", "0", "--json",
             "--client-config", str(client_json)],
            log="emulator-stderr",
            stdout=subprocess.PIPE,  # type: ignore[arg-type]
            env=desktop.env(PYTHONPATH=str(REPO)),
        )  # fmt: skip
        assert emu.stdout is not None
        facts = json.loads(emu.stdout.readline())
        url_log = work / "consent-urls.log"
        browser = work / "browser.sh"
        browser.write_text(browser_script(url_log))
        browser.chmod(0o755)
        report = ReportLog(work / "report.log")
        env = desktop.env(
            BROWSER=f"{browser} %s",
            QT_QPA_PLATFORM="xcb",
            TRAYAPP_TEST_REPORT=str(report.path),
            TRAYAPP_NOTIFY_GRACE="2",
            TRAYAPP_SECRET_STORE="file",
            PYTHONPATH=str(REPO),
        )
        app = desktop.spawn(
            [sys.executable, "-m", "trayapp", "--profile", str(work / "profile")],
            log="app",
            env=env,
            cwd=str(REPO),
        )
        r = Run(desktop, app, report, str(facts["base_url"]), client_json, url_log)
        # The Google side: Alice, with a little mail and one event; the consent page is
        # answered "Allow" as she would click it.
        r.control("create_account", email=EMAIL, name="Alice")
        for n in range(3):
            r.control("add_message", email=EMAIL, raw=_message(n))
        r.control(
            "add_event",
            email=EMAIL,
            calendar_id="primary",
            event={
                "summary": "Team lunch",
                "start": {"dateTime": "2026-12-09T12:00:00Z"},
                "end": {"dateTime": "2026-12-09T13:00:00Z"},
            },
        )
        r.control("set_consent", default_account=EMAIL, auto_submit="allow")
        yield r
        if app.poll() is None:
            app.terminate()
            app.wait(timeout=30)
    finally:
        desktop.stop()
        logs = OUT / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for name in ("app.log", "report.log", "notify.log", "consent-urls.log"):
            if (work / name).exists():
                shutil.copy(work / name, logs / name)
        log = work / "app.log"
        if log.exists():
            sys.stderr.write(log.read_text(errors="replace")[-4000:])


def test_first_run_to_a_synced_gmail_charm(run: Run) -> None:
    report = run.report
    # 1. A first start opens the welcome window on its own.
    report.wait("TRAYAPP_WINDOW_SHOWN welcome", 60)
    run.desktop.wait_painted(OUT / "1-welcome.png", (0, 0, 500, 300))
    mark = report.mark()
    run.click("welcome_window", "welcome_google")

    # 2. The wizard: four pages of instructions, then the client JSON by the file picker.
    report.wait("TRAYAPP_WINDOW_SHOWN connect_google", 30, after=mark)
    run.desktop.wait_painted(OUT / "2-wizard-intro.png", (0, 0, 600, 400))
    for page in range(1, 5):
        mark = report.mark()
        run.click("connect_google", "wizard_next")
        report.wait("TRAYAPP_WIDGETS_DONE connect_google", 30, after=mark)
        run.shot(f"2-wizard-page{page}")
    mark = report.mark()
    run.click("connect_google", "choose_file")
    wait_for(lambda: _window(run, "Choose the client JSON"), 30, "the file dialog")
    run.shot("3-file-dialog")
    run.desktop.xdotool("type", "--delay", "20", str(run.client_json))
    run.desktop.xdotool("key", "Return")
    report.wait("TRAYAPP_CLIENT_CHECK ok", 30, after=mark)
    run.shot("3-client-checked")
    mark = report.mark()
    run.click("connect_google", "wizard_next")
    report.wait("TRAYAPP_CLIENT_IMPORTED", 30, after=mark)
    report.wait("TRAYAPP_WIZARD_PAGE DonePage", 30, after=mark)
    run.shot("4-wizard-done")

    # 3. "Add a Gmail charm…" opens Settings on a new Gmail charm; Add signs in first.
    mark = report.mark()
    run.click("connect_google", "done_gmail")
    report.wait("TRAYAPP_WINDOW_SHOWN settings", 30, after=mark)
    run.desktop.wait_painted(OUT / "5-settings-gmail.png", (0, 0, 700, 500))
    widgets = run.widgets("settings_window", mark)
    assert "connect_account" in widgets and "save" in widgets
    mark = report.mark()
    run.click("settings_window", "save")
    report.wait("TRAYAPP_SIGN_IN_DONE", 120, after=mark)
    done = [ln for ln in report.since(mark) if ln.startswith("TRAYAPP_SIGN_IN_DONE")]
    assert done[0].endswith(" ok"), done
    # One consent round, and Gmail's scope was on it.
    (url,) = run.consent_urls()
    scopes = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["scope"][0].split()
    assert GMAIL_SCOPE in scopes and CALENDAR_SCOPE not in scopes
    finished = report.wait("TRAYAPP_RUN_FINISHED", 120, after=mark)[0]
    assert finished.endswith(" ok"), finished
    run.gmail_id = finished.split()[1]
    run.shot("6-gmail-synced")


@pytest.mark.skipif(
    not hasattr(AccountManager, "grant_permission"),
    reason="needs trayapp.auth's needs_permission and incremental consent (issue 12 item 3)",
)
def test_then_a_calendar_charm_asks_permission_once_and_syncs(run: Run) -> None:
    report = run.report
    gmail_id = run.gmail_id
    assert gmail_id, "the Gmail step did not finish"
    # 4. A Calendar charm for the same account: one permission request, then it syncs.
    subprocess.run(["dunstctl", "close-all"], env=run.desktop.env(), check=True)
    before = len(run.desktop.notify_calls())
    mark = report.mark()
    run.click("settings_window", "new_charm")
    run.click("settings_window", "pattern")
    run.desktop.xdotool("type", "--delay", "30", "Google Calendar")
    run.desktop.xdotool("key", "Return")
    run.shot("7-settings-calendar")
    run.click("settings_window", "save")
    # Its first run finds the access missing (no request goes out without it).
    first = wait_for(
        lambda: [
            ln
            for ln in report.since(mark)
            if ln.startswith("TRAYAPP_RUN_FINISHED") and ln.split()[1] != gmail_id
        ],
        120,
        "the Calendar charm's first run",
    )
    assert isinstance(first, list)
    calendar_id = first[0].split()[1]
    run.calendar_id = calendar_id
    assert first[0].endswith(" auth_required"), first
    # The new charm needs access the account has not granted: the account asks, once.
    calls = wait_for(
        lambda: [c for c in run.desktop.notify_calls()[before:] if "Calendar" in c] or None,
        60,
        "the permission notification",
    )
    assert isinstance(calls, list) and len(calls) == 1, calls
    assert "Allow Pattern Sync to read Google Calendar for alice@example.com" in calls[0]
    run.shot("8-permission-notification")
    # The menu offers the same, at its top.
    x, y, w, h = (int(v) for v in report.wait("TRAYAPP_TRAY_GEOMETRY", 30)[0].split()[1:])
    menu_mark = report.mark()
    run.desktop.click(x + w // 2, y + h // 2, 3)
    report.wait("TRAYAPP_MENU_SHOWN", 30, after=menu_mark)
    run.shot("8-permission-menu")
    run.desktop.xdotool("key", "Escape")
    report.wait("TRAYAPP_MENU_HIDDEN", 30, after=menu_mark)
    mark = report.mark()
    subprocess.run(["dunstctl", "action", "0"], env=run.desktop.env(), check=True)
    report.wait("TRAYAPP_SIGN_IN_DONE", 120, after=mark)
    urls = run.consent_urls()
    assert len(urls) == 2, urls
    scopes = urllib.parse.parse_qs(urllib.parse.urlsplit(urls[1]).query)["scope"][0].split()
    assert CALENDAR_SCOPE in scopes
    report.wait(f"TRAYAPP_RUN_FINISHED {calendar_id} ok", 120, after=mark)
    # Only the Calendar charm waited: the grant ran it, and the Gmail charm, which kept its
    # access all along, was neither parked nor re-run.
    assert not [
        ln for ln in report.since(mark) if ln.startswith(f"TRAYAPP_RUN_FINISHED {gmail_id}")
    ]
    # The grant is told in its own words, and its notice takes the "Allow…" one off the screen.
    told = wait_for(
        lambda: [c for c in run.desktop.notify_calls()[before:] if "can now read" in c] or None,
        60,
        "the notice that the permission was granted",
    )
    assert isinstance(told, list) and len(told) == 1, told
    assert "Pattern Sync can now read Google Calendar for alice@example.com" in told[0]
    assert not [c for c in run.desktop.notify_calls()[before:] if "signed in again" in c]
    report.wait("TRAYAPP_NOTIFICATION_CLOSED", 60, after=mark)
    run.shot("9-calendar-synced")
    # dunst never times out a critical notice: with the "Allow…" one closed, the screen clears
    # once the (normal) recovery notice times out.
    cleared = wait_for(
        lambda: _dunst_count(run, "displayed") + _dunst_count(run, "waiting") == 0 or None,
        60,
        "no notification left on screen",
    )
    assert cleared
    assert len([c for c in run.desktop.notify_calls()[before:] if "Calendar" in c]) == 2
    assert len([c for c in run.desktop.notify_calls()[before:] if "Allow Pattern Sync" in c]) == 1


def test_reset_the_calendar_charm_in_settings_and_it_syncs_again_from_scratch(run: Run) -> None:
    """Issue 16.5: Settings' "Reset and resync…" (the CLI's ``charms reset``): asks first with
    what is lost, then the charm's next request to Google is a full sync, not an incremental
    one (no syncToken), and it ends ok."""
    report = run.report
    calendar_id = run.calendar_id
    assert calendar_id, "the Calendar step did not finish"
    # A click on the icon first: a plain sync asks Google for changes only (a syncToken).
    x, y, w, h = (int(v) for v in report.wait("TRAYAPP_TRAY_GEOMETRY", 30)[0].split()[1:])
    before = len(run.control("requests", api_method="calendar.events.list") or [])  # type: ignore[arg-type]
    mark = report.mark()
    run.desktop.click(x + w // 2, y + h // 2, 1)
    report.wait(f"TRAYAPP_RUN_FINISHED {calendar_id} ok", 120, after=mark)
    # Settings still edits the Calendar charm it added: its reset button is on screen.
    widgets = run.widgets("settings_window")
    assert "reset_charm" in widgets
    lists = len(run.control("requests", api_method="calendar.events.list") or [])  # type: ignore[arg-type]
    mark = report.mark()
    run.click("settings_window", "reset_charm")
    report.wait("TRAYAPP_WIDGETS_DONE confirm", 30, after=mark)
    run.shot("9b-reset-confirm")
    run.click("confirm", "confirm_yes", mark)
    report.wait(f"TRAYAPP_CHARM_RESET {calendar_id}", 30, after=mark)
    report.wait(f"TRAYAPP_RUN_FINISHED {calendar_id} ok", 120, after=mark)
    run.shot("9c-reset-done")
    calls = run.control("requests", api_method="calendar.events.list")
    assert isinstance(calls, list) and len(calls) > lists
    # Before the reset the charm held a sync token and asked for changes only; after it, the
    # first list of each calendar starts from nothing.
    assert any("syncToken" in json.dumps(c) for c in calls[before:lists]), calls[before:lists]
    assert all("syncToken" not in json.dumps(c) for c in calls[lists:]), calls[lists:]


def _dunst_count(run: Run, which: str) -> int:
    """How many notifications dunst has ``which`` ("displayed", "waiting", "history")."""
    res = subprocess.run(
        ["dunstctl", "count", which], env=run.desktop.env(), capture_output=True, text=True
    )
    return int(res.stdout.strip() or -1)


def _window(run: Run, title: str) -> str:
    res = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--name", title],
        env=run.desktop.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    return res.stdout.split()[0] if res.stdout.split() else ""


def test_sign_out_sign_in_again_and_remove_the_account_in_settings(run: Run) -> None:
    """Settings > Accounts: sign out (Google revokes), sign in again, remove with the charms."""
    report = run.report
    assert run.gmail_id, "the Gmail step did not finish"
    mark = report.mark()
    run.click("settings_window", "tab:accounts")
    report.wait("TRAYAPP_WIDGETS_DONE settings_window", 30, after=mark)  # the tab's controls
    x, y, w, _h = run.widgets("settings_window")["accounts"]
    run.desktop.click(x + min(w // 2, 120), y + 10, 1)  # the first (only) account
    run.shot("10-accounts")
    revokes = len(run.control("requests", path="/revoke") or [])  # type: ignore[arg-type]

    mark = report.mark()
    run.click("settings_window", "sign_out")
    report.wait("TRAYAPP_ACCOUNT_ACTION signout ok", 60, after=mark)
    assert len(run.control("requests", path="/revoke") or []) == revokes + 1  # type: ignore[arg-type]
    run.shot("11-signed-out")

    mark = report.mark()
    before = len(run.consent_urls())
    run.click("settings_window", "sign_in_again")
    report.wait("TRAYAPP_ACCOUNT_ACTION signin ok", 120, after=mark)
    assert len(run.consent_urls()) == before + 1
    scopes = urllib.parse.parse_qs(urllib.parse.urlsplit(run.consent_urls()[-1]).query)["scope"]
    assert GMAIL_SCOPE in scopes[0].split()  # the union of what its charms need
    run.shot("12-signed-in-again")
    # A click on the icon syncs everything: the new grant works.
    x, y, w, h = (int(v) for v in report.wait("TRAYAPP_TRAY_GEOMETRY", 30)[0].split()[1:])
    mark = report.mark()
    run.desktop.click(x + w // 2, y + h // 2, 1)
    report.wait(f"TRAYAPP_RUN_FINISHED {run.gmail_id} ok", 120, after=mark)

    mark = report.mark()
    run.click("settings_window", "remove_account")
    report.wait("TRAYAPP_WIDGETS_DONE remove_account_box", 30, after=mark)
    run.shot("13-remove-choice")
    run.click("remove_account_box", "remove_with_charms", mark)
    report.wait("TRAYAPP_ACCOUNT_ACTION remove ok", 60, after=mark)
    run.shot("14-removed")
