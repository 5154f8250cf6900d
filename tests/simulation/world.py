"""One simulated world for one seed: the bridge's three Lambda functions, wired by the production
``Bridge`` over simulated AWS, Rokt and Braze, and the people around it — Braze campaigns sending
webhooks (copies, retries), subscribers changing their Rokt subscriptions (Rokt's webhooks, its
retries and re-sends), hostile callers — all on one virtual clock.
"""

from __future__ import annotations

import functools
import itertools
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import app as bridge_app
from chalicelib.delivery.queue import BATCH_SIZE, MAX_CONCURRENCY, delivery_queue_names
from chalicelib.settings import RECONCILE_EVERY_MINUTES, Settings
from chalicelib.sync.queue import SYNC_BATCH_SIZE, SYNC_BATCH_WINDOW_SECONDS, sync_queue_names
from localworld.queue_worker import scheduled_event
from localworld.rokt_sandbox import DEFAULT_CLIENTS
from tests.simulation.aws import SqsModel, SsmModel
from tests.simulation.braze import (
    BRAZE_HOST,
    BRAZE_KEY,
    MAX_RETRIES,
    RETRIED,
    Attempt,
    BrazeModel,
    Copy,
    Intent,
    braze_wait,
)
from tests.simulation.faults import Faults
from tests.simulation.lambdas import ApiGateway, EventSource, Function, HttpAnswer
from tests.simulation.rokt import RETRY_EVERY_SECONDS, RETRY_FOR_SECONDS, ROKT_HOST, Outbound, RoktModel
from tests.simulation.scheduler import Actor, Scheduler, Stuck, Waiters

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.simulation.aws import Queue
    from tests.simulation.scenario import BrazeIntent, RoktChange, Scenario

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z
STAGE = "sim"
PREFIX = "/rokt-calendar-bridge/sim"
TABLE = "rokt-calendar-bridge-sim-idempotency"
WEBHOOK_SECRET = "sim-webhook-secret-0123456789"
ROKT_WEBHOOK_TOKEN = "sim-rokt-webhook-token-0123456789"
DRAIN_CAP_SECONDS = 80 * 3600.0
# Reconciliation in the simulated world: a shorter period (the least the settings allow), so that a seed
# runs one whole period after the last webhook Rokt gave up on.
RECONCILE_PERIOD_SECONDS = 3600.0
RECONCILE_EVERY_SECONDS = RECONCILE_EVERY_MINUTES * 60.0
LEASE_BOUND_SECONDS = 30.0 + 10.0 + 1.0  # Lambda's timeout, the lease's stated margin, clock skew


RECONCILE_TIMEOUT_SECONDS = 300.0  # .chalice/config.json's lambda_functions
_SCHEDULED_EVENT = scheduled_event("sim-schedule")


@dataclass
class TraceEntry:
    at: float
    actor: str
    kind: str
    text: str
    keys: tuple[Any, ...] = ()

    def line(self) -> str:
        return f"{self.at:10.3f}s  {self.actor[:34]:34} {self.kind:7} {self.text}"


class Trace:
    def __init__(self, world: World) -> None:
        self._world = world
        self.entries: list[TraceEntry] = []
        self.subscription_of: dict[str, str] = {}  # Rokt webhook eventId -> subscription id

    def add(self, kind: str, text: str, keys: Any = ()) -> None:
        scheduler = self._world.scheduler
        actor = getattr(scheduler._local, "actor", None)
        self.entries.append(TraceEntry(scheduler.now, actor.name if actor else "-", kind, text, flat_keys(keys)))

    def bridge_line(self, line: str) -> None:
        """The bridge's own summary of a webhook or a queued message, from its log line."""
        try:
            record = json.loads(line)
        except ValueError:
            return
        message = str(record.get("message"))
        account, event_id = record.get("accountCode"), record.get("eventId")
        if message in _SUMMARIES:
            detail = " ".join(
                f"{k}={record[k]}"
                for k in ("route", "outcome", "status", "error", "reason", "spillReason")
                if k in record
            )
            keys = (f"{account}/{event_id}" if account else event_id,) if event_id else ()
            self.add("bridge", f"{message}: {detail}", keys)
        elif record.get("level") in ("WARNING", "ERROR"):
            self.add("bridge", f"{record.get('level')} {message}", (f"{account}/{event_id}",) if event_id else ())


_SUMMARIES = ("webhook handled", "queued webhook handled", "rokt webhook received", "rokt webhook synced")


