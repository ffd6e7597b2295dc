"""``trayapp`` with only the tray's options skips the full parser, and means the same.

trayapp/cli/tray.py answers for a command line that only starts the tray (the desktop entry's
``trayapp``), so the tray does not build every command group and read the package metadata before
its icon (issue 17.2). Whatever it accepts must parse exactly as the full parser parses it;
everything else must go to the full parser (which explains errors, --help, --version).
"""

from __future__ import annotations

import sys

import pytest

from trayapp.cli.parser import build_parser
from trayapp.cli.tray import DEFAULTS, tray_options

TRAY_ONLY = [
    [],
    ["--profile", "/p"],
    ["--profile=/p"],
    ["--profile", ""],
    ["--profile", "a", "--profile", "b"],
    ["--profile", "sync"],  # a folder named like a command is still the folder
    ["--demo"],
    ["--no-tray"],
    ["-v"],
    ["-vv"],
    ["--verbose", "-q"],
    ["-qq"],
    ["--profile", "/p", "--demo", "--no-tray", "-vvv", "--quiet"],
]

NOT_TRAY_ONLY = [
    ["sync"],
    ["run"],
    ["status", "--profile", "x"],
    ["--demo", "sync"],
    ["--help"],
    ["-h"],
    ["--version"],
    ["--json"],
    ["--prof", "/p"],  # an abbreviation: the full parser decides
    ["--profile"],
    ["--profile", "-v"],
    ["-vq"],
    ["-x"],
    ["--"],
    ["-"],
]


@pytest.mark.parametrize("argv", TRAY_ONLY, ids=lambda a: " ".join(a) or "(none)")
def test_the_tray_options_parse_as_the_full_parser_does(argv: list[str]) -> None:
    ns = tray_options(argv)
    assert ns is not None
    full = build_parser().parse_args(argv)
    assert getattr(full, "handler", None) is None  # the full parser starts the tray too
    for key in (*DEFAULTS, "json"):
        assert getattr(ns, key) == getattr(full, key), key


@pytest.mark.parametrize("argv", NOT_TRAY_ONLY, ids=" ".join)
def test_anything_else_goes_to_the_full_parser(argv: list[str]) -> None:
    assert tray_options(argv) is None


def test_the_tray_start_builds_no_parser_and_reads_no_metadata(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a graphical session ``trayapp --profile DIR`` says so, through the short path."""
    from trayapp import cli
    from trayapp.cli import parser

    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)

    def no_parser() -> None:
        raise AssertionError("the full parser was built for a tray start")

    monkeypatch.setattr(parser, "build_parser", no_parser)
    monkeypatch.setattr(sys, "platform", "linux")
    rc = cli.main(["--profile", "/nonexistent/trayapp-profile", "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and "no graphical session" in err and "trayapp run --headless" in err, err
