"""GmailClient and GoogleApi against the emulator: auth, retries, batches, history."""

from __future__ import annotations

import pytest

from trayapp.core.errors import RateLimited
from trayapp.google.errors import GoogleRequestError, HistoryExpired

from .conftest import EMAIL, Rig


def rfc822(n: int, subject: str | None = None) -> bytes:
    return (
        f"From: Sender {n} <s{n}@example.org>\r\nTo: {EMAIL}\r\n"
        f"Subject: {subject or f'Message {n}'}\r\n"
        f"Date: Mon, 2 Nov 2026 10:{n % 60:02d}:00 +0000\r\n"
        f"Message-ID: <m{n}@example.org>\r\n\r\nBody {n}\r\n"
    ).encode()


def seed(rig: Rig, count: int, labels: list[str] | None = None) -> list[str]:
    return [
        rig.emu.control.add_message(EMAIL, rfc822(n), label_ids=labels or ["INBOX"])
        for n in range(count)
    ]


async def test_profile_and_labels(rig: Rig) -> None:
    gmail = rig.api.gmail()
    profile = await gmail.get_profile()
    assert profile["emailAddress"] == EMAIL
    assert profile["historyId"] == rig.emu.control.history_id(EMAIL)
    labels = {label["id"] for label in await gmail.list_labels()}
    assert {"INBOX", "SENT", "TRASH"} <= labels


async def test_expired_token_one_refresh_one_retry(rig: Rig) -> None:
    rig.emu.control.expire_access_tokens(EMAIL)
    await rig.api.gmail().get_profile()
    calls = rig.emu.control.requests(api_method="gmail.users.getProfile")
    assert [c.status for c in calls] == [401, 200]
    assert len(rig.emu.control.requests(api_method="oauth.token")) == 1
    assert rig.tokens.refreshes == 1


async def test_revoked_grant_ends_in_auth_required_after_one_attempt(rig: Rig) -> None:
    from trayapp.core.errors import AuthRequired

    rig.emu.control.revoke_refresh_token(EMAIL)
    with pytest.raises(AuthRequired):
        await rig.api.gmail().get_profile()
    assert len(rig.emu.control.requests(api_method="gmail.users.getProfile")) == 1
    assert len(rig.emu.control.requests(api_method="oauth.token")) == 1


@pytest.mark.parametrize("status", ["429", "429-concurrent", "403-rateLimitExceeded", "503"])
async def test_transient_errors_then_success(rig: Rig, status: str) -> None:
    rig.emu.control.add_fault(
        kind="status", status=status, endpoint="gmail.users.getProfile", times=3
    )
    await rig.api.gmail().get_profile()
    calls = rig.emu.control.requests(api_method="gmail.users.getProfile")
    assert [c.status for c in calls][-1] == 200 and len(calls) == 4
    assert len(rig.clock.waits) >= 3


async def test_html_502_is_retried(rig: Rig) -> None:
    rig.emu.control.add_fault(
        kind="status", status="502-html", endpoint="gmail.users.getProfile", times=1
    )
    await rig.api.gmail().get_profile()
    assert len(rig.emu.control.requests(api_method="gmail.users.getProfile")) == 2


async def test_no_retry_on_400(rig: Rig) -> None:
    rig.emu.control.add_fault(
        kind="status", status="400-invalidArgument", endpoint="gmail.users.messages.list"
    )
    with pytest.raises(GoogleRequestError) as info:
        await rig.api.gmail().list_message_ids("in:inbox")
    assert info.value.status == 400
    assert len(rig.emu.control.requests(api_method="gmail.users.messages.list")) == 1
    assert rig.clock.waits == []


async def test_retry_after_far_away_raises_rate_limited_without_waiting(rig: Rig) -> None:
    rig.emu.control.add_fault(
        kind="status",
        status="429-userRateLimitExceeded-retry-after",
        endpoint="gmail.users.getProfile",
        retry_after_message_seconds=900,
    )
    with pytest.raises(RateLimited) as info:
        await rig.api.gmail().get_profile()
    assert len(rig.emu.control.requests(api_method="gmail.users.getProfile")) == 1
    assert info.value.retry_after is not None
    ahead = (info.value.retry_after - rig.clock.now()).total_seconds()
    assert 850 < ahead < 950


async def test_list_pages_follow_every_page(rig: Rig) -> None:
    ids = seed(rig, 23)
    gmail = rig.api.gmail()
    pages = [page async for page in gmail.iter_message_pages("in:inbox", max_results=5)]
    assert len(pages) == 5
    listed = [m["id"] for page in pages for m in page.messages]
    assert sorted(listed) == sorted(ids)
    calls = rig.emu.control.requests(api_method="gmail.users.messages.list")
    assert [c.query_values("maxResults") for c in calls] == [["5"]] * 5


