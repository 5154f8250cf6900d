"""Lambda, API Gateway and SQS event source mappings, as the bridge's three functions meet them.

- A :class:`Function` keeps warm containers, each one object graph built by the production wiring
  (``chalicelib.wiring.Bridge``) over the simulated clients, with its own clock skew; an invocation
  runs ``app.py``'s handler (Chalice's own dispatch, middleware included) and is killed at its
  timeout: it does nothing more, and its container is not reused.
- :class:`ApiGateway` turns an HTTP request into the REST proxy event Chalice expects, and answers
  504 when the function has not answered within 29 s.
- :class:`EventSource` polls a queue as Lambda does: batches of up to ``batch_size`` visible messages
  in any order, gathered for up to ``window`` seconds, at most ``max_concurrency`` invocations at
  once; the messages of a batch not reported failed are deleted; a batch whose invocation failed or
  was killed comes back after the visibility timeout.
"""

from __future__ import annotations

import functools
import itertools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import app as bridge_app
from chalicelib.runtime import Runtime
from chalicelib.wiring import Bridge
from tests.simulation.aws import ACCOUNT, REGION, SimClient
from tests.simulation.network import sim_session
from tests.simulation.scheduler import Actor, Invocation, SimExecutor, SimLock, Waiters

if TYPE_CHECKING:
    from collections.abc import Callable

    from chalicelib.settings import Settings
    from tests.simulation.aws import Message, Queue
    from tests.simulation.world import World

API_GATEWAY_SECONDS = 29.0


class SimContext:
    """Lambda's context object, on virtual time."""

    def __init__(self, world: World, invocation: Invocation, function: str, memory: int) -> None:
        self._world = world
        self._invocation = invocation
        self.function_name = function
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
        self.aws_request_id = f"req-{invocation.name}"
        self.log_group_name = f"/aws/lambda/{function}"
        self.log_stream_name = "sim"

    def get_remaining_time_in_millis(self) -> int:
        kill_at = self._invocation.kill_at or self._world.scheduler.now
        return int(max(kill_at - self._world.scheduler.now, 0.0) * 1000)


@dataclass(eq=False)
class Container:
    name: str
    bridge: Bridge
    skew: float