def flat_keys(keys: Any) -> tuple[str, ...]:
    """Keys as strings: an event's (account, eventId) is ``account/eventId``; one key may stand alone."""
    if isinstance(keys, tuple) and len(keys) == 2 and keys[0] in ("brazetest", "acme-sports"):
        return (f"{keys[0]}/{keys[1]}",)
    items = keys if isinstance(keys, (tuple, list)) else (keys,)
    return tuple("/".join(map(str, k)) if isinstance(k, tuple) else str(k) for k in items)


@dataclass
class RoktDelivery:
    """One Rokt webhook as Rokt sent it to the bridge: every attempt's answer, given up or not."""

    envelope: Any
    raw: str
    hostile: str | None = None
    answers: list[HttpAnswer] = field(default_factory=list)
    gave_up: bool = False

    @property
    def accepted(self) -> bool:
        return any(200 <= a.status < 300 for a in self.answers)


class World:
    def __init__(self, scenario: Scenario, dynamodb: Any) -> None:
        seed = scenario.seed
        self.scenario = scenario
        self.scheduler = Scheduler(random.Random(f"{seed}:schedule"), on_time=self._on_time)
        self.faults = Faults(list(scenario.faults), random.Random(f"{seed}:faults"), self.scheduler)
        self.random = random.Random(f"{seed}:world")
        self.profile = Profile(self, scenario)
        self.trace = Trace(self)
        self._ids = itertools.count(1)
        self.time_listeners: list[Callable[[float], None]] = []
        self.harness_errors: list[str] = []
        self.dynamodb = dynamodb
        self.ssm = SsmModel()
        self.sqs = SqsModel(self)
        self.outbound = Outbound(self)
        self.rokt = RoktModel(self, self.outbound)
        self.braze = BrazeModel(self)
        self.intents: list[Intent] = []
        self.rokt_deliveries: list[RoktDelivery] = []
        self.answers: list[tuple[Intent | RoktDelivery, HttpAnswer]] = []
        self.emails: set[str] = set()
        self.synced_webhooks: set[str] = set()
        self.queued_by: set[str] = set()  # API invocations whose intent reached the delivery queue
        self.sender_of: dict[str, str] = {}  # a delivery message's body -> the invocation that queued it
        self.pending = 0
        self.running: set[Actor] = set()
        self.killed: set[str] = set()
        self.stuck: str | None = None
        self.observed: list[tuple[str, str, tuple[Any, ...]]] = []
        self._joins: dict[Actor, Waiters] = defaultdict(Waiters)
        self._sources: dict[str, EventSource] = {}
        self._setup()

    # --- what the bridge's code and the models call ----------------------------------------------
    def epoch(self) -> float:
        return EPOCH + self.scheduler.now

    def new_id(self) -> str:
        return f"{next(self._ids):032x}"

    def peer(self, url: str) -> Any:
        host = url.split("/")[2] if "//" in url else ""
        return {ROKT_HOST: self.rokt, BRAZE_HOST: self.braze}.get(host)

    def queue_changed(self, queue: Queue) -> None:
        source = self._sources.get(queue.name)
        if source is not None:
            self.scheduler.wake(source.waiters)

    def message_sent(self, queue: Queue, message: Any) -> None:
        """Note which Rokt webhooks reached the sync queue, and which API invocations put a Braze intent
        on the delivery queue (whatever the route then answered)."""
        invocation = self.scheduler.current.invocation
        if queue is self.delivery_queue and invocation is not None:
            self.queued_by.add(invocation.name)
            self.sender_of[message.body] = invocation.name
        if queue is self.sync_queue:
            try:
                self.synced_webhooks.add(str(json.loads(message.body)["webhook"]["eventId"]))
            except (ValueError, KeyError, TypeError):
                return

    def join(self, actor: Actor, timeout: float) -> bool:
        """Wait (in the calling actor) until ``actor`` is done or ``timeout`` passes."""
        scheduler = self.scheduler
        ends = scheduler.now + timeout
        while not actor.done and scheduler.now < ends:
            scheduler.park(self._joins[actor], ends - scheduler.now)
        return actor.done

    def invocation_done(self, actor: Actor) -> None:
        self.running.discard(actor)
        waiters = self._joins.pop(actor, None)
        if waiters is not None:
            self.scheduler.wake(waiters)

    def observe_call(self, service: str, operation: str, params: dict[str, Any], now: float) -> None:
        """Watch what the bridge asks of AWS: a lease must not be taken for longer than its bound."""
        if service != "dynamodb" or operation != "update_item":
            return
        until = (params.get("ExpressionAttributeValues") or {}).get(":until", {}).get("N")
        if until is not None and float(until) - now > LEASE_BOUND_SECONDS:
            key = params.get("Key", {}).get("id", {}).get("S", "?")
            self.observed.append(
                (
                    "lease-bound",
                    f"a lease taken for {float(until) - now:.1f} s (bound {LEASE_BOUND_SECONDS:g} s)",
                    (key,),
                )
            )

    def invocation_met_trouble(self, invocation: str, since: float) -> bool:
        """Did this invocation meet a fault at or after ``since``, or was it killed?"""
        return invocation in self.killed or any(at >= since and name == invocation for at, name, _ in self.faults.log)

    def waiting_entries_left(self) -> dict[str, list[str]]:
        """The delivery's waiting-intent entries still in the table (read past the simulated faults)."""
        found: dict[str, list[str]] = {}
        for item in self.dynamodb.scan(TableName=TABLE).get("Items", []):
            key = item["id"]["S"]
            if ".pending#" in key:
                found[key] = [name for name in item if name.startswith("i_")]
        return {k: v for k, v in found.items() if v}

    def harness_error(self, error: BaseException, what: str) -> None:
        self.harness_errors.append(f"{what}: {type(error).__name__}: {error}")

    def rokt_webhook(self, envelope: dict[str, Any]) -> None:
        """Rokt emitted a webhook: it goes to every registered endpoint (the bridge's), with retries."""
        delivery = RoktDelivery(envelope, json.dumps(envelope))
        keys = _delivery_keys(delivery)
        if len(keys) == 2:
            self.trace.subscription_of[keys[0]] = keys[1]
        self._deliver_to_bridge(delivery)

    # --- running --------------------------------------------------------------------------------
    def run(self) -> bool:
        """Play the scenario; True if everything drained before the cap."""
        for name, source in self._sources.items():
            self.scheduler.spawn(f"poller:{name}", source.poll)
        for intent in self.scenario.intents:
            self._send_intent(intent)
        for change in self.scenario.changes:
            self._workload(f"rokt:{change.kind}", functools.partial(self._rokt_change, change), at=change.at)
        self._workload("eventbridge:reconcile", self._reconcile_schedule, at=RECONCILE_EVERY_SECONDS)
        try:
            self.scheduler.run(DRAIN_CAP_SECONDS, done=self._drained)
        except Stuck as exc:
            self.stuck = str(exc)
        drained = self._drained()
        self.scheduler.close()
        return drained

    def _reconcile_schedule(self) -> None:
        """EventBridge's schedule: the reconciliation every 15 minutes, until one whole period has passed
        since Rokt could last have given up on a webhook (its last change, plus its 30 minutes of retries)
        and since its own dependencies last failed (Rokt's reads, DynamoDB)."""
        last_change = max((c.at for c in self.scenario.changes), default=0.0)
        # a period after Rokt could last have given up on a webhook, and after the reconciliation could
        # last have been kept from working (Rokt's token endpoint or subscription reads, or DynamoDB, failing
        # or slow): the promise is "within a period of the bridge's dependencies being back"
        reads_back = max(
            (f.end for f in self.scenario.faults if f.target in ("rokt.token", "rokt.subscriptions", "dynamodb")),
            default=0.0,
        )
        ends = max(last_change + RETRY_FOR_SECONDS, reads_back) + RECONCILE_PERIOD_SECONDS + 2 * RECONCILE_EVERY_SECONDS
        reconcile = self.functions[3]
        while self.scheduler.now < ends:
            actor = reconcile.invoke(_SCHEDULED_EVENT, "scheduled reconciliation")
            self.join(actor, RECONCILE_TIMEOUT_SECONDS + 1)
            self.scheduler.sleep(RECONCILE_EVERY_SECONDS)

    def _drained(self) -> bool:
        if self.pending or any(s.running for s in self._sources.values()):
            return False
        return all(not self.sqs.queue(name).messages for name in self._sources)

    def _on_time(self, now: float) -> None:
        for listener in self.time_listeners:
            listener(EPOCH + now)

    def _workload(self, name: str, run: Callable[[], None], at: float | None = None) -> None:
        self.pending += 1

        def done(actor: Actor) -> None:
            self.pending -= 1
            if actor.error is not None:
                self.harness_error(actor.error, name)

        self.scheduler.spawn(name, run, at=at, on_done=done)

    # --- set-up -------------------------------------------------------------------------------------
    def _setup(self) -> None:
        scenario = self.scenario
        for name, value in {
            "rokt/client-id": next(iter(DEFAULT_CLIENTS)),
            "rokt/client-secret": next(iter(DEFAULT_CLIENTS.values())),
            "webhook-secrets": WEBHOOK_SECRET,
            "braze/api-key": BRAZE_KEY,
            "rokt-webhook-tokens": ROKT_WEBHOOK_TOKEN,
        }.items():
            self.ssm.put_parameter(Name=f"{PREFIX}/{name}", Value=value, Type="SecureString")
        deliveries, deliveries_dlq = delivery_queue_names(STAGE)
        sync, sync_dlq = sync_queue_names(STAGE)
        limit = scenario.redrive_limit
        delivery_queue = self.sqs.create(deliveries, dead_letters=self.sqs.create(deliveries_dlq), max_receives=limit)
        sync_queue = self.sqs.create(sync, dead_letters=self.sqs.create(sync_dlq), max_receives=limit)
        settings = Settings(
            stage=STAGE,
            rokt_api_url=f"https://{ROKT_HOST}",
            ssm_prefix=PREFIX,
            idempotency_table=TABLE,
            delivery_mode="queued" if scenario.mode == "queued" else "direct",
            delivery_queue_url=None if scenario.mode == "direct" else delivery_queue.url,
            braze_rest_endpoint=f"https://{BRAZE_HOST}",
            sync_queue_url=sync_queue.url,
            request_budget_seconds=scenario.budget[0],
            rokt_timeout_seconds=scenario.budget[1],
            reconcile_period_seconds=RECONCILE_PERIOD_SECONDS,
        )
        self.settings = settings
        name = f"rokt-calendar-bridge-{STAGE}"
        api = Function(self, name, bridge_app.app, settings)
        deliver = Function(self, f"{name}-deliver_queued", bridge_app.deliver_queued, replace(settings))
        sync_consumer = Function(self, f"{name}-sync_subscribers", bridge_app.sync_subscribers, settings)
        reconcile = Function(
            self,
            f"{name}-reconcile_subscriptions",
            bridge_app.reconcile_subscriptions,
            settings,
            timeout=RECONCILE_TIMEOUT_SECONDS,
        )
        self.functions = (api, deliver, sync_consumer, reconcile)
        self.api = ApiGateway(self, api)
        self.api_function = api
        self._sources[deliveries] = EventSource(
            self, delivery_queue, deliver, batch_size=BATCH_SIZE, window=0.0, max_concurrency=MAX_CONCURRENCY
        )
        self._sources[sync] = EventSource(
            self, sync_queue, sync_consumer, batch_size=SYNC_BATCH_SIZE, window=SYNC_BATCH_WINDOW_SECONDS,
            max_concurrency=4,
        )  # fmt: skip
        self.delivery_queue, self.sync_queue = delivery_queue, sync_queue
        self.secrets = {
            WEBHOOK_SECRET,
            ROKT_WEBHOOK_TOKEN,
            BRAZE_KEY,
            next(iter(DEFAULT_CLIENTS.values())),
        }

    # --- Braze's side ---------------------------------------------------------------------------
    def _send_intent(self, planned: BrazeIntent) -> None:
        intent = render(planned, self)
        self.intents.append(intent)
        for number in range(intent.copies):
            copy = Copy(intent, number)
            intent.sent.append(copy)
            at = intent.at + (self.random.uniform(0.0, 0.3) if number else 0.0)
            self._workload(f"braze:{intent.key[1]}:{intent.op}", functools.partial(self._braze_copy, copy), at=at)

    def _braze_copy(self, copy: Copy) -> None:
        intent = copy.intent
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {WEBHOOK_SECRET}",
            "User-Agent": "Braze Sender 1.0",
        }
        for retry in range(MAX_RETRIES + 1):
            started = self.scheduler.now
            answer = self.api.call("POST", intent.path, headers, intent.body, f"braze {intent.op}")
            copy.attempts.append(
                Attempt(started, answer.status, answer.seconds, answer.json(), answer.received, answer.invocation)
            )
            self.answers.append((intent, answer))
            self.trace.add(
                "braze",
                f"{intent.op} {intent.tag or intent.hostile} copy {copy.number}: {answer.status}",
                keys=intent.key,
            )
            if answer.status not in RETRIED:
                return
            if retry < MAX_RETRIES:
                self.scheduler.sleep(braze_wait(retry, answer.headers.get("Retry-After")))

    # --- Rokt's side ----------------------------------------------------------------------------
    def _rokt_change(self, change: RoktChange) -> None:
        rokt = self.rokt
        detail = " ".join(f"{k}={v}" for k, v in change.fields.items() if k in ("subscriberId", "email", "tags"))
        self.trace.add("rokt", f"{change.kind} {change.subscription} {detail}", keys=(change.subscription,))
        if change.kind == "subscribe":
            fields = {k: v for k, v in change.fields.items() if v is not None}
            for value in (fields.get("subscriberId"), fields.get("email")):
                if isinstance(value, str) and "@" in value:
                    self.emails.add(value)
            rokt.subscribe(change.subscription, self.profile.readable_after(), **fields)
        elif change.kind == "tags":
            rokt.change(change.subscription, tags=change.fields["tags"])
        elif change.kind == "move":
            who = change.fields["subscriberId"]
            if "@" in who:
                self.emails.add(who)
            rokt.change(change.subscription, subscriberId=who)
        elif change.kind == "unsubscribe":
            rokt.unsubscribe(change.subscription)
        else:
            raw, hostile = hostile_envelope(str(change.fields["why"]), self)
            self._deliver_to_bridge(RoktDelivery(None, raw, hostile))

    def _deliver_to_bridge(self, delivery: RoktDelivery) -> None:
        self.rokt_deliveries.append(delivery)
        delay = self.random.choice((0.0, 0.0, 0.5, 5.0, 60.0)) * self.random.random()
        self._workload("rokt:webhook", lambda: self._rokt_attempts(delivery), at=self.scheduler.now + delay)

    def _rokt_attempts(self, delivery: RoktDelivery) -> None:
        scheduler = self.scheduler
        first = scheduler.now
        event_id = delivery.envelope.get("eventId") if isinstance(delivery.envelope, dict) else "hostile"
        while True:
            if self.faults.http("rokt.webhooks") is not None:  # the bridge cannot be reached: Rokt retries
                delivery.answers.append(_refused_answer())
                self.trace.add("rokt", f"webhook {event_id}: connection refused", keys=_delivery_keys(delivery))
                if scheduler.now + RETRY_EVERY_SECONDS > first + RETRY_FOR_SECONDS:
                    delivery.gave_up = True
                    self.trace.add("rokt", f"webhook {event_id}: Rokt gives up", keys=_delivery_keys(delivery))
                    return
                scheduler.sleep(RETRY_EVERY_SECONDS)
                continue
            answer = self.api.call(
                "POST",
                f"/rokt/webhooks/{ROKT_WEBHOOK_TOKEN}",
                {"Content-Type": "application/json"},
                delivery.raw,
                "rokt webhook",
            )
            delivery.answers.append(answer)
            self.answers.append((delivery, answer))
            self.trace.add("rokt", f"webhook {event_id}: {answer.status}", keys=_delivery_keys(delivery))
            if 200 <= answer.status < 300 or delivery.hostile is not None:
                break
            if scheduler.now + RETRY_EVERY_SECONDS > first + RETRY_FOR_SECONDS:
                delivery.gave_up = True
                self.trace.add("rokt", f"webhook {event_id}: Rokt gives up", keys=_delivery_keys(delivery))
                return
            scheduler.sleep(RETRY_EVERY_SECONDS)
        if delivery.hostile is None and self.random.random() < self.scenario.rokt_redelivery_rate:
            scheduler.sleep(self.random.uniform(1.0, 900.0))  # a re-send from Rokt's dashboard, or a duplicate
            answer = self.api.call(
                "POST", f"/rokt/webhooks/{ROKT_WEBHOOK_TOKEN}", {"Content-Type": "application/json"}, delivery.raw,
                "rokt webhook again",
            )  # fmt: skip
            delivery.answers.append(answer)
            self.answers.append((delivery, answer))


