"""Gmail v1: message formats derived from RFC 822 bytes, list/q, history cursors, batch."""

from __future__ import annotations

import base64
import email.message
import email.parser
import email.policy
import itertools
import re
from typing import Any

import httpx
import pytest

from tests.emulator.harness import EmulatorServer, Session

from .conftest import bearer, run_client
from .mail import MULTIPART, PDF_BYTES, simple

G = "/gmail/v1/users/me"


def b64url_decode(data: str) -> bytes:
    assert data.endswith("=") or len(data) % 4 == 0, "Gmail pads base64url"
    return base64.urlsafe_b64decode(data)


async def get(http: httpx.AsyncClient, s: Session, path: str, **params: Any) -> httpx.Response:
    return await http.get(path, params=params, headers=bearer(s.access_token))


async def test_full_format_follows_gmail_mime_rules(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    mid = emu.control.add_message(session.email, MULTIPART)
    msg = (await get(http, session, f"{G}/messages/{mid}", format="full")).json()
    assert re.fullmatch(r"[0-9a-f]{16}", msg["id"])
    assert msg["threadId"] == msg["id"]
    assert msg["labelIds"] == ["INBOX", "UNREAD"]
    assert msg["sizeEstimate"] == len(MULTIPART)
    assert msg["internalDate"] == "1767607200000"  # the Date header, epoch ms, as a string
    assert isinstance(msg["historyId"], str)
    assert msg["snippet"] == "Hello it&#39;s café &amp; &lt;b&gt;friends&lt;/b&gt;"
    assert "raw" not in msg
    root = msg["payload"]
    assert (root["partId"], root["mimeType"], root["filename"], root["body"]) == (
        "",
        "multipart/mixed",
        "",
        {"size": 0},
    )
    headers = {h["name"]: h["value"] for h in root["headers"]}
    assert headers["Subject"] == "Réunion it's <today>"  # decoded and unfolded
    assert headers["From"] == "Renée Müller <renee@example.com>"
    assert [h["name"] for h in root["headers"]][:3] == ["From", "To", "Cc"]  # original order
    alt, pdf = root["parts"]
    assert (alt["partId"], alt["mimeType"], alt["body"]) == (
        "0",
        "multipart/alternative",
        {"size": 0},
    )
    plain, html = alt["parts"]
    assert [plain["partId"], html["partId"]] == ["0.0", "0.1"]
    assert b64url_decode(plain["body"]["data"]) == "Hello it's café & <b>friends</b>".encode()
    assert plain["body"]["size"] == len("Hello it's café & <b>friends</b>".encode())
    assert pdf["partId"] == "1" and pdf["filename"] == "report.pdf"
    assert set(pdf["body"]) == {"attachmentId", "size"}  # never inline data for named parts
    assert pdf["body"]["size"] == len(PDF_BYTES)
    att = (
        await get(http, session, f"{G}/messages/{mid}/attachments/{pdf['body']['attachmentId']}")
    ).json()
    assert b64url_decode(att["data"]) == PDF_BYTES
    assert att["size"] == len(PDF_BYTES)


async def test_raw_minimal_metadata_formats(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    mid = emu.control.add_message(session.email, MULTIPART, label_ids=["INBOX"])
    raw = (await get(http, session, f"{G}/messages/{mid}", format="raw")).json()
    assert b64url_decode(raw["raw"]) == MULTIPART
    assert "payload" not in raw
    minimal = (await get(http, session, f"{G}/messages/{mid}", format="minimal")).json()
    assert set(minimal) == {
        "id",
        "threadId",
        "labelIds",
        "snippet",
        "sizeEstimate",
        "historyId",
        "internalDate",
    }
    meta = (
        await http.get(
            f"{G}/messages/{mid}?format=metadata&metadataHeaders=subject&metadataHeaders=From",
            headers=bearer(session.access_token),
        )
    ).json()
    assert [h["name"] for h in meta["payload"]["headers"]] == ["From", "Subject"]
    assert "parts" not in meta["payload"] and "body" not in meta["payload"]
    all_headers = (await get(http, session, f"{G}/messages/{mid}", format="metadata")).json()
    assert len(all_headers["payload"]["headers"]) == 8
    bad = await get(http, session, f"{G}/messages/{mid}", format="bogus")
    assert bad.status_code == 400
    # The conformance recorder flags the bad enum value a client sent.
    assert emu.control.take_request_violations() == [
        f"GET {G}/messages/{mid}?format=bogus: format='bogus' is not one of "
        "['minimal', 'full', 'raw', 'metadata']"
    ]


async def test_single_part_message_has_body_data_at_root(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    mid = emu.control.add_message(session.email, simple("Hi", body="x" * 10))
    payload = (await get(http, session, f"{G}/messages/{mid}")).json()["payload"]
    assert payload["partId"] == "" and "parts" not in payload
    assert b64url_decode(payload["body"]["data"]).rstrip(b"\r\n") == b"x" * 10


async def test_missing_message_404_verbatim(
    http: httpx.AsyncClient, session: Session, emu: EmulatorServer
) -> None:
    mid = emu.control.add_message(session.email, simple("gone"))
    emu.control.delete_message(session.email, mid)
    resp = await get(http, session, f"{G}/messages/{mid}")
    assert resp.status_code == 404
    assert resp.json() == {
        "error": {
            "code": 404,
            "message": "Requested entity was not found.",
            "errors": [
                {
                    "message": "Requested entity was not found.",
                    "domain": "global",
                    "reason": "notFound",
                }
            ],
            "status": "NOT_FOUND",
        }
    }


async def test_profile_labels_and_user_id(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    emu.control.add_message(session.email, simple("a"))
    label = emu.control.create_label(session.email, "Work/Projects")
    prof = (await get(http, session, f"{G}/profile")).json()
    assert prof == {
        "emailAddress": "alice@example.com",
        "messagesTotal": 1,
        "threadsTotal": 1,
        "historyId": emu.control.history_id(session.email),
    }
    same = await get(http, session, "/gmail/v1/users/alice@example.com/profile")
    assert same.status_code == 200
    other = await get(http, session, "/gmail/v1/users/bob@example.com/profile")
    assert other.status_code == 403
    assert other.json()["error"]["errors"] == [
        {
            "message": "Delegation denied for alice@example.com",
            "domain": "global",
            "reason": "forbidden",
        }
    ]
    labels = (await get(http, session, f"{G}/labels")).json()["labels"]
    ids = {lbl["id"]: lbl for lbl in labels}
    assert ids["INBOX"] == {"id": "INBOX", "name": "INBOX", "type": "system"}
    assert ids[label] == {
        "id": label,
        "name": "Work/Projects",
        "messageListVisibility": "show",
        "labelListVisibility": "labelShow",
        "type": "user",
    }
    one = (await get(http, session, f"{G}/labels/INBOX")).json()
    assert one["messagesTotal"] == 1 and one["messagesUnread"] == 1


async def test_messages_list_pages_see_changes_made_between_them(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    """Pages are served from one evaluation of the query while the mailbox is unchanged, so
    a change between pages (or a label created with a name the query uses) must show."""
    e = session.email
    ids = [
        emu.control.add_message(e, simple(f"m{i}"), internal_date=1_700_000_000_000 + i * 1000)
        for i in range(6)
    ]
    newest_first = list(reversed(ids))
    first = (await get(http, session, f"{G}/messages", maxResults=2)).json()
    assert [m["id"] for m in first["messages"]] == newest_first[:2]
    emu.control.delete_message(e, newest_first[2])
    emu.control.modify_labels(e, newest_first[3], add=["TRASH"])
    rest = (
        await get(http, session, f"{G}/messages", maxResults=2, pageToken=first["nextPageToken"])
    ).json()
    assert [m["id"] for m in rest["messages"]] == newest_first[4:]
    assert rest["resultSizeEstimate"] == 4 and "nextPageToken" not in rest
    assert (await get(http, session, f"{G}/messages", q="label:later")).json() == {
        "resultSizeEstimate": 0
    }
    label = emu.control.create_label(e, "Later")
    emu.control.modify_labels(e, ids[0], add=[label])
    later = (await get(http, session, f"{G}/messages", q="label:later")).json()
    assert [m["id"] for m in later["messages"]] == [ids[0]]


async def test_messages_list_pagination_labels_and_spam(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    ids = [
        emu.control.add_message(
            session.email, simple(f"m{i}"), internal_date=1_700_000_000_000 + i * 1000
        )
        for i in range(7)
    ]
    spam = emu.control.add_message(
        session.email, simple("spam"), label_ids=["SPAM"], internal_date=1_800_000_000_000
    )
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"maxResults": 3}
        if token:
            params["pageToken"] = token
        page = (await get(http, session, f"{G}/messages", **params)).json()
        pages += 1
        assert page["resultSizeEstimate"] == 7
        seen += [m["id"] for m in page["messages"]]
        token = page.get("nextPageToken")
        if token is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))  # newest first
    with_spam = (await get(http, session, f"{G}/messages", includeSpamTrash="true")).json()
    assert with_spam["messages"][0]["id"] == spam
    emu.control.modify_labels(session.email, ids[0], add=["STARRED"])
    both = (
        await http.get(
            f"{G}/messages?labelIds=INBOX&labelIds=STARRED", headers=bearer(session.access_token)
        )
    ).json()
    assert [m["id"] for m in both["messages"]] == [ids[0]]
    none = (await get(http, session, f"{G}/messages", labelIds="CHAT")).json()
    assert none == {"resultSizeEstimate": 0}
    bad_token = await get(http, session, f"{G}/messages", pageToken="garbage")
    assert bad_token.status_code == 400


async def test_page_token_is_bound_to_its_query(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    for i in range(3):
        emu.control.add_message(session.email, simple(f"m{i}"))
    token = (await get(http, session, f"{G}/messages", maxResults=1)).json()["nextPageToken"]
    assert (
        await get(http, session, f"{G}/messages", maxResults=1, q="subject:m1", pageToken=token)
    ).status_code == 400


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("from:bob", {"a", "c"}),
        ("from:carol@example.org", {"b"}),
        ("to:dave", {"c"}),
        ("subject:invoice", {"a"}),
        ("is:unread", {"a", "b"}),
        ("-is:unread", {"c"}),
        ("label:work", {"b"}),
        ("in:inbox", {"a", "b", "c"}),
        ("in:trash", {"t"}),
        ("in:anywhere subject:trashed", {"t"}),
        ("after:2026/01/02 before:2026/01/04", {"b"}),
        ("newer_than:2d", {"c"}),
        ("older_than:2d", {"a", "b"}),
        ('"quarterly report"', {"a"}),
        ("from:bob subject:invoice", {"a"}),
    ],
)
async def test_q_subset(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session, q: str, expected: set[str]
) -> None:
    now_ms = int(emu.control.now() * 1000)
    work = emu.control.create_label(session.email, "Work")
    names = {
        emu.control.add_message(
            session.email,
            simple("Invoice 42", body="the quarterly report"),
            internal_date=1767225600000 + 3600_000,
        ): "a",  # 2026-01-01
        emu.control.add_message(
            session.email,
            simple("Lunch", sender="Carol <carol@example.org>"),
            label_ids=["INBOX", "UNREAD", work],
            internal_date=1767312000000 + 12 * 3600_000,
        ): "b",  # 2026-01-02 12:00 UTC (04:00 Pacific: dates in q are Pacific midnights)
        emu.control.add_message(
            session.email,
            simple("Hello", to="dave@example.com"),
            label_ids=["INBOX"],
            internal_date=now_ms - 3600_000,
        ): "c",
        emu.control.add_message(
            session.email, simple("Trashed"), label_ids=["TRASH"], internal_date=1767312000000
        ): "t",
    }
    resp = (await get(http, session, f"{G}/messages", q=q)).json()
    assert {names[m["id"]] for m in resp.get("messages", [])} == expected


async def test_history_records_gaps_filters_and_pagination(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    start = emu.control.history_id(session.email)
    a = emu.control.add_message(session.email, simple("a"))
    b = emu.control.add_message(session.email, simple("b"))
    emu.control.modify_labels(session.email, a, remove=["UNREAD"])
    emu.control.modify_labels(session.email, b, add=["STARRED"])
    emu.control.delete_message(session.email, b)
    resp = (await get(http, session, f"{G}/history", startHistoryId=start)).json()
    recs = resp["history"]
    assert resp["historyId"] == emu.control.history_id(session.email)
    ids = [int(r["id"]) for r in recs]
    assert ids == sorted(ids) and all(i > int(start) for i in ids)
    assert recs[0]["messages"] == [{"id": a, "threadId": a}]
    kinds = [next(k for k in r if k not in ("id", "messages")) for r in recs]
    assert kinds == [
        "messagesAdded",
        "messagesAdded",
        "labelsRemoved",
        "labelsAdded",
        "messagesDeleted",
    ]
    assert recs[2]["labelsRemoved"][0]["labelIds"] == ["UNREAD"]
    assert recs[2]["labelsRemoved"][0]["message"]["labelIds"] == ["INBOX"]
    # Ids are not contiguous: over many changes some gap must exceed 1.
    for i in range(20):
        emu.control.add_message(session.email, simple(f"x{i}"))
    all_ids = [
        int(r["id"])
        for r in (
            await get(http, session, f"{G}/history", startHistoryId=start, maxResults=500)
        ).json()["history"]
    ]
    assert any(y - x > 1 for x, y in itertools.pairwise(all_ids))

    only_added = (
        await http.get(
            f"{G}/history?startHistoryId={start}&historyTypes=labelAdded&historyTypes=labelRemoved",
            headers=bearer(session.access_token),
        )
    ).json()
    assert [set(r) - {"id", "messages"} for r in only_added["history"]] == [
        {"labelsRemoved"},
        {"labelsAdded"},
    ]
    starred = (
        await get(http, session, f"{G}/history", startHistoryId=start, labelId="STARRED")
    ).json()
    assert starred["history"][0]["labelsAdded"][0]["labelIds"] == ["STARRED"]

    collected: list[str] = []
    params: dict[str, Any] = {"startHistoryId": start, "maxResults": 4}
    while True:
        page = (await get(http, session, f"{G}/history", **params)).json()
        collected += [r["id"] for r in page.get("history", [])]
        if "nextPageToken" not in page:
            break
        params["pageToken"] = page["nextPageToken"]
    assert [int(i) for i in collected] == all_ids


async def test_history_empty_has_no_history_key_and_floor_404(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    now = emu.control.history_id(session.email)
    empty = (await get(http, session, f"{G}/history", startHistoryId=now)).json()
    assert empty == {"historyId": now}
    emu.control.add_message(session.email, simple("a"))
    floor = emu.control.set_history_floor(session.email)
    gone = await get(http, session, f"{G}/history", startHistoryId=now)
    assert gone.status_code == 404
    assert gone.json()["error"]["errors"][0]["reason"] == "notFound"
    assert (await get(http, session, f"{G}/history", startHistoryId=floor)).status_code == 200
    missing = await get(http, session, f"{G}/history")
    assert missing.status_code == 400
    assert (
        missing.json()["error"]["errors"][0]["message"]
        == "Missing/invalid parameter: startHistoryId"
    )


async def test_filtered_history_pages_can_be_empty_with_next_page_token(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    start = emu.control.history_id(session.email)
    for i in range(5):
        emu.control.add_message(session.email, simple(f"x{i}"))
    mid = emu.control.add_message(session.email, simple("y"))
    emu.control.modify_labels(session.email, mid, add=["STARRED"])
    page = (
        await get(
            http,
            session,
            f"{G}/history",
            startHistoryId=start,
            historyTypes="labelAdded",
            maxResults=3,
        )
    ).json()
    assert "history" not in page and "nextPageToken" in page


async def test_threads_follow_references(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    first = emu.control.add_message(session.email, simple("topic", message_id="<t1@x>"))
    reply = emu.control.add_message(
        session.email, simple("Re: topic", message_id="<t2@x>", in_reply_to="<t1@x>")
    )
    other = emu.control.add_message(session.email, simple("other"))
    got = {
        m["id"]: m["threadId"]
        for m in (await get(http, session, f"{G}/messages")).json()["messages"]
    }
    assert got[reply] == got[first] == first
    assert got[other] == other


async def test_scope_checks(emu: EmulatorServer, http: httpx.AsyncClient, session: Session) -> None:
    mid = emu.control.add_message(session.email, simple("a"))
    cal_only = emu.control.issue_tokens(
        session.email, session.client.id, ["https://www.googleapis.com/auth/calendar.readonly"]
    )
    resp = await http.get(f"{G}/messages/{mid}", headers=bearer(cal_only["access_token"]))
    assert resp.status_code == 403
    assert resp.json()["error"]["message"] == "Request had insufficient authentication scopes."
    assert resp.headers["www-authenticate"].startswith(
        'Bearer realm="https://accounts.google.com/", error="insufficient_scope", scope="'
    )
    meta = emu.control.issue_tokens(
        session.email, session.client.id, ["https://www.googleapis.com/auth/gmail.metadata"]
    )
    h = bearer(meta["access_token"])
    assert (
        await http.get(f"{G}/messages/{mid}", params={"format": "metadata"}, headers=h)
    ).status_code == 200
    assert (
        await http.get(f"{G}/messages/{mid}", params={"format": "full"}, headers=h)
    ).status_code == 403
    assert (
        await http.get(f"{G}/messages/{mid}", params={"format": "raw"}, headers=h)
    ).status_code == 403
    assert (await http.get(f"{G}/messages", params={"q": "a"}, headers=h)).status_code == 403
    assert (await http.get(f"{G}/messages", headers=h)).status_code == 200
    full = await http.get(f"{G}/messages/{mid}", params={"format": "full"}, headers=h)
    assert full.json()["error"]["errors"] == [
        {
            "message": "Metadata scope doesn't allow format FULL",
            "domain": "global",
            "reason": "forbidden",
        }
    ]
    # The metadata scope restricts even next to gmail.readonly.
    both = emu.control.issue_tokens(
        session.email,
        session.client.id,
        [
            "https://www.googleapis.com/auth/gmail.metadata",
            "https://www.googleapis.com/auth/gmail.readonly",
        ],
    )
    q = await http.get(f"{G}/messages", params={"q": "a"}, headers=bearer(both["access_token"]))
    assert q.status_code == 403
    assert q.json()["error"]["message"] == "Metadata scope does not support 'q' parameter"
    none = await http.get(f"{G}/messages")
    assert none.status_code == 401
    assert none.json()["error"]["errors"][0]["reason"] == "required"


def batch_body(boundary: str, requests: list[tuple[str, str]]) -> bytes:
    out = ""
    for cid, line in requests:
        out += f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <{cid}>\r\n\r\n"
        out += f"{line} HTTP/1.1\r\n\r\n\r\n"
    return (out + f"--{boundary}--\r\n").encode()


def parse_batch(resp: httpx.Response) -> dict[str, tuple[int, Any]]:
    import json

    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
        b"Content-Type: " + resp.headers["content-type"].encode() + b"\r\n\r\n" + resp.content
    )
    out: dict[str, tuple[int, Any]] = {}
    parts = msg.get_payload()
    assert isinstance(parts, list)
    for part in parts:
        assert isinstance(part, email.message.Message)
        cid = str(part["Content-ID"]).strip("<>")
        text = part.get_payload()
        assert isinstance(text, str)
        status_line, rest = text.split("\r\n", 1)
        body = rest.split("\r\n\r\n", 1)[1]
        out[cid] = (int(status_line.split()[1]), json.loads(body))
    return out


async def test_batch_parts_content_ids_and_per_part_status(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    ids = [emu.control.add_message(session.email, simple(f"m{i}")) for i in range(5)]
    reqs = [(f"id+{i}", f"GET {G}/messages/{mid}?format=minimal") for i, mid in enumerate(ids)]
    reqs.append(("id+missing", f"GET {G}/messages/0000000000000000"))
    emu.control.set_batch_shuffle(True)
    resp = await http.post(
        "/batch/gmail/v1",
        content=batch_body("XYZ", reqs),
        headers={"content-type": "multipart/mixed; boundary=XYZ", **bearer(session.access_token)},
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("multipart/mixed; boundary=batch_")
    parts = parse_batch(resp)
    assert set(parts) == {f"response-id+{i}" for i in range(5)} | {"response-id+missing"}
    for i, mid in enumerate(ids):
        assert parts[f"response-id+{i}"] == (200, parts[f"response-id+{i}"][1])
        assert parts[f"response-id+{i}"][1]["id"] == mid
    assert parts["response-id+missing"][0] == 404
    inner = [e for e in emu.control.requests(api_method="gmail.users.messages.get") if e.batch_part]
    assert len(inner) == 6 and all(e.bearer_present for e in inner)


async def test_batch_limits_and_same_api(http: httpx.AsyncClient, session: Session) -> None:
    many = [(f"c{i}", f"GET {G}/profile") for i in range(101)]
    resp = await http.post(
        "/batch",
        content=batch_body("b", many),
        headers={"content-type": "multipart/mixed; boundary=b", **bearer(session.access_token)},
    )
    assert resp.status_code == 400
    # Gmail's wording, as captured in mhasbini/gmail_analyzer#12.
    assert resp.json()["error"]["message"] == (
        "Inner request count exceeds the limit. Received: 101, Limit: 100"
    )
    mixed = [("a", "GET /calendar/v3/users/me/calendarList")]
    parts = parse_batch(
        await http.post(
            "/batch/gmail/v1",
            content=batch_body("b", mixed),
            headers={"content-type": "multipart/mixed; boundary=b", **bearer(session.access_token)},
        )
    )
    assert parts["response-a"][0] == 400
    ok = parse_batch(
        await http.post(
            "/batch",
            content=batch_body("b", many[:100]),
            headers={"content-type": "multipart/mixed; boundary=b", **bearer(session.access_token)},
        )
    )
    assert len(ok) == 100 and all(status == 200 for status, _ in ok.values())


async def test_google_api_python_client_reads_emulator(
    emu: EmulatorServer, session: Session
) -> None:
    """googleapiclient parses the emulator's list and batch replies (in a subprocess)."""
    mids = [emu.control.add_message(session.email, simple(f"m{i}")) for i in range(3)]
    out = await run_client("googleapiclient_gmail.py", emu.base_url, session.access_token, *mids)
    assert set(out["listed"]) == set(mids)
    assert {k: v["id"] for k, v in out["batch"].items() if k != "missing"} == {m: m for m in mids}
    assert out["batch"]["missing"] == {"status": 404}
    assert (
        len(
            [e for e in emu.control.requests(api_method="gmail.users.messages.get") if e.batch_part]
        )
        == 4
    )


async def test_fields_partial_responses(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    for i in range(3):
        emu.control.add_message(session.email, simple(f"m{i}"))
    page = (
        await get(http, session, f"{G}/messages", maxResults=2, fields="messages/id,nextPageToken")
    ).json()
    assert set(page) == {"messages", "nextPageToken"}
    assert all(set(m) == {"id"} for m in page["messages"])
    mid = page["messages"][0]["id"]
    msg = (
        await get(http, session, f"{G}/messages/{mid}", fields="id,payload(mimeType,headers/name)")
    ).json()
    assert set(msg) == {"id", "payload"}
    assert set(msg["payload"]) == {"mimeType", "headers"}
    assert all(set(h) == {"name"} for h in msg["payload"]["headers"])
    bad = await get(http, session, f"{G}/messages", fields="messages(id")
    assert bad.status_code == 400


async def test_history_retention_on_the_virtual_clock(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    emu.control.set_history_retention(7 * 24 * 3600)
    start = emu.control.history_id(session.email)
    emu.control.add_message(session.email, simple("old"))
    emu.control.advance_clock(8 * 24 * 3600)
    recent = emu.control.history_id(session.email)
    emu.control.add_message(session.email, simple("new"))
    session.access_token = emu.control.issue_tokens(
        session.email, session.client.id, list(session.scopes)
    )["access_token"]
    assert (await get(http, session, f"{G}/history", startHistoryId=start)).status_code == 404
    ok = (await get(http, session, f"{G}/history", startHistoryId=recent)).json()
    assert len(ok["history"]) == 1
