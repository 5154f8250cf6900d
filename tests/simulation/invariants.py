"""The promises, checked against one simulated history after the queues drained.

Each broken promise is a :class:`Violation` naming what broke and the keys (event, subscription,
eventId) its short history is filtered by. What the documentation says may happen is not a
violation but is counted (``counted``), so a documented exception is never silent.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chalicelib.secrets import MAX_BACKOFF_SECONDS as SSM_MAX_BACKOFF_SECONDS
from chalicelib.sync import mapping
from chalicelib.sync.envelope import Account
from tests.simulation.braze import REFUSED_MARK, SIMULATED_REFUSAL
from tests.simulation.lambdas import API_GATEWAY_SECONDS

if TYPE_CHECKING:
    from tests.simulation.braze import Intent
    from tests.simulation.world import RoktDelivery, World

# Bodies the bridge must refuse (4xx), never answer 5xx.
INVALID_INPUT = frozenset({"lone_surrogate", "email_account", "huge_number", "nan"})
# Bodies the bridge may take or refuse, but never answer 5xx.
NEVER_5XX = INVALID_INPUT | {"deep_nesting", "email_field"}
LONG_OUTAGE_SECONDS = 20 * 3600.0
SQS_LAST_RECEIVE_WINDOW_SECONDS = 900.0 + 180.0  # the longest backoff, then a visibility timeout
_ADDRESS = re.compile(r"[^\s@\"'<>(),;:\[\]{}]+@[^\s@\"'<>(),;:\[\]{}]+\.[A-Za-z]{2,}")
_MASK = "[email redacted]"
CUSTOM_EVENTS = mapping.CUSTOM_EVENTS
BRAZE_ARRAY_CAP = 25
MAYBE_STATUSES = (502, 504)  # a delivery whose outcome at Rokt is unknown (remembered as maybe applied)
ANSWER_SECONDS = 0.5  # after the budget: writing the answer, as API Gateway measures it


@dataclass
class Violation:
    rule: str
    text: str
    keys: tuple[Any, ...] = ()


@dataclass
class Verdict:
    violations: list[Violation] = field(default_factory=list)
    counted: Counter[str] = field(default_factory=Counter)

    def add(self, rule: str, text: str, *keys: Any) -> None:
        self.violations.append(Violation(rule, text, tuple(keys)))


def check(world: World, logs: list[str], drained: bool) -> Verdict:
    verdict = Verdict()
    if world.stuck:
        verdict.add("stuck", world.stuck)
    elif not drained:
        left = {q.name: len(q.messages) for q in (world.delivery_queue, world.sync_queue)}
        verdict.add("not-drained", f"the queues did not drain in {world.scheduler.now / 3600:.0f} h: {left}")
    for queue, message in world.sqs.lost:
        verdict.add("message-lost", f"{queue.name}: message {message.id} expired on the queue (retention)")
    _answers(world, verdict)
    _rokt_events(world, verdict)
    _dead_letters(world, verdict)
    _profiles(world, verdict)
    _custom_events(world, logs, verdict)
    _logs(world, logs, verdict)
    for rule, text, keys in world.observed:
        verdict.add(rule, text, *keys)
    _waiting_entries(world, verdict)
    return verdict


# --- answers ------------------------------------------------------------------------------------------
def _ssm_backing_off(world: World, answer: Any) -> bool:
    """After an SSM failure a container leaves SSM alone for a backoff (chalicelib/secrets.py, at most
    MAX_BACKOFF_SECONDS, counted from when the failed read gave up — one request's time at most after
    it met the fault): within it, a read with no last good value fails at once, no fault met. Such a 503
    is explained by an SSM fault its container met within that time before it answered."""
    if "(SSM)" not in answer.body:
        return False
    containers = world.api_function.container_of
    container = containers.get(answer.invocation)
    answered = answer.received - answer.skew + answer.seconds
    return any(
        description.startswith("ssm ")
        and containers.get(name) == container
        and answered - SSM_MAX_BACKOFF_SECONDS - API_GATEWAY_SECONDS <= at <= answered
        for at, name, description in world.faults.log
    )


def _answers(world: World, verdict: Verdict) -> None:
    budget = world.settings.request_budget_seconds
    for source, answer in world.answers:
        hostile = source.hostile
        keys = _source_keys(source)
        if answer.seconds >= API_GATEWAY_SECONDS or (answer.status == 504 and "timed out" in answer.body):
            verdict.add("answer-after-29s", f"answered {answer.status} after {answer.seconds:.2f} s", *keys)
        elif answer.seconds > budget + ANSWER_SECONDS:
            verdict.add(
                "answer-over-budget",
                f"answered {answer.status} after {answer.seconds:.2f} s, over the {budget:g} s request budget",
                *keys,
            )
        if answer.status < 500:
            continue
        met = world.faults.met.get(answer.invocation, 0)
        if answer.status == 500 or (answer.status == 502 and "Internal server error" in answer.body):
            verdict.add("internal-error", f"answered {answer.status} {answer.body[:160]}", *keys)
        elif hostile is not None and not met and not _ssm_backing_off(world, answer):
            verdict.add("5xx-for-client-input", f"{hostile}: answered {answer.status} {answer.body[:160]}", *keys)
        elif not met and answer.status != 504 and not _ssm_backing_off(world, answer):
            verdict.add("5xx-without-a-fault", f"answered {answer.status} {answer.body[:160]}", *keys)


def _source_keys(source: Any) -> tuple[Any, ...]:
    if hasattr(source, "key"):
        return (source.key, source.key[1])
    envelope = source.envelope if isinstance(source.envelope, dict) else {}
    return tuple(k for k in (envelope.get("eventId"), _subscription_of(envelope)) if k)


# --- Braze → Rokt: the last intent wins, each intent reaches Rokt once --------------------------------
def _rokt_events(world: World, verdict: Verdict) -> None:
    """Rokt ends in the state the intents the bridge received make, applied in the order it received
    them — by the clocks of the containers that received them (intents closer than the clocks' skew
    may be ordered either way: counted)."""
    dead = _dead_lettered_intents(world)
    by_key: dict[tuple[str, str], list[Intent]] = defaultdict(list)
    for intent in world.intents:
        by_key[intent.key].append(intent)
    for key, intents in by_key.items():
        ambiguous: list[tuple[Any, Intent]] = []
        parked_senders = _dead_lettered_senders(world)
        accepted = _received(world, verdict, key, intents, dead, ambiguous)
        if not accepted and not ambiguous:
            continue
        by_bridge = sorted(accepted, key=lambda pair: (pair[0].perceived, pair[0].at))
        expected = _ideal(intent for _, intent in by_bridge)
        if _ideal(intent for _, intent in sorted(accepted, key=lambda pair: pair[0].at)) != expected:
            verdict.counted["intents closer than the containers' clock skew, ordered by the bridge's clocks"] += 1
        first_sent = sorted({id(i): i for _, i in accepted}.values(), key=lambda i: i.at)
        if _ideal(first_sent) != expected:
            verdict.counted["a retry of an older intent arrived after a newer one (the last received wins)"] += 1
        final = world.rokt.final_event(key)
        actual = final.get("simTag") if final is not None else None
        last = by_bridge[-1][1] if by_bridge else None
        tried = sorted(
            (
                (a, i)
                for i in intents
                for c in i.sent
                for a in c.attempts
                if a.invocation not in parked_senders and (200 <= a.status < 300 or a.status in MAYBE_STATUSES)
            ),
            key=lambda pair: (pair[0].perceived, pair[0].at),
        )
        if tried and tried[-1][0].perceived > (by_bridge[-1][0].perceived if by_bridge else 0.0):
            # the last intent the bridge received was answered with an error whose outcome is unknown
            # (502/504; Braze retries it): the bridge still ordered by it, so Rokt may hold what it asks
            # for (a 429 or 503 changed nothing and orders nothing)
            last = tried[-1][1]
        excuse = _excuse(actual, expected, accepted, ambiguous, last, intents, parked_senders, by_bridge)
        if excuse is None and actual != expected and world.scenario.mode == "direct":
            excuse = _given_up_after_maybe(intents, by_bridge[-1][0].perceived if by_bridge else 0.0)
        if excuse is not None:
            verdict.counted[excuse] += 1
        elif actual != expected:
            story = ", ".join(f"{i.op} {i.tag or ''}@{a.perceived:.2f}s" for a, i in _runs(by_bridge))
            verdict.add("rokt-state", f"Rokt holds {actual!r}; the intents received make {expected!r} ({story})", key)
    _applied_once(world, verdict, by_key)


def _excuse(
    actual: str | None,
    expected: str | None,
    accepted: list[tuple[Any, Intent]],
    ambiguous: list[tuple[Any, Intent]],
    last: Intent | None,
    intents: list[Intent],
    parked: set[str],
    by_bridge: list[tuple[Any, Intent]],
) -> str | None:
    """The documented exception a differing final state falls under, if any."""
    if actual == expected:
        return None
    with_parked = sorted(accepted + ambiguous, key=lambda pair: (pair[0].perceived, pair[0].at))
    if ambiguous and actual == _ideal(intent for _, intent in with_parked):
        # a dead-lettered copy's delivery reached Rokt (its answer lost) before it was parked
        return "a dead-lettered intent that reached Rokt before it was parked"
    if last and last.op != "delete" and actual is not None and actual == last.tag:
        # the last intent received is a copy of the change Rokt has, which the bridge answered as a
        # duplicate before an older delete came up for delivery (superseded): Rokt holds what the
        # last intent asks for, where applying both in order would have left nothing
        return "a delete superseded by a later copy of the change Rokt has (Rokt keeps it)"
    if _parked_after(intents, parked, by_bridge[-1][0].perceived if by_bridge else 0):
        # a newer intent is in the DLQ with its reason: the bridge ordered by it (an older one it
        # superseded was answered as such), so the event's state waits for the DLQ's replay
        return "an event whose newer intent was dead-lettered: its state waits for the DLQ replay"
    return None


def _given_up_after_maybe(intents: list[Intent], after: float) -> str | None:
    """Direct mode (no queue): a newer intent whose delivery's outcome was unknown (answered 502/504, so
    remembered as maybe applied, superseding the older ones) and that never got a 2xx — Braze gave up on
    it after its retries. Direct mode alone cannot promise more under faults that outlast Braze's
    retries (docs/reliability.md)."""
    for intent in intents:
        attempts = [a for c in intent.sent for a in c.attempts]
        if any(200 <= a.status < 300 for a in attempts):
            continue
        if any(a.status in MAYBE_STATUSES and a.perceived > after for a in attempts):
            return "direct mode: a newer intent Braze gave up on had superseded an older one (its outcome unknown)"
    return None


def _received(
    world: World,
    verdict: Verdict,
    key: tuple[str, str],
    intents: list[Intent],
    dead: set[Any],
    ambiguous: list[tuple[Any, Intent]],
) -> list[tuple[Any, Intent]]:
    """The attempts the bridge took responsibility for (2xx), and those answered with an error that
    still reached Rokt or the delivery queue — their invocation applied the change or queued it, the
    answer was lost on the way back (Rokt's, or SQS's: a send whose answer is lost is on the queue).
    ``ambiguous`` gets the dead-lettered copies of intents Rokt applied: each may be the one that did."""
    reached = {a.invocation for a in world.rokt.applied if a.invocation and a.key == key} | world.queued_by
    parked = _dead_lettered_senders(world)
    landed = _landed(world)
    accepted = []
    for intent in intents:
        if (key, intent.tag, intent.op) in dead:
            continue
        for attempt in (a for copy in intent.sent for a in copy.attempts):
            if attempt.invocation in parked:  # its message is in the DLQ (with its reason): not received
                verdict.counted["a queued copy dead-lettered (replayable), left out of Rokt's expected state"] += 1
                if (key, None if intent.op == "delete" else intent.tag, intent.op) in landed:
                    ambiguous.append((attempt, intent))  # it may have reached Rokt before it was parked
            elif 200 <= attempt.status < 300:
                accepted.append((attempt, intent))
            elif attempt.invocation in reached:
                accepted.append((attempt, intent))
                verdict.counted["an attempt answered with an error reached Rokt (its answer was lost)"] += 1
    return accepted


def _parked_after(intents: list[Intent], parked: set[str], after: float) -> bool:
    """A copy of one of these intents, received after ``after``, is in the DLQ."""
    return any(a.invocation in parked and a.perceived > after for i in intents for c in i.sent for a in c.attempts)


def _runs(received: list[tuple[Any, Intent]]) -> list[tuple[Any, Intent]]:
    """The first copy of each run of identical intents (same route and content), in order."""
    runs: list[tuple[Any, Intent]] = []
    for attempt, intent in received:
        if not runs or (runs[-1][1].op, runs[-1][1].body) != (intent.op, intent.body):
            runs.append((attempt, intent))
    return runs


def _ideal(intents: Any) -> str | None:
    """Rokt's state after these intents, applied in this order, one each."""
    state: str | None = None
    for intent in intents:
        if intent.op == "create" or (intent.op == "update" and state is not None):
            state = intent.tag
        elif intent.op == "delete":
            state = None
    return state


