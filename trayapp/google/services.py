"""What a Google-backed pattern gets as ``ctx.google``: one account's service clients.

:class:`~trayapp.google.client.GoogleApi` is the implementation (the app builds one per account
and hands it to every charm of that account); tests and demo mode may pass anything with these
two methods. This is the whole pattern-to-Google seam, typed end to end: the clients' methods
return the typed pages and results of :mod:`trayapp.google.gmail` and
:mod:`trayapp.google.calendar`, and fail with the errors of :mod:`trayapp.google.errors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from trayapp.google.calendar import CalendarClient
    from trayapp.google.gmail import GmailClient


class GoogleServices(Protocol):
    """One account's Google services, as a pattern sees them (``ctx.google``)."""

    def gmail(self) -> GmailClient:
        """The account's Gmail v1 client."""
        ...

    def calendar(self) -> CalendarClient:
        """The account's Calendar v3 client."""
        ...
