"""Google accounts: OAuth client config, browser sign-in, token provider, secret storage.

Modules: :mod:`~trayapp.auth.accounts` (AccountManager, the entry point),
:mod:`~trayapp.auth.tokens` (TokenProvider: refresh, single flight, write-back, triage),
:mod:`~trayapp.auth.signin` (loopback + PKCE flow), :mod:`~trayapp.auth.secrets` (keyring or
flagged 0600 file), :mod:`~trayapp.auth.client_config`, :mod:`~trayapp.auth.wiring` (engine
and Google client glue). The ``trayapp accounts ...`` commands are :mod:`trayapp.cli.accounts`.
See docs/accounts.md.
"""
