"""Release smoke test: build the bundle, then use it the way a user and a packager would.

One build per session (conftest.py's ``release``: ``packaging/build.sh``, the documented
command). Then: the frozen CLI answers (--version, status/sync --json against a real feed over
HTTP, run --headless until SIGTERM, the emulator), the frozen self-test passes against a real
keyring daemon, and the headline check: install into an empty HOME with install.sh, start the
app from its desktop entry's Exec line on a virtual desktop (Xvfb + trayer + private D-Bus) in
demo mode, click the tray icon to sync, quit from the menu, uninstall, and find HOME empty.
The .deb's layout and metadata are checked by extracting it.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.desktop import Desktop, ReportLog, missing_tools, wait_for
from tests.packaging.helpers import ICON_SIZES as SIZES
from tests.packaging.helpers import REPO, Release, exec_argv, png_size, read_entry, user_env

pytestmark = [pytest.mark.bundle, pytest.mark.timeout(900)]

# Issue 15's ceiling was 120 MB; issue 17 asks for 100 MB. The bundle is ~99.3 MB: ICU's data
# cut from 32 to ~4 MB (packaging/linux/shrink_icu.py), the desktop's own system libraries
# (incl. OpenSSL, D-Bus, SQLite, GSSAPI) left to the system, unused Qt modules (QtNetwork, the
# OpenGL library), plugins, requests and httpx's CLI extras out (packaging/trayapp.spec says
# what and why); the whole standard library in, for plugins. A jump past this means something
# big (a GTK stack, QML, WebEngine, full ICU data, a bundled OpenSSL, QtNetwork) crept back in.
MAX_UNPACKED_BYTES = 100_000_000
ICU_DATA_MAX_BYTES = 6_000_000
ARTIFACTS = REPO / "out" / "packaging"


# ------------------------------------------------------------------------------ the artifacts


def test_release_files_carry_the_project_version_and_report_their_size(release: Release) -> None:
    version = release.version
    assert release.tarball.name == f"pattern-sync-{version}-linux-{os.uname().machine}.tar.gz"
    assert release.deb.name.startswith(f"pattern-sync_{version}_")
    facts = release.facts
    print(
        f"\nbundle {version}: built in {facts['build_seconds']} s "
        f"(PyInstaller {facts['pyinstaller_seconds']} s), "
        f"{int(facts['unpacked_bytes']) / 1e6:.0f} MB unpacked, "  # type: ignore[call-overload]
        f"tar.gz {int(facts['tarball_bytes']) / 1e6:.0f} MB, "  # type: ignore[call-overload]
        f".deb {int(facts['deb_bytes']) / 1e6:.0f} MB"  # type: ignore[call-overload]
    )
    files = [p for p in (release.folder / "app").rglob("*") if p.is_file() and not p.is_symlink()]
    unpacked = sum(p.stat().st_size for p in files)
    assert unpacked < MAX_UNPACKED_BYTES, f"{unpacked / 1e6:.0f} MB unpacked"
    folder = release.folder
    for name in ("install.sh", "uninstall.sh", "app/trayapp"):
        assert os.access(folder / name, os.X_OK), name
    assert (folder / "share" / "applications" / "trayapp.desktop").is_file()
    for size in SIZES:
        icon = folder / f"share/icons/hicolor/{size}x{size}/apps/trayapp.png"
        assert png_size(icon) == (size, size)
    assert (folder / "share/icons/hicolor/scalable/apps/trayapp.svg").is_file()


def test_the_readmes_agree_on_the_glibc_the_build_needs(release: Release) -> None:
    """Issue 15: the bundle's README.txt and README.md named different glibc versions."""
    needed = (release.folder / "GLIBC_REQUIRED").read_text().strip()
    assert needed == release.facts["glibc_required"]
    readme = (release.folder / "README.txt").read_text()
    assert f"glibc {needed} or newer" in readme
    assert f"glibc {needed}+" in (REPO / "README.md").read_text()
    assert f"glibc {needed} or newer" in (REPO / "docs" / "install.md").read_text()


