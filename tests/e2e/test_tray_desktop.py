"""``trayapp --demo`` on a real (virtual) desktop, driven with the mouse like a person would.

Xvfb + trayer (XEmbed tray host) + dunst on a private D-Bus session; the app runs with the xcb
platform and reports, in test mode, where its icon is and what it did. Screenshots go to
out/e2e/ (kept as CI artifacts). Tests in this module share one desktop and one app and run in
order, as one user session.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.desktop import Desktop, ReportLog, missing_tools, wait_for
from tests.emulator.harness import find_chromium, headless_chromium_argv

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        bool(missing_tools()), reason=f"desktop tools missing: {', '.join(missing_tools())}"
    ),
]

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "out" / "e2e"
SCREEN_WIDTH = 1024  # Desktop starts Xvfb at 1024x768
CHROMIUM = find_chromium()
DEMO_EMAIL = "demo@example.com"


def browser_script() -> str:
    """$BROWSER for the app: headless Chromium with the emulator's shared flags, a fresh
    profile (also as HOME) per sign-in, backgrounded in the app's process group (killed with it)."""
    if CHROMIUM is None:
        return "#!/bin/sh\necho 'no Chromium installed' >&2\nexit 1\n"
    argv = headless_chromium_argv(CHROMIUM, "@URL@", "@PROFILE@")
    line = shlex.join(argv).replace("@URL@", '"$1"').replace("@PROFILE@", '"$profile"')
    return f'#!/bin/sh\nprofile="$(mktemp -d)"\nHOME="$profile" {line} >/dev/null 2>&1 &\n'


def app_module() -> str:
    """The module the desktop tests start, as a user's ``trayapp`` does."""
    return "trayapp"


