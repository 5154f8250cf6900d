"""The defects the review reproduced by hand, each one seed of the simulator (tests/simulation/seeds.py).

A seed marked xfail still breaks its promise: the defect is not fixed yet (strict: once it is fixed,
the mark must go, and the seed guards the fix)."""

from __future__ import annotations

import pytest

from tests.simulation.runner import run_seed
from tests.simulation.seeds import REVIEW_DEFECTS

NOT_FIXED_YET: set[str] = set()  # every defect the review reproduced is fixed; each seed guards its fix


@pytest.mark.parametrize(
    ("seed", "rule"),
    [
        pytest.param(
            seed,
            rule,
            id=name.split(" ", 1)[0],
            marks=[pytest.mark.xfail(strict=True, reason=f"not fixed yet: {name}")] if name in NOT_FIXED_YET else [],
        )
        for name, (seed, rule) in REVIEW_DEFECTS.items()
    ],
)
def test_the_review_defect_stays_fixed(seed: int, rule: str):
    outcome = run_seed(seed)

    broken = [v for v in outcome.verdict.violations if v.rule == rule]
    assert not broken, outcome.report()
