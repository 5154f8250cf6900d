"""Exactly once per intent, in the order received: Powertools idempotency around the delivery use case.

One record per event (accountCode + eventId, whatever the route), holding the outcome of the last
intent delivered for it and that intent's fingerprint (route + content):

- the same intent again (a Braze retry or duplicate) is answered from the record, Rokt is not called;
- a different intent (update A → B, create → delete → create, A → B → A) takes the record over and
  goes to Rokt, so Rokt ends in the state of the last intent — the last to *reach the bridge*: the
  record keeps when its intent arrived, and an older intent taken from the queue after a newer one
  was delivered (a spill, or SQS's reordering) is answered ``superseded`` and not sent;
- a duplicate that reached the bridge later than the copy the record answers for moves the record's
  arrival time forward (a conditional write): it is the last intent received, so an intent that
  arrived between the two copies is older than it, and superseded;
- while any intent for the event is being delivered, others wait (429 ``in_flight``);
- nothing is recorded for a failure or a refusal (Rokt's 4xx): a corrected re-send goes through.

Cost: the first delivery of an event is 2 DynamoDB calls (conditional put, update); a duplicate is 2
(conditional put, conditional update; 1 for a copy older than the record's); a changed intent 4 (put,
delete, put, update). Key prefixes are fixed so the HTTP handler and the queue consumer (different
Lambda functions) share records and renaming this module cannot orphan them.
Queued intake and spills do not dedupe: the consumer delivers through these same records.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyInconsistentStateError,
    IdempotencyPersistenceLayerError,
)
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.delivery.service import DeliveryOutcome
from chalicelib.errors import DependencyUnavailable, InFlight
from chalicelib.settings import APP_NAME

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

    from chalicelib.clock import Deadline
    from chalicelib.delivery.models import EventRequest

    UseCase = Callable[[EventRequest, Deadline], DeliveryOutcome]

# ".event": records keyed per event (not per route), so none written by the earlier per-route
# scheme is ever mistaken for one of these.
KEY_PREFIX = f"{APP_NAME}.event"
IN_FLIGHT_RETRY_AFTER_SECONDS = 5
# How often one delivery looks at its event's record again when another intent changed it meanwhile.
MAX_RECORD_RACES = 3


@dataclass(frozen=True)
class IdempotentDelivery:
    """What Powertools hashes: ``key`` identifies the record, ``fingerprint`` validates replays.

    Only these two strings: Powertools deep-copies this argument on every call.
    """

    key: str
    fingerprint: str


def delivery_for(request: EventRequest) -> IdempotentDelivery:
    """The event's record key, and the fingerprint of this intent (route, event, subscriptions)."""
    fingerprint = hashlib.sha256(
        json.dumps(request.to_dict(), sort_keys=True, separators=(",", ":")).encode("utf-8")
    ).hexdigest()
    return IdempotentDelivery(key=f"{request.account_code}\n{request.event_id}", fingerprint=fingerprint)


def _mark_duplicate(response: Any, idempotent_data: DataRecord) -> Any:
    return {**response, "duplicate": True} if isinstance(response, dict) else response


