"""Queued mode against moto's SQS: intake answers 202 at once, the consumer delivers exactly once,
retryable failures wait on the queue, poison ends in the DLQ and can be replayed."""

from __future__ import annotations

import json
import multiprocessing
import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from chalice.local import LambdaContext

import app as bridge_app
from bridgectl import dead_letters
from chalicelib.delivery.consumer import UNKNOWN_EVENT_GRACE_SECONDS
from chalicelib.delivery.queue import delivery_queue_names
from chalicelib.delivery.state import KEY_PREFIX, WAITING, WAITING_STALE_SECONDS, EventStates, Intent, Step, decide
from chalicelib.errors import FieldError, ValidationFailed
from chalicelib.observability import flush_metrics
from chalicelib.runtime import Runtime
from chalicelib.wiring import Bridge
from localworld.queue_worker import sqs_event
from stage.names import StageNames
from tests.conftest import TABLE, Aws, Sandbox, make_bridge, post, seed_body, serving
from tests.support.queues import QueuePair

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from chalice.test import Client

    from chalicelib.settings import Settings
    from tests.conftest import LogCapture

CREATE = "/v1/subscriptionevent/brazetest"
STAGE_NAMES = StageNames("test", "/unused", "unused", "http://127.0.0.1:1", False)
MAX_RECEIVES = 3


@pytest.fixture
def queues(aws: Aws) -> QueuePair:
    return QueuePair(aws.sqs(), *delivery_queue_names("test"), MAX_RECEIVES, "deliver_queued")


@pytest.fixture
def queued(settings: Settings, aws: Aws, queues: QueuePair) -> Iterator[Client]:
    with serving(make_bridge(settings, aws, delivery_mode="queued", delivery_queue_url=queues.url)) as client:
        yield client


def test_intake_is_one_sqs_send_and_the_consumer_delivers_each_event_once(
    queued, queues: QueuePair, sandbox: Sandbox, aws: Aws
):
    # Given Braze sending the same webhook three times (a retry, a duplicate)
    answers = [post(queued, CREATE, seed_body()) for _ in range(3)]

    # Then each is queued at once — no dedupe at intake, only the event's waiting list: three intents
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert answers[0].json_body == {"status": "queued", "eventId": "Event_0001_user42", "accountCode": "brazetest"}
    [state] = aws.dynamodb().scan(TableName=TABLE)["Items"]
    assert state["id"]["S"].startswith(KEY_PREFIX)
    assert len([name for name in state if name.startswith(WAITING)]) == 3
    messages = queues.receive()
    assert len(messages) == 3
    assert json.loads(messages[0]["Body"])["request"]["event"]["notifyBefore"] == 15
    assert messages[0]["MessageAttributes"]["eventId"]["StringValue"] == "Event_0001_user42"
    assert sandbox.requests() == []
    # and the consumer's delivery records make Rokt see the event once
    assert queues.consume(queued, messages) == {"batchItemFailures": []}
    assert [e["deliveries"] for e in sandbox.events()] == [1]


def test_invalid_input_is_refused_at_intake_and_nothing_queued(queued, queues: QueuePair):
    response = post(queued, CREATE, seed_body(start="tomorrow"))

    assert response.status_code == 400
    assert queues.receive() == []


def test_consumer_delivers_queued_webhooks(queued, queues: QueuePair, sandbox: Sandbox):
    post(queued, CREATE, seed_body("a_user1"))
    post(queued, CREATE, seed_body("b_user1"))

    answer = queues.consume(queued, queues.receive())

    assert answer == {"batchItemFailures": []}
    assert sandbox.count("events_created") == 2
    assert queues.receive() == []


def test_rokt_503_then_success_delivers_once(queued, queues: QueuePair, sandbox: Sandbox):
    post(queued, CREATE, seed_body())
    sandbox.fault(status=503, count=3)  # more than the consumer's in-process retries

    first = queues.receive()
    failed = queues.consume(queued, first)
    queues.release(first)
    second = queues.receive()
    queues.consume(queued, second)

    assert failed["batchItemFailures"] == [{"itemIdentifier": first[0]["MessageId"]}]
    assert second[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    [stored] = sandbox.events()
    assert stored["deliveries"] == 1
    assert queues.receive() == []


def test_rate_limited_message_waits_for_retry_after(queued, queues: QueuePair, sandbox: Sandbox):
    post(queued, CREATE, seed_body())
    sandbox.fault(status=429, retryAfter="120")
    delays: list[int] = []
    bridge = bridge_app.bridge()
    sqs = bridge.delivery_consumer()._records._sqs  # the consumer's own client: record what it asks SQS to do
    sqs.meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility",
        lambda params, **_: delays.append(params["VisibilityTimeout"]),
    )

    answer = queues.consume(queued, queues.receive())

    assert len(answer["batchItemFailures"]) == 1
    assert delays == [120]
    assert queues.receive() == []  # invisible while it waits


