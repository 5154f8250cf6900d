"""The bridge's HTTP session reads the proxy and CA-bundle environment once, and honours it exactly as
``requests`` does on every request."""

from __future__ import annotations

import pytest
import requests

from chalicelib.http_session import EnvironmentOnceSession

ENVIRONMENTS = {
    "nothing set": {},
    "a proxy": {"HTTPS_PROXY": "http://proxy.internal:3128", "HTTP_PROXY": "http://proxy.internal:3128"},
    "a proxy, Rokt bypassed": {"HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": "api.rokt.com,.braze.com"},
    "a CA bundle": {"REQUESTS_CA_BUNDLE": "/opt/ca/corporate.pem"},
    "curl's CA bundle": {"CURL_CA_BUNDLE": "/opt/ca/curl.pem"},
}
URLS = [
    "https://api.rokt.com/v1/subscriptionevent/acme",
    "https://api.rokt.com/oauth2/token",
    "https://rest.iad-01.braze.com/users/track",
    "http://127.0.0.1:8081/v1/subscriptionevent/acme",
]
VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.mark.parametrize("environment", list(ENVIRONMENTS))
def test_the_session_sends_with_the_settings_requests_would_use(environment: str, monkeypatch: pytest.MonkeyPatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in ENVIRONMENTS[environment].items():
        monkeypatch.setenv(name, value)
    ours, plain = EnvironmentOnceSession(), requests.Session()
    for url in URLS * 2:  # the second time from what the first resolved
        for verify in (None, True, False, "/tmp/own.pem"):
            assert ours.merge_environment_settings(url, {}, None, verify, None) == plain.merge_environment_settings(
                url, {}, None, verify, None
            ), (environment, url, verify)


def test_the_environment_is_read_once_per_origin_not_on_every_request(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    session = EnvironmentOnceSession()
    first = session.merge_environment_settings("https://api.rokt.com/v1/subscriptionevent/a", {}, None, None, None)
    monkeypatch.setenv("HTTPS_PROXY", "http://elsewhere.internal:3128")  # a container's environment never changes
    again = session.merge_environment_settings("https://api.rokt.com/oauth2/token", {}, None, None, None)
    assert first["proxies"] == again["proxies"] == {"https": "http://proxy.internal:3128"}