class Function:
    def __init__(
        self,
        world: World,
        name: str,
        handler: Callable[[Any, Any], Any],
        settings: Settings,
        *,
        timeout: float = 30.0,
        memory: int = 512,
    ) -> None:
        self._world = world
        self.name = name
        self._handler = handler
        self._settings = settings
        self._timeout = timeout
        self._memory = memory
        self._idle: list[Container] = []
        self._count = itertools.count(1)
        self._cold = itertools.count(1)
        self.invocations = 0
        self.killed = 0
        self.skews: dict[Actor, float] = {}
        self.began: dict[Actor, float] = {}  # when each invocation's handler started, by its container's clock
        self.container_of: dict[str, str] = {}  # invocation name -> the container that ran it

    def invoke(self, event: Any, label: str) -> Actor:
        """Run the handler on a warm container (or a cold one), in a new actor; Lambda kills it at its
        timeout."""
        world = self._world
        container = self._idle.pop(0) if self._idle else self._new_container()
        number = next(self._count)
        self.invocations += 1
        invocation = Invocation(f"{self.name}#{number}", kill_at=world.scheduler.now + self._timeout)
        self.container_of[invocation.name] = container.name
        context = SimContext(world, invocation, self.name, self._memory)

        def run() -> Any:
            bridge_app.use_bridge(container.bridge)  # read by the handler before its first IO
            self.began[actor] = world.scheduler.now + container.skew  # the handler's first reading of its clock
            return self._handler(event, context)

        def done(actor: Actor) -> None:
            if actor.killed:
                self.killed += 1
                world.killed.add(invocation.name)
                world.trace.add("lambda", f"{invocation.name} killed at its timeout ({label})")
            else:
                self._idle.append(container)  # a killed sandbox is replaced: its container is not reused
            world.invocation_done(actor)

        actor = world.scheduler.spawn(f"{invocation.name}:{label}", run, invocation=invocation, on_done=done)
        self.skews[actor] = container.skew
        return actor

    def _new_container(self) -> Container:
        world = self._world
        name = f"{self.name}/c{next(self._cold)}"
        skew = world.profile.clock_skew()
        scheduler = world.scheduler
        runtime = Runtime(
            time=lambda: world.epoch() + skew,
            monotonic=lambda: scheduler.now + 1_000.0,
            sleep=scheduler.sleep,
            lock=lambda: SimLock(scheduler),
            executor=lambda workers, pool: SimExecutor(scheduler, workers, pool),
            new_id=world.new_id,
        )
        bridge = Bridge(
            self._settings,
            ssm_client=SimClient(world, "ssm", world.ssm, runtime.time),  # type: ignore[arg-type]
            dynamodb_client=SimClient(world, "dynamodb", world.dynamodb, runtime.time),  # type: ignore[arg-type]
            sqs_client=SimClient(world, "sqs", world.sqs, runtime.time),  # type: ignore[arg-type]
            session=sim_session(world),
            runtime=runtime,
        )
        return Container(name, bridge, skew)


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: str
    seconds: float
    invocation: str = ""
    skew: float = 0.0  # of the clock of the container that answered
    received: float = 0.0  # when the handler received it, by that container's clock

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class ApiGateway:
    """REST API Gateway in front of the API function: route matching, the proxy event, 29 s."""

    def __init__(self, world: World, function: Function) -> None:
        self._world = world
        self._function = function
        self._routes = [(path, path.strip("/").split("/")) for path in bridge_app.app.routes]
        self._count = itertools.count(1)

    def call(self, method: str, path: str, headers: dict[str, str], body: str | bytes, label: str) -> HttpAnswer:
        """Send one request from the calling actor; wait for the answer as API Gateway does."""
        world = self._world
        scheduler = world.scheduler
        started = scheduler.now
        scheduler.sleep(world.faults.latency("rokt") / 4)  # the internet between the caller and AWS
        route = self._match(path)
        if route is None:
            return HttpAnswer(404, {}, json.dumps({"error": "not_found"}), scheduler.now - started)
        resource, parameters = route
        text = body.decode("utf-8", "surrogatepass") if isinstance(body, bytes) else body
        event = {
            "resource": resource,
            "path": path,
            "httpMethod": method,
            "headers": dict(headers),
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": None,
            "multiValueQueryStringParameters": None,
            "pathParameters": parameters or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": resource,
                "httpMethod": method,
                "path": f"/api{path}",
                "stage": "api",
                "requestId": f"apigw-{next(self._count)}",
                "identity": {"sourceIp": "198.51.100.7"},
            },
            "body": text,
            "isBase64Encoded": False,
        }
        actor = self._function.invoke(event, label)
        if not world.join(actor, API_GATEWAY_SECONDS):
            answer = HttpAnswer(504, {}, json.dumps({"message": "Endpoint request timed out"}), scheduler.now - started)
        elif actor.killed or actor.error is not None or not isinstance(actor.result, dict):
            answer = HttpAnswer(502, {}, json.dumps({"message": "Internal server error"}), scheduler.now - started)
        else:
            result = actor.result
            answer = HttpAnswer(
                int(result["statusCode"]),
                {str(k): str(v) for k, v in (result.get("headers") or {}).items()},
                str(result.get("body") or ""),
                scheduler.now - started,
            )
        answer.invocation = actor.invocation.name if actor.invocation else ""
        answer.skew = self._function.skews.pop(actor, 0.0)
        answer.received = self._function.began.pop(actor, started + answer.skew)
        if actor.error is not None:
            world.harness_error(actor.error, f"the API function raised ({label})")
        return answer

    def _match(self, path: str) -> tuple[str, dict[str, str]] | None:
        """API Gateway's resource for ``path``: literal segments before parameters."""
        segments = [s for s in path.split("?", maxsplit=1)[0].split("/") if s != ""]
        best: tuple[int, str, dict[str, str]] | None = None
        for resource, parts in self._routes:
            if len(parts) != len(segments) or (parts == [""] and segments):
                continue
            parameters: dict[str, str] = {}
            literal = 0
            for part, segment in zip(parts, segments, strict=True):
                if part.startswith("{") and part.endswith("}"):
                    parameters[part[1:-1]] = segment
                elif part == segment:
                    literal += 1
                else:
                    break
            else:
                if best is None or literal > best[0]:
                    best = (literal, resource, parameters)
        return (best[1], best[2]) if best is not None else None


