"""The bridge's routes, each written once: ``app.py`` registers them, the endpoints name them in their
log lines, and the operator's tools and the Braze templates build URLs from them."""

from __future__ import annotations

HEALTH = "/health"
# What the Braze template renders for a user without rokt:account_code (a trailing slash, no code).
CREATE_WITHOUT_ACCOUNT = "/v1/subscriptionevent"
CREATE = "/v1/subscriptionevent/{account_code}"
UPDATE = "/v1/subscriptionevent/{account_code}/update"
DELETE = "/v1/subscriptionevent/{account_code}/delete"
ROKT_WEBHOOKS = "/rokt/webhooks/{token}"


def path(route: str, **parameters: str) -> str:
    """The path of ``route`` with its parameters filled in (as given: no encoding)."""
    return route.format(**parameters)
