"""Make a failing seed's history short: drop what the failure does not need.

Delta debugging over the scenario's lists (the marketers' intents, the subscribers' changes, the
faults): remove halves, then quarters, … of a list and keep a removal whenever the seed still breaks
the same promise. The run's other streams (schedule, faults met, small choices) stay the seed's, so
the procedure is deterministic: the same seed and rule always shrink to the same scenario.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from tests.simulation.runner import Outcome, run_seed
from tests.simulation.scenario import generate

if TYPE_CHECKING:
    from tests.simulation.scenario import Scenario

FIELDS = ("faults", "intents", "changes")


def shrink(seed: int, rule: str, size: str = "small", max_runs: int = 200) -> tuple[Scenario, Outcome]:
    """The smallest scenario found (within ``max_runs`` runs) for which ``seed`` still breaks ``rule``."""
    scenario = generate(seed, size)
    best = run_seed(seed, size, scenario=scenario)
    if not _breaks(best, rule):
        raise ValueError(f"seed {seed} does not break {rule!r}")
    runs = 1
    for name in FIELDS:
        items: list[Any] = list(getattr(scenario, name))
        chunk = max(len(items) // 2, 1)
        while items and runs < max_runs:
            index = 0
            while index < len(items) and runs < max_runs:
                candidate = _without(scenario, name, items[:index] + items[index + chunk :])
                outcome = run_seed(seed, size, scenario=candidate)
                runs += 1
                if _breaks(outcome, rule):
                    scenario, best, items = candidate, outcome, items[:index] + items[index + chunk :]
                else:
                    index += chunk
            if chunk == 1:
                break
            chunk //= 2
    return scenario, best


def _without(scenario: Scenario, name: str, items: list[Any]) -> Scenario:
    candidate = dataclasses.replace(scenario)
    setattr(candidate, name, items)
    return candidate


def _breaks(outcome: Outcome, rule: str) -> bool:
    return any(v.rule == rule for v in outcome.verdict.violations)
