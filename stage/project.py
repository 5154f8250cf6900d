"""Facts about this project every tool shares: where it lives, what a stage's environment is (as
Chalice reads `.chalice/config.json`), and the seed's sample webhook (which `doctor` sends as a dry run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent


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
