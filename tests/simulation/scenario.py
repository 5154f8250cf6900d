"""What a seed decides before anything runs: the stage (direct, spill or queued delivery), the sizes,
the faults and their windows, the marketers' intents and the subscribers' changes.

Everything is drawn from ``random.Random(f"{seed}:scenario")``; the run itself draws from other
streams (the schedule, the faults met call by call, the world's small choices), so one seed is one
history. ``describe`` prints the scenario in a few lines, for a failing seed's report.
"""

from __future__ import annotations

import random
import string
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.simulation.faults import Fault

ACCOUNTS = ("brazetest", "acme-sports")
MODES = ("direct", "spill", "queued")
HORIZON_SECONDS = 3 * 3600.0  # intents and Rokt changes happen in the first hours; then the queues drain
TAGS = ("All Teams", "Team A", "Team B", "Team C", "Team D")


@dataclass
class BrazeIntent:
    account: str
    event_id: str
    op: str  # create | update | delete
    at: float
    variant: int  # the content: two intents with the same variant send the same body
    copies: int = 1
    subscriptions: tuple[str, ...] = ()
    hostile: str | None = None  # why the body (or URL) is bad, when it is


@dataclass
class RoktChange:
    at: float
    kind: str  # subscribe | tags | move | unsubscribe | hostile
    subscription: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    seed: int
    family: str
    mode: str
    max_skew: float
    redrive_limit: int
    sqs_redelivery_rate: float
    rokt_processing: tuple[float, ...]
    faults: list[Fault]
    intents: list[BrazeIntent]
    changes: list[RoktChange]
    rokt_redelivery_rate: float
    users: list[str]
    budget: tuple[float, float] = (25.0, 8.0)  # the stage's request budget and Rokt's read timeout

    def describe(self) -> list[str]:
        lines = [
            f"seed {self.seed} ({self.family}): {self.mode} delivery, {len(self.intents)} intents "
            f"({sum(i.copies for i in self.intents)} copies), {len(self.changes)} Rokt changes, "
            f"clock skew <= {self.max_skew:.2f}s, redrive after {self.redrive_limit} receives, "
            f"budget {self.budget[0]:g} s (Rokt read timeout {self.budget[1]:g} s)",
        ]
        lines += [f"  fault: {fault.describe()}" for fault in self.faults]
        return lines


# Families of worlds, by weight: each seed draws one, then everything else. A family makes one kind of
# trouble likely (rather than leaving it to one seed in a thousand): the rest of the draw stays random.
FAMILIES = (("mixed", 45), ("crowd", 15), ("slow", 10), ("races", 10), ("moves", 12), ("missed", 8))


def generate(seed: int, size: str = "small") -> Scenario:
    rng = random.Random(f"{seed}:scenario")
    scale = {"small": 1, "medium": 3, "large": 20}[size]
    family = rng.choices([f for f, _ in FAMILIES], [w for _, w in FAMILIES])[0]
    users = [f"user{n}" for n in range(1, 4 + 2 * scale)] + ["ana.maria@example.com", "jose@exämple.de"]
    crowd = rng.randint(50, 100) if family == "crowd" else 0
    subscriptions = _subscriptions(rng, scale, crowd)
    changes = _rokt_changes(rng, subscriptions, users, crowd, moves=family == "moves")
    intents = _intents(rng, subscriptions, users, scale, races=family in ("races", "slow"))
    faults = _faults(rng)
    if family == "crowd" and rng.random() < 0.7:
        crowd_at = min(c.at for c in changes if c.kind == "subscribe")
        faults.append(_crowd_trouble(rng, crowd_at))
    if family == "slow":  # everything slow at once: what every step costs must still fit the budget
        faults += [
            Fault("dynamodb", "slow", 0.0, HORIZON_SECONDS, 1.0, latency=rng.choice((0.5, 1.2, 1.6, 1.95))),
            Fault("rokt.events", rng.choice(("hang", "drip", "slow")), 0.0, HORIZON_SECONDS, 0.5, latency=12.0),
        ]
        if rng.random() < 0.5:
            faults.append(Fault("ssm", "slow", 0.0, HORIZON_SECONDS, 1.0, latency=1.6))
    if family == "moves":
        faults.append(
            rng.choice(
                (
                    Fault("braze", "status", 0.0, HORIZON_SECONDS, 0.3, status=rng.choice((500, 503, 429))),
                    Fault("braze", "drop", 0.0, HORIZON_SECONDS, 0.2),
                    Fault("dynamodb", "error", 0.0, HORIZON_SECONDS, 0.1),
                )
            )
        )
    if family == "missed":  # from some point on, Rokt's webhooks cannot reach the bridge: only reconciliation
        start = HORIZON_SECONDS / 2  # heals what changed after it — every subscription changes once more then
        faults.append(Fault("rokt.webhooks", "refused", start, HORIZON_SECONDS + 3600.0, 1.0))
        changes = sorted(changes + _missed_changes(rng, subscriptions, users, start), key=lambda c: c.at)
    mode = rng.choice(MODES)
    return Scenario(
        seed=seed,
        family=family,
        mode=mode,
        max_skew=rng.choice((0.0, 0.05, 0.3, 1.0)),
        redrive_limit=1000 if rng.random() < 0.8 else rng.randint(2, 8),
        sqs_redelivery_rate=rng.choice((0.0, 0.0, 0.02, 0.1)),
        rokt_processing=rng.choice(((0.0,), (0.0, 0.5, 2.0), (0.0, 5.0, 30.0))),
        faults=faults,
        intents=intents,
        changes=changes,
        rokt_redelivery_rate=rng.choice((0.0, 0.05, 0.2)),
        users=users,
        # the production stage, or the tightest budget Settings accepts with a short Rokt timeout
        budget=rng.choice(((25.0, 8.0), (25.0, 8.0), (12.0 if mode == "direct" else 20.0, 1.5))),
    )


