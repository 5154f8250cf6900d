"""Times as Braze takes them: ISO 8601 UTC to the second ("2020-05-06T01:18:49Z"), from an epoch or
from any of the formats Rokt writes its times in."""

from __future__ import annotations

import datetime as dt
from typing import Any


def utc_iso(value: Any) -> str | None:
    """Rokt's timestamps ("2020-05-06 01:18:49.755190", or ISO 8601) as ISO 8601 UTC; None if unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def utc_time(epoch: float) -> str:
    """``epoch`` (seconds) as ISO 8601 UTC to the second, as Braze takes a custom event's time."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
