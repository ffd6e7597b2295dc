"""A tiny real TokenSource for tests: tokens from the emulator, refreshed at its /token endpoint.

The app's own provider (``trayapp.auth``) has more to do (write-back, keyring, triage); the
client tests only need the protocol, implemented honestly: a real refresh-token grant over HTTP,
single-flight, and ``AuthRequired`` when the grant is refused.
"""

from __future__ import annotations

import asyncio

import httpx

from tests.emulator.harness import EmulatorServer, Session
from trayapp.core.errors import AuthRequired, ServerError


class EmulatorTokens:
    def __init__(self, token_uri: str, session: Session) -> None:
        self.token_uri = token_uri
        self.client_id = session.client.id
        self.client_secret = session.client.secret
        self.refresh_token = session.refresh_token
        self.current = session.access_token
        self.refreshes = 0
        self._lock = asyncio.Lock()

    @classmethod
    def for_session(cls, emu: EmulatorServer, session: Session) -> EmulatorTokens:
        return cls(f"{emu.base_url}/token", session)

    async def access_token(self) -> str:
        return self.current

    async def refresh_after_rejection(self, rejected: str) -> str:
        async with self._lock:
            if rejected != self.current:
                return self.current  # someone else already refreshed
            async with httpx.AsyncClient() as http:
                response = await http.post(
                    self.token_uri,
                    data={
                        "grant_type": "refresh_token",
                        "client_id": self.client_id,
                        "client_secret": self.client_secret,
                        "refresh_token": self.refresh_token,
                    },
                )
            if response.status_code == 400 and response.json().get("error") == "invalid_grant":
                raise AuthRequired("The account's sign-in expired; sign in again.")
            if response.status_code != 200:
                raise ServerError(f"token refresh failed (HTTP {response.status_code})")
            self.refreshes += 1
            self.current = response.json()["access_token"]
            return self.current
