"""A throwaway Linux desktop for end-to-end tests: D-Bus, Xvfb, a tray host, a notification daemon.

Everything is started by the tests themselves and torn down afterwards (processes are tracked
and killed by pid). Readiness is always awaited through an event: Xvfb writes its display
number to ``-displayfd``, the bus prints its address, dbus-monitor prints its first message,
the app writes report lines. Nothing here sleeps for a fixed time.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

NEEDED = ("Xvfb", "trayer", "xdotool", "import", "dbus-daemon", "dbus-monitor", "dunst")


def missing_tools() -> list[str]:
    return [t for t in NEEDED if shutil.which(t) is None]


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """Re-check ``predicate`` until it returns something truthy; fail with ``what``."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


class ReportLog:
    """The app's TRAYAPP_* report lines (the file named by TRAYAPP_TEST_REPORT)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def mark(self) -> int:
        return len(self.lines())

    def since(self, mark: int) -> list[str]:
        return self.lines()[mark:]

    def wait(
        self, prefix: str, timeout: float = 30, *, after: int = 0, count: int = 1
    ) -> list[str]:
        def found() -> list[str] | None:
            hits = [ln for ln in self.since(after) if ln.startswith(prefix)]
            return hits if len(hits) >= count else None

        result = wait_for(found, timeout, f"{count} report line(s) {prefix!r}")
        assert isinstance(result, list)
        return result


Rect = tuple[int, int, int, int]


@dataclass(frozen=True)
class MenuLayout:
    """The open tray menu as the app last reported it (``TRAYAPP_MENU_LAYOUT``)."""

    generation: int
    geometry: Rect
    items: dict[str, Rect]


def open_menu_layout(lines: Sequence[str]) -> MenuLayout | None:
    """The layout of the menu these report lines leave open, or None (none reported yet since
    it began to open, or closed). The app reports a new generation whenever the open menu moves,
    resizes or an entry moves; its ``TRAYAPP_MENU_ITEM`` lines come just before it."""
    layout: MenuLayout | None = None
    items: dict[str, Rect] = {}
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "TRAYAPP_MENU_ITEM":
            x, y, w, h = (int(v) for v in parts[2:6])
            items[parts[1]] = (x, y, w, h)
        elif parts[0] == "TRAYAPP_MENU_LAYOUT":
            x, y, w, h = (int(v) for v in parts[2:6])
            layout = MenuLayout(int(parts[1]), (x, y, w, h), items)
            items = {}
        elif parts[0] in ("TRAYAPP_MENU_OPENING", "TRAYAPP_MENU_HIDDEN"):
            layout = None
            items = {}
    return layout


@dataclass
class Desktop:
    workdir: Path
    display: str = ""
    bus: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    notify_log: Path | None = None
    files: list[IO[bytes]] = field(default_factory=list)

    def _open(self, path: Path) -> IO[bytes]:
        fh = open(path, "wb")  # noqa: SIM115 - closed in stop()
        self.files.append(fh)
        return fh

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DISPLAY=self.display,
            DBUS_SESSION_BUS_ADDRESS=self.bus,
            XDG_RUNTIME_DIR=str(self.workdir / "run"),
            XDG_CONFIG_HOME=str(self.workdir / "config"),
            HOME=str(self.workdir / "home"),
        )
        env.pop("QT_QPA_PLATFORM", None)
        env.update(extra)
        return env

    def spawn(
        self,
        args: Sequence[str],
        *,
        log: str,
        env: dict[str, str] | None = None,
        stdout: IO[bytes] | None = None,
        cwd: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process in its own group, output to ``<log>.log`` (or ``stdout``)."""
        out = self._open(self.workdir / f"{log}.log")
        proc = subprocess.Popen(
            list(args),
            stdout=stdout or out,
            stderr=subprocess.STDOUT if stdout is None else out,
            env=env or self.env(),
            cwd=cwd,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def start(self, *, tray_host: bool = True) -> None:
        """Bus, X server, notification daemon, and (unless ``tray_host=False``) trayer."""
        for d in ("run", "config", "home"):
            (self.workdir / d).mkdir(mode=0o700, exist_ok=True)
        # A private session bus: its address is the first line it prints.
        bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--print-address=1", "--nopidfile"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(bus)
        assert bus.stdout is not None
        self.bus = bus.stdout.readline().decode().strip()
        assert self.bus.startswith("unix:"), self.bus
        # Xvfb picks a free display itself and writes its number to -displayfd.
        rfd, wfd = os.pipe()
        xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(wfd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
            pass_fds=(wfd,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(xvfb)
        os.close(wfd)
        with os.fdopen(rfd) as r:
            number = r.readline().strip()
        assert number.isdigit(), f"Xvfb did not report a display ({number!r})"
        self.display = f":{number}"
        if tray_host:
            self.spawn(
                [
                    "trayer",
                    "--edge", "top", "--align", "right", "--widthtype", "request",
                    "--height", "32", "--SetDockType", "true", "--transparent", "false",
                ],
                log="trayer",
            )  # fmt: skip
        # Capture every Notify call on the bus, then start the notification daemon.
        self.notify_log = self.workdir / "notify.log"
        monitor = self.spawn(
            [
                "dbus-monitor",
                "--session",
                "type='method_call',interface='org.freedesktop.Notifications',member='Notify'",
            ],
            log="dbus-monitor",
            stdout=self._open(self.notify_log),
        )
        wait_for(
            lambda: (self.notify_log and self.notify_log.stat().st_size > 0) or monitor.poll(),
            20,
            "dbus-monitor to attach",
        )
        # Bottom-right, away from the tray: a popup over the icon would swallow the next click.
        dunstrc = self.workdir / "dunstrc"
        dunstrc.write_text("[global]\norigin = bottom-right\noffset = 10x10\n")
        self.spawn(["dunst", "-config", str(dunstrc)], log="dunst")
        wait_for(self._notifications_owned, 20, "dunst to own org.freedesktop.Notifications")

    def _notifications_owned(self) -> bool:
        res = subprocess.run(
            [
                "dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.Notifications",
            ],
            env=self.env(),
            capture_output=True,
            check=False,
        )  # fmt: skip
        return b"boolean true" in res.stdout

    def notify_calls(self) -> list[str]:
        """The Notify calls seen on the bus, one string (title + body) per call."""
        assert self.notify_log is not None
        text = self.notify_log.read_text(errors="replace")
        calls = text.split("method call")[1:]
        out = []
        for call in calls:
            if "member=Notify" in call:
                strings = re.findall(r'string "((?:[^"\\]|\\.)*)"', call)
                out.append(" | ".join(strings))
        return out

    def xdotool(self, *args: str) -> None:
        subprocess.run(["xdotool", *args], env=self.env(), check=True)

    def click(self, x: int, y: int, button: int) -> None:
        self.xdotool("mousemove", str(x), str(y), "click", str(button))

    def open_menu(
        self,
        report: ReportLog,
        icon: tuple[int, int],
        *,
        attempts: int = 8,
        receipt: float = 10,
        timeout: float = 120,
    ) -> MenuLayout:
        """Right-click the tray icon until its menu is open and laid out; return that layout.

        The app reports ``TRAYAPP_MENU_OPENING`` for a right-click that opens the menu; a
        right-click while it is open closes it (``TRAYAPP_MENU_HIDDEN``), sometimes opening it
        again. Under Xvfb + trayer a right-click is sometimes lost (the first one after a menu
        entry was chosen), and an app busy for a while answers late, several clicks at once.
        So: the menu counts as open only while the app's last word about it is a layout, taken
        at once when every right-click was answered with an opening, else after ``receipt`` s
        without news (the others were lost or closed it). With the menu closed (or never
        opened) it right-clicks again: at once if every click was answered, else after
        ``receipt`` s without news; ``attempts`` right-clicks in all.
        """
        start = report.mark()
        deadline = time.monotonic() + timeout
        clicks = 0
        seen = -1
        news = time.monotonic()
        delay = 0.01
        while True:
            lines = report.since(start)
            menu = [ln for ln in lines if ln.startswith("TRAYAPP_MENU_")]
            now = time.monotonic()
            if len(menu) != seen:
                seen, news = len(menu), now  # the app said something: wait for the rest
            quiet = now - news >= receipt
            answered = menu.count("TRAYAPP_MENU_OPENING") >= clicks
            layout = open_menu_layout(lines)
            if layout is not None and (answered or quiet):
                return layout
            last = menu[-1] if menu else ""
            closed = last in ("", "TRAYAPP_MENU_HIDDEN")
            if layout is None and (clicks == 0 or (closed and (answered or quiet))):
                if clicks == attempts:
                    raise TimeoutError(f"the tray menu did not open after {clicks} right-clicks")
                self.click(*icon, 3)
                clicks += 1
                news = time.monotonic()
                continue
            if now > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for the tray menu")
            time.sleep(delay)  # polling the report file, as wait_for does
            delay = min(delay * 2, 0.1)

    def click_menu_item(
        self, report: ReportLog, icon: tuple[int, int], key: str, *, timeout: float = 60
    ) -> list[str]:
        """Open the tray menu and click its top-level entry ``key`` with the pointer (see
        :meth:`click_open_menu_item`); return the report lines since the right-click."""
        start = report.mark()
        self.open_menu(report, icon, timeout=timeout)
        return self.click_open_menu_item(report, key, since=start, timeout=timeout)

    def click_open_menu_item(
        self, report: ReportLog, key: str, *, since: int, timeout: float = 60
    ) -> list[str]:
        """Click the top-level entry ``key`` of the menu opened after report line ``since``;
        wait for the app's ``TRAYAPP_COMMAND <key>`` and return the report lines since then.

        It clicks where the latest layout reported has the entry, read just before the click
        (the menu is still that generation). A click that still reaches another entry fails
        with the layouts seen, rather than waiting for a command that cannot come.
        """
        layout = open_menu_layout(report.since(since))
        assert layout is not None, "the tray menu is not open"
        assert key in layout.items, f"the menu reported no entry {key!r}: {layout}"
        x, y, w, h = layout.items[key]
        clicked = report.mark()
        self.click(x + w // 3, y + h // 2, 1)
        line = report.wait("TRAYAPP_COMMAND", timeout, after=clicked)[0]
        if line != f"TRAYAPP_COMMAND {key}":
            layouts = [ln for ln in report.since(since) if ln.startswith("TRAYAPP_MENU_")]
            raise AssertionError(
                f"clicked {key!r} at generation {layout.generation}, got {line!r}; {layouts}"
            )
        return report.since(since)

    def screenshot(self, path: Path, crop: tuple[int, int, int, int] | None = None) -> Path:
        """Screenshot the root window; ``crop`` (x, y, w, h) is cut out and enlarged 4x."""
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["import", "-window", "root", str(path)], env=self.env(), check=True)
        if crop is not None:
            x, y, w, h = crop
            subprocess.run(
                ["convert", str(path), "-crop", f"{w}x{h}+{x}+{y}", "+repage", "-scale", "400%",
                 str(path)],
                check=True,
            )  # fmt: skip
        return path

    def wait_painted(self, path: Path, region: tuple[int, int, int, int]) -> Path:
        """Screenshot until ``region`` is no longer uniform (the window has been drawn)."""
        x, y, w, h = region

        def painted() -> bool:
            self.screenshot(path)
            res = subprocess.run(
                ["convert", str(path), "-crop", f"{w}x{h}+{x}+{y}", "-format",
                 "%[fx:standard_deviation]", "info:"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            return float(res.stdout.strip() or 0) > 0.05

        wait_for(painted, 30, f"the region {region} to be drawn")
        return path

    def stop(self) -> None:
        for proc in reversed(self.procs):
            # The whole process group: children (a browser the app opened) go too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group
        for fh in self.files:
            fh.close()
