"""A stage's names, written once: its Lambda functions, queues and dead-letter queues, table, SSM
parameters, log groups, dashboard and alarms. Every one derives from ``chalicelib.settings.APP_NAME`` and
from what ``Settings`` parses out of the stage's environment in `.chalice/config.json`, so the IAM
policy, the CloudFormation resources, bootstrap, the dashboard and the operator CLI cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from chalicelib.delivery.queue import delivery_queue_names
from chalicelib.errors import ConfigError
from chalicelib.settings import APP_NAME, DEFAULT_TTL_SECONDS, METRICS_NAMESPACE, Settings, default_ssm_prefix
from chalicelib.sync.queue import sync_queue_names
from stage.project import PROJECT_DIR, stage_environment

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

SERVICE = APP_NAME  # Powertools' service name, a dimension of every metric
NAMESPACE = METRICS_NAMESPACE
QUEUES: dict[str, Callable[[str], tuple[str, str]]] = {"delivery": delivery_queue_names, "sync": sync_queue_names}
# The Lambda functions `chalice deploy` makes: the API handler, one per SQS handler in app.py, and the
# scheduled reconciliation.
HANDLERS = {"api": "", "delivery": "deliver_queued", "sync": "sync_subscribers", "reconcile": "reconcile_subscriptions"}


class StageError(Exception):
    """The stage is unknown or its configuration is invalid, said in plain words."""


class OpsError(Exception):
    """A problem the operator must fix, said in plain words."""


def function_names(stage: str) -> dict[str, str]:
    """The Lambda functions `chalice deploy` creates for ``stage``, by role (the CloudFormation path
    names its own; see the template's outputs)."""
    base = f"{APP_NAME}-{stage}"
    return {role: f"{base}-{handler}" if handler else base for role, handler in HANDLERS.items()}


def log_groups(stage: str) -> list[str]:
    return [f"/aws/lambda/{name}" for name in function_names(stage).values()]


def resource_name(stage: str, what: str) -> str:
    """An alarm, topic or dashboard of the stage: ``rokt-calendar-bridge-<stage>[-<what>]``."""
    return f"{APP_NAME}-{stage}-{what}" if what else f"{APP_NAME}-{stage}"


@dataclass(frozen=True)
class StageNames:
    """What an operator's command needs to find the stage's resources."""

    stage: str
    prefix: str
    table: str
    rokt_api_url: str
    signature_required: bool
    braze_rest_endpoint: str | None = None
    queue_stage: str = ""  # BRIDGE_STAGE, which names the stage's queues (see app.py)
    idempotency_ttl_seconds: int = DEFAULT_TTL_SECONDS  # how long delivery records are kept

    def queues(self, queue: str) -> tuple[str, str]:
        """The stage's ``delivery`` or ``sync`` queue name and its DLQ's."""
        return QUEUES[queue](self.queue_stage or self.stage)

    def parameter(self, relative: str) -> str:
        """An SSM parameter of the stage, e.g. ``rokt/client-id``."""
        return f"{self.prefix}/{relative}"

    @classmethod
    def of(cls, stage: str, project_dir: Path = PROJECT_DIR) -> StageNames:
        try:
            env = stage_environment(stage, project_dir)
        except KeyError as exc:
            raise StageError(f"stage {stage!r} is not in .chalice/config.json") from exc
        try:
            settings = Settings.from_env(env)
        except ConfigError as exc:
            raise StageError(f"stage {stage!r} in .chalice/config.json: {exc}") from exc
        return cls.from_settings(stage, settings)

    @classmethod
    def from_environment(cls, stage: str, env: Mapping[str, str]) -> StageNames:
        return cls.from_settings(stage, Settings.from_env(env))

    @classmethod
    def from_settings(cls, stage: str, settings: Settings) -> StageNames:
        """The names the runtime itself uses: ``Settings`` is the one parser of a stage's environment."""
        return cls(
            stage=stage,
            prefix=settings.ssm_prefix or default_ssm_prefix(stage),
            table=settings.idempotency_table,
            rokt_api_url=settings.rokt_api_url,
            signature_required=settings.require_signature,
            braze_rest_endpoint=settings.braze_rest_endpoint,
            queue_stage=settings.stage,
            idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
        )