def _applied_once(world: World, verdict: Verdict, by_key: dict[tuple[str, str], list[Intent]]) -> None:
    """No intent reaches Rokt twice. What the bridge counts as one intent: a run of copies with the same
    route and content, received one after another (answered 2xx, or answered with an error after their
    invocation reached Rokt or the queue; in the order they arrived); a copy
    after a different intent starts a new run (the contract: "an identical re-send after a different
    intent is not a duplicate"), a refused one does not (refusals are not remembered); one answered 502
    or 504 does (its outcome unknown, the bridge remembers it as maybe applied: a copy after it is sent
    again), and so does one whose invocation met DynamoDB trouble (its flight may be left to expire)."""
    applications: Counter[tuple[tuple[str, str], str | None]] = Counter()
    risky: Counter[tuple[tuple[str, str], str | None]] = Counter()
    for applied in world.rokt.applied:
        tag = applied.tag if applied.operation != "delete" else "delete"
        applications[applied.key, tag] += 1
        if applied.answer_at_risk or world.invocation_met_trouble(applied.invocation, applied.at):
            risky[applied.key, tag] += 1
    # an invocation that may have left its flight behind (a state write failed, hung, lost its answer or
    # came too late to land it; or Lambda killed it): the flight expires as maybe applied, and a later
    # copy of the intent before it is rightly sent again
    flight_left = world.killed | {name for _, name, fault in world.faults.log if fault.startswith("dynamodb ")}
    for (key, tag), count in applications.items():
        reached = {a.invocation for a in world.rokt.applied if a.invocation and a.key == key} | world.queued_by
        received = sorted(
            (attempt.perceived, i.op, str(i.body), i.tag if i.op != "delete" else "delete")
            for i in by_key.get(key, [])
            for copy in i.sent
            for attempt in copy.attempts
            if 200 <= attempt.status < 300
            or attempt.invocation in reached
            or attempt.status in MAYBE_STATUSES
            or attempt.invocation in flight_left
        )
        runs = [item[1:] for index, item in enumerate(received) if index == 0 or received[index - 1][1:] != item[1:]]
        intents = sum(1 for *_, run_tag in runs if run_tag == tag)
        allowed = intents + risky[key, tag]
        if count > allowed:
            verdict.add(
                "applied-twice",
                f"{tag}: Rokt applied it {count} times; the bridge received {intents} run(s) of copies of "
                f"intents with this content ({risky[key, tag]} application(s) whose answer or completion "
                "may have been lost)",
                key,
            )
        elif count > allowed - risky[key, tag]:
            verdict.counted["an intent applied again after its answer or completion was lost (at least once)"] += 1


