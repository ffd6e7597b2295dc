"""The discovery oracle itself: it must catch real mistakes, and the emulator must pass it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.emulator.conformance import Conformance, load_discovery
from tests.emulator.harness import EmulatorServer, Session
from trayapp.emulator.scopes import METHOD_SCOPES

from .conftest import bearer
from .mail import MULTIPART


@pytest.fixture(scope="module")
def conf() -> Conformance:
    return Conformance.load(strict=True)


def test_scope_table_matches_discovery(conf: Conformance) -> None:
    for method_id, scopes in METHOD_SCOPES.items():
        if method_id == "oauth2.userinfo.v1":
            continue
        assert conf.methods[method_id].scopes == scopes, method_id


def test_emulator_routes_match_discovery_paths(conf: Conformance) -> None:
    from starlette.routing import Route

    from trayapp.emulator.routes import build_routes

    checked = 0
    for route in build_routes():
        assert isinstance(route, Route)
        spec = conf.methods.get(route.name)
        if spec is None:
            continue
        sample = route.path.replace("{userId}", "me").replace("{calendarId}", "primary")
        sample = (
            sample.replace("{messageId}", "abc").replace("{eventId}", "e1").replace("{id}", "x1")
        )
        assert spec.path_regex.match(sample), (route.name, sample)
        assert route.methods is not None and spec.http_method in route.methods
        checked += 1
    assert checked >= 10


def test_discovery_docs_are_the_pinned_revisions() -> None:
    assert load_discovery("gmail.v1")["revision"] == "20261005"
    assert load_discovery("calendar.v3")["revision"] == "20261030"


@pytest.mark.parametrize(
    ("method_id", "query", "fragment"),
    [
        ("calendar.events.list", [("singleEvents", "True")], "not a boolean"),
        ("gmail.users.messages.get", [("format", "FULL")], "not one of"),
        ("gmail.users.messages.get", [("maxResults", "5")], "unknown query parameter 'maxResults'"),
        ("gmail.users.messages.list", [("q", "a"), ("q", "b")], "is not repeated"),
        ("gmail.users.messages.list", [("maxResults", "ten")], "not a decimal integer"),
        ("gmail.users.history.list", [("startHistoryId", "12x")], "not a decimal integer"),
        ("calendar.events.list", [("maxResults", "0")], "below the minimum"),
        ("calendar.events.list", [("eventTypes", "meeting")], "not one of"),
    ],
)
def test_request_validator_catches_client_mistakes(
    conf: Conformance, method_id: str, query: list[tuple[str, str]], fragment: str
) -> None:
    path = {
        "calendar.events.list": "/calendar/v3/calendars/primary/events",
        "gmail.users.messages.get": "/gmail/v1/users/me/messages/abc",
    }.get(
        method_id,
        "/gmail/v1/users/me/messages" if "messages" in method_id else "/gmail/v1/users/me/history",
    )
    problems = conf.validate_request(method_id, "GET", path, query)
    assert any(fragment in p for p in problems), problems


def test_request_validator_accepts_good_requests_and_checks_paths(conf: Conformance) -> None:
    good = [
        ("labelIds", "INBOX"),
        ("labelIds", "UNREAD"),
        ("maxResults", "500"),
        ("includeSpamTrash", "false"),
        ("fields", "messages/id"),
    ]
    assert (
        conf.validate_request(
            "gmail.users.messages.list", "GET", "/gmail/v1/users/me/messages", good
        )
        == []
    )
    assert (
        conf.validate_request(
            "gmail.users.messages.list", "POST", "/gmail/v1/users/me/messages", []
        )
        != []
    )
    assert (
        conf.validate_request("gmail.users.messages.list", "GET", "/gmail/v2/users/me/messages", [])
        != []
    )


@pytest.mark.parametrize(
    ("method_id", "body", "fragment"),
    [
        (
            "gmail.users.getProfile",
            {"emailAddress": "a@b", "historyId": 1234},
            "historyId",
        ),  # 64-bit as number
        ("gmail.users.messages.get", {"id": "1", "internalDate": "12.5"}, "internalDate"),
        ("gmail.users.messages.get", {"id": "1", "inventedField": True}, "Additional properties"),
        ("gmail.users.messages.get", {"id": "1", "raw": "not base64!"}, "raw"),
        ("calendar.events.list", {"kind": "calendar#events", "items": []}, "exactly one of"),
        (
            "calendar.events.list",
            {"items": [], "nextPageToken": "a", "nextSyncToken": "b"},
            "exactly one of",
        ),
        ("gmail.users.history.list", {"historyId": "5", "history": []}, "omits the history key"),
        (
            "calendar.calendarList.list",
            {"items": [{"id": "x", "hidden": "yes"}], "nextSyncToken": "s"},
            "hidden",
        ),
    ],
)
def test_response_validator_catches_bad_shapes(
    conf: Conformance, method_id: str, body: dict[str, Any], fragment: str
) -> None:
    problems = conf.validate_response(method_id, body)
    assert any(fragment in p for p in problems), problems


def test_error_envelope_schema(conf: Conformance) -> None:
    from trayapp.emulator import errors

    for name in errors.CANONICAL_NAMES:
        if name == "502-html":
            continue
        assert (
            conf.validate_response(
                "gmail.users.getProfile",
                errors.canonical(name, retry_at_iso="2026-01-01T00:00:00.000Z").body(),
                429,
            )
            == []
        ), name
    assert conf.validate_response("gmail.users.getProfile", {"error": {"code": 1}}, 500) != []


async def test_nonconforming_response_becomes_500_and_raises_on_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler bug (an invented field) is caught by the middleware in test mode."""
    from trayapp.emulator import gmail_store

    original = gmail_store.StoredMessage.base

    def broken(self: gmail_store.StoredMessage) -> dict[str, Any]:
        return {**original(self), "invented": 1}

    monkeypatch.setattr(gmail_store.StoredMessage, "base", broken)
    emu = EmulatorServer()
    with pytest.raises(AssertionError, match="do not conform"):
        async with emu:
            s = emu.quick_setup("a@example.com")
            mid = emu.control.add_message(s.email, MULTIPART)
            async with httpx.AsyncClient(base_url=emu.base_url) as http:
                resp = await http.get(
                    f"/gmail/v1/users/me/messages/{mid}", headers=bearer(s.access_token)
                )
            assert resp.status_code == 500
            assert "does not conform" in resp.json()["error"]["message"]


async def test_every_format_of_a_real_message_conforms(
    emu: EmulatorServer, http: httpx.AsyncClient, session: Session, conf: Conformance
) -> None:
    mid = emu.control.add_message(session.email, MULTIPART)
    for fmt in ("minimal", "metadata", "full", "raw"):
        resp = await http.get(
            f"/gmail/v1/users/me/messages/{mid}",
            params={"format": fmt},
            headers=bearer(session.access_token),
        )
        assert resp.status_code == 200
        assert conf.validate_response("gmail.users.messages.get", resp.json()) == []
    assert emu.control.response_violations() == []