def test_the_bundle_leaves_out_what_the_app_does_not_use(release: Release) -> None:
    internal = release.folder / "app" / "_internal"
    names = {p.name for p in internal.rglob("*")}
    for unwanted in (
        "libQt6Qml.so.6",
        "libQt6Quick.so.6",
        "libQt6WebEngineCore.so.6",
        "libQt6Pdf.so.6",
        "libgtk-3.so.0",
        "libqgtk3.so",
        "libqeglfs.so",
        "libqvnc.so",
        "_tkinter.cpython-311-x86_64-linux-gnu.so",
        # the system's own (AppImage excludelist), and what only they link:
        "libglib-2.0.so.0",
        "libgio-2.0.so.0",
        "libstdc++.so.6",
        "libX11.so.6",
        "libfreetype.so.6",
        "libfontconfig.so.1",
        "libpcre2-8.so.0",
        "libmount.so.1",
    ):
        assert unwanted not in names, unwanted
    (icu_data,) = internal.glob("PySide6/Qt/lib/libicudata.so.*")
    assert icu_data.stat().st_size < ICU_DATA_MAX_BYTES, "ICU's data was not cut down"
    assert not list(internal.glob("PySide6/Qt/translations/*.qm"))
    assert not [n for n in names if n.startswith(("pytest", "_pytest", "mypy", "googleapiclient"))]
    # The packaging extra bundles nothing the spec sent to the system (SYSTEM_LIBRARIES).
    for system in ("libssl.so.3", "libcrypto.so.3", "libdbus-1.so.3", "libsqlite3.so.0"):
        assert system not in names, system
    # Qt plugins a QWidget tray never loads (spec: EXCLUDED_QT_FILES).
    for plugin in (
        "tls",
        "xcbglintegrations",
        "networkinformation",
        "wayland-graphics-integration-client",
    ):
        assert not (internal / "PySide6" / "Qt" / "plugins" / plugin).exists(), plugin
    # Issue 17.7: QtNetwork (binding and library) and libQt6OpenGL, which nothing loads.
    for module in ("QtNetwork.abi3.so", "libQt6Network.so.6", "libQt6OpenGL.so.6"):
        assert module not in names, module
    plugins = internal / "PySide6" / "Qt" / "plugins"
    for needed in (
        "platforms/libqxcb.so",
        "platforms/libqwayland.so",
        "platforms/libqoffscreen.so",
        "imageformats/libqsvg.so",
        "iconengines/libqsvgicon.so",
    ):
        assert (plugins / needed).is_file(), needed


# Test-only and build-only packages (the test and packaging extras, pip's own) and what only
# httpx's command-line client imports. Python code lives in the executable's PYZ archive, so the
# check reads that archive's table of contents, not only the files under _internal.
NOT_IN_THE_BUNDLE = (
    "googleapiclient",
    "hypothesis",
    "jsonschema",
    "pytest",
    "_pytest",
    "pytestqt",
    "pytest_asyncio",
    "mypy",
    "ruff",
    "pip",
    "setuptools",
    "pkg_resources",
    "PyInstaller",
    "pygments",
    "rich",
)


def test_no_test_only_or_build_only_package_is_in_the_bundle(release: Release) -> None:
    from PyInstaller.archive.readers import CArchiveReader

    app = release.folder / "app"
    pyz = CArchiveReader(str(app / "trayapp")).open_embedded_archive("PYZ.pyz")
    modules = {name.split(".")[0] for name in pyz.toc}
    files = {p.name.split(".")[0] for p in (app / "_internal").iterdir()}
    # The reading works: the app's own and the demo mode's server stack are there.
    assert {"trayapp", "starlette", "uvicorn", "httpx", "pydantic"} <= modules
    found = sorted((modules | files) & set(NOT_IN_THE_BUNDLE))
    assert len(found) == 0, f"test/build-only packages in the bundle: {found}"
    # Issue 17.7: what the app never imports (google-auth's optional requests transport, the
    # time-zone package behind dateutil.zoneinfo, QtNetwork) stays out too.
    unused = {"requests", "urllib3", "charset_normalizer", "tzdata"}
    assert not (modules | files) & unused, sorted((modules | files) & unused)
    assert not [m for m in pyz.toc if m.startswith("PySide6.QtNetwork")]
    # Issue 16.6: plugins may use the whole standard library, also what the app never imports.
    assert {"csv", "email.mime.text", "xml.dom.minidom", "wave", "dbm.dumb"} <= set(pyz.toc)
    assert not {"tkinter", "idlelib", "lib2to3", "test"} & modules