def _dead_lettered_senders(world: World) -> set[str]:
    """The API invocations whose queued message is in the delivery DLQ."""
    dlq = world.delivery_queue.dead_letters
    return {world.sender_of[m.body] for m in (dlq.messages if dlq else []) if m.body in world.sender_of}


def _dead_lettered_intents(world: World) -> set[tuple[tuple[str, str], str | None, str]]:
    """Intents in the delivery DLQ whose sender is not known and none applied at Rokt (another copy of a
    dead-lettered intent may have reached Rokt: then it was received like any other)."""
    landed = _landed(world)
    return {found for found in _in_dead_letters(world) if found not in landed}


def _landed(world: World) -> set[tuple[tuple[str, str], str | None, str]]:
    return {(a.key, None if a.operation == "delete" else a.tag, a.operation) for a in world.rokt.applied}


def _in_dead_letters(world: World) -> set[tuple[tuple[str, str], str | None, str]]:
    found = set()
    dlq = world.delivery_queue.dead_letters
    for message in dlq.messages if dlq else []:
        if message.body in world.sender_of:
            continue  # its sender's attempts are left out one by one (_dead_lettered_senders)
        try:
            request = json.loads(message.body)["request"]
            event = request["event"]
            found.add(((request["accountCode"], event["eventId"]), event.get("simTag"), request["action"]))
        except (ValueError, KeyError, TypeError):
            continue
    return found


