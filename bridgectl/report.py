"""What happened to a send, per campaign and route: ``bridgectl report``.

Runs the Logs Insights queries below on the stage's log groups (or, with ``--log-file``, on a file of
the bridge's JSON log lines, through ``bridgectl.insights`` — the same query text either way) and
prints, per campaign and route: webhooks received, delivered, duplicates, queued, spilled, each error
code with its count and up to three example event ids, p50/p99 answer time; and for Rokt → Braze,
the synced webhooks per Rokt event type.

A **campaign** is the eventId without its trailing ``_<user id>``: everything before the last ``_``
(``Event_0001_user42`` → ``Event_0001``), which is how the Braze templates build eventIds.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from bridgectl import insights
from stage import names

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

_HANDLED = (
    'filter message = "webhook handled" or message = "queued webhook handled"\n'
    "| parse eventId /^(?<campaign>.+)_[^_]*$/"
)
QUERIES = {
    "outcomes": _HANDLED + "\n| stats count(*) as webhooks, earliest(eventId) as first, latest(eventId) as last, "
    "sortsFirst(eventId) as lowest by campaign, route, outcome, error",
    "latency": _HANDLED + "\n| stats pct(latencyMs, 50) as p50, pct(latencyMs, 99) as p99 by campaign, route",
    "sync": 'filter message = "rokt webhook synced"\n| stats count(*) as webhooks by eventType, outcome',
}
NO_CAMPAIGN = "(no eventId)"
POLL_SECONDS = 1.0
MAX_WAIT_SECONDS = 600.0


@dataclass
class Line:
    """One campaign on one route."""

    campaign: str
    route: str
    received: int = 0
    delivered: int = 0
    duplicates: int = 0
    queued: int = 0
    spilled: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None


@dataclass
class Report:
    lines: list[Line]
    sync: dict[str, dict[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return {"campaigns": [asdict(line) for line in self.lines], "sync": self.sync}


_COUNTED = {"delivered": "delivered", "duplicate": "duplicates", "queued": "queued", "spilled": "spilled"}


def build(results: dict[str, list[dict[str, Any]]], campaign_prefix: str | None = None) -> Report:
    """The report from the three queries' rows (strings or numbers, as either source gives them)."""
    lines: dict[tuple[str, str], Line] = {}

    def line_for(row: dict[str, Any]) -> Line | None:
        campaign = str(row.get("campaign") or NO_CAMPAIGN)
        if campaign_prefix and not campaign.startswith(campaign_prefix):
            return None
        key = (campaign, str(row.get("route") or "?"))
        return lines.setdefault(key, Line(*key))

    for row in results["outcomes"]:
        line = line_for(row)
        if line is not None:
            _count(line, row)
    for row in results["latency"]:
        line = line_for(row)
        if line is not None:
            line.p50_ms = _number(row.get("p50"))
            line.p99_ms = _number(row.get("p99"))
    sync: dict[str, dict[str, int]] = {}
    for row in results["sync"]:
        kind = sync.setdefault(str(row.get("eventType") or "?"), {})
        kind[str(row.get("outcome") or "?")] = int(float(row.get("webhooks") or 0))
    return Report(sorted(lines.values(), key=lambda line: (line.campaign, line.route)), sync)


def _count(line: Line, row: dict[str, Any]) -> None:
    """Add one outcomes row (a campaign, route, outcome and error) to its line."""
    count = int(float(row.get("webhooks") or 0))
    line.received += count
    outcome = str(row.get("outcome") or "")
    if outcome in _COUNTED:
        setattr(line, _COUNTED[outcome], getattr(line, _COUNTED[outcome]) + count)
    if not row.get("error"):
        return
    code = str(row["error"])
    line.errors[code] = line.errors.get(code, 0) + count
    examples = line.examples.setdefault(code, [])
    for name in ("first", "last", "lowest"):
        if row.get(name) and row[name] not in examples and len(examples) < 3:
            examples.append(str(row[name]))


