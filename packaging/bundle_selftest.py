"""Proves a frozen bundle collected everything the app needs at run time.

PyInstaller finds imports by reading bytecode, so whatever a library loads by name at run time
(keyring's entry-point backends, Qt's platform and image plugins, package data read through
``importlib.resources``, certificates) can be silently missing from a bundle that builds fine and
even starts. Each check below uses the thing the way the app will, inside the frozen
interpreter, and the JSON report says which one broke and why. ``packaging/entry.py`` runs this
when ``TRAYAPP_BUNDLE_SELFTEST`` names the report file; the build script and
tests/packaging run it against every bundle they build.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

Check = Callable[[], Any]

# Modules a frozen app must be able to import: the app's own dependencies plus the pieces they
# load lazily or by name (each of these has gone missing from somebody's PyInstaller bundle).
REQUIRED_MODULES = (
    "certifi",
    "dateutil.tz",
    "desktop_notifier",
    "desktop_notifier.backends.dbus",
    "dbus_fast.aio",
    "feedparser",
    "google.auth",
    "google.oauth2.credentials",
    "httpx",
    "icalendar",
    "jeepney.io.asyncio",
    "keyring.backends.SecretService",
    "keyring.backends.chainer",
    "keyring.backends.fail",
    "platformdirs",
    "pydantic",
    "pydantic_core",
    "qasync",
    "PySide6.QtDBus",  # the sleep watcher's D-Bus (else dbus-fast at start: more RSS)
    "secretstorage",
    "sqlite3",
    "ssl",
    "starlette.applications",
    "uvicorn",
    "uvicorn.lifespan.on",
    "uvicorn.loops.auto",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.websockets.auto",
    "zoneinfo",
)

# Qt plugins the tray needs: xcb (X11) and wayland to show anything, offscreen for tests and
# headless diagnostics, the SVG image format and icon engine because every icon is an SVG.
REQUIRED_QT_PLUGINS = (
    "platforms/libqxcb.so",
    "platforms/libqwayland.so",
    "platforms/libqoffscreen.so",
    "imageformats/libqsvg.so",
    "iconengines/libqsvgicon.so",
)

_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16">'
    '<rect width="16" height="16" fill="#2a7ae2"/></svg>'
)


def _version() -> dict[str, str]:
    from importlib.metadata import version

    import trayapp

    meta = version("pattern-sync")
    if trayapp.__version__ != meta or "unknown" in meta:
        raise RuntimeError(f"__version__ {trayapp.__version__!r} != metadata {meta!r}")
    return {"version": meta}


def _trayapp_modules() -> dict[str, int]:
    import trayapp

    # __main__ modules run the app when imported; everything else must import cleanly.
    names = [
        m.name
        for m in pkgutil.walk_packages(trayapp.__path__, "trayapp.")
        if not m.name.endswith(".__main__")
    ]
    failed = {}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
    if failed:
        raise RuntimeError(f"cannot import {failed}")
    if len(names) < 3:
        raise RuntimeError(f"only {names} were collected")
    # The built-in patterns are registered by descriptor and imported by name when first used.
    from trayapp.builtins import default_registry

    registry = default_registry(plugins=False)
    loaded = [registry.get(meta.id).id for meta in registry.metas()]
    if registry.problems or len(loaded) < 4:
        raise RuntimeError(f"built-in patterns {loaded}; problems {registry.problems}")
    return {"modules": len(names), "patterns": len(loaded)}


def _modules() -> dict[str, int]:
    failed = {}
    for name in REQUIRED_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
    if failed:
        raise RuntimeError(f"cannot import {failed}")
    return {"modules": len(REQUIRED_MODULES)}


# What a plugin may import although the app itself never does (docs/install.md, "What a plugin
# can rely on in the bundle"): parts of the standard library and of the libraries the spec
# collects whole (PLUGIN_LIBRARIES).
PLUGIN_MODULES = (
    "csv",
    "email.mime.text",
    "xml.dom.minidom",
    "html.parser",
    "sqlite3",
    "unittest.mock",
    "cmath",
    "wave",
    "mailbox",
    "dbm.dumb",
    "httpx._transports.mock",
    "dateutil.easter",
    "packaging.requirements",
    "packaging.tags",
    "pydantic.networks",
    "icalendar.cal",
)


def _plugin_platform() -> dict[str, Any]:
    """The modules plugins may use, and the metadata of every bundled library.

    `trayapp plugins install` leaves a requirement out of a plugin's folder when the bundle has
    the library, which it knows from the library's metadata; without it every plugin would
    download its own httpx or pydantic.
    """
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement

    failed = {}
    for name in PLUGIN_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
    if failed:
        raise RuntimeError(f"cannot import {failed}")
    versions, missing = {}, []
    for line in requires("pattern-sync") or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            versions[req.name] = version(req.name)
        except PackageNotFoundError:
            missing.append(req.name)
    if missing:
        raise RuntimeError(f"no metadata for the bundled {missing}")
    return {"modules": len(PLUGIN_MODULES), "distributions": versions}


def _keyring() -> dict[str, Any]:
    from importlib.metadata import entry_points

    from keyring.backend import get_all_keyring

    group = sorted(ep.name for ep in entry_points(group="keyring.backends"))
    if "SecretService" not in group:
        raise RuntimeError(f"keyring.backends entry points lost: {group}")
    names = sorted(f"{type(k).__module__}.{type(k).__name__}" for k in get_all_keyring())
    # Viable backends depend on the session (a D-Bus session bus for SecretService); the
    # entry points and the class being importable are what the bundle controls.
    from keyring.backends.SecretService import Keyring

    return {"entry_points": group, "viable": names, "secretservice": Keyring.__module__}


def _secret_service_roundtrip() -> dict[str, str]:
    """Store, read and delete a secret through the D-Bus Secret Service, as the app does.

    Only with ``TRAYAPP_BUNDLE_SELFTEST_KEYRING=1`` (it needs a session bus with an unlocked
    keyring daemon): it proves secretstorage, jeepney and cryptography work frozen, which
    importing them does not.
    """
    if os.environ.get("TRAYAPP_BUNDLE_SELFTEST_KEYRING") != "1":
        return {"skipped": "set TRAYAPP_BUNDLE_SELFTEST_KEYRING=1 with a keyring daemon running"}
    from keyring.backends import SecretService

    ring: Any = SecretService.Keyring  # keyring is only partly typed
    ring = ring()
    service, user, secret = "trayapp-bundle-selftest", "probe", os.urandom(8).hex()
    ring.set_password(service, user, secret)
    try:
        if ring.get_password(service, user) != secret:
            raise RuntimeError("the Secret Service returned a different secret")
    finally:
        ring.delete_password(service, user)
    if ring.get_password(service, user) is not None:
        raise RuntimeError("the secret survived delete_password")
    return {"backend": f"{type(ring).__module__}.{type(ring).__name__}"}


def _notifier() -> dict[str, str]:
    from importlib.resources import files

    icon = files("desktop_notifier.resources") / "python.png"
    if not icon.is_file():
        raise RuntimeError("desktop_notifier.resources/python.png was not collected")
    from desktop_notifier import DesktopNotifier

    return {"class": DesktopNotifier.__name__}


def _certifi() -> dict[str, str]:
    import ssl

    import certifi

    where = certifi.where()
    ctx = ssl.create_default_context(cafile=where)
    if not ctx.get_ca_certs():
        raise RuntimeError(f"no CA certificates loaded from {where}")
    return {"cafile": where}


def _qt() -> dict[str, Any]:
    from PySide6.QtCore import QByteArray, QLibraryInfo
    from PySide6.QtGui import QGuiApplication, QIcon, QImageReader, QPixmap

    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    missing = [p for p in REQUIRED_QT_PLUGINS if not (plugins / p).is_file()]
    if missing:
        raise RuntimeError(f"Qt plugins missing under {plugins}: {missing}")
    # Offscreen whatever the session: this proves files and plugins, not that a display exists.
    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0], "-platform", "offscreen"])
    _keep_alive.append(app)
    formats = {bytes(f.data()).decode() for f in QImageReader.supportedImageFormats()}
    if "svg" not in formats:
        raise RuntimeError(f"no SVG image format; have {sorted(formats)}")
    with tempfile.TemporaryDirectory() as tmp:
        svg = Path(tmp) / "probe.svg"
        svg.write_text(_SVG)
        pixmap = QIcon(str(svg)).pixmap(32, 32)
        if pixmap.isNull():
            raise RuntimeError("QIcon could not render an SVG (iconengines/libqsvgicon.so)")
    direct = QPixmap()
    if not direct.loadFromData(QByteArray(_SVG.encode()), "svg"):
        raise RuntimeError("QPixmap could not load SVG data (imageformats/libqsvg.so)")
    return {"platform": QGuiApplication.platformName(), "plugins": str(plugins)}


def _icu() -> dict[str, Any]:
    """Qt's ICU still finds the data build.sh kept (packaging/linux/shrink_icu.py).

    A broken or misnamed ICU archive does not stop Qt: it warns once and falls back, e.g. to
    sorting by code point ("ä" after "z"). So each use Qt makes of ICU data is asked for once.
    """
    from PySide6.QtCore import QByteArray, QCollator, QDateTime, QLocale, QTimeZone

    problems = []
    collator = QCollator(QLocale("de_DE"))
    if not collator.compare("ä", "b") < 0:
        problems.append("collation (QCollator sorts by code point: no ICU collation data)")
    if QLocale("tr_TR").toUpper("i") != "\u0130":
        problems.append("locale case mapping")
    zone = QTimeZone(QByteArray(b"Europe/Berlin"))
    name = zone.displayName(
        QDateTime.currentDateTime(), QTimeZone.NameType.LongName, QLocale("en_US")
    )
    if not zone.isValid() or "Central European" not in name:
        problems.append(f"English time-zone names (got {name!r})")
    if problems:
        raise RuntimeError("ICU data missing for: " + "; ".join(problems))
    return {"zone_name": name}


def _app_resources() -> dict[str, Any]:
    """The app's own icons are in the bundle and Qt's SVG renderer accepts every one of them.

    The tray draws a plain coloured disc when an icon file is missing or unreadable (better than
    an invisible icon), so a bundle without its resources would still look roughly alive: this
    is where that would be noticed.
    """
    from PySide6.QtSvg import QSvgRenderer

    base = Path(getattr(sys, "_MEIPASS", "")) / "resources"
    icons = sorted((base / "icons").glob("*.svg"))
    if not icons:
        raise RuntimeError(f"no SVG icons under {base / 'icons'}")
    invalid = [p.name for p in icons if not QSvgRenderer(str(p)).isValid()]
    if invalid:
        raise RuntimeError(f"Qt cannot render {invalid}")
    if not (base / "trayapp.desktop.in").is_file():
        raise RuntimeError("resources/trayapp.desktop.in (used for autostart) is missing")
    return {"icons": [p.name for p in icons]}


def _environment() -> dict[str, Any]:
    """Children (xdg-open, the browser, another copy of us) get the user's environment."""
    import subprocess

    app_dir = str(Path(sys.executable).resolve().parent)
    child = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout
    leaked = [
        line
        for line in child.splitlines()
        if (app_dir in line or line.startswith("_PYI_"))
        and not line.startswith(("_=", "PWD=", "OLDPWD="))
    ]
    if leaked:
        raise RuntimeError(f"child processes inherit the bundle's settings: {leaked}")
    at_exec: dict[str, str] = {}
    proc = Path("/proc/self/environ")
    if proc.exists():
        for item in proc.read_bytes().split(b"\0"):
            key, _, value = item.decode(errors="replace").partition("=")
            if key == "LD_LIBRARY_PATH":
                at_exec[key] = value
    # A copy of the app started from the app must set itself up from scratch and work.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAYAPP_BUNDLE_SELFTEST")}
    again = subprocess.run(
        [sys.executable, "--version"], env=env, capture_output=True, text=True, timeout=60
    )
    if again.returncode != 0 or not again.stdout.startswith("trayapp "):
        raise RuntimeError(f"the app cannot start itself: {again.stdout}{again.stderr}")
    return {
        "app_dir": app_dir,
        "loader_path_at_start": at_exec.get("LD_LIBRARY_PATH"),
        "self_start": again.stdout.strip(),
    }


_keep_alive: list[object] = []  # the QGuiApplication must outlive the checks

CHECKS: dict[str, Check] = {
    "version": _version,
    "trayapp_modules": _trayapp_modules,
    "modules": _modules,
    "keyring": _keyring,
    "secret_service": _secret_service_roundtrip,
    "notifier": _notifier,
    "certifi": _certifi,
    "qt": _qt,
    "icu": _icu,
    "app_resources": _app_resources,
    "environment": _environment,
    "plugin_platform": _plugin_platform,
}


def run(report_path: str) -> int:
    """Run every check, write the JSON report, and return 0 only if all passed."""
    results: dict[str, dict[str, Any]] = {}
    for name, check in CHECKS.items():
        try:
            results[name] = {"ok": True, "detail": check()}
        except Exception as exc:
            results[name] = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=5),
            }
    ok = all(r["ok"] for r in results.values())
    report = {"ok": ok, "frozen": bool(getattr(sys, "frozen", False)), "checks": results}
    Path(report_path).write_text(json.dumps(report, indent=2, default=str))
    return 0 if ok else 1