# --- dead letters ----------------------------------------------------------------------------------------
def _dead_letters(world: World, verdict: Verdict) -> None:
    long_outage = any(f.end - f.start >= LONG_OUTAGE_SECONDS for f in world.scenario.faults)
    small_redrive = world.scenario.redrive_limit < 1000
    subscriptions = {s.id: s for s in world.rokt.state.subscriptions.all()}
    for queue in (world.delivery_queue, world.sync_queue):
        dlq = queue.dead_letters
        for message in dlq.messages if dlq is not None else []:
            reason = str(message.attributes.get("deadLetterReason", {}).get("StringValue") or "")
            keys = _message_keys(message.body)
            if not reason and _sqs_refusing(world, message.redriven_at):
                # the bridge's own dead-letter send (with the reason) failed: SQS's redrive moved it
                verdict.counted["a dead letter without its reason: SQS refused the bridge's send (redriven)"] += 1
                continue
            if not reason:
                verdict.add("dead-letter-without-reason", f"{dlq.name if dlq else '?'}: {message.id}", *keys)
                continue
            if reason.startswith("gave up after") and (long_outage or small_redrive):
                verdict.counted["dead-lettered after the retry horizon or the redrive limit"] += 1
                continue
            if queue is world.sync_queue and _sync_dead_letter_is_due(reason, message.body, subscriptions):
                verdict.counted["a Rokt webhook the sync can never write, dead-lettered with its reason"] += 1
                continue
            verdict.add("dead-letter-without-cause", f"{dlq.name if dlq else '?'}: {reason[:200]}", *keys)


