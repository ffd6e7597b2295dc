"""Fixtures shared by the core tests: a real SQLite store in the test's temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from trayapp.core.store import Store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Where the store lives; tests that reopen or damage the file use it directly."""
    return tmp_path / "profile" / "store.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    s = Store.open(db)
    yield s
    s.close()
