"""``python -m tests.mutants`` (``make mutants``): break each mechanism by hand and see whether a test fails.

Each ``tests/mutants/*.patch`` is one small, deliberate defect in the runtime (a unified diff with a
header saying which mechanism it breaks and which tests should fail). For each, a copy of the checkout
gets the patch, then the fixed simulation seeds and the tests the header names run against the copy;
the mutant is *killed* when they fail, *survived* when they pass — a mechanism no test defends.
Prints a table and exits 1 if any mutant survived (or did not apply).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MUTANTS = Path(__file__).resolve().parent
SECONDS_PER_MUTANT = 900


@dataclass
class Mutant:
    path: Path
    mechanism: str
    breaks: str
    tests: list[str]

    @property
    def name(self) -> str:
        return self.path.stem

    @classmethod
    def read(cls, path: Path) -> Mutant:
        header: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith(("diff --git", "--- ")):
                break
            name, _, value = line.partition(":")
            if value:
                header[name.strip().lower()] = value.strip()
        tests = header.get("killed by", "tests/simulation").split()
        return cls(path, header.get("mechanism", "?"), header.get("breaks", "?"), tests)


@dataclass
class Verdict:
    mutant: Mutant
    status: str  # killed | survived | not applied
    detail: str
    seconds: float


def _tracked_copy(target: Path) -> None:
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    )
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def run(mutant: Mutant) -> Verdict:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        copy = Path(tmp)
        _tracked_copy(copy)
        applied = subprocess.run(
            ["git", "apply", "--unidiff-zero", str(mutant.path)], check=False, cwd=copy, capture_output=True, text=True
        )
        if applied.returncode != 0:
            return Verdict(mutant, "not applied", applied.stderr.strip()[:300], time.perf_counter() - started)
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
        command += ["-o", "addopts=", "--timeout=300", *mutant.tests]
        try:
            result = subprocess.run(
                command, check=False, cwd=copy, env=env, capture_output=True, text=True, timeout=SECONDS_PER_MUTANT
            )
        except subprocess.TimeoutExpired:
            return Verdict(mutant, "killed", "the tests did not finish (a hang)", time.perf_counter() - started)
        # a failed or erroring test, as pytest's summary names it (not a log line that starts with ERROR)
        lines = [line for line in result.stdout.splitlines() if line.startswith(("FAILED ", "ERROR tests"))]
        if result.returncode == 0:
            return Verdict(mutant, "survived", "every test passed", time.perf_counter() - started)
        if result.returncode == 1 and not lines:
            # every test passed; only a session-level check (the IAM proof) failed: not a kill
            tail = " / ".join(result.stdout.strip().splitlines()[-3:])
            return Verdict(mutant, "survived", f"no test failed ({tail[:200]})", time.perf_counter() - started)
        if result.returncode in (2, 3, 4):
            tail = " / ".join(result.stdout.strip().splitlines()[-3:])
            return Verdict(
                mutant, "not applied", f"the tests could not run: {tail[:300]}", time.perf_counter() - started
            )
        return Verdict(mutant, "killed", (lines[0] if lines else "a test failed")[:200], time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__)
    parser.add_argument("--only", nargs="*", default=[], help="run the mutants whose file names contain these")
    parser.add_argument("--jobs", type=int, default=max((os.cpu_count() or 1) // 2, 1))
    args = parser.parse_args(argv)
    mutants = [Mutant.read(p) for p in sorted(MUTANTS.glob("*.patch"))]
    if args.only:
        mutants = [m for m in mutants if any(word in m.name for word in args.only)]
    print(f"{len(mutants)} mutants, {args.jobs} at a time", flush=True)
    verdicts: list[Verdict] = []
    with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        for verdict in pool.map(run, mutants):
            verdicts.append(verdict)
            print(
                f"{verdict.status:12} {verdict.mutant.name:52} {verdict.seconds:6.0f} s  {verdict.detail}", flush=True
            )
    killed = sum(v.status == "killed" for v in verdicts)
    survived = [v for v in verdicts if v.status != "killed"]
    print(f"\n{killed} killed, {len(survived)} survived (or not applied) of {len(verdicts)}")
    for verdict in survived:
        print(f"  {verdict.status}: {verdict.mutant.name} — {verdict.mutant.mechanism}: {verdict.mutant.breaks}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