def _sqs_refusing(world: World, redriven_at: float | None) -> bool:
    """SQS failed the bridge's calls (an error, a hang, an answer lost after the send applied) around the
    last receive before this redrive (a visibility timeout and a backoff before it)."""
    if redriven_at is None:
        return False
    before = redriven_at - SQS_LAST_RECEIVE_WINDOW_SECONDS
    return any(
        f.target == "sqs" and f.kind in ("error", "lost", "hang") and f.start <= redriven_at and f.end >= before
        for f in world.scenario.faults
    )


def _sync_dead_letter_is_due(reason: str, body: str, subscriptions: dict[str, Any]) -> bool:
    try:
        envelope = json.loads(body)["webhook"]
    except (ValueError, KeyError, TypeError):
        return True  # not a message the sync route wrote
    subscription_id = _subscription_of(envelope)
    if "unusable webhook" in reason or "are not synced" in reason:
        return subscription_id is None or not isinstance(envelope.get("eventDetails"), dict)
    if "Rokt does not know subscription" in reason:
        return subscription_id not in subscriptions
    if "Braze refused" in reason:
        if SIMULATED_REFUSAL in reason:  # an object the simulated Braze refused (its per-object errors)
            return True
        found = subscriptions.get(subscription_id or "")
        return found is not None and REFUSED_MARK in str(found.email)
    return False


