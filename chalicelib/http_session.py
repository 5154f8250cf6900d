"""The bridge's one ``requests`` session (Rokt, its token endpoint, Braze), reading the environment once.

``requests`` looks up the proxy and CA-bundle variables (``HTTPS_PROXY``, ``NO_PROXY``,
``REQUESTS_CA_BUNDLE``, …) again on every request, scanning ``os.environ`` each time: the largest
share of the CPU a Rokt call costs the bridge under the profiler. A Lambda container's environment
does not change while it lives, so this session resolves those settings once per scheme and host and
reuses them: an operator's proxy and CA bundle are honoured exactly as ``requests`` would, without
paying for the lookup on every webhook.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies

if TYPE_CHECKING:
    from collections.abc import Callable

    from requests.sessions import _Settings

_merge: Callable[[Any, Any], Any] = merge_setting  # requests' own rule: the request's value over the session's


class EnvironmentOnceSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self._proxies_by_origin: dict[tuple[str, str], dict[str, str]] = {}
        self._ca_bundle: str | None = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> _Settings:
        if not self.trust_env or (proxies and "no_proxy" in proxies):
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        origin = (parts.scheme, parts.netloc)
        found = self._proxies_by_origin.get(origin)
        if found is None:
            found = self._proxies_by_origin[origin] = get_environ_proxies(url)
        merged = None if proxies is None else {**found, **proxies}  # the request's own proxies win
        if verify is True or verify is None:
            verify = self._ca_bundle or verify
        return {
            "proxies": _merge(merged, self.proxies),
            "stream": _merge(stream, self.stream),
            "verify": _merge(verify, self.verify),
            "cert": _merge(cert, self.cert),
        }