def test_a_long_rate_limit_backs_off_more_each_receive_not_in_retry_after_steps(
    patient, patient_queues: QueuePair, sandbox: Sandbox
):
    # Rokt answering 429 with Retry-After: 1 for hours would otherwise spend SQS's receive count (at
    # most 1000) in one-second steps and dead-letter the intent long before its 24 h horizon
    post(patient, CREATE, seed_body())
    sandbox.fault(status=429, retryAfter="1", count=100)
    delays: list[int] = []
    sqs = bridge_app.bridge().delivery_consumer()._records._sqs
    sqs.meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility",
        lambda params, **_: delays.append(params["VisibilityTimeout"]),
    )

    for _ in range(4):
        messages = patient_queues.receive()
        patient_queues.consume(patient, messages)
        patient_queues.release(messages)  # SQS hands it over again (the test does not wait for the delay)

    assert delays == [5, 10, 20, 40]
    assert patient_queues.dead_letters() == []


def test_an_unreadable_message_goes_to_the_dlq_at_once_and_the_batch_goes_on(
    queued, queues: QueuePair, sandbox: Sandbox
):
    post(queued, CREATE, seed_body("good_user1"))
    queues.sqs.send_message(QueueUrl=queues.url, MessageBody="not a delivery")

    answer = queues.consume(queued, queues.receive())

    assert answer == {"batchItemFailures": []}
    assert sandbox.count("events_created") == 1
    [dead] = queues.dead_letters()
    assert dead["Body"] == "not a delivery"
    assert dead["MessageAttributes"]["deadLetterReason"]["StringValue"].startswith("unreadable_message")


def failed(messages: list[Any], answer: dict[str, Any]) -> list[Any]:
    """The messages a consumer reported failed (the others it acknowledged: deleted)."""
    ids = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
    return [m for m in messages if m["MessageId"] in ids]


def test_poison_reaches_the_dlq_and_replay_delivers_it(queued, queues: QueuePair, sandbox: Sandbox):
    # Given a delivery Rokt keeps failing until the queue gives up on it
    post(queued, CREATE, seed_body())
    sandbox.fault(status=500, count=100)
    for _ in range(MAX_RECEIVES):
        messages = queues.receive()
        queues.release(failed(messages, queues.consume(queued, messages)))
    assert queues.receive() == []  # dead-lettered by the consumer, with the reason, on its last receive
    listed: list[str] = []

    # When an operator lists, filters, then replays the dead letters after Rokt recovers
    dry = dead_letters.replay_dlq(queues.sqs, STAGE_NAMES, dry_run=True, progress=listed.append)
    other = dead_letters.replay_dlq(queues.sqs, STAGE_NAMES, account_code="someone-else", progress=lambda _: None)
    replayed = dead_letters.replay_dlq(queues.sqs, STAGE_NAMES, event_id="Event_0001_user42", progress=lambda _: None)
    sandbox.clear_faults()
    queues.consume(queued, queues.receive())

    # Then exactly that message went back and was delivered once
    assert (dry, other, replayed) == (1, 0, 1)
    assert any("would replay brazetest/Event_0001_user42" in line for line in listed)
    [stored] = sandbox.events()
    assert stored["deliveries"] == 1
    assert queues.receive(url=queues.dlq_url) == []


def test_replay_refuses_a_delivery_older_than_the_delivery_records_unless_forced(
    queued, queues: QueuePair, sandbox: Sandbox
):
    # Given a delivery in the DLQ, received longer ago than delivery records are kept (a newer
    # intent for its event may have reached Rokt, and its record expired)
    post(queued, CREATE, seed_body())
    sandbox.fault(status=500, count=100)
    received = 0.0
    for _ in range(MAX_RECEIVES):
        messages = queues.receive()
        received = json.loads(messages[0]["Body"])["receivedAt"]
        queues.release(failed(messages, queues.consume(queued, messages)))
    assert queues.receive() == []  # dead-lettered on the last receive the redrive policy allows
    sandbox.clear_faults()
    later = lambda: received + STAGE_NAMES.idempotency_ttl_seconds + 60  # noqa: E731
    lines: list[str] = []

    # When an operator replays the dead letters
    replayed = dead_letters.replay_dlq(queues.sqs, STAGE_NAMES, progress=lines.append, clock=later)

    # Then it stays in the DLQ, and the operator is told why and how to override
    assert replayed == 0
    assert any("not replaying brazetest/Event_0001_user42" in line and "--force" in line for line in lines)
    assert "1 too old to replay without --force" in lines[-1]
    assert queues.receive() == []
    # and --force replays it
    forced = dead_letters.replay_dlq(queues.sqs, STAGE_NAMES, force=True, progress=lambda _: None, clock=later)
    queues.consume(queued, queues.receive())
    assert forced == 1
    assert [e["deliveries"] for e in sandbox.events()] == [1]


def test_queued_and_direct_share_delivery_records(settings: Settings, aws: Aws, queues: QueuePair, sandbox: Sandbox):
    with serving(make_bridge(settings, aws)) as client:
        post(client, CREATE, seed_body())  # delivered directly
    with serving(make_bridge(settings, aws, delivery_mode="queued", delivery_queue_url=queues.url)) as client:
        post(client, CREATE, seed_body())  # then queued again, e.g. after a mode switch
        queues.consume(client, queues.receive())

    assert sandbox.count("events_created") == 1