def _number(value: Any) -> float | None:
    return None if value in (None, "") else round(float(value), 1)


def from_records(records: Iterable[dict[str, Any]], campaign_prefix: str | None = None) -> Report:
    rows = list(records)
    return build({name: insights.run(query, rows) for name, query in QUERIES.items()}, campaign_prefix)


def read_log_file(text: str) -> list[dict[str, Any]]:
    """The JSON objects among a file's lines (a `make run` log also holds other processes' lines)."""
    records = []
    for raw in text.splitlines():
        start = raw.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(raw[start:])
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def log_groups(stage: str) -> list[str]:
    """The log groups of the functions `chalice deploy` creates for ``stage`` (give ``--log-group`` for
    the CloudFormation path's generated names)."""
    return names.log_groups(stage)


def from_cloudwatch(
    logs: Any,
    log_groups: list[str],
    since_seconds: float,
    campaign_prefix: str | None = None,
    *,
    progress: Callable[[str], None] = print,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Run the queries on CloudWatch Logs Insights, all at once, showing progress while they run."""
    end = int(clock())
    started = {
        name: logs.start_query(
            logGroupNames=log_groups, startTime=end - int(since_seconds), endTime=end, queryString=query, limit=10_000
        )["queryId"]
        for name, query in QUERIES.items()
    }
    results: dict[str, list[dict[str, Any]]] = {}
    deadline = clock() + MAX_WAIT_SECONDS
    while len(results) < len(started):
        if clock() > deadline:
            raise TimeoutError(f"Logs Insights did not finish in {MAX_WAIT_SECONDS:.0f} s")
        for name, query_id in started.items():
            if name in results:
                continue
            answer = logs.get_query_results(queryId=query_id)
            status, stats = answer["status"], answer.get("statistics", {})
            progress(
                f"  {name}: {status.lower()}, {int(stats.get('recordsScanned', 0)):,} records scanned, "
                f"{int(stats.get('recordsMatched', 0)):,} matched"
            )
            if status == "Complete":
                results[name] = [{f["field"]: f["value"] for f in row} for row in answer.get("results", [])]
            elif status in ("Failed", "Cancelled", "Timeout", "Unknown"):
                raise RuntimeError(f"Logs Insights query {name!r} ended {status}")
        if len(results) < len(started):
            sleep(POLL_SECONDS)
    return build(results, campaign_prefix)


COLUMNS = (
    "campaign",
    "route",
    "received",
    "delivered",
    "duplicates",
    "queued",
    "spilled",
    "errors",
    "p50 ms",
    "p99 ms",
)


def _cells(line: Line) -> list[str]:
    errors = ", ".join(f"{code} {n}" for code, n in sorted(line.errors.items())) or "—"
    return [line.campaign, line.route, str(line.received), str(line.delivered), str(line.duplicates),
            str(line.queued), str(line.spilled), errors, _ms(line.p50_ms), _ms(line.p99_ms)]  # fmt: skip


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def render(report: Report, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*COLUMNS, "examples"])
        for line in report.lines:
            examples = "; ".join(f"{code}: {' '.join(ids)}" for code, ids in sorted(line.examples.items()))
            writer.writerow([*_cells(line), examples])
        return out.getvalue()
    rows = [list(COLUMNS)] + [_cells(line) for line in report.lines]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    text = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    text.insert(1, "  ".join("-" * w for w in widths))
    for line in report.lines:
        for code, ids in sorted(line.examples.items()):
            text.append(f"  {line.campaign} {line.route} {code}: e.g. {', '.join(ids)}")
    if not report.lines:
        text.append("(no webhooks in this window)")
    if report.sync:
        text.append("")
        text.append("Rokt → Braze (per Rokt event type): " + "; ".join(
            f"{kind} " + ", ".join(f"{outcome} {n}" for outcome, n in sorted(outcomes.items()))
            for kind, outcomes in sorted(report.sync.items())
        ))  # fmt: skip
    return "\n".join(text)