class EventSource:
    """Lambda's event source mapping for one queue (ReportBatchItemFailures on)."""

    def __init__(
        self,
        world: World,
        queue: Queue,
        function: Function,
        *,
        batch_size: int,
        window: float,
        max_concurrency: int,
    ) -> None:
        self._world = world
        self._queue = queue
        self._function = function
        self._batch_size = batch_size
        self._window = window
        self._max = max_concurrency
        self.running = 0
        self.waiters = Waiters()
        self.batches = 0

    def poll(self) -> None:
        """The poller's actor: runs until the world stops it."""
        world = self._world
        scheduler = world.scheduler
        sqs = world.sqs
        while True:
            visible = sqs.visible(self._queue)
            if not visible or self.running >= self._max:
                upcoming = sqs.next_visible_at(self._queue)
                timeout = None if upcoming is None or visible else max(upcoming - scheduler.now, 0.0)
                scheduler.park(self.waiters, timeout)
                continue
            if self._window and len(visible) < self._batch_size:
                scheduler.sleep(self._window)
                if self.running >= self._max:
                    continue
            messages = sqs.receive(self._queue, self._batch_size)
            if not messages:
                continue
            self.batches += 1
            self.running += 1
            receipts = [(m, m.receipt) for m in messages]
            event = {"Records": [self._record(m) for m in messages]}
            world.trace.add("sqs", f"{self._queue.name}: batch of {len(messages)} to {self._function.name}")
            actor = self._function.invoke(event, f"{self._queue.name} batch")
            actor.on_done.append(functools.partial(self._finished, receipts=receipts))

    def _finished(self, actor: Actor, *, receipts: list[tuple[Message, str]]) -> None:
        world = self._world
        self.running -= 1
        if not actor.killed and actor.error is None and isinstance(actor.result, dict):
            failed = {str(item["itemIdentifier"]) for item in actor.result.get("batchItemFailures", [])}
            for message, receipt in receipts:
                if message.id not in failed:
                    world.sqs.delete(self._queue, message, receipt)
                    if world.profile.sqs_redelivers():
                        world.sqs.redeliver(self._queue, message, after=world.profile.redelivery_delay())
        elif actor.error is not None:
            world.trace.add("lambda", f"{actor.name} failed: {type(actor.error).__name__}: {actor.error}")
        world.scheduler.wake(self.waiters)

    def _record(self, message: Message) -> dict[str, Any]:
        attributes = {
            name: {
                "stringValue": value.get("StringValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value.get("DataType", "String"),
            }
            for name, value in message.attributes.items()
        }
        return {
            "messageId": message.id,
            "receiptHandle": message.receipt,
            "body": message.body,
            "attributes": {
                "ApproximateReceiveCount": str(message.receive_count),
                "SentTimestamp": str(int(message.sent_at * 1000)),
                "SenderId": "SIMULATED",
                "ApproximateFirstReceiveTimestamp": str(int((message.first_received or message.sent_at) * 1000)),
            },
            "messageAttributes": attributes,
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": self._queue.arn,
            "awsRegion": REGION,
        }
