from __future__ import annotations

import pytest

from chalicelib.errors import ConfigError
from chalicelib.settings import Settings

MINIMAL = {"IDEMPOTENCY_TABLE": "t"}


def test_settings_defaults_follow_the_contract():
    settings = Settings.from_env({**MINIMAL, "BRIDGE_STAGE": "prod"})

    assert settings.rokt_api_url == "https://api.roktcalendar.com"
    assert settings.ssm_prefix == "/rokt-calendar-bridge/prod"
    assert settings.idempotency_ttl_seconds == 172_800
    assert settings.delivery_mode == "direct"
    assert settings.update_body_shape == "wrapped"


def test_sync_settings_are_optional_and_validated():
    assert not Settings.from_env(MINIMAL).sync_configured
    settings = Settings.from_env(
        {**MINIMAL, "BRAZE_REST_ENDPOINT": "https://rest.iad-01.braze.com/", "SYNC_QUEUE_URL": "https://sqs/q"}
    )
    assert settings.sync_configured
    assert settings.braze_rest_endpoint == "https://rest.iad-01.braze.com"
    assert settings.braze_identity_fallback == "email"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**MINIMAL, "BRAZE_REST_ENDPOINT": "http://rest.example", "BRAZE_IDENTITY_FALLBACK": "x"})
    assert "BRAZE_REST_ENDPOINT" in str(caught.value)
    assert "BRAZE_IDENTITY_FALLBACK" in str(caught.value)


def test_settings_reports_every_problem_at_once():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                "ROKT_API_URL": "http://api.example.com",
                "BRIDGE_SSM_PREFIX": "no-slash",
                "IDEMPOTENCY_TTL_SECONDS": "soon",
                "ROKT_TIMEOUT_SECONDS": "30",
                "DELIVERY_MODE": "queued",
                "ROKT_UPDATE_BODY_SHAPE": "nested",
            }
        )

    text = str(caught.value)
    for name in (
        "ROKT_API_URL",
        "BRIDGE_SSM_PREFIX",
        "IDEMPOTENCY_TABLE",
        "IDEMPOTENCY_TTL_SECONDS",
        "ROKT_TIMEOUT_SECONDS",
        "DELIVERY_QUEUE_URL",
        "ROKT_UPDATE_BODY_SHAPE",
    ):
        assert name in text


@pytest.mark.parametrize("url", ["http://127.0.0.1:8081", "http://localhost:9", "https://rokt.example"])
def test_settings_accepts_https_or_loopback_http(url: str):
    assert Settings.from_env({**MINIMAL, "ROKT_API_URL": url}).rokt_api_url == url


def test_settings_keeps_every_answer_under_api_gateway_limit():
    with pytest.raises(ConfigError, match="BRIDGE_REQUEST_BUDGET_SECONDS"):
        Settings.from_env({**MINIMAL, "BRIDGE_REQUEST_BUDGET_SECONDS": "29"})


def test_a_delivery_queue_needs_a_budget_that_holds_a_queued_intents_note_and_send():
    queue = {**MINIMAL, "DELIVERY_QUEUE_URL": "https://sqs/q", "ROKT_TIMEOUT_SECONDS": "1.5"}
    with pytest.raises(ConfigError, match="at least 20"):
        Settings.from_env({**queue, "BRIDGE_REQUEST_BUDGET_SECONDS": "16"})
    assert Settings.from_env({**queue, "BRIDGE_REQUEST_BUDGET_SECONDS": "20"}).request_budget_seconds == 20.0
    assert Settings.from_env({**MINIMAL, "ROKT_TIMEOUT_SECONDS": "1.5", "BRIDGE_REQUEST_BUDGET_SECONDS": "12"})
