"""The bench's figures as the docs show them, in one place: generated from ``bench/results.json`` into the
table of ``docs/performance.md`` (between its ``figures`` markers). ``make bench`` runs
``python -m bench.figures`` after measuring; a test fails when the page and the results differ."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_DIR / "bench" / "results.json"
PAGE = PROJECT_DIR / "docs" / "performance.md"
BEGIN, END = "<!-- figures: generated from bench/results.json by `python -m bench.figures` -->", "<!-- /figures -->"
CPU_GOAL = 1.3


def _cpu(r: dict[str, Any]) -> str:
    over = " — **over the goal in this run**" if r["cpu_ratio_vs_reference"] > CPU_GOAL else ""
    return (
        f"**{r['cpu_ratio_vs_reference']:.2f}×** ({r['cpu_ms_per_webhook_bridge']:.2f} / "
        f"{r['cpu_ms_per_webhook_reference']:.2f} ms; median of paired rounds){over}"
    )


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, measured, goal) for each line of the table."""
    sync_kinds = r["sync_route_aws_calls_by_kind"]
    return [
        (
            f"Rokt token calls, {r['webhooks']:,} webhooks over 8 containers in one token lifetime",
            f"**{r['token_calls_total']}**",
            f"≤ 2 (the seed's template: {r['webhooks']:,})",
        ),
        ("SSM reads per webhook", f"**{r['ssm_reads_per_webhook']:.4f}**", "≤ 0.01"),
        (
            "DynamoDB calls per webhook (first delivery of each event)",
            f"**{r['dynamodb_calls_per_webhook']:.3f}**",
            "2 (conditional put + update)",
        ),
        (
            "remote calls per webhook (2 DynamoDB + 1 Rokt + amortized SSM/token)",
            f"**{r['remote_calls_per_webhook']:.3f}**",
            "≤ 3.01 (the floor is 3)",
        ),
        ("CPU per warm webhook, bridge / reference", _cpu(r), f"≤ {CPU_GOAL}×"),
        (
            "cold start (import + first delivered webhook), bridge / reference",
            f"**{r['cold_start_ratio']:.2f}×** ({r['cold_start_ms_bridge']:.0f} / "
            f"{r['cold_start_ms_reference']:.0f} ms)",
            "≤ 1.3×",
        ),
        (
            "queued intake answer vs direct, Rokt answering after `BENCH_ROKT_LATENCY_MS`",
            f"**{r['queued_intake_speedup']:.0f}×** ({r['intake_ms_queued']:.1f} vs {r['intake_ms_direct']:.1f} ms: "
            "one SQS send)",
            "≥ 10×",
        ),
        (
            "answer while the breaker is open ÷ healthy direct answer",
            f"**{r['spill_answer_ratio']:.2f}** ({r['spill_answer_ms']:.1f} vs {r['intake_ms_direct']:.1f} ms)",
            "≤ 0.3",
        ),
        (
            "Rokt down: webhooks spilled, then lost / doubled after recovery",
            f"**{r['outage_lost']} / {r['outage_doubled']}** of {r['outage_spilled']}",
            "0",
        ),
        (
            "Rokt calls per 1,000 queued webhooks with 10 % 429s",
            f"**{r['queued_rokt_calls_per_1000_under_429']:,.0f}** ({r['queued_injected_429s']} injected, "
            f"{r['queued_lost']} lost)",
            "no more than needed",
        ),
        (
            "Rokt → Braze: AWS calls on the sync route per webhook",
            f"**{r['sync_route_aws_calls']:.3f}** ({sync_kinds.get('sqs.SendMessage', 0):,} SQS sends + "
            f"{sync_kinds.get('ssm.GetParameter', 0)} cached SSM reads)",
            "≤ 1 (the queue send)",
        ),
        (
            "Rokt → Braze: `/users/track` calls per 1,000 subscribe webhooks",
            f"**{r['sync_braze_calls_per_1000']:.0f}** ({r['sync_batches']} batches of up to 75, "
            f"{r['sync_lost']} lost)",
            "≤ 20",
        ),
        (
            "Rokt → Braze: Rokt subscription reads per webhook",
            f"**{r['sync_rokt_reads_per_webhook']:.3f}** (token calls: {r['sync_token_calls']})",
            "≤ 1",
        ),
        *_sync_batch_rows(r),
        ("deployment zip", f"**{r['package_zip_bytes'] / 1e6:.2f} MB**", "≤ 3 MB"),
    ]


def _sync_batch_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``bench --only sync``: one consumer while Rokt's subscription reads are slow (absent from older runs)."""
    if "sync_batch75_seconds" not in r:
        return []
    latency = f"{r['sync_rokt_read_latency_ms']:.0f} ms"
    return [
        (
            f"Rokt → Braze: a batch of 75, Rokt reads at {latency}, 30 s context",
            f"**{r['sync_batch75_seconds']:.1f} s** ({r['sync_batch75_written']} written, "
            f"{r['sync_batch75_braze_calls']} Braze call)",
            "≤ 10 s",
        ),
        (
            f"Rokt → Braze: webhooks per second, one consumer, Rokt reads at {latency}",
            f"**{r['sync_webhooks_per_second']:.1f}** ({r['sync_rate_webhooks_written']} of "
            f"{r['sync_rate_webhooks_offered']} written)",
            "measured",
        ),
    ]


def table(results: dict[str, Any]) -> str:
    machine = results.get("machine", {})
    lines = [
        BEGIN,
        f"Latest run: {machine.get('cpus', '?')} cores, Python {machine.get('python', '?')}, "
        f"{results['seconds']:.0f} s.",
        "",
        "| figure | measured | goal |",
        "|---|---|---|",
        *(f"| {figure} | {measured} | {goal} |" for figure, measured, goal in rows(results)),
        END,
    ]
    return "\n".join(lines)


def render_page(text: str, results: dict[str, Any]) -> str:
    """``text`` with the table between the markers replaced by the one ``results`` give."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), flags=re.S)
    if not pattern.search(text):
        raise ValueError(f"{PAGE.name} has no figures markers")
    return pattern.sub(lambda _: table(results), text)


def main() -> int:
    results = json.loads(RESULTS.read_text())
    PAGE.write_text(render_page(PAGE.read_text(), results))
    print(f"wrote the figures of {RESULTS.relative_to(PROJECT_DIR)} into {PAGE.relative_to(PROJECT_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
