"""Which intents for an event are still waiting in the delivery queue, and since when.

A standard SQS queue hands messages over in any order, so the queue alone cannot keep intents for
one event in the order the bridge received them. Each intent that goes onto the queue (queued
intake, or a spill) is written here first — one item per event in the idempotency table, one
attribute per waiting intent holding when it reached the bridge — and is taken off when its
message is done with (delivered, a duplicate, superseded, refused or dead-lettered). With that:

- the consumer holds an intent back while an older one for its event is still waiting;
- the direct route sends a webhook to the queue, behind them, while any intent for its event waits.

An entry older than ``stale_after_seconds`` (the retry horizon plus a margin) is ignored: its
message cannot still be on the queue unless it was lost without being dead-lettered by the bridge
(e.g. the redrive policy's backstop after crashes).
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import DependencyUnavailable
from chalicelib.settings import APP_NAME

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_dynamodb.client import DynamoDBClient

# Distinct from the idempotency records' prefix (see idempotency.KEY_PREFIX): never mistaken for one.
KEY_PREFIX = f"{APP_NAME}.pending#"
ENTRY_PREFIX = "i_"
EXPIRY_ATTRIBUTE = "expiration"  # the table's TTL attribute (Powertools' default schema)
STALE_MARGIN_SECONDS = 3_600.0


def _key(account_code: str, event_id: str) -> dict[str, dict[str, str]]:
    """Hashed: an eventId may hold an e-mail address, which has no business in a table key."""
    digest = hashlib.sha256(f"{account_code}\n{event_id}".encode("utf-8", "surrogatepass")).hexdigest()
    return {"id": {"S": KEY_PREFIX + digest}}


class PendingIntents:
    """The per-event set of intents waiting in the delivery queue (DynamoDB)."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        horizon_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._stale_after = horizon_seconds + STALE_MARGIN_SECONDS
        self._clock = clock

    def add(self, account_code: str, event_id: str, intent_id: str, received_at: float) -> None:
        """Note an intent about to be queued; the item lives as long as its newest entry may matter."""
        self._update(
            account_code,
            event_id,
            UpdateExpression="SET #entry = :received, #expiry = :expiry",
            ExpressionAttributeNames={"#entry": ENTRY_PREFIX + intent_id, "#expiry": EXPIRY_ATTRIBUTE},
            ExpressionAttributeValues={
                ":received": {"N": repr(received_at)},
                ":expiry": {"N": str(int(self._clock() + self._stale_after))},
            },
        )

    def remove(self, account_code: str, event_id: str, intent_id: str) -> None:
        """The intent's message is done with: intents behind it may go. (Conditional, so that removing
        an entry that is not there — an intent queued while DynamoDB was down — creates no item.)"""
        self._update(
            account_code,
            event_id,
            UpdateExpression="REMOVE #entry",
            ConditionExpression="attribute_exists(#entry)",
            ExpressionAttributeNames={"#entry": ENTRY_PREFIX + intent_id},
        )

    def waiting_before(self, account_code: str, event_id: str, received_at: float, intent_id: str = "") -> bool:
        """Is an intent for this event that reached the bridge before ``received_at`` still waiting?
        Ties in arrival time are broken by intent id, so two intents never wait for each other."""
        try:
            item = self._dynamodb.get_item(
                TableName=self._table, Key=_key(account_code, event_id), ConsistentRead=True
            ).get("Item", {})
        except (BotoCoreError, ClientError) as exc:
            raise DependencyUnavailable("the idempotency store (DynamoDB) is unavailable") from exc
        oldest_relevant = self._clock() - self._stale_after
        mine = (received_at, intent_id)
        for name, value in item.items():
            if not name.startswith(ENTRY_PREFIX) or name == ENTRY_PREFIX + intent_id:
                continue
            other = float(value.get("N", "0"))
            if other >= oldest_relevant and (other, name[len(ENTRY_PREFIX) :]) < mine:
                return True
        return False

    def _update(self, account_code: str, event_id: str, **params: Any) -> None:
        try:
            self._dynamodb.update_item(TableName=self._table, Key=_key(account_code, event_id), **params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return
            raise DependencyUnavailable("the idempotency store (DynamoDB) is unavailable") from exc
        except BotoCoreError as exc:
            raise DependencyUnavailable("the idempotency store (DynamoDB) is unavailable") from exc
