"""Our error types. Each knows its HTTP status, a stable code and the outcome operators see in logs.

Raised where a problem is found; turned into an HTTP answer only in ``chalicelib.web``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of a webhook body, e.g. ``event.start``."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class ConfigError(Exception):
    """The deployment's environment is incomplete or invalid (a bug in config.json, not in a webhook)."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("invalid configuration: " + "; ".join(problems))
        self.problems = tuple(problems)


class BridgeError(Exception):
    """Base for every failure that maps to an HTTP answer (or, in a queue consumer, to a record's fate)."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    outcome: ClassVar[str] = "error"
    retry_after: int | None = None  # seconds the upstream asked us to wait, when it said

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def retryable(self) -> bool:
        """Worth trying again later (the same request may succeed)."""
        return self.outcome == "retryable_failure"

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message}

    def headers(self) -> dict[str, str]:
        return {}


class _WithDetails(BridgeError):
    def __init__(self, message: str, details: Sequence[FieldError]) -> None:
        super().__init__(message)
        self.details = tuple(details)

    def body(self) -> dict[str, Any]:
        return {**super().body(), "details": [d.to_dict() for d in self.details]}


class InvalidJson(BridgeError):
    """The body is not UTF-8 JSON."""

    status_code = 400
    code = "invalid_json"
    outcome = "invalid"


class ValidationFailed(_WithDetails):
    """One or more fields are missing or malformed; all of them are listed."""

    status_code = 400
    code = "validation_failed"
    outcome = "invalid"


class TemplateDefect(_WithDetails):
    """The Braze Liquid rendered an empty attribute (no subscription id, no user id)."""

    status_code = 422
    code = "template_defect"
    outcome = "invalid"


class Unauthorized(BridgeError):
    """Missing or unknown webhook secret."""

    status_code = 401
    code = "unauthorized"
    outcome = "unauthorized"

    def __init__(self, message: str = "missing or invalid Authorization bearer secret") -> None:
        super().__init__(message)


class PayloadTooLarge(BridgeError):
    status_code = 413
    code = "payload_too_large"
    outcome = "invalid"


class _RetryLater(BridgeError):
    outcome = "retryable_failure"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class InFlight(_RetryLater):
    """A webhook with the same idempotency key is being delivered right now."""

    status_code = 429
    code = "in_flight"


class OlderIntentPending(_RetryLater):
    """An intent for the same event that reached the bridge earlier is still waiting in the queue:
    this one goes after it (the queue consumer's hold-back; never an HTTP answer)."""

    status_code = 503
    code = "older_intent_pending"


class EventNotKnownYet(BridgeError):
    """Rokt does not know the event a queued update or delete is for, shortly after it was received:
    its create may not have reached Rokt yet (queued without a note, or still being processed by
    Rokt). Retried from the queue for a while before it counts as a refusal; never an HTTP answer."""

    status_code = 503
    code = "event_not_known_yet"
    outcome = "retryable_failure"


class SubscriptionBusy(_RetryLater):
    """Another sync consumer holds this subscription's lease (it is writing Braze right now)."""

    status_code = 429
    code = "subscription_busy"


class RateLimited(_RetryLater):
    """Rokt answered 429."""

    status_code = 429
    code = "rate_limited"

    def body(self) -> dict[str, Any]:
        return {**super().body(), "upstreamStatus": 429}


class UpstreamFailed(BridgeError):
    """Rokt answered 5xx (after our bounded retries) or the connection failed."""

    status_code = 502
    code = "upstream_error"
    outcome = "retryable_failure"

    def __init__(self, message: str, upstream_status: int | None = None) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status

    def body(self) -> dict[str, Any]:
        body = super().body()
        if self.upstream_status is not None:
            body["upstreamStatus"] = self.upstream_status
        return body


class UpstreamTimeout(BridgeError):
    """Rokt did not answer inside the time budget."""

    status_code = 504
    code = "upstream_timeout"
    outcome = "retryable_failure"


class DependencyUnavailable(BridgeError):
    """SSM, DynamoDB, SQS or Rokt's token endpoint could not be used; safe to retry later."""

    status_code = 503
    code = "dependency_unavailable"
    outcome = "retryable_failure"


class RoktRejected(BridgeError):
    """Rokt refused the event for good (a 4xx other than 401/429)."""

    status_code = 422
    code = "rejected_by_rokt"
    outcome = "rejected"

    def __init__(self, upstream_status: int, upstream_body: Any) -> None:
        super().__init__(f"Rokt refused the event with HTTP {upstream_status}; see upstreamBody")
        self.upstream_status = upstream_status
        self.upstream_body = upstream_body

    def body(self) -> dict[str, Any]:
        return {**super().body(), "upstreamStatus": self.upstream_status, "upstreamBody": self.upstream_body}


class BrazeError(BridgeError):
    """Braze's /users/track failed (the sync flow's upstream; never an HTTP answer of ours)."""

    status_code = 502
    code = "braze_error"
    outcome = "retryable_failure"


class BrazeRateLimited(BrazeError):
    """429: wait until the rate-limit window resets."""

    code = "braze_rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Braze is rate-limiting the bridge; retry in {retry_after} s")
        self.retry_after = retry_after


class BrazeUnavailable(BrazeError):
    """5xx, a timeout or a failed connection: worth retrying later with backoff."""

    code = "braze_unavailable"


class BrazeOutcomeUnknown(BrazeUnavailable):
    """The request was sent but no answer came (read timeout, dropped connection): Braze may have
    applied it. Custom events have no dedupe key, so a caller must not send them again."""

    code = "braze_outcome_unknown"


class BrazeKeyRefused(BrazeError):
    """401/403 even with the REST key read fresh: revoked, or mid-rotation. Retried — the key is an
    operator's to fix, every record waits for it — and counted (``BrazeKeyRefused``) for an alarm."""

    code = "braze_key_refused"

    def __init__(self, status: int) -> None:
        super().__init__(f"Braze refused the REST key with HTTP {status} (revoked, or mid-rotation)")
        self.status = status


class BrazeRejected(BrazeError):
    """A 4xx other than 429 that a fresh key did not cure: this request can never succeed as it is."""

    code = "rejected_by_braze"
    outcome = "rejected"

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"Braze refused the request with HTTP {status}: {detail}")
        self.status = status


class BrazeObjectRefused(BrazeError):
    """Braze applied the call but refused one of its objects (listed in ``errors`` of its 2xx answer), or
    refused the whole call (400) for an object the bisection isolated: that object can never be written
    as it is. ``message`` carries Braze's own words (e-mail addresses masked)."""

    code = "braze_object_refused"
    outcome = "rejected"
