"""The log file in the profile's logs dir: INFO, rotated, 0600, secrets redacted."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from trayapp.core import logfile
from trayapp.core.logfile import close_log_file, log_file_path, setup_log_file
from trayapp.core.profile import Profile
from trayapp.core.redact import forget_secrets, register_secret


@pytest.fixture
def profile(tmp_path: Path) -> Iterator[Profile]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    levels = {h: h.level for h in handlers}
    httpx_level = logging.getLogger("httpx").level
    prof = Profile.resolve(tmp_path / "profile")
    yield prof
    close_log_file(prof)
    root.setLevel(level)
    for h, lvl in levels.items():
        h.setLevel(lvl)
    logging.getLogger("httpx").setLevel(httpx_level)
    forget_secrets()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def flush() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


def test_info_lines_go_to_a_private_file_in_the_logs_dir(profile: Profile) -> None:
    logging.getLogger().setLevel(logging.WARNING)  # as a quiet stderr left it
    path = setup_log_file(profile)
    assert path == profile.path / "logs" / "trayapp.log" == log_file_path(profile)
    logging.getLogger("trayapp.charm.news").info("charm news: ok (+3 ~0 -0)")
    logging.getLogger("trayapp.test").debug("too detailed for the file")
    flush()
    text = path.read_text(encoding="utf-8")
    assert "INFO    trayapp.charm.news: charm news: ok (+3 ~0 -0)" in text
    assert "too detailed" not in text
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_secrets_never_reach_the_file(profile: Profile) -> None:
    token = "ya29.a0AfH6SMBsecretsecretsecret"
    register_secret(token)
    path = setup_log_file(profile)
    logging.getLogger("trayapp.auth").info("refreshed, new token %s", token)
    try:
        raise RuntimeError(f"server echoed Bearer {token}")
    except RuntimeError:
        logging.getLogger("trayapp.google").exception("request failed")
    flush()
    text = path.read_text(encoding="utf-8")
    assert "refreshed, new token" in text and "request failed" in text
    assert token not in text


def test_rotates_and_every_file_stays_private(
    profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logfile, "MAX_BYTES", 2000)
    path = setup_log_file(profile)
    log = logging.getLogger("trayapp.test")
    for n in range(200):
        log.info("line %d %s", n, "x" * 50)
    flush()
    rotated = sorted(path.parent.iterdir())
    names = [p.name for p in rotated]
    assert names == [
        "trayapp.log",
        "trayapp.log.1",
        "trayapp.log.2",
        "trayapp.log.3",
        "trayapp.log.4",
        "trayapp.log.5",
    ]
    assert all(mode(p) == 0o600 for p in rotated)
    assert "line 199" in path.read_text(encoding="utf-8")


def test_a_second_setup_adds_no_second_handler_and_stderr_keeps_its_level(
    profile: Profile,
) -> None:
    root = logging.getLogger()
    stderr = logging.StreamHandler()
    root.addHandler(stderr)
    try:
        root.setLevel(logging.WARNING)
        setup_log_file(profile)
        setup_log_file(profile)
        files = [h for h in root.handlers if isinstance(h, logfile.PrivateRotatingFileHandler)]
        assert len(files) == 1
        assert root.level == logging.INFO
        assert stderr.level == logging.WARNING  # -q / default stderr is not made chattier
    finally:
        root.removeHandler(stderr)


def test_httpx_request_lines_with_urls_stay_out(profile: Profile) -> None:
    path = setup_log_file(profile)
    logging.getLogger("httpx").info("HTTP Request: GET https://example.org/feed?key=abc")
    flush()
    assert "example.org" not in path.read_text(encoding="utf-8")


def test_an_existing_looser_file_is_tightened(profile: Profile) -> None:
    path = log_file_path(profile)
    path.parent.mkdir(parents=True)
    path.write_text("old line\n", encoding="utf-8")
    path.chmod(0o644)
    setup_log_file(profile)
    assert mode(path) == 0o600
    assert path.read_text(encoding="utf-8").startswith("old line")
