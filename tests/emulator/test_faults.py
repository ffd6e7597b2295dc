"""Fault injection, canonical error bodies, quotas, and the control plane over HTTP."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.emulator.harness import GMAIL_READONLY, EmulatorServer, Session

from .conftest import bearer
from .mail import simple
from .test_gmail import batch_body, parse_batch

PROFILE = "/gmail/v1/users/me/profile"


async def profile(http: httpx.AsyncClient, s: Session) -> httpx.Response:
    return await http.get(PROFILE, headers=bearer(s.access_token))


def body(
    code: int, message: str, domain: str, reason: str, status: str | None = None, **extra: str
) -> dict[str, Any]:
    err: dict[str, Any] = {
        "code": code,
        "message": message,
        "errors": [{"message": message, "domain": domain, "reason": reason, **extra}],
    }
    if status:
        err["status"] = status
    return {"error": err}


BACKOFF = "We encountered an internal error. Please try again using truncated exponential backoff."


@pytest.mark.parametrize(
    ("name", "code", "expected"),
    [
        (
            "429",
            429,
            body(
                429,
                "Resource has been exhausted (e.g. check quota).",
                "global",
                "rateLimitExceeded",
                "RESOURCE_EXHAUSTED",
            ),
        ),
        (
            "429-concurrent",
            429,
            body(
                429,
                "Too many concurrent requests for user.",
                "global",
                "rateLimitExceeded",
                "RESOURCE_EXHAUSTED",
            ),
        ),
        (
            "403-rateLimitExceeded",
            403,
            body(
                403,
                "Resource has been exhausted (e.g. check quota).",
                "global",
                "rateLimitExceeded",
                "PERMISSION_DENIED",
            ),
        ),
        (
            "403-userRateLimitExceeded",
            403,
            body(403, "User Rate Limit Exceeded", "usageLimits", "userRateLimitExceeded"),
        ),
        (
            "404",
            404,
            body(404, "Requested entity was not found.", "global", "notFound", "NOT_FOUND"),
        ),
        (
            "410-fullSyncRequired",
            410,
            body(
                410,
                "Sync token is no longer valid, a full sync is required.",
                "calendar",
                "fullSyncRequired",
                locationType="parameter",
                location="syncToken",
            ),
        ),
        (
            "500",
            500,
            {
                "error": {
                    "code": 500,
                    "message": "Internal Server Error",
                    "errors": [{"message": BACKOFF, "domain": "global", "reason": "internalError"}],
                }
            },
        ),
        (
            "503",
            503,
            {
                "error": {
                    "code": 503,
                    "message": "Service Unavailable",
                    "errors": [{"message": BACKOFF, "domain": "global", "reason": "backendError"}],
                }
            },
        ),
    ],
)
async def test_status_faults_send_canonical_bodies(
    emu: EmulatorServer,
    http: httpx.AsyncClient,
    session: Session,
    name: str,
    code: int,
    expected: dict[str, Any],
) -> None:
    emu.control.add_fault(kind="status", status=name, endpoint="gmail.users.getProfile", times=1)
    resp = await profile(http, session)
    assert resp.status_code == code
    assert resp.json() == expected
    assert resp.headers["content-type"] == "application/json; charset=UTF-8"
    assert (await profile(http, session)).status_code == 200  # times=1
    entry = emu.control.requests(api_method="gmail.users.getProfile")[0]
    assert entry.status == code and entry.fault is not None and entry.fault.endswith(":status")


async def test_retry_after_variants(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    emu.control.add_fault(
        kind="status",
        status="403-userRateLimitExceeded-retry-after",
        endpoint="gmail.*",
        times=1,
        retry_after=7,
    )
    resp = await profile(http, session)
    assert resp.status_code == 403
    assert resp.headers["retry-after"] == "7"
    message = resp.json()["error"]["message"]
    m = re.fullmatch(
        r"User-rate limit exceeded\.  Retry after (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)", message
    )
    assert m, message
    at = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    assert 890 < at - emu.control.now() <= 900
    assert resp.json()["error"]["errors"][0]["reason"] == "rateLimitExceeded"


async def test_html_502(emu: EmulatorServer, http: httpx.AsyncClient, session: Session) -> None:
    emu.control.add_fault(kind="status", status="502-html", path="/gmail/*")
    resp = await profile(http, session)
    assert resp.status_code == 502
    assert resp.headers["content-type"] == "text/html; charset=UTF-8"
    assert "<title>Error 502 (Server Error)!!1</title>" in resp.text


async def test_fault_matching_by_method_account_times_probability(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    bob = emu.quick_setup("bob@example.com", ["https://www.googleapis.com/auth/gmail.readonly"])
    emu.control.add_fault(kind="status", status="500", account="bob@example.com", times=2)
    assert (await profile(http, session)).status_code == 200
    assert [(await profile(http, bob)).status_code for _ in range(3)] == [500, 500, 200]
    emu.control.add_fault(kind="status", status="503", method="POST", path="/gmail/*")
    assert (await profile(http, session)).status_code == 200
    emu.control.clear_faults()
    emu.control.add_fault(kind="status", status="503", probability=0.0)
    assert (await profile(http, session)).status_code == 200
    emu.control.clear_faults()
    rule = emu.control.add_fault(kind="status", status="503", probability=0.5)
    codes = [(await profile(http, session)).status_code for _ in range(40)]
    assert 5 < codes.count(503) < 35
    assert next(f for f in emu.control.faults() if f["id"] == rule)["hits"] == codes.count(503)
    with pytest.raises(ValueError, match="unknown fault kind"):
        emu.control.add_fault(kind="explode")
    with pytest.raises(ValueError, match="unknown canonical error"):
        emu.control.add_fault(kind="status", status="418")


async def test_latency_fault(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    emu.control.add_fault(
        kind="latency", latency_ms=300, endpoint="gmail.users.getProfile", times=1
    )
    t0 = time.monotonic()
    assert (await profile(http, session)).status_code == 200
    assert time.monotonic() - t0 >= 0.3


async def test_server_latency_is_one_round_trip_per_batch() -> None:
    """``latency_ms`` models the network: a 20-part batch waits for it once, not 20 times."""
    async with EmulatorServer(latency_ms=100) as emu:
        session = emu.quick_setup("alice@example.com", [GMAIL_READONLY])
        mid = emu.control.add_message(session.email, simple("a"))
        reqs = [
            (f"c{i}", f"GET /gmail/v1/users/me/messages/{mid}?format=minimal") for i in range(20)
        ]
        async with httpx.AsyncClient(base_url=emu.base_url, timeout=30) as http:
            t0 = time.monotonic()
            resp = await http.post(
                "/batch/gmail/v1",
                content=batch_body("b", reqs),
                headers={
                    "content-type": "multipart/mixed; boundary=b",
                    **bearer(session.access_token),
                },
            )
            elapsed = time.monotonic() - t0
        assert [s for s, _ in parse_batch(resp).values()] == [200] * 20
        assert 0.1 <= elapsed < 1.5, elapsed  # 2.0 s when every part paid the round trip


async def test_batch_parts_run_concurrently(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    """Parts slowed by a fault overlap (batch time is the slowest part's), and while they
    overlap each one counts against the per-user concurrency cap."""
    mid = emu.control.add_message(session.email, simple("a"))
    emu.control.add_fault(kind="latency", latency_ms=400, endpoint="gmail.users.messages.get")
    reqs = [(f"c{i}", f"GET /gmail/v1/users/me/messages/{mid}?format=minimal") for i in range(6)]
    headers = {"content-type": "multipart/mixed; boundary=b", **bearer(session.access_token)}
    t0 = time.monotonic()
    parts = parse_batch(
        await http.post("/batch/gmail/v1", content=batch_body("b", reqs), headers=headers)
    )
    assert [s for s, _ in parts.values()] == [200] * 6
    assert time.monotonic() - t0 < 1.6  # 2.4 s one after another
    emu.control.set_quota(gmail_concurrency=2)
    parts = parse_batch(
        await http.post("/batch/gmail/v1", content=batch_body("b", reqs), headers=headers)
    )
    assert sorted(s for s, _ in parts.values()) == [200, 200, 429, 429, 429, 429]
    concurrent = [body for s, body in parts.values() if s == 429]
    assert concurrent[0]["error"]["message"] == "Too many concurrent requests for user."


async def test_batch_duplicate_reply_fault(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    ids = [emu.control.add_message(session.email, simple(f"m{i}")) for i in range(3)]
    reqs = [
        (f"c{i}", f"GET /gmail/v1/users/me/messages/{m}?format=minimal") for i, m in enumerate(ids)
    ]
    emu.control.set_batch_duplicate(True)
    resp = await http.post(
        "/batch/gmail/v1",
        content=batch_body("b", reqs),
        headers={"content-type": "multipart/mixed; boundary=b", **bearer(session.access_token)},
    )
    cids = re.findall(r"Content-ID: <(response-c\d)>", resp.text)
    assert len(cids) == 4 and set(cids) == {"response-c0", "response-c1", "response-c2"}
    assert len(emu.control.requests(api_method="gmail.users.messages.get")) == 3  # served once


async def test_hang_fault_trips_client_timeout(emu: EmulatorServer, session: Session) -> None:
    emu.control.add_fault(kind="hang", endpoint="gmail.users.getProfile", times=1)
    async with httpx.AsyncClient(base_url=emu.base_url, timeout=0.5) as http:
        with pytest.raises(httpx.ReadTimeout):
            await profile(http, session)
        assert (await profile(http, session)).status_code == 200


async def test_connection_reset_faults(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    emu.control.add_fault(kind="reset", endpoint="gmail.users.getProfile", times=1)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        await profile(http, session)
    emu.control.add_fault(kind="reset_after_headers", endpoint="gmail.users.getProfile", times=1)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        await profile(http, session)
    assert (await profile(http, session)).status_code == 200


async def test_truncated_body(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    emu.control.add_message(session.email, simple("x" * 50))
    emu.control.add_fault(kind="truncate", endpoint="gmail.users.messages.list", times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get("/gmail/v1/users/me/messages", headers=bearer(session.access_token))


@pytest.mark.parametrize(
    ("kind", "code", "expected"),
    [
        (
            "invalid_grant",
            400,
            {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
        ),
        (
            "invalid_client",
            401,
            {"error": "invalid_client", "error_description": "The OAuth client was not found."},
        ),
        (
            "invalid_rapt",
            400,
            {
                "error": "invalid_grant",
                "error_description": "reauth related error (invalid_rapt)",
                "error_subtype": "invalid_rapt",
            },
        ),
        (
            "500",
            500,
            {"error": "internal_failure", "error_description": "Internal error encountered."},
        ),
        (
            "503",
            503,
            {"error": "temporarily_unavailable", "error_description": "Service Unavailable"},
        ),
    ],
)
async def test_token_endpoint_faults(
    emu: EmulatorServer,
    http: httpx.AsyncClient,
    session: Session,
    kind: str,
    code: int,
    expected: dict[str, str],
) -> None:
    emu.control.add_fault(kind="token_error", token_error=kind, times=1)
    form = session.refresh_form()
    resp = await http.post("/token", data=form)
    assert (resp.status_code, resp.json()) == (code, expected)
    assert (await http.post("/token", data=form)).status_code == 200


async def test_token_endpoint_html_503(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    emu.control.add_fault(kind="token_error", token_error="503-html", times=1)
    resp = await http.post("/token", data={"grant_type": "refresh_token"})
    assert resp.status_code == 503 and resp.headers["content-type"].startswith("text/html")


async def test_inner_batch_part_fails_alone(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    ids = [emu.control.add_message(session.email, simple(f"m{i}")) for i in range(3)]
    emu.control.add_fault(kind="status", status="429", endpoint="gmail.users.messages.get", times=1)
    reqs = [
        (f"c{i}", f"GET /gmail/v1/users/me/messages/{mid}?format=minimal")
        for i, mid in enumerate(ids)
    ]
    resp = await http.post(
        "/batch/gmail/v1",
        content=batch_body("b", reqs),
        headers={"content-type": "multipart/mixed; boundary=b", **bearer(session.access_token)},
    )
    parts = parse_batch(resp)
    assert [parts[f"response-c{i}"][0] for i in range(3)] == [429, 200, 200]
    assert parts["response-c0"][1]["error"]["errors"][0]["reason"] == "rateLimitExceeded"


async def test_gmail_unit_quota_per_user_per_minute(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    mid = emu.control.add_message(session.email, simple("a"))
    emu.control.set_quota(gmail_units_per_minute=20)  # messages.get costs 5
    codes = [
        (
            await http.get(
                f"/gmail/v1/users/me/messages/{mid}", headers=bearer(session.access_token)
            )
        ).status_code
        for _ in range(5)
    ]
    assert codes == [200, 200, 200, 200, 429]
    resp = await http.get(
        f"/gmail/v1/users/me/messages/{mid}", headers=bearer(session.access_token)
    )
    assert resp.json()["error"]["message"].startswith("User-rate limit exceeded.  Retry after ")
    assert (await profile(http, session)).status_code == 429  # getProfile costs 1, window full
    emu.control.advance_clock(61)
    assert (await profile(http, session)).status_code == 200
    # Batch parts are charged one by one.
    emu.control.advance_clock(61)
    reqs = [(f"c{i}", f"GET /gmail/v1/users/me/messages/{mid}?format=minimal") for i in range(6)]
    parts = parse_batch(
        await http.post(
            "/batch/gmail/v1",
            content=batch_body("b", reqs),
            headers={"content-type": "multipart/mixed; boundary=b", **bearer(session.access_token)},
        )
    )
    assert sorted(status for status, _ in parts.values()) == [200, 200, 200, 200, 429, 429]


async def test_gmail_concurrency_cap(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    emu.control.set_quota(gmail_concurrency=2)
    emu.control.add_fault(kind="hang", endpoint="gmail.users.getProfile", times=2)
    hanging = [asyncio.create_task(profile(http, session)) for _ in range(2)]
    # Both are in flight once logged (and unanswered: they hang).
    async with asyncio.timeout(30):
        await emu.control.await_requests(
            api_method="gmail.users.getProfile", count=2, answered=False
        )
    over = [await profile(http, session) for _ in range(2)]
    assert [r.status_code for r in over] == [429, 429]
    assert over[0].json()["error"]["message"] == "Too many concurrent requests for user."
    assert (
        await http.get("/calendar/v3/users/me/calendarList", headers=bearer(session.access_token))
    ).status_code == 200
    for task in hanging:
        task.cancel()
    await asyncio.gather(*hanging, return_exceptions=True)


async def test_calendar_requests_per_minute(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    emu.control.set_quota(calendar_requests_per_minute=3)
    codes = [
        (
            await http.get(
                "/calendar/v3/users/me/calendarList", headers=bearer(session.access_token)
            )
        ).status_code
        for _ in range(4)
    ]
    assert codes == [200, 200, 200, 403]
    resp = await http.get(
        "/calendar/v3/users/me/calendarList", headers=bearer(session.access_token)
    )
    assert resp.json() == body(
        403, "User Rate Limit Exceeded", "usageLimits", "userRateLimitExceeded"
    )
    emu.control.advance_clock(60)
    assert (
        await http.get("/calendar/v3/users/me/calendarList", headers=bearer(session.access_token))
    ).status_code == 200


async def test_control_plane_over_http(emu: EmulatorServer, http: httpx.AsyncClient) -> None:
    import base64

    ops = (await http.get("/__emu__/")).json()["operations"]
    assert {"create_account", "add_fault", "requests", "reset"} <= set(ops)
    assert (
        await http.post("/__emu__/create_account", json={"email": "z@example.com", "name": "Zed"})
    ).json()["result"]["email"] == "z@example.com"
    client = (await http.post("/__emu__/create_client", json={})).json()["result"]
    tokens = (
        await http.post(
            "/__emu__/issue_tokens",
            json={
                "email": "z@example.com",
                "client_id": client["id"],
                "scopes": ["https://www.googleapis.com/auth/gmail.readonly"],
            },
        )
    ).json()["result"]
    raw = base64.b64encode(simple("over http")).decode()
    mid = (
        await http.post("/__emu__/add_message", json={"email": "z@example.com", "raw_base64": raw})
    ).json()["result"]
    fault = (
        await http.post("/__emu__/add_fault", json={"kind": "status", "status": "503", "times": 1})
    ).json()["result"]
    assert fault.startswith("fault-")
    h = bearer(tokens["access_token"])
    assert (await http.get(f"/gmail/v1/users/me/messages/{mid}", headers=h)).status_code == 503
    assert (await http.get(f"/gmail/v1/users/me/messages/{mid}", headers=h)).status_code == 200
    log = (
        await http.post("/__emu__/requests", json={"api_method": "gmail.users.messages.get"})
    ).json()["result"]
    assert [e["status"] for e in log] == [503, 200]
    assert log[0]["headers"]["authorization"].startswith("Bearer sha256:")
    assert tokens["access_token"] not in str(log)
    assert (await http.post("/__emu__/nope", json={})).status_code == 404
    bad = await http.post("/__emu__/create_account", json={"bogus": 1})
    assert bad.status_code == 400
    assert (await http.post("/__emu__/advance_clock", json={"seconds": 3600})).status_code == 200
    assert (await http.get(f"/gmail/v1/users/me/messages/{mid}", headers=h)).status_code == 401
    assert (await http.post("/__emu__/reset", json={})).status_code == 200
    assert emu.control.requests() == []


def test_in_thread_server_and_control_marshalling() -> None:
    with EmulatorServer.in_thread() as emu:
        s = emu.quick_setup("t@example.com")
        resp = httpx.get(emu.url(PROFILE), headers=bearer(s.access_token))
        assert resp.status_code == 200
        assert emu.control.requests()[0].bearer_present
    # Stopped: the port no longer answers.
    with pytest.raises(httpx.ConnectError):
        httpx.get(emu.url(PROFILE), timeout=2)


async def test_request_log_fingerprints_credentials_in_query(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    resp = await http.get(PROFILE, params={"access_token": session.access_token})
    assert resp.status_code == 200  # Google accepts the token as a query parameter too
    entry = emu.control.requests(api_method="gmail.users.getProfile")[0]
    value = entry.query_values("access_token")[0]
    assert value.startswith("sha256:") and session.access_token not in repr(entry.to_json())


async def test_unknown_path_gets_googles_html_404(http: httpx.AsyncClient) -> None:
    resp = await http.get("/gmail/v2/users/me/profile")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "text/html; charset=UTF-8"
    assert "Error 404 (Not Found)!!1" in resp.text


def test_quota_window_reports_when_a_request_would_fit() -> None:
    from trayapp.emulator.state import QuotaUsage

    q = QuotaUsage()
    key = ("gmail", "a@example.com")
    assert q.charge(key, 0.0, 5, 10) is None
    assert q.charge(key, 10.0, 5, 10) is None
    # Full: a 5-unit request fits once the first charge (t=0) leaves the window at t=60.
    assert q.charge(key, 20.0, 5, 10) == 60.0
    # A 10-unit request needs both earlier charges gone: t=70.
    assert q.charge(key, 20.0, 10, 10) == 70.0
    assert q.charge(key, 60.0, 5, 10) is None  # the t=0 charge has left


def test_wait_for_requests_from_another_thread() -> None:
    import threading

    with EmulatorServer.in_thread() as emu:
        s = emu.quick_setup("w@example.com")
        worker = threading.Thread(
            target=lambda: [
                httpx.get(emu.url(PROFILE), headers=bearer(s.access_token)) for _ in range(3)
            ]
        )
        worker.start()
        got = emu.control.wait_for_requests(
            api_method="gmail.users.getProfile", count=3, timeout=30
        )
        worker.join()
        assert [e.status for e in got] == [200, 200, 200]
        with pytest.raises(TimeoutError, match=r"waited 0\.2 s for 1 request"):
            emu.control.wait_for_requests(path="/calendar/*", timeout=0.2)


async def test_await_requests_in_the_server_loop(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session
) -> None:
    waiter = asyncio.create_task(
        emu.control.await_requests(api_method="gmail.users.getProfile", count=2)
    )
    await asyncio.sleep(0)
    assert not waiter.done()
    await profile(http, session)
    await profile(http, session)
    async with asyncio.timeout(10):
        got = await waiter
    assert len(got) == 2
    with pytest.raises(RuntimeError, match="await_requests"):
        emu.control.wait_for_requests(count=1)