def _message_keys(body: str) -> tuple[Any, ...]:
    try:
        data = json.loads(body)
    except ValueError:
        return ()
    if "webhook" in data and isinstance(data["webhook"], dict):
        envelope = data["webhook"]
        return tuple(k for k in (envelope.get("eventId"), _subscription_of(envelope)) if k)
    request = data.get("request") or {}
    event = request.get("event") or {}
    return ((request.get("accountCode"), event.get("eventId")), event.get("eventId"))


def _subscription_of(envelope: Any) -> str | None:
    details = envelope.get("eventDetails") if isinstance(envelope, dict) else None
    if not isinstance(details, dict):
        return None
    subscription = details.get("subscription")
    found = subscription.get("calendarSubscriptionId") if isinstance(subscription, dict) else None
    found = found or details.get("calendarSubscriptionId")
    return found if isinstance(found, str) else None


# --- Rokt → Braze: profiles equal Rokt's state; one custom event per Rokt eventId ------------------------
def _profiles(world: World, verdict: Verdict) -> None:
    received, missed = _reached(world)
    last_dead = _latest_webhook_dead_lettered(world)
    profiles = world.braze.profile_values()
    anonymous = {c.subscription for c in world.scenario.changes if c.kind == "subscribe" and not _named(c.fields)}
    for subscription in world.rokt.state.subscriptions.all():
        if subscription.id not in received:
            verdict.counted["a subscription none of whose webhooks reached the bridge"] += 1
            continue
        if subscription.id in missed:  # the scheduled reconciliation ran one whole period after: it must heal it
            verdict.counted["a subscription with a webhook Rokt gave up on (reconciliation heals it)"] += 1
        if subscription.id in last_dead:
            verdict.counted["a subscription whose latest webhook was dead-lettered with its reason (replay heals)"] += 1
            continue
        if REFUSED_MARK in str(subscription.email):
            continue
        expected = _expected_profile(subscription)
        actual = _holding(profiles, subscription.id)
        if actual == expected:
            continue
        if subscription.id in missed and subscription.id in anonymous and actual == _without_account_names(expected):
            verdict.counted[
                "a subscriber named while Rokt's webhooks were missed, first seen with nobody to write to: "
                "no account id or name to write (Rokt's read names neither)"
            ] += 1
            continue
        if any(len(v) >= BRAZE_ARRAY_CAP for who in expected for v in profiles.get(who, {}).values()):
            verdict.counted["a profile past Braze's 25-element array cap (Braze drops the oldest)"] += 1
            continue
        verdict.add(
            "profile-differs", f"subscription {subscription.id}: {_difference(actual, expected)}", subscription.id
        )


def _reached(world: World) -> tuple[set[str], set[str]]:
    """Subscriptions with a webhook the bridge took, and with one Rokt gave up on."""
    received: set[str] = set()
    missed: set[str] = set()
    for delivery in world.rokt_deliveries:
        subscription = _subscription_of(delivery.envelope)
        if subscription is not None and delivery.hostile is None:
            (received if delivery.accepted else missed).add(subscription)
    return received, missed


