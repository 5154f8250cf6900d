"""``bridgectl reconcile``: what the scheduled reconciliation would change for some or all subscriptions,
as a table (subscription, field, what Braze has by the ledger, what Rokt has; e-mail addresses masked),
then — unless ``--dry-run`` — the same reconciliation written, through the stage's own reconciler."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3

from chalicelib.settings import Settings
from chalicelib.sync.reconcile import Report
from chalicelib.wiring import Bridge
from stage.project import stage_environment

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from chalicelib.sync.reconcile import Drift, Reconciler

MAX_CELL = 48


def reconciler(stage: str) -> Reconciler:
    """The stage's reconciler, as its Lambda builds it, with the operator's AWS credentials."""
    return Bridge(Settings.from_env(stage_environment(stage)), ssm_client=boto3.client("ssm")).reconciler()


def check(
    found: Reconciler,
    pages: Iterable[list[str]],
    *,
    dry_run: bool,
    progress: Callable[[Report], None],
) -> Report:
    """Reconcile each page of subscription ids; the whole report, ``progress`` after each batch."""
    total = Report()
    for page in pages:
        done = found.subscriptions(page, dry_run=dry_run)
        total.add(done)
        progress(total)
    return total


def table(drifts: list[Drift]) -> str:
    """One row per field that differs."""
    rows = [("subscription", "kind", "field", "Braze has (ledger)", "Rokt has")]
    rows += [(d.subscription_id, d.kind, d.field, _cell(d.braze_has), _cell(d.rokt_has)) for d in drifts]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def summary(report: Report) -> str:
    healed = ", ".join(f"{kind} {n}" for kind, n in sorted(report.healed.items())) or "nothing"
    return (
        f"{report.read} read, {report.unchanged} unchanged, {len({d.subscription_id for d in report.drifts})} "
        f"drifted, {report.busy} busy (a webhook was being written), {report.failed} failed (Rokt or AWS); "
        f"healed: {healed}"
    )


def _cell(values: tuple[str, ...]) -> str:
    text = ", ".join(values) or "—"
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"
