"""`python -m bench.package_cold_start`: the cold start of the deployment package run as Lambda runs it
(tests/e2e/lambda_runtime.py: `chalice package`, unzipped, a fresh ``python -I -S -B`` whose path is the
package, the Lambda runtime's boto3/botocore and the standard library), beside the bench's own cold
start (``bench.worker cold``: the checkout in the dev venv, bridge and reference) measured in the same
rounds, and the figure in bench/results.json.

A cold start is what `make bench` calls one: from the first line of the process's Python code to the
answer of its first webhook — importing the app, then one create delivered to the Rokt sandbox (the
token shared in SSM beforehand, as the bench does), every in-process cache empty. Measured for the
package as `chalice package` leaves it (no bytecode: Lambda's /var/task is read-only, so every cold
start compiles app.py, chalicelib and the requirements from source) and as `make package` ships it
(scripts/bytecode.py: the bytecode of the modules the init imports). BENCH_COLD_RUNS (15) alternating
runs; medians, quartiles and ranges of the wall clock, and of the process's CPU time (interpreter start
included), which a busy machine disturbs less; the load average before and after. Then ``python -X
importtime`` of ``import app`` in that interpreter, summed per top-level package and the largest
cumulative imports. Writes nothing to results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from bench.__main__ import RESULTS, compile_checkout, running_stack, say, share_fresh_token, worker
from localworld.seed import LOCAL_WEBHOOK_SECRET
from scripts.bytecode import ship_bytecode
from stage.project import SAMPLE_BODY
from tests.e2e import lambda_runtime as harness

if TYPE_CHECKING:
    from localworld.localstack import LocalStack

STAGE = "local"
IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


class ImportRow(NamedTuple):
    module: str
    self_us: float
    cumulative_us: float
    depth: int


def first_webhook_event(secret: str) -> dict[str, Any]:
    body = json.loads(json.dumps(SAMPLE_BODY))
    body["event"]["eventId"] = f"cold_{uuid.uuid4().hex[:8]}_user"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {secret}", "User-Agent": "Braze Sender"}
    return harness.proxy_event(
        "POST",
        "/v1/subscriptionevent/{account_code}",
        path_params={"account_code": "brazetest"},
        headers=headers,
        body=json.dumps(body),
    )


def package_cold(package: harness.Package, runtime: Path, stack: LocalStack, secret: str) -> dict[str, float]:
    """One cold container of the API function: its import and first webhook (seconds)."""
    env = harness.lambda_environment(stack.env, STAGE, "api", task_root=package.task_root, runtime=runtime)
    started = time.perf_counter()
    function = harness.LambdaFunction(package, runtime, env, audit=False).start()
    try:
        first = function.invoke(first_webhook_event(secret))
        wall = time.perf_counter() - started
    finally:
        function.close()
    if first.error is not None or first.result["statusCode"] != 200:
        raise RuntimeError(f"the package's first webhook failed: {first.error or first.result}")
    return {"import": function.init["seconds"], "cold": first.since_start, "process": wall, "cpu": first.cpu_seconds}


def with_bytecode(package: harness.Package, target: Path) -> harness.Package:
    """The same package as `make package` ships it: its zip given the bytecode step, then unzipped."""
    target.mkdir(parents=True)
    shutil.copy2(package.zip_path, target / "deployment.zip")
    shutil.copy2(package.zip_path.with_name("sam.json"), target / "sam.json")
    ship_bytecode(target / "deployment.zip", harness.runtime_dir())
    return harness.unzipped(target / "deployment.zip", target / "task")


def importtime(package: harness.Package, runtime: Path, stack: LocalStack, repeats: int) -> list[ImportRow]:
    """``-X importtime`` of ``import app`` in the package's interpreter, ``repeats`` times: per module,
    the medians of its self and cumulative microseconds, and its depth in the import tree."""
    env = harness.lambda_environment(stack.env, STAGE, "api", task_root=package.task_root, runtime=runtime)
    code = f"import sys; sys.path[:0] = [{str(package.task_root)!r}, {str(runtime)!r}]; import app"
    samples: dict[str, list[tuple[int, int]]] = defaultdict(list)
    order: dict[str, int] = {}
    for _ in range(repeats):
        done = subprocess.run(
            [str(harness.BASE_PYTHON), "-I", "-S", "-B", "-X", "importtime", "-c", code],
            cwd=package.task_root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        for line in done.stderr.splitlines():
            found = IMPORTTIME.match(line)
            if found:
                samples[found[4]].append((int(found[1]), int(found[2])))
                order.setdefault(found[4], (len(found[3]) - 1) // 2)
    return [
        ImportRow(
            module,
            statistics.median(s for s, _ in values),
            statistics.median(c for _, c in values),
            order[module],
        )
        for module, values in samples.items()
    ]


def spread(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    quartiles = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
    return (
        f"median {statistics.median(ms):6.0f} ms  IQR {quartiles[0]:.0f}–{quartiles[2]:.0f}  "
        f"range {ms[0]:.0f}–{ms[-1]:.0f}"
    )


def summarize_importtime(rows: list[ImportRow], top: int = 10) -> str:
    per_package: dict[str, float] = defaultdict(float)
    for row in rows:
        per_package[row.module.split(".")[0]] += row.self_us
    total = sum(per_package.values())
    lines = [f"import app: {total / 1000:.0f} ms of imports (medians of self time), by top-level package:"]
    for name, self_us in sorted(per_package.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {name:<28} {self_us / 1000:7.1f} ms  {self_us / total:5.1%}")
    lines.append(f"largest cumulative imports (top {top}; a module counts where it is first imported):")
    for row in sorted(rows, key=lambda row: -row.cumulative_us)[:top]:
        lines.append(f"  {'  ' * row.depth}{row.module:<{48 - 2 * row.depth}} {row.cumulative_us / 1000:7.1f} ms")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_COLD_RUNS", "15")))
    parser.add_argument("--importtime-runs", type=int, default=5)
    args = parser.parse_args()
    runtime = harness.runtime_dir()
    with tempfile.TemporaryDirectory(prefix="package-cold-") as tmp:
        say("chalice package (loopback only), the bytecode step, unzip…")
        shipped = harness.build_package(Path(tmp) / "shipped", bytecode=False)
        compiled = with_bytecode(shipped, Path(tmp) / "compiled")
        say(f"zip: {shipped.zip_path.stat().st_size / 1e6:.2f} MB as chalice package leaves it, "
            f"{compiled.zip_path.stat().st_size / 1e6:.2f} MB with the bytecode")  # fmt: skip
        say("starting moto server, the Rokt and Braze sandboxes on loopback…")
        with running_stack() as (stack, env):
            share_fresh_token(stack)
            compile_checkout()
            per: dict[str, list[dict[str, float]]] = {
                "package, no .pyc": [],
                "package (make package)": [],
                "dev venv: bridge": [],
                "dev venv: reference": [],
            }
            load_before = os.getloadavg()
            say(f"{args.runs} alternating runs: the package without and with its bytecode, the bench's workers…")
            for index in range(args.runs):
                order = list(per) if index % 2 == 0 else list(reversed(per))
                for name in order:
                    if name.startswith("dev venv"):
                        measured = worker(env, "cold", "--target", name.split()[-1])
                        per[name].append({"cold": measured["cold_seconds"], "cpu": measured["cpu_seconds"]})
                    else:
                        chosen = shipped if name == "package, no .pyc" else compiled
                        per[name].append(package_cold(chosen, runtime, stack, LOCAL_WEBHOOK_SECRET))
            load_after = os.getloadavg()
            rows = importtime(shipped, runtime, stack, args.importtime_runs)
            compiled_rows = importtime(compiled, runtime, stack, args.importtime_runs)
    recorded = json.loads(RESULTS.read_text()).get("cold_start_ms_bridge") if RESULTS.exists() else None
    say(f"\nload average (1, 5, 15 min) before {_load(load_before)}, after {_load(load_after)}; {os.cpu_count()} CPUs")
    say("cold start = import + first webhook (from the process's first line of Python):")
    for name, samples in per.items():
        say(f"  {name:<24} {spread([s['cold'] for s in samples])}")
        if "import" in samples[0]:
            say(f"  {'  of which import':<24} {spread([s['import'] for s in samples])}")
            say(f"  {'  process wall':<24} {spread([s['process'] for s in samples])}  (spawn → first answer)")
        say(f"  {'  process CPU':<24} {spread([s['cpu'] for s in samples])}  (less sensitive to a busy machine)")
    reference = per["dev venv: reference"]
    for name in ("package, no .pyc", "package (make package)", "dev venv: bridge"):
        wall, cpu = _ratio(per[name], reference, "cold"), _ratio(per[name], reference, "cpu")
        say(f"  {name:<24} / reference: wall {wall}, CPU {cpu}")
    if recorded is not None:
        say(f"  bench/results.json cold_start_ms_bridge (dev venv, its own run): {recorded:.0f} ms")
    say("\n" + summarize_importtime(rows))
    say("\nthe same with the bytecode `make package` ships:\n" + summarize_importtime(compiled_rows))


def _load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.1f}" for value in load)


def _ratio(samples: list[dict[str, float]], reference: list[dict[str, float]], key: str) -> str:
    return f"{statistics.median(s[key] for s in samples) / statistics.median(s[key] for s in reference):.2f}×"


if __name__ == "__main__":
    main()