def _latest_webhook_dead_lettered(world: World) -> set[str]:
    """Subscriptions whose latest webhook the bridge took is in the sync DLQ with a reason: the change it
    carried waits there for an operator's replay (the documented fate of what cannot be written)."""
    dlq = world.sync_queue.dead_letters
    dead: set[str] = set()
    for message in dlq.messages if dlq is not None else []:
        if message.attributes.get("deadLetterReason", {}).get("StringValue"):
            try:
                dead.add(str(json.loads(message.body)["webhook"]["eventId"]))
            except (ValueError, KeyError, TypeError):
                continue
    latest: dict[str, str] = {}
    for delivery in world.rokt_deliveries:
        subscription = _subscription_of(delivery.envelope)
        if subscription is not None and delivery.hostile is None and delivery.accepted:
            latest[subscription] = str(delivery.envelope.get("eventId"))
    return {subscription for subscription, event_id in latest.items() if event_id in dead}


def _holding(profiles: dict[str, dict[str, list[str]]], subscription_id: str) -> dict[str, dict[str, list[str]]]:
    """Each profile's values that belong to this subscription (its suffix, or its bare id)."""
    tail = "/" + mapping.suffix(subscription_id)
    holding: dict[str, dict[str, list[str]]] = {}
    for who, values in profiles.items():
        mine = {name: sorted(v for v in vs if v.endswith(tail) or v == subscription_id) for name, vs in values.items()}
        mine = {name: vs for name, vs in mine.items() if vs}
        if mine:
            holding[who] = mine
    return holding


def _expected_profile(subscription: Any) -> dict[str, dict[str, list[str]]]:
    state = subscription.to_api()
    who = mapping.identity(state, "email")
    if who is None or not subscription.is_active:
        return {}
    account = Account(subscription.account_code, subscription.account_id, subscription.account_name)
    values = mapping.subscriber(subscription.id, state, account, "email").values
    name, value = next(iter(who.items()))
    key = f"{name}:{value.lower() if name == 'email' else value}"
    return {key: {k: sorted(v) for k, v in values.items()}}


def _named(fields: dict[str, Any]) -> bool:
    return bool(fields.get("subscriberId") or fields.get("email"))


