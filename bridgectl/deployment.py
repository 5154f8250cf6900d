"""The deployed stage: what `chalice deploy` cannot set (partial batch failures on both queue
consumers, the dashboard) and the API URL it recorded."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from chalicelib.settings import stage_of
from stage import dashboard
from stage.names import OpsError, function_names
from stage.project import PROJECT_DIR, stage_environment

if TYPE_CHECKING:
    from pathlib import Path

    from mypy_boto3_lambda.client import LambdaClient

    from stage.bootstrap import Progress


QUEUE_CONSUMERS = ("delivery", "sync")  # both return batchItemFailures (Powertools BatchProcessor)


def consumer_functions(stage: str) -> list[str]:
    """Both queue consumers' Lambdas as `chalice deploy` names them."""
    names = function_names(stage)
    return [names[kind] for kind in QUEUE_CONSUMERS]


def enable_partial_batch(lambda_client: LambdaClient, stage: str, progress: Progress = print) -> int:
    """Set ReportBatchItemFailures on both queue consumers' SQS event sources (`chalice deploy` cannot).

    Without it a batch in which only some records failed is counted a success and those records are
    lost. Idempotent; returns how many mappings were changed.
    """
    found = {
        function: lambda_client.list_event_source_mappings(FunctionName=function).get("EventSourceMappings", [])
        for function in consumer_functions(stage)
    }
    missing = [function for function, mappings in found.items() if not mappings]
    if missing:
        raise OpsError(f"{', '.join(missing)} has no SQS event source: deploy the stage first")
    changed = 0
    for mapping in (mapping for mappings in found.values() for mapping in mappings):
        if "ReportBatchItemFailures" in mapping.get("FunctionResponseTypes", []):
            progress(f"event source {mapping['UUID']}: already reports partial batch failures")
            continue
        lambda_client.update_event_source_mapping(
            UUID=mapping["UUID"], FunctionResponseTypes=["ReportBatchItemFailures"]
        )
        progress(f"event source {mapping['UUID']}: now reports partial batch failures")
        changed += 1
    return changed


def put_dashboard(cloudwatch: Any, stage: str, region: str, progress: Progress = print) -> str:
    """Put the stage's dashboard (the one the CloudFormation path embeds), naming the functions
    `chalice deploy` creates. Idempotent; returns the dashboard's name."""
    name = dashboard.dashboard_name(stage)
    body = dashboard.dashboard_body(stage_of(stage_environment(stage)))
    body = dashboard.filled(body, region, function_names(stage))
    answer = cloudwatch.put_dashboard(DashboardName=name, DashboardBody=body)
    for problem in answer.get("DashboardValidationMessages", []):
        progress(f"dashboard {name}: {problem.get('Message')}")
    progress(f"dashboard {name}: put in {region} (CloudWatch → Dashboards)")
    return name


def deployed_api_url(stage: str, project_dir: Path = PROJECT_DIR) -> str | None:
    """The API URL `chalice deploy` recorded for ``stage``, if it was deployed from this checkout."""
    record = project_dir / ".chalice" / "deployed" / f"{stage}.json"
    if not record.exists():
        return None
    for resource in json.loads(record.read_text()).get("resources", []):
        if resource.get("resource_type") == "rest_api" and resource.get("rest_api_url"):
            return str(resource["rest_api_url"]).rstrip("/")
    return None
