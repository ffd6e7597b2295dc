"""Credentials for services other than Google: an API token, or OAuth 2.0 with a provider.

Declare what your pattern needs as its ``credential`` class attribute; its charms then belong to
an account of that service (``trayapp accounts add --service <service>``, or "Add a <Title>
token…" in Settings), and the run gets ``ctx.credential`` (:class:`Credential`)::

    class Issues(Pattern[IssuesSettings]):
        id = "github-issues"
        title = "GitHub issues"
        credential = ApiToken(service="github", title="GitHub",
                              help_url="https://github.com/settings/tokens")

        async def bg_updater(self, ctx: UpdateContext[IssuesSettings]) -> RunReport:
            assert ctx.credential is not None
            resp = await ctx.http.get(URL, auth=ctx.credential.auth)
            raise_for_status(resp, ctx.now())   # 401/403 -> AuthRequired -> "needs sign-in"
            ...

The token lives in the keyring (or the flagged 0600 file), never in the database, ``--json`` or
the log; a refused token makes the account "need sign-in" in the tray, Settings and ``trayapp
accounts list``, like a Google account. The guide: docs/plugins.md, "Credentials for other
services".
"""

from __future__ import annotations

from trayapp.core.credentials import ApiToken, Credential, CredentialAuth, OAuth2Provider

__all__ = ["ApiToken", "Credential", "CredentialAuth", "OAuth2Provider"]