def _without_account_names(profile: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
    """The values a reconciliation can write with no webhook to name the account's id and name."""
    dropped = ("rokt:account_id", "rokt:account_name")
    return {who: {k: v for k, v in values.items() if k not in dropped} for who, values in profile.items()}


def _difference(actual: dict[str, dict[str, list[str]]], expected: dict[str, dict[str, list[str]]]) -> str:
    """What Braze holds for a subscription that Rokt's state does not make, and what it lacks."""
    parts = []
    for who in sorted(set(actual) | set(expected)):
        have, want = actual.get(who, {}), expected.get(who, {})
        for name in sorted(set(have) | set(want)):
            extra = sorted(set(have.get(name, [])) - set(want.get(name, [])))
            missing = sorted(set(want.get(name, [])) - set(have.get(name, [])))
            if extra:
                parts.append(f"{who} has stale {name} {extra[:3]}")
            if missing:
                parts.append(f"{who} lacks {name} {missing[:3]}")
    return "; ".join(parts)


def _custom_events(world: World, logs: list[str], verdict: Verdict) -> None:
    expected: Counter[tuple[Any, ...]] = Counter()
    owners: dict[tuple[Any, ...], list[RoktDelivery]] = defaultdict(list)
    for delivery in world.rokt_deliveries:
        envelope = delivery.envelope
        if delivery.hostile is not None or not isinstance(envelope, dict):
            continue
        if not delivery.accepted and envelope.get("eventId") not in world.synced_webhooks:
            continue
        key = _event_key(envelope)
        if key is not None:
            expected[key] += 1
            owners[key].append(delivery)
    actual: Counter[tuple[Any, ...]] = Counter()
    for _, event in world.braze.custom_events():
        properties = event.get("properties") or {}
        actual[event["name"], properties.get("subscription_id"), properties.get("event_id")] += 1
    excuse = _Excuses(world, logs)
    for key in set(expected) | set(actual):
        if actual[key] > expected[key]:
            text = f"{key[0]} for {key[1]}: {actual[key]} for {expected[key]} webhook(s)"
            verdict.add("custom-event-doubled", text, key[1])
        elif actual[key] < expected[key]:
            ids = [d.envelope["eventId"] for d in owners[key]]
            reason = excuse.missing(str(key[1]), ids, expected[key] - actual[key])
            if reason is not None:
                verdict.counted[reason] += 1
            else:
                text = f"{key[0]} for {key[1]}: {actual[key]} of {expected[key]}"
                verdict.add("custom-event-missing", text, key[1], *ids)


class _Excuses:
    """Why a custom event may rightly be missing: what the documentation says may happen."""

    def __init__(self, world: World, logs: list[str]) -> None:
        self.subscriptions = {s.id: s for s in world.rokt.state.subscriptions.all()}
        dlq = world.sync_queue.dead_letters
        self.dead = {json.loads(m.body)["webhook"].get("eventId") for m in (dlq.messages if dlq else [])}
        self.lost_logged = "\n".join(line for line in logs if "at most once" in line)
        self.skipped = {json.loads(line).get("eventId") for line in logs if '"outcome":"skipped"' in line}

    def missing(self, subscription_id: str, ids: list[str], missing: int) -> str | None:
        subscription = self.subscriptions.get(subscription_id)
        state = subscription.to_api() if subscription else {}
        skipped = sum(i in self.skipped for i in ids)
        if subscription is None or mapping.identity(state, "email") is None or skipped >= missing:
            return "a custom event not written: no identity when its webhook was processed"
        if REFUSED_MARK in str(subscription.email) or sum(i in self.dead for i in ids) >= missing:
            return "a custom event not written: its webhook was dead-lettered"
        if any(i in self.lost_logged for i in ids):
            return "a custom event lost after Braze's answer was lost (at most once, logged)"
        return None


def _event_key(envelope: dict[str, Any]) -> tuple[Any, ...] | None:
    kind = {"SubscriptionDetailsUpdate": "SubscriptionDetailsUpdated"}.get(
        envelope.get("eventType", ""), envelope.get("eventType")
    )
    name = CUSTOM_EVENTS.get(str(kind))
    if name is None:
        return None
    details = envelope.get("eventDetails") or {}
    calendar_event = (
        details.get("subscriptionEvent") if kind in ("SubscriptionEventAdded", "SubscriptionEventRemoved") else None
    )
    event_id = (
        str(calendar_event.get("eventId"))
        if isinstance(calendar_event, dict) and calendar_event.get("eventId") is not None
        else None
    )
    return (name, _subscription_of(envelope), event_id)


# --- logs -------------------------------------------------------------------------------------------------
def _logs(world: World, logs: list[str], verdict: Verdict) -> None:
    secrets = set(world.secrets) | set(world.rokt.state.tokens)
    emails = {e.lower() for e in world.emails}
    reported = 0
    for line in logs:
        lowered = line.lower()
        found = [e for e in emails if e in lowered] + [m for m in _ADDRESS.findall(line) if m != _MASK]
        leaked = [s for s in secrets if s in line]
        if (found or leaked) and reported < 5:
            reported += 1
            what = f"e-mail {found[0]!r}" if found else "a secret"
            verdict.add("log-leak", f"{what} in a log line: {line[:2000]}")


def _waiting_entries(world: World, verdict: Verdict) -> None:
    faults = {f.target for f in world.scenario.faults}
    for key, entries in world.waiting_entries_left().items():
        if entries and not faults & {"dynamodb", "sqs"}:
            verdict.add("waiting-entry-left", f"{len(entries)} waiting entr(y/ies) left after the queue drained", key)
