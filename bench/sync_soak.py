"""`make soak-sync`: a bounded concurrency soak of the Rokt → Braze sync on loopback. Rokt-side
changes (subscribe, tag changes, subscriber moves, unsubscribes) emit webhooks; Rokt sends some twice
and gives up on some (``SYNC_SOAK_MISSED``: the bridge never hears of them), and at the end silently
forgets some subscriptions (404). Several sync consumer threads ("containers", each with its own
clients, sharing one SQS queue, DynamoDB and SSM) take batches of random size in random order while
faults come and go on Rokt's subscription reads, Braze (429, 5xx) and DynamoDB; SQS redelivers some
acknowledged messages; and the scheduled reconciliation runs alongside (a run a second, a period of
ten seconds), then for two more periods after the queue drained. After that: every Braze profile must
equal Rokt's state for each subscription — on its subscriber's profile and on no other — and each Rokt
eventId the bridge heard of must have left exactly one custom event (healing invents none). Prints the
figures; exits 1 on any wrong profile or missing/doubled event. Sizes: SYNC_SOAK_CONSUMERS (4),
SYNC_SOAK_SUBSCRIPTIONS (40), SYNC_SOAK_CHANGES (240), SYNC_SOAK_MISSED (0.1), SYNC_SOAK_SEED (7),
SYNC_SOAK_MAX_SECONDS (600).
"""

from __future__ import annotations

import json
import logging
import math
import os

# Before Powertools is imported (as tests/conftest.py does): a metrics namespace, and credentials
# that cannot reach a real AWS account.
os.environ.update(
    {
        "POWERTOOLS_SERVICE_NAME": "rokt-calendar-bridge",
        "POWERTOOLS_METRICS_NAMESPACE": "RoktCalendarBridge",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "soak-only",
        "AWS_SECRET_ACCESS_KEY": "soak-only",
    }
)
import random
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import requests
from aws_lambda_powertools.warnings import PowertoolsUserWarning
from botocore.exceptions import ClientError
from chalice.local import LambdaContext

from chalicelib.observability import logger, metrics
from chalicelib.settings import Settings
from chalicelib.sync import mapping
from chalicelib.sync.envelope import parse
from chalicelib.sync.queue import SYNC_BATCH_SIZE, SyncQueue, sync_queue_names
from chalicelib.wiring import AWS_CLIENT_CONFIG, Bridge
from localworld.aws_proxy import AwsFault, AwsProxy
from localworld.queue_worker import receive_batch, sqs_event
from stage.bootstrap import ensure_queues, ensure_table, put_secure

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_sqs.client import SQSClient


PREFIX = "/rokt-calendar-bridge/soak"
TABLE = "rokt-calendar-bridge-soak-idempotency"
TAGS = ["A", "B", "C", "D"]
USERS = 12
FAULT_EVERY_SECONDS = 0.3
LAMBDA_MS = 30_000
RETRY_SECONDS = 1  # a failed record comes back after this (SQS would wait the consumer's backoff)
RECONCILE_PERIOD_SECONDS = 10.0  # a soak-sized period (Settings built here, not from the environment)
RUN_SECONDS = 1.0


@dataclass
class SoakConfig:
    consumers: int = 4
    subscriptions: int = 40
    changes: int = 240
    duplicate_rate: float = 0.2  # Rokt sends a webhook twice
    redelivery_rate: float = 0.1  # SQS hands an acknowledged message over again
    missed_rate: float = 0.1  # Rokt gives up on a webhook: the bridge never hears of it
    seed: int = 7
    max_seconds: float = 600.0

    @classmethod
    def from_env(cls) -> SoakConfig:
        env = os.environ
        return cls(
            consumers=int(env.get("SYNC_SOAK_CONSUMERS", "4")),
            subscriptions=int(env.get("SYNC_SOAK_SUBSCRIPTIONS", "40")),
            changes=int(env.get("SYNC_SOAK_CHANGES", "240")),
            missed_rate=float(env.get("SYNC_SOAK_MISSED", "0.1")),
            seed=int(env.get("SYNC_SOAK_SEED", "7")),
            max_seconds=float(env.get("SYNC_SOAK_MAX_SECONDS", "600")),
        )


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, name: str, value: int = 1) -> None:
        with self.lock:
            self.counts[name] += value


