"""Real messages we did not write, through the emulator and the importer, checked against
Python's ``email`` package on the raw bytes, in ``full`` (text+html) and ``raw`` mode.

The corpus: mail-parser's test messages (Apache-2.0, shipped under tests/data/mime-corpus with
its licence) and, when the interpreter has its ``test`` package, CPython's own ``email`` test
corpus (see tests/data/mime-corpus/README.md).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from mime_oracle import PARSER, expected_attachments, expected_text, header

from trayapp.core.outcomes import OutcomeKind
from trayapp.patterns.gmail import GmailImporter

GoogleHarness = Any
HarnessFactory = Any

CORPUS = Path(__file__).resolve().parents[1] / "data" / "mime-corpus" / "mail-parser"


def cpython_corpus() -> list[Path]:
    spec = importlib.util.find_spec("test")
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(next(iter(spec.submodule_search_locations))) / "test_email" / "data"
    return sorted(data.glob("msg_*.txt"))


def corpus() -> dict[str, bytes]:
    files = sorted(CORPUS.glob("*.eml")) + cpython_corpus()
    return {f"{p.parent.name}/{p.name}": p.read_bytes() for p in files}


@pytest.fixture
async def h(google_harness: HarnessFactory) -> GoogleHarness:
    return await google_harness(patterns=(GmailImporter,))


async def test_real_messages_match_pythons_email_package_in_both_modes(h: GoogleHarness) -> None:
    messages = corpus()
    assert len(messages) >= 14
    ids = {
        name: h.emu.control.add_message(h.email, raw, label_ids=["INBOX"])
        for name, raw in messages.items()
    }
    full = h.add_charm("gmail-importer", {"query": "", "parts": "text+html"}, name="full")
    raw_charm = h.add_charm("gmail-importer", {"query": "", "parts": "raw"}, name="raw")
    for charm in (full, raw_charm):
        outcome = await h.sync(charm)
        assert outcome.kind is OutcomeKind.OK, outcome.message

    stored = {"full": h.items(full), "raw": h.items(raw_charm)}
    problems: list[str] = []
    with_attachments = 0
    for name, raw in messages.items():
        msg = PARSER.parsebytes(raw)
        want = {
            "subject": header(msg, "Subject"),
            "from": header(msg, "From"),
            "to": header(msg, "To"),
            "date": header(msg, "Date"),
            "attachments": expected_attachments(raw),
        }
        with_attachments += bool(want["attachments"])
        for mode, items in stored.items():
            item = items.get(ids[name])
            if item is None:
                problems.append(f"{name} ({mode}): not stored")
                continue
            for key, value in want.items():
                if item[key] != value:
                    problems.append(f"{name} ({mode}) {key}: {item[key]!r} != {value!r}")
            text = (item["text"] or "").replace("\r\n", "\n")
            if text != expected_text(raw):
                problems.append(f"{name} ({mode}) text: {text[:80]!r}...")
        texts = [(stored[m][ids[name]]["text"] or "").replace("\r\n", "\n") for m in stored]
        if texts[0] != texts[1]:
            problems.append(f"{name}: text differs between full and raw mode")
    assert not problems, "\n".join(problems)
    assert with_attachments >= 5  # the corpus exercises attachments, not only bodies