async def test_get_messages_batched_with_metadata_headers(rig: Rig) -> None:
    ids = seed(rig, 60)
    result = await rig.api.gmail().get_messages(
        ids, format="metadata", metadata_headers=["From", "Subject"]
    )
    assert list(result.messages) == ids and not result.errors and not result.not_found
    first = result.messages[ids[0]]
    names = {h["name"] for h in first["payload"]["headers"]}
    assert names <= {"From", "Subject"} and "Subject" in names
    batches = rig.emu.control.requests(api_method="gmail.batch")
    assert len(batches) == 2  # 50 + 10
    parts = [c for c in rig.emu.control.requests(api_method="gmail.users.messages.get")]
    assert len(parts) == 60 and all(c.batch_part for c in parts)
    assert all(c.query_values("metadataHeaders") == ["From", "Subject"] for c in parts)


async def test_batch_part_failing_alone_is_retried_alone(rig: Rig) -> None:
    ids = seed(rig, 8)
    rig.emu.control.set_batch_shuffle(True)
    rig.emu.control.add_fault(
        kind="status",
        status="429",
        endpoint="gmail.users.messages.get",
        path=f"/gmail/v1/users/me/messages/{ids[3]}",
        times=2,
    )
    result = await rig.api.gmail().get_messages(ids, format="minimal")
    assert list(result.messages) == ids
    parts = rig.emu.control.requests(api_method="gmail.users.messages.get")
    # 8 in the first batch, then message 3 alone, twice.
    assert len(parts) == 10
    assert [p.path.rsplit("/", 1)[1] for p in parts[8:]] == [ids[3], ids[3]]
    assert len(rig.emu.control.requests(api_method="gmail.batch")) == 3


async def test_message_deleted_between_list_and_get(rig: Rig) -> None:
    ids = seed(rig, 4)
    rig.emu.control.delete_message(EMAIL, ids[1])
    result = await rig.api.gmail().get_messages(ids, format="minimal")
    assert result.not_found == [ids[1]]
    assert list(result.messages) == [ids[0], ids[2], ids[3]]
    assert len(rig.emu.control.requests(api_method="gmail.batch")) == 1  # 404 is not retried


async def test_history_follows_every_page_to_the_current_history_id(rig: Rig) -> None:
    ids = seed(rig, 3)
    start = rig.emu.control.history_id(EMAIL)
    added = seed(rig, 12)
    rig.emu.control.modify_labels(EMAIL, ids[0], add=["STARRED"])
    rig.emu.control.delete_message(EMAIL, ids[1])
    pages = [p async for p in rig.api.gmail().list_history(start, max_results=4)]
    assert len(pages) >= 4 and pages[-1].is_last and not any(p.is_last for p in pages[:-1])
    assert pages[-1].history_id == rig.emu.control.history_id(EMAIL)
    records = [h for p in pages for h in p.history]
    added_ids = {c["message"]["id"] for h in records for c in h.get("messagesAdded", [])}
    deleted = {c["message"]["id"] for h in records for c in h.get("messagesDeleted", [])}
    starred = {c["message"]["id"] for h in records for c in h.get("labelsAdded", [])}
    assert added_ids == set(added) and deleted == {ids[1]} and starred == {ids[0]}
    calls = rig.emu.control.requests(api_method="gmail.users.history.list")
    assert {tuple(c.query_values("startHistoryId")) for c in calls} == {(start,)}


async def test_history_with_no_changes_is_one_request(rig: Rig) -> None:
    seed(rig, 2)
    start = rig.emu.control.history_id(EMAIL)
    pages = [p async for p in rig.api.gmail().list_history(start)]
    assert len(pages) == 1 and pages[0].history == [] and pages[0].history_id == start
    assert len(rig.emu.control.requests(api_method="gmail.users.history.list")) == 1


async def test_history_too_old_is_history_expired(rig: Rig) -> None:
    seed(rig, 2)
    start = rig.emu.control.history_id(EMAIL)
    seed(rig, 2)
    rig.emu.control.set_history_floor(EMAIL)
    with pytest.raises(HistoryExpired):
        async for _ in rig.api.gmail().list_history(start, history_types=["messageAdded"]):
            pass
    assert len(rig.emu.control.requests(api_method="gmail.users.history.list")) == 1
