"""The ledger's subscriptions, enumerated without reading the rest of the shared table, and where the
reconciliation stopped.

Only ledger items carry ``ledger_shard`` (a sparse global secondary index, ``ledger-index``: partition
key ``ledger_shard``, sort key ``id``, keys only): a Query of one shard reads ledger keys and nothing
else — never the delivery states or the sync claims beside them. Sixteen shards spread the index's
writes (each ledger item lands in the shard its subscription id hashes to) and keep each Query's
partition small. A page of 100 keys costs one read unit (keys only, ~60 bytes each, eventually
consistent: 0.5 unit per 4 KB).

The cursor is one item of the same table (no ``ledger_shard``, so never in the index): the pass in
progress (its start, the shard and last key reached, how many subscriptions it has re-read), the
ledger's size counted when the pass started (which paces it), and the subscriptions to read again next
run (Rokt failed on them).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import DependencyUnavailable
from chalicelib.settings import APP_NAME

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

LEDGER_INDEX = "ledger-index"
SHARD_ATTRIBUTE = "ledger_shard"
SHARDS = 16
LEDGER_KEY_PREFIX = f"{APP_NAME}.sync-ledger#"
CURSOR_KEY = f"{APP_NAME}.reconcile-cursor"
PAGE_SIZE = 100
MAX_RETRIES_KEPT = 1000  # subscriptions kept to read again next run; beyond, the pass waits for them
_AWS_ERRORS = (BotoCoreError, ClientError)


def shard_of(subscription_id: str) -> str:
    """The index shard of a subscription (stable: a digest of its id)."""
    return str(int(hashlib.sha256(subscription_id.encode("utf-8")).hexdigest()[:8], 16) % SHARDS)


@dataclass
class Cursor:
    """Where reconciliation is: the pass started at ``started`` (epoch s) has reached ``shard`` and, in it,
    the key ``after``; it has re-read ``done`` of the ``last_size`` subscriptions the ledger held when it
    started (counted then)."""

    started: float = 0.0
    shard: int = 0
    after: str | None = None
    done: int = 0
    last_size: int | None = None
    retry: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.shard >= SHARDS


class LedgerIndex:
    """Pages of the ledger's subscription ids, and the reconciliation cursor, in the idempotency table."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._dynamodb = dynamodb
        self._table = table

    def page(self, shard: int, after: str | None, limit: int = PAGE_SIZE) -> tuple[list[str], str | None]:
        """Up to ``limit`` subscription ids of ``shard`` after the key ``after``; and the last key read
        (None when the shard is exhausted)."""
        query = self._shard_query(shard, Limit=limit)
        if after is not None:
            query["ExclusiveStartKey"] = {"id": {"S": after}, SHARD_ATTRIBUTE: {"S": str(shard)}}
        answer = self._query(query)
        keys = [str(item["id"]["S"]) for item in answer.get("Items", [])]
        ids = [key.removeprefix(LEDGER_KEY_PREFIX) for key in keys if key.startswith(LEDGER_KEY_PREFIX)]
        last = answer.get("LastEvaluatedKey")
        return ids, (str(last["id"]["S"]) if last else None)

    def count(self) -> int:
        """How many subscriptions the ledger knows (a keys-only count of every shard: one read unit per
        ~45,000 entries, once per pass), so a pass is paced on its own size from its start."""
        total = 0
        for shard in range(SHARDS):
            query = self._shard_query(shard, Select="COUNT")
            while True:
                answer = self._query(query)
                total += int(answer.get("Count", 0))
                if "LastEvaluatedKey" not in answer:
                    break
                query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return total

    def _shard_query(self, shard: int, **extra: Any) -> dict[str, Any]:
        """A Query of one shard of the index (``extra``: Limit, Select, …)."""
        return {
            "TableName": self._table,
            "IndexName": LEDGER_INDEX,
            "KeyConditionExpression": "#shard = :shard",
            "ExpressionAttributeNames": {"#shard": SHARD_ATTRIBUTE},
            "ExpressionAttributeValues": {":shard": {"S": str(shard)}},
            **extra,
        }

    def _query(self, query: dict[str, Any]) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = dict(self._dynamodb.query(**query))
        except _AWS_ERRORS as exc:
            raise DependencyUnavailable("the sync ledger's index (DynamoDB) is unavailable") from exc
        return answer

    def cursor(self) -> Cursor:
        try:
            item = self._dynamodb.get_item(TableName=self._table, Key={"id": {"S": CURSOR_KEY}}).get("Item")
        except _AWS_ERRORS as exc:
            raise DependencyUnavailable("the reconciliation cursor (DynamoDB) is unavailable") from exc
        if not item or "cursor" not in item:
            return Cursor()
        try:
            data = json.loads(item["cursor"]["S"])
            return Cursor(**data)
        except (ValueError, TypeError):
            return Cursor()

    def save(self, cursor: Cursor) -> None:
        data = json.dumps(cursor.__dict__, sort_keys=True)
        try:
            self._dynamodb.put_item(TableName=self._table, Item={"id": {"S": CURSOR_KEY}, "cursor": {"S": data}})
        except _AWS_ERRORS as exc:
            raise DependencyUnavailable("the reconciliation cursor (DynamoDB) is unavailable") from exc
