"""Build the concrete object graph from Settings: the single place where clients are created.

Called lazily on the first request (never at import), and reused by warm invocations. Tests pass
their own clients or session to exercise the same graph against moto and the Rokt sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import requests
from aws_lambda_powertools import Tracer
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.parameters import SSMProvider
from botocore.config import Config

from chalicelib.auth import SignatureVerifier, WebhookAuthenticator
from chalicelib.idempotency import IdempotentDeliverer
from chalicelib.observability import count_token_refresh
from chalicelib.rokt.client import RoktCalendarClient
from chalicelib.rokt.tokens import TokenEndpoint, TokenProvider
from chalicelib.secrets import SecretStore
from chalicelib.service import DeliveryService
from chalicelib.settings import CONNECT_TIMEOUT_SECONDS, Settings
from chalicelib.web import WebhookEndpoint

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_ssm.client import SSMClient

# Fail fast when AWS is unreachable so the answer (503) still beats API Gateway's 29 s.
AWS_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=4, retries={"mode": "standard", "total_max_attempts": 3})


@dataclass(frozen=True)
class Bridge:
    settings: Settings
    webhooks: WebhookEndpoint
    tokens: TokenProvider
    rokt: RoktCalendarClient


def build_bridge(
    settings: Settings,
    *,
    ssm_client: SSMClient | None = None,
    dynamodb_client: DynamoDBClient | None = None,
    session: requests.Session | None = None,
) -> Bridge:
    ssm_client = ssm_client or boto3.client("ssm", config=AWS_CLIENT_CONFIG)
    dynamodb_client = dynamodb_client or boto3.client("dynamodb", config=AWS_CLIENT_CONFIG)
    session = session or requests.Session()
    store = SecretStore(SSMProvider(boto3_client=ssm_client), settings.ssm_prefix)
    tokens = TokenProvider(
        TokenEndpoint(session, settings.rokt_api_url, CONNECT_TIMEOUT_SECONDS, settings.rokt_timeout_seconds),
        store,
        on_refresh=count_token_refresh,
    )
    rokt = RoktCalendarClient(
        settings.rokt_api_url,
        tokens,
        session,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=settings.rokt_timeout_seconds,
        update_shape=settings.update_body_shape,
    )
    service = DeliveryService(rokt)
    persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table, boto3_client=dynamodb_client)
    deliverer = IdempotentDeliverer(service, persistence, settings.idempotency_ttl_seconds)
    webhooks = WebhookEndpoint(
        WebhookAuthenticator(store, settings.webhook_secrets_max_age_seconds),
        service,
        deliverer,
        settings.request_budget_seconds,
        signatures=SignatureVerifier(store, settings.webhook_secrets_max_age_seconds)
        if settings.require_signature
        else None,
        # Tracer() loads the X-Ray SDK (~170 ms of cold start) and patches boto3 and requests: only on request.
        tracer=Tracer() if settings.tracing else None,
    )
    return Bridge(settings=settings, webhooks=webhooks, tokens=tokens, rokt=rokt)