# -------------------------------------------------------------------------- the frozen CLI


@pytest.fixture
def frozen(release: Release) -> Path:
    return release.folder / "app" / "trayapp"


def test_version_comes_from_package_metadata(frozen: Path, release: Release) -> None:
    out = subprocess.run([str(frozen), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"trayapp {release.version}"


FEED = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>Bundle feed</title><link>http://example.invalid/</link>
<description>d</description>
<item><title>First</title><link>http://example.invalid/1</link><guid>one</guid></item>
<item><title>Second</title><link>http://example.invalid/2</link><guid>two</guid></item>
</channel></rss>"""


@pytest.fixture
def feed_url() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving one RSS feed."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = FEED.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
    finally:
        server.shutdown()
        server.server_close()


def test_frozen_cli_adds_a_charm_syncs_it_and_reports_status(
    frozen: Path, feed_url: str, tmp_path: Path
) -> None:
    """feedparser, httpx, pydantic and SQLite doing real work inside the bundle."""
    home = tmp_path / "home"
    home.mkdir()
    profile = tmp_path / "profile"
    env = user_env(home)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(frozen), "--profile", str(profile), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )

    cli("charms", "add", "feed-importer", "--name", "Bundle feed", "--set", f"url={feed_url}")
    synced = json.loads(cli("sync", "--json").stdout)
    assert synced["ok"] is True, synced
    [result] = synced["results"]
    assert result["outcome"] == "ok" and result["counts"]["added"] == 2, result
    status = json.loads(cli("status", "--json").stdout)
    [charm] = status["charms"]
    assert charm["status"]["last_outcome"] == "ok"
    assert charm["status"]["totals"]["added"] == 2
    assert status["profile"] == str(profile)
    # Nothing of the profile went to HOME, and no secret store was needed for a feed.
    assert sorted(p.name for p in home.iterdir()) == []


def test_frozen_headless_engine_runs_until_sigterm(frozen: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "headless.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(frozen), "run", "--headless", "--profile", str(tmp_path / "profile")],
            env=user_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: b"running headless" in log.read_bytes(), 60, "the headless engine")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopped" in log.read_text()


@pytest.mark.skipif(
    not (REPO / "trayapp" / "emulator" / "cli.py").exists(),
    reason="trayapp.emulator.cli (the `trayapp emulator` command) is not in the tree yet",
)
def test_frozen_emulator_serves_the_demo_seed(frozen: Path, tmp_path: Path) -> None:
    """Starlette + uvicorn (lazily imported loops and protocols) and the demo seed, frozen."""
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "emulator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(frozen), "emulator", "--seed", "demo", "--port", "0", "--json"],
            env=user_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        line = wait_for(
            lambda: next((ln for ln in log.read_text().splitlines() if ln.startswith("{")), None),
            60,
            "the emulator's startup line",
        )
        assert isinstance(line, str)
        facts = json.loads(line)
        assert facts["base_url"].startswith("http://127.0.0.1:")
        assert facts["messages"] > 0 and "@" in facts["account"]
        with urllib.request.urlopen(f"{facts['base_url']}/__emu__/", timeout=10) as resp:
            assert resp.status == 200
        query = urllib.parse.urlencode(
            {
                "client_id": facts["client_id"],
                "redirect_uri": "http://127.0.0.1:9/cb",
                "response_type": "code",
                "scope": "https://www.googleapis.com/auth/gmail.readonly",
                "state": "s",
            }
        )
        with urllib.request.urlopen(f"{facts['base_url']}/o/oauth2/v2/auth?{query}") as resp:
            assert resp.status == 200 and b"<form" in resp.read().lower()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(
    shutil.which("gnome-keyring-daemon") is None or shutil.which("dbus-run-session") is None,
    reason="needs gnome-keyring and dbus (apt-get install gnome-keyring dbus)",
)
def test_frozen_self_test_passes_with_a_real_keyring(frozen: Path, tmp_path: Path) -> None:
    """Keyring backends, Qt plugins, SVG, notifier data, certifi and a Secret Service round trip."""
    home = tmp_path / "home"
    home.mkdir()
    report = tmp_path / "selftest.json"
    script = (
        'eval "$(printf %s test-password | gnome-keyring-daemon --unlock --components=secrets)"\n'
        f'TRAYAPP_BUNDLE_SELFTEST="{report}" TRAYAPP_BUNDLE_SELFTEST_KEYRING=1 "{frozen}"\n'
        "rc=$?\n"
        'kill "$GNOME_KEYRING_PID" 2>/dev/null\n'
        "exit $rc\n"
    )
    env = user_env(home, XDG_DATA_HOME=str(home / ".local/share"))
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "run")
    (tmp_path / "run").mkdir(mode=0o700)
    result = subprocess.run(
        ["dbus-run-session", "--", "bash", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert report.exists(), result.stdout + result.stderr
    checks = json.loads(report.read_text())["checks"]
    failed = {name: c.get("error") for name, c in checks.items() if not c["ok"]}
    assert not failed, failed
    assert result.returncode == 0, result.stderr
    assert checks["secret_service"]["detail"]["backend"].endswith("SecretService.Keyring")
    assert "SecretService" in checks["keyring"]["detail"]["entry_points"]
    assert checks["qt"]["detail"]["platform"] == "offscreen"
    assert checks["icu"]["detail"]["zone_name"] == "Central European Standard Time"
    # Every bundled library's metadata is there (plugins install leaves them out of a plugin's
    # folder by it).
    versions = checks["plugin_platform"]["detail"]["distributions"]
    assert {"httpx", "pydantic", "icalendar", "python-dateutil"} <= set(versions)


# --------------------------------------------------------------- install, use, uninstall


@pytest.mark.skipif(bool(missing_tools()), reason=f"desktop tools missing: {missing_tools()}")
def test_install_start_from_menu_entry_sync_quit_uninstall(
    release: Release, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    install = subprocess.run(
        [str(release.folder / "install.sh")],
        env=user_env(home),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    target = home / ".local" / "opt" / "pattern-sync"

    # Desktop integration landed where desktops look for it.
    entry = read_entry(home / ".local/share/applications/trayapp.desktop")
    argv = exec_argv(entry["Exec"])
    assert argv == [str(target / "trayapp")]
    assert entry["Icon"] == "trayapp" and entry["Type"] == "Application"
    for size in SIZES:
        assert png_size(home / f".local/share/icons/hicolor/{size}x{size}/apps/trayapp.png") == (
            size,
            size,
        )
    assert (home / ".local/share/icons/hicolor/scalable/apps/trayapp.svg").is_file()
    assert os.readlink(home / ".local/bin/trayapp") == str(target / "trayapp")

    # Start it as the menu would, on a virtual desktop with a tray, in demo mode.
    work = tmp_path / "desktop"
    work.mkdir()
    desktop = Desktop(work)
    report = ReportLog(work / "report.log")
    app_log = work / "app.log"
    try:
        desktop.start()
        env = desktop.env(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),  # the default, spelled out (Desktop sets one)
            TMPDIR=str(work),  # the demo's throwaway profile goes here, not into HOME
            TRAYAPP_TEST_REPORT=str(report.path),
            TRAYAPP_NOTIFY_GRACE="2",
        )
        for name in ("PYTHONPATH", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
            env.pop(name, None)
        # An xdg-open that records what it was given and the environment it inherited.
        fake_bin = work / "bin"
        fake_bin.mkdir()
        opened = work / "xdg-open.log"
        (fake_bin / "xdg-open").write_text(
            f'#!/bin/sh\n{{ printf "ARGS %s\\n" "$*"; env; }} > "{opened}.tmp"\n'
            f'mv "{opened}.tmp" "{opened}"\n'
        )
        (fake_bin / "xdg-open").chmod(0o755)
        env["PATH"] = f"{fake_bin}:{env['PATH']}"
        app = desktop.spawn([*argv, "--demo"], log="app", env=env, cwd=str(home))
        x, y, w, h = (int(v) for v in report.wait("TRAYAPP_TRAY_GEOMETRY", 90)[0].split()[1:])
        icon = (x + w // 2, y + h // 2)
        report.wait("TRAYAPP_RUN_FINISHED", 90, count=3)  # the demo's first pass

        # It runs on the bundle's own Qt, through the xcb plugin, not on anything from the repo.
        maps = Path(f"/proc/{app.pid}/maps").read_text()
        assert f"{target}/_internal/PySide6/Qt/plugins/platforms/libqxcb.so" in maps
        assert f"{target}/_internal/PySide6/Qt/lib/libQt6Widgets.so.6" in maps
        assert str(REPO) not in maps

        mark = report.mark()
        desktop.click(*icon, 1)
        report.wait("TRAYAPP_CLICKED sync_all", 30, after=mark)
        fetched = report.wait("TRAYAPP_DEMO_REQUEST", 60, after=mark, count=3)
        assert len(fetched) >= 3
        finished = report.wait("TRAYAPP_RUN_FINISHED", 60, after=mark, count=3)
        assert all(line.endswith(" ok") for line in finished[:3]), finished

        # "Open data folder": the file manager, like the browser for sign-in, must get the
        # user's environment, not the bundle's library path (the frozen entry point restores
        # it). The entry is clicked where the app reports it: keys sent before the menu holds
        # the keyboard grab would be lost.
        mark = report.mark()
        desktop.click_menu_item(report, icon, "open_data")
        report.wait("TRAYAPP_MENU_HIDDEN", 30, after=mark)
        wait_for(opened.exists, 30, "xdg-open to be run by the app")
        args, *child_env = opened.read_text().splitlines()
        assert args.startswith("ARGS file://") and "trayapp-demo-" in args, args
        leaked = [ln for ln in child_env if str(target) in ln]
        assert leaked == [], f"xdg-open inherited bundle paths: {leaked}"
        assert not [ln for ln in child_env if ln.startswith(("LD_LIBRARY_PATH=", "QT_PLUGIN"))]

        # Under trayer, the first right-click after a menu entry was chosen is sometimes lost:
        # open_menu right-clicks again when the app did not get it, and clicks an entry only
        # while the app's last word is that the menu is open, at the latest reported place
        # (the demo's Google charms may join while it is open).
        mark = report.mark()
        layout = desktop.open_menu(report, icon)
        assert "quit" in layout.items and layout.geometry[2] > 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        desktop.screenshot(ARTIFACTS / "bundle-menu.png")
        desktop.click_open_menu_item(report, "quit", since=mark)
        assert app.wait(timeout=60) == 0
    finally:
        desktop.stop()
        if app_log.exists():
            sys.stderr.write(app_log.read_text(errors="replace")[-3000:])

    leftovers_in_tmp = sorted(p.name for p in work.glob("trayapp-demo-*"))
    if leftovers_in_tmp:
        print(f"\nnote: the demo left its throwaway profile behind: {leftovers_in_tmp}")

    uninstall = subprocess.run(
        [str(target / "uninstall.sh")],
        env=user_env(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert uninstall.returncode == 0, uninstall.stdout + uninstall.stderr
    left = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert left == [], f"uninstall left these in HOME: {left}"


@pytest.mark.skipif(shutil.which("weston") is None, reason="needs weston (apt-get install weston)")
def test_frozen_app_runs_on_wayland(release: Release, tmp_path: Path) -> None:
    """A headless Weston: the bundle's wayland plugin and its client libraries load and work.

    Weston has no tray, so after its short wait for one the app shows its status window (the
    fallback GNOME users without AppIndicator get) and the demo syncs.
    """
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    home = tmp_path / "home"
    home.mkdir()
    report = ReportLog(tmp_path / "report.log")
    base = user_env(home, XDG_RUNTIME_DIR=str(runtime))
    with (tmp_path / "weston.log").open("wb") as wlog:
        weston = subprocess.Popen(
            ["weston", "--backend=headless-backend.so", "--socket=wayland-bundle", "--idle-time=0"],
            env=base,
            stdout=wlog,
            stderr=subprocess.STDOUT,
        )
    app: subprocess.Popen[bytes] | None = None
    try:
        wait_for((runtime / "wayland-bundle").exists, 30, "Weston's socket")
        env = dict(
            base,
            WAYLAND_DISPLAY="wayland-bundle",
            TMPDIR=str(tmp_path),
            TRAYAPP_TEST_REPORT=str(report.path),
            TRAYAPP_TRAY_WAIT="1",
        )
        with (tmp_path / "app.log").open("wb") as alog:
            app = subprocess.Popen(
                [str(release.folder / "app" / "trayapp"), "--demo"],
                env=env,
                stdout=alog,
                stderr=subprocess.STDOUT,
            )
        report.wait("TRAYAPP_STATUS_WINDOW", 60)
        report.wait("TRAYAPP_RUN_FINISHED", 60, count=3)
        maps = Path(f"/proc/{app.pid}/maps").read_text()
        plugins = release.folder / "app" / "_internal" / "PySide6" / "Qt" / "plugins"
        assert f"{plugins}/platforms/libqwayland.so" in maps
        assert "libqxcb.so" not in maps
        app.send_signal(signal.SIGTERM)
        assert app.wait(timeout=60) == 0, (tmp_path / "app.log").read_text()[-3000:]
    finally:
        for proc in (app, weston):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------------- the .deb


def test_deb_installs_into_opt_with_menu_entry_icons_and_dependencies(
    release: Release, tmp_path: Path
) -> None:
    fields = subprocess.run(
        ["dpkg-deb", "--field", str(release.deb)], capture_output=True, text=True, check=True
    ).stdout
    control = dict(
        line.split(": ", 1) for line in fields.splitlines() if ": " in line and line[0] != " "
    )
    assert control["Package"] == "pattern-sync"
    assert control["Version"] == release.version
    depends = control["Depends"]
    assert f"libc6 (>= {release.facts['glibc_required']})" in depends
    assert "libxcb1" in depends  # what PyInstaller leaves to the system, found by ldd
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(release.deb), str(root)], check=True)
    assert os.readlink(root / "usr/bin/trayapp") == "/opt/pattern-sync/trayapp"
    entry = read_entry(root / "usr/share/applications/trayapp.desktop")
    assert exec_argv(entry["Exec"]) == ["/usr/bin/trayapp"]
    assert entry["Icon"] == "trayapp"
    for size in SIZES:
        assert png_size(root / f"usr/share/icons/hicolor/{size}x{size}/apps/trayapp.png") == (
            size,
            size,
        )
    assert (root / "usr/share/doc/pattern-sync/copyright").is_file()
    out = subprocess.run(
        [str(root / "opt/pattern-sync/trayapp"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == f"trayapp {release.version}"


def test_deb_installs_and_removes_cleanly_with_dpkg(release: Release, tmp_path: Path) -> None:
    """dpkg itself, into a scratch root: unpack, configure, list, remove, nothing left."""
    root = tmp_path / "root"
    admin = root / "var" / "lib" / "dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "updates").mkdir()
    (admin / "status").touch()

    def dpkg(*args: str) -> str:
        return subprocess.run(
            ["dpkg", f"--root={root}", "--force-not-root", "--force-depends", *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout

    dpkg("-i", str(release.deb))
    listed = dpkg("-L", "pattern-sync").splitlines()
    assert "/opt/pattern-sync/trayapp" in listed and "/usr/bin/trayapp" in listed
    assert (root / "opt/pattern-sync/trayapp").is_file()
    dpkg("-r", "pattern-sync")
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_relative_to(admin))
    assert left == ["var", "var/lib"], left


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="not a Debian-family system")
def test_deb_dependencies_resolve_on_this_distribution(release: Release) -> None:
    """apt's solver, simulating the install: every Depends names a package Debian has."""
    result = subprocess.run(
        ["apt-get", "install", "--simulate", "--no-install-recommends", str(release.deb.resolve())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Inst pattern-sync" in result.stdout
