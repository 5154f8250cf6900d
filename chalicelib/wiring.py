"""The object graph of one Lambda container: the single place where clients and objects are built.

Each part is built on first use (never at import) and reused by warm invocations; a container that
only delivers never builds the sync consumer, the Braze client or the SQS client. The modules only a
consumer or the sync route needs (the two consumers, Rokt's envelope, Powertools' idempotency) are
imported where those parts are built, not with this module: every cold start imports this module, and
the package's bytecode step (scripts/bytecode.py) imports every chalicelib module, so a missing
requirement still fails `make package`. Tests and the
simulator pass their own clients, session and :class:`~chalicelib.runtime.Runtime` to run the same
graph against moto, the sandboxes or the simulated world.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from aws_lambda_powertools import Tracer
from aws_lambda_powertools.utilities.parameters import SSMProvider
from botocore.config import Config

from chalicelib.auth import PathTokenAuthenticator, SignatureVerifier, WebhookAuthenticator
from chalicelib.delivery.breaker import CircuitBreaker
from chalicelib.delivery.in_order import InOrderDeliverer
from chalicelib.delivery.queue import DeliveryQueue
from chalicelib.delivery.service import DeliveryService
from chalicelib.delivery.spill import SpillingDeliverer
from chalicelib.delivery.state import EventStates
from chalicelib.errors import ConfigError
from chalicelib.http_session import EnvironmentOnceSession
from chalicelib.observability import count_token_refresh
from chalicelib.rokt.events import RoktCalendarClient
from chalicelib.rokt.tokens import TokenEndpoint, TokenProvider
from chalicelib.rokt.transport import RoktTransport
from chalicelib.runtime import SYSTEM
from chalicelib.secrets import BRAZE_API_KEY, BRAZE_KEY_MAX_AGE_SECONDS, SecretStore
from chalicelib.settings import CONNECT_TIMEOUT_SECONDS
from chalicelib.sync.queue import SyncQueue

if TYPE_CHECKING:
    from collections.abc import Callable

    import requests
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_ssm.client import SSMClient

    from chalicelib.braze.client import BrazeClient
    from chalicelib.delivery.consumer import QueueConsumer
    from chalicelib.delivery.endpoint import WebhookEndpoint
    from chalicelib.delivery.service import Deliverer
    from chalicelib.runtime import Runtime
    from chalicelib.settings import Settings
    from chalicelib.sync.consumer import SyncConsumer
    from chalicelib.sync.endpoint import RoktWebhookEndpoint
    from chalicelib.sync.reconcile import Reconciler

BRAZE_READ_TIMEOUT_SECONDS = 10.0
# Every AWS call is bounded: 2 attempts of (1 s connect + 2 s read) plus one standard-mode backoff —
# about 6.5 s at worst, which the request budget reserves for the completion write (see settings).
AWS_CLIENT_CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2})
# DynamoDB is on every webhook's path twice. botocore's client-side parameter validation re-checks the
# requests Powertools and the sync ledger build (always well-formed) and was the largest CPU cost the
# bridge adds over the reference (~1.2 ms of ~27 ms per warm webhook under cProfile). DynamoDB still
# validates each request: a malformed one fails as a ClientError, which is handled like any other.
DYNAMODB_CLIENT_CONFIG = AWS_CLIENT_CONFIG.merge(Config(parameter_validation=False))

Part = TypeVar("Part")


def _once(build: Callable[[Bridge], Part]) -> Callable[[Bridge], Part]:
    """A part of the graph, built on its first use and the same object ever after."""

    @functools.wraps(build)
    def part(self: Bridge) -> Part:
        with self._building:  # chalice local serves requests on threads
            if build.__name__ not in self._parts:
                self._parts[build.__name__] = build(self)
            built: Part = self._parts[build.__name__]
            return built

    return part


class Bridge:
    """Everything one container needs, from its Settings: the two flows' endpoints and consumers, and
    the parts they share (secrets, the Rokt transport and its token cache, the delivery records)."""

    def __init__(
        self,
        settings: Settings,
        *,
        ssm_client: SSMClient | None = None,
        dynamodb_client: DynamoDBClient | None = None,
        sqs_client: SQSClient | None = None,
        session: requests.Session | None = None,
        runtime: Runtime = SYSTEM,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        # Built with the graph, from the environment as it is now (the SQS client waits for first use).
        self._ssm_client = ssm_client or boto3.client("ssm", config=AWS_CLIENT_CONFIG)
        self._dynamodb_client = dynamodb_client or boto3.client("dynamodb", config=DYNAMODB_CLIENT_CONFIG)
        self._sqs_client = sqs_client
        self._session = session or EnvironmentOnceSession()
        self._building = threading.RLock()
        self._parts: dict[str, Any] = {}

    # --- Braze → Rokt ---------------------------------------------------------------------------
    @_once
    def delivery_endpoint(self) -> WebhookEndpoint:
        """The webhook routes: authenticate, validate, and hand over to the intake chain. The HTTP edges
        (and Chalice with them) are imported on first use, so the operator CLI builds the graph without them."""
        from chalicelib.delivery.endpoint import WebhookEndpoint  # noqa: PLC0415

        settings, runtime = self.settings, self.runtime
        store = self.secrets()
        return WebhookEndpoint(
            WebhookAuthenticator(store, settings.webhook_secrets_max_age_seconds),
            self.delivery_service(),
            self.delivery_intake(),
            settings.request_budget_seconds,
            reserve_seconds=settings.completion_reserve_seconds,
            clock=runtime.monotonic,
            wall_clock=runtime.time,
            sleep=runtime.sleep,
            signatures=SignatureVerifier(store, settings.webhook_secrets_max_age_seconds, clock=runtime.time)
            if settings.require_signature
            else None,
            # Tracer() loads the X-Ray SDK (~170 ms of cold start) and patches boto3 and requests: only on request.
            tracer=Tracer() if settings.tracing else None,
        )

    @_once
    def delivery_intake(self) -> Deliverer:
        """Direct delivery; with a queue behind it, spilling to the queue; or, queued mode, the queue alone."""
        queue = self.delivery_queue()
        if queue is None:
            return self.deliverer()
        if self.settings.delivery_mode == "queued":
            return queue  # one SQS send per webhook; the consumer's delivery records dedupe
        settings = self.settings
        breaker = CircuitBreaker(
            settings.breaker_failure_threshold, settings.breaker_cooldown_seconds, clock=self.runtime.monotonic
        )
        return SpillingDeliverer(self.deliverer(), queue, breaker)

    @_once
    def delivery_consumer(self) -> QueueConsumer:
        """The delivery queue's SQS handler; imported here, as only the delivery queue's Lambda builds it."""
        from chalicelib.delivery.consumer import QueueConsumer  # noqa: PLC0415

        settings, runtime = self.settings, self.runtime
        return QueueConsumer(
            self.deliverer(),
            self.event_states(),
            self.sqs(),
            reserve_seconds=settings.completion_reserve_seconds,
            horizon_seconds=settings.retry_horizon_seconds,
            max_backoff_seconds=settings.retry_max_backoff_seconds,
            clock=runtime.monotonic,
            wall_clock=runtime.time,
            sleep=runtime.sleep,
        )

    @_once
    def delivery_service(self) -> DeliveryService:
        return DeliveryService(
            RoktCalendarClient(self.rokt_transport(), update_shape=self.settings.update_body_shape),
            clock=self.runtime.monotonic,
        )

    @_once
    def deliverer(self) -> InOrderDeliverer:
        """Delivery to Rokt, exactly once per intent and in the order received (the event states); in
        direct mode with a queue behind it, a webhook whose event has intents waiting there goes behind
        them."""
        settings = self.settings
        return InOrderDeliverer(
            self.delivery_service().deliver,
            self.event_states(),
            wall_clock=self.runtime.time,
            new_id=self.runtime.new_id,
            queue_behind=bool(settings.delivery_queue_url) and settings.delivery_mode != "queued",
        )

    @_once
    def event_states(self) -> EventStates:
        """Each event's delivery state: what Rokt has, the delivery in flight, the intents waiting in the
        delivery queue (one item per event in the idempotency table)."""
        settings = self.settings
        return EventStates(
            self.dynamodb(), settings.idempotency_table, settings.idempotency_ttl_seconds, clock=self.runtime.time
        )

    @_once
    def delivery_queue(self) -> DeliveryQueue | None:
        """The producer side of the delivery queue; None without DELIVERY_QUEUE_URL."""
        settings = self.settings
        if not settings.delivery_queue_url:
            return None
        return DeliveryQueue(
            self.sqs,  # built on first use: a direct-mode container that never spills never builds it
            settings.delivery_queue_url,
            clock=self.runtime.time,
            waiting=self.event_states(),
            note_reserve_seconds=settings.completion_reserve_seconds,
            new_id=self.runtime.new_id,
        )

    # --- Rokt → Braze ---------------------------------------------------------------------------
    @_once
    def sync_endpoint(self) -> RoktWebhookEndpoint:
        """The Rokt webhook route: check the token, keep the webhook on the sync queue. Imported on the
        route's first request: a container that only delivers does not pay for Rokt's envelope."""
        from chalicelib.sync.endpoint import RoktWebhookEndpoint  # noqa: PLC0415

        settings = self.settings
        queue_url = settings.sync_queue_url
        # Built on first use: a container that only delivers never creates the SQS client.
        sync_queue = (
            functools.cache(lambda: SyncQueue(self.sqs(), queue_url, clock=self.runtime.time))
            if queue_url and settings.sync_configured
            else None
        )
        return RoktWebhookEndpoint(
            PathTokenAuthenticator(self.secrets(), settings.webhook_secrets_max_age_seconds),
            self.secrets(),
            sync_queue,
            clock=self.runtime.monotonic,
        )

    @_once
    def sync_consumer(self) -> SyncConsumer:
        """The sync queue's SQS handler. Its imports come on first use: only the sync queue's Lambda
        builds it, so the API handler's cold start does not pay for the consumer, the Braze client and
        their imports (~8 ms measured)."""
        from chalicelib.rokt.subscriptions import RoktSubscriptionsClient  # noqa: PLC0415
        from chalicelib.sqs import QueueRecords  # noqa: PLC0415
        from chalicelib.sync.consumer import SyncConsumer  # noqa: PLC0415
        from chalicelib.sync.records import EventClaims, SyncLedger  # noqa: PLC0415

        settings, runtime = self.settings, self.runtime
        return SyncConsumer(
            RoktSubscriptionsClient(self.rokt_transport()),
            self.braze(),
            EventClaims(self._persistence(), settings.idempotency_ttl_seconds),
            SyncLedger(self.dynamodb(), settings.idempotency_table, clock=runtime.time),
            QueueRecords(self.sqs()),
            fallback=settings.braze_identity_fallback,
            runtime=runtime,
        )

    @_once
    def reconciler(self) -> Reconciler:
        """The scheduled reconciliation (and ``bridgectl reconcile``): the sync consumer's Rokt client,
        Braze client and ledger, and the ledger's index. Its imports come on first use, as the consumer's."""
        from chalicelib.rokt.subscriptions import RoktSubscriptionsClient  # noqa: PLC0415
        from chalicelib.sync.ledger_index import LedgerIndex  # noqa: PLC0415
        from chalicelib.sync.reconcile import Reconciler  # noqa: PLC0415
        from chalicelib.sync.records import SyncLedger  # noqa: PLC0415

        settings, runtime = self.settings, self.runtime
        return Reconciler(
            RoktSubscriptionsClient(self.rokt_transport()),
            self.braze(),
            SyncLedger(self.dynamodb(), settings.idempotency_table, clock=runtime.time),
            LedgerIndex(self.dynamodb(), settings.idempotency_table),
            fallback=settings.braze_identity_fallback,
            period_seconds=settings.reconcile_period_seconds,
            reads_per_second=settings.reconcile_reads_per_second,
            runtime=runtime,
        )

    @_once
    def braze(self) -> BrazeClient:
        from chalicelib.braze.client import BrazeClient  # noqa: PLC0415

        settings = self.settings
        if not settings.sync_configured or settings.braze_rest_endpoint is None:
            raise ConfigError(["BRAZE_REST_ENDPOINT and SYNC_QUEUE_URL are required to consume the sync queue"])
        store = self.secrets()
        return BrazeClient(
            settings.braze_rest_endpoint,
            lambda force: store.get(BRAZE_API_KEY, BRAZE_KEY_MAX_AGE_SECONDS, force_fetch=force),
            self.session(),
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=BRAZE_READ_TIMEOUT_SECONDS,
            clock=self.runtime.time,
        )

    # --- shared by both flows -------------------------------------------------------------------
    @_once
    def secrets(self) -> SecretStore:
        return SecretStore(SSMProvider(boto3_client=self.ssm()), self.settings.ssm_prefix, clock=self.runtime.monotonic)

    @_once
    def rokt_transport(self) -> RoktTransport:
        """Rokt's API with the container's token cache (one refresh at a time, shared through SSM)."""
        settings, runtime = self.settings, self.runtime
        session = self.session()
        tokens = TokenProvider(
            TokenEndpoint(session, settings.rokt_api_url, CONNECT_TIMEOUT_SECONDS, settings.rokt_timeout_seconds),
            self.secrets(),
            clock=runtime.time,
            on_refresh=count_token_refresh,
            lock=runtime.lock(),
        )
        return RoktTransport(
            settings.rokt_api_url,
            tokens,
            session,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=settings.rokt_timeout_seconds,
        )

    def ssm(self) -> SSMClient:
        return self._ssm_client

    def dynamodb(self) -> DynamoDBClient:
        return self._dynamodb_client

    @_once
    def sqs(self) -> SQSClient:
        return self._sqs_client or boto3.client("sqs", config=AWS_CLIENT_CONFIG)

    def session(self) -> requests.Session:
        """The one HTTP session of the container (Rokt, its token endpoint, Braze)."""
        return self._session

    def _persistence(self) -> DynamoDBPersistenceLayer:
        """A layer per idempotent use case: Powertools binds a layer to the first config it serves. Only the
        sync consumer has one, so Powertools' idempotency is imported here, on its first use (~5 ms of CPU
        of every other container's cold start)."""
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer  # noqa: PLC0415

        return DynamoDBPersistenceLayer(table_name=self.settings.idempotency_table, boto3_client=self.dynamodb())
