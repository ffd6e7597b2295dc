"""Exporting a Gmail charm: ``jsonl`` (one message per line) and ``.eml`` (raw messages).

The export reads what a real sync stored, through an ``UpdateContext`` like the one the CLI
will build (``trayapp export CHARM --format F``), and the files are checked by parsing them back.
"""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path
from typing import Any

import pytest

from trayapp.api import ExportError
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.patterns import UpdateContext
from trayapp.patterns.gmail import GmailImporter

# Fixtures come from tests/patterns/conftest.py (not importable by name: pytest owns it).
GoogleHarness = Any
HarnessFactory = Any


@pytest.fixture
async def h(google_harness: HarnessFactory) -> GoogleHarness:
    return await google_harness(patterns=(GmailImporter,))


async def synced(h: GoogleHarness, settings: dict[str, Any]) -> tuple[str, UpdateContext[Any]]:
    charm = h.add_charm("gmail-importer", settings)
    assert (await h.sync(charm)).kind is OutcomeKind.OK
    info = h.engine.charm(charm)
    pattern = h.engine.patterns.get("gmail-importer")
    ctx: UpdateContext[Any] = UpdateContext(
        charm_id=charm,
        settings=pattern.validate_settings(info.settings),
        account_id=info.account_id,
        store=h.engine.store,
        specs={spec.name: spec for spec in pattern.cells},
        bindings=dict(info.bindings),
        collections=tuple(pattern.collections),
        http=h.engine.http,
    )
    return charm, ctx


def hidden_files(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


async def test_jsonl_export_writes_one_message_per_line_oldest_first(
    h: GoogleHarness, tmp_path: Path
) -> None:
    ids = [h.add_mail(f"subject {n}", internal_date_ms=1_700_000_000_000 + n) for n in range(4)]
    _, ctx = await synced(h, {"parts": "text"})
    dest = tmp_path / "out.jsonl"

    count = GmailImporter().export(ctx, "jsonl", dest)

    lines = dest.read_text(encoding="utf-8").splitlines()
    assert count == 4 and len(lines) == 4
    rows = [json.loads(line) for line in lines]
    assert [r["id"] for r in rows] == ids
    assert [r["subject"] for r in rows] == [f"subject {n}" for n in range(4)]
    assert all(r["text"] and "raw" not in r for r in rows)
    assert hidden_files(tmp_path) == [], "no temporary file left behind"


async def test_eml_export_writes_the_raw_messages(h: GoogleHarness, tmp_path: Path) -> None:
    mid = h.add_mail("with attachment", body="hello ✓\n", attachment=("a.bin", b"\x00\x01"))
    other = h.add_mail("second")
    _, ctx = await synced(h, {"parts": "raw"})
    dest = tmp_path / "eml"

    count = GmailImporter().export(ctx, "eml", dest)

    assert count == 2
    assert sorted(p.name for p in dest.iterdir()) == sorted([f"{mid}.eml", f"{other}.eml"])
    parsed = email.message_from_bytes(
        (dest / f"{mid}.eml").read_bytes(), policy=email.policy.default
    )
    assert parsed["Subject"] == "with attachment"
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None and body.get_content() == "hello ✓\n"
    assert [a.get_filename() for a in parsed.iter_attachments()] == ["a.bin"]
    # The stored item of a raw charm also has the parsed fields.
    item = h.items(ctx.charm_id)[mid]
    assert item["subject"] == "with attachment" and item["text"] == "hello ✓\n"
    assert item["attachments"] == [
        {"partId": "1", "filename": "a.bin", "mimeType": "application/octet-stream", "size": 2}
    ]


async def test_eml_export_without_raw_messages_says_what_to_change(
    h: GoogleHarness, tmp_path: Path
) -> None:
    h.add_mail("m")
    _, ctx = await synced(h, {"parts": "text"})
    with pytest.raises(ExportError, match="set its parts setting to 'raw'"):
        GmailImporter().export(ctx, "eml", tmp_path / "eml")
    assert not (tmp_path / "eml").exists()
    with pytest.raises(ExportError, match="jsonl or eml"):
        GmailImporter().export(ctx, "mbox", tmp_path / "x")
    assert GmailImporter.export_formats == ("jsonl", "eml")