def _crowd_trouble(rng: random.Random, at: float) -> Fault:
    """What makes a big sync batch hard: DynamoDB slow on every call, or Rokt's reads slow."""
    if rng.random() < 0.6:
        return Fault("dynamodb", "slow", at - 10, at + 600, 1.0, latency=rng.choice((0.1, 0.15, 0.2, 0.25)))
    return Fault("rokt.subscriptions", "slow", at - 10, at + 3600, 1.0, latency=rng.choice((2.0, 4.0, 6.0)))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _subscriptions(rng: random.Random, scale: int, crowd: int) -> list[str]:
    """Subscriptions: a few per person; and a crowd subscribing at once (a launch: sync batches of 75)."""
    return [_uuid(rng) for _ in range(rng.randint(2, 6) * scale + crowd)]


def _rokt_changes(
    rng: random.Random, subscriptions: list[str], users: list[str], crowd: int, *, moves: bool
) -> list[RoktChange]:
    changes: list[RoktChange] = []
    crowd_at = rng.uniform(0, HORIZON_SECONDS / 3)
    for index, subscription in enumerate(subscriptions):
        in_crowd = index >= len(subscriptions) - crowd
        start = crowd_at + rng.random() * 5 if in_crowd else rng.uniform(0, HORIZON_SECONDS / 3)
        who = f"fan{index:03d}" if in_crowd else rng.choice([*users, None, None])
        email = rng.choice([None, f"{who or 'someone'}@mail.example.org".replace("@example.com@", "@")])
        if rng.random() < 0.05:
            email, who = f"{_word(rng)}.refused-by-braze@mail.example.org", None
        changes.append(
            RoktChange(
                start,
                "subscribe",
                subscription,
                {
                    "accountCode": rng.choice(ACCOUNTS),
                    "calendarCode": rng.choice(("sports", "concerts")),
                    "subscriberId": who,
                    "email": email,
                    "tags": rng.sample(TAGS, rng.randint(0, 3)),
                    "method": rng.choice(("google", "webcal", "microsoft")),
                    "optIn1": rng.random() < 0.5,
                    "countryCode": rng.choice((None, "US", "AU")),
                },
            )
        )
        at = start
        for _ in range(rng.randint(0, 1) if in_crowd else rng.randint(0, 4)):
            at += rng.choice((0.5, 3.0, 40.0, 300.0, 1800.0)) * rng.random()
            kind = rng.choice(("move", "move", "tags") if moves else ("tags", "tags", "move", "unsubscribe"))
            if kind == "tags":
                changes.append(RoktChange(at, "tags", subscription, {"tags": rng.sample(TAGS, rng.randint(0, 4))}))
            elif kind == "move":
                changes.append(RoktChange(at, "move", subscription, {"subscriberId": rng.choice(users)}))
                if rng.random() < (0.7 if moves else 0.3):  # and moves again soon after
                    at += rng.uniform(1.0, 120.0)
                    changes.append(RoktChange(at, "move", subscription, {"subscriberId": rng.choice(users)}))
            else:
                changes.append(RoktChange(at, "unsubscribe", subscription))
                break
    if rng.random() < 0.15:  # a burst: many subscriptions change within seconds
        at = rng.uniform(0, HORIZON_SECONDS / 2)
        for subscription in subscriptions:
            changes.append(
                RoktChange(at + rng.random() * 3, "tags", subscription, {"tags": rng.sample(TAGS, rng.randint(0, 4))})
            )
    for _ in range(rng.choice((0, 0, 1, 3))):
        changes.append(RoktChange(rng.uniform(0, HORIZON_SECONDS), "hostile", "", {"why": _hostile_envelope(rng)}))
    return sorted(changes, key=lambda c: c.at)


def _missed_changes(rng: random.Random, subscriptions: list[str], users: list[str], after: float) -> list[RoktChange]:
    """One more change to each subscription, after ``after`` (each kind the reconciliation heals)."""
    changes = []
    for subscription in subscriptions:
        at = after + rng.uniform(60.0, HORIZON_SECONDS / 2)
        kind = rng.choice(("tags", "move", "unsubscribe"))
        if kind == "tags":
            changes.append(RoktChange(at, "tags", subscription, {"tags": rng.sample(TAGS, rng.randint(0, 4))}))
        elif kind == "move":
            changes.append(RoktChange(at, "move", subscription, {"subscriberId": rng.choice(users)}))
        else:
            changes.append(RoktChange(at, "unsubscribe", subscription))
    return changes