def test_definitive_refusal_in_the_consumer_is_dropped_not_retried(
    settings: Settings, aws: Aws, queues: QueuePair, sandbox: Sandbox, json_logs: LogCapture
):
    # Given a queued webhook that Rokt will refuse for good
    with serving(make_bridge(settings, aws, delivery_mode="queued", delivery_queue_url=queues.url)) as client:
        post(client, CREATE, seed_body(title="Summer sale"))
        sandbox.fault(status=400, body={"error": "validation_error"})

        # When the consumer meets it
        answer = queues.consume(client, queues.receive())

    # Then it leaves the queue (retrying cannot change Rokt's answer) and the log says why
    assert answer == {"batchItemFailures": []}
    assert sandbox.count("events_created") == 0
    [summary] = [r for r in json_logs.records() if r["message"] == "queued webhook handled"]
    assert (summary["outcome"], summary["error"]) == ("rejected", "rejected_by_rokt")


def test_records_the_invocation_has_no_time_for_go_back_at_once_unattempted(
    queued, queues: QueuePair, sandbox: Sandbox
):
    # Given ten queued webhooks and a Rokt that answers each only after the 1 s timeout
    for index in range(10):
        post(queued, CREATE, seed_body(f"slow_{index}_user"))
    sandbox.fault(delay=1.2, count=10)
    messages = queues.receive(10)

    # When the consumer gets an invocation with 4.5 s left (1 s of it kept in reserve)
    answer = queues.consume(queued, messages, remaining_ms=4500)

    # Then every record is reported back, but only those it had time for reached Rokt, and the rest
    # are visible again at once instead of after the visibility timeout
    assert len(answer["batchItemFailures"]) == 10
    attempted = sandbox.count("events_requests")
    assert 1 <= attempted <= 3
    assert len(queues.receive(10)) == 10 - attempted


def test_queued_intents_taken_out_of_order_leave_rokt_in_the_last_received(
    queued, queues: QueuePair, sandbox: Sandbox, json_logs: LogCapture
):
    # Given create, update A, update B queued in that order
    for body, path in ((seed_body(), CREATE), (seed_body(title="A"), f"{CREATE}/update"),
                       (seed_body(title="B"), f"{CREATE}/update")):  # fmt: skip
        assert post(queued, path, body).status_code == 202

    # When the consumer gets them as SQS may hand them out: create, then B, then A
    queues.drain_in_order(queued, handed_over("create:Event Title", "update:B", "update:A"))

    # Then B waited for A, older than it (logged as held back, not as a failure), and Rokt ends in B's state
    [stored] = sandbox.events()
    assert (stored["event"]["title"], stored["updates"]) == ("B", 2)
    outcomes = [r["outcome"] for r in json_logs.records() if r["message"] == "queued webhook handled"]
    assert outcomes == ["delivered", "held_back", "delivered", "delivered"]


DELETE_BODY = {"event": {"eventId": "Event_0001_user42"}}
INTENTS = {  # label → (route, body); labels are action:title
    "create:v1": (CREATE, seed_body(title="v1")),
    "update:v2": (f"{CREATE}/update", seed_body(title="v2")),
    "update:v3": (f"{CREATE}/update", seed_body(title="v3")),
    "delete:": (f"{CREATE}/delete", DELETE_BODY),
    "create:v4": (CREATE, seed_body(title="v4")),
}


@pytest.fixture
def patient_queues(aws: Aws) -> QueuePair:
    """The deployed queue's redrive backstop (an intent held back is received again, many times)."""
    return QueuePair(aws.sqs(), *delivery_queue_names("test"), 1000, "deliver_queued")


@pytest.fixture
def patient(settings: Settings, aws: Aws, patient_queues: QueuePair) -> Iterator[Client]:
    bridge = make_bridge(settings, aws, delivery_mode="queued", delivery_queue_url=patient_queues.url)
    with serving(bridge) as client:
        yield client


def label(message: dict[str, Any]) -> str:
    request = json.loads(message["Body"])["request"]
    return f"{request['action']}:{request['event'].get('title', '')}"


def handed_over(*labels: str) -> Callable[[list[Any]], list[Any]]:
    """SQS handing a batch over in this order of labels (anything else after them)."""
    rank = {name: index for index, name in enumerate(labels)}
    return lambda messages: sorted(messages, key=lambda m: rank.get(label(m), len(rank)))


def shuffled(seed: int) -> Callable[[list[Any]], list[Any]]:
    generator = random.Random(seed)
    return lambda messages: generator.sample(messages, len(messages))


def rokt_state(sandbox: Sandbox) -> str:
    """What a subscriber's calendar shows: nothing, or the event's title."""
    events = [e for e in sandbox.events() if not e["deleted"]]
    return "" if not events else events[0]["event"]["title"]


def test_queued_create_then_delete_handed_over_delete_first_leaves_no_event(
    patient, patient_queues: QueuePair, sandbox: Sandbox
):
    # Given a create then a delete queued for one event
    for name in ("create:v1", "delete:"):
        assert post(patient, *INTENTS[name]).status_code == 202

    # When SQS hands them over delete first (Rokt: 404, no such event yet)
    patient_queues.drain_in_order(patient, handed_over("delete:", "create:v1"))

    # Then Rokt ends in the state of the last intent received: no event
    assert rokt_state(sandbox) == ""
    assert sandbox.count("events_deleted") == 1