def prepare_aws(aws_url: str, rokt_client: tuple[str, str], braze_key: str) -> boto3.session.Session:
    """The stage's table and secrets in the emulator (what `bootstrap` does for a stage)."""
    session = boto3.session.Session(region_name="us-east-1")
    ensure_table(session.client("dynamodb", endpoint_url=aws_url), TABLE, progress=lambda _: None)
    ssm = session.client("ssm", endpoint_url=aws_url)
    for name, value in {
        "/rokt/client-id": rokt_client[0],
        "/rokt/client-secret": rokt_client[1],
        "/braze/api-key": braze_key,
        "/webhook-secrets": "soak-secret-0123456789",
        "/rokt-webhook-tokens": "soak-token-0123456789",
    }.items():
        put_secure(ssm, PREFIX + name, value, progress=lambda _: None)
    return session


class Rig:
    """The world the soak runs in: AWS behind a fault proxy, the Rokt and Braze sandboxes."""

    def __init__(self, aws_url: str, sandbox_url: str, braze_url: str, session: boto3.session.Session) -> None:
        self.proxy = AwsProxy(aws_url)
        self.aws_url = aws_url
        self.sandbox_url = sandbox_url
        self.braze_url = braze_url
        self.session = session
        self.sqs: SQSClient = session.client("sqs", endpoint_url=aws_url)
        self.queue_url, _ = ensure_queues(self.sqs, *sync_queue_names("soak"), 1000, progress=lambda _: None)
        self.queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def sandbox(self, method: str, path: str, body: Any = None) -> Any:
        answer = requests.request(method, f"{self.sandbox_url}/_sandbox/{path}", json=body, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def ledger_item(self, subscription_id: str) -> Any:
        """The subscription's ledger item as the table holds it (for a failure's report)."""
        dynamodb = self.session.client("dynamodb", endpoint_url=self.aws_url)
        key = {"id": {"S": f"rokt-calendar-bridge.sync-ledger#{subscription_id}"}}
        return dynamodb.get_item(TableName=TABLE, Key=key).get("Item")

    def braze(self, method: str, path: str, body: Any = None) -> Any:
        answer = requests.request(method, f"{self.braze_url}/_sandbox/{path}", json=body, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def container(self) -> Bridge:
        """One Lambda container (a sync consumer, or the reconciliation): its own clients, token memory
        and HTTP session."""
        settings = Settings(
            stage="soak",
            rokt_api_url=self.sandbox_url,
            ssm_prefix=PREFIX,
            idempotency_table=TABLE,
            rokt_timeout_seconds=2.0,
            braze_rest_endpoint=self.braze_url,
            sync_queue_url=self.queue_url,
            reconcile_period_seconds=RECONCILE_PERIOD_SECONDS,
            reconcile_reads_per_second=50.0,
        )
        return Bridge(
            settings,
            ssm_client=self.session.client("ssm", endpoint_url=self.proxy.url, config=AWS_CLIENT_CONFIG),
            dynamodb_client=self.session.client("dynamodb", endpoint_url=self.proxy.url, config=AWS_CLIENT_CONFIG),
            sqs_client=self.session.client("sqs", endpoint_url=self.proxy.url, config=AWS_CLIENT_CONFIG),
            session=requests.Session(),
        )


class Forwarder:
    """What Rokt does with the webhooks it emits: POST each (the route puts it on the queue), some
    twice, some late (a retry that arrives after later webhooks)."""

    def __init__(self, rig: Rig, config: SoakConfig, rng: random.Random, tally: Tally) -> None:
        self._rig, self._config, self._rng, self._tally = rig, config, rng, tally
        self._queue = SyncQueue(rig.sqs, rig.queue_url)
        self._sent = 0
        self._late: list[dict[str, Any]] = []
        self.heard: set[str] = set()  # the eventIds that reached the bridge
        self.forgotten: set[str] = set()  # subscriptions Rokt no longer knows

    def forward(self) -> None:
        envelopes = self._rig.sandbox("GET", "webhooks/sent")[self._sent :]
        self._sent += len(envelopes)
        for envelope in envelopes:
            if self._rng.random() < self._config.missed_rate:
                self._tally.add("webhooks_missed")  # Rokt retried for 30 minutes, then gave up
                continue
            self.heard.add(str(envelope["eventId"]))
            copies = 2 if self._rng.random() < self._config.duplicate_rate else 1
            for _ in range(copies):
                if self._rng.random() < 0.2:
                    self._late.append(envelope)
                else:
                    self._send(envelope)
            self._tally.add("duplicates_sent", copies - 1)
        for envelope in [e for e in self._late if self._rng.random() < 0.3]:
            self._late.remove(envelope)
            self._send(envelope)

    def flush(self) -> None:
        for envelope in self._late:
            self._send(envelope)
        self._late.clear()

    def _send(self, envelope: dict[str, Any]) -> None:
        self._queue.send(parse(envelope), envelope)
        self._tally.add("webhooks_sent")


def produce(rig: Rig, config: SoakConfig, rng: random.Random, tally: Tally, rokt: Forwarder) -> list[str]:
    """Rokt-side changes: subscriptions, then tag changes, moves and unsubscribes, each webhook forwarded
    (or missed); the subscriptions still active."""
    active: list[str] = []
    for index in range(config.subscriptions):
        tags = rng.sample(TAGS, rng.randint(0, 2))
        body = {"accountCode": "soak", "calendarCode": f"cal{index % 5}", "subscriberId": f"soak{index % USERS}"}
        active.append(str(rig.sandbox("POST", "subscribe", {**body, "tags": tags})["subscriptionId"]))
        rokt.forward()
    for _ in range(config.changes):
        if not active:
            break
        subscription = rng.choice(active)
        draw = rng.random()
        if draw < 0.12:
            rig.sandbox("POST", "unsubscribe", {"subscriptionId": subscription})
            active.remove(subscription)
        elif draw < 0.22:
            who = f"soak{rng.randrange(USERS)}"
            rig.sandbox("POST", "subscriptions/update", {"subscriptionId": subscription, "subscriberId": who})
        else:
            tags = rng.sample(TAGS, rng.randint(0, 3))
            rig.sandbox("POST", "subscriptions/update", {"subscriptionId": subscription, "tags": tags})
        rokt.forward()
    rokt.flush()
    return active


def forget_some(rig: Rig, active: list[str], rng: random.Random, rokt: Forwarder) -> None:
    """Rokt forgets a tenth of the subscriptions still active, silently (404 from now on, no webhook):
    only the reconciliation can see it."""
    for subscription in rng.sample(active, max(1, len(active) // 10)) if active else []:
        rig.sandbox("POST", "subscriptions/forget", {"subscriptionId": subscription})
        rokt.forgotten.add(subscription)


FAULTS: dict[str, Callable[[Rig, random.Random], None]] = {
    "rokt_read_503": lambda rig, rng: rig.sandbox(
        "POST", "faults", {"target": "subscriptions", "status": 503, "count": rng.randint(1, 4)}
    ),
    "rokt_read_slow": lambda rig, rng: rig.sandbox(
        "POST", "faults", {"target": "subscriptions", "delay": 0.34, "count": rng.randint(4, 12)}
    ),
    "braze_429": lambda rig, rng: rig.braze("POST", "faults", {"status": 429, "count": 1}),
    "braze_503": lambda rig, rng: rig.braze("POST", "faults", {"status": 503, "count": 1}),
    # one failed call each (the bridge's clients make 2 attempts)
    "dynamodb_update_500": lambda rig, rng: rig.proxy.fail(
        AwsFault("dynamodb", "UpdateItem", count=2, status=500, code="InternalServerError")
    ),
    "dynamodb_put_500": lambda rig, rng: rig.proxy.fail(
        AwsFault("dynamodb", "PutItem", count=2, status=500, code="InternalServerError")
    ),
}


def arm_faults(rig: Rig, rng: random.Random, stop: threading.Event, tally: Tally, until: float) -> None:
    while not stop.wait(FAULT_EVERY_SECONDS) and time.monotonic() < until:
        name = rng.choice(sorted(FAULTS))
        FAULTS[name](rig, rng)
        tally.add(f"fault_{name}")
        tally.add("faults_armed")


def consume(rig: Rig, bridge: Bridge, rng: random.Random, done: threading.Event, tally: Tally, until: float) -> None:
    """A consumer: random batch sizes, each batch shuffled; failures visible again at once (the
    consumer's own delays would only stretch the soak); some acknowledged messages redelivered."""
    consumer = bridge.sync_consumer()
    idle = 0
    while time.monotonic() < until:
        messages = receive_batch(rig.sqs, rig.queue_url, rng.randint(1, SYNC_BATCH_SIZE), wait_seconds=0)
        if not messages:
            idle += 1
            if done.is_set() and idle > 3:
                return
            time.sleep(0.05)  # an empty queue: poll again shortly, as Lambda's poller does
            continue
        idle = 0
        rng.shuffle(messages)
        context = LambdaContext("sync_subscribers", 512, max_runtime_ms=LAMBDA_MS)
        answer = consumer.handle(sqs_event(messages, rig.queue_arn), context)
        metrics.clear_metrics()  # nobody reads them here
        failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
        tally.add("invocations")
        tally.add("records_failed", len(failed))
        for message in messages:
            handle = message["ReceiptHandle"]
            try:
                if message["MessageId"] in failed or rng.random() < 0.1:
                    tally.add("redeliveries", 0 if message["MessageId"] in failed else 1)
                    # time is compressed, but a failed record still waits a second before it comes back:
                    # released at once, a record whose subscription another writer leases (real seconds)
                    # spent SQS's 1,000 receives in seconds under load and was dead-lettered
                    delay = RETRY_SECONDS if message["MessageId"] in failed else 0
                    rig.sqs.change_message_visibility(
                        QueueUrl=rig.queue_url, ReceiptHandle=handle, VisibilityTimeout=delay
                    )
                else:
                    rig.sqs.delete_message(QueueUrl=rig.queue_url, ReceiptHandle=handle)
            except ClientError:  # the consumer made it visible at once and another consumer has it now
                tally.add("stale_receipts")


def reconcile(rig: Rig, stop: threading.Event, tally: Tally, until: float) -> None:
    """EventBridge's schedule for the reconciliation, compressed: a run every ``RUN_SECONDS`` of real time
    with a period of ``RECONCILE_PERIOD_SECONDS`` (each run reads what is due by the next run, 15 minutes
    by the schedule: here, the whole pass), while the soak runs — then two more periods after ``stop``.
    Its clock is the consumers' (a container whose wall clock ran hours ahead would take leases the
    consumers still hold: AWS keeps Lambda's clocks in step)."""
    reconciler = rig.container().reconciler()
    ends = math.inf
    while time.monotonic() < min(until, ends):
        if stop.is_set() and ends == math.inf:
            ends = time.monotonic() + 2 * RECONCILE_PERIOD_SECONDS + RUN_SECONDS
        report = reconciler.run(LambdaContext("reconcile_subscriptions", 512, max_runtime_ms=300_000))
        metrics.clear_metrics()
        tally.add("reconcile_runs")
        tally.add("reconcile_reads", report.read)
        tally.add("reconcile_failed", report.failed)
        for kind, healed in report.healed.items():
            tally.add(f"healed_{kind}", healed)
        time.sleep(RUN_SECONDS)


def queue_empty(rig: Rig) -> bool:
    attributes = rig.sqs.get_queue_attributes(
        QueueUrl=rig.queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return all(value == "0" for value in attributes.values())


def verify(rig: Rig, rokt: Forwarder) -> dict[str, int]:
    """Every subscription against Rokt's state on every profile (its values on its subscriber's profile
    only, none anywhere once it ended or Rokt forgot it); custom events per eventId the bridge heard of."""
    webhooks = rig.sandbox("GET", "webhooks/sent")
    by_subscription: dict[str, list[Any]] = {}
    for envelope in webhooks:
        webhook = parse(envelope)
        if webhook.subscription_id is not None:
            by_subscription.setdefault(webhook.subscription_id, []).append(webhook)
    users = rig.braze("GET", "users")
    counts = Counter[str]()
    states = {str(state["subscriptionId"]): state for state in rig.sandbox("GET", "subscriptions")}
    for subscription_id in sorted(set(states) | rokt.forgotten):
        state = states.get(subscription_id)
        expected: dict[str, list[str]] = {}
        if state is not None:
            account = by_subscription[subscription_id][-1].account
            assert account is not None
            current = mapping.subscriber(subscription_id, state, account, "email")
            expected = {name: sorted(values) for name, values in current.values.items()} if current.active else {}
        tail = "/" + mapping.suffix(subscription_id)
        counts["profiles_checked"] += 1
        for user in users:
            held = {
                name: sorted(v for v in values if v == subscription_id or v.endswith(tail))
                for name, values in user["attributes"].items()
                if name.startswith("rokt:") and isinstance(values, list)
            }
            held = {name: values for name, values in held.items() if values}
            wanted_here = expected if state is not None and user.get("external_id") == state.get("subscriberId") else {}
            if held != wanted_here:
                counts["wrong_profiles"] += 1
                says = "forgotten" if state is None else f"active={state['isActive']} of {state.get('subscriberId')}"
                print(f"wrong profile {user.get('external_id')} for {subscription_id} (Rokt: {says})", flush=True)
                print(f"  holds {held}, ledger {rig.ledger_item(subscription_id)}", flush=True)
        heard = {w.event_id: w for w in by_subscription.get(subscription_id, []) if w.event_id in rokt.heard}
        wanted = Counter(
            mapping.CUSTOM_EVENTS[w.event_type] for w in heard.values() if w.event_type in mapping.CUSTOM_EVENTS
        )
        got = Counter(
            e["name"]
            for user in users
            for e in user["custom_events"]
            if e.get("properties", {}).get("subscription_id") == subscription_id
        )
        counts["events_expected"] += sum(wanted.values())
        counts["events_written"] += sum(got.values())
        counts["doubled_events"] += sum(max(got[n] - wanted[n], 0) for n in got)
        counts["missing_events"] += sum(max(wanted[n] - got[n], 0) for n in wanted)
    counts["rokt_webhooks"] = len(webhooks)
    dlq_url = rig.sqs.get_queue_url(QueueName=sync_queue_names("soak")[1])["QueueUrl"]
    for message in receive_batch(rig.sqs, dlq_url, 1000, wait_seconds=0):
        counts["dead_letters"] += 1
        attributes: dict[str, Any] = dict(message.get("MessageAttributes", {}))
        reason = attributes.get("deadLetterReason", {}).get("StringValue")
        print(f"dead letter: {json.loads(message['Body'])['webhook'].get('eventType')}: {reason}", flush=True)
    return dict(counts)


def run(rig: Rig, config: SoakConfig) -> dict[str, Any]:
    """Produce, consume and fault at once; drain; verify. Bounded by ``config.max_seconds``."""
    warnings.simplefilter("ignore", PowertoolsUserWarning)  # several "invocations" share one metrics set
    rng = random.Random(config.seed)
    tally = Tally()
    started = time.monotonic()
    until = started + config.max_seconds
    with rig.proxy:
        containers = [rig.container() for _ in range(config.consumers)]
        produced, stop_faults, drained = threading.Event(), threading.Event(), threading.Event()
        threads = [
            threading.Thread(target=consume, args=(rig, c, random.Random(rng.random()), produced, tally, until))
            for c in containers
        ]
        faults = threading.Thread(target=arm_faults, args=(rig, random.Random(rng.random()), stop_faults, tally, until))
        healing = threading.Thread(target=reconcile, args=(rig, drained, tally, until))
        for thread in [*threads, faults, healing]:
            thread.start()
        rokt = Forwarder(rig, config, rng, tally)
        active: list[str] = []
        try:
            active = produce(rig, config, rng, tally, rokt)
        finally:
            stop_faults.set()
            faults.join()
            rig.sandbox("DELETE", "faults")
            rig.braze("DELETE", "faults")
            rig.proxy.faults.clear()
            while not queue_empty(rig) and time.monotonic() < until:
                time.sleep(0.2)  # the consumers drain what is left
            produced.set()
            for thread in threads:
                thread.join(timeout=max(until - time.monotonic(), 1))
            forget_some(rig, active, rng, rokt)
            drained.set()  # the reconciliation runs two more periods
            healing.join(timeout=max(until - time.monotonic(), 1))
    result: dict[str, Any] = {"consumers": config.consumers, **dict(tally.counts), **verify(rig, rokt)}
    result["drained"] = queue_empty(rig)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def ok(result: dict[str, Any]) -> bool:
    return bool(result["drained"]) and not any(
        result.get(name, 0) for name in ("wrong_profiles", "doubled_events", "missing_events")
    )


def main() -> int:
    from moto.server import ThreadedMotoServer

    from localworld.braze_sandbox import DEFAULT_API_KEYS, BrazeSandbox
    from localworld.localstack import free_port
    from localworld.rokt_sandbox import DEFAULT_CLIENTS, RoktSandbox

    config = SoakConfig.from_env()
    for name in (logger.name, "werkzeug"):  # the figures, not every record's log line
        logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)
    print(
        f"sync soak: {config.consumers} consumers, {config.subscriptions} subscriptions, {config.changes} changes, "
        f"duplicates, redeliveries, {config.missed_rate:.0%} of webhooks missed, reconciliation, random faults "
        f"(seed {config.seed})",
        flush=True,
    )
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        with RoktSandbox() as rokt, BrazeSandbox() as braze:
            requests.post(f"{rokt.url}/_sandbox/config", json={"tokenTtl": 300}, timeout=5).raise_for_status()
            aws_url = f"http://127.0.0.1:{port}"
            session = prepare_aws(aws_url, next(iter(DEFAULT_CLIENTS.items())), DEFAULT_API_KEYS[0])
            result = run(Rig(aws_url, rokt.url, braze.url, session), config)
    finally:
        moto.stop()
    print(json.dumps(result, indent=2, sort_keys=True), flush=True)
    passed = ok(result)
    print(
        "sync soak: OK — every profile equals Rokt after a reconciliation period, one event per eventId heard"
        if passed
        else "sync soak: FAILED"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
