"""The sync queue's producer side and sizing: accepted Rokt webhooks wait here for the consumer.

Sizing chosen together (README "Rokt → Braze"): batches of up to 75 records (one /users/track call
takes 75 attribute and 75 event objects), gathered for up to 5 s, a consumer timeout of 30 s and a
visibility timeout of 180 s (6x, as AWS advises). The consumer decides dead letters itself, with the
reason (24 h after a message was queued, ``settings.RETRY_HORIZON_SECONDS``; a subscription Rokt
does not know for ``SYNC_NOT_FOUND_HORIZON_SECONDS``), so the redrive limit is SQS's ceiling: a
backstop for invocations that crash, as on the delivery queue.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from chalicelib.sqs import send_json, stage_queue_names

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

    from chalicelib.sync.envelope import RoktWebhook

SYNC_BATCH_SIZE = 75
SYNC_BATCH_WINDOW_SECONDS = 5
SYNC_MAX_RECEIVES = 1000  # SQS's ceiling: the consumer's horizon decides dead letters, not the receive count
SYNC_BASE_BACKOFF_SECONDS = 30
SYNC_MAX_BACKOFF_SECONDS = 900
SYNC_NOT_FOUND_HORIZON_SECONDS = 1800  # Rokt's 404 for a subscription never written: retried this long


def sync_queue_names(stage: str) -> tuple[str, str]:
    """The stage's sync queue and its DLQ."""
    return stage_queue_names("sync", stage)


class SyncQueue:
    """One SQS message per accepted webhook: the envelope as Rokt sent it, and when it arrived."""

    def __init__(self, sqs: SQSClient, queue_url: str, clock: Any = time.time) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._clock = clock

    def send(self, webhook: RoktWebhook, envelope: dict[str, Any]) -> None:
        send_json(
            self._sqs,
            self._queue_url,
            {"webhook": envelope, "receivedAt": self._clock()},
            {"eventId": webhook.event_id, "eventType": webhook.event_type},
            "sync queue",
        )