class Profile:
    """The scenario's small in-run choices, drawn from the world's own stream."""

    def __init__(self, world: World, scenario: Scenario) -> None:
        self._world = world
        self._scenario = scenario

    def clock_skew(self) -> float:
        return self._world.random.uniform(-self._scenario.max_skew, self._scenario.max_skew)

    def rokt_processing_seconds(self) -> float:
        return self._world.random.choice(self._scenario.rokt_processing)

    def readable_after(self) -> float:
        return self._world.random.choice((0.0, 0.0, 1.0, 20.0))

    def sqs_redelivers(self) -> bool:
        rate = self._scenario.sqs_redelivery_rate
        return rate > 0 and self._world.random.random() < rate

    def redelivery_delay(self) -> float:
        return self._world.random.uniform(1.0, 300.0)


def _refused_answer() -> HttpAnswer:
    """What Rokt's dispatcher records when the bridge cannot be reached: no status."""
    return HttpAnswer(0, {}, "", 0.0)


def _delivery_keys(delivery: RoktDelivery) -> tuple[str, ...]:
    envelope = delivery.envelope if isinstance(delivery.envelope, dict) else {}
    details = envelope.get("eventDetails") or {}
    subscription = details.get("subscription") or {}
    found = subscription.get("calendarSubscriptionId") or details.get("calendarSubscriptionId")
    return tuple(str(k) for k in (envelope.get("eventId"), found) if k)