@dataclass
class Session:
    desktop: Desktop
    app: subprocess.Popen[bytes]
    report: ReportLog
    profile: Path
    feeds: str
    icon: tuple[int, int]  # centre of the tray icon
    tray_area: tuple[int, int, int, int]  # a box around the icon, for close-up screenshots
    emulator: str  # the demo's Google emulator, "" when the Google patterns are absent

    def app_cmd(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            app_module(),
            "--demo",
            "--profile",
            str(self.profile),
            *extra,
        ]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    work = tmp_path_factory.mktemp("desktop")
    desktop = Desktop(work)
    try:
        desktop.start()
        profile = work / "profile"
        report = ReportLog(work / "report.log")
        # The app opens sign-in pages with $BROWSER: headless Chromium (see browser_script).
        browser = work / "browser.sh"
        browser.write_text(browser_script())
        browser.chmod(0o755)
        env = desktop.env(
            BROWSER=f"{browser} %s",
            QT_QPA_PLATFORM="xcb",
            TRAYAPP_TEST_REPORT=str(report.path),
            TRAYAPP_NOTIFY_GRACE="2",  # the 15 s default quiet period, shortened for the test
            PYTHONPATH=str(REPO),
            PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        )
        app = desktop.spawn(
            [sys.executable, "-m", app_module(), "--demo", "--profile", str(profile)],
            log="app",
            env=env,
            cwd=str(REPO),
        )
        geo = report.wait("TRAYAPP_TRAY_GEOMETRY", 60)[0].split()[1:]
        x, y, w, h = (int(v) for v in geo)
        feeds = report.wait("TRAYAPP_DEMO_FEEDS")[0].split()[1]
        # The demo's first pass: the three feed charms sync once at start.
        for slug in ("project-news", "release-notes", "team-blog"):
            report.wait(f"TRAYAPP_RUN_FINISHED {slug} ok", 60)
        left = max(0, x - 40)
        area = (left, 0, min(SCREEN_WIDTH - left, w + 80), y + h + 4)
        try:  # the demo's Google half joins once its emulator process answers
            emu = [report.wait("TRAYAPP_DEMO_EMULATOR", 60)[0].split()[1]]
        except TimeoutError:
            emu = []  # the Google patterns are absent
        centre = (x + w // 2, y + h // 2)
        yield Session(desktop, app, report, profile, feeds, centre, area, emu[0] if emu else "")
        if app.poll() is None:
            app.terminate()
            app.wait(timeout=30)
    finally:
        desktop.stop()
        log = work / "app.log"
        if log.exists():
            sys.stderr.write(log.read_text(errors="replace")[-4000:])


def _displayed(session: Session) -> int:
    """How many notifications dunst shows right now (its own D-Bus control interface)."""
    res = subprocess.run(
        ["dunstctl", "count", "displayed"],
        env=session.desktop.env(),
        capture_output=True,
        check=False,
    )
    return int(res.stdout.strip() or 0)


def _window(session: Session, title: str) -> str:
    res = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--name", f"^{title}$"],
        env=session.desktop.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    return res.stdout.split()[0] if res.stdout.split() else ""


def test_left_click_syncs_everything(session: Session) -> None:
    session.desktop.screenshot(OUT / "tray-ok.png", session.tray_area)
    mark = session.report.mark()
    session.desktop.click(*session.icon, 1)
    session.report.wait("TRAYAPP_CLICKED sync_all", after=mark)
    fetched = session.report.wait("TRAYAPP_DEMO_REQUEST", 60, after=mark, count=3)
    assert sorted(ln.split()[-1] for ln in fetched[:3]) == [
        "/project-news.xml",
        "/release-notes.xml",
        "/team-blog.xml",
    ]
    session.report.wait("TRAYAPP_RUN_FINISHED", 60, after=mark, count=3)


def test_right_click_opens_the_menu(session: Session) -> None:
    mark = session.report.mark()
    x, y, w, h = session.desktop.open_menu(session.report, session.icon).geometry
    assert w > 200 and h > 200  # header, actions, three charms, accounts, settings, quit
    shot = session.desktop.screenshot(OUT / "menu.png")
    assert shot.stat().st_size > 5000
    # A right click is not a sync.
    assert not [ln for ln in session.report.since(mark) if ln.startswith("TRAYAPP_CLICKED")]
    # Open "Project news" (4th entry: header, Sync all now, Pause all, Project news) with the
    # keyboard; its submenu (details and actions) opens to the left of the menu.
    session.desktop.xdotool("key", "Down", "Down", "Down", "Down", "Right")
    session.desktop.wait_painted(OUT / "menu-charm.png", (max(0, x - 260), y + 60, 240, 120))
    session.desktop.xdotool("key", "Escape", "Escape")
    session.report.wait("TRAYAPP_MENU_HIDDEN", after=mark)


def test_a_failing_charm_gives_the_error_icon_and_exactly_one_notification(
    session: Session,
) -> None:
    urllib.request.urlopen(f"{session.feeds}/_demo/fail/team-blog", timeout=10).read()
    before = len(session.desktop.notify_calls())
    for _attempt in range(3):  # transient failures must repeat before they are worth a notice
        mark = session.report.mark()
        session.desktop.click(*session.icon, 1)
        session.report.wait("TRAYAPP_RUN_FINISHED team-blog server_error", 60, after=mark)
    session.report.wait("TRAYAPP_ICON_STATE error")
    session.report.wait("TRAYAPP_NOTIFIED desktop failing Team blog stopped syncing")
    session.desktop.screenshot(OUT / "tray-error.png", session.tray_area)
    calls = wait_for(
        lambda: session.desktop.notify_calls()[before:] or None, 30, "the Notify call on D-Bus"
    )
    assert isinstance(calls, list)
    assert len(calls) == 1, calls
    assert "Team blog stopped syncing" in calls[0] and "HTTP 503" in calls[0]
    assert "Show activity" in calls[0]  # the action button travels with the notification
    wait_for(lambda: _displayed(session) >= 1, 30, "dunst to show the notification")
    session.desktop.screenshot(OUT / "notification.png")
    # The notification's action button ("Show activity") reaches the app over D-Bus and opens
    # the Activity window on that charm.
    mark = session.report.mark()
    subprocess.run(["dunstctl", "action", "0"], env=session.desktop.env(), check=True)
    session.report.wait("TRAYAPP_COMMAND activity:team-blog", after=mark)
    session.report.wait("TRAYAPP_WINDOW_SHOWN activity", after=mark)
    wait_for(lambda: _window(session, "Pattern Sync: Activity"), 30, "the Activity window")
    # Mapped is not painted: wait until the window's area (top-left, no window manager) shows
    # something other than the black root window.
    session.desktop.wait_painted(OUT / "activity.png", (0, 0, 860, 520))
    wid = _window(session, "Pattern Sync: Activity")
    session.desktop.xdotool("windowunmap", wid)
    mark = session.report.mark()
    session.desktop.open_menu(session.report, session.icon)
    session.desktop.screenshot(OUT / "menu-error.png")
    session.desktop.xdotool("key", "Escape")
    session.report.wait("TRAYAPP_MENU_HIDDEN", after=mark)
    # More failures of the same kind: no more notifications.
    mark = session.report.mark()
    session.desktop.click(*session.icon, 1)
    session.report.wait("TRAYAPP_RUN_FINISHED team-blog server_error", 60, after=mark)
    # Recovery is told once.
    urllib.request.urlopen(f"{session.feeds}/_demo/heal/team-blog", timeout=10).read()
    mark = session.report.mark()
    session.desktop.click(*session.icon, 1)
    session.report.wait("TRAYAPP_RUN_FINISHED team-blog ok", 60, after=mark)
    session.report.wait("TRAYAPP_NOTIFIED desktop recovered", after=mark)
    session.report.wait("TRAYAPP_ICON_STATE ok", after=mark)
    calls = wait_for(
        lambda: (c := session.desktop.notify_calls()[before:]) and len(c) >= 2 and c, 30, "recovery"
    )
    assert isinstance(calls, list) and len(calls) == 2 and "syncing again" in calls[1]


def test_a_second_launch_talks_to_the_running_app(session: Session) -> None:
    mark = session.report.mark()
    second = subprocess.run(
        session.app_cmd(),
        env=session.desktop.env(QT_QPA_PLATFORM="xcb", PYTHONPATH=str(REPO)),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 0
    assert b"already running" in second.stderr
    session.report.wait("TRAYAPP_MENU_SHOWN", after=mark)  # the running app showed its menu
    session.desktop.xdotool("key", "Escape")
    session.report.wait("TRAYAPP_MENU_HIDDEN", after=mark)


def test_cli_sync_goes_through_the_running_tray(session: Session) -> None:
    mark = session.report.mark()
    done = subprocess.run(
        [sys.executable, "-m", "trayapp", "--profile", str(session.profile), "sync", "team-blog"],
        env=session.desktop.env(PYTHONPATH=str(REPO)),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # The tray's engine ran it (a second engine would not report through the tray).
    session.report.wait("TRAYAPP_DEMO_REQUEST GET /team-blog.xml", 60, after=mark)
    session.report.wait("TRAYAPP_RUN_FINISHED team-blog ok", 60, after=mark)


def _tray_pixels(session: Session, name: str) -> bytes:
    """The tray icon's own pixels (a small crop, not scaled), as raw RGB."""
    path = session.desktop.screenshot(OUT / name)
    x, y = session.icon
    res = subprocess.run(
        ["convert", str(path), "-crop", f"16x16+{x - 8}+{y - 8}", "+repage", "rgb:-"],
        capture_output=True,
        check=True,
    )
    return res.stdout


def test_a_click_shows_syncing_at_once(session: Session) -> None:
    """Issue 15: in 15 screenshots after a click the syncing badge never appeared."""

    def settled() -> bool:
        states = [ln for ln in session.report.lines() if ln.startswith("TRAYAPP_ICON_STATE")]
        return bool(states) and states[-1] == "TRAYAPP_ICON_STATE ok"

    wait_for(settled, 60, "the icon to show all synced")
    idle = _tray_pixels(session, "tray-before-click.png")
    mark = session.report.mark()
    session.desktop.click(*session.icon, 1)
    session.report.wait("TRAYAPP_CLICKED sync_all", after=mark)
    # The first screenshot after the click report already shows the new icon (the click
    # handler sets it before any run starts; it stays for at least 1.2 s however fast the
    # runs are), so this is not a race against the sync.
    t0 = time.monotonic()
    busy = _tray_pixels(session, "tray-syncing.png")
    took = time.monotonic() - t0
    lines = session.report.since(mark)
    clicked = lines.index("TRAYAPP_CLICKED sync_all")
    assert lines[clicked + 1] == "TRAYAPP_ICON_STATE syncing", lines[clicked : clicked + 4]
    assert busy != idle, "the tray icon did not change after the click"
    session.desktop.screenshot(OUT / "tray-syncing-closeup.png", session.tray_area)
    (OUT / "click-to-syncing.txt").write_text(f"screenshot taken {took * 1000:.0f} ms after\n")
    session.report.wait("TRAYAPP_ICON_STATE ok", 60, after=mark)
    assert _tray_pixels(session, "tray-after-sync.png") != busy


def test_one_outage_on_one_account_is_one_notification_and_one_recovery(
    session: Session,
) -> None:
    """TCP resets on the demo account's Gmail and Calendar: one notice, one recovery notice."""
    assert session.emulator, "demo mode did not start the Google emulator"
    session.report.wait("TRAYAPP_RUN_FINISHED demo-gmail ok", 120)
    session.report.wait("TRAYAPP_RUN_FINISHED demo-calendar ok", 120)
    subprocess.run(["dunstctl", "close-all"], env=session.desktop.env(), check=True)
    before = len(session.desktop.notify_calls())
    rule = _control(session, "add_fault", kind="reset", account=DEMO_EMAIL)
    mark = session.report.mark()
    # Transient failures must repeat before they are worth telling: click until both charms
    # of the account have failed twice.
    for _ in range(6):
        step = session.report.mark()
        session.desktop.click(*session.icon, 1)
        session.report.wait("TRAYAPP_RUN_FINISHED demo-gmail", 90, after=step)
        session.report.wait("TRAYAPP_RUN_FINISHED demo-calendar", 90, after=step)
        done = session.report.since(mark)
        failed = {
            cid: sum(1 for ln in done if ln.startswith(f"TRAYAPP_RUN_FINISHED {cid} ")
                     and not ln.endswith(" ok"))
            for cid in ("demo-gmail", "demo-calendar")
        }  # fmt: skip
        if min(failed.values()) >= 2:
            break
    assert min(failed.values()) >= 2, failed
    session.report.wait("TRAYAPP_NOTIFIED desktop failing", 60, after=mark)
    session.desktop.screenshot(OUT / "tray-offline.png", session.tray_area)
    wait_for(lambda: _displayed(session) >= 1, 30, "dunst to show the notification")
    session.desktop.screenshot(OUT / "notification-outage.png")
    calls = session.desktop.notify_calls()[before:]
    assert len(calls) == 1, calls
    # Recovery: Google answers again; one notice for both charms.
    _control(session, "clear_faults", rule_id=rule)
    mark = session.report.mark()
    session.desktop.click(*session.icon, 1)
    session.report.wait("TRAYAPP_RUN_FINISHED demo-gmail ok", 90, after=mark)
    session.report.wait("TRAYAPP_RUN_FINISHED demo-calendar ok", 90, after=mark)
    session.report.wait("TRAYAPP_NOTIFIED desktop recovered", 60, after=mark)
    calls = wait_for(
        lambda: (c := session.desktop.notify_calls()[before:]) and len(c) >= 2 and c, 30, "recovery"
    )
    assert isinstance(calls, list)
    failing = [c for c in calls if "stopped syncing" in c]
    recovered = [c for c in calls if "syncing again" in c]
    assert len(failing) == 1 and len(recovered) == 1 and len(calls) == 2, calls
    assert "Demo Gmail" in recovered[0] and "Demo Calendar" in recovered[0]
    # Said once: the body does not repeat that it retries.
    assert failing[0].lower().count("retr") <= 1, failing[0]
    subprocess.run(["dunstctl", "close-all"], env=session.desktop.env(), check=True)


def _gmail_inbox_ids(session: Session, limit: int) -> list[str]:
    """What Gmail (the emulator) lists for the demo charm's query, newest first."""
    from trayapp.emulator.seed import DEMO_CLIENT_ID

    tokens = _control(
        session,
        "issue_tokens",
        email=DEMO_EMAIL,
        client_id=DEMO_CLIENT_ID,
        scopes=["https://www.googleapis.com/auth/gmail.readonly"],
    )
    assert isinstance(tokens, dict)
    ids: list[str] = []
    page = ""
    while len(ids) < limit:
        url = f"{session.emulator}/gmail/v1/users/me/messages?q=in%3Ainbox&maxResults=500{page}"
        req = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = json.loads(resp.read())
        ids += [m["id"] for m in body.get("messages", [])]
        if not body.get("nextPageToken"):
            break
        page = f"&pageToken={body['nextPageToken']}"
    # Leave the account as the app's only grant (a later test revokes "the" refresh token).
    _control(session, "revoke_refresh_token", email_or_token=tokens["refresh_token"])
    return ids[:limit]


def _open_from_menu(session: Session, key: str) -> None:
    session.desktop.click_menu_item(session.report, session.icon, key)


def test_the_data_window_lists_what_the_emulator_holds(session: Session) -> None:
    session.report.wait("TRAYAPP_RUN_FINISHED demo-gmail ok", 120)
    mark = session.report.mark()
    _open_from_menu(session, "data")
    session.report.wait("TRAYAPP_WINDOW_SHOWN data", after=mark)
    session.report.wait("TRAYAPP_DATA_LOADED", 60, after=mark)
    # Keyboard only: type-ahead in the charm list picks the Gmail charm.
    wait_for(lambda: _window(session, "Your data — Pattern Sync"), 30, "the data window")
    step = session.report.mark()
    session.desktop.xdotool("type", "--delay", "50", "Demo G")
    loaded = session.report.wait("TRAYAPP_DATA_LOADED demo-gmail mail", 60, after=step)[-1]
    _, _, _, rows, total, digest = loaded.split()
    expected = _gmail_inbox_ids(session, 200)  # the demo charm keeps the newest 200 of in:inbox
    assert int(total) == int(rows) == len(expected) > 0
    assert digest == hashlib.sha1(",".join(sorted(expected)).encode()).hexdigest()[:12]
    session.desktop.wait_painted(OUT / "data-mail.png", (0, 0, 920, 560))
    # Search narrows it: Tab to the search field, type, Enter.
    step = session.report.mark()
    session.desktop.xdotool("key", "Tab")
    session.desktop.xdotool("type", "--delay", "30", "invoice")
    session.desktop.xdotool("key", "Return")
    found = session.report.wait("TRAYAPP_DATA_LOADED demo-gmail mail", 60, after=step)[-1]
    assert 0 <= int(found.split()[3]) <= int(rows)
    session.desktop.screenshot(OUT / "data-mail-search.png")
    # Upcoming events (recurrences expanded by the Calendar pattern's upcoming()).
    step = session.report.mark()
    session.desktop.xdotool("key", "ctrl+a", "BackSpace")  # clear the search
    session.desktop.xdotool("key", "shift+Tab")  # back to the charm list
    session.desktop.xdotool("type", "--delay", "50", "Demo C")
    events = session.report.wait("TRAYAPP_DATA_LOADED demo-calendar events", 60, after=step)[-1]
    assert int(events.split()[3]) > 0
    session.desktop.screenshot(OUT / "data-events.png")
    wid = _window(session, "Your data — Pattern Sync")
    session.desktop.xdotool("windowunmap", wid)


def test_about_shows_versions_and_the_log_folder(session: Session) -> None:
    mark = session.report.mark()
    _open_from_menu(session, "about")
    session.report.wait("TRAYAPP_WINDOW_SHOWN about", after=mark)
    wait_for(lambda: _window(session, "About Pattern Sync"), 30, "the About window")
    session.desktop.wait_painted(OUT / "about.png", (0, 0, 520, 460))
    session.desktop.xdotool("key", "Escape")  # Esc closes it
    wait_for(lambda: not _window(session, "About Pattern Sync"), 30, "the About window to close")


def _control(session: Session, op: str, **kwargs: object) -> object:
    """The emulator's control API over HTTP (as a tester would poke the fake Google)."""
    assert session.emulator, "demo mode reported no emulator"
    req = urllib.request.Request(
        f"{session.emulator}/__emu__/{op}",
        data=json.dumps(kwargs).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["result"]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_revoked_token_asks_once_and_chromium_signs_in_again(session: Session) -> None:
    assert session.emulator, "demo mode did not start the Google emulator"
    session.report.wait("TRAYAPP_RUN_FINISHED demo-gmail ok", 120)
    subprocess.run(["dunstctl", "close-all"], env=session.desktop.env(), check=True)
    before = len(session.desktop.notify_calls())
    # The user's grant dies at Google (revoked, or the 7-day Testing expiry).
    assert _control(session, "revoke_refresh_token", email_or_token=DEMO_EMAIL) == 1
    _control(session, "expire_access_tokens", email=DEMO_EMAIL)
    mark = session.report.mark()
    session.desktop.click(*session.icon, 1)
    session.report.wait("TRAYAPP_RUN_FINISHED demo-gmail auth_required", 60, after=mark)
    session.report.wait("TRAYAPP_ICON_STATE attention", 30, after=mark)
    session.report.wait(f"TRAYAPP_NOTIFIED desktop sign_in Sign in again to {DEMO_EMAIL}", 30)
    calls = wait_for(
        lambda: session.desktop.notify_calls()[before:] or None, 30, "the Notify call on D-Bus"
    )
    assert isinstance(calls, list) and len(calls) == 1, calls
    assert f"Sign in again to {DEMO_EMAIL}" in calls[0] and "Sign in again" in calls[0]
    # What happened, once, in the tray's words: not auth's CLI sentence with Google's own text.
    assert "no longer accepts the saved sign-in" in calls[0]
    assert "Token has been expired" not in calls[0] and "trayapp accounts" not in calls[0]
    session.desktop.screenshot(OUT / "tray-attention.png", session.tray_area)
    mark = session.report.mark()
    session.desktop.open_menu(session.report, session.icon)
    session.desktop.screenshot(OUT / "menu-sign-in.png")
    session.desktop.xdotool("key", "Escape")
    session.report.wait("TRAYAPP_MENU_HIDDEN", after=mark)
    # Still exactly one notification after more refreshes and a second click.
    mark = session.report.mark()
    session.desktop.click(*session.icon, 1)
    session.report.wait("TRAYAPP_CLICKED", after=mark)

    # Follow the notification's "Sign in again": the app opens $BROWSER (headless Chromium);
    # the emulator's consent page is answered "Allow" as a user would click it.
    _control(session, "set_consent", auto_submit="allow")
    mark = session.report.mark()
    wait_for(lambda: _displayed(session) >= 1, 30, "dunst to show the sign-in notification")
    subprocess.run(["dunstctl", "action", "0"], env=session.desktop.env(), check=True)
    session.report.wait("TRAYAPP_COMMAND signin:", 30, after=mark)
    session.report.wait("TRAYAPP_SIGN_IN_DONE", 120, after=mark)
    done = [ln for ln in session.report.since(mark) if ln.startswith("TRAYAPP_SIGN_IN_DONE")]
    assert done[0].endswith(" ok"), done
    # The parked charm runs as soon as the account is usable again; the icon recovers.
    session.report.wait("TRAYAPP_RUN_FINISHED demo-gmail ok", 120, after=mark)
    session.report.wait("TRAYAPP_ICON_STATE ok", 60, after=mark)
    assert len([c for c in session.desktop.notify_calls()[before:] if "Sign in again" in c]) == 1


def test_quit_from_the_menu_exits_cleanly(session: Session) -> None:
    session.desktop.click_menu_item(session.report, session.icon, "quit")
    assert session.app.wait(timeout=60) == 0
