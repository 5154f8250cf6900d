"""Exactly-once delivery per eventId: Powertools idempotency around the delivery use case.

Key rules (documented in the README):
- create and delete: action + accountCode + eventId. The same eventId with different content is
  refused (payload validation on a content fingerprint) instead of silently replaying.
- update: action + accountCode + eventId + content, so an identical re-send is suppressed while a
  changed update goes through.

Key prefixes are fixed so that the HTTP handler and the queue consumer (different Lambda functions)
share delivery records, and so that renaming this module cannot orphan in-flight records. Queued
mode's intake dedupes the enqueue under its own prefix: "already queued" is not "already delivered".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyInconsistentStateError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)

from chalicelib.delivery.models import Action, EventRequest
from chalicelib.delivery.service import DeliveryOutcome
from chalicelib.errors import DependencyUnavailable, EventIdReused, InFlight

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

    from chalicelib.clock import Deadline

    UseCase = Callable[[EventRequest, Deadline], DeliveryOutcome]

KEY_PREFIX = "rokt-calendar-bridge.deliver"
INTAKE_KEY_PREFIX = "rokt-calendar-bridge.intake"
IN_FLIGHT_RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class IdempotentDelivery:
    """What Powertools hashes: ``key`` identifies the record, ``fingerprint`` validates replays.

    Only these two strings: Powertools deep-copies this argument on every call.
    """

    key: str
    fingerprint: str


def delivery_for(request: EventRequest) -> IdempotentDelivery:
    fingerprint = hashlib.sha256(
        json.dumps(request.to_dict(), sort_keys=True, separators=(",", ":")).encode("utf-8")
    ).hexdigest()
    parts = [request.action.value, request.account_code, request.event_id]
    if request.action is Action.UPDATE:
        parts.append(fingerprint)
    return IdempotentDelivery(key="\n".join(parts), fingerprint=fingerprint)


def _mark_duplicate(response: Any, idempotent_data: DataRecord) -> Any:
    return {**response, "duplicate": True} if isinstance(response, dict) else response


class IdempotentDeliverer:
    """A delivery use case (deliver, or enqueue), run at most once per idempotency key within the TTL.

    Give each instance its own persistence layer: Powertools configures a layer once, for one config.
    """

    def __init__(
        self,
        run: UseCase,
        persistence: BasePersistenceLayer,
        ttl_seconds: int,
        key_prefix: str = KEY_PREFIX,
    ) -> None:
        self._use_case = run
        self._config = IdempotencyConfig(
            event_key_jmespath="key",
            payload_validation_jmespath="fingerprint",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=ttl_seconds,
            response_hook=_mark_duplicate,
        )
        self._run = idempotent_function(
            self._deliver,
            data_keyword_argument="delivery",
            persistence_store=persistence,
            config=self._config,
            key_prefix=key_prefix,
        )

    def deliver(self, request: EventRequest, deadline: Deadline, lambda_context: Any = None) -> DeliveryOutcome:
        if lambda_context is not None:
            self._config.register_lambda_context(lambda_context)
        try:
            data = self._run(delivery=delivery_for(request), request=request, deadline=deadline)
        except IdempotencyAlreadyInProgressError as exc:
            raise InFlight(
                f"event {request.event_id!r} is being delivered right now; retry shortly for its result",
                retry_after=IN_FLIGHT_RETRY_AFTER_SECONDS,
            ) from exc
        except IdempotencyValidationError as exc:
            raise EventIdReused(
                f"eventId {request.event_id!r} was already used with different content; "
                "give each calendar event its own eventId"
            ) from exc
        except (IdempotencyPersistenceLayerError, IdempotencyInconsistentStateError) as exc:
            raise DependencyUnavailable("the idempotency store (DynamoDB) is unavailable") from exc
        return DeliveryOutcome.from_dict(data)

    def _deliver(self, delivery: IdempotentDelivery, request: EventRequest, deadline: Deadline) -> dict[str, Any]:
        return self._use_case(request, deadline).to_dict()
