"""`make soak`: a bounded soak on loopback — many webhooks with duplicates while random faults come
and go on Rokt, its token endpoint, SSM and DynamoDB — then the accounting. Exits 1 if anything was
lost or doubled. Sizes: SOAK_WEBHOOKS (5000; 1000 in spill mode), SOAK_DUPLICATE_RATE (0.1),
SOAK_SEED (7), SOAK_TIME_SCALE (0.02), SOAK_MODE (``direct``, or ``spill``: direct mode with the
delivery queue behind it, drained by the queue worker; `make soak-spill`).

Spill mode is smaller because nearly every webhook is spilled: a Rokt 429 with ``Retry-After: 30``
(one fault in 17) opens the route's breaker for 30 real seconds, so the queue holds most of the
soak, and the local queue worker drains moto's SQS at a few messages a second.

Time. The bridge, its dependencies and the faults run in real time; only Braze's own retry schedule
is compressed, by SOAK_TIME_SCALE. At 0.02 one real second is 50 s of Braze's time: Braze's five
retries (60 s doubling, about 31 minutes) take 37 s here — longer than any one fault lasts (the
longest, a hang, holds calls for up to ~10 s: 8 minutes of Braze's time), as outages that come and
go are. Faults are armed by traffic (one per FAULT_EVERY_ATTEMPTS attempts, one at a time). The old
soak (0.002, a fault every second however slow the machine, leftovers piling up) squeezed Braze's
31 minutes into under 4 s and, on a busy machine, put a fault in front of most attempts: continuous
faults across the whole retry window, which direct mode alone cannot survive. A Retry-After the
bridge answers is in its own, real, seconds and honoured as such; a webhook waiting for its retry
does not hold one of Braze's connections.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time

from localworld.seed import LOCAL_WEBHOOK_SECRET
from tests.support.braze_simulator import BrazeSimulator, Webhook, accounting
from tests.support.reliability import FAULTS, Rig, running_rig, webhooks

FAULT_EVERY_ATTEMPTS = 35  # ~1 a second at the 5,000-webhook soak's healthy pace (the old rate)
POLL_SECONDS = 0.05
MAX_SOAK_SECONDS = 1800
CONCURRENCY = 8
WAITING = 64  # webhooks waiting for their retry at once (Braze schedules them; they hold no connection)
MAX_RETRY_WAIT_SECONDS = 30.0  # the longest Retry-After any fault makes the bridge answer
DRAIN_SECONDS = 300.0  # spill mode: how long the queue may take to deliver what was spilled
SETTLE_SECONDS = 2.0  # then a little longer, so a late second delivery would show as doubled
# Spill mode: the consumer's backoff between tries is capped at 1 s instead of 15 minutes, so the
# queue drains within the soak; the faults and the route's breaker are as in direct mode.
SPILL_ENV = {"DELIVERY_RETRY_MAX_BACKOFF_SECONDS": "1"}


def arm_faults(rig: Rig, rng: random.Random, batch: list[Webhook], stop: threading.Event, armed: list[str]) -> None:
    """Arm a random fault for every FAULT_EVERY_ATTEMPTS webhook attempts Braze makes, until stopped
    (bounded by MAX_SOAK_SECONDS). Tied to the traffic, not the clock, the share of attempts that
    meet a fault is the same on a fast machine and a busy one. Faults come and go: what is left of
    the last one is cleared first, so they never pile up into an outage (calls it already holds —
    hangs — run their course)."""
    deadline = time.monotonic() + MAX_SOAK_SECONDS
    next_at = FAULT_EVERY_ATTEMPTS
    while not stop.wait(POLL_SECONDS) and time.monotonic() < deadline:
        if sum(len(w.attempts) for w in batch) < next_at:
            continue
        next_at += FAULT_EVERY_ATTEMPTS
        rig.sandbox.clear_faults()
        rig.proxy.clear()
        name = rng.choice(sorted(FAULTS))
        FAULTS[name](rig)
        armed.append(name)


def deliveries(rig: Rig) -> dict[str, int]:
    return {e["event"]["eventId"]: e["deliveries"] for e in rig.sandbox.events("brazetest")}


def drained(rig: Rig, batch: list[Webhook], seconds: float) -> dict[str, int]:
    """Spill mode: poll Rokt until every event Braze was answered for arrived (bounded), then settle."""
    wanted = {w.event_id for w in batch}
    deadline = time.monotonic() + seconds
    seen = deliveries(rig)
    while not wanted <= set(seen) and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = deliveries(rig)
    time.sleep(SETTLE_SECONDS)
    return deliveries(rig)


def lost_report(batch: list[Webhook], delivered: dict[str, int], limit: int = 10) -> list[str]:
    """What Braze was answered for each lost event, and for each event Rokt got more than once (up to
    ``limit`` each; every copy's attempts): status, seconds, error code."""
    lines: list[str] = []
    for webhook in batch:
        if delivered.get(webhook.event_id, 0) == 0 and webhook.gave_up and len(lines) < limit:
            lines.append(f"lost {webhook.event_id}: " + _answers(webhook))
    doubled = [w for w in batch if delivered.get(w.event_id, 0) > 1]
    for event_id in list(dict.fromkeys(w.event_id for w in doubled))[:limit]:
        copies = [w for w in doubled if w.event_id == event_id]
        lines.append(f"doubled {event_id} ({delivered[event_id]}x): " + " || ".join(_answers(w) for w in copies))
    return lines


def _answers(webhook: Webhook) -> str:
    answers: list[str] = []
    for a in webhook.attempts:
        error = a.answer.get("error", "") if isinstance(a.answer, dict) else a.error or ""
        after = f" Retry-After {a.retry_after}" if a.retry_after else ""
        answers.append(f"{a.status} {error} {a.seconds:.2f}s{after}")
    return " | ".join(answers)


def main() -> int:
    mode = os.environ.get("SOAK_MODE", "direct")
    if mode not in ("direct", "spill"):
        raise SystemExit(f"SOAK_MODE must be direct or spill, not {mode!r}")
    total = int(os.environ.get("SOAK_WEBHOOKS", "1000" if mode == "spill" else "5000"))
    duplicate_rate = float(os.environ.get("SOAK_DUPLICATE_RATE", "0.1"))
    time_scale = float(os.environ.get("SOAK_TIME_SCALE", "0.02"))
    rng = random.Random(int(os.environ.get("SOAK_SEED", "7")))
    unique = int(total / (1 + duplicate_rate))
    batch = webhooks(count=unique, duplicates=total - unique)
    rng.shuffle(batch)
    print(
        f"soak ({mode}): {len(batch)} webhooks ({unique} events, {total - unique} duplicates), random faults, "
        f"Braze's time x{time_scale:g}",
        flush=True,
    )
    spill = mode == "spill"
    with running_rig(spill=spill, extra_env=SPILL_ENV if spill else None) as rig:
        stop = threading.Event()
        armed: list[str] = []
        faults = threading.Thread(target=arm_faults, args=(rig, rng, batch, stop, armed), daemon=True)
        started = time.monotonic()
        faults.start()
        braze = BrazeSimulator(
            rig.stack.bridge_url,
            LOCAL_WEBHOOK_SECRET,
            concurrency=CONCURRENCY,
            time_scale=time_scale,
            max_wait=MAX_RETRY_WAIT_SECONDS,
            retry_after_scale=1.0,
            waiting=WAITING,
        )
        try:
            braze.send_all(batch)
        finally:
            stop.set()
            faults.join()
        sent_seconds = time.monotonic() - started
        delivered = drained(rig, batch, DRAIN_SECONDS) if spill else deliveries(rig)
    counts = accounting(batch, delivered)
    counts["faults_armed"] = len(armed)
    counts["send_seconds"] = round(sent_seconds)
    counts["seconds"] = round(time.monotonic() - started)
    print(json.dumps(counts, indent=2), flush=True)
    for line in lost_report(batch, delivered):
        print(line, flush=True)
    ok = counts["lost"] == 0 and counts["doubled"] == 0
    print("soak: OK — nothing lost, nothing doubled" if ok else "soak: FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
