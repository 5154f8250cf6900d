"""`make soak`: a bounded soak on loopback — many webhooks with duplicates while random faults come
and go on Rokt, its token endpoint, SSM and DynamoDB — then the accounting. Exits 1 if anything was
lost or doubled. Sizes: SOAK_WEBHOOKS (5000), SOAK_DUPLICATE_RATE (0.1), SOAK_SEED (7)."""

from __future__ import annotations

import json
import os
import random
import threading
import time

from devtools.project import LOCAL_WEBHOOK_SECRET
from tests.braze_simulator import BrazeSimulator, accounting
from tests.reliability import FAULTS, Rig, running_rig, webhooks

FAULT_EVERY_SECONDS = 1.0
MAX_SOAK_SECONDS = 1800


def arm_faults(rig: Rig, rng: random.Random, stop: threading.Event, armed: list[str]) -> None:
    """Arm a random fault every second until stopped (bounded by MAX_SOAK_SECONDS)."""
    deadline = time.monotonic() + MAX_SOAK_SECONDS
    while not stop.wait(FAULT_EVERY_SECONDS) and time.monotonic() < deadline:
        name = rng.choice(sorted(FAULTS))
        FAULTS[name](rig)
        armed.append(name)


def main() -> int:
    total = int(os.environ.get("SOAK_WEBHOOKS", "5000"))
    duplicate_rate = float(os.environ.get("SOAK_DUPLICATE_RATE", "0.1"))
    rng = random.Random(int(os.environ.get("SOAK_SEED", "7")))
    unique = int(total / (1 + duplicate_rate))
    batch = webhooks(count=unique, duplicates=total - unique)
    rng.shuffle(batch)
    print(f"soak: {len(batch)} webhooks ({unique} events, {total - unique} duplicates), random faults", flush=True)
    with running_rig() as rig:
        stop = threading.Event()
        armed: list[str] = []
        faults = threading.Thread(target=arm_faults, args=(rig, rng, stop, armed), daemon=True)
        started = time.monotonic()
        faults.start()
        try:
            BrazeSimulator(rig.stack.bridge_url, LOCAL_WEBHOOK_SECRET, concurrency=8).send_all(batch)
        finally:
            stop.set()
            faults.join()
        deliveries = {e["event"]["eventId"]: e["deliveries"] for e in rig.sandbox.events("brazetest")}
    counts = accounting(batch, deliveries)
    counts["faults_armed"] = len(armed)
    counts["seconds"] = round(time.monotonic() - started)
    print(json.dumps(counts, indent=2), flush=True)
    ok = counts["lost"] == 0 and counts["doubled"] == 0
    print("soak: OK — nothing lost, nothing doubled" if ok else "soak: FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
