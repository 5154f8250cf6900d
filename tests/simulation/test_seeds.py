"""A fixed set of simulator seeds, replayed by ``make test`` (``make sim`` runs as many as you like).

Each seed is one history of both flows — interleavings, faults and clocks — checked against every
invariant of :mod:`tests.simulation.invariants`. A seed that fails here is a bug, not noise: replay it
with ``python -m tests.simulation --seed N``."""

from __future__ import annotations

import pytest

from tests.simulation.runner import run_seed
from tests.simulation.seeds import FIXED_SEEDS


@pytest.mark.parametrize("seed", FIXED_SEEDS)
def test_the_seed_keeps_every_promise(seed: int):
    outcome = run_seed(seed)

    assert not outcome.harness_errors, outcome.report()
    assert not outcome.verdict.violations, outcome.report()
