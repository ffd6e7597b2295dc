"""Start on login, honestly: say which mechanism is used and repair a stale path.

Linux: an XDG autostart entry (``$XDG_CONFIG_HOME/autostart/trayapp.desktop``), tested here.
macOS: a LaunchAgent plist; Windows: an HKCU ``Run`` value. Those two paths are written to the
platforms' documented formats but are not exercised on this project's CI (marked untested).

"Stale" means the entry launches something other than this installation (the app was moved,
reinstalled elsewhere, or the virtualenv was recreated): the entry exists but would fail or
start an old copy. Settings shows it and ``repair()`` rewrites it.
"""

from __future__ import annotations

import contextlib
import os
import plistlib
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from trayapp.ui.icons import icon_path
from trayapp.ui.model import IconState
from trayapp.ui.resources import resources_dir

DESKTOP_FILE = "trayapp.desktop"
LAUNCH_AGENT = "dev.patternsync.trayapp"
RUN_VALUE = "PatternSync"


# The Desktop Entry Specification's Exec quoting, written here because neither the standard
# library nor a maintained package implements it: shlex quotes with single quotes, which the spec
# reserves (desktop-file-validate rejects them). An argument with a reserved character is put in
# double quotes with ", `, $ and \ backslash-escaped; % is doubled (field codes); and the whole
# value then takes the string escape of every desktop-file value, doubling each backslash.
_EXEC_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def _exec_arg(arg: str) -> str:
    arg = arg.replace("%", "%%")
    if arg and not any(ch in _EXEC_RESERVED for ch in arg):
        return arg
    inner = "".join("\\" + ch if ch in '"`$\\' else ch for ch in arg)
    return f'"{inner}"'


def desktop_exec_line(argv: list[str]) -> str:
    """``argv`` as the value of an ``Exec=`` key, per the Desktop Entry Specification."""
    return " ".join(_exec_arg(a) for a in argv).replace("\\", "\\\\")