def test_queued_create_then_update_handed_over_update_first_leaves_the_update(
    patient, patient_queues: QueuePair, sandbox: Sandbox
):
    for name in ("create:v1", "update:v2"):
        assert post(patient, *INTENTS[name]).status_code == 202

    patient_queues.drain_in_order(patient, handed_over("update:v2", "create:v1"))

    assert rokt_state(sandbox) == "v2"


def test_queued_duplicate_received_last_is_not_overtaken_by_an_intent_between_the_copies(
    patient, patient_queues: QueuePair, sandbox: Sandbox
):
    # Given the event, then updates A, B and A again (a Braze retry) queued: the last received is A
    assert post(patient, CREATE, seed_body(title="v1")).status_code == 202
    for title in ("A", "B", "A"):
        assert post(patient, f"{CREATE}/update", seed_body(title=title)).status_code == 202

    # When SQS hands over the create, A (first copy), A (the retry), then B
    def order(messages: list[Any]) -> list[Any]:
        arrival = sorted(messages, key=lambda m: json.loads(m["Body"])["receivedAt"])
        by_arrival = {m["MessageId"]: index for index, m in enumerate(arrival)}
        wanted = {0: 0, 1: 1, 3: 2, 2: 3}  # arrival index → hand-over position: A(1), A(3), B(2)
        return sorted(messages, key=lambda m: wanted.get(by_arrival[m["MessageId"]], 9))

    patient_queues.drain_in_order(patient, order)

    # Then Rokt holds A
    assert rokt_state(sandbox) == "A"


@pytest.mark.parametrize("order", ["reversed", 1, 2])
@pytest.mark.parametrize(
    "sequence",
    [
        ("create:v1", "update:v2", "delete:"),
        ("create:v1", "update:v2", "update:v3", "delete:", "create:v4"),
        ("create:v1", "delete:", "create:v4", "update:v2"),
    ],
)
def test_queued_intents_in_any_order_leave_rokt_in_the_last_received(
    patient, patient_queues: QueuePair, sandbox: Sandbox, sequence: tuple[str, ...], order: str | int
):
    # Given intents for one event queued in this order
    for name in sequence:
        assert post(patient, *INTENTS[name]).status_code == 202

    # When SQS hands them over reversed, or shuffled
    patient_queues.drain_in_order(patient, (lambda m: m[::-1]) if order == "reversed" else shuffled(int(order)))

    # Then Rokt ends in the state of the last one
    last = sequence[-1]
    assert rokt_state(sandbox) == ("" if last == "delete:" else last.split(":")[1])


def intent(intent_id: str, received_at: float, event_id: str = "Event_1", account: str = "brazetest") -> Intent:
    return Intent(account, event_id, "fingerprint", received_at, intent_id)


def test_waiting_lists_order_by_arrival_per_account_and_event_forget_stale_entries_and_leaving_creates_nothing(
    aws: Aws,
):
    t0 = 1_700_000_000.0
    now = [t0]
    states = EventStates(aws.dynamodb(), TABLE, ttl_seconds=3600, clock=lambda: now[0])
    states.leave(intent("x", now[0], "never_queued"))  # an intent queued while DynamoDB was down
    assert aws.dynamodb().scan(TableName=TABLE)["Count"] == 0

    def step(mine: Intent) -> Step:
        state = states.read(mine.account_code, mine.event_id)
        return decide(state, mine, now[0], queued=True, queue_behind=False)

    states.wait(intent("b", now[0]))
    states.wait(intent("a", now[0]))  # same arrival: the intent id breaks the tie

    assert step(intent("c", now[0] + 1)) is Step.HOLD_BACK
    assert step(intent("b", now[0])) is Step.HOLD_BACK  # "a" is ahead of it
    assert step(intent("a", now[0])) is Step.DELIVER  # and never behind "b"
    assert step(intent("c", now[0] + 1, "Event_2")) is Step.DELIVER
    assert step(intent("c", now[0] + 1, account="other-account")) is Step.DELIVER  # one eventId, two accounts
    states.leave(intent("a", now[0]))
    assert step(intent("b", now[0])) is Step.DELIVER
    # an entry whose message has not been seen for longer than any retry's backoff belongs to a lost one
    now[0] += WAITING_STALE_SECONDS - 1
    states.seen(intent("b", t0))
    now[0] += 2
    assert step(intent("c", now[0])) is Step.HOLD_BACK  # "b" was seen again: still live
    now[0] += WAITING_STALE_SECONDS
    assert step(intent("c", now[0])) is Step.DELIVER


