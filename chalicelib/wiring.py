"""Build the concrete object graph from Settings: the single place where clients are created.

Called lazily on the first request (never at import), and reused by warm invocations. Tests pass
their own clients or session to exercise the same graph against moto and the Rokt sandbox.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
from aws_lambda_powertools import Tracer
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.parameters import SSMProvider
from botocore.config import Config

from chalicelib.auth import PathTokenAuthenticator, SignatureVerifier, WebhookAuthenticator
from chalicelib.delivery.breaker import CircuitBreaker
from chalicelib.delivery.endpoint import WebhookEndpoint
from chalicelib.delivery.idempotency import IdempotentDeliverer
from chalicelib.delivery.pending import PendingIntents
from chalicelib.delivery.queue import DeliveryQueue, QueueConsumer
from chalicelib.delivery.service import DeliveryService
from chalicelib.delivery.spill import SpillingDeliverer
from chalicelib.errors import ConfigError
from chalicelib.http_session import EnvironmentOnceSession
from chalicelib.observability import count_token_refresh
from chalicelib.rokt.events import RoktCalendarClient
from chalicelib.rokt.tokens import TokenEndpoint, TokenProvider
from chalicelib.rokt.transport import RoktTransport
from chalicelib.secrets import BRAZE_API_KEY, SecretStore
from chalicelib.settings import CONNECT_TIMEOUT_SECONDS, Settings
from chalicelib.sync.endpoint import BRAZE_KEY_MAX_AGE_SECONDS, RoktWebhookEndpoint
from chalicelib.sync.queue import SyncQueue

if TYPE_CHECKING:
    from collections.abc import Callable

    import requests
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_ssm.client import SSMClient

    from chalicelib.delivery.endpoint import Deliverer
    from chalicelib.sync.consumer import SyncConsumer

BRAZE_READ_TIMEOUT_SECONDS = 10.0
# Every AWS call is bounded: 2 attempts of (1 s connect + 2 s read) plus one standard-mode backoff —
# about 6.5 s at worst, which the request budget reserves for the completion write (see settings).
AWS_CLIENT_CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2})
# DynamoDB is on every webhook's path twice. botocore's client-side parameter validation re-checks the
# requests Powertools and the sync ledger build (always well-formed) and was the largest CPU cost the
# bridge adds over the reference (~1.2 ms of ~27 ms per warm webhook under cProfile). DynamoDB still
# validates each request: a malformed one fails as a ClientError, which is handled like any other.
DYNAMODB_CLIENT_CONFIG = AWS_CLIENT_CONFIG.merge(Config(parameter_validation=False))


@dataclass(frozen=True)
class Bridge:
    settings: Settings
    webhooks: WebhookEndpoint
    consumer: Callable[[], QueueConsumer]  # built on first use: only the SQS handler needs it
    rokt_webhooks: RoktWebhookEndpoint
    sync_consumer: Callable[[], SyncConsumer]  # likewise, only the sync queue's handler


def build_bridge(
    settings: Settings,
    *,
    ssm_client: SSMClient | None = None,
    dynamodb_client: DynamoDBClient | None = None,
    session: requests.Session | None = None,
    sqs_client: SQSClient | None = None,
    clock: Callable[[], float] = time.time,
    breaker_clock: Callable[[], float] = time.monotonic,
) -> Bridge:
    ssm_client = ssm_client or boto3.client("ssm", config=AWS_CLIENT_CONFIG)
    dynamodb_client = dynamodb_client or boto3.client("dynamodb", config=DYNAMODB_CLIENT_CONFIG)
    session = session or EnvironmentOnceSession()
    store = SecretStore(SSMProvider(boto3_client=ssm_client), settings.ssm_prefix)
    tokens = TokenProvider(
        TokenEndpoint(session, settings.rokt_api_url, CONNECT_TIMEOUT_SECONDS, settings.rokt_timeout_seconds),
        store,
        clock=clock,
        on_refresh=count_token_refresh,
    )
    transport = RoktTransport(
        settings.rokt_api_url,
        tokens,
        session,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=settings.rokt_timeout_seconds,
    )
    rokt = RoktCalendarClient(transport, update_shape=settings.update_body_shape)
    service = DeliveryService(rokt)
    deliverer = IdempotentDeliverer(
        service.deliver, _persistence(settings, dynamodb_client), settings.idempotency_ttl_seconds, clock=clock
    )
    sqs = functools.cache(lambda: sqs_client or boto3.client("sqs", config=AWS_CLIENT_CONFIG))
    intake: Deliverer = deliverer
    # The intents waiting in the delivery queue, per event: what keeps them in order (see pending).
    pending = PendingIntents(dynamodb_client, settings.idempotency_table, settings.retry_horizon_seconds, clock=clock)
    if settings.delivery_queue_url:
        queue = DeliveryQueue(
            sqs,
            settings.delivery_queue_url,
            clock=clock,
            pending=pending,
            note_reserve_seconds=settings.completion_reserve_seconds,
        )
        if settings.delivery_mode == "queued":
            intake = queue  # one SQS send per webhook; the consumer's delivery records dedupe
        else:
            breaker = CircuitBreaker(
                settings.breaker_failure_threshold, settings.breaker_cooldown_seconds, clock=breaker_clock
            )
            intake = SpillingDeliverer(deliverer, queue, breaker, pending)
    webhooks = WebhookEndpoint(
        WebhookAuthenticator(store, settings.webhook_secrets_max_age_seconds),
        service,
        intake,
        settings.request_budget_seconds,
        reserve_seconds=settings.completion_reserve_seconds,
        wall_clock=clock,
        signatures=SignatureVerifier(store, settings.webhook_secrets_max_age_seconds)
        if settings.require_signature
        else None,
        # Tracer() loads the X-Ray SDK (~170 ms of cold start) and patches boto3 and requests: only on request.
        tracer=Tracer() if settings.tracing else None,
    )

    def sync_consumer() -> SyncConsumer:
        # Imported on first use: only the sync queue's Lambda builds this, so the API handler's cold
        # start does not pay for the consumer, the Braze client and their imports (~8 ms measured).
        from chalicelib.braze.client import BrazeClient  # noqa: PLC0415
        from chalicelib.rokt.subscriptions import RoktSubscriptionsClient  # noqa: PLC0415
        from chalicelib.sqs import QueueRecords  # noqa: PLC0415
        from chalicelib.sync.consumer import SyncConsumer  # noqa: PLC0415
        from chalicelib.sync.records import EventClaims, SyncLedger  # noqa: PLC0415

        if not settings.sync_configured or settings.braze_rest_endpoint is None:
            raise ConfigError(["BRAZE_REST_ENDPOINT and SYNC_QUEUE_URL are required to consume the sync queue"])
        braze = BrazeClient(
            settings.braze_rest_endpoint,
            lambda force: store.get(BRAZE_API_KEY, BRAZE_KEY_MAX_AGE_SECONDS, force_fetch=force),
            session,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=BRAZE_READ_TIMEOUT_SECONDS,
        )
        return SyncConsumer(
            RoktSubscriptionsClient(transport),
            braze,
            EventClaims(_persistence(settings, dynamodb_client), settings.idempotency_ttl_seconds),
            SyncLedger(dynamodb_client, settings.idempotency_table, clock=clock),
            QueueRecords(sqs()),
            fallback=settings.braze_identity_fallback,
            wall_clock=clock,
        )

    queue_url = settings.sync_queue_url
    # Built on first use: a container that only delivers never creates the SQS client.
    sync_queue = (
        functools.cache(lambda: SyncQueue(sqs(), queue_url)) if queue_url and settings.sync_configured else None
    )
    return Bridge(
        settings=settings,
        webhooks=webhooks,
        consumer=functools.cache(
            lambda: QueueConsumer(
                deliverer,
                sqs(),
                reserve_seconds=settings.completion_reserve_seconds,
                horizon_seconds=settings.retry_horizon_seconds,
                max_backoff_seconds=settings.retry_max_backoff_seconds,
                wall_clock=clock,
                pending=pending,
            )
        ),
        rokt_webhooks=RoktWebhookEndpoint(
            PathTokenAuthenticator(store, settings.webhook_secrets_max_age_seconds), store, sync_queue
        ),
        sync_consumer=functools.cache(sync_consumer),
    )


def _persistence(settings: Settings, dynamodb_client: DynamoDBClient) -> DynamoDBPersistenceLayer:
    """A layer per idempotent use case: Powertools binds a layer to the first config it serves."""
    return DynamoDBPersistenceLayer(table_name=settings.idempotency_table, boto3_client=dynamodb_client)
