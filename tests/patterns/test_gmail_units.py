"""Small pure pieces of the Gmail importer: history folding, the local label check, queries."""

from __future__ import annotations

from datetime import date
from typing import Any

from trayapp.patterns.gmail import (
    GmailSettings,
    _apply_record,
    _Change,
    _LabelCheck,
    _labels_after,
    effective_query,
)


def ref(mid: str, labels: list[str] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"id": mid, "threadId": mid}
    if labels is not None:
        message["labelIds"] = labels
    return {"message": message}


def fold(*records: dict[str, Any]) -> dict[str, _Change]:
    changes: dict[str, _Change] = {}
    for record in records:
        _apply_record(changes, record)
    return changes


def test_history_records_fold_into_the_latest_labels_with_or_without_label_lists() -> None:
    changes = fold(
        {"messagesAdded": [ref("a", ["INBOX", "UNREAD"])]},
        # Label records without the message's full label list: deltas apply on top.
        {"labelsRemoved": [{**ref("a"), "labelIds": ["UNREAD"]}]},
        {"labelsAdded": [{**ref("a"), "labelIds": ["STARRED"]}]},
        {"labelsAdded": [{**ref("b", ["INBOX", "Label_1"]), "labelIds": ["Label_1"]}]},
        {"messagesAdded": [ref("c", ["INBOX"])]},
        {"messagesDeleted": [ref("c")]},
    )
    a, b, c = changes["a"], changes["b"], changes["c"]
    assert a.added and _labels_after(a, []) == ["INBOX", "STARRED"]
    assert not b.added and _labels_after(b, ["INBOX"]) == ["INBOX", "Label_1"]
    assert c.added and c.deleted
    # A stored message with no label list in its records: stored labels plus the deltas.
    only_delta = fold({"labelsRemoved": [{**ref("d"), "labelIds": ["INBOX"]}]})["d"]
    assert _labels_after(only_delta, ["INBOX", "UNREAD"]) == ["UNREAD"]


def test_local_label_check_uses_only_necessary_conditions() -> None:
    inbox = _LabelCheck(set(), "in:inbox from:bob")
    assert inbox(["INBOX"]) and not inbox(["SENT"])
    assert not inbox(["INBOX", "TRASH"])  # messages.list leaves trash out
    # OR or negation make label terms no longer necessary: Gmail decides.
    assert _LabelCheck(set(), "in:inbox OR is:starred")(["STARRED"])
    assert _LabelCheck(set(), "-in:inbox")(["SENT"])
    assert _LabelCheck(set(), "in:trash")(["TRASH"])
    assert not _LabelCheck({"Label_7"}, "")(["INBOX"])


def test_effective_query_adds_since_as_epoch_seconds_and_groups_alternatives() -> None:
    assert effective_query(GmailSettings()) == "in:inbox"
    since = GmailSettings(query="from:a OR from:b", since=date(2026, 1, 1))
    assert effective_query(since) == "(from:a OR from:b) after:1767225600"
    assert effective_query(GmailSettings(query="")) == ""
