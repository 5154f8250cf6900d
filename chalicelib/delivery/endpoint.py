"""The delivery flow's HTTP edge: one Braze webhook's way from Chalice request to Chalice response.

Every webhook leaves exactly one summary log line and one set of metrics, whatever happened.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from chalicelib.clock import Deadline
from chalicelib.delivery.models import Action, route_path
from chalicelib.delivery.validation import claimed_event_id, decode_body, parse_request
from chalicelib.errors import BridgeError
from chalicelib.observability import record_outcome
from chalicelib.settings import AWS_COMPLETION_RESERVE_SECONDS
from chalicelib.web import error_response, json_response

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from aws_lambda_powertools import Tracer
    from chalice.app import Request, Response

    from chalicelib.auth import SignatureVerifier, WebhookAuthenticator
    from chalicelib.delivery.service import Deliverer, DeliveryOutcome, DeliveryService

LAMBDA_SAFETY_MARGIN_SECONDS = 1.0


def outcome_response(outcome: DeliveryOutcome) -> Response:
    body: dict[str, Any] = {"status": outcome.status, "eventId": outcome.event_id, "accountCode": outcome.account_code}
    status = 202 if outcome.status == "queued" else 200
    if outcome.reached_rokt:
        body["upstreamStatus"] = outcome.upstream_status
    if outcome.duplicate:
        body["duplicate"] = True
    if outcome.reason:
        body["reason"] = outcome.reason
    return json_response(body, status)


class WebhookEndpoint:
    """Authenticate → decode → validate → (dry-run | deliver exactly once) → answer, with a summary."""

    def __init__(
        self,
        authenticator: WebhookAuthenticator,
        service: DeliveryService,
        deliverer: Deliverer,
        budget_seconds: float,
        *,
        signatures: SignatureVerifier | None = None,
        tracer: Tracer | None = None,
        clock: Callable[[], float] = time.monotonic,
        reserve_seconds: float = AWS_COMPLETION_RESERVE_SECONDS,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``budget_seconds`` counts from the request's arrival; upstream work ends ``reserve_seconds``
        earlier, kept for the idempotency completion write."""
        self._reserve = reserve_seconds
        self._tracer = tracer
        self._authenticator = authenticator
        self._signatures = signatures
        self._service = service
        self._deliverer = deliverer
        self._budget = budget_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep

    def handle(self, action: Action, account_code: str, request: Request) -> Response:
        if self._tracer is None:
            return self._handle(action, account_code, request)
        with self._tracer.provider.in_subsegment(f"## webhook {action.value}"):
            response = self._handle(action, account_code, request)
            self._tracer.put_annotation("route", action.value)
            self._tracer.put_annotation("status", str(response.status_code))
            return response

    def _handle(self, action: Action, account_code: str, request: Request) -> Response:
        started, received_at = self._clock(), self._wall_clock()
        # One deadline from the request's arrival: authentication's reads count against it too.
        deadline = Deadline.within(
            self._budget - self._reserve,
            request.lambda_context,
            LAMBDA_SAFETY_MARGIN_SECONDS + self._reserve,
            self._clock,
            self._sleep,
        )
        summary: dict[str, Any] = {"route": action.value, "accountCode": account_code[:64]}
        try:
            response = self._process(action, account_code, request, summary, deadline, received_at=received_at)
        except BridgeError as exc:
            summary.update(outcome=exc.outcome, error=exc.code)
            upstream_status = getattr(exc, "upstream_status", None)
            if upstream_status is not None:
                summary["upstreamStatus"] = upstream_status
            response = error_response(exc)
        summary["status"] = response.status_code
        summary["latencyMs"] = round((self._clock() - started) * 1000, 1)
        record_outcome("webhook handled", summary)
        return response

    def _process(
        self,
        action: Action,
        account_code: str,
        request: Request,
        summary: dict[str, Any],
        deadline: Deadline,
        *,
        received_at: float,
    ) -> Response:
        self._authenticator.authenticate(request.headers.get("authorization"))
        raw = request.raw_body
        body = raw.encode("utf-8") if isinstance(raw, str) else raw
        if self._signatures is not None:
            self._signatures.verify(request.headers, route_path(action, account_code), body, request.query_params)
        document = decode_body(body)
        claimed = claimed_event_id(document)
        if claimed is not None:  # logged even when invalid: reports group webhooks by campaign
            summary["eventId"] = claimed
        event_request = parse_request(action, account_code, document)  # a valid eventId is the claimed one
        if event_request.unknown_fields:
            summary["unknownFields"] = list(event_request.unknown_fields)
        if _is_dry_run(request):
            summary["outcome"] = "dry_run"
            plan = self._service.preview(event_request)
            return json_response({"status": "dry_run", "upstreamRequest": plan.to_dict()})
        outcome = self._deliverer.deliver(event_request, deadline, request.lambda_context, received_at)
        summary["outcome"] = "duplicate" if outcome.duplicate else outcome.status
        if outcome.reason:
            summary.update(outcome="spilled", spillReason=outcome.reason)
        if outcome.reached_rokt:
            summary["upstreamStatus"] = outcome.upstream_status
            if not outcome.duplicate:
                summary.update(attempts=outcome.attempts, upstreamLatencyMs=outcome.upstream_ms)
        return outcome_response(outcome)


def _is_dry_run(request: Request) -> bool:
    params: Mapping[str, str] = request.query_params or {}
    return str(params.get("dryRun", "")).lower() in ("true", "1")