class IdempotentDeliverer:
    """A delivery use case run at most once per idempotency key (and intent) within the TTL.

    Give each instance its own persistence layer: Powertools configures a layer once, for one config.
    """

    def __init__(
        self,
        run: UseCase,
        persistence: DynamoDBPersistenceLayer,
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._use_case = run
        self._clock = clock
        self._persistence = persistence
        self._ttl = ttl_seconds
        self._config = IdempotencyConfig(
            event_key_jmespath="key",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=ttl_seconds,
            response_hook=_mark_duplicate,
        )
        self._run = idempotent_function(
            self._deliver,
            data_keyword_argument="delivery",
            persistence_store=persistence,
            config=self._config,
            key_prefix=KEY_PREFIX,
        )

    def deliver(
        self,
        request: EventRequest,
        deadline: Deadline,
        lambda_context: Any = None,
        received_at: float | None = None,
    ) -> DeliveryOutcome:
        """``received_at``: when the webhook reached the bridge (a queued one: when it was first received),
        which orders intents for the same event; now, if not given."""
        if lambda_context is not None:
            self._config.register_lambda_context(lambda_context)
        received = self._clock() if received_at is None else received_at
        delivery = delivery_for(request)
        for _ in range(MAX_RECORD_RACES):
            outcome = self._once(delivery, request, deadline, received)
            if not outcome.duplicate:
                return outcome
            newest = outcome.received_at
            if outcome.fingerprint == delivery.fingerprint:
                if newest is None or received <= newest or self._refresh(delivery, outcome, newest, received):
                    return outcome
                continue  # the record changed between reading and refreshing it: look again
            if newest is not None and received < newest:
                # A newer intent reached Rokt already (a spilled or queued one taken out of order).
                return superseded(request, outcome)
            # The record holds an earlier, different intent for this event: this one supersedes it.
            self._forget(delivery)
            outcome = self._once(delivery, request, deadline, received)
            if outcome.duplicate and outcome.fingerprint != delivery.fingerprint:
                raise self._in_flight(request)  # yet another intent won the race; ours comes next
            return outcome
        raise self._in_flight(request)

    def _refresh(self, delivery: IdempotentDelivery, outcome: DeliveryOutcome, stored: float, received: float) -> bool:
        """Record that the intent ``outcome`` answers for was last received at ``received``, not
        ``stored``, and keep the record for the TTL from now. Only if the record still holds that intent
        with that time (another consumer may have replaced it): False otherwise."""
        layer = self._persistence
        data = {**replace(outcome, duplicate=False).to_dict(), "fingerprint": delivery.fingerprint}
        data["receivedAt"] = received
        try:
            layer.client.update_item(
                TableName=layer.table_name,
                # Powertools' own key for this record (prefix and hash), as its get/put/delete use.
                Key={layer.key_attr: {"S": str(layer._get_hashed_idempotency_key(asdict(delivery)))}},
                UpdateExpression="SET #data = :data, #expiry = :expiry",
                ConditionExpression="#status = :completed AND contains(#data, :fingerprint) AND contains(#data, :at)",
                ExpressionAttributeNames={
                    "#data": layer.data_attr,
                    "#expiry": layer.expiry_attr,
                    "#status": layer.status_attr,
                },
                ExpressionAttributeValues={
                    # The stored data is Powertools' json.dumps(sort_keys=True): these fragments are in it.
                    ":data": {"S": json.dumps(data, sort_keys=True)},
                    ":expiry": {"N": str(int(self._clock()) + self._ttl)},
                    ":completed": {"S": "COMPLETED"},
                    ":fingerprint": {"S": json.dumps({"fingerprint": delivery.fingerprint})[1:-1]},
                    ":at": {"S": json.dumps({"receivedAt": stored})[1:-1]},
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise DependencyUnavailable("the idempotency store (DynamoDB) is unavailable") from exc
        except BotoCoreError as exc:
            raise DependencyUnavailable("the idempotency store (DynamoDB) is unavailable") from exc
        return True

    def _once(
        self, delivery: IdempotentDelivery, request: EventRequest, deadline: Deadline, received_at: float
    ) -> DeliveryOutcome:
        try:
            data = self._run(delivery=delivery, request=request, deadline=deadline, received_at=received_at)
        except IdempotencyAlreadyInProgressError as exc:
            raise self._in_flight(request) from exc
        except (IdempotencyPersistenceLayerError, IdempotencyInconsistentStateError) as exc:
            raise DependencyUnavailable("the idempotency store (DynamoDB) is unavailable") from exc
        return DeliveryOutcome.from_dict(data)

    def _forget(self, delivery: IdempotentDelivery) -> None:
        try:
            self._persistence.delete_record(data=asdict(delivery), exception=Superseded())
        except (BotoCoreError, ClientError, IdempotencyPersistenceLayerError) as exc:
            raise DependencyUnavailable("the idempotency store (DynamoDB) is unavailable") from exc

    @staticmethod
    def _in_flight(request: EventRequest) -> InFlight:
        return InFlight(
            f"event {request.event_id!r} is being delivered right now; retry shortly for its result",
            retry_after=IN_FLIGHT_RETRY_AFTER_SECONDS,
        )

    def _deliver(
        self, delivery: IdempotentDelivery, request: EventRequest, deadline: Deadline, received_at: float
    ) -> dict[str, Any]:
        outcome = self._use_case(request, deadline)
        return {**outcome.to_dict(), "fingerprint": delivery.fingerprint, "receivedAt": received_at}


def superseded(request: EventRequest, newer: DeliveryOutcome) -> DeliveryOutcome:
    """The answer for an intent that arrived before the one Rokt already has: nothing is sent."""
    return DeliveryOutcome(
        status="superseded",
        action=request.action.value,
        account_code=request.account_code,
        event_id=request.event_id,
        upstream_status=0,
        attempts=0,
        received_at=newer.received_at,
    )


class Superseded(Exception):
    """Why a delivery record is deleted: a different intent for the same event arrived after it."""