def parse_desktop_exec(value: str) -> list[str]:
    """The inverse of :func:`desktop_exec_line`, for reading back an entry (ours or older)."""
    unescaped = []
    it = iter(value)
    for ch in it:  # the string-value escapes first: \\ \s \n \t \r
        if ch == "\\":
            nxt = next(it, "")
            unescaped.append({"s": " ", "n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
        else:
            unescaped.append(ch)
    args: list[str] = []
    cur: list[str] = []
    in_arg = quoted = False
    chars = iter("".join(unescaped))
    for ch in chars:
        if quoted and ch == "\\":
            cur.append(next(chars, ""))
        elif ch == '"':
            quoted, in_arg = not quoted, True
        elif ch in " \t" and not quoted:
            if in_arg:
                args.append("".join(cur).replace("%%", "%"))
            cur, in_arg = [], False
        else:
            cur.append(ch)
            in_arg = True
    if quoted:
        raise ValueError("unterminated quote in Exec")
    if in_arg:
        args.append("".join(cur).replace("%%", "%"))
    return args


APP_ICON_NAME = "trayapp"


def theme_has_icon(name: str, home: Path | None = None) -> bool:
    """Whether an icon called ``name`` is installed where desktops look (hicolor, pixmaps)."""
    home = home or Path.home()
    data_home = os.environ.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    system = os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
    dirs = [data_home, *system.split(":")]
    for base in filter(None, dirs):
        hicolor = Path(base) / "icons" / "hicolor"
        if any(hicolor.glob(f"*/apps/{name}.png")) or any(hicolor.glob(f"*/apps/{name}.svg")):
            return True
        if (Path(base) / "pixmaps" / f"{name}.png").is_file():
            return True
    return False


@dataclass(frozen=True, slots=True)
class AutostartStatus:
    mechanism: str  # "XDG autostart entry" | "LaunchAgent" | "Run registry key"
    location: str
    enabled: bool
    stale: bool  # enabled, but it launches a different (or missing) program
    command: list[str]  # what it would launch now
    tested: bool  # False for the code paths not exercised by this project's CI

    def describe(self) -> str:
        state = "on" if self.enabled else "off"
        if self.stale:
            state = "on, but pointing to an old location (repair it)"
        note = "" if self.tested else " (untested on this platform)"
        return f"{self.mechanism} at {self.location}: {state}{note}"


def launch_command() -> list[str]:
    """How to start this installation: the frozen binary, the console script, or -m."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    script = shutil.which("trayapp")
    if script and Path(script).resolve().parent == Path(sys.executable).resolve().parent:
        return [script]
    return [sys.executable, "-m", "trayapp"]


class Autostart:
    def __init__(
        self,
        platform: str = sys.platform,
        *,
        home: Path | None = None,
        config_home: Path | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.platform = platform
        self.home = home or Path.home()
        xdg = os.environ.get("XDG_CONFIG_HOME")
        self.config_home = config_home or (Path(xdg) if xdg else self.home / ".config")
        self.command = command or launch_command()

    # -- Linux ------------------------------------------------------------------------------

    @property
    def desktop_path(self) -> Path:
        return self.config_home / "autostart" / DESKTOP_FILE

    def _desktop_entry(self) -> str:
        base = resources_dir()
        template = base / "trayapp.desktop.in" if base else None
        text = (
            template.read_text(encoding="utf-8")
            if template and template.is_file()
            else "[Desktop Entry]\nType=Application\nName=Pattern Sync\nExec=@EXEC@\n"
            "Icon=@ICON@\nTerminal=false\nX-GNOME-Autostart-enabled=true\n"
        )
        return text.replace("@EXEC@", desktop_exec_line(self.command)).replace(
            "@ICON@", self._icon_value()
        )

    def _icon_value(self) -> str:
        """The theme name "trayapp" when the icon theme has it (the bundle and the .deb install
        it into hicolor, so it survives the program folder moving and follows the theme);
        otherwise the SVG's path (a pip or source install puts no icon in any theme)."""
        if theme_has_icon(APP_ICON_NAME, self.home):
            return APP_ICON_NAME
        icon = icon_path(IconState.OK)
        return str(icon) if icon else APP_ICON_NAME

    @staticmethod
    def _desktop_exec(text: str) -> list[str] | None:
        in_entry = False
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("["):
                in_entry = line == "[Desktop Entry]"
            elif in_entry and line.startswith("Exec="):
                try:
                    return parse_desktop_exec(line[5:])
                except ValueError:
                    return []
        return None

    # -- macOS (untested here) ---------------------------------------------------------------

    @property
    def plist_path(self) -> Path:
        return self.home / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT}.plist"

    # -- common -----------------------------------------------------------------------------

    def status(self) -> AutostartStatus:
        if self.platform.startswith("linux") or self.platform.startswith("freebsd"):
            path = self.desktop_path
            current = (
                self._desktop_exec(path.read_text(encoding="utf-8")) if path.is_file() else None
            )
            return self._status("XDG autostart entry", str(path), current, tested=True)
        if self.platform == "darwin":
            path = self.plist_path
            current = None
            if path.is_file():
                with path.open("rb") as fh:
                    current = list(plistlib.load(fh).get("ProgramArguments", []))
            return self._status("LaunchAgent", str(path), current, tested=False)
        if self.platform == "win32":
            return self._status(
                "Run registry key",
                r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run\\" + RUN_VALUE,
                self._win_read(),
                tested=False,
            )
        return AutostartStatus("none", "-", False, False, self.command, tested=False)

    def _status(
        self, mechanism: str, location: str, current: list[str] | None, *, tested: bool
    ) -> AutostartStatus:
        enabled = current is not None
        stale = enabled and (
            current != self.command or not current or not Path(current[0]).exists()
        )
        return AutostartStatus(mechanism, location, enabled, bool(stale), self.command, tested)

    def enable(self) -> AutostartStatus:
        if self.platform.startswith("linux") or self.platform.startswith("freebsd"):
            path = self.desktop_path
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(self._desktop_entry(), encoding="utf-8")
            os.replace(tmp, path)
        elif self.platform == "darwin":  # untested here
            self.plist_path.parent.mkdir(parents=True, exist_ok=True)
            with self.plist_path.open("wb") as fh:
                plistlib.dump(
                    {
                        "Label": LAUNCH_AGENT,
                        "ProgramArguments": self.command,
                        "RunAtLoad": True,
                        "ProcessType": "Interactive",
                    },
                    fh,
                )
        elif self.platform == "win32":  # untested here
            self._win_write(subprocess_list2cmdline(self.command))
        return self.status()

    def disable(self) -> AutostartStatus:
        if self.platform == "darwin":
            self.plist_path.unlink(missing_ok=True)
        elif self.platform == "win32":
            self._win_write(None)
        else:
            self.desktop_path.unlink(missing_ok=True)
        return self.status()

    def repair(self) -> AutostartStatus:
        """Rewrite a stale entry for this installation; leaves a disabled one disabled."""
        st = self.status()
        return self.enable() if st.stale else st

    # -- Windows helpers (untested here) ------------------------------------------------------

    def _win_read(self) -> list[str] | None:
        try:
            import winreg  # type: ignore[import-not-found,unused-ignore]

            with winreg.OpenKey(  # type: ignore[attr-defined,unused-ignore]
                winreg.HKEY_CURRENT_USER,  # type: ignore[attr-defined,unused-ignore]
                r"Software\Microsoft\Windows\CurrentVersion\Run",
            ) as key:
                value, _ = winreg.QueryValueEx(key, RUN_VALUE)  # type: ignore[attr-defined,unused-ignore]
            return shlex.split(str(value), posix=False)
        except (ImportError, OSError):
            return None

    def _win_write(self, value: str | None) -> None:
        import winreg  # type: ignore[import-not-found,unused-ignore]

        with winreg.OpenKey(  # type: ignore[attr-defined,unused-ignore]
            winreg.HKEY_CURRENT_USER,  # type: ignore[attr-defined,unused-ignore]
            r"Software\Microsoft\Windows\CurrentVersion\Run",
            0,
            winreg.KEY_SET_VALUE,  # type: ignore[attr-defined,unused-ignore]
        ) as key:
            if value is None:
                with contextlib.suppress(OSError):
                    winreg.DeleteValue(key, RUN_VALUE)  # type: ignore[attr-defined,unused-ignore]
            else:
                winreg.SetValueEx(key, RUN_VALUE, 0, winreg.REG_SZ, value)  # type: ignore[attr-defined,unused-ignore]


def subprocess_list2cmdline(args: list[str]) -> str:
    import subprocess

    return subprocess.list2cmdline(args)
