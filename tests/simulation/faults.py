"""What goes wrong, when: windows of faults the seed draws, decided call by call.

A window names a target (``dynamodb``, ``ssm``, ``sqs``, ``rokt.events``, ``rokt.token``,
``rokt.subscriptions``, ``braze``), a kind and a span of virtual time; each call to the target inside
the span meets the fault with the window's probability. Every fault met is recorded with the
invocation that met it, so the invariants can tell an answer a fault explains from one nothing does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from random import Random

    from tests.simulation.scheduler import Scheduler

AWS_KINDS = ("error", "lost", "down", "slow")
HTTP_KINDS = ("status", "slow", "hang", "drip", "refused", "syn_lost", "drop", "object_errors")
# Typical latencies when nothing is wrong (seconds).
BASE_LATENCY = {"dynamodb": 0.006, "ssm": 0.02, "sqs": 0.012, "rokt": 0.08, "braze": 0.05}


@dataclass(frozen=True)
class Fault:
    target: str
    kind: str
    start: float
    end: float
    rate: float = 1.0
    status: int = 0
    retry_after: str | None = None
    latency: float = 0.0
    operations: tuple[str, ...] = ()

    def describe(self) -> str:
        detail = {"status": f" {self.status}", "slow": f" {self.latency:g}s", "drip": " 0.6s/byte"}.get(self.kind, "")
        ops = f" [{','.join(self.operations)}]" if self.operations else ""
        return f"{self.target} {self.kind}{detail}{ops} {self.start:.0f}-{self.end:.0f}s p={self.rate:g}"


@dataclass
class Faults:
    windows: list[Fault]
    rng: Random
    scheduler: Scheduler
    met: Counter[str] = field(default_factory=Counter)  # invocation name -> faults met
    log: list[tuple[float, str, str]] = field(default_factory=list)

    def _active(self, target: str, kinds: tuple[str, ...], operation: str = "") -> list[Fault]:
        now = self.scheduler.now
        return [
            w
            for w in self.windows
            if w.target == target
            and w.kind in kinds
            and w.start <= now < w.end
            and (not w.operations or operation in w.operations)
        ]

    def _meet(self, fault: Fault) -> Fault:
        invocation = self.scheduler.current.invocation
        name = invocation.name if invocation is not None else self.scheduler.current.name
        self.met[name] += 1
        self.log.append((self.scheduler.now, name, fault.describe()))
        return fault

    def aws(self, service: str, operation: str) -> Fault | None:
        for window in self._active(service, ("error", "lost", "down"), operation):
            if self.rng.random() < window.rate:
                return self._meet(window)
        return None

    def aws_latency(self, service: str, fault: Fault | None) -> float:
        latency = BASE_LATENCY.get(service, 0.01) * (0.5 + self.rng.random())
        for window in self._active(service, ("slow",)):
            if self.rng.random() < window.rate:
                latency += window.latency * (0.5 + self.rng.random())  # a slow service varies: a long tail
                self._meet(window)
        return latency

    def http(self, target: str) -> Fault | None:
        for window in self._active(target, HTTP_KINDS):
            if self.rng.random() < window.rate:
                return self._meet(window)
        return None

    def latency(self, service: str) -> float:
        return BASE_LATENCY.get(service, 0.05) * (0.5 + self.rng.random())
