"""Facts about this project every tool shares: where it lives, what a stage's environment is,
the seed's sample webhook and the local stack's credentials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
LOCAL_ROKT_CLIENT = ("local-client-id", "local-client-secret")
LOCAL_WEBHOOK_SECRET = "local-webhook-secret"
LOCAL_BRAZE_KEY = "local-braze-rest-key"
LOCAL_ROKT_WEBHOOK_TOKEN = "local-rokt-webhook-token"


def stage_environment(stage: str = "local", project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """The environment Chalice gives ``stage``: top-level variables overlaid by the stage's own."""
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    env = dict(config.get("environment_variables", {}))
    env.update(config["stages"][stage].get("environment_variables", {}))
    return env


SAMPLE_BODY: dict[str, Any] = {
    "event": {
        "eventId": "Event_0001_user42",
        "title": "Event Title",
        "description": "Event Description",
        "location": "Event Location",
        "start": "2019-02-21T15:00:00",
        "end": "2019-02-21T16:00:00",
        "timezone": "Eastern Standard Time",
        "notifyBefore": "15",
    },
    "subscriptionIds": ["06423672-b6ba-4536-aa36-70788a7a0a36"],
}


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
