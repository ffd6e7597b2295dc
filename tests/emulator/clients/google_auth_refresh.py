"""Refresh with the real google-auth library against the emulator (run as a subprocess).

A subprocess keeps ``google`` resolvable as the installed namespace package whatever pytest
puts on sys.path. Arguments: token_uri refresh_token client_id client_secret.
"""

import json
import sys

import google.auth.transport.requests
from google.oauth2.credentials import Credentials

token_uri, refresh_token, client_id, client_secret = sys.argv[1:5]
creds = Credentials(
    token=None,
    refresh_token=refresh_token,
    token_uri=token_uri,
    client_id=client_id,
    client_secret=client_secret,
)
try:
    creds.refresh(google.auth.transport.requests.Request())
    print(
        json.dumps(
            {
                "ok": True,
                "token_prefix": (creds.token or "")[:5],
                "has_expiry": creds.expiry is not None,
            }
        )
    )
except google.auth.exceptions.RefreshError as exc:
    print(
        json.dumps(
            {
                "ok": False,
                "args": [a if isinstance(a, dict) else str(a) for a in exc.args],
                "retryable": exc.retryable,
            }
        )
    )
