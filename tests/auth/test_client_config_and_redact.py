"""Client JSON validation, its storage without leaking the secret, and the redaction helpers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from trayapp.auth.client_config import ClientConfigRepo, parse_client_json
from trayapp.core.errors import ConfigError
from trayapp.core.redact import (
    MASK,
    SECRET_FIELDS,
    RedactingFilter,
    redact,
    redact_mapping,
    register_secret,
)
from trayapp.core.store import Store

GOOGLE_JSON = {
    "installed": {
        "client_id": "123-abc.apps.googleusercontent.com",
        "project_id": "my-project",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_secret": "GOCSPX-abcdefghijklmnop",
        "redirect_uris": ["http://localhost"],
    }
}


def test_google_client_json_gets_google_endpoints() -> None:
    config = parse_client_json(json.dumps(GOOGLE_JSON))
    assert config.is_google
    assert config.revoke_uri == "https://oauth2.googleapis.com/revoke"
    assert config.userinfo_uri == "https://www.googleapis.com/oauth2/v2/userinfo"
    assert "GOCSPX" not in repr(config) and "GOCSPX" not in str(config)
    assert "GOCSPX" not in json.dumps(config.public_summary())


def test_other_issuers_get_endpoints_beside_their_token_uri() -> None:
    doc = json.loads(json.dumps(GOOGLE_JSON))
    doc["installed"]["token_uri"] = "http://127.0.0.1:8123/token"
    doc["installed"]["auth_uri"] = "http://127.0.0.1:8123/o/oauth2/auth"
    config = parse_client_json(json.dumps(doc))
    assert not config.is_google
    assert config.revoke_uri == "http://127.0.0.1:8123/revoke"
    assert config.userinfo_uri == "http://127.0.0.1:8123/oauth2/v2/userinfo"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('{"web": {}}', "'Web application' client"),
        ('{"other": {}}', "no 'installed' section"),
        ('{"installed": {"client_id": "x", "client_secret": "y"}}', "missing auth_uri, token_uri"),
        ("{oops", "not JSON"),
        ('{"installed": {"client_id": "x", "client_se', "cut off"),
        ("  \n", "is empty"),
        ('{"type": "service_account", "client_email": "a@b"}', "service account key"),
    ],
)
def test_bad_client_json_says_what_to_fix(doc: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_client_json(doc)


def test_plain_http_endpoints_only_on_loopback() -> None:
    doc = json.loads(json.dumps(GOOGLE_JSON))
    doc["installed"]["token_uri"] = "http://example.com/token"
    with pytest.raises(ConfigError, match="plain-http"):
        parse_client_json(json.dumps(doc))


def test_stored_client_round_trips_with_its_secret(tmp_path: Path) -> None:
    config = parse_client_json(json.dumps(GOOGLE_JSON), source="client.json")
    with Store.open(tmp_path / "db") as store:
        ClientConfigRepo(store).set(config)
    with Store.open(tmp_path / "db") as store:
        loaded = ClientConfigRepo(store).require()
    assert loaded == config
    assert loaded.secret == "GOCSPX-abcdefghijklmnop"


def test_redact_masks_secret_shapes() -> None:
    text = (
        "Authorization: Bearer ya29.a0AfH6SMBx-yz "
        'body {"access_token": "abc.def", "refresh_token": "1//0gXYZ", "expires_in": 3599} '
        "form refresh_token=1//0gABC&client_secret=GOCSPX-xyz123&grant_type=refresh_token "
        "code 4/0AY0e-g7abc"
    )
    out = redact(text)
    for secret in (
        "ya29.a0AfH6SMBx-yz",
        "abc.def",
        "1//0gXYZ",
        "1//0gABC",
        "GOCSPX-xyz123",
        "4/0AY0e-g7abc",
    ):
        assert secret not in out
    assert "grant_type=refresh_token" in out and '"expires_in": 3599' in out
    assert MASK in out


def test_a_hint_with_an_ellipsis_is_not_redacted() -> None:
    hint = "enter it again: trayapp charms edit s --set api_key=..."
    assert redact(hint) == hint
    assert redact("--set token=...x") == f"--set token={MASK}"  # only the bare ellipsis
    assert redact("url?token=abc&x=1") == f"url?token={MASK}&x=1"


def test_registered_secrets_are_masked_whatever_their_shape() -> None:
    register_secret("emulator-token-XYZ123", None, "short")
    assert redact("got emulator-token-XYZ123 back") == f"got {MASK} back"
    assert redact("a short word") == "a short word"  # too short to register


def test_redact_mapping() -> None:
    data = {"access_token": "t", "nested": [{"refresh_token": "r", "n": 1}], "msg": "Bearer abc"}
    assert redact_mapping(data) == {
        "access_token": MASK,
        "nested": [{"refresh_token": MASK, "n": 1}],
        "msg": f"Bearer {MASK}",
    }


def test_mappings_and_text_mask_the_same_field_names() -> None:
    for field in SECRET_FIELDS:
        assert redact_mapping({field: "s3cr3t-value"}) == {field: MASK}, field
        assert "s3cr3t-value" not in redact(f'{{"{field}": "s3cr3t-value"}}'), field
        assert "s3cr3t-value" not in redact(f"x=1&{field}=s3cr3t-value"), field


def test_log_filter_scrubs_messages_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    register_secret("sekrit-token-value")
    logger = logging.getLogger("trayapp.test.redact")
    caplog.handler.addFilter(RedactingFilter())
    try:
        logger.warning("token is %s", "sekrit-token-value")
        try:
            raise ValueError("boom sekrit-token-value")
        except ValueError:
            logger.exception("failed")
    finally:
        caplog.handler.filters.clear()
    assert "sekrit-token-value" not in caplog.text
    assert MASK in caplog.text
