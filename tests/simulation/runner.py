"""Run one seed: the world in a clean emulator, on virtual time, its logs captured; then the invariants.

Everything a run touches is set up here and put back afterwards: moto's in-process DynamoDB
(``mock_aws``, a fresh table per seed), the process clock that Powertools reads (time-machine,
frozen and moved by the scheduler), Python's global random (seeded), the bridge's log output
(captured, one JSON line per record as CloudWatch gets it) and stdout (Powertools' metrics).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import app as bridge_app
from chalicelib.observability import logger
from stage.bootstrap import ensure_table
from stage.resources import table_resource
from tests.simulation.dynamodb import DynamoDbModel
from tests.simulation.invariants import Verdict, check
from tests.simulation.scenario import Scenario, generate
from tests.simulation.world import EPOCH, TABLE, World, flat_keys

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.simulation.world import TraceEntry

HISTORY_LINES = 40
_dynamodb: Any = None


@dataclass
class Outcome:
    seed: int
    size: str
    scenario: Scenario
    verdict: Verdict
    drained: bool
    seconds: float
    virtual_hours: float
    stats: dict[str, Any] = field(default_factory=dict)
    trace: list[TraceEntry] = field(default_factory=list)
    harness_errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.verdict.violations)

    def replay_command(self) -> str:
        size = "" if self.size == "small" else f" --size {self.size}"
        return f"PYTHONHASHSEED=0 .venv/bin/python -m tests.simulation --seed {self.seed}{size}"

    def report(self, history_lines: int = HISTORY_LINES) -> str:
        lines = [*self.scenario.describe()]
        lines.append(
            f"  ran {self.virtual_hours:.1f} virtual hours in {self.seconds:.1f} s: "
            + ", ".join(f"{k} {v}" for k, v in self.stats.items())
        )
        shown: set[str] = set()
        for violation in self.verdict.violations:
            lines.append(f"  VIOLATION {violation.rule}: {violation.text}")
            if violation.rule in shown:
                continue
            shown.add(violation.rule)
            about = [e for e in self.trace if _mentions(e, violation.keys)] if violation.keys else []
            if about:
                lines.append(f"    history ({min(len(about), history_lines)} of {len(about)} lines about it):")
                lines += [f"    {e.line()}" for e in about[-history_lines:]]
        for text in self.harness_errors:
            lines.append(f"  HARNESS ERROR {text}")
        if self.failed:
            lines.append(f"  replay: {self.replay_command()}")
        return "\n".join(lines)


def _mentions(entry: TraceEntry, keys: tuple[Any, ...]) -> bool:
    wanted = set(flat_keys(keys))
    return bool(wanted & set(entry.keys)) or any(w in entry.text for w in wanted)


def _dynamodb_client() -> Any:
    """One botocore client for every seed (made once: ~40 ms), answered by moto in this process."""
    global _dynamodb
    if _dynamodb is None:
        import boto3
        import moto  # noqa: F401 — registers moto's handlers before the client is made
        from botocore.config import Config

        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        _dynamodb = boto3.client(
            "dynamodb",
            region_name="us-east-1",
            aws_access_key_id="simulation",
            aws_secret_access_key="simulation",
            config=Config(parameter_validation=False, retries={"mode": "standard", "total_max_attempts": 1}),
        )
    return _dynamodb


def run_seed(seed: int, size: str = "small", scenario: Scenario | None = None, dynamodb: str = "model") -> Outcome:
    """``dynamodb``: ``model`` (tests/simulation/dynamodb.py, fast) or ``moto`` (moto in-process)."""
    import time_machine

    scenario = scenario or generate(seed, size)
    started = time.perf_counter()
    logs = _LogLines()
    with contextlib.ExitStack() as stack:
        if dynamodb == "moto":
            from moto import mock_aws

            stack.enter_context(mock_aws())
            client = _dynamodb_client()
            ensure_table(client, TABLE, progress=lambda _: None)
        else:
            client = DynamoDbModel()
            table = table_resource(TABLE)["Properties"]
            client.create_table(
                TableName=TABLE, KeySchema=table["KeySchema"], GlobalSecondaryIndexes=table["GlobalSecondaryIndexes"]
            )
        traveller = time_machine.travel(EPOCH, tick=False)
        coordinates = traveller.start()
        stack.callback(traveller.stop)
        stack.enter_context(_captured(logs))
        caught = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always")
        random.seed(f"{seed}:python")
        world = World(scenario, client)
        world.time_listeners.append(coordinates.move_to)
        logs.on_line = world.trace.bridge_line
        try:
            drained = world.run()
        finally:
            bridge_app.use_bridge(None)
        verdict = check(world, logs.lines, drained)
    stats = {
        "webhooks": len(world.answers),
        "Rokt changes applied": len(world.rokt.applied),
        "Braze calls": world.braze.calls,
        "invocations": sum(f.invocations for f in world.functions),
        "reconciliations": world.functions[3].invocations,
        "killed": sum(f.killed for f in world.functions),
        "faults met": sum(world.faults.met.values()),
        "steps": world.scheduler.steps,
    }
    return Outcome(
        seed,
        size,
        scenario,
        verdict,
        drained,
        time.perf_counter() - started,
        world.scheduler.now / 3600,
        stats,
        world.trace.entries,
        world.harness_errors,
        sorted({f"{w.category.__name__}: {w.message}" for w in caught}),
    )


class _LogLines(io.TextIOBase):
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = ""
        self.on_line: Callable[[str], None] = lambda line: None

    def write(self, text: str) -> int:
        self._partial += text
        *done, self._partial = self._partial.split("\n")
        for line in done:
            if line:
                self.lines.append(line)
                self.on_line(line)
        return len(text)


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


@contextlib.contextmanager
def _captured(logs: _LogLines) -> Iterator[None]:
    """The bridge's log lines into ``logs``; stdout (Powertools metrics) nowhere."""
    handler = logger.registered_handler
    stream = getattr(handler, "stream", sys.stdout)
    handler.setStream(logs)  # type: ignore[attr-defined]
    try:
        with contextlib.redirect_stdout(_Discard()):
            yield
    finally:
        handler.setStream(stream)  # type: ignore[attr-defined]