def _hostile_envelope(rng: random.Random) -> str:
    return rng.choice(("lone_surrogate_event_id", "deep_nesting", "no_event_type", "not_json", "surrogate_type"))


def _intents(
    rng: random.Random, subscriptions: list[str], users: list[str], scale: int, *, races: bool
) -> list[BrazeIntent]:
    intents: list[BrazeIntent] = []
    events = rng.randint(3, 8) * scale
    for number in range(events):
        account = rng.choice(ACCOUNTS)
        event_id = f"Event_{number:04d}_{rng.choice(users)}"
        accounts = [account, *([a for a in ACCOUNTS if a != account] if rng.random() < 0.15 else [])]
        for account_code in accounts:  # the same eventId in two accounts is two events
            at = rng.uniform(0, HORIZON_SECONDS / 2)
            variant = 0
            ops = ["create", *rng.choices(("update", "update", "delete", "create"), k=rng.randint(0, 5))]
            for op in ops:
                if op != "delete":
                    variant = rng.choice((variant, variant + 1, variant + 1, 0))
                copies = 1 if rng.random() < (0.4 if races else 0.8) else rng.choice((2, 3, 12))
                chosen = tuple(rng.sample(subscriptions, min(len(subscriptions), rng.randint(1, 3))))
                intents.append(BrazeIntent(account_code, event_id, op, at, variant, copies, chosen))
                gaps = (0.2, 1.0, 5.0) if races else (0.2, 1.0, 5.0, 60.0, 600.0, 3600.0)
                at += rng.choice(gaps) * (0.5 + rng.random())
    for _ in range(rng.choice((0, 1, 2, 4))):
        why = rng.choice(("deep_nesting", "lone_surrogate", "email_account", "email_field", "huge_number", "nan"))
        event_id = f"Event_{9000 + rng.randint(0, 99):04d}_{rng.choice(users)}"
        op = rng.choice(("create", "update"))
        intents.append(
            BrazeIntent(rng.choice(ACCOUNTS), event_id, op, rng.uniform(0, HORIZON_SECONDS / 2), 0, 1, (), why)
        )
    return sorted(intents, key=lambda i: i.at)


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(6))


# --- faults -----------------------------------------------------------------------------------------
def _faults(rng: random.Random) -> list[Fault]:
    menu = [
        lambda s, e: Fault("rokt.events", "status", s, e, rng.choice((0.3, 1.0)), status=rng.choice((500, 502, 503))),
        lambda s, e: Fault("rokt.events", "status", s, e, 1.0, status=429, retry_after=rng.choice(("5", "30", None))),
        lambda s, e: Fault("rokt.events", rng.choice(("hang", "drip", "drop", "refused", "syn_lost")), s, e, 0.5),
        lambda s, e: Fault("rokt.events", "slow", s, e, 1.0, latency=rng.choice((1.0, 7.5, 12.0))),
        lambda s, e: Fault("rokt.token", rng.choice(("status", "hang", "refused")), s, e, 1.0, status=500),
        lambda s, e: Fault("rokt.subscriptions", "status", s, e, 0.2, status=rng.choice((408, 403, 500, 503))),
        lambda s, e: Fault("rokt.subscriptions", "slow", s, e, 1.0, latency=rng.choice((0.3, 2.0, 6.0))),
        lambda s, e: Fault("dynamodb", rng.choice(("error", "lost", "down")), s, e, rng.choice((0.05, 0.3, 1.0))),
        lambda s, e: Fault("dynamodb", "slow", s, e, 1.0, latency=rng.choice((0.1, 0.2, 0.25, 0.5, 1.2, 1.95))),
        lambda s, e: Fault("ssm", rng.choice(("error", "down", "slow")), s, e, rng.choice((0.3, 1.0)), latency=1.9),
        lambda s, e: Fault("sqs", rng.choice(("error", "lost")), s, e, rng.choice((0.1, 1.0))),
        lambda s, e: Fault("braze", "status", s, e, rng.choice((0.3, 1.0)), status=rng.choice((429, 500, 503, 401))),
        lambda s, e: Fault("braze", rng.choice(("hang", "drop", "drip", "object_errors")), s, e, 0.5),
    ]
    faults: list[Fault] = []
    for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4))):
        start = rng.uniform(0, HORIZON_SECONDS * 0.8)
        length = rng.choice((30.0, 300.0, 1800.0, 7200.0))
        faults.append(rng.choice(menu)(start, start + length))
    if rng.random() < 0.04:  # a long outage: longer than Braze's and the queue's retries
        start = rng.uniform(0, HORIZON_SECONDS / 2)
        faults.append(Fault("rokt.events", "status", start, start + 26 * 3600.0, 1.0, status=503))
    return faults
