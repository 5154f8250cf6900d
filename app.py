"""rokt-calendar-bridge: the Chalice route table and composition root. No logic lives here."""

from __future__ import annotations

import os
import threading
import uuid
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths
from chalice.app import Chalice, CloudWatchEvent, ConvertToMiddleware, Rate, Request, Response, SQSEvent

from chalicelib import routes
from chalicelib.delivery.models import Action
from chalicelib.delivery.queue import BATCH_SIZE, MAX_CONCURRENCY, delivery_queue_names
from chalicelib.observability import flush_metrics, logger
from chalicelib.settings import APP_NAME, RECONCILE_EVERY_MINUTES, Settings, stage_of
from chalicelib.sync.queue import SYNC_BATCH_SIZE, SYNC_BATCH_WINDOW_SECONDS, sync_queue_names
from chalicelib.web import as_ours, health, http_errors
from chalicelib.wiring import Bridge

if TYPE_CHECKING:
    from collections.abc import Callable

app = Chalice(app_name=APP_NAME, configure_logs=False)
app.debug = False
# Chalice's app.log shares the service's logger name and pins it to ERROR; restore POWERTOOLS_LOG_LEVEL.
logger.setLevel(None)
app.register_middleware(
    ConvertToMiddleware(
        logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
    )
)

_bridge: Bridge | None = None
_bridge_lock = threading.Lock()


def bridge() -> Bridge:
    """The object graph, built on first use from this stage's environment."""
    global _bridge
    if _bridge is None:
        with _bridge_lock:
            if _bridge is None:
                _bridge = Bridge(Settings.from_env(os.environ))
    return _bridge


def use_bridge(replacement: Bridge | None) -> None:
    """Install a prebuilt graph (tests), or None to rebuild from the environment on next use."""
    global _bridge
    _bridge = replacement


@app.middleware("http")
def correlate_and_flush(event: Any, get_response: Callable[[Any], Response]) -> Response:
    if logger.get_correlation_id() is None:
        logger.set_correlation_id(str(uuid.uuid4()))
    response = as_ours(get_response(event))
    response.headers["X-Correlation-Id"] = str(logger.get_correlation_id())
    flush_metrics()
    return response


@app.middleware("sqs")
def flush_queue_metrics(event: Any, get_response: Callable[[Any], Any]) -> Any:
    try:
        return get_response(event)
    finally:
        flush_metrics()  # a batch that failed outright still reports what it counted


@app.middleware("scheduled")
def flush_scheduled_metrics(event: Any, get_response: Callable[[Any], Any]) -> Any:
    try:
        return get_response(event)
    finally:
        flush_metrics()


def _request() -> Request:
    request = app.current_request
    if request is None:
        raise RuntimeError("no current request outside a route")
    return request


@app.route(routes.HEALTH, methods=["GET"])
@http_errors
def get_health() -> Response:
    return health()


@app.route(routes.CREATE_WITHOUT_ACCOUNT, methods=["POST"])
@http_errors
def create_event_without_account(account_code: str = "") -> Response:
    """``/v1/subscriptionevent/``: what the template renders for a user without rokt:account_code."""
    return bridge().delivery_endpoint().handle(Action.CREATE, account_code, _request())


@app.route(routes.CREATE, methods=["POST"])
@http_errors
def create_event(account_code: str) -> Response:
    return bridge().delivery_endpoint().handle(Action.CREATE, account_code, _request())


@app.route(routes.UPDATE, methods=["POST"])
@http_errors
def update_event(account_code: str) -> Response:
    return bridge().delivery_endpoint().handle(Action.UPDATE, account_code, _request())


@app.route(routes.DELETE, methods=["POST"])
@http_errors
def delete_event(account_code: str) -> Response:
    return bridge().delivery_endpoint().handle(Action.DELETE, account_code, _request())


@app.route(routes.ROKT_WEBHOOKS, methods=["POST"])
@http_errors
def rokt_webhook(token: str) -> Response:
    return bridge().sync_endpoint().handle(token, _request())


# Chalice binds each handler to a queue by name when it loads this module; `chalice deploy` and
# `chalice package` load it with the stage's environment, so BRIDGE_STAGE scopes the names (reading
# the environment is not IO). See README "Queued mode".
_STAGE = stage_of(os.environ)


@app.on_sqs_message(queue=delivery_queue_names(_STAGE)[0], batch_size=BATCH_SIZE, maximum_concurrency=MAX_CONCURRENCY)
def deliver_queued(event: SQSEvent) -> dict[str, Any]:
    return bridge().delivery_consumer().handle(event.to_dict(), event.context)


@app.on_sqs_message(
    queue=sync_queue_names(_STAGE)[0],
    batch_size=SYNC_BATCH_SIZE,
    maximum_batching_window_in_seconds=SYNC_BATCH_WINDOW_SECONDS,
)
def sync_subscribers(event: SQSEvent) -> dict[str, Any]:
    return bridge().sync_consumer().handle(event.to_dict(), event.context)


@app.schedule(Rate(RECONCILE_EVERY_MINUTES, unit=Rate.MINUTES))
def reconcile_subscriptions(event: CloudWatchEvent) -> dict[str, Any]:
    """Braze equals Rokt within a day, whatever webhooks the bridge missed (docs/rokt-to-braze.md)."""
    return bridge().reconciler().run(event.context).summary()