def consume_as_one_container(settings: Settings, aws: Aws, queues: QueuePair, seed: int) -> None:
    """One Lambda container of the consumer: small shuffled batches until the queue is empty (bounded)."""
    bridge = make_bridge(settings, aws, delivery_mode="queued", delivery_queue_url=queues.url)
    generator = random.Random(seed)
    for _ in range(60):
        got = queues.receive(2)
        if not got:
            if queues.receive_count() == 0:
                return
            continue
        messages = generator.sample(got, len(got))
        context = LambdaContext("deliver_queued", 512, max_runtime_ms=30_000)
        try:
            answer = bridge.delivery_consumer().handle(sqs_event(messages, queues.arn), context)
        finally:
            flush_metrics()
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] in failed:
                queues.release([message])
            else:
                queues.sqs.delete_message(QueueUrl=queues.url, ReceiptHandle=message["ReceiptHandle"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_consumers_at_once_leave_rokt_in_the_last_intent_received(
    settings: Settings, aws: Aws, patient_queues: QueuePair, sandbox: Sandbox, seed: int
):
    # Given intents for one event queued in this order
    sequence = ("create:v1", "update:v2", "update:v3", "delete:", "create:v4")
    with serving(make_bridge(settings, aws, delivery_mode="queued", delivery_queue_url=patient_queues.url)) as client:
        for name in sequence:
            assert post(client, *INTENTS[name]).status_code == 202

    # When two consumers (two containers: two processes) take small shuffled batches at the same time
    forked = multiprocessing.get_context("fork")
    containers = [
        forked.Process(target=consume_as_one_container, args=(settings, aws, patient_queues, seed * 10 + index))
        for index in range(2)
    ]
    for container in containers:
        container.start()
    for container in containers:
        container.join(timeout=90)
        if container.is_alive():
            container.terminate()
            container.join(timeout=5)

    # Then both finished cleanly, the queue is empty, and Rokt is in the state of the last intent
    assert [c.exitcode for c in containers] == [0, 0]
    assert patient_queues.receive_count() == 0
    assert rokt_state(sandbox) == "v4"


def test_a_404_for_a_delete_whose_create_was_queued_un_noted_is_retried_not_dropped(
    patient, patient_queues: QueuePair, sandbox: Sandbox, aws: Aws
):
    # Given a create then a delete queued while the notes of waiting intents were lost (DynamoDB was
    # down at intake, or a spill ran out of time): nothing tells the consumer the create is older
    for name in ("create:v1", "delete:"):
        assert post(patient, *INTENTS[name]).status_code == 202
    for item in aws.dynamodb().scan(TableName=TABLE)["Items"]:
        aws.dynamodb().delete_item(TableName=TABLE, Key={"id": item["id"]})

    # When SQS hands the delete over first (Rokt: 404, no such event yet)
    answers = patient_queues.drain_in_order(patient, handed_over("delete:", "create:v1"))

    # Then the delete was retried, not dropped, and came last: the event is in no calendar
    assert answers[0]["batchItemFailures"] != []
    assert rokt_state(sandbox) == ""
    assert sandbox.count("events_deleted") == 1


def queued_bridge_on(wall: list[float], settings: Settings, aws: Aws, queues: QueuePair) -> Bridge:
    """A queued-mode bridge whose wall clock reads ``wall[0]`` (moved by the test)."""
    return Bridge(
        replace(settings, delivery_mode="queued", delivery_queue_url=queues.url),
        ssm_client=aws.ssm(),
        dynamodb_client=aws.dynamodb(),
        sqs_client=aws.sqs(),
        runtime=Runtime(time=lambda: wall[0]),
    )


def test_a_404_for_an_update_of_an_event_rokt_never_knew_is_dropped_after_the_grace(
    settings: Settings, aws: Aws, patient_queues: QueuePair, sandbox: Sandbox, json_logs: LogCapture
):
    wall = [time.time()]
    bridge = queued_bridge_on(wall, settings, aws, patient_queues)
    with serving(bridge) as client:
        # Given an update for an event Rokt does not know, and nothing older queued for it
        assert post(client, *INTENTS["update:v2"]).status_code == 202

        # When the consumer meets it now, and again after the grace
        now = patient_queues.consume(client, first := patient_queues.receive())
        patient_queues.release(first)
        wall[0] += UNKNOWN_EVENT_GRACE_SECONDS + 1
        later = patient_queues.consume(client, patient_queues.receive())

    # Then it was retried at first, then dropped as Rokt's refusal
    assert (len(now["batchItemFailures"]), later) == (1, {"batchItemFailures": []})
    summaries = [r for r in json_logs.records() if r["message"] == "queued webhook handled"]
    assert [(s["outcome"], s["error"]) for s in summaries] == [
        ("retryable_failure", "event_not_known_yet"),
        ("rejected", "rejected_by_rokt"),
    ]
    assert patient_queues.receive_count() == 0


def queue_two_updates_holding_the_newer(client: Any, queues: QueuePair) -> list[Any]:
    """Two updates queued for one event; the older handed over, the newer back on the queue."""
    for name in ("update:v2", "update:v3"):
        assert post(client, *INTENTS[name]).status_code == 202
    messages = queues.receive()
    queues.release([m for m in messages if label(m) != "update:v2"])
    return [m for m in messages if label(m) == "update:v2"]


def test_an_update_retried_within_the_404_grace_does_not_hold_a_newer_intent_back(
    patient, patient_queues: QueuePair, sandbox: Sandbox, json_logs: LogCapture
):
    # Given two updates queued for an event Rokt does not know (yet)
    older = queue_two_updates_holding_the_newer(patient, patient_queues)

    # When the consumer meets the older one (Rokt: 404, retried within the grace), then the newer one
    patient_queues.consume(patient, older)
    patient_queues.release(older)
    patient_queues.consume(patient, [m for m in patient_queues.receive() if label(m) == "update:v3"])

    # Then the older one left the waiting list while it waits for its retry: the newer one reached Rokt
    # (404 as well) instead of being held back behind it
    summaries = [r for r in json_logs.records() if r["message"] == "queued webhook handled"]
    assert [(s["outcome"], s["error"]) for s in summaries] == [("retryable_failure", "event_not_known_yet")] * 2


def test_a_bug_while_delivering_a_queued_intent_dead_letters_it_with_the_reason_and_frees_its_event(
    patient, patient_queues: QueuePair, aws: Aws, monkeypatch: pytest.MonkeyPatch
):
    # Given a queued create, and a defect in the delivery itself (whatever it raises)
    assert post(patient, *INTENTS["create:v1"]).status_code == 202
    consumer = bridge_app.bridge().delivery_consumer()

    def defect(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(consumer._deliverer, "deliver", defect)

    # When the consumer meets it
    answer = patient_queues.consume(patient, patient_queues.receive())

    # Then it is dead-lettered at once with the reason — never looped — and off its event's waiting list
    assert answer == {"batchItemFailures": []}
    [dead] = patient_queues.dead_letters()
    assert dead["MessageAttributes"]["deadLetterReason"]["StringValue"] == "unexpected_error: RuntimeError"
    items = aws.dynamodb().scan(TableName=TABLE)["Items"]
    assert [name for item in items for name in item if name.startswith(WAITING)] == []


def test_a_definitive_failure_of_a_queued_intent_is_dead_lettered_with_its_reason_not_retried(
    patient, patient_queues: QueuePair, monkeypatch: pytest.MonkeyPatch
):
    assert post(patient, *INTENTS["create:v1"]).status_code == 202
    consumer = bridge_app.bridge().delivery_consumer()

    def refuses(*_: Any, **__: Any) -> Any:
        raise ValidationFailed("the stored request is not a valid webhook", [FieldError("event", "missing")])

    monkeypatch.setattr(consumer._deliverer, "deliver", refuses)

    assert patient_queues.consume(patient, patient_queues.receive()) == {"batchItemFailures": []}
    [dead] = patient_queues.dead_letters()
    assert dead["MessageAttributes"]["deadLetterReason"]["StringValue"].startswith("validation_failed: ")


def test_the_404_grace_is_not_spent_by_a_backlog_that_hands_an_update_over_late(
    settings: Settings, aws: Aws, patient_queues: QueuePair, sandbox: Sandbox, json_logs: LogCapture
):
    wall = [time.time() - 2 * UNKNOWN_EVENT_GRACE_SECONDS]  # it reached the bridge two graces ago
    bridge = queued_bridge_on(wall, settings, aws, patient_queues)
    with serving(bridge) as client:
        assert post(client, *INTENTS["update:v2"]).status_code == 202
        wall[0] = time.time()  # a backlog: SQS hands it over for the first time only now
        answer = patient_queues.consume(client, patient_queues.receive())

    # Rokt's 404 is retried: its create may still be behind it in the same backlog
    assert len(answer["batchItemFailures"]) == 1
    summaries = [r for r in json_logs.records() if r["message"] == "queued webhook handled"]
    assert [(s["outcome"], s["error"]) for s in summaries] == [("retryable_failure", "event_not_known_yet")]


def test_the_404_grace_counts_from_rokts_first_404_not_from_receives_an_outage_spent(
    settings: Settings, aws: Aws, patient_queues: QueuePair, sandbox: Sandbox, json_logs: LogCapture
):
    """Simulation seed 2246: intents spilled while DynamoDB was down for two hours; their first receives
    failed on the outage, so when Rokt first answered 404 for an update (its create still queued) the grace
    counted from the first receive had already run out, and the update was dropped."""
    wall = [time.time()]
    bridge = queued_bridge_on(wall, settings, aws, patient_queues)
    with serving(bridge) as client:
        # Given an update for an event Rokt does not know yet, first met while Rokt fails (503)
        assert post(client, *INTENTS["update:v2"]).status_code == 202
        sandbox.fault(status=503, count=100)
        patient_queues.consume(client, first := patient_queues.receive())
        patient_queues.release(first)
        sandbox.clear_faults()

        # When Rokt first answers 404 after longer than the grace, then again within the grace of that
        # first 404, then after it
        answers = []
        for step in (UNKNOWN_EVENT_GRACE_SECONDS + 1, UNKNOWN_EVENT_GRACE_SECONDS / 2, UNKNOWN_EVENT_GRACE_SECONDS):
            wall[0] += step
            answers.append(answer := patient_queues.consume(client, received := patient_queues.receive()))
            if answer["batchItemFailures"]:
                patient_queues.release(received)

    # Then the 404 was retried for a grace from Rokt's first 404, then dropped as Rokt's refusal
    assert [len(a["batchItemFailures"]) for a in answers] == [1, 1, 0]
    summaries = [r for r in json_logs.records() if r["message"] == "queued webhook handled"]
    assert [(s["outcome"], s["error"]) for s in summaries][1:] == [
        ("retryable_failure", "event_not_known_yet"),
        ("retryable_failure", "event_not_known_yet"),
        ("rejected", "rejected_by_rokt"),
    ]
    assert patient_queues.receive_count() == 0


def queue_un_noted_and_meet_the_update_s_404(client: Any, aws: Aws, queues: QueuePair) -> list[Any]:
    """A create then an update queued without waiting entries (DynamoDB down at intake); the update
    handed over first meets Rokt's 404 (its first 404 recorded) and is retried. Its messages."""
    for name in ("create:v1", "update:v2"):
        assert post(client, *INTENTS[name]).status_code == 202
    dynamodb = aws.dynamodb()
    for item in dynamodb.scan(TableName=TABLE)["Items"]:
        for name in [n for n in item if n.startswith(WAITING)]:
            dynamodb.update_item(
                TableName=TABLE,
                Key={"id": item["id"]},
                UpdateExpression="REMOVE #w",
                ExpressionAttributeNames={"#w": name},
            )
    messages = queues.receive()
    queues.release([m for m in messages if label(m) != "update:v2"])
    update = [m for m in messages if label(m) == "update:v2"]
    assert len(queues.consume(client, update)["batchItemFailures"]) == 1
    return update


def test_a_replayed_update_whose_create_is_replayed_with_it_gets_a_404_grace(
    settings: Settings,
    aws: Aws,
    queues: QueuePair,
    sandbox: Sandbox,
) -> None:
    """Review finding: the first-404 record outlived its dead-lettered message, so a replayed update met
    its old first 404, got no window, and was dropped before its replayed create came up."""
    wall = [time.time() - 2 * 3600]  # the first 404 is two hours before the replay
    bridge = queued_bridge_on(wall, settings, aws, queues)
    with serving(bridge) as client:
        # Given a create then an update queued un-noted (DynamoDB was down at intake), the update handed
        # over first: Rokt answers 404 (its first 404 is recorded), retried
        update = queue_un_noted_and_meet_the_update_s_404(client, aws, queues)
        queues.release(update)

        # Then Rokt fails (503) until the queue's last allowed receive: both dead-lettered with the reason
        sandbox.fault(status=503, count=1000)
        for _ in range(2):
            both = queues.receive()
            assert len(both) == 2
            queues.release(failed(both, queues.consume(client, both)))
        assert queues.receive() == []
        sandbox.clear_faults()
        wall[0] = time.time()

        # When the operator replays the DLQ (within the delivery records' TTL) and SQS hands the update first
        assert dead_letters.replay_dlq(queues.sqs, STAGE_NAMES, progress=lambda _: None, clock=lambda: wall[0]) == 2
        queues.drain_in_order(client, handed_over("update:v2", "create:v1"))

    # Then Rokt ends with the update (the last intent), as it would had the update never met a 404 before
    assert rokt_state(sandbox) == "v2"


class FirstFourOhFourUnrecorded:
    """moto's DynamoDB, except that the write recording an intent's first 404 fails."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_item(self, **params: Any) -> Any:
        if "if_not_exists(#unknown" in params.get("UpdateExpression", ""):
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "UpdateItem")
        return self._client.update_item(**params)


def test_a_404_whose_first_time_cannot_be_recorded_is_retried_and_leaves_the_waiting_list(
    settings: Settings, aws: Aws, patient_queues: QueuePair, sandbox: Sandbox, json_logs: LogCapture
):
    wall = [time.time()]
    bridge = Bridge(
        replace(settings, delivery_mode="queued", delivery_queue_url=patient_queues.url),
        ssm_client=aws.ssm(),
        dynamodb_client=FirstFourOhFourUnrecorded(aws.dynamodb()),  # type: ignore[arg-type]
        sqs_client=aws.sqs(),
        runtime=Runtime(time=lambda: wall[0]),
    )
    with serving(bridge) as client:
        # Given an update for an event Rokt does not know, met long after it arrived
        assert post(client, *INTENTS["update:v2"]).status_code == 202
        wall[0] += 2 * UNKNOWN_EVENT_GRACE_SECONDS

        # When Rokt answers 404 and the first 404 cannot be recorded (DynamoDB failing)
        answer = patient_queues.consume(client, patient_queues.receive())

    # Then it is retried (the horizon bounds it), not refused, and newer intents need not wait for it
    assert len(answer["batchItemFailures"]) == 1
    summaries = [r for r in json_logs.records() if r["message"] == "queued webhook handled"]
    assert [(s["outcome"], s["error"]) for s in summaries] == [("retryable_failure", "event_not_known_yet")]
    items = aws.dynamodb().scan(TableName=TABLE)["Items"]
    assert [name for item in items for name in item if name.startswith(WAITING)] == []


def test_an_intent_retried_for_longer_than_the_stale_bound_keeps_its_entry_live_and_holds_a_newer_one_back(
    settings: Settings, aws: Aws, patient_queues: QueuePair, sandbox: Sandbox, json_logs: LogCapture
):
    wall = [time.time()]
    with serving(queued_bridge_on(wall, settings, aws, patient_queues)) as client:
        # Given two updates queued for one event, a second apart, and Rokt failing (503) for an hour
        for name in ("update:v2", "update:v3"):
            assert post(client, *INTENTS[name]).status_code == 202
            wall[0] += 1
        messages = patient_queues.receive()
        patient_queues.release([m for m in messages if label(m) != "update:v2"])
        older = [m for m in messages if label(m) == "update:v2"]
        sandbox.fault(status=503, count=1000)

        # When the older one is retried every 20 min, past the 35-min stale bound of a silent entry
        for _ in range(3):
            assert len(patient_queues.consume(client, older)["batchItemFailures"]) == 1
            patient_queues.release(older)
            wall[0] += 20 * 60
            messages = patient_queues.receive()
            older = [m for m in messages if label(m) == "update:v2"]
            patient_queues.release([m for m in messages if label(m) != "update:v2"])
        patient_queues.release(older)
        sandbox.clear_faults()
        messages = patient_queues.receive()
        patient_queues.release([m for m in messages if label(m) != "update:v3"])
        patient_queues.consume(client, [m for m in messages if label(m) == "update:v3"])

    # Then each retry kept the older one's entry live: the newer one is still held back behind it
    summaries = [r for r in json_logs.records() if r["message"] == "queued webhook handled"]
    assert (summaries[-1]["outcome"], summaries[-1]["error"]) == ("held_back", "older_intent_pending")


def test_an_update_dead_lettered_after_the_batch_s_deadline_still_gets_a_404_window_when_replayed(
    settings: Settings, aws: Aws, queues: QueuePair, sandbox: Sandbox
) -> None:
    """Review finding: a message dead-lettered past the batch's deadline (given back unread on its last
    allowed receive) keeps its first-404 record, the bookkeeping being skipped then; its replay is a new
    message, whose window starts at its own first receive, so it is not dropped before its create."""
    wall = [time.time() - 2 * 3600]
    with serving(queued_bridge_on(wall, settings, aws, queues)) as client:
        # Given a create then an update queued un-noted (DynamoDB was down at intake), the update handed
        # over first: Rokt answers 404 (its first 404 is recorded), retried
        update = queue_un_noted_and_meet_the_update_s_404(client, aws, queues)
        queues.release(update)

        # batches that run out of time before these records, until the queue's last allowed receive
        for _ in range(2):
            both = queues.receive()
            assert len(both) == 2
            queues.release(failed(both, queues.consume(client, both, remaining_ms=1)))
        assert queues.receive() == []
        wall[0] = time.time()

        assert dead_letters.replay_dlq(queues.sqs, STAGE_NAMES, progress=lambda _: None, clock=lambda: wall[0]) == 2
        queues.drain_in_order(client, handed_over("update:v2", "create:v1"))

    assert rokt_state(sandbox) == "v2"


def test_an_update_rokt_refused_leaves_the_waiting_list_so_a_newer_one_goes_through(
    patient, patient_queues: QueuePair, sandbox: Sandbox, json_logs: LogCapture
):
    # Given two updates queued for one event, and Rokt refusing the first for good (400)
    older = queue_two_updates_holding_the_newer(patient, patient_queues)
    sandbox.fault(status=400, count=1)

    # When the consumer meets the refused one, then the newer one
    patient_queues.consume(patient, older)
    patient_queues.consume(patient, [m for m in patient_queues.receive() if label(m) == "update:v3"])

    # Then the refusal took the older one off the waiting list: the newer one reached Rokt (which does
    # not know the event: 404, retried) instead of waiting behind it until it went stale
    summaries = [r for r in json_logs.records() if r["message"] == "queued webhook handled"]
    assert [(s["outcome"], s["error"]) for s in summaries] == [
        ("rejected", "rejected_by_rokt"),
        ("retryable_failure", "event_not_known_yet"),
    ]


def test_a_queued_intent_the_consumer_cannot_process_is_dead_lettered_at_once_and_never_holds_its_event_back(
    patient, patient_queues: QueuePair, sandbox: Sandbox
):
    # Given a create queued before intake refused deep nesting (it breaks serialising Rokt's body), then
    # a newer update for the same event
    assert post(patient, *INTENTS["create:v1"]).status_code == 202
    [queued] = patient_queues.receive()
    message = json.loads(queued["Body"])
    message["request"]["event"]["extra"] = "DEEP"  # spliced in as text: json.dumps itself would recurse
    body = json.dumps(message).replace('"DEEP"', "[" * 950 + "]" * 950)
    patient_queues.sqs.delete_message(QueueUrl=patient_queues.url, ReceiptHandle=queued["ReceiptHandle"])
    patient_queues.sqs.send_message(
        QueueUrl=patient_queues.url, MessageBody=body, MessageAttributes=queued["MessageAttributes"]
    )
    assert post(patient, *INTENTS["update:v2"]).status_code == 202

    # When the consumer meets the poison first, in one batch with the update
    poison_first = lambda messages: sorted(messages, key=lambda m: -len(m["Body"]))  # noqa: E731
    patient_queues.consume(patient, poison_first(patient_queues.receive()))

    # Then it is dead-lettered with the reason on its first receive, off the event's waiting list, and
    # the update behind it is not held back: it reaches Rokt (404, no such event: retried for a while)
    [dead] = patient_queues.dead_letters()
    assert "RecursionError" in dead["MessageAttributes"]["deadLetterReason"]["StringValue"]
    assert [r["path"] for r in sandbox.requests() if "/v1/subscriptionevent/" in r["path"]] == [
        "/v1/subscriptionevent/brazetest/update"
    ]
