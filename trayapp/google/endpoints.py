"""Where the Google services live, in one value, so the emulator can stand in for all of them.

Every module that talks to Google (the sign-in flow, the token provider, the Gmail and Calendar
clients) takes its URLs from a :class:`GoogleEndpoints` rather than from constants, so pointing
the whole app at the local emulator (tests, demo mode) is one ``GoogleEndpoints.for_base(url)``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GoogleEndpoints:
    """OAuth URLs and the API roots of Gmail v1 and Calendar v3.

    ``gmail_base`` and ``calendar_base`` are the discovery documents' ``rootUrl`` values: the
    method paths (``gmail/v1/users/...``, ``calendar/v3/...``) and the batch paths
    (``batch/gmail/v1``, ``batch/calendar/v3``) are appended to them.
    """

    auth_uri: str = "https://accounts.google.com/o/oauth2/v2/auth"
    token_uri: str = "https://oauth2.googleapis.com/token"
    revoke_uri: str = "https://oauth2.googleapis.com/revoke"
    userinfo_uri: str = "https://www.googleapis.com/oauth2/v2/userinfo"
    gmail_base: str = "https://gmail.googleapis.com/"
    calendar_base: str = "https://www.googleapis.com/"

    def __post_init__(self) -> None:
        # Normalise the API roots to end in exactly one slash so joining paths is unambiguous.
        object.__setattr__(self, "gmail_base", self.gmail_base.rstrip("/") + "/")
        object.__setattr__(self, "calendar_base", self.calendar_base.rstrip("/") + "/")

    @classmethod
    def for_base(cls, base_url: str) -> GoogleEndpoints:
        """Every service on one origin, with Google's own paths (how the emulator serves them)."""
        base = base_url.rstrip("/")
        return cls(
            auth_uri=f"{base}/o/oauth2/v2/auth",
            token_uri=f"{base}/token",
            revoke_uri=f"{base}/revoke",
            userinfo_uri=f"{base}/oauth2/v2/userinfo",
            gmail_base=f"{base}/",
            calendar_base=f"{base}/",
        )
