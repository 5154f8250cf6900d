"""The sync flow's HTTP edge: ``POST /rokt/webhooks/{token}`` → validate → sync queue → 202.

Rokt retries anything but a 2xx for about 30 minutes, so the route answers fast and only refuses
(4xx) what can never be processed: not JSON, or no ``eventId``/``eventType``. A used type whose
details the sync cannot use is accepted all the same and dead-lettered by the consumer with the
reason. The token is the secret: it is never logged, counted or answered — the summary line names
the route template.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from chalicelib import routes
from chalicelib.errors import BridgeError, DependencyUnavailable, ValidationFailed
from chalicelib.observability import logger, record_outcome
from chalicelib.secrets import BRAZE_API_KEY, BRAZE_KEY_MAX_AGE_SECONDS
from chalicelib.sync.envelope import USED_TYPES, RoktWebhook, decode, header, parse, problems
from chalicelib.web import error_response, json_response

if TYPE_CHECKING:
    from collections.abc import Callable

    from chalice.app import Request, Response

    from chalicelib.auth import PathTokenAuthenticator
    from chalicelib.secrets import SecretStore
    from chalicelib.sync.queue import SyncQueue


class RoktWebhookEndpoint:
    def __init__(
        self,
        authenticator: PathTokenAuthenticator,
        store: SecretStore,
        queue: Callable[[], SyncQueue] | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._authenticator = authenticator
        self._store = store
        self._queue = queue
        self._clock = clock

    def handle(self, token: str, request: Request) -> Response:
        started = self._clock()
        summary: dict[str, Any] = {"route": "rokt_webhook", "path": routes.ROKT_WEBHOOKS}
        try:
            response = self._process(token, request, summary)
        except BridgeError as exc:
            summary.update(outcome=exc.outcome, error=exc.code)
            response = error_response(exc)
        summary["status"] = response.status_code
        summary["latencyMs"] = round((self._clock() - started) * 1000, 1)
        record_outcome("rokt webhook received", summary)
        return response

    def _process(self, token: str, request: Request, summary: dict[str, Any]) -> Response:
        if self._queue is None:
            raise DependencyUnavailable(
                "Rokt → Braze sync is not configured here (BRAZE_REST_ENDPOINT and SYNC_QUEUE_URL)"
            )
        self._authenticator.authenticate(token)
        raw = request.raw_body
        body = decode(raw.encode("utf-8") if isinstance(raw, str) else raw)
        event_id, event_type = header(body)
        summary.update(eventId=event_id, eventType=event_type)
        if event_type not in USED_TYPES:
            summary["outcome"] = "ignored"
            logger.info("Rokt webhook type not synced; acknowledged", extra={"eventType": event_type[:64]})
            return json_response({"status": "ignored", "eventId": event_id, "eventType": event_type})
        try:
            webhook = parse(body)
        except ValidationFailed as exc:
            # Rokt's word about a subscription, in a shape the sync cannot use: refusing it would only
            # make Rokt retry for 30 minutes and give up. Keep it; the consumer dead-letters it with why.
            webhook = RoktWebhook(event_id=event_id, event_type=event_type)
            summary["unusable"] = problems(exc)[:500]
        # Without a Braze key nothing could ever be written: say so now, while Rokt still retries.
        self._store.get(BRAZE_API_KEY, max_age=BRAZE_KEY_MAX_AGE_SECONDS)
        self._queue().send(webhook, body)
        summary["outcome"] = "accepted"
        return json_response({"status": "accepted", "eventId": webhook.event_id}, 202)
