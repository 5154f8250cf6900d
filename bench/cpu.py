"""`python -m bench.cpu`: only the bench's CPU case (CPU per warm webhook, bridge vs reference), in
BENCH_ROUNDS (9) alternating rounds of BENCH_CPU_WEBHOOKS (400) — and, with ``--baseline DIR`` (a
checkout of earlier code, e.g. ``git archive <commit> | tar -x -C DIR``), that code's bridge measured
in the same rounds against the same moto and sandbox, so before and after are side by side.

Prints each round and the paired ratios (the median of the per-round ratios, as `make bench`
reports ``cpu_ratio_vs_reference``); writes nothing to results.json. About 5 minutes for 9 rounds
with a baseline on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.__main__ import running_stack, say, share_fresh_token
from localworld.seed import LOCAL_WEBHOOK_SECRET
from stage.project import PROJECT_DIR


def cpu_ms(env: dict[str, str], project: Path, target: str, webhooks: int) -> float:
    """CPU ms per warm webhook of ``target`` (bridge or reference), the bridge taken from ``project``."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, "-m", "bench.worker", "cpu", "--target", target, "--n", str(webhooks),
             "--secret", LOCAL_WEBHOOK_SECRET, "--out", out.name],
            cwd=project,
            env={**env, "PYTHONPATH": str(project)},
            stdout=subprocess.DEVNULL,
            check=True,
            timeout=900,
        )  # fmt: skip
        result = json.loads(Path(out.name).read_text())
    return float(result["cpu_seconds"]) / int(result["webhooks"]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="a checkout of earlier code, measured side by side")
    args = parser.parse_args()
    rounds = int(os.environ.get("BENCH_ROUNDS", "9"))
    webhooks = int(os.environ.get("BENCH_CPU_WEBHOOKS", "400"))
    # name → (project directory, worker target)
    targets = {"bridge": (PROJECT_DIR, "bridge"), "reference": (PROJECT_DIR, "reference")}
    if args.baseline is not None:
        targets["baseline"] = (args.baseline.resolve(), "bridge")
    say(f"CPU per warm webhook: {', '.join(targets)}; {rounds} alternating rounds of {webhooks}…")
    with running_stack() as (stack, env):
        per: dict[str, list[float]] = {name: [] for name in targets}
        for round_index in range(rounds):
            share_fresh_token(stack)  # the reference reads it once per process; Rokt's live 300 s
            order = list(targets) if round_index % 2 == 0 else list(reversed(targets))
            for name in order:
                project, target = targets[name]
                per[name].append(cpu_ms(env, project, target, webhooks))
            say(f"  round {round_index + 1}: " + ", ".join(f"{name} {per[name][-1]:.2f} ms" for name in targets))
    reference = per["reference"]
    for name in targets:
        line = f"{name}: median {statistics.median(per[name]):.2f} ms"
        if name != "reference":
            ratios = [b / r for b, r in zip(per[name], reference, strict=True)]
            spread = f"{min(ratios):.2f}–{max(ratios):.2f}"
            line += f"; paired ratio vs reference {statistics.median(ratios):.3f} (rounds {spread})"
        say(line)


if __name__ == "__main__":
    main()
