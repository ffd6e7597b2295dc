"""The request checker itself must catch the mistakes it exists for."""

from __future__ import annotations

from .discovery_check import check


def test_accepts_a_correct_request() -> None:
    query = [("format", "metadata"), ("metadataHeaders", "From"), ("metadataHeaders", "To")]
    assert check("gmail.users.messages.get", "GET", "/gmail/v1/users/me/messages/abc", query) == []


def test_flags_python_spelling_and_unknown_params() -> None:
    path = "/calendar/v3/calendars/%23contacts%40group.v.calendar.google.com/events"
    problems = check(
        "calendar.events.list", "GET", path, [("singleEvents", "True"), ("bogus", "1")]
    )
    assert len(problems) == 2
    problems = check(
        "gmail.users.messages.get",
        "GET",
        "/gmail/v1/users/me/messages/a",
        [
            ("format", "FULL"),
            ("format", "full"),
        ],
    )
    assert len(problems) == 2  # wrong case, and a repeat of a non-repeated parameter


def test_flags_integers_booleans_paths_methods_and_offsets() -> None:
    assert check(
        "gmail.users.messages.list", "GET", "/gmail/v1/users/me/messages", [("maxResults", "many")]
    )
    assert check(
        "gmail.users.messages.list",
        "GET",
        "/gmail/v1/users/me/messages",
        [("includeSpamTrash", "1")],
    )
    assert check("gmail.users.getProfile", "POST", "/gmail/v1/users/me/profile", [])
    assert check("gmail.users.getProfile", "GET", "/gmail/v1/me/profile", [])
    assert check(
        "calendar.events.list",
        "GET",
        "/calendar/v3/calendars/x/events",
        [("timeMin", "2026-01-01T00:00:00")],
    )
