"""One measurement in a fresh process (stdout discarded, results as JSON on a file).

Modes: ``calls`` (remote calls over N webhooks across 8 containers, counted at the services),
``cpu`` (CPU seconds per warm webhook), ``cold`` (import + first delivered webhook, wall clock).
Both the bridge and the reference handler are invoked exactly as Lambda invokes them:
``app(event, context)`` with an API Gateway proxy event.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from stage.project import SAMPLE_BODY  # noqa: E402


def proxy_event(resource: str, params: dict[str, str], headers: dict[str, str], body: str) -> dict[str, Any]:
    """An API Gateway REST proxy event, as Lambda hands it to ``app(event, context)``."""
    path = resource
    for name, value in params.items():
        path = path.replace(f"{{{name}}}", value)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": params,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": "POST",
            "requestId": str(uuid.uuid4()),
            "stage": "api",
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": body,
        "isBase64Encoded": False,
    }


def api_event(target: str, event_id: str, secret: str) -> dict[str, Any]:
    """A create webhook from Braze to ``target`` (bridge or reference)."""
    param = "account_code" if target == "bridge" else "account"
    body = json.loads(json.dumps(SAMPLE_BODY))
    body["event"]["eventId"] = event_id
    headers = {"content-type": "application/json", "authorization": f"Bearer {secret}", "user-agent": "Braze Sender"}
    return proxy_event(f"/v1/subscriptionevent/{{{param}}}", {param: "brazetest"}, headers, json.dumps(body))


class Context:
    """The parts of a Lambda context Chalice and Powertools read."""

    function_name = "rokt-calendar-bridge-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load(target: str) -> Any:
    module = importlib.import_module("app" if target == "bridge" else "bench.reference_app")
    return module.app


def invoke(app: Any, target: str, event_id: str, secret: str, expect: tuple[int, ...] = (200,)) -> dict[str, Any]:
    answer: dict[str, Any] = app(api_event(target, event_id, secret), Context())
    if answer["statusCode"] not in expect:
        raise RuntimeError(f"{target} answered {answer['statusCode']}: {answer['body']}")
    return answer


def run_calls(args: argparse.Namespace) -> dict[str, Any]:
    import boto3

    import app as bridge_app
    from chalicelib.runtime import Runtime
    from chalicelib.settings import Settings
    from chalicelib.wiring import Bridge
    from localworld.aws_proxy import AwsProxy

    settings = Settings.from_env(os.environ)
    start = time.time()
    progress = {"done": 0}

    def simulated_clock() -> float:
        # The N webhooks are spread evenly over one 300 s token lifetime (minus a margin).
        return start + 240.0 * progress["done"] / args.n

    with AwsProxy(os.environ["AWS_ENDPOINT_URL"]) as proxy:
        session = boto3.session.Session()
        containers = [
            Bridge(
                settings,
                ssm_client=session.client("ssm", endpoint_url=proxy.url),
                dynamodb_client=session.client("dynamodb", endpoint_url=proxy.url),
                runtime=Runtime(time=simulated_clock),
            )
            for _ in range(args.containers)
        ]
        for index in range(args.n):
            bridge_app.use_bridge(containers[index % args.containers])
            invoke(bridge_app.app, "bridge", f"calls_{index}_user", args.secret)
            progress["done"] = index + 1
        return {"aws_calls": dict(proxy.counts), "seconds": time.time() - start}


def run_cpu(args: argparse.Namespace) -> dict[str, Any]:
    app = load(args.target)
    run = uuid.uuid4().hex[:6]
    for index in range(args.warmup):
        invoke(app, args.target, f"warm_{run}_{index}_user", args.secret)
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    for index in range(args.n):
        invoke(app, args.target, f"cpu_{run}_{index}_user", args.secret)
    return {
        "cpu_seconds": time.process_time() - cpu_before,
        "wall_seconds": time.perf_counter() - wall_before,
        "webhooks": args.n,
    }


def run_intake(args: argparse.Namespace) -> dict[str, Any]:
    """Wall time per answered webhook (direct: Rokt called; queued: SQS send), after warm-up."""
    app = load("bridge")
    run = uuid.uuid4().hex[:6]
    for index in range(args.warmup):
        invoke(app, "bridge", f"{args.prefix}w_{run}_{index}_user", args.secret, expect=(200, 202))
    started = time.perf_counter()
    for index in range(args.n):
        invoke(app, "bridge", f"{args.prefix}_{run}_{index}_user", args.secret, expect=(200, 202))
    return {"seconds_per_webhook": (time.perf_counter() - started) / args.n, "webhooks": args.n}


def run_drain(args: argparse.Namespace) -> dict[str, Any]:
    """Queue N webhooks, then drain the queue through the SQS handler until empty (bounded)."""
    import boto3

    from localworld.queue_worker import poll_once

    module = importlib.import_module("app")
    app = module.app
    run = uuid.uuid4().hex[:6]
    for index in range(args.n):
        invoke(app, "bridge", f"dr_{run}_{index}_user", args.secret, expect=(202,))
    sqs = boto3.client("sqs")
    queue_url = os.environ["DELIVERY_QUEUE_URL"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    deadline = time.monotonic() + args.max_seconds
    received = failed = 0
    while time.monotonic() < deadline:
        got, bad = poll_once(sqs, queue_url, arn, module.deliver_queued, Context(), wait_seconds=1)
        received, failed = received + got, failed + bad
        if got == 0:
            attributes = sqs.get_queue_attributes(
                QueueUrl=queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            if all(value == "0" for value in attributes.values()):
                break
    return {"received": received, "failed_attempts": failed, "webhooks": args.n}


def rokt_event(envelope: dict[str, Any], token: str) -> dict[str, Any]:
    """One Rokt webhook to the sync route."""
    headers = {"content-type": "application/json", "user-agent": "Rokt"}
    return proxy_event("/rokt/webhooks/{token}", {"token": token}, headers, json.dumps(envelope))


def run_sync(args: argparse.Namespace) -> dict[str, Any]:
    """Rokt webhooks into the sync route (AWS calls counted at the service), then the sync queue
    drained through the real SQS handler in Lambda-sized batches."""
    import boto3

    import app as bridge_app
    from chalicelib.settings import Settings
    from chalicelib.sync.queue import SYNC_BATCH_SIZE
    from chalicelib.wiring import Bridge
    from localworld.aws_proxy import AwsProxy
    from localworld.queue_worker import poll_once

    envelopes = json.loads(Path(args.envelopes).read_text())
    settings = Settings.from_env(os.environ)
    with AwsProxy(os.environ["AWS_ENDPOINT_URL"]) as proxy:
        session = boto3.session.Session()
        bridge_app.use_bridge(
            Bridge(
                settings,
                ssm_client=session.client("ssm", endpoint_url=proxy.url),
                dynamodb_client=session.client("dynamodb", endpoint_url=proxy.url),
                sqs_client=session.client("sqs", endpoint_url=proxy.url),
            )
        )
        for envelope in envelopes:
            answer = bridge_app.app(rokt_event(envelope, args.token), Context())
            if answer["statusCode"] != 202:
                raise RuntimeError(f"the sync route answered {answer['statusCode']}: {answer['body']}")
        route_calls = dict(proxy.counts)
    bridge_app.use_bridge(None)  # the consumer: a fresh container, straight to the emulator
    sqs = boto3.client("sqs")
    queue_url = os.environ["SYNC_QUEUE_URL"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    batches = failed = 0
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline:
        got, bad = poll_once(
            sqs, queue_url, arn, bridge_app.sync_subscribers, Context(), batch_size=SYNC_BATCH_SIZE, wait_seconds=1
        )
        batches, failed = batches + (1 if got else 0), failed + bad
        if got == 0:
            break
    return {"route_aws_calls": route_calls, "webhooks": len(envelopes), "batches": batches, "failed": failed}


def invoke_sync(sqs: Any, queue_url: str, arn: str, lambda_ms: int) -> tuple[int, int, float]:
    """One sync consumer invocation with a batch from the queue: (received, failed, seconds). Failed
    records are made visible again at once (the next measurement takes them)."""
    from chalice.local import LambdaContext

    import app as bridge_app
    from chalicelib.sync.queue import SYNC_BATCH_SIZE
    from localworld.queue_worker import receive_batch, sqs_event

    messages = receive_batch(sqs, queue_url, SYNC_BATCH_SIZE, wait_seconds=1)
    if not messages:
        return 0, 0, 0.0
    context = LambdaContext("sync_subscribers", 512, max_runtime_ms=lambda_ms)
    started = time.perf_counter()
    try:
        answer = bridge_app.sync_subscribers(sqs_event(messages, arn), context) or {}
        failed = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
    except Exception:  # the whole batch failed, as Lambda would see it
        failed = {m["MessageId"] for m in messages}
    seconds = time.perf_counter() - started
    for message in messages:
        if message["MessageId"] in failed:
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        else:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return len(messages), len(failed), seconds


def accept_rokt_webhooks(envelopes: list[dict[str, Any]], token: str) -> None:
    import app as bridge_app

    for envelope in envelopes:
        answer = bridge_app.app(rokt_event(envelope, token), Context())
        if answer["statusCode"] != 202:
            raise RuntimeError(f"the sync route answered {answer['statusCode']}: {answer['body']}")


def run_sync_batch(args: argparse.Namespace) -> dict[str, Any]:
    """One warm sync consumer with Rokt's subscription reads slowed down (by the caller): a full
    batch in one 30 s invocation (seconds, records failed), then the queue drained batch after batch
    (webhooks per second). Lambda's batching window is not counted."""
    import boto3
    import requests

    from chalicelib.sync.queue import SYNC_BATCH_SIZE

    envelopes = json.loads(Path(args.envelopes).read_text())
    sqs = boto3.client("sqs")
    queue_url = os.environ["SYNC_QUEUE_URL"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def accept(batch: list[dict[str, Any]]) -> None:
        accept_rokt_webhooks(batch, args.token)

    def invoke() -> tuple[int, int, float]:
        return invoke_sync(sqs, queue_url, arn, args.lambda_ms)

    warm, batch, rest = envelopes[:1], envelopes[1 : 1 + SYNC_BATCH_SIZE], envelopes[1 + SYNC_BATCH_SIZE :]
    accept(warm)
    invoke()  # the container is warm from here on
    accept(batch)
    braze_stats = f"{os.environ['BRAZE_REST_ENDPOINT']}/_sandbox/stats"
    calls_before = requests.get(braze_stats, timeout=5).json().get("track_requests", 0)
    received, failed, seconds = invoke()
    calls = requests.get(braze_stats, timeout=5).json().get("track_requests", 0) - calls_before
    first = {"batch_received": received, "batch_failed": failed, "batch_seconds": seconds, "batch_braze_calls": calls}
    sqs.purge_queue(QueueUrl=queue_url)  # a full batch that did not drain would skew the rate
    accept(rest)
    done = 0
    busy = 0.0
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline and done < len(rest):
        received, failed, seconds = invoke()
        if received == 0:
            break
        done, busy = done + received - failed, busy + seconds
    return {**first, "rate_webhooks": done, "rate_seconds": busy, "rate_offered": len(rest)}


def run_cold(args: argparse.Namespace) -> dict[str, Any]:
    app = load(args.target)
    invoke(app, args.target, f"cold_{uuid.uuid4().hex[:8]}_user", args.secret)
    return {"cold_seconds": time.perf_counter() - STARTED, "cpu_seconds": time.process_time()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["calls", "cpu", "cold", "intake", "drain", "sync", "sync-batch"])
    parser.add_argument("--envelopes", help="sync: a JSON file of Rokt webhook envelopes")
    parser.add_argument("--token", help="sync: the Rokt webhook token")
    parser.add_argument("--target", choices=["bridge", "reference"], default="bridge")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--prefix", default="in", help="intake: event id prefix")
    parser.add_argument("--containers", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--lambda-ms", type=int, default=30_000, help="sync-batch: the invocation's time")
    parser.add_argument("--secret", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    modes = {
        "calls": run_calls,
        "cpu": run_cpu,
        "cold": run_cold,
        "intake": run_intake,
        "drain": run_drain,
        "sync": run_sync,
        "sync-batch": run_sync_batch,
    }
    result = modes[args.mode](args)
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
