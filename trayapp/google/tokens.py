"""The one thing the Google clients need from the accounts layer: a current access token.

The clients never see refresh tokens, client secrets or how refreshing works; the account's
token provider (``trayapp.auth``) implements :class:`TokenSource`. Keeping the seam this narrow
means the refresh single-flight and write-back live in one place, and the clients can be tested
with a tiny token source of their own.
"""

from __future__ import annotations

from typing import Protocol


class TokenSource(Protocol):
    """Hands out access tokens for one account.

    Both methods raise :class:`~trayapp.core.errors.AuthRequired` when the user must sign in
    again, and :class:`~trayapp.core.errors.Offline` or :class:`~trayapp.core.errors.ServerError`
    when a refresh failed for a transient reason.
    """

    async def access_token(self) -> str:
        """A token that is valid now (refreshed ahead of its expiry if needed)."""
        ...

    async def refresh_after_rejection(self, rejected: str) -> str:
        """A fresh token after Google answered 401 to ``rejected``.

        Single-flight: if another caller already replaced ``rejected`` with a newer token, that
        token is returned without another refresh.
        """
        ...
