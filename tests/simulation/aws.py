"""AWS as the simulated bridge sees it: every call an IO boundary that the seed may slow, fail or
answer too late; DynamoDB is moto's, in-process (its conditional writes as DynamoDB does them); SSM
and SQS are small models of their documented behaviour (SQS: visibility, receive counts, the redrive
policy, retention, messages handed over in any order, at-least-once)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

if TYPE_CHECKING:
    from tests.simulation.world import World

# The production AWS clients (chalicelib.wiring.AWS_CLIENT_CONFIG): 2 attempts, 1 s connect, 2 s read.
ATTEMPTS = 2
CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 2.0
ACCOUNT = "123456789012"
REGION = "us-east-1"
RETENTION_SECONDS = 4 * 86_400
_PASS_THROUGH = frozenset({"meta", "exceptions", "can_paginate", "get_paginator", "get_waiter"})
_RETRYABLE_CODES = ("ThrottlingException", "InternalServerError", "ServiceUnavailable")


def client_error(code: str, operation: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message or code}}, operation)


class SimClient:
    """A boto3 client as one container's code sees it: each call pauses for the scheduler, takes its
    latency in virtual time and may meet the seed's faults; transient ones are retried once, as the
    production client configuration does."""

    def __init__(self, world: World, service: str, target: Any, clock: Any = None) -> None:
        self._world = world
        self._service = service
        self._target = target
        self._clock = clock or world.epoch

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name.startswith("_") or name in _PASS_THROUGH or not callable(attribute):
            return attribute
        return functools.partial(self._call, name, attribute)

    def _call(self, operation: str, method: Any, **params: Any) -> Any:
        world = self._world
        scheduler = world.scheduler
        scheduler.pause()
        world.observe_call(self._service, operation, params, self._clock())
        error: Exception | None = None
        for attempt in range(1, ATTEMPTS + 1):
            if attempt > 1:
                scheduler.sleep(world.faults.rng.uniform(0.0, 1.0))  # botocore's standard-mode backoff
            fault = world.faults.aws(self._service, operation)
            latency = world.faults.aws_latency(self._service, fault)
            if fault is not None and fault.kind == "down":
                scheduler.sleep(CONNECT_TIMEOUT)
                error = EndpointConnectionError(endpoint_url=f"https://{self._service}.{REGION}.amazonaws.com")
                continue
            if fault is not None and fault.kind == "error":
                scheduler.sleep(latency)
                error = client_error(_RETRYABLE_CODES[attempt % len(_RETRYABLE_CODES)], operation)
                continue
            lost = fault is not None and fault.kind == "lost"
            if lost or latency > READ_TIMEOUT:
                # The request reaches AWS (and is applied, unless it was refused) but the answer
                # comes after the read timeout: the client gives up on it and may send it again.
                scheduler.sleep(min(latency, READ_TIMEOUT) / 2)
                with contextlib.suppress(ClientError):
                    method(**params)
                scheduler.sleep(READ_TIMEOUT - min(latency, READ_TIMEOUT) / 2)
                world.trace.add("aws", f"{self._service}.{operation} answer lost (applied)", keys=_keys(params))
                error = ReadTimeoutError(endpoint_url=f"https://{self._service}.{REGION}.amazonaws.com")
                continue
            scheduler.sleep(latency / 2)
            try:
                result = method(**params)  # a ClientError (a condition that failed) is not retried
            except ClientError as exc:
                world.trace.add("aws", f"{self._service}.{operation} {_brief(params)}: {exc.response['Error']['Code']}")
                raise
            if self._service == "dynamodb" and operation != "get_item":
                world.trace.add("aws", f"{self._service}.{operation} {_brief(params)}")
            scheduler.sleep(latency / 2)
            return result
        assert error is not None
        world.trace.add("aws", f"{self._service}.{operation} failed: {type(error).__name__}", keys=_keys(params))
        raise error


def _brief(params: dict[str, Any]) -> str:
    found = _keys(params)
    key = found[0] if found else "?"
    return key.split("#")[0][-14:] + "#" + key.split("#")[-1][:10]


def _keys(params: dict[str, Any]) -> tuple[str, ...]:
    key = params.get("Key") or params.get("Item") or {}
    found = key.get("id", {}).get("S") if isinstance(key, dict) else None
    return (str(found),) if found else ()


# --- SSM --------------------------------------------------------------------------------------------
class SsmModel:
    """SecureStrings by name: get_parameter and put_parameter as the bridge and Powertools call them."""

    def __init__(self) -> None:
        self.parameters: dict[str, tuple[str, int]] = {}

    def get_parameter(self, Name: str, WithDecryption: bool = False, **_: Any) -> dict[str, Any]:
        if Name not in self.parameters:
            raise client_error("ParameterNotFound", "GetParameter")
        value, version = self.parameters[Name]
        return {"Parameter": {"Name": Name, "Type": "SecureString", "Value": value, "Version": version}}

    def put_parameter(self, Name: str, Value: str, Overwrite: bool = False, **_: Any) -> dict[str, Any]:
        if Name in self.parameters and not Overwrite:
            raise client_error("ParameterAlreadyExists", "PutParameter")
        version = self.parameters.get(Name, ("", 0))[1] + 1
        self.parameters[Name] = (Value, version)
        return {"Version": version, "Tier": "Standard"}


# --- SQS --------------------------------------------------------------------------------------------
# What SQS accepts in a message or attribute: XML 1.0's characters (no lone surrogates, few controls).
_SQS_INVALID = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(eq=False)
class Message:
    id: str
    body: str
    attributes: dict[str, Any]
    sent_at: float
    receive_count: int = 0
    visible_at: float = 0.0
    receipt: str = ""
    first_received: float | None = None
    redriven_at: float | None = None  # when SQS's redrive moved it to the DLQ (virtual seconds)


@dataclass(eq=False)
class Queue:
    name: str
    visibility_timeout: int = 180
    dead_letters: Queue | None = None
    max_receives: int | None = None
    messages: list[Message] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.name}"

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.name}"


class SqsModel:
    """The bridge's SQS calls, and what Lambda's event source mapping does with a queue."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._queues: dict[str, Queue] = {}
        self._ids = itertools.count(1)
        self.lost: list[tuple[Queue, Message]] = []

    def create(self, name: str, *, dead_letters: Queue | None = None, max_receives: int | None = None) -> Queue:
        queue = Queue(name, dead_letters=dead_letters, max_receives=max_receives)
        self._queues[name] = queue
        return queue

    def queue(self, url_or_name: str) -> Queue:
        name = url_or_name.rstrip("/").rsplit("/", 1)[-1]
        if name not in self._queues:
            raise client_error("AWS.SimpleQueueService.NonExistentQueue", "GetQueueUrl")
        return self._queues[name]

    # --- the bridge's API ---------------------------------------------------------------------------
    def send_message(
        self,
        QueueUrl: str,
        MessageBody: str,
        MessageAttributes: dict[str, Any] | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        queue = self.queue(QueueUrl)
        texts = [MessageBody] + [
            str(v.get("StringValue", "")) for v in (MessageAttributes or {}).values() if isinstance(v, dict)
        ]
        if any(_SQS_INVALID.search(text) for text in texts):
            raise client_error("InvalidMessageContents", "SendMessage", "Invalid characters found")
        if len(MessageBody.encode("utf-8")) > 262_144:
            raise client_error("InvalidParameterValue", "SendMessage", "message too long")
        message = Message(f"m{next(self._ids):06d}", MessageBody, dict(MessageAttributes or {}), self._world.epoch())
        message.visible_at = self._world.scheduler.now
        queue.messages.append(message)
        self._world.message_sent(queue, message)
        self._world.queue_changed(queue)
        return {"MessageId": message.id, "MD5OfMessageBody": hashlib.md5(MessageBody.encode()).hexdigest()}

    def change_message_visibility(self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> dict[str, Any]:
        queue = self.queue(QueueUrl)
        if not 0 <= VisibilityTimeout <= 43_200:
            raise client_error("InvalidParameterValue", "ChangeMessageVisibility")
        for message in queue.messages:
            if message.receipt == ReceiptHandle:
                message.visible_at = self._world.scheduler.now + VisibilityTimeout
                self._world.queue_changed(queue)
                return {}
        raise client_error("ReceiptHandleIsInvalid", "ChangeMessageVisibility")

    def get_queue_url(self, QueueName: str, QueueOwnerAWSAccountId: str | None = None) -> dict[str, Any]:
        return {"QueueUrl": self.queue(QueueName).url}

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        queue = self.queue(QueueUrl)
        attributes = {"QueueArn": queue.arn, "VisibilityTimeout": str(queue.visibility_timeout)}
        if queue.dead_letters is not None and queue.max_receives is not None:
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": queue.dead_letters.arn, "maxReceiveCount": queue.max_receives}
            )
        return {"Attributes": {k: v for k, v in attributes.items() if k in AttributeNames or "All" in AttributeNames}}

    # --- Lambda's event source mapping ---------------------------------------------------------------
    def visible(self, queue: Queue) -> list[Message]:
        self._expire(queue)
        now = self._world.scheduler.now
        return [m for m in queue.messages if m.visible_at <= now]

    def next_visible_at(self, queue: Queue) -> float | None:
        return min((m.visible_at for m in queue.messages), default=None)

    def receive(self, queue: Queue, most: int) -> list[Message]:
        """Up to ``most`` visible messages, in any order (the seed's); the redrive policy moves a
        message that was received ``max_receives`` times to the DLQ instead, as SQS does."""
        world = self._world
        candidates = self.visible(queue)
        world.faults.rng.shuffle(candidates)
        taken: list[Message] = []
        for message in candidates:
            if len(taken) >= most:
                break
            if queue.max_receives is not None and message.receive_count >= queue.max_receives:
                queue.messages.remove(message)
                message.redriven_at = world.scheduler.now
                if queue.dead_letters is not None:
                    queue.dead_letters.messages.append(message)
                world.trace.add("sqs", f"{queue.name}: redrive moved {message.id} to the DLQ (no reason)")
                continue
            message.receive_count += 1
            message.first_received = message.first_received or world.epoch()
            message.visible_at = world.scheduler.now + queue.visibility_timeout
            message.receipt = f"{message.id}:{message.receive_count}:{next(self._ids)}"
            taken.append(message)
        return taken

    def delete(self, queue: Queue, message: Message, receipt: str) -> None:
        if message.receipt == receipt and message in queue.messages:
            queue.messages.remove(message)
            self._world.queue_changed(queue)

    def redeliver(self, queue: Queue, message: Message, after: float) -> None:
        """At-least-once: a copy of a message already deleted (one of the copies SQS keeps on several
        servers) is handed over again later, with its own receive count."""
        ghost = Message(message.id, message.body, dict(message.attributes), message.sent_at)
        ghost.visible_at = self._world.scheduler.now + after
        queue.messages.append(ghost)
        self._world.trace.add("sqs", f"{queue.name}: SQS hands {message.id} over again")
        self._world.queue_changed(queue)

    def _expire(self, queue: Queue) -> None:
        oldest = self._world.epoch() - RETENTION_SECONDS
        for message in [m for m in queue.messages if m.sent_at < oldest]:
            queue.messages.remove(message)
            self.lost.append((queue, message))
            self._world.trace.add("sqs", f"{queue.name}: {message.id} expired after the retention period")
