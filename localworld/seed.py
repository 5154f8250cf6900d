"""What the local world starts with: the local stack's credentials and the Braze profiles `make run` seeds."""

from __future__ import annotations

from typing import Any

LOCAL_ROKT_CLIENT = ("local-client-id", "local-client-secret")
LOCAL_WEBHOOK_SECRET = "local-webhook-secret"
LOCAL_BRAZE_KEY = "local-braze-rest-key"
LOCAL_ROKT_WEBHOOK_TOKEN = "local-rokt-webhook-token"

# Braze profiles `make run` seeds: one that will subscribe in the tour, one whose custom attribute
# holds a double quote (what breaks an unescaped template), one that never subscribes.
SEED_PROFILES: list[dict[str, Any]] = [
    {"external_id": "user42", "email": "ada@example.com", "first_name": "Ada", "time_zone": "America/New_York"},
    {
        "external_id": "user43",
        "email": "grace@example.com",
        "first_name": "Grace",
        "time_zone": "Australia/Sydney",
        "favorite_team": 'The "Blues"',
    },
    {"external_id": "user44", "email": "alan@example.com", "first_name": "Alan", "time_zone": "Europe/London"},
]
