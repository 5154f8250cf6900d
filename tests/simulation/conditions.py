"""The process conditions a simulation runs under, set before the bridge's modules are imported:
the Powertools names a Lambda stage sets, credentials that can reach no real AWS account, metrics
that are not printed."""

from __future__ import annotations

import os


def prepare() -> None:
    os.environ.update(
        {
            "POWERTOOLS_SERVICE_NAME": "rokt-calendar-bridge",
            "POWERTOOLS_METRICS_NAMESPACE": "RoktCalendarBridge",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "simulation",
            "AWS_SECRET_ACCESS_KEY": "simulation",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)
