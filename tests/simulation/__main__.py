"""``python -m tests.simulation``: run seeds, print each violation with its short history and the
command that replays it. ``--seed N`` replays one seed; ``--seeds N`` runs N seeds (from
``--start``) over ``--jobs`` processes and prints seeds/second. Exits 1 if any seed broke a promise."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed

# Python's string hashing is salted per process: iteration over a set of strings, and so the order
# of the bridge's calls, would differ between two runs of one seed. A fixed salt makes a seed a history.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, "-m", "tests.simulation", *sys.argv[1:]])

from tests.simulation.conditions import prepare

prepare()

from tests.simulation.runner import Outcome, run_seed  # noqa: E402


def _one(seed: int, size: str, dynamodb: str = "model") -> tuple[int, bool, str, list[str], float]:
    outcome: Outcome = run_seed(seed, size, dynamodb=dynamodb)
    rules = sorted({v.rule for v in outcome.verdict.violations})
    failed = outcome.failed or bool(outcome.harness_errors)
    return seed, failed, outcome.report() if failed else "", rules, outcome.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.simulation", description=__doc__)
    parser.add_argument("--seed", type=int, help="replay one seed, verbosely")
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run (default 100)")
    parser.add_argument("--start", type=int, default=1, help="the first seed (default 1)")
    parser.add_argument("--size", choices=("small", "medium", "large"), default="small")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes (default: one per CPU)")
    parser.add_argument("--quiet", action="store_true", help="only the summary and the failing seeds' numbers")
    parser.add_argument(
        "--shrink", metavar="RULE", help="with --seed: drop what the failure does not need, keeping RULE broken"
    )
    parser.add_argument(
        "--dynamodb", choices=("model", "moto"), default="model", help="DynamoDB: the fast model, or moto (slower)"
    )
    args = parser.parse_args(argv)
    if args.seed is not None and args.shrink:
        from tests.simulation.shrink import shrink

        scenario, outcome = shrink(args.seed, args.shrink, args.size)
        sizes = f"{len(scenario.intents)} intents, {len(scenario.changes)} changes, {len(scenario.faults)} faults"
        print(f"shrunk to {sizes}")
        print(outcome.report())
        print(f"  replay the shrunk history: {outcome.replay_command()} --shrink {args.shrink}")
        return 1
    if args.seed is not None:
        outcome = run_seed(args.seed, args.size, dynamodb=args.dynamodb)
        print(outcome.report())
        for warning in outcome.warnings:
            print(f"  warning: {warning}")
        return 1 if outcome.failed or outcome.harness_errors else 0
    started = time.perf_counter()
    failures: dict[int, list[str]] = {}
    by_rule: Counter[str] = Counter()
    done = 0
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        futures = [
            pool.submit(_one, seed, args.size, args.dynamodb) for seed in range(args.start, args.start + args.seeds)
        ]
        for future in as_completed(futures):
            seed, failed, report, rules, _ = future.result()
            done += 1
            if failed:
                failures[seed] = rules
                by_rule.update(rules or ["harness"])
                if not args.quiet:
                    print(report, flush=True)
            if done % 50 == 0 or done == args.seeds:
                rate = done / (time.perf_counter() - started)
                print(f"[{done}/{args.seeds}] {rate:.1f} seeds/s, {len(failures)} failing", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    print(
        f"{args.seeds} seeds ({args.size}) in {elapsed:.0f} s: {args.seeds / elapsed:.1f} seeds/second, "
        f"{len(failures)} failing"
    )
    for rule, count in by_rule.most_common():
        seeds = [s for s, r in sorted(failures.items()) if rule in (r or ["harness"])]
        print(f"  {rule}: {count} seed(s), e.g. {', '.join(map(str, seeds[:8]))}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