# --- what Braze renders -------------------------------------------------------------------------------
def render(planned: BrazeIntent, world: World) -> Intent:
    account, event_id, variant = planned.account, planned.event_id, planned.variant
    for part in (event_id,):
        if "@" in part:
            world.emails.add(part.split("_", 2)[-1])
    tag = f"{account}/{event_id}#v{variant}" if planned.op != "delete" else None
    event: dict[str, Any] = {
        "eventId": event_id,
        "title": f"Game {variant}",
        "description": f"Round {variant} of the season",
        "start": f"2027-03-{1 + variant % 27:02d}T15:00:00",
        "end": f"2027-03-{1 + variant % 27:02d}T17:00:00",
        "timezone": "America/New_York" if variant % 2 else "Eastern Standard Time",
        "notifyBefore": "15",
        "simTag": tag,
    }
    suffix = "" if planned.op == "create" else f"/{planned.op}"
    path = f"/v1/subscriptionevent/{account}{suffix}"
    body: Any = {"event": {"eventId": event_id}} if planned.op == "delete" else {"event": event}
    if planned.op == "create":
        body["subscriptionIds"] = list(planned.subscriptions) or ["06423672-b6ba-4536-aa36-70788a7a0a36"]
    text = json.dumps(body)
    hostile = planned.hostile
    if hostile == "deep_nesting":
        depth = world.random.choice((world.random.randint(400, 990), world.random.randint(900, 1000)))
        nested = '{"a": ' * depth + "1" + "}" * depth
        event_text = json.dumps(body["event"])[:-1] + f', "extra": {nested}}}'
        rest = {k: v for k, v in body.items() if k != "event"}
        text = '{"event": ' + event_text + "".join(f", {json.dumps(k)}: {json.dumps(v)}" for k, v in rest.items()) + "}"
    elif hostile == "lone_surrogate":
        text = text.replace(json.dumps(event_id), json.dumps(event_id + "\ud800"), 1)
    elif hostile == "email_account":
        address = f"{event_id.lower()}@brand.example.com"
        world.emails.add(address)
        path = f"/v1/subscriptionevent/{address}{suffix}"
    elif hostile == "email_field":
        address = "jane.doe+calendar@brand.example.com"
        world.emails.add(address)
        text = text.replace('"eventId"', f'"{address}": "x", "eventId"', 1)
    elif hostile == "huge_number":
        text = text.replace('"notifyBefore": "15"', '"notifyBefore": 1' + "0" * 5000, 1)
    elif hostile == "nan":
        text = text.replace('"notifyBefore": "15"', '"notifyBefore": NaN', 1)
    return Intent((account, event_id), planned.op, path, text, planned.at, tag, planned.copies, hostile)


def hostile_envelope(why: str, world: World) -> tuple[str, str]:
    """A body someone (not Rokt's dispatcher) posts to the Rokt webhook route, and why it is bad."""
    number = world.new_id()
    base = {"eventId": f"hostile-{number}", "eventType": "Subscribe", "eventDetails": {"accountCode": "brazetest"}}
    if why == "lone_surrogate_event_id":
        base["eventId"] = f"hostile-{number}\ud800"
    elif why == "surrogate_type":
        base["eventType"] = "Subscribe\udfff"
    elif why == "no_event_type":
        del base["eventType"]
    elif why == "deep_nesting":
        depth = world.random.randint(860, 1200)
        text = json.dumps(base)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
        return text, why
    elif why == "not_json":
        return "{not json", why
    return json.dumps(base), why
